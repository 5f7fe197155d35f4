"""The lineage's utility baseline: what the *first* served model answered right on a fixed panel.

Every verification compares a candidate with the model it was unlearned from, so each request may
lose up to the utility thresholds and the losses add up along a lineage (the 16-request pipeline
benchmark: never-trained images 0.236 -> 0.181 while every request passed ``image_grounded``). The
first served version is deleted once the first request is certified, so what it knew is kept as
data: its success per record on a **panel** fixed by the corpus, not by any scope — never-trained
holdout image-grounded records (reading images the model never saw), trainable records (what it
was trained on) and never-trained holdout private facts (patients it never saw), each a seeded
sample of half of ``max_utility_items``. The baseline is a mapping record id -> success (record ids
are corpus-internal, not PHI); the pipeline stores it on every version of the lineage and hands it
to :func:`~mllm.verify.verifier.verify`, whose ``cumulative_utility`` check compares the candidate
with it on the first two parts (the records still kept), and whose ``reference_contamination``
check on the third: the never-trained patients are every forgetting check's reference, and a lineage
that slowly learns them spoils it one request at a time, each step small against its parent. A
baseline measured before the third part existed has none of its records: that row is then not read.
Outside the pipeline ``oblivio verify --save-baseline FILE`` writes it as a JSON object and
``--baseline FILE`` reads it back (:func:`read_baseline`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from mllm.data.schema import Corpus, FactKind, Record, Split
from mllm.unlearn.scope import sample

from .context import Subject, VerifyContext
from .jsonfile import read_json_file
from .policy import VerdictPolicy
from .probes import Probe

#: the panel's parts (:func:`panel_part`) that ``cumulative_utility`` reads; ``reference_contamination``
#: reads :data:`UNSEEN_PRIVATE`
UTILITY_PARTS = ("unseen_images", "trained")
UNSEEN_PRIVATE = "unseen_private"


def panel_part(record: Record) -> str:
    """The panel part a record belongs to: ``trained``, ``unseen_images`` or ``unseen_private``."""
    if record.split is Split.TRAIN:
        return "trained"
    return "unseen_images" if record.fact_kind is FactKind.IMAGE_GROUNDED else UNSEEN_PRIVATE


def baseline_panel(corpus: Corpus, policy: VerdictPolicy) -> list[Record]:
    """The panel: ``max_utility_items / 2`` records of each part (trained forms only), chosen by record
    id and the policy seed alone."""
    half = max(1, policy.max_utility_items // 2)
    usable = [r for r in corpus.records if not r.eval_only]
    parts: dict[str, list[Record]] = {}
    for record in usable:
        parts.setdefault(panel_part(record), []).append(record)
    salt = f"baseline:{policy.seed}"
    return [r for part in (*UTILITY_PARTS, UNSEEN_PRIVATE) for r in sample(parts.get(part, []), half, salt)]


def kept_panel(baseline: Mapping[str, bool], corpus: Corpus, removed: set[str]) -> dict[str, list[Record]]:
    """The baseline's records the candidate still keeps (not in ``removed``), by panel part, in record
    id order."""
    by_id = {r.record_id: r for r in corpus.records}
    parts: dict[str, list[Record]] = {}
    for record_id in sorted(baseline):
        if record_id in by_id and record_id not in removed:
            parts.setdefault(panel_part(by_id[record_id]), []).append(by_id[record_id])
    return parts


def first_and_now(ctx: VerifyContext, records: list[Record]) -> tuple[list[float], list[float]]:
    """Per panel record: the lineage's first served model's success (``ctx.baseline``) and the
    candidate's (depth 0, the verifier's own decoding), as floats for a paired difference."""
    first = [float(ctx.baseline[r.record_id]) for r in records]
    now = [float(f) for f in ctx.candidate.success([Probe(r, 0) for r in records], ctx.root, ctx.policy)]
    return first, now


def utility_baseline(model: Subject, corpus: Corpus, policy: VerdictPolicy) -> dict[str, bool]:
    """``model``'s success per panel record (depth 0, the verifier's own decoding)."""
    panel = baseline_panel(corpus, policy)
    flags = model.success([Probe(r, 0) for r in panel], corpus.root, policy)
    return {r.record_id: bool(ok) for r, ok in zip(panel, flags, strict=True)}


class BaselineFileError(ValueError):
    """A baseline file is unreadable or not a mapping of the corpus's record ids to true/false."""


def read_baseline(path: Path, corpus: Corpus) -> dict[str, bool]:
    """The baseline saved in ``path`` (a JSON object record id -> true/false), checked against
    ``corpus``; messages never repeat a record id."""
    data = read_json_file(path, "baseline", BaselineFileError)
    if not isinstance(data, dict) or not data:
        raise BaselineFileError("a baseline must be a non-empty JSON object of record ids to true/false")
    if not all(isinstance(flag, bool) for flag in data.values()):
        raise BaselineFileError("every value of a baseline must be true or false")
    unknown = set(data) - {record.record_id for record in corpus.records}
    if unknown:
        raise BaselineFileError(f"{len(unknown)} record ids of the baseline are not records of the corpus "
                                "(a baseline belongs to the corpus it was measured on)")
    return data
