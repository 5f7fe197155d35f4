"""``oblivio certificate verify`` works offline on the file and rejects any change."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pipeline_support import sample_facts as facts

from compliance.attestation import certificate_bundle, key_signer
from compliance.cli_pipeline import certificate


def pem(key: Ed25519PrivateKey, path: Path) -> Path:
    path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo))
    return path


@pytest.fixture
def signed(tmp_path: Path) -> tuple[Path, Path, dict]:
    key = Ed25519PrivateKey.generate()
    bundle = certificate_bundle(facts(), signer=key_signer(key))
    path = tmp_path / "certificate.json"
    path.write_text(json.dumps(bundle))
    return path, pem(key, tmp_path / "key.pem"), bundle


def run(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(certificate, ["verify", *map(str, args)])
    return result.exit_code, result.output


def test_a_genuine_certificate_verifies_offline(signed) -> None:
    path, key, _ = signed
    code, out = run(path, "--public-key", key, "--request-id", facts().request_id,
                    "--model-digest", "22" * 32)
    assert code == 0 and out.startswith("ok: certificate of request")


def test_changes_and_mismatches_exit_1(signed, tmp_path: Path) -> None:
    path, key, bundle = signed
    flipped = json.loads(json.dumps(bundle))
    raw = bytearray(base64.b64decode(flipped["envelope"]["payload"]))
    raw[10] ^= 0x20
    flipped["envelope"]["payload"] = base64.b64encode(bytes(raw)).decode()
    (tmp_path / "flipped.json").write_text(json.dumps(flipped))
    assert run(tmp_path / "flipped.json", "--public-key", key)[0] == 1
    other = pem(Ed25519PrivateKey.generate(), tmp_path / "other.pem")
    code, out = run(path, "--public-key", other)
    assert code == 1 and "REJECTED" in out
    assert run(path, "--public-key", key, "--request-id", "5b0c8c0e-0000-4000-8000-00000000000f")[0] == 1
    assert run(path, "--public-key", key, "--model-digest", "33" * 32)[0] == 1


def test_bad_input_is_a_clear_error_not_a_traceback(signed, tmp_path: Path) -> None:
    path, key, _ = signed
    (tmp_path / "junk.json").write_bytes(b"\xff\xfenot json")
    code, out = run(tmp_path / "junk.json", "--public-key", key)
    assert code == 1 and "not a JSON certificate" in out
    code, out = run(path, "--public-key", path)
    assert code == 1 and "public key" in out
