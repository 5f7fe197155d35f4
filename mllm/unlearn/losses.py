"""Answer-only losses, written once, in fp32.

Every term acts on answer positions only (labels are ``-100`` elsewhere). **Ascent** terms also drop
the stop tokens (EOS / end-of-turn): pushing their probability down teaches the model never to stop
(measured: 128 tokens of garbage on every prompt after GA with EOS in the labels).
The frozen reference is the model with its LoRA adapter disabled.
"""

from __future__ import annotations

from collections.abc import Collection
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F

from mllm.train.encode import IGNORE_INDEX, Batch
from mllm.train.logprobs import answer_logits


@contextmanager
def reference(model: Any):
    """The frozen original: the PEFT model with its adapter disabled, without gradients."""
    with torch.no_grad(), model.disable_adapter():
        yield model


def content_mask(targets: torch.Tensor, stop_ids: Collection[int]) -> torch.Tensor:
    """Answer positions that are not stop tokens."""
    mask = targets != IGNORE_INDEX
    for token in stop_ids:
        mask &= targets != token
    return mask


def _logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return -F.cross_entropy(logits.transpose(1, 2), targets.clamp(min=0), reduction="none")


def nll(model: Any, batch: Batch) -> torch.Tensor:
    """Mean NLL over answer tokens, stop tokens included (descent: keeps the model stopping)."""
    logits, targets = answer_logits(model, batch)
    mask = targets != IGNORE_INDEX
    return -(_logprobs(logits, targets) * mask).sum() / mask.sum()


def ascent(model: Any, batch: Batch, stop_ids: Collection[int]) -> torch.Tensor:
    """Mean log-likelihood of the answer content (minimising it is gradient ascent); no stop tokens."""
    logits, targets = answer_logits(model, batch)
    mask = content_mask(targets, stop_ids)
    return (_logprobs(logits, targets) * mask).sum() / mask.sum().clamp(min=1)


def sequence_logprob(model: Any, batch: Batch, stop_ids: Collection[int]) -> torch.Tensor:
    """Summed content log-probability per example ``[B]``."""
    logits, targets = answer_logits(model, batch)
    return (_logprobs(logits, targets) * content_mask(targets, stop_ids)).sum(dim=1)


def npo(model: Any, batch: Batch, stop_ids: Collection[int], beta: float) -> torch.Tensor:
    """NPO: −(2/β)·mean log σ(−β·(log π_θ(y|x) − log π_ref(y|x))), on content tokens."""
    with reference(model):
        ref = sequence_logprob(model, batch, stop_ids)
    ratio = sequence_logprob(model, batch, stop_ids) - ref
    return -(2.0 / beta) * F.logsigmoid(-beta * ratio).mean()


def kl_to_reference(model: Any, batch: Batch) -> torch.Tensor:
    """KL(π_ref ‖ π_θ) of the next-token distributions, averaged over answer positions."""
    with reference(model):
        ref_logits, targets = answer_logits(model, batch)
    logits, _ = answer_logits(model, batch)
    positions = targets != IGNORE_INDEX
    return masked_kl(ref_logits[positions], logits[positions], None)


def masked_kl(ref_logits: torch.Tensor, logits: torch.Tensor,
              vocab_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over rows of Σ_v K_V(v) p_ref(v)(log p_ref(v) − log p(v)); rows are positions ``[N, V]``."""
    if ref_logits.shape[0] == 0:
        return logits.sum() * 0.0
    ref_logp = F.log_softmax(ref_logits.float(), dim=-1)
    logp = F.log_softmax(logits.float(), dim=-1)
    terms = ref_logp.exp() * (ref_logp - logp)
    if vocab_mask is not None:
        terms = terms * vocab_mask.to(terms.dtype)
    return terms.sum(dim=-1).mean()
