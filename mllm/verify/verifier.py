"""``verify(...)``: attack a candidate, compare it with the references, and judge it by the policy.

References that exist in production: the **original** model (utility, suppression, collapse) and the
never-trained **holdout twins** of the scope (every forgetting check). A retrain **oracle** adds the
benchmark-only comparisons (PrivLeak, relearning against the oracle, its own reconstruction table).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from mllm.data.schema import Corpus
from mllm.models.artifact import artifact_digest
from mllm.models.families import processor_digest
from mllm.models.loader import LoadedModel, load_model
from mllm.models.runtime import worker_placement
from mllm.train.oracle import OracleMismatch, check_oracle

from . import attacks  # noqa: F401  (registers the built-in attacks)
from .context import Subject, VerifyContext, scope_list
from .policy import VerdictPolicy
from .registry import ATTACKS
from .report import VerificationReport
from .stats import DEFINITIONS

ModelRef = str | Path | LoadedModel | Subject
SCOPE_GROUPS = (
    "forget",
    "children",
    "siblings",
    "shared",
    "retain",
    "validation",
    "holdout",
    "forget_forms",
    "holdout_forms",
)


class VerifyInputError(ValueError):
    """The inputs cannot be verified (empty forget set, no holdout twins, records not in the corpus)."""


def subject(role: str, ref: ModelRef) -> Subject:
    """``ref`` loaded as the model of ``role``; pass the result to several :func:`verify` calls to read
    a shared reference (the original, the oracle) once: its answers stay cached."""
    if isinstance(ref, Subject):
        return replace(ref, role=role)  # the caches are shared, not copied
    loaded = ref if isinstance(ref, LoadedModel) else load_model(ref, **worker_placement())
    digest = artifact_digest(loaded.path) if isinstance(ref, str | Path) else None
    return Subject(role=role, model=loaded.model, processor=loaded.processor, digest=digest,
                   metadata=loaded.metadata)


def _scope_summary(corpus: Corpus, scope: Any) -> dict[str, Any]:
    known = {r.record_id for r in corpus.records}
    counts: dict[str, int] = {}
    for name in SCOPE_GROUPS:
        records = scope_list(getattr(scope, name, None))
        if any(r.record_id not in known for r in records):
            raise VerifyInputError(f"scope group '{name}' names records that are not in the corpus")
        counts[name] = len(records)
    if not counts["forget"]:
        raise VerifyInputError("the forget set is empty: nothing to verify")
    if not counts["holdout"]:
        raise VerifyInputError(
            "the scope has no never-trained holdout twins: there is no reference to verify against"
        )
    ids = "\n".join(sorted(r.record_id for r in scope_list(scope.forget))).encode()
    return {"counts": counts, "forget_ids_sha256": hashlib.sha256(ids).hexdigest()}


def _same_processor(original: Subject, others: list[Subject]) -> None:
    """Every model is read and scored with one processor: unlearning never changes the tokenizer or
    the image preprocessing, so a candidate (or oracle) that brings other ones is refused — a changed
    vocabulary, normalizer or image normalisation could hide the forgotten answers from the attacks."""
    expected = processor_digest(original.processor)
    for other in others:
        if processor_digest(other.processor) != expected:
            raise VerifyInputError(
                f"the {other.role}'s processor (tokenizer, chat template or image preprocessing) is not the "
                "original's: an unlearned model keeps its original's processor"
            )


def comparable_oracle(original: Subject, oracle: Subject, scope: Any) -> None:
    """Refuse an ``oracle`` that is not a retrain oracle of ``original`` from the same clean start,
    corpus and recipe with exactly the scope's forget set (and earlier forgotten records) left out,
    read from both artifacts' metadata (:func:`mllm.train.oracle.check_oracle`): compared with any
    other model, PrivLeak and the oracle tables would measure something else."""
    if original.metadata is None or oracle.metadata is None:
        raise VerifyInputError(
            "the oracle and the original must be Oblivio artifacts: without their training metadata the "
            "oracle cannot be shown to be a retrain of the original"
        )
    left_out = [*scope_list(scope.forget), *scope_list(getattr(scope, "earlier_forgotten", None))]
    excluded = {record.record_id for record in left_out}
    try:
        check_oracle(oracle.metadata, original.metadata, forget_ids=excluded)
    except OracleMismatch as error:
        raise VerifyInputError(str(error)) from error


def verify(
    *,
    original: ModelRef,
    candidate: ModelRef,
    corpus: Corpus,
    scope: Any,
    oracle: ModelRef | None = None,
    policy: VerdictPolicy | None = None,
    progress: Callable[[str, float], None] | None = None,
    baseline: Mapping[str, bool] | None = None,
) -> VerificationReport:
    """Run every registered attack on ``candidate`` and return the judged report.

    ``original``/``candidate``/``oracle`` are model directories, already loaded models (a loaded
    candidate may be any object whose forward pass is the model's — the verifier never relies on its
    ``generate``) or :func:`subject` results shared between calls. ``scope`` is the request's
    ``ScopeGroups``. ``baseline`` is the lineage's first served model's success per panel record
    (:func:`mllm.verify.baseline.utility_baseline`); without it ``cumulative_utility`` is not
    applicable. Raises :class:`VerifyInputError` (also when the candidate or oracle does not use the
    original's processor, or the oracle is not the original's retrain oracle: :func:`comparable_oracle`).
    """
    policy = policy or VerdictPolicy()
    summary = _scope_summary(corpus, scope)
    torch.manual_seed(policy.seed)
    ctx = VerifyContext(
        corpus=corpus,
        scope=scope,
        policy=policy,
        candidate=subject("candidate", candidate),
        original=subject("original", original),
        oracle=subject("oracle", oracle) if oracle is not None else None,
        progress=progress,
        baseline=baseline,
    )
    _same_processor(ctx.original, ctx.subjects())
    if ctx.oracle is not None:
        comparable_oracle(ctx.original, ctx.oracle, scope)
    checks, tables, timing = [], {}, {}
    for index, (name, attack) in enumerate(ATTACKS.items()):
        ctx.report(name, index / len(ATTACKS))
        started = time.perf_counter()
        result = attack().run(ctx)
        timing[name] = round(time.perf_counter() - started, 3)
        checks += result.checks
        tables[name] = result.tables
    ctx.report("done", 1.0)
    inputs = {
        "original_digest": ctx.original.digest,
        "candidate_digest": ctx.candidate.digest,
        "oracle_digest": ctx.oracle.digest if ctx.oracle else None,
        "corpus_records_sha256": corpus.header.records_sha256,
        "scope": summary,
        "references": ["original", "holdout_twins"] + (["retrain_oracle"] if ctx.oracle else []),
    }
    return VerificationReport(
        checks=checks,
        attacks=tables,
        inputs=inputs,
        policy=policy.as_dict(),
        definitions=DEFINITIONS,
        timing=timing,
    )
