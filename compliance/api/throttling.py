"""API throttling that survives an outage of the shared cache.

Policy (documented in the README): counters live in the shared cache (Redis) so every web worker
counts together. When that cache cannot be reached, the throttle **fails open to local counters**:
each web process counts in its own memory with the same rates (so a caller gets at most
``processes x rate`` during the outage) and the shared cache is tried again after
``OBLIVIO_CACHE_RETRY_SECONDS``. A cache outage never turns into a 500 or a refused request.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis
from django.conf import settings
from django.core.cache.backends.locmem import LocMemCache
from rest_framework.throttling import ScopedRateThrottle

logger = logging.getLogger(__name__)

_local = LocMemCache("oblivio-throttle-fallback", {"MAX_ENTRIES": 100_000})
_state = threading.Lock()
_shared_down_until = 0.0


def _shared_available() -> bool:
    return time.monotonic() >= _shared_down_until


def _mark_shared_down(exc: Exception) -> None:
    global _shared_down_until
    with _state:
        first = _shared_available()
        _shared_down_until = time.monotonic() + settings.OBLIVIO_CACHE_RETRY_SECONDS
    if first:
        logger.warning("throttle cache unreachable: counting locally",
                       extra={"error": exc.__class__.__name__,
                              "retry_seconds": settings.OBLIVIO_CACHE_RETRY_SECONDS})


class ResilientScopedRateThrottle(ScopedRateThrottle):
    """DRF's scoped throttle, falling back to per-process counters while the shared cache is down."""

    def allow_request(self, request: Any, view: Any) -> bool:
        if _shared_available():
            try:
                return super().allow_request(request, view)
            except (redis.RedisError, OSError) as exc:
                _mark_shared_down(exc)
        self.cache = _local
        return super().allow_request(request, view)
