"""The seam to the testbed's prompt renderer (``mllm.data.prompts.render_prompt``, Testbed v2).

Until that renderer is on this branch a stand-in adds the hierarchy context the record carries
(institution, patient, study, section) in front of the question; it is removed once the one
renderer lands, so training and attacks render prompts in exactly one place.
"""

from __future__ import annotations

from mllm.data.schema import Record

try:  # Testbed v2
    from mllm.data.prompts import render_prompt as render
except ImportError:  # pragma: no cover - removed when Testbed v2 is merged
    _LABELS = ("Institution", "Patient", "Study", "Section")

    def render(record: Record, depth: int) -> str:
        """Question preceded by the first ``depth`` context lines (stand-in, see module docstring)."""
        if not 0 <= depth <= 4:
            raise ValueError("context depth must be in 0..4")
        values = (record.institution_id, record.patient_id, record.study_id,
                  record.section.value if record.section else "STUDY")
        context = " ".join(f"{label}: {value}." for label, value in zip(_LABELS[:depth], values, strict=False))
        return f"{context} {record.question}" if context else record.question

__all__ = ["render"]
