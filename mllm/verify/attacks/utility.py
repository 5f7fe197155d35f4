"""Utility and hierarchy consistency: what the candidate lost against the original.

Siblings (other nodes under the forgotten node's ancestors), ancestor-owned shared facts, far retain
and image-grounded facts (retain and holdout) are asked at depth 0 in their trained forms, of the
original and of the candidate; the drop is original minus candidate success. Sibling damage and
child leakage (:mod:`.reconstruction`) are reported separately, as MedForget's two failure modes of
flat unlearning. Groups larger than ``max_utility_items`` are sampled (seeded).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from mllm.data.schema import FactKind, Record

from ..context import VerifyContext
from ..probes import Probe, is_eval_only
from ..registry import Attack, AttackResult, register_attack
from ..report import Check
from ..stats import paired_difference, rate

# check name -> (scope group, policy threshold field, diagnosis)
GROUP_CHECKS = {
    "far_retain": ("retain", "max_retain_drop", "utility loss"),
    "sibling_damage": ("siblings", "max_sibling_drop", "sibling damage"),
    "shared_facts": ("shared", "max_shared_drop", "shared-fact damage"),
    "image_grounded": ("image_grounded", "max_image_drop", "image-grounded damage"),
}


def utility_groups(ctx: VerifyContext) -> dict[str, list[Record]]:
    """The trained-form records of each utility group, sampled down to ``max_utility_items``."""
    groups = {name: ctx.group(name) for name in ("retain", "siblings", "shared")}
    groups["image_grounded"] = [
        r for r in ctx.group("retain") + ctx.group("holdout") if r.fact_kind is FactKind.IMAGE_GROUNDED
    ]
    limit, seed = ctx.policy.max_utility_items, ctx.policy.seed
    out = {}
    for name, records in groups.items():
        records = [r for r in records if not is_eval_only(r)]
        if len(records) > limit:
            keep = set(random.Random(seed).sample(range(len(records)), limit))
            records = [r for i, r in enumerate(records) if i in keep]
        out[name] = records
    return out


def utility_probes(ctx: VerifyContext) -> dict[str, list[Probe]]:
    return {name: [Probe(r, 0) for r in records] for name, records in utility_groups(ctx).items()}


@register_attack("utility")
class Utility(Attack):
    def run(self, ctx: VerifyContext) -> AttackResult:
        policy = ctx.policy
        tables: dict = {}
        checks: list[Check] = []
        probes = utility_probes(ctx)
        for name, (group, field, diagnosis) in GROUP_CHECKS.items():
            items: Sequence[Probe] = probes[group]
            original = [float(f) for f in ctx.original.success(items, ctx.root, policy)] if items else []
            candidate = [float(f) for f in ctx.candidate.success(items, ctx.root, policy)] if items else []
            drop = paired_difference(original, candidate, seed=policy.seed)
            tables[group] = {
                "original": rate([f > 0 for f in original]),
                "candidate": rate([f > 0 for f in candidate]),
                "drop": drop,
            }
            checks.append(
                ctx.check(
                    name=name,
                    attack="utility",
                    value=drop.value if items else math.nan,
                    threshold=getattr(policy, field),
                    comparison="<=",
                    estimate=drop,
                    diagnosis=diagnosis,
                    detail=f"original minus candidate success on {group}",
                )
            )
        return AttackResult(tables=tables, checks=checks)
