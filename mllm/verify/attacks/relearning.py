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
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Sequence

from mllm.data.schema import Record
from mllm.train.loop import ShuffledBatches, TrainConfig, Trainer

from ..context import Subject, VerifyContext
from ..engine import encode
from ..probes import Probe, is_eval_only
from ..registry import Attack, AttackResult, register_attack
from ..report import Check
from ..stats import Estimate, difference

ATTACK_DEPTHS = (0, 4)  # the attack fine-tunes at both ends of the context range
MEASURE_DEPTH = 4  # recovery is measured with the full context
MAX_SIBLING_ITEMS = 32


def split_by_fact(records: Sequence[Record], fraction: float, seed: int) -> tuple[list[Record], list[Record]]:
    """Two folds, ``fraction`` of the facts in the first: whole facts on one side only, seeded."""
    facts: dict[tuple, list[Record]] = {}
    for record in records:
        facts.setdefault(record.fact, []).append(record)
    keys = sorted(facts, key=str)
    random.Random(seed).shuffle(keys)
    cut = min(len(keys) - 1, max(1, math.ceil(fraction * len(keys))))
    return [r for k in keys[:cut] for r in facts[k]], [r for k in keys[cut:] for r in facts[k]]


def relearned(ctx: VerifyContext, subject: Subject, records: Sequence[Record]) -> Subject:
    """A fine-tuned copy of ``subject`` (the original object is left untouched)."""
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
    Trainer(model, config, source).fit()
    return Subject(role=f"{subject.role}+relearn", model=model, processor=subject.processor, digest=None)


def _gap_check(
    ctx: VerifyContext,
    name: str,
    row: dict[str, Estimate] | None,
    threshold: float,
    detail: str,
    evidence: Sequence[Record],
) -> Check:
    excess = row["excess"] if row else None
    return ctx.check(
        name=name,
        attack="relearning",
        value=excess.value if excess else math.nan,
        threshold=threshold,
        comparison="<=",
        estimate=excess,
        diagnosis="hidden, not removed (relearnable)",
        detail=detail,
        evidence=evidence,
    )


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
        attacked = {  # role -> per fold: (the copy fine-tuned on one fold, the probes of the other)
            s.role: [
                (relearned(ctx, s, tuned), [Probe(r, MEASURE_DEPTH) for r in asked]) for tuned, asked in folds
            ]
            for s in ctx.subjects()
        }
        forget_rows = {role: ctx.compare_parts(parts) for role, parts in attacked.items()}
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
            )
        )
        sibling_row = (
            ctx.compare(relearned(ctx, ctx.candidate, siblings), [Probe(r, MEASURE_DEPTH) for r in forget])
            if siblings
            else None
        )
        tables["sibling_attack"] = {"attack_items": len(siblings), "candidate": sibling_row}
        checks.append(
            _gap_check(
                ctx,
                "relearning_siblings",
                sibling_row,
                policy.max_relearn_gap,
                "forget recovery above matched reference after fine-tuning on siblings",
                forget,
            )
        )
        if "oracle" in attacked:

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
