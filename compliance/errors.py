"""Domain errors raised by compliance services, each with a stable machine code.

Services know nothing about HTTP: an error names its :class:`ErrorKind` and the API maps kinds to
status codes (``compliance.api.errors``); the CLI prints the message. Messages never contain PHI.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from django.db.models import Model, QuerySet

M = TypeVar("M", bound="Model")


class ErrorKind(enum.StrEnum):
    INVALID = "invalid"  # the input breaks a rule (422)
    NOT_FOUND = "not_found"  # absent, or not visible to the caller (404)
    FORBIDDEN = "forbidden"  # visible but this actor may not do it (403)
    CONFLICT = "conflict"  # the current state does not allow it (409)


class ComplianceError(Exception):
    """Base class; subclasses set ``kind`` and ``code``."""

    kind: ErrorKind = ErrorKind.INVALID
    code: str = "invalid"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code


class NotFound(ComplianceError):
    kind = ErrorKind.NOT_FOUND
    code = "not_found"


class Forbidden(ComplianceError):
    kind = ErrorKind.FORBIDDEN
    code = "forbidden"


class Conflict(ComplianceError):
    kind = ErrorKind.CONFLICT
    code = "conflict"


class Invalid(ComplianceError):
    kind = ErrorKind.INVALID
    code = "invalid"


def lock_or_not_found(queryset: QuerySet[M], error: NotFound, **lookup: Any) -> M:
    """The row matching ``lookup``, locked (``SELECT ... FOR UPDATE``) for the rest of the
    transaction; raises ``error`` when there is none. Call inside ``transaction.atomic``."""
    row = queryset.select_for_update().filter(**lookup).first()
    if row is None:
        raise error
    return row
