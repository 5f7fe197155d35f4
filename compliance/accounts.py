"""Accounts: people with roles, and API keys for hospital systems.

Roles change only through :func:`role_grant` / :func:`role_revoke` (audited; the admin shows a
person's groups read-only). Operators at the command line and compliance officers may change them.

An API key is ``obl_<prefix>_<secret>``: shown once at creation; the database keeps the public
prefix (for lookup and display) and the SHA-256 of the whole token. 256 random bits make a slow
password hash unnecessary.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.models import AbstractBaseUser, Group
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.audit import AuditAction, audit_append
from core.principals import HUMAN_ROLES, Principal, PrincipalKind, Role
from hierarchy.models import Institution

from .errors import Conflict, Forbidden, Invalid, NotFound, lock_or_not_found
from .models import ApiKey

TOKEN_SCHEME = "obl"
#: ``object_type`` of the audit events of API keys and of people.
API_KEY, USER = "api_key", "user"
#: ``last_used_at`` is refreshed at most this often (one write per key per minute, not per request).
LAST_USED_RESOLUTION = timedelta(minutes=1)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def apikey_create(*, name: str, institution_codes: list[str], actor: Principal) -> tuple[ApiKey, str]:
    """Create a key for the given institutions; returns the row and the token (shown only now)."""
    if not name.strip():
        raise Invalid("an API key needs a name", field="name", code="name_required")
    institutions = list(Institution.objects.filter(code__in=institution_codes))
    missing = sorted(set(institution_codes) - {institution.code for institution in institutions})
    if missing or not institutions:
        raise NotFound(f"unknown institution code(s): {', '.join(missing) or '(none given)'}",
                       field="institution", code="institution_not_found")
    for _ in range(3):  # a 32-bit prefix collision is rare; draw again if it happens
        prefix = secrets.token_hex(4)
        token = f"{TOKEN_SCHEME}_{prefix}_{secrets.token_urlsafe(32)}"
        try:
            with transaction.atomic():
                key = ApiKey.objects.create(prefix=prefix, digest=_digest(token), name=name.strip(),
                                            created_by=actor.name)
                key.institutions.set(institutions)
                audit_append(actor=actor, action=AuditAction.API_KEY_CREATED, object_type=API_KEY,
                             object_id=prefix, data={"name": key.name,
                                                     "institutions": sorted(i.code for i in institutions)})
            return key, token
        except IntegrityError:
            continue
    raise Conflict("could not draw a unique key prefix; try again", code="prefix_collision")


def apikey_revoke(*, prefix: str, actor: Principal) -> ApiKey:
    """Revoke a key at once; it authenticates nothing afterwards."""
    with transaction.atomic():
        key = lock_or_not_found(ApiKey.objects, NotFound("no API key has this prefix", field="prefix",
                                                         code="api_key_not_found"), prefix=prefix)
        if key.revoked_at is not None:
            raise Conflict("this API key is already revoked", field="prefix", code="already_revoked")
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        audit_append(actor=actor, action=AuditAction.API_KEY_REVOKED, object_type=API_KEY,
                     object_id=prefix)
    return key


def apikey_authenticate(token: str) -> Principal | None:
    """The principal of a valid, unrevoked token; ``None`` otherwise. Refreshes ``last_used_at``."""
    scheme, _, rest = token.partition("_")
    prefix, _, _ = rest.partition("_")
    if scheme != TOKEN_SCHEME or not prefix:
        return None
    # One round trip: the key and its institutions (one row per institution; one row with None
    # for a key scoped to none). Read on every request, so a revocation applies at once.
    rows = list(ApiKey.objects.filter(prefix=prefix, revoked_at__isnull=True)
                .values_list("pk", "digest", "last_used_at", "institutions"))
    if not rows or not hmac.compare_digest(rows[0][1], _digest(token)):
        return None
    key_id, _, last_used_at, _ = rows[0]
    now = timezone.now()
    if last_used_at is None or now - last_used_at > LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=key_id).update(last_used_at=now)
    return Principal(name=f"api-key:{prefix}", roles=frozenset({Role.HOSPITAL_SYSTEM}),
                     institution_ids=frozenset(row[3] for row in rows if row[3] is not None),
                     kind=PrincipalKind.API_KEY, api_key_id=key_id)


def user_create(*, username: str, email: str, password: str, roles: list[Role],
                actor: Principal) -> AbstractBaseUser:
    """Create a person with the given human roles (Django groups)."""
    not_human = [str(role) for role in roles if role not in HUMAN_ROLES]
    if not roles or not_human:
        raise Invalid(f"roles must be among {', '.join(sorted(HUMAN_ROLES))}", field="role",
                      code="invalid_role")
    user_model = get_user_model()
    if user_model.objects.filter(username=username).exists():
        raise Conflict("a user with this name exists", field="username", code="user_exists")
    user = user_model(username=username, email=email)
    try:
        user.full_clean(exclude=["password"])
    except ValidationError as exc:
        raise Invalid("; ".join(exc.messages), field=next(iter(exc.message_dict), None),
                      code="invalid_user") from None
    try:
        password_validation.validate_password(password, user)
    except ValidationError as exc:
        raise Invalid("; ".join(exc.messages), field="password", code="weak_password") from None
    with transaction.atomic():
        user.set_password(password)
        user.save()
        user.groups.set([Group.objects.get_or_create(name=str(role))[0] for role in roles])
        audit_append(actor=actor, action=AuditAction.USER_CREATED, object_type=USER,
                     object_id=str(user.pk), data={"roles": sorted(str(role) for role in roles)})
    return user


def _may_manage_roles(actor: Principal) -> None:
    if actor.kind not in {PrincipalKind.CLI, PrincipalKind.SYSTEM} and \
            Role.COMPLIANCE_OFFICER not in actor.roles:
        raise Forbidden("only compliance officers and operators change roles", code="role_change_forbidden")


def _person(username: str) -> AbstractBaseUser:
    return lock_or_not_found(get_user_model().objects, NotFound(
        "no user has this name", field="username", code="user_not_found"), username=username)


def role_grant(*, username: str, role: Role, actor: Principal) -> bool:
    """Give a person a human role; ``False`` when they already held it (nothing is recorded)."""
    _may_manage_roles(actor)
    if role not in HUMAN_ROLES:
        raise Invalid(f"roles must be among {', '.join(sorted(HUMAN_ROLES))}", field="role",
                      code="invalid_role")
    with transaction.atomic():
        user = _person(username)
        group = Group.objects.get_or_create(name=str(role))[0]
        if user.groups.filter(pk=group.pk).exists():
            return False
        user.groups.add(group)
        audit_append(actor=actor, action=AuditAction.ROLE_GRANTED, object_type=USER,
                     object_id=str(user.pk), data={"role": str(role)})
    return True


def role_revoke(*, username: str, role: Role, actor: Principal) -> bool:
    """Take a role away at once; ``False`` when the person did not hold it."""
    _may_manage_roles(actor)
    with transaction.atomic():
        user = _person(username)
        group = Group.objects.filter(name=str(role)).first()
        if group is None or not user.groups.filter(pk=group.pk).exists():
            return False
        user.groups.remove(group)
        audit_append(actor=actor, action=AuditAction.ROLE_REVOKED, object_type=USER,
                     object_id=str(user.pk), data={"role": str(role)})
    return True
