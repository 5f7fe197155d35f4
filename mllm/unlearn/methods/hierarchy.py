"""``hierarchy``: Oblivio's hierarchy-aware method.

* **Forget objective** — every private forget fact (the node's and its children's), in every trained
  form and at every context depth the renderer offers (the depths a reconstruction attack adds), is
  trained toward the answer a model that never saw the patient gives (:mod:`..targets`): it ends
  where the retrain oracle is (chance), not below it. Eval-only forms are never trained on.
* **Kept facts** — image-grounded facts of the forgotten images keep their true answers (the oracle
  reads them off the image too); siblings at each ancestor level, ancestor-owned shared facts and far
  retain get their own weighted CE term, so closer relatives (most at risk) weigh more.
* **Level rules** come from the scope: forgetting a study puts its sections in ``children`` (forgotten);
  forgetting a section leaves its study's other sections in ``siblings["study"]`` (kept). A record in
  both a kept group and the forget set is forgotten.
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
    forget_weight: float = 1.0
    grounded_weight: float = 1.0
    # per kept group: "siblings.<ancestor level>", "shared", "retain"
    weights: dict[str, float] = field(default_factory=lambda: {
        "siblings.study": 2.0, "siblings.patient": 2.0, "siblings.institution": 1.0, "shared": 2.0,
        "retain": 1.0})


def forget_targets(method: GradientMethod) -> tuple[list[Item], list[Item]]:
    """(private forget facts → prior answers at every depth, image-grounded forget facts → own answers)."""
    ctx = method.ctx
    forget = forget_records(ctx.scope)
    private = [r for r in forget if is_private(r)]
    forget_ids = {r.record_id for r in forget}
    kept = [r for group in kept_groups(ctx.scope).values() for r in group if r.record_id not in forget_ids]
    priors = replacement_answers(ctx.model, ctx.processor, ctx.root, private, kept, ctx.scope.holdout,
                                 ctx.seed)
    depths = available_depths()
    replaced = [Item(r, priors[r.record_id], depth)
                for r in private if r.record_id in priors for depth in depths]
    grounded = items((r for r in forget if not is_private(r)), depths)
    return replaced, grounded


@register("hierarchy")
class Hierarchy(GradientMethod):
    """CE toward prior answers on forget facts + weighted CE on every kept group."""

    Config = HierarchyConfig

    def streams(self) -> Streams:
        replaced, grounded = forget_targets(self)
        forget_ids = {item.record.record_id for item in (*replaced, *grounded)}
        groups: dict[str, list[Item]] = {"forget": replaced, "grounded": grounded}
        for name, records in kept_groups(self.ctx.scope).items():
            groups[name] = items(r for r in records if r.record_id not in forget_ids)
        return self.encode({name: group for name, group in groups.items() if group})

    def weight(self, name: str) -> float:
        if name == "forget":
            return self.config.forget_weight
        if name == "grounded":
            return self.config.grounded_weight
        return self.config.weights.get(name, self.config.retain_weight)

    def loss(self, batches: dict[str, Batch]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        terms = {name: nll(self.model, batch) for name, batch in batches.items()}
        total = sum(self.weight(name) * value for name, value in terms.items())
        return total / sum(self.weight(name) for name in terms), terms
