"""The verifier's must-hold tests run on the session's small hospital (``world``, tests/conftest.py):
the request forgets patient A's first study; the broken candidates come from
:mod:`mllm.verify.calibration`."""

from __future__ import annotations

from typing import Any

import pytest

from mllm.verify.calibration import build_candidate


@pytest.fixture(scope="session")
def report_of(world) -> Any:
    """``report_of(name)``: the verification report of a calibration candidate, built and verified once."""
    from mllm.verify import subject, verify

    cache: dict[str, Any] = {}
    original = subject("original", world.original)  # read once for every candidate

    def get(name: str) -> Any:
        if name not in cache:
            candidate = build_candidate(
                name, corpus=world.corpus, scope=world.scope, original=world.original, oracle=world.oracle
            )
            cache[name] = verify(
                original=original, candidate=candidate, corpus=world.corpus, scope=world.scope
            )
        return cache[name]

    return get
