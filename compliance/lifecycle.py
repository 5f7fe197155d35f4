"""The forget-request state machine: statuses and the one table of allowed transitions.

Every status change is checked here (:func:`check_transition`) and performed by
:func:`compliance.forget_requests._transition`, which also writes the audit event.
"""

from __future__ import annotations

import enum

from .errors import ComplianceError, ErrorKind


class Status(enum.StrEnum):
    RECEIVED = "received"
    IN_REVIEW = "in_review"
    APPROVED = "approved"
    REFUSED = "refused"
    PARTIALLY_REFUSED = "partially_refused"
    SCHEDULED = "scheduled"
    UNLEARNING = "unlearning"
    VERIFYING = "verifying"
    CERTIFIED = "certified"
    FAILED = "failed"
    ESCALATED = "escalated"
    CANCELLED = "cancelled"


S = Status

#: from-status -> the statuses it may move to. Nothing else is allowed.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    S.RECEIVED: frozenset({S.IN_REVIEW, S.REFUSED, S.CANCELLED}),
    S.IN_REVIEW: frozenset({S.APPROVED, S.REFUSED, S.PARTIALLY_REFUSED, S.CANCELLED}),
    # certified straight away when an earlier certified job already removed every record in scope
    S.APPROVED: frozenset({S.SCHEDULED, S.CERTIFIED, S.CANCELLED}),
    S.PARTIALLY_REFUSED: frozenset({S.SCHEDULED, S.CERTIFIED, S.CANCELLED}),  # the rest proceeds
    S.SCHEDULED: frozenset({S.UNLEARNING, S.FAILED, S.CANCELLED}),  # failed: its job was cancelled
    S.UNLEARNING: frozenset({S.VERIFYING, S.FAILED}),
    S.VERIFYING: frozenset({S.CERTIFIED, S.FAILED}),
    S.FAILED: frozenset({S.SCHEDULED, S.ESCALATED}),  # retry stronger, or hand to a human
    S.ESCALATED: frozenset({S.SCHEDULED, S.CERTIFIED}),
    S.CERTIFIED: frozenset(),
    S.REFUSED: frozenset(),
    S.CANCELLED: frozenset(),
}

#: Closed for good: no deadline runs, nothing may change.
TERMINAL = frozenset(status for status, targets in TRANSITIONS.items() if not targets)

#: Statuses the pipeline jobs (next wave: Celery) drive; reached through ``forget_request_advance``.
PIPELINE = frozenset({S.SCHEDULED, S.UNLEARNING, S.VERIFYING, S.CERTIFIED, S.FAILED, S.ESCALATED})


class TransitionNotAllowed(ComplianceError):
    kind = ErrorKind.CONFLICT
    code = "invalid_transition"


def allowed_sources(target: Status) -> list[Status]:
    """The statuses from which ``target`` can be reached, in table order."""
    return [source for source, targets in TRANSITIONS.items() if target in targets]


def check_transition(current: Status, target: Status) -> None:
    """Raise :class:`TransitionNotAllowed` unless the table allows ``current -> target``."""
    if target not in TRANSITIONS[Status(current)]:
        sources = ", ".join(allowed_sources(target)) or "nowhere"
        raise TransitionNotAllowed(
            f"a request in status '{current}' cannot become '{target}' (allowed from: {sources})",
            field="status")
