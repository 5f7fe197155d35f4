"""Ed25519 signing keys with a registry in the data directory, so keys can rotate.

- ``$OBLIVIO_HOME/secrets/signing/<key id>.pem``: the private key that signs now (owner-only);
  ``secrets/signing/active`` names it. Rotation writes a new key, switches ``active`` and deletes
  the retired private key.
- ``$OBLIVIO_HOME/keys/<key id>.pem``: every public key this deployment ever signed with. Retired
  keys stay here, so old signatures keep verifying.

The key id is the first 16 hex digits of SHA-256 over the raw public key; every signature is
reported with it (``sign`` returns ``(key_id, signature)``). Verification needs public keys only,
so auditors check signatures offline. This module is free of Django.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .home import HomeError, create_exclusive, oblivio_home, secrets_dir

ACTIVE = "active"
LEGACY_SIGNING_KEY = "signing_key.pem"  # single key of deployments before the registry


def _private_dir() -> Path:
    directory = secrets_dir() / "signing"
    directory.mkdir(mode=0o700, exist_ok=True)
    return directory


def _public_dir() -> Path:
    directory = oblivio_home() / "keys"
    directory.mkdir(exist_ok=True)
    return directory


def _public_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def load_public_key(public_pem: str) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(public_pem.encode())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def key_id_of(public_pem: str) -> str:
    """SHA-256 (hex, first 16 digits) of the raw public key: names the key in signatures."""
    raw = load_public_key(public_pem).public_bytes(serialization.Encoding.Raw,
                                                   serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _pkcs8(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _store(key: Ed25519PrivateKey) -> str:
    """Write a private key file (not yet active); returns its key id."""
    key_id = key_id_of(_public_pem(key.public_key()))
    create_exclusive(_private_dir() / f"{key_id}.pem", _pkcs8(key))
    return key_id


def _publish(key_id: str) -> None:
    public = _public_pem(_private_key(key_id).public_key())
    create_exclusive(_public_dir() / f"{key_id}.pem", public.encode())


def _first_key() -> Ed25519PrivateKey:
    legacy = secrets_dir() / LEGACY_SIGNING_KEY
    if legacy.exists():
        key = serialization.load_pem_private_key(legacy.read_bytes(), password=None)
        if isinstance(key, Ed25519PrivateKey):
            return key
    return Ed25519PrivateKey.generate()


def active_key_id() -> str:
    """The id of the key that signs now, creating the first key on first use."""
    pointer = _private_dir() / ACTIVE
    if not pointer.exists():
        key_id = _store(_first_key())
        if create_exclusive(pointer, key_id.encode()):
            (secrets_dir() / LEGACY_SIGNING_KEY).unlink(missing_ok=True)  # adopted: one copy only
        elif pointer.read_text().strip() != key_id:
            with contextlib.suppress(FileNotFoundError):  # another process created the first key
                (_private_dir() / f"{key_id}.pem").unlink()
    key_id = pointer.read_text().strip()
    if not key_id:
        raise HomeError(f"{pointer} is empty; restore the data directory from your backup")
    _publish(key_id)
    return key_id


@lru_cache(maxsize=8)
def _private_key(key_id: str) -> Ed25519PrivateKey:
    path = _private_dir() / f"{key_id}.pem"
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise HomeError(f"the active signing key {key_id} is missing from {path.parent}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise HomeError(f"{path} does not hold an Ed25519 private key")
    return key


def sign(message: bytes) -> tuple[str, str]:
    """Sign ``message`` with the active key: ``(key_id, base64 Ed25519 signature)``."""
    key_id = active_key_id()
    return key_id, base64.b64encode(_private_key(key_id).sign(message)).decode()


def public_keys() -> dict[str, str]:
    """Every public key this deployment has signed with (active and retired), by key id."""
    active_key_id()
    return {path.stem: path.read_text() for path in sorted(_public_dir().glob("*.pem"))}


def public_key_pem(key_id: str | None = None) -> str:
    """The public key (PEM, SubjectPublicKeyInfo) of ``key_id``, default the active key."""
    return public_keys()[key_id or active_key_id()]


def verify_pem(public_pem: str, message: bytes, signature_b64: str) -> bool:
    """True if ``signature_b64`` is a valid signature of ``message`` under ``public_pem``."""
    try:
        load_public_key(public_pem).verify(base64.b64decode(signature_b64, validate=True), message)
    except (InvalidSignature, ValueError):
        return False
    return True


def verify(key_id: str, message: bytes, signature_b64: str, *,
           keys: Mapping[str, str] | None = None) -> bool:
    """True if ``key_id`` is a known key (``keys``, default this deployment's registry) and the
    signature is valid under it."""
    public = (public_keys() if keys is None else keys).get(key_id)
    return public is not None and verify_pem(public, message, signature_b64)


def _activate(key_id: str) -> None:
    pointer = _private_dir() / ACTIVE
    staged = pointer.with_name(f".{ACTIVE}.{os.getpid()}")
    staged.write_text(key_id)
    os.replace(staged, pointer)


def rotate_key() -> tuple[str, str]:
    """Make a new key the active one: ``(old_id, new_id)``. The old private key is kept until
    :func:`discard_private_key`, so a caller whose bookkeeping fails can :func:`reactivate` it."""
    old_id = active_key_id()
    new_id = _store(Ed25519PrivateKey.generate())
    _publish(new_id)
    _activate(new_id)
    return old_id, new_id


def reactivate(key_id: str) -> None:
    """Undo a rotation whose bookkeeping failed (the key must still have its private file)."""
    _private_key(key_id)
    _activate(key_id)


def discard_private_key(key_id: str) -> None:
    """Delete a retired private key; its public key stays in the registry."""
    if key_id == active_key_id():
        raise ValueError("the active signing key cannot be discarded")
    _private_key.cache_clear()
    with contextlib.suppress(FileNotFoundError):
        (_private_dir() / f"{key_id}.pem").unlink()
