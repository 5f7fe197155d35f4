"""Reading the JSON input files of ``oblivio verify`` (policy, baseline) with one kind of message."""

from __future__ import annotations

import json
from pathlib import Path


def read_json_file(path: Path | str, what: str, error: type[ValueError]) -> object:
    """The JSON value in ``path``; unreadable or invalid files raise ``error`` naming ``what`` (e.g.
    "policy") and the line, never the file's content."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"cannot read the {what} file: {getattr(exc, 'strerror', None) or exc}") from None
    except json.JSONDecodeError as exc:
        raise error(f"the {what} file is not valid JSON (line {exc.lineno})") from None
