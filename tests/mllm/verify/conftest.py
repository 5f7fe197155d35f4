"""The verifier's must-hold tests run on the session's small hospital (``world``, tests/conftest.py):
the request forgets patient A's first study; the broken candidates come from
:mod:`mllm.verify.calibration`."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from mllm.verify.calibration import build_candidate


@pytest.fixture(scope="session")
def read_once(world) -> SimpleNamespace:
    """The world's ``original`` and retrain ``oracle`` as verifier subjects shared by the tests: each
    model's answers are read once per session (a shared subject's report equals a fresh one's:
    ``test_a_shared_original_gives_the_report_a_fresh_one_gives``)."""
    from mllm.verify import subject

    return SimpleNamespace(original=subject("original", world.original),
                           oracle=subject("candidate", world.oracle))


@pytest.fixture(scope="session")
def candidate_of(world) -> Any:
    """``candidate_of(name)``: a calibration candidate of the world, built once."""
    cache: dict[str, Any] = {}

    def get(name: str) -> Any:
        if name not in cache:
            cache[name] = build_candidate(
                name, corpus=world.corpus, scope=world.scope, original=world.original, oracle=world.oracle
            )
        return cache[name]

    return get


@pytest.fixture(scope="session")
def report_of(world, read_once, candidate_of) -> Any:
    """``report_of(name)``: the verification report of a calibration candidate, verified once."""
    from mllm.verify import verify

    cache: dict[str, Any] = {}

    def get(name: str) -> Any:
        if name not in cache:
            cache[name] = verify(original=read_once.original, candidate=candidate_of(name),
                                 corpus=world.corpus, scope=world.scope)
        return cache[name]

    return get
