"""``hierarchy``: Oblivio's hierarchy-aware method.

* **Forget objective** — every private fact the node owns (its children's included), in every
  trained form and at every context depth the renderer offers (the depths a reconstruction attack
  adds), is trained toward the answer a model that never saw the patient gives
  (:mod:`..targets`): it ends where the retrain oracle is (chance), not below it. Eval-only forms
  are never trained on, so held-out-form checks stay honest.
* **Kept objective** — image-grounded facts of the forgotten images keep their true answers (the
  oracle reads them off the image too); siblings at each ancestor level, ancestor-owned shared facts
  and far retain keep theirs. Each group has an integer weight — how many times its records enter
  the kept stream — so the nearest relatives (most at risk) weigh most; one kept batch per step.
* **Level rules** come from the scope: forgetting a study puts its sections in ``forget``
  (children); forgetting a section leaves its study's other sections in ``siblings[study]`` (kept);
  facts owned above the node but asked on its images are ``shared`` (kept).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mllm.train.encode import Batch

from ..base import GradientMethod, MethodConfig
from ..data import Item, Streams, available_depths, items
from ..losses import nll
from ..registry import register
from ..scope import forget_records, is_private, kept_groups
from ..targets import replacement_answers


@dataclass(frozen=True)
class HierarchyConfig(MethodConfig):
    steps: int = 40
    lr: float = 3e-3
    # repeats in the kept stream per group: "grounded" (the forgotten images' image-grounded facts),
    # "siblings.<ancestor level>", "shared", "retain"; groups not named count once
    weights: dict[str, int] = field(default_factory=lambda: {
        "grounded": 2, "siblings.section": 2, "siblings.study": 2, "siblings.patient": 2, "shared": 2})


def forget_targets(method: GradientMethod) -> tuple[list[Item], list[Item]]:
    """(private forget facts → replacement answers at every depth, image-grounded forget facts → own)."""
    ctx = method.ctx
    forget = forget_records(ctx.scope)
    private = [r for r in forget if is_private(r)]
    kept = [r for group in kept_groups(ctx.scope).values() for r in group]
    targets = replacement_answers(ctx.model, ctx.processor, ctx.root, private, kept, ctx.scope.holdout,
                                  ctx.seed)
    depths = available_depths()
    replaced = [Item(r, targets[r.record_id], depth)
                for r in private if r.record_id in targets for depth in depths]
    grounded = items((r for r in forget if not is_private(r)), depths)
    return replaced, grounded


@register("hierarchy")
class Hierarchy(GradientMethod):
    """CE toward replacement answers on forget facts + CE on the weighted kept stream."""

    Config = HierarchyConfig

    def streams(self) -> Streams:
        replaced, grounded = forget_targets(self)
        groups = {"grounded": grounded,
                  **{name: items(records) for name, records in kept_groups(self.ctx.scope).items()}}
        kept = [item for name, group in groups.items() for item in group * self.config.weights.get(name, 1)]
        return self.encode({"forget": replaced, "kept": kept})

    def loss(self, batches: dict[str, Batch]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        terms = {name: nll(self.model, batch) for name, batch in batches.items()}
        return sum(terms.values()), terms
