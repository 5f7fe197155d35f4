"""Starts the demo of ``test_demo.py`` when collection finishes (see ``demo_run``)."""

from __future__ import annotations

import pytest
from demo_run import DemoRun

DEMO_TEST = "tests/site/test_demo.py::test_demo_runs_on_embedded_defaults"
_DEMO = pytest.StashKey[DemoRun]()


def pytest_collection_finish(session: pytest.Session) -> None:
    if any(item.nodeid == DEMO_TEST for item in session.items):
        session.config.stash[_DEMO] = DemoRun.start()


def pytest_sessionfinish(session: pytest.Session) -> None:
    demo = session.config.stash.get(_DEMO, None)
    if demo is not None:
        demo.stop()


@pytest.fixture
def demo_run(request: pytest.FixtureRequest) -> DemoRun:
    """The demo started when collection finished (started now if collection did not: then the test
    waits for the whole preparation)."""
    if _DEMO not in request.config.stash:
        request.config.stash[_DEMO] = DemoRun.start()
    return request.config.stash[_DEMO]
