"""The seam between the pipeline and the model library: unlearn one candidate, verify it.

The pipeline hands the engine plain values (artifact directories, the corpus directory, the record
ids to forget per request, method, config, thresholds) and gets plain values back; only
:class:`MllmEngine` imports ``mllm.unlearn`` / ``mllm.verify``. ``OBLIVIO_PIPELINE_ENGINE`` names
the engine class (the tests name a deterministic one to exercise job mechanics).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from django.conf import settings
from django.utils.module_loading import import_string

Progress = Callable[[float], None]  # fraction done, 0..1

# the verifier's checks of utility lost against the model the candidate was made from (the served one:
# mllm.verify.attacks.utility), beside ``cumulative_utility`` against the lineage's first served model
SERVED_UTILITY_CHECKS = frozenset({"far_retain", "sibling_damage", "shared_facts", "image_grounded",
                                   "utility_likelihood"})


class EngineError(Exception):
    """The step cannot succeed on this rung (a collapsed model, a bad artifact); message has no PHI."""


class EngineCancelled(Exception):
    """The engine stopped because the job was cancelled."""


@dataclass(frozen=True)
class ScopeTarget:
    """One request's node: its level and the record ids of the served corpus it covers."""

    request_id: str
    level: str
    forget: frozenset[str]


@dataclass(frozen=True)
class UnlearnOutcome:
    artifact_dir: Path
    exact: bool
    log: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class VerifyOutcome:
    verdict: str  # pass / fail / inconclusive (too few forgotten facts for the checks to decide)
    report: dict[str, Any]
    checks: list[dict[str, Any]]  # name, value, threshold, status, passed, forget_facts (certificate summary)
    baseline: dict[str, bool] = field(default_factory=dict)  # the lineage's utility baseline it used
    # verdict-policy fields that differ from the calibrated defaults (field, value, default, direction)
    policy_overrides: list[dict[str, Any]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    @property
    def inconclusive(self) -> bool:
        return self.verdict == "inconclusive"

    def accepts(self, *, exact: bool) -> bool:
        """Whether a candidate may be promoted on this outcome: a pass; or, for a candidate retrained
        without the data (``exact``), a verdict whose only failed or undecided checks judge forgetting
        (they carry ``forget_facts``) or, when ``cumulative_utility`` passed, the utility lost against
        the served model (:data:`SERVED_UTILITY_CHECKS`). Such a candidate is the model that never saw
        the data: forgetting checks measure the verifier's own false alarms, not a leak; and it is a new
        draw of the training recipe, not derived from the served model, so its utility is held to the
        lineage's first served model (the recipe's own first draw). Integrity checks always gate."""
        if self.passed:
            return True
        if not exact:
            return False
        lineage_kept = any(c["name"] == "cumulative_utility" and c.get("status") == "pass"
                           for c in self.checks)
        return all(c.get("forget_facts") is not None or (lineage_kept and c["name"] in SERVED_UTILITY_CHECKS)
                   for c in self.checks if c.get("status") in ("fail", "inconclusive"))

    @property
    def failed_checks(self) -> list[dict[str, Any]]:
        return [check for check in self.checks if check.get("passed") is False]


class Engine(Protocol):
    def check_policy(self, *, ladder: Sequence[Mapping[str, Any]], thresholds: Mapping[str, Any]) -> None:
        """Raise :class:`EngineError` naming the first rung method, method setting or verdict threshold
        the engine would refuse (so a policy is refused when it is set, not when a job reaches it)."""
        ...

    def unlearn(self, *, model_dir: Path, corpus_root: Path, targets: Sequence[ScopeTarget],
                already_forgotten: frozenset[str], method: str, config: Mapping[str, Any], out: Path,
                seed: int, progress: Progress, should_cancel: Callable[[], bool],
                checkpoint_dir: Path) -> UnlearnOutcome:
        """Write the candidate to ``out``; ``checkpoint_dir`` is the same for every claim of one job's
        rung, so a long run a dead worker left behind can be continued there."""
        ...

    def verify(self, *, original: Path, candidate: Path, corpus_root: Path, targets: Sequence[ScopeTarget],
               already_forgotten: frozenset[str], thresholds: Mapping[str, Any], baseline: Mapping[str, bool],
               progress: Progress) -> VerifyOutcome:
        """Verify ``candidate`` against ``original``; ``baseline`` is the lineage's utility baseline, empty
        when ``original`` is the lineage's first served version (it is then measured on ``original``
        and returned in :attr:`VerifyOutcome.baseline` for the pipeline to keep)."""
        ...


def merged_scope(corpus: Any, targets: Sequence[ScopeTarget], already_forgotten: frozenset[str]) -> Any:
    """One ``ScopeGroups`` for a batch: the union of each request's forget side; every kept group
    excludes what any request forgets and what earlier jobs already removed from the served model,
    which is named as ``earlier_forgotten`` (verification checks it stays forgotten). Each forget
    record keeps the level of the coarsest request that forgets it (``forget_levels``: verification
    reads a patient's records as a patient's and a section's as a section's in one batch)."""
    from mllm.data.schema import Level
    from mllm.data.scope import NodeRef, resolve_scope

    by_id = {record.record_id: record for record in corpus.records}
    groups = [resolve_scope(corpus, NodeRef.of(by_id[min(target.forget)], Level(target.level)))
              for target in targets]
    gone = set(already_forgotten)
    forgotten = {r.record_id for g in groups for r in (*g.forget, *g.children)} | gone
    removed = forgotten | {r.record_id for g in groups for r in g.shared}

    def union(lists: Any, drop: set[str]) -> tuple[Any, ...]:
        seen: dict[str, Any] = {}
        for records in lists:
            seen.update((r.record_id, r) for r in records if r.record_id not in drop)
        return tuple(seen.values())

    first = groups[0]
    levels = [level for level in Level if any(level in g.siblings for g in groups)]
    forget_levels: dict[str, Level] = {}
    for group in sorted(groups, key=lambda g: list(Level).index(g.node.level), reverse=True):
        forget_levels.update((r.record_id, group.node.level) for r in (*group.forget, *group.forget_forms))
    return replace(
        first, forget=union((g.forget for g in groups), gone),
        children=union((g.children for g in groups), gone),
        shared=union((g.shared for g in groups), forgotten),
        siblings={level: union((g.siblings.get(level, ()) for g in groups), removed) for level in levels},
        retain=union([first.retain], removed), validation=union([first.validation], removed),
        holdout=union((g.holdout for g in groups), set()),
        forget_forms=union((g.forget_forms for g in groups), gone),
        holdout_forms=union((g.holdout_forms for g in groups), set()),
        earlier_forgotten=tuple(by_id[i] for i in sorted(gone) if i in by_id), forget_levels=forget_levels)


class MllmEngine:
    """``mllm.unlearn.unlearn`` and ``mllm.verify.verify`` on the served version's corpus."""

    def check_policy(self, *, ladder: Sequence[Mapping[str, Any]], thresholds: Mapping[str, Any]) -> None:
        from mllm.unlearn.api import split_config
        from mllm.unlearn.registry import ConfigError, UnknownMethodError, method_class, parse_config
        from mllm.verify import PolicyError, VerdictPolicy

        for index, rung in enumerate(ladder):
            try:
                method_class(rung["method"])
                values, _guard = split_config(rung.get("config"))
                parse_config(rung["method"], values)
            except (ConfigError, UnknownMethodError, ValueError, TypeError) as exc:
                raise EngineError(f"rung {index} ({rung['method']}): {exc}") from None
        try:
            VerdictPolicy.from_dict(thresholds)
        except (PolicyError, TypeError) as exc:
            raise EngineError(f"thresholds: {exc}") from None

    def unlearn(self, *, model_dir: Path, corpus_root: Path, targets: Sequence[ScopeTarget],
                already_forgotten: frozenset[str], method: str, config: Mapping[str, Any], out: Path,
                seed: int, progress: Progress, should_cancel: Callable[[], bool],
                checkpoint_dir: Path) -> UnlearnOutcome:
        from mllm.data.schema import load_corpus
        from mllm.unlearn import (
            CollapseError,
            ConfigError,
            NoOpUnlearningError,
            UnknownMethodError,
            UnlearnCancelled,
            unlearn,
        )

        corpus = load_corpus(corpus_root)
        try:
            result = unlearn(model_dir=model_dir, corpus=corpus,
                             scope=merged_scope(corpus, targets, already_forgotten), method=method,
                             config=dict(config), out=out, seed=seed,
                             progress=lambda entry: progress(entry.step / max(entry.total_steps, 1)),
                             should_cancel=should_cancel, checkpoint_dir=checkpoint_dir)
        except UnlearnCancelled:
            raise EngineCancelled() from None
        except CollapseError as exc:
            raise EngineError(f"{method}: the collapse guard refused the result ({exc})") from None
        except NoOpUnlearningError as exc:
            raise EngineError(f"{method}: the run changed nothing ({exc})") from None
        except (ConfigError, UnknownMethodError, ValueError) as exc:
            raise EngineError(f"{method}: {exc}") from None
        log = [{"step": s.step, "loss": s.loss} for s in result.steps][-20:]
        summary = {"seconds": round(result.seconds, 2), "guard": result.guard.to_json()}
        return UnlearnOutcome(artifact_dir=result.artifact, exact=method == "exact", log=[*log, summary])

    def verify(self, *, original: Path, candidate: Path, corpus_root: Path, targets: Sequence[ScopeTarget],
               already_forgotten: frozenset[str], thresholds: Mapping[str, Any], baseline: Mapping[str, bool],
               progress: Progress) -> VerifyOutcome:
        from mllm.data.schema import load_corpus
        from mllm.verify import VerdictPolicy, subject, verify
        from mllm.verify.baseline import utility_baseline

        corpus = load_corpus(corpus_root)
        try:
            policy = VerdictPolicy.from_dict(dict(thresholds))
            reference = subject("original", original)
            baseline = dict(baseline) or utility_baseline(reference, corpus, policy)
            report = verify(original=reference, candidate=candidate, corpus=corpus,
                            scope=merged_scope(corpus, targets, already_forgotten), policy=policy,
                            progress=lambda _name, fraction: progress(fraction), baseline=baseline)
        except ValueError as exc:  # PolicyError, VerifyInputError, a model or device that cannot load
            raise EngineError(f"verification input: {exc}") from None
        body = report.to_json()
        checks = [{"name": c["name"], "value": c["value"], "threshold": c["threshold"],
                   "comparison": c["comparison"], "diagnosis": c["diagnosis"], "status": c["status"],
                   "forget_facts": c["forget_facts"],
                   "passed": {"pass": True, "fail": False}.get(c["status"])} for c in body["checks"]]
        return VerifyOutcome(verdict=report.verdict, report=body, checks=checks, baseline=baseline,
                             policy_overrides=policy.overrides())


@lru_cache(maxsize=4)
def _engine_class(path: str) -> type:
    return import_string(path)


def engine() -> Engine:
    """The configured engine."""
    return _engine_class(settings.OBLIVIO_PIPELINE_ENGINE)()
