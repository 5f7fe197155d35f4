"""The data directory (``OBLIVIO_HOME``, default ``./var``) and the secrets generated into it.

Everything a deployment writes lives under one directory: the embedded SQLite database, the
embedded broker's folders, model artifacts and the secrets below. Secrets are generated on first
use with owner-only permissions and are never committed.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

DJANGO_SECRET_KEY = "django_secret_key"
IDENTIFIER_HMAC_KEY = "identifier_hmac_key"
SIGNING_KEY = "signing_key.pem"
WEBHOOK_SECRET_KEY = "webhook_secret_key"  # Fernet key sealing webhook secrets at rest


def oblivio_home() -> Path:
    """The data directory, created if missing."""
    home = Path(os.environ.get("OBLIVIO_HOME", "var")).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home


def _new_signing_key() -> bytes:
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())


_GENERATORS: dict[str, Callable[[], bytes]] = {
    DJANGO_SECRET_KEY: lambda: secrets.token_urlsafe(50).encode(),
    IDENTIFIER_HMAC_KEY: lambda: secrets.token_hex(32).encode(),
    SIGNING_KEY: _new_signing_key,
    WEBHOOK_SECRET_KEY: Fernet.generate_key,
}


def ensure_secrets() -> None:
    """Generate every missing secret (called when settings load, i.e. on first run)."""
    for name in _GENERATORS:
        secret(name)


def secret(name: str) -> bytes:
    """Read secret ``name`` from ``$OBLIVIO_HOME/secrets``, generating it on first use.

    Creation uses ``O_EXCL`` so a web server and a worker starting together agree on one value.
    """
    directory = oblivio_home() / "secrets"
    directory.mkdir(mode=0o700, exist_ok=True)
    path = directory / name
    if not path.exists():
        value = _GENERATORS[name]()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as handle:
                handle.write(value)
            return value
    value = path.read_bytes()
    if not value:
        raise RuntimeError(f"secret file {path} is empty; delete it to generate a new one")
    return value
