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

from core.home import IDENTIFIER_HMAC_KEY, secret


class IdentifierKind(enum.StrEnum):
    """What an identifier is; part of the hashed message so equal strings of different kinds differ."""

    MRN = "mrn"  # value is "system|value" (FHIR Identifier with type MR)
    STUDY_UID = "study-uid"  # DICOM StudyInstanceUID
    INSTITUTION = "institution"
    SECTION = "section"  # value is "<study uid_hash>|<section name>"
    RECORD = "record"
    REQUESTER = "requester"  # a requester's own reference (case number, agent id)


URN_OID = "urn:oid:"

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


def default_mrn_system(code: str) -> str:
    """The MRN identifier system assumed for an institution that has not configured its own."""
    return f"urn:oblivio:institution:{code}:mrn"


def normalize_uid(uid: str) -> str:
    """A DICOM UID without surrounding whitespace or the ``urn:oid:`` prefix FHIR puts before it."""
    value = uid.strip()
    return value[len(URN_OID):] if value.lower().startswith(URN_OID) else value


def study_uid_hash(uid: str) -> str:
    """Keyed hash of a StudyInstanceUID, given bare (``1.2.840...``) or as ``urn:oid:1.2.840...``."""
    return keyed_hash(IdentifierKind.STUDY_UID, normalize_uid(uid))


def short(digest: str) -> str:
    """The form identifiers are shown in to people: the first 12 hex digits of the keyed hash."""
    return digest[:12]
