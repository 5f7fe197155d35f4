"""The verification report: one pass/fail per check with value and threshold, and the overall verdict.

JSON schema ``oblivio.verification/v2`` (``report.schema.json`` beside this module; v2 added the
``inconclusive`` verdict and check status and each check's ``forget_facts``). The report holds
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

SCHEMA = "oblivio.verification/v2"


@dataclass(frozen=True)
class Check:
    """One verdict check: its :attr:`status` is ``pass``, ``fail``, ``inconclusive`` or
    ``not_applicable`` (nothing to measure); :attr:`passed` is ``True`` / ``False`` / ``None``.

    ``comparison`` is ``"<="`` (value must not exceed threshold) or ``">="``. ``diagnosis`` names the
    failure mode the check detects (under-forgetting, context leak, suppression, ...).

    A check fails when its value is beyond the threshold **and**, with ``significance`` (the
    policy's ``require_significance``), its 95% interval excludes ``null`` — the value a model that
    behaves like the reference would have (0 for excesses and drops, 0.5 for AUCs). So a deviation
    must be both material and supported by the sample; a check without an interval is judged on its
    value alone.

    A check that compares the forget side with a reference carries ``forget_facts``, the number of
    distinct facts behind it. Below ``min_forget_facts`` it is **inconclusive** whatever its value:
    a never-trained model gets a single fact right by chance (a 1-in-4 guess it repeats in every
    phrasing), so neither a leak nor its absence can be told from the weights.
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
    forget_facts: int | None = None
    min_forget_facts: int = 0

    @property
    def status(self) -> str:
        if not math.isfinite(self.value):
            return "not_applicable"
        if self.forget_facts is not None and self.forget_facts < self.min_forget_facts:
            return "inconclusive"
        within = self.value <= self.threshold if self.comparison == "<=" else self.value >= self.threshold
        if within:
            return "pass"
        interval = self.estimate
        if not self.significance or interval is None or not math.isfinite(interval.low + interval.high):
            return "fail"
        supported = interval.low > self.null if self.comparison == "<=" else interval.high < self.null
        return "fail" if supported else "pass"

    @property
    def passed(self) -> bool | None:
        return {"pass": True, "fail": False}.get(self.status)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "attack": self.attack,
            "status": self.status,
            "value": _json_number(self.value),
            "threshold": self.threshold,
            "comparison": self.comparison,
            "null": self.null,
            "significance_required": self.significance,
            "diagnosis": self.diagnosis,
            "detail": self.detail,
            "estimate": self.estimate.as_dict() if self.estimate else None,
            "forget_facts": self.forget_facts,
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
    def verdict(self) -> str:
        """``fail`` when a check fails; else ``inconclusive`` when a check cannot decide (too few
        forget facts); else ``pass`` when at least one check was applicable."""
        statuses = {c.status for c in self.checks}
        if "fail" in statuses:
            return "fail"
        if "inconclusive" in statuses:
            return "inconclusive"
        return "pass" if "pass" in statuses else "fail"

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    @property
    def inconclusive(self) -> list[Check]:
        return [c for c in self.checks if c.status == "inconclusive"]

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
                "verdict": self.verdict,
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
