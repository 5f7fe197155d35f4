"""The audit chain's anchor outside the database: every signed checkpoint is also appended to a
witness file and, when configured, POSTed to an auditor's URL.

A database superuser can rewrite tables with the triggers off, but not the witness: it lives in the
data directory (``OBLIVIO_AUDIT_WITNESS_FILE``; keep it on storage the database administrator
cannot write, or mirror it off the machine) and at the auditor. Verification requires every
witnessed checkpoint to be in the database with the same hash, so deleting the tail, the last
checkpoints or everything is detected. One JSON object per line, opened ``O_APPEND``.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)
WITNESS_FIELDS = ("seq", "hash", "signed_at", "key_id", "signature")


class WitnessError(ValueError):
    """The witness file is not a sequence of checkpoint lines."""


def witness_append(path: Path, entry: dict[str, Any]) -> None:
    """Append one checkpoint line and flush it to disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({name: entry[name] for name in WITNESS_FIELDS}, sort_keys=True) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def witness_read(path: Path) -> list[dict[str, Any]]:
    """The witnessed checkpoints (none when the file does not exist yet)."""
    if not path.exists():
        return []
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            entry = json.loads(line)
            entries.append({name: entry[name] for name in WITNESS_FIELDS})
        except (ValueError, KeyError, TypeError):
            raise WitnessError(f"witness {path} line {number} is not a checkpoint") from None
    return entries


def witness_post(url: str, entry: dict[str, Any], *, timeout: float) -> bool:
    """POST one checkpoint (JSON) to the auditor's URL; ``False`` (logged) when it fails."""
    body = json.dumps({name: entry[name] for name in WITNESS_FIELDS}, sort_keys=True).encode()
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (operator's URL)
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError) as exc:
        logger.warning("audit witness POST failed", extra={"error": exc.__class__.__name__,
                                                           "seq": entry["seq"]})
        return False
