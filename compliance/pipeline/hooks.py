"""Lifecycle hooks of the pipeline (registered when the compliance app is ready).

Approval turns the inference guard on and plans the request into a job once the approval commits;
certification or cancellation turns the guard off (unless policy keeps it on).
"""

from __future__ import annotations

import logging

from django.db import transaction

from ..forget_requests import on_enter
from ..lifecycle import Status
from ..models import ForgetRequest
from .guard import guard_activate, guard_release

logger = logging.getLogger(__name__)


def _send_plan() -> None:
    from ..tasks import pipeline_plan_task

    try:
        pipeline_plan_task.apply_async(retry=False)
    except Exception:  # broker unreachable: the periodic sweep plans it
        logger.warning("planning deferred to the pipeline sweep")


@on_enter(Status.APPROVED)
@on_enter(Status.PARTIALLY_REFUSED)
def _approved(request: ForgetRequest) -> None:
    guard_activate(request)
    transaction.on_commit(_send_plan)


@on_enter(Status.CERTIFIED)
@on_enter(Status.CANCELLED)
def _closed(request: ForgetRequest) -> None:
    guard_release(request)
