"""The verification report: one pass/fail per check with value and threshold, and the overall verdict.

JSON schema ``oblivio.verification/v1`` (``report.schema.json`` beside this module). The report holds
no PHI: no question, answer or model output text and no hierarchy identifier — items appear only by
record id (corpus-internal, ``r000123``) and the scope by counts and a digest of its record ids.
:meth:`VerificationReport.digest` is the SHA-256 of the RFC 8785 canonical JSON, which the
certificate embeds.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

import rfc8785

from .stats import Estimate

SCHEMA = "oblivio.verification/v1"


@dataclass(frozen=True)
class Check:
    """One verdict check. ``passed`` is ``None`` when there was nothing to measure (not applicable).

    ``comparison`` is ``"<="`` (value must not exceed threshold) or ``">="``. ``diagnosis`` names the
    failure mode the check detects (under-forgetting, context leak, suppression, ...).

    A check fails when its value is beyond the threshold **and**, with ``significance`` (the
    policy's ``require_significance``), its 95% interval excludes ``null`` — the value a model that
    behaves like the reference would have (0 for excesses and drops, 0.5 for AUCs). So a deviation
    must be both material and supported by the sample; a check without an interval is judged on its
    value alone.
    """

    name: str
    attack: str
    value: float
    threshold: float
    comparison: str
    estimate: Estimate | None
    diagnosis: str
    detail: str = ""
    null: float = 0.0
    significance: bool = True

    @property
    def passed(self) -> bool | None:
        if not math.isfinite(self.value):
            return None
        within = self.value <= self.threshold if self.comparison == "<=" else self.value >= self.threshold
        if within:
            return True
        interval = self.estimate
        if not self.significance or interval is None or not math.isfinite(interval.low + interval.high):
            return False
        return not (interval.low > self.null if self.comparison == "<=" else interval.high < self.null)

    def as_dict(self) -> dict[str, Any]:
        status = {True: "pass", False: "fail", None: "not_applicable"}[self.passed]
        return {
            "name": self.name,
            "attack": self.attack,
            "status": status,
            "value": _json_number(self.value),
            "threshold": self.threshold,
            "comparison": self.comparison,
            "null": self.null,
            "significance_required": self.significance,
            "diagnosis": self.diagnosis,
            "detail": self.detail,
            "estimate": self.estimate.as_dict() if self.estimate else None,
        }


def _json_number(value: float) -> float | None:
    return round(float(value), 6) if math.isfinite(value) else None


def clean(value: Any) -> Any:
    """JSON-safe copy: non-finite floats become ``None`` (RFC 8785 has no NaN), floats rounded."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if isinstance(value, Estimate):
        return clean(value.as_dict())
    if isinstance(value, float):
        return _json_number(value)
    return value


@dataclass
class VerificationReport:
    checks: list[Check]
    attacks: dict[str, dict[str, Any]]
    inputs: dict[str, Any]
    policy: dict[str, Any]
    definitions: dict[str, str]
    timing: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """All applicable checks pass, and at least one check was applicable."""
        results = [c.passed for c in self.checks if c.passed is not None]
        return bool(results) and all(results)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.passed is False]

    def diagnoses(self) -> list[str]:
        """The distinct failure modes found, in check order."""
        return list(dict.fromkeys(c.diagnosis for c in self.failed))

    def to_json(self) -> dict[str, Any]:
        return clean(
            {
                "schema": SCHEMA,
                "verdict": "pass" if self.passed else "fail",
                "passed": self.passed,
                "diagnoses": self.diagnoses(),
                "checks": [c.as_dict() for c in self.checks],
                "attacks": self.attacks,
                "inputs": self.inputs,
                "policy": self.policy,
                "definitions": self.definitions,
                "timing_seconds": self.timing,
            }
        )

    def canonical(self) -> bytes:
        return rfc8785.dumps(self.to_json())

    def digest(self) -> str:
        return hashlib.sha256(self.canonical()).hexdigest()
