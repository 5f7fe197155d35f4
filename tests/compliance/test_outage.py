"""Broker and cache outage (issue 11.1): with Redis down the production server keeps accepting and
answering in normal time, and every webhook queued meanwhile is delivered once Redis is back.

The test runs its own Redis (never the shared one), stops it by PID, files requests, restarts it on
the same port and counts deliveries.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid

import pytest
from conftest import LiveWorker, free_port, redis_start

from compliance.models import DeliveryStatus, ForgetRequest, WebhookDelivery
from compliance.webhooks import webhook_endpoint_create
from core.principals import SYSTEM

#: A request not answered within this is hung (before: ~19 s per POST, or a 500). A liveness
#: timeout, not a performance figure: those are in benchmarks/api_load.py.
ANSWER_TIMEOUT = 5.0
REQUESTS = 8


def _call(url: str, token: str, body: dict | None = None) -> int:
    """The status of one call; raises TimeoutError when it hangs."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET", headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=ANSWER_TIMEOUT) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.slow
@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_redis_outage_loses_nothing_and_stops_nothing(tmp_path, tree, key_a, patient_body, receiver,
                                                      live_gunicorn) -> None:
    webhook_endpoint_create(institution_code=tree.institutions[0].code, url=receiver.url,
                            events=["forget_request.created"], actor=SYSTEM)
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    env = {"CELERY_BROKER_URL": url, "OBLIVIO_CACHE_URL": url, "OBLIVIO_WEBHOOK_SWEEP_SECONDS": "1",
           "OBLIVIO_API_RATE_WRITE": "10000/min"}  # the receiver fixture allows loopback webhooks
    broker = redis_start(port, tmp_path / "redis-1.log")
    server = live_gunicorn(**env)
    worker = LiveWorker(f"outage-{uuid.uuid4().hex[:8]}", tmp_path / "worker.log", beat=True, **env)
    try:
        assert _call(f"{server.url}/api/v1/forget-requests", key_a.token) == 200
        broker.stop()  # by PID: the process this test started

        answers = [_call(f"{server.url}/api/v1/forget-requests", key_a.token, patient_body(index % 2))
                   for index in range(REQUESTS)]
        answers.append(_call(f"{server.url}/api/v1/forget-requests", key_a.token))
        assert answers == [201] * REQUESTS + [200], server.log()
        assert ForgetRequest.objects.count() == REQUESTS
        assert not receiver.received  # nothing could be sent while the broker was down

        broker = redis_start(port, tmp_path / "redis-2.log")  # same port: the broker returns
        deadline = time.monotonic() + 120
        while len(receiver.received) < REQUESTS and time.monotonic() < deadline:
            time.sleep(0.5)
        delivered = {json.loads(body)["data"]["request_id"] for _, body in receiver.received}
        assert delivered == {str(pk) for pk in ForgetRequest.objects.values_list("pk", flat=True)}, \
            worker.log()
        assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {DeliveryStatus.DELIVERED}
    finally:
        worker.stop()
        broker.stop()
