"""GA: gradient ascent on the forget set's answer content (stop tokens excluded), nothing else."""

from __future__ import annotations

from ..data import Streams, items
from ..registry import register
from ..scope import forget_records
from .graddiff import GradDiff


@register("ga")
class GradientAscent(GradDiff):
    """−CE(F): GradDiff without a retain set."""

    def streams(self) -> Streams:
        return self.encode({"forget": items(forget_records(self.ctx.scope))})
