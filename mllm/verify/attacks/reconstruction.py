"""Hierarchical reconstruction: every forget fact asked at context depth 0-4, in held-out forms and
through each modality, scored against the matched never-trained reference.

Held-out forms are asked at depths 0 and 4. Checks: ``forget_depth0`` (under-forgetting),
``forget_context`` (depth 1-4: context brings it back), ``forget_forms`` (held-out phrasings and
cross-task forms), ``forget_modalities`` (image-only, text-only, image+text identification),
``child_leakage`` (facts of the node's descendants) and ``over_forgetting`` (forget answered below
the reference, pooled over depths).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from mllm.data.schema import Record

from ..context import Subject, VerifyContext
from ..probes import DEPTHS, TEXT_ONLY, Probe, is_eval_only
from ..registry import Attack, AttackResult, register_attack
from ..report import Check
from ..stats import Estimate

FORM_DEPTHS = (0, 4)  # held-out forms: without context and with all of it
MODALITIES: dict[str, Callable[[Record], Probe]] = {
    "image-only identification (image, depth 0)": lambda r: Probe(r, 0),
    "text-only identification (no image, depth 4)": lambda r: Probe(r, 4, TEXT_ONLY),
    "image+text identification (image, depth 4)": lambda r: Probe(r, 4),
}


def _row(ctx: VerifyContext, subject: Subject, probes: Sequence[Probe]) -> dict[str, Estimate]:
    success, reference, excess = ctx.excess(subject, probes)
    return {"forget": success, "reference": reference, "excess": excess}


def _worst(rows: dict[str, dict[str, Estimate]]) -> tuple[str, Estimate | None]:
    finite = {k: r["excess"] for k, r in rows.items() if math.isfinite(r["excess"].value)}
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
) -> Check:
    key, worst = _worst(rows)
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
        grid = [Probe(r, d) for r in forget for d in DEPTHS]
        depth = {str(d): _row(ctx, subject, [Probe(r, d) for r in forget]) for d in DEPTHS}
        form = (
            {str(d): _row(ctx, subject, [Probe(r, d) for r in forms]) for d in FORM_DEPTHS} if forms else {}
        )
        modality = {name: _row(ctx, subject, [make(r) for r in forget]) for name, make in MODALITIES.items()}
        child = (
            {str(d): _row(ctx, subject, [Probe(r, d) for r in children]) for d in DEPTHS} if children else {}
        )
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
            "by_task": task,
            "by_level": level,
            "pooled": pooled,
            "reproduced_record_ids": reproduced,
        }
        if ctx.oracle is not None:
            tables["oracle_by_depth"] = {
                str(d): _row(ctx, ctx.oracle, [Probe(r, d) for r in forget]) for d in DEPTHS
            }
        deficit = pooled["excess"]
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
            ctx.check(
                name="over_forgetting",
                attack="reconstruction",
                value=-deficit.value,
                threshold=policy.max_forget_deficit,
                comparison="<=",
                estimate=Estimate(-deficit.value, deficit.n, -deficit.high, -deficit.low, deficit.method),
                diagnosis="over-forgetting",
                detail="matched reference minus forget success, pooled over depths 0-4",
            ),
        ]
        return AttackResult(tables=tables, checks=checks)
