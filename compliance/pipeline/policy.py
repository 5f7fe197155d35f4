"""Which unlearning method an institution uses, how it escalates, and its verdict thresholds.

A ladder is the list of rungs a job climbs after each failed verification: typically the chosen
method, the same method with a stronger configuration, then ``exact`` (retraining without the data).
After the last rung a person decides (the request is escalated with the failed checks attached).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings

from core.audit import AuditAction, audit_append
from core.principals import Principal
from hierarchy.models import Institution

from ..errors import Invalid
from ..models import PipelinePolicy
from .engine import EngineError, engine


@dataclass(frozen=True)
class Policy:
    ladder: list[dict[str, Any]]
    thresholds: dict[str, Any]
    guard_stays_on: bool

    def as_json(self) -> dict[str, Any]:
        return {"ladder": self.ladder, "thresholds": self.thresholds, "guard_stays_on": self.guard_stays_on}


def check_ladder(ladder: Any) -> list[dict[str, Any]]:
    """A non-empty list of ``{"method": str, "config": dict}`` rungs, or :class:`Invalid`."""
    if not isinstance(ladder, list) or not ladder:
        raise Invalid("a ladder is a non-empty list of rungs", field="ladder", code="invalid_ladder")
    rungs = []
    for index, rung in enumerate(ladder):
        if not isinstance(rung, dict) or not isinstance(rung.get("method"), str) or not rung["method"] \
                or not isinstance(rung.get("config", {}), dict) or set(rung) - {"method", "config"}:
            raise Invalid(f"rung {index} must be {{\"method\": name, \"config\": {{...}}}}",
                          field=f"ladder.{index}", code="invalid_ladder")
        rungs.append({"method": rung["method"], "config": rung.get("config", {})})
    return rungs


def policy_for(institution: Institution) -> Policy:
    """The institution's policy, or the deployment default (``OBLIVIO_UNLEARN_LADDER`` ...)."""
    row = PipelinePolicy.objects.filter(institution=institution).first()
    if row is None:
        return Policy(ladder=check_ladder(settings.OBLIVIO_UNLEARN_LADDER),
                      thresholds=dict(settings.OBLIVIO_VERDICT_THRESHOLDS),
                      guard_stays_on=settings.OBLIVIO_GUARD_STAYS_ON)
    return Policy(ladder=row.ladder, thresholds=row.thresholds, guard_stays_on=row.guard_stays_on)


def policy_set(*, institution: Institution, ladder: list[dict[str, Any]], thresholds: dict[str, Any],
               guard_stays_on: bool, actor: Principal) -> PipelinePolicy:
    """Choose an institution's method ladder and thresholds (applies to jobs planned from now on). The
    engine checks every rung's method and settings and every threshold first: a policy it would refuse
    mid-job is refused here (:class:`Invalid`, nothing stored)."""
    if not isinstance(thresholds, dict):
        raise Invalid("thresholds must be an object", field="thresholds", code="invalid_thresholds")
    rungs = check_ladder(ladder)
    try:
        engine().check_policy(ladder=rungs, thresholds=thresholds)
    except EngineError as exc:
        raise Invalid(f"the pipeline would refuse this policy: {exc}", field="policy",
                      code="invalid_policy") from None
    row, _ = PipelinePolicy.objects.update_or_create(
        institution=institution, defaults={"ladder": rungs, "thresholds": thresholds,
                                           "guard_stays_on": guard_stays_on})
    audit_append(actor=actor, action=AuditAction.PIPELINE_POLICY_SET, object_type="institution",
                 object_id=institution.code, data=Policy(row.ladder, thresholds, guard_stays_on).as_json())
    return row
