"""Output integrity: suppression (a filter over unchanged weights), collapse (garbage output) and
unattested answers (a refusal taught into the weights).

**Suppression** — the forget facts at depths 0 and 4 are answered twice by the candidate: by the
verifier's own greedy decoding of its weights and by the candidate object's own ``generate`` (what a
user of the served model would see). An output filter or refusal wrapper answers little through
``generate`` while the weights still answer: the gap is suppression, not forgetting. The table also
gives the mean change of the forget answers' fp32 log-probability against the original.

**Collapse** — the share of *degenerate* answers (empty, or no end-of-sequence within the step
budget ``min(max_new_tokens, 2 x reference tokens + 8)``) over every depth-0 probe of the utility
groups, the holdout twins and the forget set, minus the original's share on the same probes.

**Unattested answers** (``unattested_answers``) — answers no corpus record holds for the fact asked
(:mod:`mllm.verify.attested`: "I don't know.", a date given for a name), where a model that never saw
the records would not give them. A model that never saw a patient answers it with values it was
trained on, right or wrong; a candidate taught to refuse (or to answer with the wrong kind of value)
gives itself away on one of two rows, judged as one check (the row furthest past the threshold
decides): **in scope** — the forget facts at depths 0-4 given such answers more often than their
never-trained twins asked the same way (:meth:`~mllm.verify.context.VerifyContext.compare`), the
refusal itself the tell that the node was removed; **unseen** — the never-trained holdout records at
depths 0 and 4 given such answers more often than by the original (paired): the refusal spread to
every patient the candidate does not know, which hides the scope among its twins and fails the
hospital's new patients. The check names the forget facts as evidence: an ``exact`` candidate, a
retraining that cannot have been taught to refuse, is not held back by it
(:meth:`compliance.pipeline.engine.VerifyOutcome.accepts`).

**Reference contamination** (``reference_contamination``) — every forgetting check compares the
candidate with its own answers about never-trained holdout twins. A candidate taught those patients
(an unlearning run whose replacement data held their records, a later fine-tune that took them in)
answers them as well as the forgotten ones, and every comparison with them then passes while it leaks.
The original never saw them, so the twins' private facts at depths 0-4 answered right by the candidate
more often than by the original (paired) are a reference spoiled, not forgetting measured. Compared with
its parent alone, a lineage could learn them a little per request, each step under the edge: with the
lineage's baseline (:mod:`..baseline`) the candidate is also compared with the *first* served model on
the panel's never-trained private facts (depth 0, paired), and the check reads the worse row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mllm.data.schema import FactKind, Record

from ..baseline import UNSEEN_PRIVATE, first_and_now, kept_panel
from ..context import VerifyContext
from ..probes import DEPTHS, Probe, is_eval_only
from ..registry import Attack, AttackResult, register_attack
from ..report import Check
from ..stats import Estimate, paired_difference, rate
from .membership import scoring_items
from .utility import utility_probes

IN_SCOPE = "forget, depths 0-4, vs never-trained twins"
UNSEEN = "never-trained holdout, depths 0 and 4, vs the original"


def unattested_check(ctx: VerifyContext, forget: Sequence[Record]) -> tuple[dict[str, Any], Check]:
    """``unattested_answers``: answers no corpus record holds for the fact asked, on two rows (module
    docstring) judged as one check; its tables (the in-scope row by depth as well)."""
    depths = {str(d): [Probe(r, d) for r in forget] for d in DEPTHS}
    grid = [p for probes in depths.values() for p in probes]
    in_scope = ctx.compare(ctx.candidate, grid, VerifyContext.unattested)
    unseen = [Probe(r, d) for r in ctx.group("holdout") if not is_eval_only(r) for d in (0, 4)]
    flags = ([float(f) for f in ctx.unattested(s, unseen)] for s in (ctx.candidate, ctx.original))
    rows = {IN_SCOPE: in_scope["excess"], UNSEEN: paired_difference(*flags, seed=ctx.policy.seed)}
    tables = {
        IN_SCOPE: in_scope,
        f"{IN_SCOPE} by depth": {
            d: ctx.compare(ctx.candidate, probes, VerifyContext.unattested) for d, probes in depths.items()
        },
        UNSEEN: rows[UNSEEN],
    }
    check = ctx.worst_check(
        rows,
        name="unattested_answers",
        attack="integrity",
        threshold=ctx.policy.max_unattested_excess,
        comparison="<=",
        diagnosis="unattested answers",
        detail="share of answers no corpus record holds for the fact asked, above a never-seen reference",
        nothing="no record to probe",
        evidence=forget,
    )
    return tables, check


def contamination_check(ctx: VerifyContext) -> tuple[dict[str, Any], Check]:
    """``reference_contamination``: never-trained patients' private facts answered by the candidate
    beyond the original, and beyond the lineage's first served model (module docstring); its table."""
    twins = [r for r in ctx.group("holdout") if r.fact_kind is FactKind.PRIVATE and not is_eval_only(r)]
    probes = [Probe(r, d) for r in twins for d in DEPTHS]
    flags = ([float(f) for f in ctx.success(s, probes)] for s in (ctx.candidate, ctx.original))
    gains = {"twins_private_gain_vs_original": paired_difference(*flags, seed=ctx.policy.seed)}
    panel = kept_panel(ctx.baseline or {}, ctx.corpus, ctx.removed_ids()).get(UNSEEN_PRIVATE, [])
    if panel:
        first, now = first_and_now(ctx, panel)
        gains["unseen_private_gain_vs_first_served"] = paired_difference(now, first, seed=ctx.policy.seed)
    check = ctx.worst_check(
        gains,
        name="reference_contamination",
        attack="integrity",
        threshold=ctx.policy.max_reference_gain,
        comparison="<=",
        diagnosis="contaminated reference",
        detail="never-trained patients' private facts answered right above the reference model: the "
        "candidate was taught the reference it is compared with",
        nothing="no never-trained private facts to ask",
    )
    return gains, check


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
        unattested_tables, unattested = unattested_check(ctx, forget)
        tables["unattested"] = unattested_tables
        tables["reference"], contamination = contamination_check(ctx)
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
            unattested,
            contamination,
        ]
        return AttackResult(tables=tables, checks=checks)
