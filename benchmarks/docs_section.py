"""Write one benchmark's section of ``docs/benchmarks.md``, between its BEGIN/END markers.

Every benchmark script renders its own section (starting ``<!-- BEGIN <key> -->`` and ending
``<!-- END <key> -->``) and calls :func:`replace_section`; a section not yet in the file is appended.
"""

from __future__ import annotations

from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
_NEW_FILE = ("# Benchmarks\n\nMeasured results. Each section is written by the script it names; rerun the "
             "command in a section to reproduce it.\n")


def replace_section(key: str, section: str, docs: Path = DOCS) -> None:
    """Replace the ``key`` section of ``docs`` with ``section`` (which carries both markers)."""
    begin, end = f"<!-- BEGIN {key} -->", f"<!-- END {key} -->"
    text = docs.read_text(encoding="utf-8") if docs.exists() else _NEW_FILE
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section.rstrip("\n") + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    docs.parent.mkdir(exist_ok=True)
    docs.write_text(text, encoding="utf-8")
