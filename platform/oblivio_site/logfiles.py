"""Rotating log files for ``oblivio demo``: one writer per file, whatever the children do.

The web server and the worker log JSON lines to stderr (what containers collect). The demo pipes
each child's output into ``$OBLIVIO_LOG_DIR/<name>.log`` (default ``$OBLIVIO_HOME/logs``), rotated at
``OBLIVIO_LOG_MAX_BYTES`` with ``OBLIVIO_LOG_BACKUPS`` old files kept. A single pump thread per
child writes its file, so gunicorn's worker processes and Celery's pool never race on a rotation.
"""

from __future__ import annotations

import logging
import threading
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import IO


class LogPump(threading.Thread):
    """Copy the lines of ``stream`` (a child's stdout) into a rotating file until the stream ends."""

    def __init__(self, stream: IO[bytes], path: Path, *, max_bytes: int, backups: int) -> None:
        super().__init__(name=f"log-pump-{path.name}", daemon=True)
        self._stream = stream
        self._handler = RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        self._handler.setFormatter(logging.Formatter("%(message)s"))

    def run(self) -> None:
        try:
            for raw in iter(self._stream.readline, b""):
                line = raw.decode("utf-8", errors="replace").rstrip("\n")
                self._handler.emit(logging.makeLogRecord({"msg": line, "levelno": logging.INFO}))
        finally:
            self._handler.close()
