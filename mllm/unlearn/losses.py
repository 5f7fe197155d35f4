"""Answer-only losses, written once, in fp32, from logits at answer positions only.

Every term acts on answer positions only (:func:`mllm.train.logprobs.answer_position_logits`: no
``[batch, tokens, vocab]`` tensor). **Ascent** terms also drop the stop tokens (end of turn / EOS):
pushing their probability down teaches the model never to stop (measured: 128 tokens of garbage on
every prompt after GA with EOS in the labels). ``reference`` is the frozen original model (the
adapter disabled, or a frozen copy — see :meth:`mllm.unlearn.base.GradientMethod.adapt`).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import torch
import torch.nn.functional as F

from mllm.train.encode import Batch
from mllm.train.logprobs import answer_nll, answer_position_logits, per_example


def reference_logits(reference: Any, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """The frozen original's fp32 answer-position logits ``[N, V]`` and targets ``[N]``, without gradients."""
    with torch.no_grad():
        return answer_position_logits(reference, batch)


def content_mask(targets: torch.Tensor, stop_ids: Collection[int]) -> torch.Tensor:
    """Answer tokens that are not stop tokens."""
    return ~torch.isin(targets, torch.tensor(sorted(stop_ids), device=targets.device))


def nll(model: Any, batch: Batch) -> torch.Tensor:
    """Mean NLL over answer tokens, stop tokens included (descent: keeps the model stopping)."""
    return answer_nll(model, batch)


def _content_logprobs(model: Any, batch: Batch,
                      stop_ids: Collection[int]) -> tuple[torch.Tensor, torch.Tensor]:
    logits, targets = answer_position_logits(model, batch)
    return -F.cross_entropy(logits, targets, reduction="none"), content_mask(targets, stop_ids)


def ascent(model: Any, batch: Batch, stop_ids: Collection[int]) -> torch.Tensor:
    """Mean log-likelihood of the answer content (minimising it is gradient ascent); no stop tokens."""
    logp, mask = _content_logprobs(model, batch, stop_ids)
    return (logp * mask).sum() / mask.sum().clamp(min=1)


def sequence_logprob(model: Any, batch: Batch, stop_ids: Collection[int]) -> torch.Tensor:
    """Summed content log-probability per example ``[B]``."""
    logp, mask = _content_logprobs(model, batch, stop_ids)
    return per_example(logp * mask, batch)[0].sum(dim=1)


def mean_content_logprob(model: Any, batch: Batch, stop_ids: Collection[int]) -> torch.Tensor:
    """Mean content log-probability per token, per example ``[B]`` (the membership "loss" score)."""
    logp, mask = _content_logprobs(model, batch, stop_ids)
    totals, _ = per_example(logp * mask, batch)
    counts, _ = per_example(mask.to(logp.dtype), batch)
    return totals.sum(dim=1) / counts.sum(dim=1).clamp(min=1)


def likelihood_excess(model: Any, batch: Batch, stop_ids: Collection[int], ceiling: float) -> torch.Tensor:
    """Mean over examples of max(0, mean content log-prob − ``ceiling``): pushes answers down to the
    likelihood of answers never trained on, and no further (below it is over-forgetting)."""
    return F.relu(mean_content_logprob(model, batch, stop_ids) - ceiling).mean()


def npo(model: Any, reference: Any, batch: Batch, stop_ids: Collection[int], beta: float) -> torch.Tensor:
    """NPO: −(2/β)·mean log σ(−β·(log π_θ(y|x) − log π_ref(y|x))), on content tokens."""
    with torch.no_grad():
        ref = sequence_logprob(reference, batch, stop_ids)
    ratio = sequence_logprob(model, batch, stop_ids) - ref
    return -(2.0 / beta) * F.logsigmoid(-beta * ratio).mean()


def kl_to_reference(model: Any, reference: Any, batch: Batch) -> torch.Tensor:
    """KL(π_ref ‖ π_θ) of the next-token distributions, averaged over answer positions."""
    ref_logits, _ = reference_logits(reference, batch)
    logits, _ = answer_position_logits(model, batch)
    return masked_kl(ref_logits, logits, None)


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
