"""A database superuser who turns the triggers off and rewrites the tables is still detected:
signed checkpoints are anchored in the witness file outside the database, and a newest checkpoint
older than the schedule allows fails verification."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from core import audit as audit_module
from core.audit import (
    AuditAction,
    audit_append,
    audit_checkpoint,
    audit_export_json,
    audit_head,
    audit_head_confirmed,
    audit_verify,
)
from core.chain import verify_chain
from core.principals import SYSTEM
from core.signing import public_keys
from core.witness import witness_read

pytestmark = pytest.mark.django_db


def _append(n: int) -> None:
    for i in range(n):
        audit_append(actor=SYSTEM, action=AuditAction.CORPUS_INGESTED, object_id=str(i))


@pytest.fixture
def checkpoint(django_capture_on_commit_callbacks: Callable[..., Any]) -> Callable[..., Any]:
    """Sign the head and run what happens on commit (the witness append), as in production."""
    def sign(**kwargs: Any) -> Any:
        with django_capture_on_commit_callbacks(execute=True):
            return audit_checkpoint(**kwargs)
    return sign


def _as_superuser(*statements: str) -> None:
    """Rewrite the tables with every trigger off, as a database superuser can."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = replica")
        else:
            for table in ("compliance_auditevent", "compliance_auditcheckpoint"):
                for op in ("update", "delete"):
                    cursor.execute(f"DROP TRIGGER IF EXISTS {table}_no_{op}")
        for statement in statements:
            cursor.execute(statement)


def _chain_alone_ok() -> bool:
    """What verification said before the witness: links, signatures and head only."""
    export = audit_export_json()
    return verify_chain(export["events"], export["checkpoints"], public_keys=public_keys(),
                        head=export["head"]).ok


def test_every_signed_checkpoint_reaches_the_witness(checkpoint: Callable[..., Any]) -> None:
    _append(2)
    first = checkpoint()
    _append(1)
    second = checkpoint()
    entries = witness_read(Path(settings.OBLIVIO_AUDIT_WITNESS_FILE))
    assert [(e["seq"], e["hash"], e["key_id"]) for e in entries] == [
        (first.seq, first.hash, first.key_id), (second.seq, second.hash, second.key_id)]
    assert audit_verify().ok


def test_deleting_the_tail_and_rewinding_the_head_is_detected(checkpoint: Callable[..., Any]) -> None:
    _append(3)
    checkpoint()
    _append(2)
    checkpoint()
    seen_by_a_certificate = audit_head()
    _as_superuser("DELETE FROM compliance_auditcheckpoint WHERE seq > 3",
                  "DELETE FROM compliance_auditevent WHERE seq > 3",
                  "UPDATE compliance_audithead SET seq = 3, hash = "
                  "(SELECT hash FROM compliance_auditevent WHERE seq = 3)")
    assert _chain_alone_ok()  # the rewrite is consistent inside the database
    result = audit_verify()
    assert not result.ok
    assert "in the witness but not in the database" in result.problem
    assert not audit_head_confirmed(seen_by_a_certificate["seq"], seen_by_a_certificate["hash"])


def test_deleting_the_last_checkpoints_is_detected(checkpoint: Callable[..., Any]) -> None:
    _append(2)
    checkpoint()
    _append(2)
    checkpoint()
    _as_superuser("DELETE FROM compliance_auditcheckpoint WHERE seq = 4")
    assert _chain_alone_ok()
    result = audit_verify()
    assert not result.ok and "checkpoint @4" in result.problem


def test_wiping_everything_is_detected(checkpoint: Callable[..., Any]) -> None:
    _append(4)
    checkpoint()
    _as_superuser("DELETE FROM compliance_auditcheckpoint", "DELETE FROM compliance_auditevent",
                  "DELETE FROM compliance_audithead")
    assert _chain_alone_ok()
    result = audit_verify()
    assert not result.ok and "checkpoint @4" in result.problem


def test_a_forged_witness_line_is_reported(checkpoint: Callable[..., Any]) -> None:
    _append(1)
    checkpoint()
    path = Path(settings.OBLIVIO_AUDIT_WITNESS_FILE)
    entry = json.loads(path.read_text())
    path.write_text(json.dumps({**entry, "hash": "f" * 64}) + "\n")
    assert "not validly signed" in audit_verify().problem


def _verify_at(moment: timedelta, monkeypatch: pytest.MonkeyPatch) -> Any:
    later = timezone.now() + moment
    monkeypatch.setattr(audit_module.timezone, "now", lambda: later)
    try:
        return audit_verify()
    finally:
        monkeypatch.undo()


def test_a_newest_checkpoint_older_than_the_schedule_allows_fails(
        checkpoint: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    interval = settings.OBLIVIO_AUDIT_CHECKPOINT_SECONDS + settings.OBLIVIO_AUDIT_CHECKPOINT_GRACE_SECONDS
    _append(2)
    assert _verify_at(timedelta(seconds=interval - 60), monkeypatch).ok
    never_signed = _verify_at(timedelta(seconds=interval + 60), monkeypatch)
    assert not never_signed.ok and "first unsigned event" in never_signed.problem
    checkpoint()
    assert _verify_at(timedelta(seconds=interval - 60), monkeypatch).ok
    stale = _verify_at(timedelta(seconds=interval + 60), monkeypatch)
    assert not stale.ok and "newest signed checkpoint" in stale.problem


def test_the_scheduler_signs_an_idle_head_again(checkpoint: Callable[..., Any]) -> None:
    _append(1)
    first = checkpoint()
    assert checkpoint() is None  # on demand: nothing new to sign
    heartbeat = checkpoint(heartbeat=True)
    assert heartbeat.seq == first.seq and heartbeat.signed_at > first.signed_at
    assert audit_verify().ok


def test_checkpoints_are_posted_to_the_auditors_url(checkpoint: Callable[..., Any],
                                                    settings: Any) -> None:
    received: list[dict[str, Any]] = []

    class Auditor(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server API)
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Auditor)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        settings.OBLIVIO_AUDIT_WITNESS_URL = f"http://127.0.0.1:{server.server_port}/witness"
        _append(2)
        signed = checkpoint()
    finally:
        server.shutdown()
    assert received == [{"seq": 2, "hash": signed.hash, "key_id": signed.key_id,
                         "signature": signed.signature, "signed_at": received[0]["signed_at"]}]
