"""Hierarchical reconstruction: every forget fact asked at context depth 0-4, in held-out forms and
through each modality, scored against the matched never-trained reference.

Held-out forms are asked at depths 0 and 4. Checks: ``forget_depth0`` (under-forgetting),
``forget_context`` (depth 1-4: context brings it back), ``forget_tasks`` (each task — generation,
cloze, multiple choice — over depths 0-4: a scope forgotten in two tasks and answered in the third
nets out in the per-depth rows, where a task the candidate answers below its twins cancels the one it
leaks), ``forget_levels`` (the facts each level owns — the node's own and each descendant level's — over
depths 0-4: a patient's name and birth date still answered while the many facts of their studies are
gone), ``forget_forms`` (held-out phrasings and cross-task forms), ``forget_modalities`` (image-only,
text-only, image+text identification),
``child_leakage`` (facts of the node's descendants, depths 0-4 pooled: each depth of them is
already judged inside ``forget_depth0`` / ``forget_context``, whose forget set holds the children;
the per-depth rows stay in the report as diagnosis), ``earlier_forgotten_leak`` (records earlier jobs
removed from this model's lineage, at depths 0 and 4, sampled to ``max_utility_items``: a version that
brings an earlier request's patient back, e.g. unlearned from a pre-certificate base) and
``over_forgetting`` (forget answered below the reference, tasks pooled over the comparable depths).

For a whole patient or institution a model that never saw the node is exchangeable with the
never-trained twins, so over-forgetting is judged as a **shortfall**: the share of the twins' success
the forget set misses, ``1 - forget / reference`` (0 % where a never-seen patient gets 13 % is a
shortfall of 1). A deficit in absolute points cannot do this: the twins of the demo corpus
succeed on only ~0.08-0.22 of the pooled probes, so a forget set answered at 0.03 is 0.10 below them
- under any absolute edge that keeps the retrain oracle passing, whose worst single task form (23
facts) came 0.15-0.19 below its twins by sampling noise. Pooled, the same runs read: retrain oracle
shortfall 0.17 / -0.56 / -0.44, the over-forgetting candidate 0.77 / 0.76 / 0.43 (demo corpus seeds
5-7, ``benchmarks/verification.py``).

Exchangeable only at the **comparable depths** (:func:`comparable_depths`): the twins are holdout
patients of trained institutions, so from depth 1 on their prompts name an institution the model was
trained on, while a forgotten institution's do not. The demo corpus's institution-level retrain
oracle (seed 0) reads its never-seen institution at shortfall 0.04 at depth 0 and 0.23 / 0.30 / 0.36
/ 0.37 at depths 1-4 (the over-forgetting candidate 0.76-0.88 at every depth), so an institution is
judged at depth 0 alone, a patient at depths 0-4.

Under a kept patient — a study or section request — no depth is comparable: a model that never saw
the node still knows the patient's other studies and answers with their values, below a stranger's
chance, so the twins' *success* is no reference for it. Measured, the retrain oracle misses as much of
its twins' success as the over-forgetting candidate does: shortfall 0.75 vs 1.0 (tiny test world, a
study), 0.76 vs 0.97 (demo corpus, a study, seed 0), 0.83 vs 0.60 (demo, a FINDINGS section of one
fact, seed 0), and the passing ``hierarchy`` run 0.35 / 0.78, even with the twins asked under the
kept patient (:meth:`~mllm.verify.context.VerifyContext.twin_under`). What such a model does do is
answer **right or with the patient's other values**
(:meth:`~mllm.verify.context.VerifyContext.kept_patient_value`: the truth, or a value the patient
holds for that fact key and task in the kept data — never one of the removed facts, in any form), as
a model that knows the patient answers a study of theirs it never saw. So there ``over_forgetting``
is the shortfall of such answers on the forget facts (generation and cloze, depths 2-4, the patient
named) against the **original's** answers to their never-trained twins asked under the patient
(:func:`kept_patient_values`; threshold ``max_kept_value_shortfall``). The reference is the
original's, not the candidate's: a candidate taught wrong answers for the patient gives its twins
under that patient the same wrong kind of answer (tiny test world: 0.0 against 0.0 on the
over-forgetting candidate itself). Measured on the tiny test world (a study of a patient with two
studies, 11 facts; reference 0.19): retrain oracle -1.06, the passing ``hierarchy`` run -1.17,
no-op and the leaking candidates -4.2 to -1.8, sibling-damaged 0.31; over-forgetting (other
patients' values) 0.83, refusal-tuned, collapsed and GA-wrecked 1.0. A patient with one study has no
other values (the demo benchmark's seeded ``study`` targets, seeds 0 and 1): the rule is then success
against the original's twins asked under the patient — demo seed 0: retrain oracle 0.23 (0.23 vs
0.29), ``hierarchy`` -0.04, over-forgetting 0.96. On the demo's sibling studies (seeds 0-4) the rule
caught the over-forgetting candidate on 3 of 5 and read the retrain oracle up to 0.53: on ~10 facts
it is weak evidence, decisive only for blatant cases (docs/benchmarks.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from mllm.data.schema import Level, Record, Task

from ..context import VerifyContext
from ..probes import DEPTHS, TEXT_ONLY, Probe, is_eval_only
from ..registry import Attack, AttackResult, register_attack
from ..report import Check
from ..stats import Estimate

FORM_DEPTHS = (0, 4)  # held-out forms: without context and with all of it
PATIENT_NAMED = 2  # the context depth from which a prompt names the patient
MODALITIES: dict[str, Callable[[Record], Probe]] = {
    "image-only identification (image, depth 0)": lambda r: Probe(r, 0),
    "text-only identification (no image, depth 4)": lambda r: Probe(r, 4, TEXT_ONLY),
    "image+text identification (image, depth 4)": lambda r: Probe(r, 4),
}


def _check(
    ctx: VerifyContext,
    name: str,
    rows: dict[str, dict[str, Estimate]],
    threshold: float,
    diagnosis: str,
    what: str,
    evidence: Sequence[Record],
) -> Check:
    """The excess over the reference on ``evidence``, judged on the deciding row
    (:meth:`VerifyContext.worst_check`)."""
    return ctx.worst_check(
        {key: row["excess"] for key, row in rows.items()},
        name=name,
        attack="reconstruction",
        threshold=threshold,
        comparison="<=",
        diagnosis=diagnosis,
        detail=f"worst {what}",
        nothing=f"no {what} to probe",
        evidence=evidence,
    )


def comparable_depths(level: Level | None) -> tuple[int, ...]:
    """The context depths at which a model that never saw a node of ``level`` reads its forget items
    as it reads their never-trained twins: every depth for a patient, depth 0 for an institution
    (whose name the twins' context never shares), none under a kept patient (module docstring)."""
    return {Level.PATIENT: DEPTHS, Level.INSTITUTION: (0,)}.get(level, ())  # type: ignore[arg-type]


def kept_patient_values(ctx: VerifyContext, forget: Sequence[Record]) -> dict[str, Estimate]:
    """Under a kept patient: how often the candidate answers the forget facts (generation and cloze,
    depths 2-4, the patient named) right or with a value the patient holds elsewhere in the kept
    data, against how often the original answers their never-trained twins asked under the patient
    so (:meth:`VerifyContext.kept_patient_value`); empty for a scope with no kept patient."""
    probes = [Probe(r, d) for r in forget if r.task is not Task.CLASSIFICATION
              and ctx.kept_depth(r) >= PATIENT_NAMED for d in DEPTHS if d >= PATIENT_NAMED]
    if not probes:
        return {}
    return ctx.compare(ctx.candidate, probes, VerifyContext.kept_patient_value, reference=ctx.original)


def over_forgetting_check(ctx: VerifyContext, pooled: dict[str, Estimate], depths: Sequence[int],
                          kept: dict[str, Estimate], evidence: Sequence[Record]) -> Check:
    """Forget answered below its never-trained twins, tasks pooled over the comparable ``depths``,
    judged as a shortfall (the share of the twins' success the forget set misses); under a kept
    patient, the shortfall of answers right or with the patient's other values (``kept``,
    :func:`kept_patient_values`; module docstring). A batch with records of both kinds is judged on
    both, a failing one deciding."""
    fields = dict(name="over_forgetting", attack="reconstruction", comparison="<=",
                  diagnosis="over-forgetting", evidence=evidence)

    def shortfall(rows: dict[str, Estimate], threshold: float, what: str, reference: str) -> Check:
        return ctx.check(value=rows["shortfall"].value, estimate=rows["shortfall"], threshold=threshold,
                         detail=f"{what}, shortfall: 1 - forget / {reference} "
                         f"({rows['forget'].value:.3f} vs {rows['reference'].value:.3f})", **fields)

    judged = []
    if depths:
        where = f"{'depth' if len(depths) == 1 else 'depths'} {', '.join(map(str, depths))} and tasks pooled"
        judged.append(shortfall(pooled, ctx.policy.max_forget_shortfall, where, "reference"))
    if kept:
        judged.append(shortfall(kept, ctx.policy.max_kept_value_shortfall,
                                "under the kept patient (depths 2-4), answers right or with the patient's "
                                "other values", "the original's twins"))
    if not judged:
        return ctx.check(value=math.nan, estimate=None, threshold=ctx.policy.max_forget_shortfall,
                         detail="no comparable depth and no kept patient to judge it by", **fields)
    return next((check for check in judged if check.passed is False), judged[0])


@register_attack("reconstruction")
class Reconstruction(Attack):
    def run(self, ctx: VerifyContext) -> AttackResult:
        policy, subject = ctx.policy, ctx.candidate
        forget = [r for r in ctx.group("forget") if not is_eval_only(r)]
        forms = ctx.group("forget_forms") + [r for r in ctx.group("forget") if is_eval_only(r)]
        children = [r for r in ctx.group("children") if not is_eval_only(r)]
        earlier = ctx.sample([r for r in ctx.group("earlier_forgotten") if not is_eval_only(r)])

        def row(probes: Sequence[Probe]) -> dict[str, Estimate]:
            return ctx.compare(subject, probes)

        grid = [Probe(r, d) for r in forget for d in DEPTHS]
        depth = {str(d): row([Probe(r, d) for r in forget]) for d in DEPTHS}
        form = (
            {str(d): row([Probe(r, d) for r in forms]) for d in FORM_DEPTHS} if forms else {}
        )
        modality = {name: row([make(r) for r in forget]) for name, make in MODALITIES.items()}
        child = (
            {str(d): row([Probe(r, d) for r in children]) for d in DEPTHS} if children else {}
        )
        child_pooled = row([Probe(r, d) for r in children for d in DEPTHS]) if children else {}
        lineage = {str(d): row([Probe(r, d) for r in earlier]) for d in FORM_DEPTHS if earlier}
        task = {
            t: row([p for p in grid if p.record.task.value == t])
            for t in sorted({r.task.value for r in forget})
        }
        level = {
            lv: row([p for p in grid if p.record.level.value == lv])
            for lv in sorted({r.level.value for r in forget})
        }
        pooled = row(grid)
        judged = [p for p in grid if p.depth in comparable_depths(ctx.level_of(p.record))]
        comparable = tuple(sorted({p.depth for p in judged}))
        comparable_pooled = row(judged)
        kept = kept_patient_values(ctx, forget)
        every = grid + [Probe(r, d) for r in forms for d in FORM_DEPTHS]
        flags = subject.success(every, ctx.root, policy)
        reproduced = sorted({p.record.record_id for p, ok in zip(every, flags, strict=True) if ok})
        tables = {
            "by_depth": depth,
            "by_form_depth": form,
            "by_modality": modality,
            "children_by_depth": child,
            "children_pooled": child_pooled,
            "earlier_forgotten_by_depth": lineage,
            "by_task": task,
            "by_level": level,
            "pooled": pooled,
            "over_forgetting_pooled": {"depths": list(comparable), **comparable_pooled},
            "kept_patient_values": kept,
            "reproduced_record_ids": reproduced,
        }
        if ctx.oracle is not None:
            tables["oracle_by_depth"] = {
                str(d): ctx.compare(ctx.oracle, [Probe(r, d) for r in forget]) for d in DEPTHS
            }
        checks = [
            _check(
                ctx, "forget_depth0", {"0": depth["0"]}, policy.max_leak_excess, "under-forgetting", "depth",
                forget,
            ),
            _check(
                ctx,
                "forget_context",
                {k: v for k, v in depth.items() if k != "0"},
                policy.max_leak_excess,
                "context leak",
                "depth",
                forget,
            ),
            _check(ctx, "forget_tasks", task, policy.max_leak_excess, "task leak", "task", forget),
            _check(ctx, "forget_levels", level, policy.max_leak_excess, "level leak", "level", forget),
            _check(ctx, "forget_forms", form, policy.max_leak_excess, "form leak", "depth", forms),
            _check(
                ctx, "forget_modalities", modality, policy.max_leak_excess, "modality leak", "modality",
                forget,
            ),
            ctx.worst_check(
                {"depths 0-4 pooled": child_pooled["excess"]} if children else {},
                name="child_leakage", attack="reconstruction", threshold=policy.max_child_excess,
                comparison="<=", diagnosis="child leakage", detail="children", nothing="no children to probe",
                evidence=children,
            ),
            _check(
                ctx, "earlier_forgotten_leak", lineage, policy.max_leak_excess, "lineage leak", "depth",
                earlier,
            ),
            over_forgetting_check(ctx, comparable_pooled, comparable, kept, forget),
        ]
        return AttackResult(tables=tables, checks=checks)
