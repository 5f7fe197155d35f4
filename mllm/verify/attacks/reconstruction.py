"""Hierarchical reconstruction: every forget fact asked at context depth 0-4, in held-out forms and
through each modality, scored against the matched never-trained reference.

Held-out forms are asked at depths 0 and 4. Checks: ``forget_depth0`` (under-forgetting),
``forget_context`` (depth 1-4: context brings it back), ``forget_forms`` (held-out phrasings and
cross-task forms), ``forget_modalities`` (image-only, text-only, image+text identification),
``child_leakage`` (facts of the node's descendants), ``earlier_forgotten_leak`` (records earlier jobs
removed from this model's lineage, at depths 0 and 4, sampled to ``max_utility_items``: a version that
brings an earlier request's patient back, e.g. unlearned from a pre-certificate base) and
``over_forgetting`` (forget answered below the reference, depths 0-4 and task forms pooled).

For a whole patient or institution a model that never saw the node is exchangeable with the
never-trained twins, so over-forgetting is judged as a **shortfall**: the share of the twins' success
the forget set misses, ``1 - forget / reference`` (0 % where a never-seen patient gets 13 % is a
shortfall of 1). A deficit in absolute points cannot do this: the twins of the demo corpus
succeed on only ~0.08-0.22 of the pooled probes, so a forget set answered at 0.03 is 0.10 below them
- under any absolute edge that keeps the retrain oracle passing, whose worst single task form (23
facts) came 0.15-0.19 below its twins by sampling noise. Pooled, the same runs read: retrain oracle
shortfall 0.17 / -0.56 / -0.44, the over-forgetting candidate 0.77 / 0.76 / 0.43 (demo corpus seeds
5-7, ``benchmarks/verification.py``).

Under a kept patient — a study or section request — the twins are no such reference: a model that
never saw the node still knows the patient's other studies and answers with their values, below a
stranger's chance (the tiny test world's study-level retrain oracle: multiple choice 0.06 vs its
twins' 0.38). There the check keeps the absolute pooled deficit (``max_forget_deficit``), which
catches only an over-forgetting deeper than the reference's own level of success.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from mllm.data.schema import Level, Record

from ..context import VerifyContext
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


def _deficit(excess: Estimate) -> Estimate:
    """Reference minus success: how far below the never-trained reference the forget set is answered."""
    return Estimate(-excess.value, excess.n, -excess.high, -excess.low, excess.method)


def _check(
    ctx: VerifyContext,
    name: str,
    rows: dict[str, dict[str, Estimate]],
    threshold: float,
    diagnosis: str,
    what: str,
) -> Check:
    """The excess over the reference, judged on the deciding row (:meth:`VerifyContext.worst_check`)."""
    return ctx.worst_check(
        {key: row["excess"] for key, row in rows.items()},
        name=name,
        attack="reconstruction",
        threshold=threshold,
        comparison="<=",
        diagnosis=diagnosis,
        detail=f"worst {what}",
        nothing=f"no {what} to probe",
    )


def over_forgetting_check(ctx: VerifyContext, pooled: dict[str, Estimate]) -> Check:
    """Forget answered below its never-trained twins, depths and tasks pooled: for a whole patient or
    institution the shortfall (share of the twins' success the forget set misses), under a kept
    patient the deficit (see the module docstring)."""
    whole_subject = getattr(getattr(ctx.scope, "node", None), "level", None) in WHOLE_SUBJECT
    estimate, threshold, what = (
        (pooled["shortfall"], ctx.policy.max_forget_shortfall, "shortfall: 1 - forget / reference")
        if whole_subject
        else (_deficit(pooled["excess"]), ctx.policy.max_forget_deficit, "deficit: reference - forget")
    )
    return ctx.check(
        name="over_forgetting",
        attack="reconstruction",
        value=estimate.value,
        threshold=threshold,
        comparison="<=",
        estimate=estimate,
        diagnosis="over-forgetting",
        detail=f"depths 0-4 and task forms pooled, {what} "
        f"({pooled['forget'].value:.3f} vs {pooled['reference'].value:.3f})",
    )


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
                str(d): ctx.compare(ctx.oracle, [Probe(r, d) for r in forget]) for d in DEPTHS
            }
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
            over_forgetting_check(ctx, pooled),
        ]
        return AttackResult(tables=tables, checks=checks)
