"""Membership inference: can the forget items be told apart from never-trained holdout twins?

Each item is scored on its answer tokens in fp32 (:mod:`mllm.verify.stats`: loss, zlib, Min-K%,
Min-K%++), with the full hierarchy context (depth 4) in the prompt — the twins' under the forget
node's kept ancestors (:meth:`~mllm.verify.context.VerifyContext.twin_under`) — never on a single letter:
classification items are scored on their option text (:func:`mllm.verify.probes.scoring_record`).
Checks: ``membership_inference`` (every score's AUC at most ``max_mia_auc``),
``over_forgetting_likelihood`` (at least ``min_mia_auc``: forget items *less* likely than never-seen
ones) — each reports the score that decides it (a significant failure before a larger value without
one) — and, with an oracle, ``privleak``.
"""

from __future__ import annotations

import math

from mllm.data.schema import Record

from ..context import Subject, VerifyContext
from ..probes import Probe, is_eval_only, scoring_record
from ..registry import Attack, AttackResult, register_attack
from ..stats import MIA_SCORES, Estimate, auc, membership_scores, privleak

DEPTH = 4


def scoring_items(records: list[Record]) -> list[Record]:
    """Trained-form records as answer-text scoring items, deduplicated by (prompt, answer)."""
    items: dict[tuple[str, str], Record] = {}
    for record in records:
        if is_eval_only(record):
            continue
        item = scoring_record(Probe(record, DEPTH).prompt_record())
        if item is not None:
            items.setdefault((item.question, item.answer), item)
    return list(items.values())


def score_table(
    ctx: VerifyContext, subject: Subject, members: list[Record], nonmembers: list[Record]
) -> dict[str, Estimate]:
    def scores(records: list[Record]) -> list[dict[str, float]]:
        return [
            membership_scores(s.logps, s.mu, s.sigma, r.answer)
            for r, s in zip(records, subject.stats(records, ctx.root, ctx.policy), strict=True)
        ]

    m, h = scores(members), scores(nonmembers)
    return {
        name: auc([x[name] for x in m], [x[name] for x in h], seed=ctx.policy.seed) for name in MIA_SCORES
    }


@register_attack("membership")
class Membership(Attack):
    def run(self, ctx: VerifyContext) -> AttackResult:
        policy = ctx.policy
        forget = ctx.group("forget")
        holdout = ctx.group("holdout")
        twins = [ctx.twin_under(r, forget[i % len(forget)], DEPTH) for i, r in enumerate(holdout)]
        members, nonmembers = scoring_items(forget), scoring_items(twins)
        table = score_table(ctx, ctx.candidate, members, nonmembers)
        tables: dict = {"auc": table, "members": len(members), "nonmembers": len(nonmembers)}
        checks = [
            ctx.worst_check(
                table,
                name="membership_inference",
                attack="membership",
                threshold=policy.max_mia_auc,
                comparison="<=",
                null=0.5,
                diagnosis="under-forgetting (membership)",
                detail="AUC forget vs holdout twins, worst score",
                nothing="no membership items",
                evidence=forget,
            ),
            ctx.worst_check(
                table,
                name="over_forgetting_likelihood",
                attack="membership",
                threshold=policy.min_mia_auc,
                comparison=">=",
                null=0.5,
                diagnosis="over-forgetting",
                detail="AUC forget vs holdout twins, worst score",
                nothing="no membership items",
                evidence=forget,
            ),
        ]
        if ctx.oracle is not None:
            oracle = score_table(ctx, ctx.oracle, members, nonmembers)
            leak = privleak(table["loss"].value, oracle["loss"].value)
            tables["oracle_auc"] = oracle
            tables["privleak_loss"] = leak
            checks.append(
                ctx.check(
                    name="privleak",
                    attack="membership",
                    value=abs(leak) if math.isfinite(leak) else math.nan,
                    threshold=policy.max_abs_privleak,
                    comparison="<=",
                    estimate=None,
                    diagnosis="privacy leakage vs oracle",
                    evidence=forget,
                    detail=f"PrivLeak (loss) = {leak:+.3f}; > 0 under-, < 0 over-forgetting",
                )
            )
        return AttackResult(tables=tables, checks=checks)
