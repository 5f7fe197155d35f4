"""Relearning: a few fine-tuning steps on part of the forget scope, recovery measured on the rest.

Forgetting and hiding look alike until the model is nudged: knowledge that was only hidden comes
back after a handful of steps on *related* data. The forget facts are split in two folds (by fact,
so no fact is on both sides; seeded, ``relearn_fraction`` in the first); a copy of the candidate is
fully fine-tuned for ``relearn_steps`` steps (AdamW, ``relearn_lr``) on one fold at context depths
0 and 4, and the other fold is then asked at depth 4 — and the same with the folds swapped, so every
forget fact is measured once (cross-fitting: one split of a dozen facts, multiple-choice chance
included, moved a retrain oracle's recovery by 0.18 on demo seed 3). Recovery is compared with the
matched never-trained reference on the attacked copies. The same attack is run separately with
the siblings as the attack set (recovery measured on all forget facts), and on the oracle when given.
Checks: ``relearning_forget``, ``relearning_siblings``, ``relearning_vs_oracle``.

A candidate the attack's steps cannot move (every gradient zero: an all-zero model, or weights built
so that nothing flows back) fails both relearning checks closed: what fine-tuning would bring back
cannot be measured, and a model that resists the measurement has not shown it forgot.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Sequence

from mllm.data.schema import Record
from mllm.train.loop import NoOpTrainingError, ShuffledBatches, TrainConfig, Trainer

from ..context import Subject, VerifyContext
from ..engine import encode
from ..probes import Probe, is_eval_only
from ..registry import Attack, AttackResult, register_attack
from ..report import Check
from ..stats import Estimate, difference

ATTACK_DEPTHS = (0, 4)  # the attack fine-tunes at both ends of the context range
MEASURE_DEPTH = 4  # recovery is measured with the full context
MAX_SIBLING_ITEMS = 32
UNMOVED = "the attack's fine-tuning left the candidate unchanged (no gradient): recovery cannot be measured"


def split_by_fact(records: Sequence[Record], fraction: float, seed: int) -> tuple[list[Record], list[Record]]:
    """Two folds, ``fraction`` of the facts in the first: whole facts on one side only, seeded."""
    facts: dict[tuple, list[Record]] = {}
    for record in records:
        facts.setdefault(record.fact, []).append(record)
    keys = sorted(facts, key=str)
    random.Random(seed).shuffle(keys)
    cut = min(len(keys) - 1, max(1, math.ceil(fraction * len(keys))))
    return [r for k in keys[:cut] for r in facts[k]], [r for k in keys[cut:] for r in facts[k]]


def relearned(ctx: VerifyContext, subject: Subject, records: Sequence[Record]) -> Subject | None:
    """A fine-tuned copy of ``subject`` (the original object is left untouched), or ``None`` when the
    steps could not change it (:class:`~mllm.train.loop.NoOpTrainingError`)."""
    policy = ctx.policy
    model = copy.deepcopy(subject.model)
    for param in model.parameters():
        param.requires_grad_(True)
    prompts = [Probe(r, d).prompt_record() for r in records for d in ATTACK_DEPTHS]
    source = ShuffledBatches(
        encode(subject.processor, prompts, ctx.root), policy.relearn_batch_size, policy.seed
    )
    config = TrainConfig(
        steps=policy.relearn_steps,
        batch_size=policy.relearn_batch_size,
        lr=policy.relearn_lr,
        warmup_ratio=0.0,
        seed=policy.seed,
    )
    try:
        Trainer(model, config, source).fit()
    except NoOpTrainingError:
        return None
    return Subject(role=f"{subject.role}+relearn", model=model, processor=subject.processor, digest=None)


def _gap_check(
    ctx: VerifyContext,
    name: str,
    row: dict[str, Estimate] | None,
    threshold: float,
    detail: str,
    evidence: Sequence[Record],
    *,
    unmoved: bool = False,
) -> Check:
    """The recovery excess of ``row`` against ``threshold``; ``unmoved`` (the attack could not change
    the candidate) fails closed at the largest excess there is, 1.0, without an interval."""
    excess = row["excess"] if row else None
    return ctx.check(
        name=name,
        attack="relearning",
        value=1.0 if unmoved else excess.value if excess else math.nan,
        threshold=threshold,
        comparison="<=",
        estimate=None if unmoved else excess,
        diagnosis="hidden, not removed (relearnable)",
        detail=UNMOVED if unmoved else detail,
        evidence=evidence,
    )


def _attacked(
    ctx: VerifyContext, subject: Subject, folds: Sequence[tuple[list[Record], list[Record]]]
) -> list[tuple[Subject, list[Probe]]] | None:
    """Per fold, the copy of ``subject`` fine-tuned on one side and the probes of the other;
    ``None`` when a copy could not be moved."""
    parts = [
        (relearned(ctx, subject, tuned), [Probe(r, MEASURE_DEPTH) for r in asked]) for tuned, asked in folds
    ]
    if any(model is None for model, _ in parts):
        return None
    return parts  # type: ignore[return-value]


@register_attack("relearning")
class Relearning(Attack):
    def run(self, ctx: VerifyContext) -> AttackResult:
        policy = ctx.policy
        forget = [r for r in ctx.group("forget") if not is_eval_only(r)]
        siblings = [r for r in ctx.group("siblings") if not is_eval_only(r)]
        siblings = random.Random(policy.seed).sample(siblings, min(len(siblings), MAX_SIBLING_ITEMS))
        tables: dict = {"steps": policy.relearn_steps, "lr": policy.relearn_lr}
        checks: list[Check] = []
        first, second = split_by_fact(forget, policy.relearn_fraction, policy.seed) if forget else ([], [])
        folds = [(first, second), (second, first)] if first and second else []
        attacked = {s.role: _attacked(ctx, s, folds) for s in ctx.subjects()}
        unmoved = [role for role, parts in attacked.items() if parts is None]
        forget_rows = {role: ctx.compare_parts(p) for role, p in attacked.items() if p is not None}
        tables["forget_attack"] = {
            "fold_items": [len(tuned) for tuned, _ in folds],
            **forget_rows,
        }
        checks.append(
            _gap_check(
                ctx,
                "relearning_forget",
                forget_rows.get("candidate"),
                policy.max_relearn_gap,
                "forget recovery above matched reference after fine-tuning on the other fold of the scope",
                forget,
                unmoved="candidate" in unmoved,
            )
        )
        sibling_copy = relearned(ctx, ctx.candidate, siblings) if siblings else None
        sibling_row = (
            ctx.compare(sibling_copy, [Probe(r, MEASURE_DEPTH) for r in forget]) if sibling_copy else None
        )
        tables["sibling_attack"] = {"attack_items": len(siblings), "candidate": sibling_row}
        tables["unmoved"] = unmoved + (["candidate (siblings)"] if siblings and sibling_copy is None else [])
        checks.append(
            _gap_check(
                ctx,
                "relearning_siblings",
                sibling_row,
                policy.max_relearn_gap,
                "forget recovery above matched reference after fine-tuning on siblings",
                forget,
                unmoved=bool(siblings) and sibling_copy is None,
            )
        )
        if "oracle" in attacked and not unmoved:

            def recovered(role: str) -> list[float]:
                return [
                    float(ok)
                    for model, probes in attacked[role]
                    for ok in model.success(probes, ctx.root, policy)
                ]

            est = difference(recovered("candidate"), recovered("oracle"), seed=policy.seed)
            checks.append(
                ctx.check(
                    name="relearning_vs_oracle",
                    attack="relearning",
                    value=est.value,
                    threshold=policy.max_relearn_gap,
                    comparison="<=",
                    estimate=est,
                    diagnosis="hidden, not removed (relearnable)",
                    detail="candidate minus oracle forget success under the same attack",
                    evidence=forget,
                )
            )
        return AttackResult(tables=tables, checks=checks)
