"""Who is acting: roles and the :class:`Principal` every service, selector and audit event receives.

The audit chain records only principals (``audit_append`` refuses anything else), and a principal
comes only from authentication: a Django session (``user:<name>``), an API key
(``api-key:<prefix>``, :mod:`compliance.accounts`), the operating-system user running a command
(``cli:<name>``), or the deployment itself (``system``: scheduled and pipeline work).

People's roles are the Django groups named after :class:`Role` values, granted and revoked only
through the audited services in :mod:`compliance.accounts` (``oblivio user grant|revoke``).
Superusers get no implicit role. A key has the ``hospital_system`` role and sees only the
institutions it is scoped to.
"""

from __future__ import annotations

import enum
import getpass
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # importable before Django is set up (the CLI lists roles at start-up)
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser


class Role(enum.StrEnum):
    COMPLIANCE_OFFICER = "compliance_officer"
    ML_ENGINEER = "ml_engineer"
    AUDITOR = "auditor"  # read-only
    HOSPITAL_SYSTEM = "hospital_system"  # API keys only


#: Roles a person can hold (the hospital-system role belongs to API keys).
HUMAN_ROLES = frozenset({Role.COMPLIANCE_OFFICER, Role.ML_ENGINEER, Role.AUDITOR})


class PrincipalKind(enum.StrEnum):
    USER = "user"
    API_KEY = "api-key"
    CLI = "cli"
    SYSTEM = "system"


@dataclass(frozen=True)
class Principal:
    """An authenticated actor. ``institution_ids`` is ``None`` when every institution is visible."""

    name: str  # as written to the audit chain: "user:<username>", "api-key:<prefix>", "cli:<os user>"
    roles: frozenset[Role]
    institution_ids: frozenset[int] | None
    kind: PrincipalKind
    user_id: int | None = None
    api_key_id: int | None = None

    #: DRF and Django check this on ``request.user``.
    is_authenticated = True

    @property
    def pk(self) -> str:
        """Stable identity for throttling and idempotency keys (distinct for every principal)."""
        if self.kind is PrincipalKind.USER:
            return f"user:{self.user_id}"
        if self.kind is PrincipalKind.API_KEY:
            return f"api-key:{self.api_key_id}"
        return self.name

    def has_any(self, roles: Iterable[Role]) -> bool:
        return not self.roles.isdisjoint(roles)

    def sees(self, institution_id: int) -> bool:
        return self.institution_ids is None or institution_id in self.institution_ids


#: Actor of work nobody asked for directly (periodic tasks, pipeline jobs).
SYSTEM = Principal(name="system", roles=frozenset(), institution_ids=None, kind=PrincipalKind.SYSTEM)


def cli_principal() -> Principal:
    """The operator running an ``oblivio`` command, named by the operating system (not by an option)."""
    return Principal(name=f"cli:{getpass.getuser()}", roles=frozenset(), institution_ids=None,
                     kind=PrincipalKind.CLI)


def user_roles(user: AbstractBaseUser | AnonymousUser) -> frozenset[Role]:
    """The roles of a Django user: the names of its groups that are human roles."""
    if not user.is_authenticated or not user.is_active:
        return frozenset()
    names = set(user.groups.values_list("name", flat=True))
    return frozenset(role for role in HUMAN_ROLES if role.value in names)


def principal_for_user(user: AbstractBaseUser) -> Principal:
    """The principal of a signed-in person (people see every institution of the deployment)."""
    return Principal(name=f"user:{user.get_username()}", roles=user_roles(user), institution_ids=None,
                     kind=PrincipalKind.USER, user_id=user.pk)
