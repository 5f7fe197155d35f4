"""The data directory and the secrets generated into it.

Everything a deployment writes lives under one directory: the embedded SQLite database, the
embedded broker's folders, model artifacts, the secrets, the signing-key registry and the audit
witness. It is ``$OBLIVIO_HOME`` (an absolute path) when set, else the user's data directory
``$XDG_DATA_HOME/oblivio`` (``~/.local/share/oblivio``) — never relative to the working directory,
so every command of one user finds the same keys wherever it is started.

Secrets are generated on first use with owner-only permissions: the value is written to a private
temporary file, then linked into place with an exclusive create, so processes starting together
end with one complete key (never an empty or half-written file).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path

from cryptography.fernet import Fernet

DJANGO_SECRET_KEY = "django_secret_key"
IDENTIFIER_HMAC_KEY = "identifier_hmac_key"
WEBHOOK_SECRET_KEY = "webhook_secret_key"  # Fernet key sealing webhook secrets at rest


class HomeError(RuntimeError):
    """The data directory or a secret in it is unusable; the message says what to do."""


def default_home() -> Path:
    """``$XDG_DATA_HOME/oblivio``, else ``~/.local/share/oblivio``."""
    base = os.environ.get("XDG_DATA_HOME", "").strip()
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".local" / "share"
    return root / "oblivio"


def oblivio_home() -> Path:
    """The data directory, created if missing."""
    configured = os.environ.get("OBLIVIO_HOME", "").strip()
    if configured:
        home = Path(configured).expanduser()
        if not home.is_absolute():
            raise HomeError(f"OBLIVIO_HOME must be an absolute path (got {configured!r}); a relative "
                            "one would name another directory from every working directory")
    else:
        home = default_home()
    home.mkdir(parents=True, exist_ok=True)
    return home


def secrets_dir() -> Path:
    directory = oblivio_home() / "secrets"
    directory.mkdir(mode=0o700, exist_ok=True)
    return directory


def create_exclusive(path: Path, value: bytes) -> bool:
    """Write ``value`` to ``path`` (mode 0600) unless it exists; ``True`` if this call created it.

    The bytes go to a temporary file in the same directory first and are linked into place, so a
    reader sees either no file or the whole value.
    """
    fd, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(value)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(partial, path)
        except FileExistsError:
            return False
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)


_GENERATORS: dict[str, Callable[[], bytes]] = {
    DJANGO_SECRET_KEY: lambda: secrets.token_urlsafe(50).encode(),
    IDENTIFIER_HMAC_KEY: lambda: secrets.token_hex(32).encode(),
    WEBHOOK_SECRET_KEY: Fernet.generate_key,
}


def ensure_secrets() -> None:
    """Generate every missing secret (called when settings load, i.e. on first run)."""
    for name in _GENERATORS:
        secret(name)


def secret(name: str) -> bytes:
    """Read secret ``name`` from ``$OBLIVIO_HOME/secrets``, generating it on first use."""
    path = secrets_dir() / name
    if not path.exists():
        create_exclusive(path, _GENERATORS[name]())
    value = path.read_bytes()
    if not value:
        raise HomeError(f"secret file {path} is empty (written by an older version that crashed); "
                        "restore it from your backup")
    return value
