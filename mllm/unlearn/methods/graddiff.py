"""GradDiff: gradient ascent on the forget set plus descent on everything the model must keep.

The shape every baseline shares: ``loss = forget_loss(F) + λ·retain_loss(R)``; GA drops R, KL and
NPO swap one term each.
"""

from __future__ import annotations

import torch

from mllm.train.encode import Batch

from ..base import GradientMethod
from ..losses import ascent, nll
from ..registry import register


@register("graddiff")
class GradDiff(GradientMethod):
    """−CE(F) + λ·CE(R), R = siblings, shared facts and far retain; ascent without stop tokens."""

    def forget_loss(self, batch: Batch) -> torch.Tensor:
        return ascent(self.model, batch, self.stop_ids)

    def retain_loss(self, batch: Batch) -> torch.Tensor:
        return nll(self.model, batch)

    def loss(self, batches: dict[str, Batch]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        terms = {"forget": self.forget_loss(batches["forget"])}
        total = terms["forget"]
        if "retain" in batches:
            terms["retain"] = self.retain_loss(batches["retain"])
            total = total + self.config.retain_weight * terms["retain"]
        return total, terms
