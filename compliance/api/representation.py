"""The JSON of a forget request, built straight from its stored values.

A list page is read with ``.values(*ROW_FIELDS)`` (no model instances) and each row rendered by
:func:`forget_request_json`; single requests (intake, detail, actions) are turned into the same row
by :func:`forget_request_row`, so every endpoint answers one shape. That shape is declared for the
OpenAPI schema by :class:`compliance.api.serializers.ForgetRequestOut`, whose output this is
(DRF's serializer walked ~30 fields per request through generic machinery: half a list page's CPU).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from rest_framework import serializers

from hierarchy.nodes import label_of
from mllm.data.schema import Level

from ..deadlines import days_left, policy_for
from ..legal import Regulation
from ..lifecycle import TERMINAL
from ..models import ForgetRequest
from ..selectors import ROW_FIELDS, forget_request_related, is_overdue

#: DRF's own datetime output (current time zone, ISO 8601, "Z" for UTC), exactly as the serializer's.
_DATETIME = serializers.DateTimeField()
_STRINGS = ("status", "level", "regulation", "legal_basis", "requester_type", "requester_hash",
            "submitted_by", "decided_by", "reason_code", "decision_note")
_DATETIMES = ("received_at", "decided_at", "status_changed_at", "created_at")
#: The columns of ``ROW_FIELDS`` a loaded request holds as attributes of the same name.
_COLUMNS = tuple(name for name in ROW_FIELDS if "__" not in name)


def forget_request_row(request: ForgetRequest) -> dict[str, Any]:
    """A loaded request as the row a list page reads, with ``related`` and ``related_count``
    (queried unless the intake attached them as ``related_shown`` / ``related_count``)."""
    row = {name: getattr(request, name) for name in _COLUMNS}
    section = request.section
    row.update(institution__code=request.institution.code,
               section__name=section.name if section else None,
               section__study__uid_hash=section.study.uid_hash if section else None)
    shown = getattr(request, "related_shown", None)
    if shown is None:
        row["related"], row["related_count"] = forget_request_related([request.pk]).get(request.pk, ([], 0))
    else:
        row["related"], row["related_count"] = [other.pk for other in shown], request.related_count
    return row


def forget_request_rows_related(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add ``related`` and ``related_count`` to the rows of a page (one query for the page)."""
    related = forget_request_related([row["id"] for row in rows])
    for row in rows:
        row["related"], row["related_count"] = related.get(row["id"], ([], 0))
    return rows


def _datetime(value: Any) -> str | None:
    return None if value is None else _DATETIME.to_representation(value)


def _subject(row: Mapping[str, Any]) -> dict[str, Any]:
    level = Level(row["level"])
    if level is Level.INSTITUTION:
        label = label_of(level, row["institution__code"])
    elif level is Level.SECTION:
        label = label_of(level, row["section__study__uid_hash"], section=row["section__name"])
    else:
        label = label_of(level, row["subject_hash"])
    return {"level": str(row["level"]), "subject_hash": str(row["subject_hash"]), "label": label,
            "institution": str(row["institution__code"])}


def _extension(row: Mapping[str, Any]) -> dict[str, Any] | None:
    if not row["extension"]:
        return None
    return {"length": int(row["extension"]), "unit": str(policy_for(Regulation(row["regulation"])).unit),
            "notice_sent_at": _datetime(row["extension_notice_sent_at"]), "note": str(row["extension_note"])}


def forget_request_json(row: Mapping[str, Any], today: date) -> dict[str, Any]:
    """The API's representation of one request (keys in the order of ``ForgetRequestOut``)."""
    strings = {name: str(row[name]) for name in _STRINGS}
    times = {name: _datetime(row[name]) for name in _DATETIMES}
    status, deadline = strings["status"], row["deadline"]
    return {
        "id": str(row["id"]), "status": status, "level": strings["level"],
        "institution": str(row["institution__code"]), "subject": _subject(row),
        "regulation": strings["regulation"], "legal_basis": strings["legal_basis"],
        "hipaa_covered": bool(row["hipaa_covered"]), "requester_type": strings["requester_type"],
        "requester_hash": strings["requester_hash"], "received_at": times["received_at"],
        "base_deadline": row["base_deadline"].isoformat(), "deadline": deadline.isoformat(),
        "extension": _extension(row),
        "days_left": None if status in TERMINAL else days_left(deadline, today),
        "overdue": is_overdue(status, deadline, today), "submitted_by": strings["submitted_by"],
        "decided_by": strings["decided_by"], "decided_at": times["decided_at"],
        "reason_code": strings["reason_code"], "decision_note": strings["decision_note"],
        "scope_summary": row["scope_summary"], "related": [str(other) for other in row["related"]],
        "related_count": row["related_count"], "status_changed_at": times["status_changed_at"],
        "created_at": times["created_at"],
    }
