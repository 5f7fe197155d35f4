"""Utility and hierarchy consistency: what the candidate lost against the original.

Siblings (other nodes under the forgotten node's ancestors), ancestor-owned shared facts, far retain
and image-grounded facts (retain and holdout) are asked at depth 0 in their trained forms, of the
original and of the candidate; the drop is original minus candidate success. Siblings are one group
per ancestor level (``siblings (study)``, ``siblings (patient)``, ...) and ``sibling_damage`` is
decided by the worst: pooled, a section's handful of same-study facts drowned among 200 sampled
siblings of its institution, and a candidate that damaged them read a drop of -0.015 (demo corpus,
FINDINGS, seed 0). Image-grounded facts are two groups for the same reason, ``image_grounded
(trained)`` (retain: images the model was trained on) and ``image_grounded (unseen)`` (the holdout
twins: images it never saw), the worse deciding: pooled, memorised images the kept stream holds up
hid the loss of reading unseen ones (demo corpus seed 7, a `hierarchy` run on one draw of the demo
model: pooled drop 0.083 of 0.15; unseen 0.583 -> 0.292). Sibling damage and child leakage
(:mod:`.reconstruction`) are reported separately, as MedForget's two failure modes of flat
unlearning. Groups larger than ``max_utility_items`` are sampled (seeded).

``utility_likelihood`` reads the same items through the weights: the increase of the mean
answer-token negative log-likelihood (fp32, nats per token, trained form: the option letter for
multiple choice) from the original to the candidate, judged per group (the deciding group is
reported: :meth:`~mllm.verify.context.VerifyContext.worst_check`). Gradient ascent
wrecks what a model knows before its greedy answers flip: on the demo corpus (seeds 0-4) the GA
calibration candidate raised this by 0.59-1.25 nats, retrain oracles by at most 0.30 and ``hierarchy``
runs by at most 0.063; on the medforget corpus and for a demo study the same GA recipe by only 0.46
and 0.43, which is why the edge is 0.4 (:mod:`mllm.verify.policy`).

``cumulative_utility`` compares the candidate with the lineage's *first* served model on its
baseline panel (:mod:`..baseline`), over the panel records still kept, never-trained images and
trained records apart (the worse counts): per-request drops add up along a lineage, the total may
not exceed ``max_cumulative_drop``. Not applicable without a baseline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mllm.data.schema import FactKind, Record

from ..baseline import UTILITY_PARTS, first_and_now, kept_panel
from ..context import Subject, VerifyContext
from ..probes import Probe, is_eval_only
from ..registry import Attack, AttackResult, register_attack
from ..report import Check
from ..stats import Estimate, paired_difference, rate

# check name -> (scope group, policy threshold field, diagnosis); a check reads every group of its name
# (siblings: one group per ancestor level) and is decided by the worst
GROUP_CHECKS = {
    "far_retain": ("retain", "max_retain_drop", "utility loss"),
    "sibling_damage": ("siblings", "max_sibling_drop", "sibling damage"),
    "shared_facts": ("shared", "max_shared_drop", "shared-fact damage"),
    "image_grounded": ("image_grounded", "max_image_drop", "image-grounded damage"),
}


def sibling_groups(ctx: VerifyContext) -> dict[str, list[Record]]:
    """The siblings under each ancestor level apart (``siblings (study)``: the study's other sections
    and facts), so damage to the nearest siblings is not diluted among the many far ones (a section's
    own study holds a handful of facts, its institution hundreds)."""
    siblings = getattr(ctx.scope, "siblings", None)
    if not isinstance(siblings, Mapping):
        return {"siblings": ctx.group("siblings")}
    return {f"siblings ({getattr(level, 'value', level)})": list(group) for level, group in siblings.items()}


def utility_groups(ctx: VerifyContext) -> dict[str, list[Record]]:
    """The trained-form records of each utility group, sampled down to ``max_utility_items``."""
    groups = {"retain": ctx.group("retain"), **sibling_groups(ctx), "shared": ctx.group("shared")}
    for name, source in (("image_grounded (trained)", "retain"), ("image_grounded (unseen)", "holdout")):
        groups[name] = [r for r in ctx.group(source) if r.fact_kind is FactKind.IMAGE_GROUNDED]
    return {name: ctx.sample([r for r in records if not is_eval_only(r)]) for name, records in groups.items()}


def utility_probes(ctx: VerifyContext) -> dict[str, list[Probe]]:
    return {name: [Probe(r, 0) for r in records] for name, records in utility_groups(ctx).items()}


def answer_nll(ctx: VerifyContext, subject: Subject, probes: Sequence[Probe]) -> list[float]:
    """Per probe: the mean negative log-likelihood of its answer tokens in the trained form (the option
    letter for multiple choice: utility is what the model was trained to answer, unlike membership,
    which scores option text)."""
    stats = subject.stats([p.prompt_record() for p in probes], ctx.root, ctx.policy)
    return [-float(s.logps.mean()) for s in stats]


def _cumulative_check(ctx: VerifyContext) -> tuple[dict, Check]:
    """Per part of the baseline panel (never-trained images, trained records): first served minus
    candidate success over the records still kept; the check reads the worse part (a part the kept
    stream rehearses may rise and must not hide the other's fall)."""
    baseline = ctx.baseline or {}
    parts = kept_panel(baseline, ctx.corpus, ctx.removed_ids())
    table: dict[str, dict] = {}
    for part in UTILITY_PARTS:
        records = parts.get(part)
        if not records:
            continue
        first, now = first_and_now(ctx, records)
        table[part] = {"first_served": rate([f > 0 for f in first]), "candidate": rate([f > 0 for f in now]),
                       "drop": paired_difference(first, now, seed=ctx.policy.seed)}
    check = ctx.worst_check(
        {part: row["drop"] for part, row in table.items()}, name="cumulative_utility", attack="utility",
        threshold=ctx.policy.max_cumulative_drop, comparison="<=", diagnosis="cumulative utility loss",
        detail="first served model minus candidate success on the lineage's baseline panel, worst part",
        nothing="no lineage baseline given",
    )
    return table, check


def _likelihood_check(ctx: VerifyContext, probes: dict[str, list[Probe]]) -> tuple[dict, Check]:
    increases: dict[str, Estimate] = {}
    for group, items in probes.items():
        if items:
            increases[group] = paired_difference(
                answer_nll(ctx, ctx.candidate, items),
                answer_nll(ctx, ctx.original, items),
                seed=ctx.policy.seed,
            )
    check = ctx.worst_check(
        increases, name="utility_likelihood", attack="utility", threshold=ctx.policy.max_nll_increase,
        comparison="<=", diagnosis="utility loss",
        detail="answer NLL increase (nats/token) over the original, worst group",
        nothing="no utility items to score",
    )
    return increases, check


@register_attack("utility")
class Utility(Attack):
    def run(self, ctx: VerifyContext) -> AttackResult:
        policy = ctx.policy
        tables: dict = {}
        checks: list[Check] = []
        probes = utility_probes(ctx)
        for group, items in probes.items():
            original = [float(f) for f in ctx.original.success(items, ctx.root, policy)] if items else []
            candidate = [float(f) for f in ctx.candidate.success(items, ctx.root, policy)] if items else []
            tables[group] = {
                "original": rate([f > 0 for f in original]),
                "candidate": rate([f > 0 for f in candidate]),
                "drop": paired_difference(original, candidate, seed=policy.seed),
            }
        for name, (prefix, field, diagnosis) in GROUP_CHECKS.items():
            checks.append(
                ctx.worst_check(
                    {g: row["drop"] for g, row in tables.items() if g.split(" (")[0] == prefix},
                    name=name,
                    attack="utility",
                    threshold=getattr(policy, field),
                    comparison="<=",
                    diagnosis=diagnosis,
                    detail="original minus candidate success, worst group",
                    nothing=f"no {prefix} to ask",
                )
            )
        tables["nll_increase"], likelihood = _likelihood_check(ctx, probes)
        tables["baseline"], cumulative = _cumulative_check(ctx)
        checks += [likelihood, cumulative]
        return AttackResult(tables=tables, checks=checks)
