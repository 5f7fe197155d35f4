"""Answer-token log-probabilities in fp32: the one quantity training, unlearning losses and
membership inference are all built from.

Logits are computed **only at answer positions**: the model runs its backbone over the whole
sequence, then applies the LM head to the hidden states of the positions that predict an answer
token (``logits_to_keep`` with a boolean mask), so no ``[batch, tokens, vocab]`` tensor exists — for
a 150k-token vocabulary that tensor, not the model, is what runs out of memory. Whatever the weights'
dtype, log-softmax and losses are computed in fp32. Every function moves the batch to the model's
input device, so callers never handle devices.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mllm.models.runtime import input_device

from .encode import IGNORE_INDEX, Batch


def answer_mask(batch: Batch) -> torch.Tensor:
    """``[B, T]`` bool: the positions whose next token is an answer token (or the end of turn)."""
    if batch.labels is None:
        raise ValueError("answer log-probabilities need a batch with answers (with_answer=True)")
    mask = torch.zeros_like(batch.labels, dtype=torch.bool)
    mask[:, :-1] = batch.labels[:, 1:] != IGNORE_INDEX
    return mask


def answer_position_logits(model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 logits ``[N, V]`` at the ``N`` answer positions of the batch (row by row, left to right)
    and the answer tokens they predict ``[N]``."""
    mask = answer_mask(batch)
    batch = batch.to(input_device(model))
    logits = model(**batch.model_inputs(), logits_to_keep=mask.to(batch.input_ids.device)).logits
    targets = batch.labels[:, 1:][mask[:, :-1].to(batch.labels.device)]
    return logits.float(), targets.to(logits.device)


def per_example(values: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Scatter answer-position values ``[N]`` into ``[B, A]`` (A: longest answer) and the mask."""
    counts = answer_mask(batch).sum(dim=1).to(values.device)
    mask = torch.arange(int(counts.max()), device=values.device) < counts[:, None]
    out = torch.zeros(mask.shape, dtype=values.dtype, device=values.device)
    out[mask] = values
    return out, mask


def answer_logprobs(model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 ``log p(answer token | image, prompt, earlier answer tokens)`` as ``[B, A]`` (A: the longest
    answer in the batch, end-of-turn token included) and its mask; 0 where the mask is False."""
    logits, targets = answer_position_logits(model, batch)
    logp = -F.cross_entropy(logits, targets, reduction="none")
    return per_example(logp, batch)


def sequence_logprobs(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """Summed answer log-probability per example ``[B]``."""
    logp, _ = answer_logprobs(model, batch)
    return logp.sum(dim=1)


def answer_nll(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """Mean negative log-likelihood over all answer tokens of the batch (the fine-tuning loss)."""
    logits, targets = answer_position_logits(model, batch)
    return F.cross_entropy(logits, targets)
