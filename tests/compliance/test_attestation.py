"""Certificates: DSSE envelopes over in-toto statements; every kind of tampering is rejected."""

from __future__ import annotations

import base64
import copy
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pipeline_support import SAMPLE_REPORT
from pipeline_support import sample_facts as facts

from compliance.attestation import (
    SUBJECT_AFTER,
    certificate_bundle,
    certificate_check,
    key_signer,
    pae,
    public_key_id,
)


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def keys_of(*private: Ed25519PrivateKey) -> dict:
    return {public_key_id(k.public_key()): k.public_key() for k in private}


def sign(key: Ed25519PrivateKey, **overrides) -> dict:
    return certificate_bundle(facts(**overrides), signer=key_signer(key))


def payload_of(bundle: dict) -> dict:
    return json.loads(base64.b64decode(bundle["envelope"]["payload"]))


def with_payload(bundle: dict, statement: dict) -> dict:
    forged = copy.deepcopy(bundle)
    forged["envelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    return forged


def test_pae_matches_the_dsse_spec() -> None:
    assert pae("http://example.com/HelloWorld", b"hello world") == \
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"


def test_a_genuine_certificate_verifies_and_names_its_key_and_subjects(key) -> None:
    bundle = sign(key)
    check = certificate_check(bundle, keys=keys_of(key), request_id=facts().request_id,
                              model_after="22" * 32)
    assert check.ok, check.problems
    assert check.key_id == public_key_id(key.public_key())
    assert bundle["envelope"]["signatures"][0]["keyid"] == check.key_id
    assert check.subject_digest(SUBJECT_AFTER) == "22" * 32
    statement = payload_of(bundle)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicate"]["method"]["guarantee"] == "approximate"
    assert bundle["envelope"]["payloadType"] == "application/vnd.in-toto+json"


def test_a_flipped_payload_byte_is_rejected(key) -> None:
    bundle = sign(key)
    raw = bytearray(base64.b64decode(bundle["envelope"]["payload"]))
    raw[len(raw) // 2] ^= 0x01
    bundle["envelope"]["payload"] = base64.b64encode(bytes(raw)).decode()
    check = certificate_check(bundle, keys=keys_of(key))
    assert not check.ok
    assert "no valid signature" in check.problems[0]


def test_a_certificate_signed_by_an_untrusted_key_is_rejected(key) -> None:
    other = Ed25519PrivateKey.generate()
    bundle = sign(other)
    assert not certificate_check(bundle, keys=keys_of(key)).ok
    # an attacker relabelling the signature with the trusted key id gains nothing
    bundle["envelope"]["signatures"][0]["keyid"] = public_key_id(key.public_key())
    assert not certificate_check(bundle, keys=keys_of(key)).ok


def test_old_keys_stay_valid_next_to_the_new_one(key) -> None:
    old_bundle = sign(key)
    new_key = Ed25519PrivateKey.generate()
    new_bundle = sign(new_key)
    keys = keys_of(key, new_key)
    assert certificate_check(old_bundle, keys=keys).ok
    assert certificate_check(new_bundle, keys=keys).ok


def test_a_swapped_subject_digest_is_rejected(key) -> None:
    bundle = sign(key)
    statement = payload_of(bundle)
    statement["subject"][1]["digest"]["sha256"] = "33" * 32
    assert not certificate_check(with_payload(bundle, statement), keys=keys_of(key)).ok
    # and a genuine certificate presented for another model is a replay
    check = certificate_check(bundle, keys=keys_of(key), model_after="33" * 32)
    assert check.problems == ["the certificate names another model than the one expected"]


def test_an_edited_verification_report_is_rejected(key) -> None:
    bundle = sign(key)
    bundle["verification_report"]["checks"][0]["value"] = 0.50
    check = certificate_check(bundle, keys=keys_of(key))
    assert check.problems == ["the verification report differs from the one that was signed"]


def test_a_replayed_envelope_for_another_request_is_rejected(key) -> None:
    bundle = sign(key, request_id="5b0c8c0e-0000-4000-8000-000000000001")
    check = certificate_check(bundle, keys=keys_of(key), request_id="5b0c8c0e-0000-4000-8000-000000000002")
    assert check.problems == ["the certificate was issued for another request"]


@pytest.mark.parametrize("mangle", [
    lambda b: b.pop("envelope"),
    lambda b: b["envelope"].update(payloadType="text/plain"),
    lambda b: b["envelope"].update(payload="%%%"),
    lambda b: b["envelope"].update(signatures=[]),
    lambda b: b["envelope"]["signatures"][0].update(sig=None),
    lambda b: b.update(format="something/v0"),
])
def test_malformed_bundles_are_rejected_not_crashing(key, mangle) -> None:
    bundle = sign(key)
    mangle(bundle)
    assert not certificate_check(bundle, keys=keys_of(key)).ok


def test_a_non_canonical_payload_is_rejected_even_when_signed(key) -> None:
    from compliance.attestation import envelope_sign

    bundle = sign(key)
    statement = payload_of(bundle)
    bundle["envelope"] = envelope_sign(json.dumps(statement, indent=2).encode(), signer=key_signer(key))
    check = certificate_check(bundle, keys=keys_of(key))
    assert not check.ok and "RFC 8785" in check.problems[0]


def test_the_pdf_shows_summary_checks_digests_and_the_verify_link() -> None:
    from pipeline_support import pdf_text

    from compliance.pipeline.pdf import certificate_pdf

    url = "http://127.0.0.1:8000/api/v1/certificates/5b0c8c0e-0000-4000-8000-0000000000aa/verify"
    text = pdf_text(certificate_pdf(facts(), key_id="0123456789abcdef", verify_url=url))
    for expected in (facts().request_id, "PASSED", "mia_auc", "0.51", "0.6", "22" * 32, "0123456789abcdef",
                     url, "suppression, not unlearning"):
        assert expected in text, expected


def test_the_pdf_names_thresholds_the_institution_changed_and_which_way() -> None:
    from pipeline_support import pdf_text

    from compliance.pipeline.pdf import certificate_pdf

    def pdf(summary: dict) -> str:
        return pdf_text(certificate_pdf(facts(report_summary=summary), key_id="k", verify_url="http://x/v"))

    checks = {"passed": True, "checks": SAMPLE_REPORT["checks"]}
    assert "Thresholds changed" not in pdf(checks) and "calibrated default" not in pdf(checks)  # no policy
    assert "Every verdict threshold at its calibrated default" in pdf({**checks, "policy_overrides": []})
    text = pdf({**checks, "policy_overrides": [
        {"field": "max_leak_excess", "value": 0.5, "default": 0.2, "direction": "laxer"},
        {"field": "seed", "value": 3, "default": 0, "direction": "changed"}]})
    assert "Thresholds changed from the calibrated defaults" in text
    for shown in ("max_leak_excess 0.5", "default 0.2", "laxer", "seed 3", "default 0"):
        assert shown in text, shown


def test_an_inconclusive_verdict_verifies_only_for_an_exact_method(key) -> None:
    """Too few forgotten facts for the attacks to decide: only retraining without the data may be
    certified, so even a correctly signed statement that accepts an approximate method is refused."""
    inconclusive = {"passed": True, "verdict": "inconclusive", "checks": []}
    exact = sign(key, method="exact", exact=True, report_summary=inconclusive)
    assert certificate_check(exact, keys=keys_of(key)).ok
    assert payload_of(exact)["predicate"]["verification"]["verdict"] == "inconclusive"
    approximate = sign(key, report_summary=inconclusive)
    assert certificate_check(approximate, keys=keys_of(key)).problems == [
        "the verification verdict does not allow certification (only an exact method may be certified on a "
        "verdict other than pass)"]
