"""Model artifacts behind one storage interface (a local directory now, an object store later).

Artifacts are stored under their content digest, so storing the same artifact twice (a worker that
re-runs a step after a crash) is a no-op, and a stored artifact can be re-checked at any time.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Protocol

from django.conf import settings

from core.home import oblivio_home
from mllm.models.artifact import artifact_digest


class ArtifactStorage(Protocol):
    """Where model artifacts live. Keys are content digests."""

    def put(self, source: Path) -> str:
        """Store the artifact directory ``source``; return its key (digest)."""

    def path(self, key: str) -> Path:
        """A local directory holding the artifact (downloaded first by remote stores)."""

    def delete(self, key: str) -> None:
        """Remove the artifact (idempotent)."""

    def exists(self, key: str) -> bool: ...


class LocalDirectoryStorage:
    """Artifacts as ``<root>/<digest>/`` directories, written by an atomic rename."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _dir(self, key: str) -> Path:
        if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            raise ValueError("artifact keys are SHA-256 hex digests")
        return self.root / key

    def put(self, source: Path) -> str:
        key = artifact_digest(source)
        target = self._dir(key)
        if target.is_dir():
            return key
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{key[:12]}.", dir=self.root))
        try:
            shutil.copytree(source, staging, dirs_exist_ok=True)
            if artifact_digest(staging) != key:
                raise OSError("artifact changed while it was being stored")
            try:
                staging.rename(target)
            except OSError:
                if not target.is_dir():  # another worker stored the same artifact first
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return key

    def path(self, key: str) -> Path:
        target = self._dir(key)
        if not target.is_dir():
            raise FileNotFoundError(f"artifact {key[:12]} is not in the store")
        return target

    def delete(self, key: str) -> None:
        shutil.rmtree(self._dir(key), ignore_errors=True)

    def exists(self, key: str) -> bool:
        return self._dir(key).is_dir()


def artifact_storage() -> ArtifactStorage:
    """The configured store (``OBLIVIO_ARTIFACT_DIR``, default ``$OBLIVIO_HOME/artifacts``)."""
    root = settings.OBLIVIO_ARTIFACT_DIR
    return LocalDirectoryStorage(Path(root) if root else oblivio_home() / "artifacts")
