"""KL: gradient ascent on the forget set, KL to the frozen original on the retain set."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mllm.train.encode import Batch

from ..base import MethodConfig
from ..losses import kl_to_reference
from ..registry import register
from .graddiff import GradDiff


@dataclass(frozen=True)
class KLConfig(MethodConfig):
    lr: float = 3e-3


@register("kl")
class KLMin(GradDiff):
    """−CE(F) + λ·KL(π_ref ‖ π_θ) on R."""

    Config = KLConfig

    def retain_loss(self, batch: Batch) -> torch.Tensor:
        return kl_to_reference(self.model, self.reference, batch)
