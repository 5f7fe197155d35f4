"""Unlearning certificates as signed in-toto statements: build, sign, verify. Pure (no Django).

A certificate is a JSON bundle ``{"format", "envelope", "verification_report"}``:

- ``envelope`` is a DSSE envelope (``payloadType`` ``application/vnd.in-toto+json``) whose payload is
  the RFC 8785 JSON of an in-toto Statement v1. Its subjects are the model digests before and after
  unlearning; its predicate names the request, the hashed scope, the method, the verification report
  (by digest, with a summary), the times and the audit-chain head.
- Each signature is Ed25519 over the DSSE pre-authentication encoding
  ``"DSSEv1" SP len(type) SP type SP len(body) SP body`` and carries the signing key's id, so
  certificates signed with a retired key still verify against that key.
- ``verification_report`` is the full report; its RFC 8785 SHA-256 must equal the digest in the
  signed predicate, so the report cannot be edited either.

:func:`certificate_check` is what ``oblivio certificate verify`` runs offline: every problem found
is reported, and a certificate passes only when there is none.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

BUNDLE_FORMAT = "oblivio-certificate/v1"
#: The method of a certificate for a request no served model was trained on (nothing was unlearned).
NOT_TRAINED = "not-trained"
NOT_TRAINED_REPORT = "oblivio.not-trained-report/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://oblivio.dev/attestations/unlearning/v1"
SUBJECT_BEFORE = "model/before"
SUBJECT_AFTER = "model/after"


def canonical(value: Any) -> bytes:
    """RFC 8785 (JCS) bytes of ``value``."""
    return rfc8785.dumps(value)


def json_digest(value: Any) -> str:
    """SHA-256 (hex) of the RFC 8785 JSON of ``value``."""
    return hashlib.sha256(canonical(value)).hexdigest()


def pae(payload_type: str, body: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding of ``body``."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(body), body)


def public_key_id(key: Ed25519PublicKey) -> str:
    """SHA-256 (hex, first 16 digits) of the raw public key."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_public_pem(pem: str | bytes) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem.encode() if isinstance(pem, str) else pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


@dataclass(frozen=True)
class ModelRef:
    """One model version named in a certificate (digests are SHA-256 hex)."""

    version_id: str
    artifact_digest: str
    base_digest: str | None = None


@dataclass(frozen=True)
class CertificateFacts:
    """Everything a certificate states; no identifier beyond keyed hashes and record ids."""

    request_id: str
    institution: str
    regulation: str
    level: str
    subject_hash: str
    scope_digest: str
    scope_counts: Mapping[str, int]
    method: str
    exact: bool
    before: ModelRef
    after: ModelRef
    report: Mapping[str, Any]
    report_summary: Mapping[str, Any]
    times: Mapping[str, str]
    audit_head: Mapping[str, Any]
    job_id: str
    guard: Mapping[str, Any] = field(default_factory=dict)
    #: Set when earlier jobs already removed every record of this request: their certificates.
    covered_by: Sequence[Mapping[str, Any]] = ()


def statement(facts: CertificateFacts) -> dict[str, Any]:
    """The in-toto Statement v1 of ``facts``."""
    def model(ref: ModelRef) -> dict[str, Any]:
        return {"version_id": ref.version_id, "artifact_digest": ref.artifact_digest,
                "base_digest": ref.base_digest}

    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": SUBJECT_BEFORE, "digest": {"sha256": facts.before.artifact_digest}},
                    {"name": SUBJECT_AFTER, "digest": {"sha256": facts.after.artifact_digest}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "request": {"id": facts.request_id, "institution": facts.institution,
                        "regulation": facts.regulation, "level": facts.level,
                        "subject_hash": facts.subject_hash},
            "scope": {"digest": facts.scope_digest, "counts": dict(facts.scope_counts)},
            "method": {"name": facts.method, "guarantee": "exact" if facts.exact else "approximate"},
            "models": {"before": model(facts.before), "after": model(facts.after)},
            "verification": {"report_digest": json_digest(facts.report), "passed": True,
                             "verdict": facts.report_summary.get("verdict", "pass"),
                             "summary": dict(facts.report_summary)},
            "inference_guard": dict(facts.guard),
            "times": dict(facts.times),
            "audit_chain_head": dict(facts.audit_head),
            "job_id": facts.job_id,
            **({"covered_by": [dict(c) for c in facts.covered_by]} if facts.covered_by else {}),
        },
    }


#: Signs a message: returns ``(key id, base64 Ed25519 signature)`` (``core.signing.sign`` is one).
Signer = Callable[[bytes], tuple[str, str]]


def key_signer(key: Ed25519PrivateKey) -> Signer:
    """A :data:`Signer` over one private key (for tools and tests; deployments use the key registry)."""
    key_id = public_key_id(key.public_key())
    return lambda message: (key_id, base64.b64encode(key.sign(message)).decode())


def envelope_sign(payload: bytes, *, signer: Signer, payload_type: str = PAYLOAD_TYPE) -> dict[str, Any]:
    """A DSSE envelope of ``payload`` with one Ed25519 signature named by its key id."""
    key_id, signature = signer(pae(payload_type, payload))
    return {"payloadType": payload_type, "payload": base64.b64encode(payload).decode(),
            "signatures": [{"keyid": key_id, "sig": signature}]}


def certificate_bundle(facts: CertificateFacts, *, signer: Signer) -> dict[str, Any]:
    """Sign the statement of ``facts`` and bundle it with the full verification report."""
    envelope = envelope_sign(canonical(statement(facts)), signer=signer)
    report = json.loads(canonical(facts.report))  # a copy: the bundle never aliases the caller's report
    return {"format": BUNDLE_FORMAT, "envelope": envelope, "verification_report": report}


@dataclass
class CertificateCheck:
    """The outcome of checking a certificate; ``ok`` only when no problem was found."""

    problems: list[str] = field(default_factory=list)
    key_id: str | None = None
    statement: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return not self.problems and self.statement is not None

    @property
    def predicate(self) -> dict[str, Any]:
        return (self.statement or {}).get("predicate", {})

    def subject_digest(self, name: str) -> str | None:
        for subject in (self.statement or {}).get("subject", []):
            if isinstance(subject, dict) and subject.get("name") == name:
                return (subject.get("digest") or {}).get("sha256")
        return None

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "problems": self.problems, "key_id": self.key_id,
                "request_id": self.predicate.get("request", {}).get("id"),
                "model_before": self.subject_digest(SUBJECT_BEFORE),
                "model_after": self.subject_digest(SUBJECT_AFTER)}


def _b64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise ValueError("not a base64 string")
    return base64.b64decode(text, validate=True)


def _verified_payload(envelope: Any, keys: Mapping[str, Ed25519PublicKey],
                      check: CertificateCheck) -> bytes | None:
    """The payload if one signature verifies under the key its id names; problems otherwise."""
    if not isinstance(envelope, dict) or envelope.get("payloadType") != PAYLOAD_TYPE:
        check.problems.append(f"the envelope is not a DSSE envelope of {PAYLOAD_TYPE}")
        return None
    try:
        payload = _b64(envelope.get("payload"))
    except (ValueError, binascii.Error):
        check.problems.append("the envelope payload is not valid base64")
        return None
    signatures = envelope.get("signatures")
    if not isinstance(signatures, list) or not signatures:
        check.problems.append("the envelope carries no signature")
        return None
    message = pae(PAYLOAD_TYPE, payload)
    for signature in signatures:
        key_id = signature.get("keyid") if isinstance(signature, dict) else None
        key = keys.get(key_id) if isinstance(key_id, str) else None
        if key is None:
            continue
        try:
            key.verify(_b64(signature.get("sig")), message)
        except (InvalidSignature, ValueError, binascii.Error):
            continue
        check.key_id = key_id
        return payload
    named = sorted({str(s.get("keyid")) for s in signatures if isinstance(s, dict)})
    check.problems.append(f"no valid signature by a trusted key (signed by key id {', '.join(named)})")
    return None


def certificate_check(bundle: Any, *, keys: Mapping[str, Ed25519PublicKey],
                      request_id: str | None = None, model_after: str | None = None) -> CertificateCheck:
    """Check a certificate bundle against trusted ``keys`` (key id -> public key).

    ``request_id`` / ``model_after``, when given, must be the ones the certificate was issued for:
    an authentic certificate of another request or another model is rejected (replay).
    """
    check = CertificateCheck()
    if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT:
        check.problems.append(f"not an {BUNDLE_FORMAT} bundle")
        return check
    payload = _verified_payload(bundle.get("envelope"), keys, check)
    if payload is None:
        return check
    try:
        parsed = rfc8785_loads(payload)
    except ValueError as exc:
        check.problems.append(f"the signed payload is not canonical JSON ({exc})")
        return check
    check.statement = parsed
    if parsed.get("_type") != STATEMENT_TYPE or parsed.get("predicateType") != PREDICATE_TYPE:
        check.problems.append("the payload is not an Oblivio unlearning statement")
        return check
    predicate = check.predicate
    models = predicate.get("models", {})
    for name, role in ((SUBJECT_BEFORE, "before"), (SUBJECT_AFTER, "after")):
        if check.subject_digest(name) != models.get(role, {}).get("artifact_digest"):
            check.problems.append(f"subject {name} does not match the model named in the predicate")
    verification = predicate.get("verification", {})
    if verification.get("passed") is not True:
        check.problems.append("the statement does not record a passing verification")
    exact = predicate.get("method", {}).get("guarantee") == "exact"
    if verification.get("verdict", "pass") != "pass" and not exact:
        check.problems.append("the verification verdict does not allow certification (only an exact method "
                              "may be certified on a verdict other than pass)")
    if json_digest(bundle.get("verification_report")) != verification.get("report_digest"):
        check.problems.append("the verification report differs from the one that was signed")
    if request_id is not None and predicate.get("request", {}).get("id") != request_id:
        check.problems.append("the certificate was issued for another request")
    if model_after is not None and check.subject_digest(SUBJECT_AFTER) != model_after:
        check.problems.append("the certificate names another model than the one expected")
    return check


def rfc8785_loads(payload: bytes) -> dict[str, Any]:
    """Parse a payload that must be RFC 8785 JSON of an object (re-encoding gives the same bytes)."""
    value = json.loads(payload.decode("utf-8"))
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    if canonical(value) != payload:
        raise ValueError("not in RFC 8785 form")
    return value
