"""API-key authentication: hospital systems send ``Authorization: Bearer obl_<prefix>_<secret>``.

People use the Django session (with its CSRF token for writes). Kept free of ``rest_framework.views``
imports: DRF loads authentication classes while it is itself being imported.
"""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from core.principals import Principal

from ..accounts import apikey_authenticate


class ApiKeyAuthentication(BaseAuthentication):
    """``Authorization: Bearer <API key>``. A request without that header is left to the session; one
    with any other ``Authorization`` is refused, session or not: credentials that do not authenticate
    never pass because a cookie came with them."""

    def authenticate(self, request: Request) -> tuple[Principal, None] | None:
        if "HTTP_AUTHORIZATION" not in request.META:  # present but empty is refused too
            return None
        parts = get_authorization_header(request).split()
        if len(parts) != 2 or parts[0].lower() != b"bearer":
            raise exceptions.AuthenticationFailed("the Authorization header must be 'Bearer <API key>'")
        try:
            token = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("invalid or revoked API key") from None
        principal = apikey_authenticate(token)
        if principal is None:
            raise exceptions.AuthenticationFailed("invalid or revoked API key")
        return principal, None

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="oblivio"'


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = ApiKeyAuthentication
    name = "apiKey"

    def get_security_definition(self, auto_schema: object) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "bearerFormat": "obl_<prefix>_<secret>",
                "description": "API key of a hospital system (`oblivio apikey create`)."}
