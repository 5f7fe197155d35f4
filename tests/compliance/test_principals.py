"""Actors are principals: the audit chain records who authenticated, roles change only through an
audited service, and four-eyes covers every decision."""

from __future__ import annotations

import getpass

import pytest
from click.testing import CliRunner
from django.contrib import admin
from django.contrib.auth import get_user_model

from compliance import forget_requests as services
from compliance.accounts import role_grant, role_revoke
from compliance.cli import user as user_cli
from compliance.errors import Forbidden, NotFound
from compliance.legal import RefusalReason
from core.audit import AuditAction, audit_append
from core.models import AuditEvent
from core.principals import SYSTEM, Role, cli_principal, principal_for_user, user_roles

pytestmark = pytest.mark.django_db


def test_the_audit_chain_refuses_a_free_string_actor() -> None:
    with pytest.raises(TypeError, match="Principal"):
        audit_append(actor="user:alice", action=AuditAction.CORPUS_INGESTED)  # type: ignore[arg-type]
    assert not AuditEvent.objects.exists()


def test_system_cli_people_and_keys_are_distinct_principals(officer, key_a) -> None:
    identities = [SYSTEM.pk, cli_principal().pk, officer.principal.pk, key_a.principal.pk]
    assert len(set(identities)) == 4
    assert "api-key:None" not in identities
    assert cli_principal().name == f"cli:{getpass.getuser()}"


def test_roles_are_granted_and_revoked_through_the_audited_service(make_person) -> None:
    person = make_person(Role.AUDITOR)
    user = get_user_model().objects.get(username=person.username)
    granted = CliRunner().invoke(user_cli, ["grant", person.username, "--role", "ml_engineer"])
    assert granted.exit_code == 0, granted.output
    assert user_roles(user) == {Role.AUDITOR, Role.ML_ENGINEER}
    assert not role_grant(username=person.username, role=Role.ML_ENGINEER, actor=SYSTEM)  # no-op
    revoked = CliRunner().invoke(user_cli, ["revoke", person.username, "--role", "auditor"])
    assert revoked.exit_code == 0, revoked.output
    assert user_roles(user) == {Role.ML_ENGINEER}
    events = list(AuditEvent.objects.filter(action__startswith="role.").order_by("seq"))
    assert [(e.action, e.actor, e.object_id, e.data) for e in events] == [
        ("role.granted", f"cli:{getpass.getuser()}", str(user.pk), {"role": "ml_engineer"}),
        ("role.revoked", f"cli:{getpass.getuser()}", str(user.pk), {"role": "auditor"})]


def test_only_officers_and_operators_change_roles(make_person) -> None:
    engineer = make_person(Role.ML_ENGINEER)
    with pytest.raises(Forbidden):
        role_grant(username=engineer.username, role=Role.COMPLIANCE_OFFICER, actor=engineer.principal)
    with pytest.raises(NotFound):
        role_revoke(username="nobody", role=Role.AUDITOR, actor=SYSTEM)
    assert not AuditEvent.objects.filter(action__startswith="role.").exists()


def test_the_admin_shows_roles_read_only(admin_client, admin_user, make_person) -> None:
    user_admin = admin.site._registry[get_user_model()]
    assert {"groups", "user_permissions", "is_superuser"} <= set(user_admin.readonly_fields)
    person = get_user_model().objects.get(username=make_person(Role.AUDITOR).username)
    page = admin_client.get(f"/admin/auth/user/{person.pk}/change/")
    assert page.status_code == 200 and b'name="groups"' not in page.content


def test_four_eyes_applies_to_a_full_refusal(make_request, officer, second_officer) -> None:
    request = make_request(actor=officer.principal)
    services.forget_request_review(request_id=request.pk, actor=officer.principal)
    with pytest.raises(Forbidden) as refused:
        services.forget_request_refuse(request_id=request.pk, actor=officer.principal,
                                       reason=RefusalReason.OTHER, text="not ours")
    assert refused.value.code == "four_eyes_required"
    done = services.forget_request_refuse(request_id=request.pk, actor=second_officer.principal,
                                          reason=RefusalReason.OTHER, text="not ours")
    assert done.status == "refused"
    assert principal_for_user(get_user_model().objects.get(username=officer.username)).name == \
        request.submitted_by
