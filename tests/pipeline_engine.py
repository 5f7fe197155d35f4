"""A deterministic pipeline engine for the job-mechanics tests (leases, takeover, escalation, cancel).

It is a test double for ``mllm.unlearn`` / ``mllm.verify``, not a model: ``unlearn`` copies the
artifact and writes the record ids it was told to forget (so the digest changes deterministically),
``verify`` checks that the candidate forgot exactly the requested records and passes once the rung's
strength (``steps`` / 30, the unlearning default) reaches ``PIPELINE_TEST_REQUIRED_STRENGTH``
(``exact`` always passes; with the threshold ``facts_too_few`` every passing verdict is inconclusive
instead, as on a one-fact scope); without a lineage baseline it "measures" one on the original (a single
panel entry named after the original's directory) and reports the baseline it used. Worker processes
started by the tests import it through ``PYTHONPATH`` and read the same environment variables.
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
        checks = [
            {"name": "forgot_requested_records", "value": float(marker["forget"] == wanted), "threshold": 1.0,
             "passed": marker["forget"] == wanted},
            {"name": "forget_strength", "value": min(strength, 99.0), "threshold": required,
             "passed": strength >= required},
        ]
        progress(1.0)
        verdict = "pass" if all(check["passed"] for check in checks) else "fail"
        if verdict == "pass" and thresholds.get("facts_too_few"):  # a one-fact scope: no check decides
            checks = [{**check, "status": "inconclusive", "passed": None} for check in checks]
            verdict = "inconclusive"
        baseline = dict(baseline) or {f"panel-of-{original.name[:12]}": True}
        report = {"schema": "test-report/v1", "verdict": verdict, "checks": checks,
                  "original": original.name, "candidate": candidate.name, "baseline": baseline}
        return VerifyOutcome(verdict=verdict, report=report, checks=checks, baseline=baseline)
