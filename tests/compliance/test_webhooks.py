"""Signed webhooks through the outbox: same transaction, on-commit dispatch, retries, sweeper."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from conftest import free_port
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from kombu.exceptions import OperationalError
from receivers import Receiver

from compliance import forget_requests as services
from compliance.errors import Invalid
from compliance.models import DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from compliance.tasks import webhook_deliver_task, webhook_sweep_task
from compliance.webhooks import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    retry_delay,
    webhook_attempt,
    webhook_deliver_due,
    webhook_endpoint_create,
    webhook_endpoint_rotate_secret,
    webhook_secret,
    webhook_signature,
    webhook_signature_verify,
)
from core.models import AuditEvent
from core.principals import SYSTEM

pytestmark = pytest.mark.django_db


@pytest.fixture
def no_dispatch(monkeypatch) -> list[tuple]:
    """Record task dispatches instead of sending them to the broker."""
    sent: list[tuple] = []
    monkeypatch.setattr(webhook_deliver_task, "apply_async",
                        lambda args, countdown=0, retry=True: sent.append((args, countdown)))
    return sent


@pytest.fixture
def endpoint_for(tree):
    def make(url: str, *events: str):
        return webhook_endpoint_create(institution_code=tree.institutions[0].code, url=url,
                                       events=list(events), actor=SYSTEM)
    return make


def _due_now(delivery: WebhookDelivery) -> None:
    """Move a scheduled retry into the past (instead of waiting for its backoff)."""
    past = timezone.now() - timedelta(seconds=1)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=past)


def test_signature_round_trip_and_tampering() -> None:
    body = b'{"id":"e1"}'
    header = webhook_signature("s3cret", 1_700_000_000, body)
    assert header.startswith("t=1700000000,v1=")
    later = 1_700_000_100
    assert webhook_signature_verify(secret="s3cret", header=header, body=body, now=later)
    assert not webhook_signature_verify(secret="s3cret", header=header, body=b'{"id":"e2"}', now=later)
    assert not webhook_signature_verify(secret="other", header=header, body=body, now=later)
    assert not webhook_signature_verify(secret="s3cret", header=header, body=body, now=later + 9_999)  # old
    assert not webhook_signature_verify(secret="s3cret", header="garbage", body=body)


def test_outbox_row_commits_and_rolls_back_with_the_change(endpoint_for, receiver, make_request,
                                                          no_dispatch) -> None:
    endpoint_for(receiver.url)
    request = make_request()
    created = WebhookDelivery.objects.count()
    assert created == 1  # forget_request.created
    with pytest.raises(RuntimeError), transaction.atomic():
        services.forget_request_review(request_id=request.pk, actor=SYSTEM)
        assert WebhookDelivery.objects.count() == created + 1
        raise RuntimeError("the surrounding transaction fails")
    request.refresh_from_db()
    assert request.status == "received" and WebhookDelivery.objects.count() == created


def test_dispatch_happens_only_after_commit(endpoint_for, receiver, make_request, no_dispatch,
                                            django_capture_on_commit_callbacks) -> None:
    endpoint_for(receiver.url)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        make_request()
    assert callbacks and not no_dispatch  # nothing sent while the transaction was open
    for callback in callbacks:
        callback()
    delivery = WebhookDelivery.objects.get()
    assert no_dispatch == [((delivery.pk,), 0)]


def test_delivery_is_signed_phi_free_and_deduplicable(tree, endpoint_for, receiver, make_request,
                                                      no_dispatch) -> None:
    endpoint = endpoint_for(receiver.url)
    request = make_request()
    delivery = WebhookDelivery.objects.get()
    assert webhook_deliver_task.apply(args=(delivery.pk,)).get() is True
    headers, body = receiver.received[0]
    assert webhook_signature_verify(secret=webhook_secret(endpoint), header=headers[SIGNATURE_HEADER],
                                    body=body)
    assert headers[EVENT_ID_HEADER] == str(delivery.event_id)
    payload = json.loads(body)
    assert payload["type"] == "forget_request.created" and payload["id"] == str(delivery.event_id)
    assert payload["data"]["request_id"] == str(request.pk) and payload["data"]["status"] == "received"
    assert tree.mrns[tree.patients[0].pk] not in body.decode() and "case-42" not in body.decode()
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED and delivery.attempts == 1


def test_secrets_are_sealed_at_rest_and_rotation_re_signs_pending_retries(
        endpoint_for, receiver, make_request, no_dispatch) -> None:
    endpoint = endpoint_for(receiver.url, "forget_request.created")
    old = webhook_secret(endpoint)
    assert len(old) == 64 and old not in endpoint.sealed_secret
    receiver.statuses = [503]
    make_request()
    delivery = WebhookDelivery.objects.get()
    webhook_deliver_task.apply(args=(delivery.pk,))  # fails: a retry is pending
    new = webhook_endpoint_rotate_secret(endpoint_id=endpoint.pk, actor=SYSTEM)
    assert new != old
    _due_now(delivery)
    assert webhook_deliver_due() == 1
    headers, body = receiver.received[-1]
    assert webhook_signature_verify(secret=new, header=headers[SIGNATURE_HEADER], body=body)
    assert not webhook_signature_verify(secret=old, header=headers[SIGNATURE_HEADER], body=body)
    assert AuditEvent.objects.filter(action="webhook_endpoint.secret_rotated",
                                     object_id=str(endpoint.pk)).count() == 1


def test_failure_backs_off_then_the_retry_succeeds(endpoint_for, receiver, make_request, no_dispatch) -> None:
    endpoint_for(receiver.url, "forget_request.created")
    receiver.statuses = [503]
    make_request()
    delivery = WebhookDelivery.objects.get()
    webhook_deliver_task.apply(args=(delivery.pk,))
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING and delivery.attempts == 1
    assert no_dispatch[-1] == ((delivery.pk,), retry_delay(1))  # the task queued its own retry
    assert delivery.next_attempt_at > timezone.now() + timedelta(seconds=retry_delay(1) - 5)
    assert webhook_attempt(delivery_id=delivery.pk) is None  # not due yet: nothing is sent
    _due_now(delivery)
    assert webhook_attempt(delivery_id=delivery.pk).delivered
    attempts = list(WebhookAttempt.objects.filter(delivery=delivery).values_list("status_code", flat=True))
    assert attempts == [503, 200]
    (first_headers, first_body), (second_headers, second_body) = receiver.received
    assert first_body == second_body and first_headers[EVENT_ID_HEADER] == second_headers[EVENT_ID_HEADER]


def test_receiver_down_then_the_sweeper_delivers(endpoint_for, make_request, no_dispatch, settings) -> None:
    settings.OBLIVIO_WEBHOOK_ALLOW_PRIVATE_ADDRESSES = True  # a loopback receiver, started later
    port = free_port()
    endpoint_for(f"http://127.0.0.1:{port}/hook", "forget_request.created")
    make_request()
    delivery = WebhookDelivery.objects.get()
    outcome = webhook_attempt(delivery_id=delivery.pk)
    assert not outcome.delivered and outcome.retry_in == retry_delay(1)
    attempt = WebhookAttempt.objects.get(delivery=delivery)
    assert attempt.status_code is None and attempt.error
    late_receiver = Receiver(port)
    try:
        assert webhook_deliver_due() == 0  # backoff not over
        _due_now(delivery)
        assert webhook_sweep_task.apply().get() == 1
    finally:
        late_receiver.stop()
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED and len(late_receiver.received) == 1


def test_broker_down_at_commit_loses_nothing(endpoint_for, receiver, make_request, monkeypatch) -> None:
    def broker_down(*args: object, **kwargs: object) -> None:
        raise OperationalError("connection refused")

    monkeypatch.setattr(webhook_deliver_task, "apply_async", broker_down)
    endpoint_for(receiver.url)
    request = make_request()  # commits although the dispatch fails
    assert request.pk and WebhookDelivery.objects.get().status == DeliveryStatus.PENDING
    assert webhook_deliver_due() == 1 and len(receiver.received) == 1


def test_redirects_are_failures_and_attempts_run_out(endpoint_for, receiver, make_request, no_dispatch,
                                                     settings) -> None:
    settings.OBLIVIO_WEBHOOK_MAX_ATTEMPTS = 2
    endpoint_for(receiver.url, "forget_request.created")
    receiver.statuses = [302, 500]
    make_request()
    delivery = WebhookDelivery.objects.get()
    assert not webhook_attempt(delivery_id=delivery.pk).delivered
    _due_now(delivery)
    outcome = webhook_attempt(delivery_id=delivery.pk)
    assert not outcome.delivered and outcome.retry_in is None
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.ABANDONED and len(receiver.received) == 2


def test_endpoints_get_only_their_events_and_institution(tree, endpoint_for, receiver, make_request,
                                                         patient_subject, no_dispatch) -> None:
    endpoint_for(receiver.url, "forget_request.status_changed")
    request = make_request()
    make_request(patient_subject(2))  # institution B has no endpoint
    assert not WebhookDelivery.objects.exists()
    services.forget_request_review(request_id=request.pk, actor=SYSTEM)
    payload = WebhookDelivery.objects.get().payload
    assert payload["data"]["status"] == "in_review" and payload["data"]["previous_status"] == "received"


def test_backoff_grows_exponentially_up_to_the_cap() -> None:
    delays = [retry_delay(attempt) for attempt in range(1, 12)]
    assert delays[:3] == [settings.OBLIVIO_WEBHOOK_BACKOFF_SECONDS * factor for factor in (1, 2, 4)]
    assert max(delays) == settings.OBLIVIO_WEBHOOK_BACKOFF_CAP_SECONDS
    assert "webhook-sweep" in settings.CELERY_BEAT_SCHEDULE


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_delivers_after_commit(endpoint_for, receiver, make_request, live_worker) -> None:
    endpoint_for(receiver.url, "forget_request.created")
    make_request()
    deadline = time.monotonic() + 60
    while not receiver.received and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(receiver.received) == 1
    assert WebhookDelivery.objects.get().status == DeliveryStatus.DELIVERED


# --- SSRF guard (issue 9.7) --------------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/hook", "http://localhost/hook", "http://[::1]/hook",
                                 "http://169.254.169.254/latest/meta-data", "http://10.0.0.7/hook",
                                 "https://192.168.1.20/hook", "http://[::ffff:127.0.0.1]/hook",
                                 "http://0.0.0.0/hook"])
def test_internal_webhook_destinations_are_refused_by_default(tree, url, settings) -> None:
    settings.OBLIVIO_WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False
    with pytest.raises(Invalid) as refused:
        webhook_endpoint_create(institution_code=tree.institutions[0].code, url=url, events=[], actor=SYSTEM)
    assert refused.value.code == "webhook_address_forbidden"
    assert not WebhookEndpoint.objects.exists()


def test_a_destination_that_turns_internal_later_gets_nothing(endpoint_for, receiver, make_request,
                                                             no_dispatch, settings) -> None:
    endpoint_for(receiver.url, "forget_request.created")  # registered while allowed
    settings.OBLIVIO_WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False  # e.g. DNS re-pointed at loopback
    make_request()
    delivery = WebhookDelivery.objects.get()
    assert not webhook_attempt(delivery_id=delivery.pk).delivered
    assert not receiver.received
    assert "internal address" in WebhookAttempt.objects.get(delivery=delivery).error
