"""Ed25519 signing with the deployment key (``$OBLIVIO_HOME/secrets/signing_key.pem``).

Used for audit checkpoints now and for certificates later. Verification needs only the public key,
so auditors can check signatures offline.
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .home import SIGNING_KEY, secret


@lru_cache(maxsize=1)
def signing_key() -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(secret(SIGNING_KEY), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise RuntimeError("the signing key file does not hold an Ed25519 private key")
    return key


def public_key_pem() -> str:
    """The deployment's public key in PEM (SubjectPublicKeyInfo), for auditors."""
    return signing_key().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def key_id(public_pem: str | None = None) -> str:
    """SHA-256 (hex, first 16 digits) of the raw public key: names the key in signatures."""
    public = (load_public_key(public_pem) if public_pem else signing_key().public_key())
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def sign(message: bytes) -> str:
    """Base64 Ed25519 signature of ``message`` with the deployment key."""
    return base64.b64encode(signing_key().sign(message)).decode()


def load_public_key(public_pem: str) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(public_pem.encode())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def verify(public_pem: str, message: bytes, signature_b64: str) -> bool:
    """True if ``signature_b64`` is a valid signature of ``message`` under ``public_pem``."""
    try:
        load_public_key(public_pem).verify(base64.b64decode(signature_b64, validate=True), message)
    except (InvalidSignature, ValueError):
        return False
    return True
