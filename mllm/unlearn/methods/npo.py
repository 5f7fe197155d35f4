"""NPO with a retain term (NPO+RT): GradDiff with NPO's bounded forget loss."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mllm.train.encode import Batch

from ..base import MethodConfig
from ..losses import npo
from ..registry import register
from .graddiff import GradDiff


@dataclass(frozen=True)
class NPOConfig(MethodConfig):
    beta: float = 0.1


@register("npo")
class NPO(GradDiff):
    """−(2/β)·E_F[log σ(−β·log(π_θ/π_ref))] + λ·CE(R)."""

    Config = NPOConfig

    def forget_loss(self, batch: Batch) -> torch.Tensor:
        return npo(self.model, self.reference, batch, self.stop_ids, self.config.beta)
