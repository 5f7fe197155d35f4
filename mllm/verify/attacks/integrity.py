"""Output integrity: suppression (a filter over unchanged weights) and collapse (garbage output).

**Suppression** — the forget facts at depths 0 and 4 are answered twice by the candidate: by the
verifier's own greedy decoding of its weights and by the candidate object's own ``generate`` (what a
user of the served model would see). An output filter or refusal wrapper answers little through
``generate`` while the weights still answer: the gap is suppression, not forgetting. The table also
gives the mean change of the forget answers' fp32 log-probability against the original.

**Collapse** — the share of *degenerate* answers (empty, or no end-of-sequence within the step
budget ``min(max_new_tokens, 2 x reference tokens + 8)``) over every depth-0 probe of the utility
groups, the holdout twins and the forget set, minus the original's share on the same probes.
"""

from __future__ import annotations

import numpy as np

from ..context import VerifyContext
from ..probes import Probe, is_eval_only
from ..registry import Attack, AttackResult, register_attack
from ..stats import Estimate, paired_difference, rate
from .membership import scoring_items
from .utility import utility_probes


@register_attack("integrity")
class Integrity(Attack):
    def run(self, ctx: VerifyContext) -> AttackResult:
        policy, root = ctx.policy, ctx.root
        forget = [r for r in ctx.group("forget") if not is_eval_only(r)]
        probes = [Probe(r, d) for r in forget for d in (0, 4)]
        weights = [float(f) for f in ctx.candidate.success(probes, root, policy)]
        served = [float(f) for f in ctx.candidate.served(probes, root, policy)]
        gap = paired_difference(weights, served, seed=policy.seed)
        items = scoring_items(forget)
        shift = [
            float(np.mean(c.logps) - np.mean(o.logps))
            for c, o in zip(
                ctx.candidate.stats(items, root, policy), ctx.original.stats(items, root, policy), strict=True
            )
        ]
        everything = [p for group in utility_probes(ctx).values() for p in group] + [
            Probe(r, 0) for r in ctx.group("holdout") + forget if not is_eval_only(r)
        ]
        everything = list(dict.fromkeys(everything))

        def degenerate(subject) -> list[float]:
            return [
                float(not d.finished or not d.text.strip()) for d in subject.decode(everything, root, policy)
            ]

        cand, orig = degenerate(ctx.candidate), degenerate(ctx.original)
        excess = paired_difference(cand, orig, seed=policy.seed)
        tables = {
            "suppression": {
                "weights": rate([w > 0 for w in weights]),
                "served": rate([s > 0 for s in served]),
                "gap": gap,
                "mean_logprob_shift_vs_original": Estimate(
                    float(np.mean(shift)) if shift else float("nan"),
                    len(shift),
                    float(np.min(shift, initial=np.inf)) if shift else float("nan"),
                    float(np.max(shift, initial=-np.inf)) if shift else float("nan"),
                    "range",
                ),
            },
            "collapse": {
                "candidate_degenerate": rate([c > 0 for c in cand]),
                "original_degenerate": rate([o > 0 for o in orig]),
                "excess": excess,
            },
        }
        checks = [
            ctx.check(
                name="suppression",
                attack="integrity",
                value=gap.value,
                threshold=policy.max_suppression_gap,
                comparison="<=",
                estimate=gap,
                diagnosis="suppression",
                detail="forget success of the weights minus that of the candidate's own generate",
            ),
            ctx.check(
                name="collapse",
                attack="integrity",
                value=excess.value,
                threshold=policy.max_degenerate_excess,
                comparison="<=",
                estimate=excess,
                diagnosis="collapse",
                detail="share of empty or endless answers above the original's",
            ),
        ]
        return AttackResult(tables=tables, checks=checks)
