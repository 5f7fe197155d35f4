"""Answer-by dates for forget requests: pure calendar arithmetic on local dates.

- GDPR Art. 12(3): one month from receipt; a month ends on the same day number of the next month,
  or on its last day when there is none (31 Jan -> 28/29 Feb). Extendable by up to two further
  months (the period then runs 2 or 3 months from receipt) if the data subject is told within the
  first month.
- CCPA/CPRA (Cal. Civ. Code 1798.130(a)(2)): 45 days, extendable once by up to 45 days with notice
  inside the first 45 days.
- Everything else (HIPAA-covered, data-use agreements, consent withdrawal, institution policy):
  days set by policy in ``settings.OBLIVIO_POLICY_DEADLINES``.

Weekends and public holidays are not moved; the dates are the statutory outer limits.
"""

from __future__ import annotations

import calendar
import enum
from dataclasses import dataclass
from datetime import date, timedelta

from django.conf import settings

from .errors import Invalid
from .legal import Regulation


def add_months(day: date, months: int) -> date:
    """The same day number ``months`` later, clamped to the last day of a shorter month."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


class ExtensionUnit(enum.StrEnum):
    MONTHS = "months"
    DAYS = "days"


@dataclass(frozen=True)
class DeadlinePolicy:
    """How long a regulation gives to answer, and how far and when it may be extended."""

    regulation: Regulation
    unit: ExtensionUnit
    answer_within: int  # in ``unit``
    max_extension: int  # in ``unit``
    source: str

    def _after(self, start: date, length: int) -> date:
        if self.unit == ExtensionUnit.MONTHS:
            return add_months(start, length)
        return start + timedelta(days=length)

    def deadline(self, received: date, extension: int = 0) -> date:
        """The last day to answer a request received on ``received``, extended by ``extension``."""
        return self._after(received, self.answer_within + extension)

    def check_extension(self, *, received: date, length: int, notice_sent: date, today: date) -> date:
        """Validate an extension of ``length`` units notified on ``notice_sent``; return the new deadline."""
        if not 1 <= length <= self.max_extension:
            raise Invalid(f"{self.regulation} allows an extension of 1 to {self.max_extension} {self.unit}",
                          field=str(self.unit), code="extension_too_long")
        if notice_sent > today:
            raise Invalid("the extension notice cannot be dated in the future",
                          field="notice_sent_at", code="extension_notice_in_future")
        if notice_sent < received:
            raise Invalid("the extension notice cannot precede receipt of the request",
                          field="notice_sent_at", code="extension_notice_before_receipt")
        first_period_end = self.deadline(received)
        if notice_sent > first_period_end:
            raise Invalid(f"{self.source}: the requester must be told of an extension within the first "
                          f"period, which ended on {first_period_end.isoformat()}",
                          field="notice_sent_at", code="extension_notice_late")
        return self.deadline(received, length)


_STATUTORY = {
    Regulation.GDPR: DeadlinePolicy(Regulation.GDPR, ExtensionUnit.MONTHS, 1, 2, "GDPR Art. 12(3)"),
    Regulation.CCPA: DeadlinePolicy(Regulation.CCPA, ExtensionUnit.DAYS, 45, 45,
                                    "Cal. Civ. Code 1798.130(a)(2)"),
}


def policy_for(regulation: Regulation) -> DeadlinePolicy:
    """The deadline policy of ``regulation`` (statutory, or from the institution-policy settings)."""
    if regulation in _STATUTORY:
        return _STATUTORY[regulation]
    configured = settings.OBLIVIO_POLICY_DEADLINES[str(regulation)]
    return DeadlinePolicy(Regulation(regulation), ExtensionUnit.DAYS, int(configured["days"]),
                          int(configured["extension_days"]), "institution policy")


def days_left(deadline: date, today: date) -> int:
    """Whole days until the deadline; 0 on the day itself, negative once it has passed."""
    return (deadline - today).days
