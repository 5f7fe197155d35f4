"""The one prompt renderer: a record's question with hierarchy context of depth 0-4.

=====  =========================================================================
depth  the text before the question
=====  =========================================================================
0      nothing (image + question)
1      ``Institution: <name>``
2      + ``Patient MRN: <patient id>``
3      + ``Study: <study date> <modality>``
4      + ``Section: <SECTION>`` (section-level records only)
=====  =========================================================================

Training (:func:`training_prompts`), evaluation and attacks all render through
:func:`render_prompt`, so a context-adding attack asks exactly what training showed. **The context
never contains the answer**: an item of the context that contains the record's fact value (or its
answer, for generation and cloze) as a whole word is left out — the study date is not shown when
the date is asked, the institution not when its name is asked. The patient's name is never part of
the context at all (the patient is identified by MRN).

**Training depth mix** (``DEPTH_MIX``): every trainable record is rendered at a depth drawn from
the mix (uniform over 0-4), deterministically from the seed and the record id — once for the whole
run (``per-record``), or anew in every epoch (``per-epoch``, :func:`training_depth` with the epoch),
so that a fact is learnt behind every context an attacker can add rather than as one prompt
string. A rerun sees the same prompts either way.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import replace

from .schema import Record, Task

MAX_DEPTH = 4
DEPTHS = tuple(range(MAX_DEPTH + 1))
DEPTH_MIX: dict[int, float] = dict.fromkeys(DEPTHS, 1.0)  # relative weights of training depths


def _context_items(record: Record) -> list[tuple[int, str, str]]:
    """(depth, label, value) of every context item the record can show, shallowest first."""
    items = [(1, "Institution", record.institution_name or record.institution_id),
             (2, "Patient MRN", record.patient_id)]
    items += [(3, "Study", value) for value in (record.study_date, record.modality) if value]
    if record.section is not None:
        items.append((4, "Section", record.section.value))
    return items


def _secrets(record: Record) -> list[str]:
    """Strings the context must not contain: the fact value and (unless a letter) the answer."""
    values = [record.fact_value]
    if record.task is not Task.CLASSIFICATION:
        values.append(record.answer)
    return [value.strip() for value in values if value.strip()]


def _leaks(text: str, secrets: Sequence[str]) -> bool:
    return any(re.search(rf"(?<!\w){re.escape(secret)}(?!\w)", text, re.IGNORECASE) for secret in secrets)


def context_lines(record: Record, depth: int) -> list[str]:
    """The context lines of ``record`` at ``depth`` (items that would reveal the answer left out)."""
    if depth not in DEPTHS:
        raise ValueError(f"depth must be in 0..{MAX_DEPTH}")
    secrets = _secrets(record)
    lines: dict[str, list[str]] = {}
    for item_depth, label, value in _context_items(record):
        if item_depth <= depth and not _leaks(value, secrets):
            lines.setdefault(label, []).append(value)
    return [f"{label}: {' '.join(values)}" for label, values in lines.items()]


# The record fields behind the context items of each depth (the section header is the record's own).
CONTEXT_FIELDS: dict[int, tuple[str, ...]] = {
    1: ("institution_id", "institution_name"),
    2: ("patient_id",),
    3: ("study_date", "modality"),
}


def with_context_of(record: Record, donor: Record, depth: int) -> Record:
    """``record`` placed under ``donor``'s context items of depths 1..``depth`` (institution; + patient;
    + study): how a never-trained twin is asked under a forgotten node's kept ancestors. A field whose
    own value the renderer hides for ``record`` (the value it asks) stays its own, so it stays hidden.
    The copy's record id names the borrowed context by digest (answer caches keep the two apart)."""
    secrets = _secrets(record)
    fields = [f for d in range(1, depth + 1) for f in CONTEXT_FIELDS.get(d, ())
              if not _leaks(str(getattr(record, f) or ""), secrets)]
    if not fields:
        return record
    borrowed = "\x1f".join(f"{f}={getattr(donor, f)}" for f in fields)
    tag = hashlib.sha256(borrowed.encode()).hexdigest()[:12]
    return replace(record, record_id=f"{record.record_id}@{tag}", **{f: getattr(donor, f) for f in fields})


def render_prompt(record: Record, depth: int) -> str:
    """The prompt text of ``record`` at context ``depth`` (0 = the question alone)."""
    return "\n".join([*context_lines(record, depth), record.question])


def training_depth(record: Record, seed: int, epoch: int | None = None) -> int:
    """The context depth ``record`` is trained at: drawn from ``DEPTH_MIX`` by seed and record id (and
    ``epoch``, when every epoch draws anew)."""
    key = f"depth:{seed}:{record.record_id}" if epoch is None else f"depth:{seed}:{epoch}:{record.record_id}"
    digest = hashlib.sha256(key.encode()).digest()
    point = int.from_bytes(digest[:8], "big") / 2**64 * sum(DEPTH_MIX.values())
    for depth, weight in DEPTH_MIX.items():
        if point < weight:
            return depth
        point -= weight
    return MAX_DEPTH


def training_prompts(records: Sequence[Record], seed: int) -> list[str]:
    """The prompts the model is trained on: each record at its :func:`training_depth`."""
    return [render_prompt(record, training_depth(record, seed)) for record in records]
