"""Role permissions and the principal of a request.

Each view lists the roles allowed per HTTP method in ``roles``; unlisted methods answer 405.
"""

from __future__ import annotations

from collections.abc import Mapping

from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from core.principals import Principal, Role, principal_for_user

R = Role
READERS = frozenset({R.COMPLIANCE_OFFICER, R.ML_ENGINEER, R.AUDITOR, R.HOSPITAL_SYSTEM})
SUBMITTERS = frozenset({R.COMPLIANCE_OFFICER, R.HOSPITAL_SYSTEM})
OFFICERS = frozenset({R.COMPLIANCE_OFFICER})
AUDIT_READERS = frozenset({R.COMPLIANCE_OFFICER, R.AUDITOR})


def principal_of(request: Request) -> Principal:
    """The acting principal: the API key's, or the signed-in person's (computed once per request)."""
    principal = getattr(request, "_oblivio_principal", None)
    if principal is None:
        user = request.user
        principal = user if isinstance(user, Principal) else principal_for_user(user)
        request._oblivio_principal = principal
    return principal


class HasRole(BasePermission):
    """Allow a method if the principal holds one of ``view.roles[method]``."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        roles: Mapping[str, frozenset[Role]] = view.roles
        method = "GET" if request.method == "HEAD" else request.method
        if method not in roles:
            return True  # not implemented: the view answers 405
        return principal_of(request).has_any(roles[method])
