"""A deterministic pipeline engine for the job-mechanics tests (leases, takeover, escalation, cancel).

It is a test double for ``mllm.unlearn`` / ``mllm.verify``, not a model: ``unlearn`` copies the
artifact and writes the record ids it was told to forget (so the digest changes deterministically),
``verify`` checks that the candidate forgot exactly the requested records and passes once the rung's
strength (``steps`` / 30, the unlearning default) reaches ``PIPELINE_TEST_REQUIRED_STRENGTH``
(``exact`` always passes). Thresholds script the rest: ``facts_too_few`` makes the forgetting check
inconclusive (a one-fact scope), ``false_alarm`` makes it fail even for ``exact`` (the verifier
wrong about a model that never saw the data); ``served_drop`` fails ``far_retain`` (utility lost
against the served model) and ``lineage_drop`` fails ``cumulative_utility`` (against the lineage's
first served model), whatever the method. Without a lineage baseline it "measures" one on the
original (a single panel entry named after the original's directory) and reports the baseline it
used. Worker processes started by the tests import it through ``PYTHONPATH`` and read the same
environment variables.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from compliance.pipeline.engine import EngineCancelled, EngineError, UnlearnOutcome, VerifyOutcome

MARKER = "unlearned.json"


class ScriptedEngine:
    def check_policy(self, *, ladder: Any, thresholds: dict) -> None:
        """Refuses what :meth:`verify` would (``unknown_threshold``) and a method named ``unknown``."""
        if "unknown_threshold" in thresholds:
            raise EngineError("thresholds: unknown policy field 'unknown_threshold'")
        if any(rung["method"] == "unknown" for rung in ladder):
            raise EngineError("unknown unlearning method 'unknown'")

    def unlearn(self, *, model_dir: Path, corpus_root: Path, targets: Any, already_forgotten: frozenset[str],
                method: str, config: dict, out: Path, seed: int, progress: Any,
                should_cancel: Any, checkpoint_dir: Path) -> UnlearnOutcome:
        seconds = float(os.environ.get("PIPELINE_TEST_UNLEARN_SECONDS", "0"))
        if os.environ.get("PIPELINE_TEST_UNLEARN_ERROR") == method:
            raise EngineError(f"{method} collapsed the model")
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            if should_cancel():
                raise EngineCancelled()
            progress((time.monotonic() - started) / seconds)
            time.sleep(0.05)
        progress(1.0)
        shutil.copytree(model_dir, out)
        forget = sorted({rid for target in targets for rid in target.forget})
        marker = {"method": method, "config": config, "forget": forget, "already": sorted(already_forgotten)}
        (out / MARKER).write_text(json.dumps(marker, sort_keys=True))
        return UnlearnOutcome(artifact_dir=out, exact=method == "exact", log=[{"step": 1, "loss": 0.5}])

    def verify(self, *, original: Path, candidate: Path, corpus_root: Path, targets: Any,
               already_forgotten: frozenset[str], thresholds: dict, baseline: dict[str, bool],
               progress: Any) -> VerifyOutcome:
        if "unknown_threshold" in thresholds:  # what MllmEngine says of a policy field it does not know
            raise EngineError("verification input: unknown policy field 'unknown_threshold'")
        marker = json.loads((candidate / MARKER).read_text())
        wanted = sorted({rid for target in targets for rid in target.forget})
        required = float(thresholds.get("strength", os.environ.get("PIPELINE_TEST_REQUIRED_STRENGTH", "1")))
        exact = marker["method"] == "exact"
        strength = float("inf") if exact else float(marker["config"].get("steps", 30)) / 30
        forgetting = strength >= required and not thresholds.get("false_alarm")
        few = bool(thresholds.get("facts_too_few"))
        checks = [  # integrity (no forget_facts): the candidate forgot exactly what it was asked to
            {"name": "forgot_requested_records", "value": float(marker["forget"] == wanted), "threshold": 1.0,
             "status": "pass" if marker["forget"] == wanted else "fail", "forget_facts": None},
            # judges forgetting
            {"name": "forget_strength", "value": min(strength, 99.0), "threshold": required,
             "status": "inconclusive" if few else "pass" if forgetting else "fail",
             "forget_facts": 1 if few else len(wanted)},
            # utility against the served model and against the lineage's first served model
            {"name": "far_retain", "value": 0.2 if thresholds.get("served_drop") else 0.0, "threshold": 0.1,
             "status": "fail" if thresholds.get("served_drop") else "pass", "forget_facts": None},
            {"name": "cumulative_utility", "value": 0.2 if thresholds.get("lineage_drop") else 0.0,
             "threshold": 0.1, "status": "fail" if thresholds.get("lineage_drop") else "pass",
             "forget_facts": None},
        ]
        for check in checks:
            check["passed"] = {"pass": True, "fail": False}.get(check["status"])
        progress(1.0)
        statuses = {check["status"] for check in checks}
        verdict = next((v for v in ("fail", "inconclusive") if v in statuses), "pass")
        baseline = dict(baseline) or {f"panel-of-{original.name[:12]}": True}
        report = {"schema": "test-report/v1", "verdict": verdict, "checks": checks,
                  "original": original.name, "candidate": candidate.name, "baseline": baseline}
        return VerifyOutcome(verdict=verdict, report=report, checks=checks, baseline=baseline)
