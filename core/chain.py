"""The audit chain's arithmetic, free of Django: event hashes, checkpoint messages, verification.

The same functions check the live database (:mod:`core.audit`) and an exported file offline
(``oblivio audit verify --file``), which must work without a configured deployment.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import rfc8785

from . import signing

GENESIS_HASH = "0" * 64
EXPORT_FORMAT = "oblivio-audit-export/v2"
EXPORT_FORMATS = ("oblivio-audit-export/v1", EXPORT_FORMAT)  # v1: one key, ``public_key_pem``
CHECKPOINT_TYPE = "oblivio.audit.checkpoint/v1"
EVENT_FIELDS = ("seq", "occurred_at", "actor", "action", "object_type", "object_id", "subject_hash",
                "data", "prev_hash", "hash")


def event_hash(prev_hash: str, entry: dict[str, Any]) -> str:
    """SHA-256 over the previous hash (32 bytes) followed by the RFC 8785 JSON of ``entry``."""
    return hashlib.sha256(bytes.fromhex(prev_hash) + rfc8785.dumps(entry)).hexdigest()


def event_entry(event: dict[str, Any]) -> dict[str, Any]:
    """The hashed part of an event: everything but its own hash and the previous hash."""
    return {name: event[name] for name in EVENT_FIELDS if name not in {"hash", "prev_hash"}}


def checkpoint_message(seq: int, digest: str, signed_at: str) -> bytes:
    """The bytes a checkpoint signs: RFC 8785 JSON of its type, ``seq``, ``hash`` and time."""
    return rfc8785.dumps({"type": CHECKPOINT_TYPE, "seq": seq, "hash": digest, "signed_at": signed_at})


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    events_checked: int
    checkpoints_checked: int
    first_bad_seq: int | None = None
    problem: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "events_checked": self.events_checked,
                "checkpoints_checked": self.checkpoints_checked, "first_bad_seq": self.first_bad_seq,
                "problem": self.problem}


def verify_chain(events: Iterable[dict[str, Any]], checkpoints: list[dict[str, Any]], *,
                 public_keys: Mapping[str, str], head: dict[str, Any] | None = None) -> VerifyResult:
    """Check a chain given as dicts in ``seq`` order; name the first bad event.

    Detects edited events (hash mismatch), deleted or reordered events (sequence gap or broken
    ``prev_hash`` link), and truncation (a signed checkpoint or the head beyond the last event).
    Each checkpoint must be signed by the key its ``key_id`` names in ``public_keys``.
    """
    expected_seq, running, count = 1, GENESIS_HASH, 0
    hashes: dict[int, str] = {}
    for event in events:
        seq = event["seq"]
        if seq != expected_seq:
            return VerifyResult(False, count, 0, expected_seq,
                                f"event #{expected_seq} is missing (deleted or reordered); "
                                f"next present is #{seq}")
        if event["prev_hash"] != running:
            return VerifyResult(False, count, 0, seq,
                                f"event #{seq} does not follow #{seq - 1} (prev_hash mismatch)")
        if event_hash(running, event_entry(event)) != event["hash"]:
            return VerifyResult(False, count, 0, seq, f"event #{seq} was altered (hash mismatch)")
        running = event["hash"]
        hashes[seq] = running
        expected_seq, count = seq + 1, count + 1
    last = expected_seq - 1
    for number, checkpoint in enumerate(sorted(checkpoints, key=lambda c: c["seq"]), start=1):
        message = checkpoint_message(checkpoint["seq"], checkpoint["hash"], checkpoint["signed_at"])
        if checkpoint["key_id"] not in public_keys:
            return VerifyResult(False, count, number - 1, checkpoint["seq"],
                                f"checkpoint @{checkpoint['seq']} is signed by key {checkpoint['key_id']}, "
                                f"which is not among the trusted keys")
        if not signing.verify(checkpoint["key_id"], message, checkpoint["signature"], keys=public_keys):
            return VerifyResult(False, count, number - 1, checkpoint["seq"],
                                f"checkpoint @{checkpoint['seq']} has an invalid signature")
        if checkpoint["seq"] > last:
            return VerifyResult(False, count, number - 1, last + 1,
                                f"events #{last + 1}..#{checkpoint['seq']} are missing: a signed "
                                f"checkpoint covers #{checkpoint['seq']} (chain truncated)")
        if hashes[checkpoint["seq"]] != checkpoint["hash"]:
            return VerifyResult(False, count, number - 1, checkpoint["seq"],
                                f"event #{checkpoint['seq']} differs from its signed checkpoint")
    if head is not None and (head["seq"], head["hash"]) != (last, running if last else GENESIS_HASH):
        return VerifyResult(False, count, len(checkpoints), min(head["seq"], last) + 1,
                            f"the chain head records #{head['seq']} but the chain ends at #{last} "
                            f"(truncated or rewritten)")
    return VerifyResult(True, count, len(checkpoints))


def verify_witness(checkpoints: list[dict[str, Any]], witness: list[dict[str, Any]], *,
                   public_keys: Mapping[str, str]) -> str:
    """The first disagreement between the database's checkpoints and the witness ('' if none).

    Every validly signed witness entry must be among ``checkpoints`` with the same hash; the
    chain itself is checked against the checkpoints by :func:`verify_chain`.
    """
    stored = {(c["seq"], c["signed_at"]): c for c in checkpoints}
    for entry in witness:
        message = checkpoint_message(entry["seq"], entry["hash"], entry["signed_at"])
        if not signing.verify(entry["key_id"], message, entry["signature"], keys=public_keys):
            return f"the witness entry for checkpoint @{entry['seq']} is not validly signed"
        match = stored.get((entry["seq"], entry["signed_at"]))
        if match is None:
            return (f"checkpoint @{entry['seq']} signed at {entry['signed_at']} is in the witness "
                    f"but not in the database (checkpoints or events deleted)")
        if match["hash"] != entry["hash"]:
            return f"checkpoint @{entry['seq']} disagrees with the witness (rewritten)"
    return ""


def staleness_problem(*, newest_checkpoint_at: datetime | None, first_event_at: datetime | None,
                      now: datetime, max_age: timedelta) -> str:
    """Checkpoints are signed on a schedule, so the newest one (or, before any, the first event)
    older than ``max_age`` means checkpoints were deleted or the scheduler stopped."""
    reference = newest_checkpoint_at or first_event_at
    if reference is None or now - reference <= max_age:
        return ""
    what = "the newest signed checkpoint" if newest_checkpoint_at else "the first unsigned event"
    return (f"{what} is from {reference.isoformat(timespec='seconds')}, older than the "
            f"{int(max_age.total_seconds())} s the checkpoint schedule allows (checkpoints deleted, "
            f"or the scheduler is not running)")


def trusted_keys(public_pems: Iterable[str]) -> dict[str, str]:
    """``{key id: PEM}`` of the given public keys (raises ``ValueError`` on a non-Ed25519 key)."""
    return {signing.key_id_of(pem): pem for pem in public_pems}


def export_keys(export: dict[str, Any]) -> dict[str, str]:
    """The public keys an export carries (v2: all keys by id; v1: the one ``public_key_pem``)."""
    if "public_keys" in export:
        return dict(export["public_keys"])
    return trusted_keys([export["public_key_pem"]])


def verify_export(export: dict[str, Any], *, public_keys: Mapping[str, str] | None = None) -> VerifyResult:
    """Verify an exported chain offline; pin ``public_keys`` (``{key id: PEM}``) to the keys you
    trust, else the keys inside the export are used."""
    if export.get("format") not in EXPORT_FORMATS:
        raise ValueError(f"not an Oblivio audit export (format {export.get('format')!r})")
    return verify_chain(export["events"], export["checkpoints"],
                        public_keys=export_keys(export) if public_keys is None else public_keys,
                        head=export["head"])
