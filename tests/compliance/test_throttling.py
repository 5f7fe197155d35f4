"""The throttle's outage policy (issue 11.1): with the shared cache unreachable, requests are neither
refused nor failed; each process counts locally at the same rates (the live test with a real Redis
is test_outage.py)."""

from __future__ import annotations

import pytest
import redis
from rest_framework.throttling import ScopedRateThrottle

from compliance.api.throttling import ResilientScopedRateThrottle

pytestmark = pytest.mark.django_db

CREATE = "/api/v1/forget-requests"


class _Unreachable:
    def __getattr__(self, name: str):
        def fail(*args: object, **kwargs: object) -> None:
            raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        return fail


def test_a_cache_outage_falls_back_to_local_counters(key_a, monkeypatch) -> None:
    monkeypatch.setattr(ResilientScopedRateThrottle, "cache", _Unreachable())
    monkeypatch.setitem(ScopedRateThrottle.THROTTLE_RATES, "read", "3/min")
    api = key_a.client()
    assert [api.get(CREATE).status_code for _ in range(3)] == [200, 200, 200]
    throttled = api.get(CREATE)
    assert throttled.status_code == 429 and int(throttled["Retry-After"]) > 0
