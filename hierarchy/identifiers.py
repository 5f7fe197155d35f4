"""Keyed hashes of direct identifiers (MRN, StudyInstanceUID, ...).

Oblivio stores, logs, audits and certifies identifiers only as HMAC-SHA256 hashes under a
per-deployment secret (``$OBLIVIO_HOME/secrets/identifier_hmac_key``). A lookup hashes the value it
is given and compares hashes, so the raw identifier never needs to be kept.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from functools import lru_cache

from oblivio_site.home import IDENTIFIER_HMAC_KEY, secret


class IdentifierKind(enum.StrEnum):
    """What an identifier is; part of the hashed message so equal strings of different kinds differ."""

    MRN = "mrn"  # value is "system|value" (FHIR Identifier with type MR)
    STUDY_UID = "study-uid"  # DICOM StudyInstanceUID
    INSTITUTION = "institution"
    RECORD = "record"


@lru_cache(maxsize=1)
def _key() -> bytes:
    return secret(IDENTIFIER_HMAC_KEY)


def keyed_hash(kind: IdentifierKind, value: str) -> str:
    """HMAC-SHA256 (hex) of ``kind:value`` after trimming surrounding whitespace."""
    message = f"{kind.value}:{value.strip()}".encode()
    return hmac.new(_key(), message, hashlib.sha256).hexdigest()


def mrn_hash(system: str, value: str) -> str:
    """Keyed hash of a medical record number within its assigning system."""
    return keyed_hash(IdentifierKind.MRN, f"{system.strip()}|{value.strip()}")


def short(digest: str) -> str:
    """The form identifiers are shown in to people: the first 12 hex digits of the keyed hash."""
    return digest[:12]
