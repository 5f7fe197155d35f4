"""``siu``: Single Image Unlearning (Li et al., NeurIPS 2024) adapted to the medical hierarchy.

Multifaceted fine-tuning data built from the scope: (1) forgotten private facts answered as a
model that never saw the patient answers (:mod:`..targets`, not "I don't know"); (2) the forgotten images'
image-grounded facts kept with their true answers (decoupled factual knowledge); (3) a sample of
neighbours and far retain (non-targeted knowledge preserved). Loss = α·CE(targets) + β·DMK, the
Dual Masked KL to the frozen original on the same sequences: token mask K_S = 0 where the target
deliberately differs from what the original predicts, vocabulary mask K_V = 0 on the forgotten
answers' tokens (so the KL never pulls them back).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mllm.train.encode import Batch
from mllm.train.logprobs import answer_position_logits

from ..base import Context, GradientMethod, MethodConfig
from ..data import Item, Streams, answer_token_ids, items
from ..losses import masked_kl, reference_logits
from ..registry import register
from ..scope import forget_records, is_private, kept_groups, sample
from .hierarchy import forget_targets


@dataclass(frozen=True)
class SIUConfig(MethodConfig):
    steps: int = 30
    lr: float = 3e-3
    alpha: float = 0.9
    beta: float = 0.75
    neighbours: int = 32  # kept records sampled into the fine-tuning data


def token_keep_mask(ref_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """K_S over answer positions ``[N]``: 1 where the target is what the original predicts, 0 where it
    was deliberately changed."""
    return ref_logits.argmax(dim=-1) == targets


def vocab_keep_mask(vocab_size: int, forgotten: Collection[int]) -> torch.Tensor:
    """K_V: 1 everywhere except the forgotten answers' token ids."""
    mask = torch.ones(vocab_size)
    mask[list(forgotten)] = 0.0
    return mask


@register("siu")
class SIU(GradientMethod):
    Config = SIUConfig

    def __init__(self, config: SIUConfig, context: Context) -> None:
        super().__init__(config, context)
        forgotten = [r.answer for r in forget_records(context.scope) if is_private(r)]
        self.forgotten_ids = answer_token_ids(context.processor, forgotten) - self.stop_ids

    def streams(self) -> Streams:
        replaced, grounded = forget_targets(self)
        forget_ids = {r.record_id for r in forget_records(self.ctx.scope)}
        kept = [r for group in kept_groups(self.ctx.scope).values() for r in group
                if r.record_id not in forget_ids]
        neighbours = items(sample(kept, self.config.neighbours, f"siu:{self.ctx.seed}"))
        groups: dict[str, list[Item]] = {"forget": replaced, "kept": grounded + neighbours}
        return self.encode({name: group for name, group in groups.items() if group})

    def loss(self, batches: dict[str, Batch]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        ce_terms, kl_terms = [], []
        for batch in batches.values():
            ref_logits, targets = reference_logits(self.reference, batch)
            logits, _ = answer_position_logits(self.model, batch)
            ce_terms.append(F.cross_entropy(logits, targets))
            keep = token_keep_mask(ref_logits, targets)
            vocab = vocab_keep_mask(logits.shape[-1], self.forgotten_ids).to(logits.device)
            kl_terms.append(masked_kl(ref_logits[keep], logits[keep], vocab))
        ce, dmk = torch.stack(ce_terms).mean(), torch.stack(kl_terms).mean()
        return self.config.alpha * ce + self.config.beta * dmk, {"ce": ce, "dmk": dmk}
