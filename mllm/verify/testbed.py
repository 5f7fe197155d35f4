"""The seam to Testbed v2: the prompt renderer (``mllm.data.prompts.render_prompt``) and the scope
resolver (``mllm.data.scope``).

Until that renderer is on this branch a stand-in adds the hierarchy context the record carries
(institution, patient, study, section) in front of the question; it is removed once the one
renderer lands, so training and attacks render prompts in exactly one place.
"""

from __future__ import annotations

from pathlib import Path

from mllm.data.schema import Corpus, Record

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

try:  # Testbed v2
    from mllm.data.scope import ScopeError as ScopeFileError
    from mllm.data.scope import load_scope_file, resolve_scope

    def load_scope(corpus: Corpus, path: Path) -> object:
        """The request's scope groups, from a SCOPE.json naming its node."""
        return resolve_scope(corpus, load_scope_file(path))
except ImportError:  # pragma: no cover - removed when Testbed v2 is merged
    class ScopeFileError(ValueError):  # type: ignore[no-redef]
        """A scope file cannot be read or resolved."""

    def load_scope(corpus: Corpus, path: Path) -> object:
        raise ScopeFileError("scope files need the Testbed v2 scope resolver (mllm.data.scope)")

__all__ = ["ScopeFileError", "load_scope", "render"]
