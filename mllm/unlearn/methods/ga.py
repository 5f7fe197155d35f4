"""GA: gradient ascent on the forget set's answer content (stop tokens excluded), nothing else."""

from __future__ import annotations

from dataclasses import dataclass

from ..base import MethodConfig
from ..data import Streams, items
from ..registry import register
from ..scope import forget_records
from .graddiff import GradDiff


@dataclass(frozen=True)
class GAConfig(MethodConfig):
    lr: float = 2e-3


@register("ga")
class GradientAscent(GradDiff):
    """−CE(F): GradDiff without a retain set."""

    Config = GAConfig

    def streams(self) -> Streams:
        return self.encode({"forget": items(forget_records(self.ctx.scope))})
