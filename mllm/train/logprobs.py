"""Answer-token log-probabilities in fp32: the one quantity training, unlearning losses and
membership inference are all built from."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .encode import IGNORE_INDEX, Batch


def answer_logits(model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 logits ``[B, T-1, V]`` predicting each next token, and the targets (``-100`` off-answer)."""
    if batch.labels is None:
        raise ValueError("answer log-probabilities need a batch with answers (with_answer=True)")
    logits = model(**batch.model_inputs()).logits
    return logits[:, :-1].float(), batch.labels[:, 1:]


def token_logprobs(model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """``log p(answer token | prefix)`` per position ``[B, T-1]`` (0 off-answer) and the answer mask."""
    logits, targets = answer_logits(model, batch)
    mask = targets != IGNORE_INDEX
    logp = -F.cross_entropy(logits.transpose(1, 2), targets.clamp(min=0), reduction="none")
    return logp * mask, mask


def sequence_logprobs(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """Summed answer log-probability per example ``[B]``."""
    logp, _ = token_logprobs(model, batch)
    return logp.sum(dim=1)


def answer_nll(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """Mean negative log-likelihood over all answer tokens of the batch (the fine-tuning loss)."""
    logp, mask = token_logprobs(model, batch)
    return -logp.sum() / mask.sum()
