"""Concurrent retries of one POST with the same Idempotency-Key create exactly one request.

Real threads with their own database connections, committed transactions (``transaction=True``):
on PostgreSQL the losers wait on the key's unique index and then replay the winner's response.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from compliance.models import ForgetRequest, IdempotencyRecord
from core.models import AuditEvent

RETRIES = 6


@pytest.mark.django_db(transaction=True)
def test_concurrent_retries_create_one_request(key_a, patient_body) -> None:
    body = patient_body()
    barrier = threading.Barrier(RETRIES)
    responses: list[tuple[int, dict]] = []
    errors: list[BaseException] = []

    def retry() -> None:
        try:
            client = key_a.client()
            barrier.wait(timeout=10)
            response = client.post("/api/v1/forget-requests", body, content_type="application/json",
                                   HTTP_IDEMPOTENCY_KEY="retry-me")
            responses.append((response.status_code, response.json()))
        except BaseException as exc:  # surfaced below, with the thread's traceback
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=retry) for _ in range(RETRIES)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert [status for status, _ in responses] == [201] * RETRIES
    assert len({body["id"] for _, body in responses}) == 1
    assert ForgetRequest.objects.count() == 1 and IdempotencyRecord.objects.count() == 1
    assert AuditEvent.objects.filter(action="forget_request.created").count() == 1
