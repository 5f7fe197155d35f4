"""KL: gradient ascent on the forget set, KL to the frozen original on the retain set."""

from __future__ import annotations

import torch

from mllm.train.encode import Batch

from ..losses import kl_to_reference
from ..registry import register
from .graddiff import GradDiff


@register("kl")
class KLMin(GradDiff):
    """−CE(F) + λ·KL(π_ref ‖ π_θ) on R."""

    def retain_loss(self, batch: Batch) -> torch.Tensor:
        return kl_to_reference(self.model, self.reference, batch)
