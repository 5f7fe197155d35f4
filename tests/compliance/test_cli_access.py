"""``oblivio apikey | user | webhook``: what an operator types, and what a mistake prints."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from django.contrib.auth import get_user_model

from compliance.accounts import apikey_authenticate
from compliance.cli import apikey, user, webhook
from compliance.models import ApiKey, WebhookEndpoint
from compliance.webhooks import webhook_secret
from core.models import AuditEvent
from core.principals import Role, principal_for_user

pytestmark = pytest.mark.django_db


def test_apikey_create_prints_the_token_once_and_stores_its_hash(tree) -> None:
    code = tree.institutions[0].code
    result = CliRunner().invoke(apikey, ["create", "--institution", code, "--name", "EHR"])
    assert result.exit_code == 0, result.output
    token = result.stdout.strip().splitlines()[-1]
    principal = apikey_authenticate(token)
    assert principal.roles == {Role.HOSPITAL_SYSTEM}
    assert principal.institution_ids == {tree.institutions[0].pk}
    key = ApiKey.objects.get()
    assert token not in (key.digest, key.prefix) and key.prefix in token
    assert AuditEvent.objects.filter(action="api_key.created", object_id=key.prefix).exists()

    listed = CliRunner().invoke(apikey, ["list"])
    assert key.prefix in listed.output and "active" in listed.output and token not in listed.output

    revoked = CliRunner().invoke(apikey, ["revoke", key.prefix])
    assert revoked.exit_code == 0 and apikey_authenticate(token) is None
    again = CliRunner().invoke(apikey, ["revoke", key.prefix])
    assert again.exit_code == 1 and "already revoked" in again.output


def test_apikey_create_refuses_unknown_institutions(tree) -> None:
    result = CliRunner().invoke(apikey, ["create", "--institution", "NOPE", "--name", "EHR"])
    assert result.exit_code == 1 and "unknown institution code(s): NOPE" in result.output
    assert not ApiKey.objects.exists()


PASSWORD = {"OBLIVIO_USER_PASSWORD": "a-Long-pass-phrase-9"}


def test_user_create_grants_roles(db) -> None:
    result = CliRunner().invoke(user, ["create", "--username", "olivia", "--role", "compliance_officer",
                                       "--role", "auditor"], env=PASSWORD)
    assert result.exit_code == 0, result.output
    person = get_user_model().objects.get(username="olivia")
    assert principal_for_user(person).roles == {Role.COMPLIANCE_OFFICER, Role.AUDITOR}
    duplicate = CliRunner().invoke(user, ["create", "--username", "olivia", "--role", "auditor"],
                                   env=PASSWORD)
    assert duplicate.exit_code == 1 and "exists" in duplicate.output


def test_user_create_refuses_weak_passwords_and_unknown_roles(db) -> None:
    weak = CliRunner().invoke(user, ["create", "--username", "w", "--role", "auditor"],
                              env={"OBLIVIO_USER_PASSWORD": "123"})
    assert weak.exit_code == 1 and "too short" in weak.output
    unknown = CliRunner().invoke(user, ["create", "--username", "w", "--role", "hospital_system"],
                                 env=PASSWORD)
    assert unknown.exit_code == 2
    assert not get_user_model().objects.filter(username="w").exists()


def test_webhook_create_and_disable(tree) -> None:
    code = tree.institutions[0].code
    result = CliRunner().invoke(webhook, ["create", "--institution", code, "--url", "https://ehr.example/hook",
                                          "--event", "forget_request.status_changed"])
    assert result.exit_code == 0, result.output
    endpoint = WebhookEndpoint.objects.get()
    assert result.stdout.strip().splitlines()[-1] == webhook_secret(endpoint)
    assert endpoint.events == ["forget_request.status_changed"]
    rotated = CliRunner().invoke(webhook, ["rotate-secret", str(endpoint.pk)])
    assert rotated.exit_code == 0, rotated.output
    endpoint.refresh_from_db()
    assert rotated.stdout.strip().splitlines()[-1] == webhook_secret(endpoint)
    missing = CliRunner().invoke(webhook, ["rotate-secret", "999999"])
    assert missing.exit_code != 0 and "no webhook endpoint" in missing.output
    assert CliRunner().invoke(webhook, ["disable", str(endpoint.pk)]).exit_code == 0
    endpoint.refresh_from_db()
    assert not endpoint.is_active


@pytest.mark.parametrize(("arguments", "message"), [
    (["--url", "not a url"], "must be http"),
    (["--url", "ftp://ehr.example/hook"], "must be http"),
    (["--url", "https://"], "Enter a valid URL"),
    (["--url", "https://ehr.example/hook", "--event", "request.exploded"], "events must be among"),
])
def test_webhook_create_refuses_bad_input(tree, arguments, message) -> None:
    result = CliRunner().invoke(webhook, ["create", "--institution", tree.institutions[0].code, *arguments])
    assert result.exit_code == 1 and message in result.output
    assert not WebhookEndpoint.objects.exists()
