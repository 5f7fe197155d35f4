"""Hierarchical reconstruction: every forget fact asked at context depth 0-4, in held-out forms and
through each modality, scored against the matched never-trained reference.

Held-out forms are asked at depths 0 and 4. Checks: ``forget_depth0`` (under-forgetting),
``forget_context`` (depth 1-4: context brings it back), ``forget_forms`` (held-out phrasings and
cross-task forms), ``forget_modalities`` (image-only, text-only, image+text identification),
``child_leakage`` (facts of the node's descendants), ``earlier_forgotten_leak`` (records earlier jobs
removed from this model's lineage, at depths 0 and 4, sampled to ``max_utility_items``: a version that
brings an earlier request's patient back, e.g. unlearned from a pre-certificate base) and
``over_forgetting`` (forget answered below the reference, depths 0-4 pooled; for a whole patient or
institution in the worst task form: a model trained to answer a multiple-choice fact wrong picks
the truth below a stranger's chance although its generation and cloze deficits, and so the deficit
pooled over tasks, stay small. Under a kept patient — a study or section request — a model that
never saw the node still knows the patient's other studies and picks their values in multiple
choice, below a stranger's chance: the tiny test world's retrain oracle 0.06 vs its twins 0.38, so
there the tasks stay pooled. The image-grounded facts are not a row of their own: with the 24
image-grounded facts of a demo patient the retrain oracle read the forgotten images 0.23 below its
twins' (0.17 vs 0.40, seed 0) - a patient's images are not as easy as their twins' - and the
over-forgetting candidate 0.21 below).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from mllm.data.schema import Level, Record

from ..context import Subject, VerifyContext
from ..probes import DEPTHS, TEXT_ONLY, Probe, is_eval_only
from ..registry import Attack, AttackResult, register_attack
from ..report import Check
from ..stats import Estimate

WHOLE_SUBJECT = (Level.PATIENT, Level.INSTITUTION)  # nodes no kept record shares a patient with
FORM_DEPTHS = (0, 4)  # held-out forms: without context and with all of it
MODALITIES: dict[str, Callable[[Record], Probe]] = {
    "image-only identification (image, depth 0)": lambda r: Probe(r, 0),
    "text-only identification (no image, depth 4)": lambda r: Probe(r, 4, TEXT_ONLY),
    "image+text identification (image, depth 4)": lambda r: Probe(r, 4),
}


def _row(ctx: VerifyContext, subject: Subject, probes: Sequence[Probe]) -> dict[str, Estimate]:
    success, reference, excess = ctx.excess(subject, probes)
    return {"forget": success, "reference": reference, "excess": excess}


def _deficit(excess: Estimate) -> Estimate:
    """Reference minus success: how far below the never-trained reference the forget set is answered."""
    return Estimate(-excess.value, excess.n, -excess.high, -excess.low, excess.method)


def _worst(rows: dict[str, dict[str, Estimate]], *, below: bool = False) -> tuple[str, Estimate | None]:
    """The row with the largest excess over the reference (``below``: the largest deficit)."""
    signed = {k: _deficit(r["excess"]) if below else r["excess"] for k, r in rows.items()}
    finite = {k: e for k, e in signed.items() if math.isfinite(e.value)}
    if not finite:
        return "", None
    key = max(finite, key=lambda k: finite[k].value)
    return key, finite[key]


def _check(
    ctx: VerifyContext,
    name: str,
    rows: dict[str, dict[str, Estimate]],
    threshold: float,
    diagnosis: str,
    what: str,
    *,
    below: bool = False,
) -> Check:
    key, worst = _worst(rows, below=below)
    return ctx.check(
        name=name,
        attack="reconstruction",
        value=worst.value if worst else math.nan,
        threshold=threshold,
        comparison="<=",
        estimate=worst,
        diagnosis=diagnosis,
        detail=f"worst {what}: {key}" if key else f"no {what} to probe",
    )


@register_attack("reconstruction")
class Reconstruction(Attack):
    def run(self, ctx: VerifyContext) -> AttackResult:
        policy, subject = ctx.policy, ctx.candidate
        forget = [r for r in ctx.group("forget") if not is_eval_only(r)]
        forms = ctx.group("forget_forms") + [r for r in ctx.group("forget") if is_eval_only(r)]
        children = [r for r in ctx.group("children") if not is_eval_only(r)]
        earlier = ctx.sample([r for r in ctx.group("earlier_forgotten") if not is_eval_only(r)])
        grid = [Probe(r, d) for r in forget for d in DEPTHS]
        depth = {str(d): _row(ctx, subject, [Probe(r, d) for r in forget]) for d in DEPTHS}
        form = (
            {str(d): _row(ctx, subject, [Probe(r, d) for r in forms]) for d in FORM_DEPTHS} if forms else {}
        )
        modality = {name: _row(ctx, subject, [make(r) for r in forget]) for name, make in MODALITIES.items()}
        child = (
            {str(d): _row(ctx, subject, [Probe(r, d) for r in children]) for d in DEPTHS} if children else {}
        )
        lineage = {str(d): _row(ctx, subject, [Probe(r, d) for r in earlier]) for d in FORM_DEPTHS if earlier}
        task = {
            t: _row(ctx, subject, [p for p in grid if p.record.task.value == t])
            for t in sorted({r.task.value for r in forget})
        }
        level = {
            lv: _row(ctx, subject, [p for p in grid if p.record.level.value == lv])
            for lv in sorted({r.level.value for r in forget})
        }
        pooled = _row(ctx, subject, grid)
        every = grid + [Probe(r, d) for r in forms for d in FORM_DEPTHS]
        flags = subject.success(every, ctx.root, policy)
        reproduced = sorted({p.record.record_id for p, ok in zip(every, flags, strict=True) if ok})
        tables = {
            "by_depth": depth,
            "by_form_depth": form,
            "by_modality": modality,
            "children_by_depth": child,
            "earlier_forgotten_by_depth": lineage,
            "by_task": task,
            "by_level": level,
            "pooled": pooled,
            "reproduced_record_ids": reproduced,
        }
        if ctx.oracle is not None:
            tables["oracle_by_depth"] = {
                str(d): _row(ctx, ctx.oracle, [Probe(r, d) for r in forget]) for d in DEPTHS
            }
        whole_subject = getattr(getattr(ctx.scope, "node", None), "level", None) in WHOLE_SUBJECT
        deficits = task if whole_subject else {"all tasks": pooled}
        checks = [
            _check(
                ctx, "forget_depth0", {"0": depth["0"]}, policy.max_leak_excess, "under-forgetting", "depth"
            ),
            _check(
                ctx,
                "forget_context",
                {k: v for k, v in depth.items() if k != "0"},
                policy.max_leak_excess,
                "context leak",
                "depth",
            ),
            _check(ctx, "forget_forms", form, policy.max_leak_excess, "form leak", "depth"),
            _check(ctx, "forget_modalities", modality, policy.max_leak_excess, "modality leak", "modality"),
            _check(ctx, "child_leakage", child, policy.max_child_excess, "child leakage", "depth"),
            _check(ctx, "earlier_forgotten_leak", lineage, policy.max_leak_excess, "lineage leak", "depth"),
            _check(
                ctx,
                "over_forgetting",
                deficits,
                policy.max_forget_deficit,
                "over-forgetting",
                "task form",
                below=True,
            ),
        ]
        return AttackResult(tables=tables, checks=checks)
