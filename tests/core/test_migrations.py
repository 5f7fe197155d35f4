"""The audit tables move from ``compliance`` to ``core`` without losing a row or a link."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from core.audit import AuditAction, audit_append, audit_checkpoint, audit_verify
from core.models import AuditEvent
from core.principals import SYSTEM

BEFORE_THE_MOVE = [("compliance", "0005_webhook_secret_sealed"), ("core", None)]


@pytest.mark.django_db(transaction=True)
def test_a_database_of_the_old_layout_migrates_with_its_chain_intact() -> None:
    for n in range(3):
        audit_append(actor=SYSTEM, action=AuditAction.CORPUS_INGESTED, object_id=str(n))
    audit_checkpoint()
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    try:
        executor.migrate(BEFORE_THE_MOVE)
        old_apps = executor.loader.project_state(BEFORE_THE_MOVE[0]).apps
        assert old_apps.get_model("compliance", "AuditEvent").objects.count() == 3
        assert "auditevent" not in old_apps.all_models["core"]
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(latest)
    assert AuditEvent.objects.count() == 3
    result = audit_verify()
    assert result.ok and result.checkpoints_checked == 1, result.problem
