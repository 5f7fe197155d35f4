"""Key fingerprints in the database, the start-up refusal, and the signing-key registry."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import subprocess_env
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from oblivio_site.processes import worker_argv

from core import signing
from core.audit import AuditAction, audit_append, audit_checkpoint, audit_export_json, audit_verify
from core.chain import verify_export
from core.cli import keys as keys_cli
from core.keys import identifier_key_fingerprint, record_fingerprints
from core.models import AuditCheckpoint, AuditEvent, DeploymentKey
from core.principals import SYSTEM

pytestmark = pytest.mark.django_db
MISMATCH = "is not the one this database was set up with"


def _oblivio(*args: str, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = subprocess_env(**({"OBLIVIO_HOME": str(home)} if home else {}))
    return subprocess.run([sys.executable, "-m", "oblivio_site.cli", *args], env=env, capture_output=True,
                          text=True, timeout=120)


def test_first_migrate_records_the_fingerprints_of_this_data_directory() -> None:
    recorded = {key.purpose: key.key_id for key in DeploymentKey.objects.filter(retired_at=None)}
    assert recorded == {"identifier": identifier_key_fingerprint(), "signing": signing.active_key_id()}


def test_doctor_prints_the_data_directory_and_the_fingerprints() -> None:
    result = _oblivio("doctor", "--no-roundtrip")
    assert f"data directory        {os.environ['OBLIVIO_HOME']}" in result.stdout
    assert f"identifier key        {identifier_key_fingerprint()}" in result.stdout
    assert f"signing key           {signing.active_key_id()}" in result.stdout
    assert "ok   keys" in result.stdout


def test_another_data_directory_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    foreign = tmp_path / "other-home"
    verify = _oblivio("audit", "verify", home=foreign)
    assert verify.returncode == 1
    assert MISMATCH in verify.stderr and "OBLIVIO_HOME" in verify.stderr
    assert "Traceback" not in verify.stderr
    doctor = _oblivio("doctor", "--no-roundtrip", "--json", home=foreign)
    checks = {check["name"]: check for check in json.loads(doctor.stdout)}
    assert doctor.returncode == 1 and not checks["keys"]["ok"]
    server = subprocess.run([sys.executable, "-c", "import oblivio_site.wsgi"],
                            env=subprocess_env(OBLIVIO_HOME=str(foreign)), capture_output=True, text=True,
                            timeout=120)
    assert server.returncode != 0 and MISMATCH in server.stderr
    worker = subprocess.run(worker_argv(name="foreign-keys"), env=subprocess_env(OBLIVIO_HOME=str(foreign)),
                            capture_output=True, text=True, timeout=120)
    assert worker.returncode != 0 and MISMATCH in worker.stderr


@pytest.fixture
def own_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data directory of this test's own, which the (rolled back) database is told about."""
    monkeypatch.setenv("OBLIVIO_HOME", str(tmp_path / "home"))
    DeploymentKey.objects.all().delete()
    record_fingerprints()
    return tmp_path / "home"


def test_signatures_name_their_key_and_verify_by_id(own_home: Path) -> None:
    key_id, signature = signing.sign(b"message")
    assert key_id == signing.active_key_id()
    private = own_home / "secrets" / "signing" / f"{key_id}.pem"
    assert private.stat().st_mode & 0o077 == 0 and private.parent.stat().st_mode & 0o077 == 0
    assert signing.verify(key_id, b"message", signature)
    assert not signing.verify(key_id, b"other message", signature)
    assert not signing.verify("0" * 16, b"message", signature)


def test_rotation_keeps_old_signatures_valid_and_is_audited(own_home: Path) -> None:
    audit_append(actor=SYSTEM, action=AuditAction.CORPUS_INGESTED, object_id="1")
    first = audit_checkpoint()
    old_id, old_signature = signing.sign(b"certificate")

    result = CliRunner().invoke(keys_cli, ["rotate"])
    assert result.exit_code == 0, result.output
    new_id = signing.active_key_id()
    assert new_id != old_id and f"signing key {new_id} is active" in result.output

    assert signing.verify(old_id, b"certificate", old_signature)  # retired key still verifies
    assert signing.sign(b"x")[0] == new_id
    assert not (own_home / "secrets" / "signing" / f"{old_id}.pem").exists()
    assert set(signing.public_keys()) == {old_id, new_id}
    rows = {row.key_id: row for row in DeploymentKey.objects.filter(purpose="signing")}
    assert rows[old_id].retired_at is not None and rows[new_id].retired_at is None
    event = AuditEvent.objects.get(action="signing_key.rotated")
    assert event.actor.startswith("cli:") and event.object_id == new_id
    assert event.data == {"retired": old_id}
    newest = AuditCheckpoint.objects.order_by("-signed_at").first()
    assert (first.key_id, newest.key_id, newest.seq) == (old_id, new_id, event.seq)
    assert audit_verify().ok
    export = json.loads(json.dumps(audit_export_json()))
    assert verify_export(export).ok and verify_export(export).checkpoints_checked == 2
    assert CliRunner().invoke(keys_cli, ["list"]).output.count("signing") == 2


def test_a_deployment_from_before_the_registry_keeps_its_signing_key(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    legacy = Ed25519PrivateKey.generate()
    (tmp_path / "secrets").mkdir(mode=0o700)
    (tmp_path / "secrets" / "signing_key.pem").write_bytes(legacy.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    old_signature = base64.b64encode(legacy.sign(b"old checkpoint")).decode()
    monkeypatch.setenv("OBLIVIO_HOME", str(tmp_path))
    key_id = signing.active_key_id()
    assert key_id == signing.key_id_of(signing.public_key_pem())
    assert signing.verify(key_id, b"old checkpoint", old_signature)
    assert not (tmp_path / "secrets" / "signing_key.pem").exists()  # one copy of the private key
