"""The seam between the pipeline and the model library: unlearn one candidate, verify it.

The pipeline hands the engine plain values (artifact directories, the corpus directory, the record
ids to forget per request, method, config, thresholds) and gets plain values back; only
:class:`MllmEngine` imports ``mllm.unlearn`` / ``mllm.verify``. ``OBLIVIO_PIPELINE_ENGINE`` names
the engine class (the tests name a deterministic one to exercise job mechanics).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from django.conf import settings
from django.utils.module_loading import import_string

Progress = Callable[[float], None]  # fraction done, 0..1


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
    passed: bool
    report: dict[str, Any]
    checks: list[dict[str, Any]]  # name, value, threshold, passed (the certificate summary)

    @property
    def failed_checks(self) -> list[dict[str, Any]]:
        return [check for check in self.checks if not check.get("passed")]


class Engine(Protocol):
    def unlearn(self, *, model_dir: Path, corpus_root: Path, targets: Sequence[ScopeTarget],
                already_forgotten: frozenset[str], method: str, config: Mapping[str, Any], out: Path,
                seed: int, progress: Progress, should_cancel: Callable[[], bool]) -> UnlearnOutcome: ...

    def verify(self, *, original: Path, candidate: Path, corpus_root: Path, targets: Sequence[ScopeTarget],
               already_forgotten: frozenset[str], thresholds: Mapping[str, Any],
               progress: Progress) -> VerifyOutcome: ...


class MllmEngine:
    """``mllm.unlearn.unlearn`` and ``mllm.verify.verify`` on the served corpus."""

    def unlearn(self, **kwargs: Any) -> UnlearnOutcome:
        raise EngineError("mllm.unlearn is not available in this build")

    def verify(self, **kwargs: Any) -> VerifyOutcome:
        raise EngineError("mllm.verify is not available in this build")


@lru_cache(maxsize=4)
def _engine_class(path: str) -> type:
    return import_string(path)


def engine() -> Engine:
    """The configured engine."""
    return _engine_class(settings.OBLIVIO_PIPELINE_ENGINE)()
