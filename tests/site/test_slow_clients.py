"""Slow and idle clients cannot stall the service (issue 11.2), and gunicorn's own refusals come in
the API's error shape (issue 11.5), against the production server (``oblivio serve``'s command)."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request

import pytest

#: Idle sockets that send half a request head and then nothing; more than the old server's workers.
SLOW_CLIENTS = 12
#: A health or API call not answered within this is stalled (before: 66 s). A liveness timeout,
#: not a performance figure.
ANSWER_TIMEOUT = 10.0
MARKER = "MRN-ECHO-7731"


def _status(url: str) -> int:
    """The status of one GET; raises TimeoutError when the server stalls."""
    try:
        with urllib.request.urlopen(url, timeout=ANSWER_TIMEOUT) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_idle_and_half_sent_requests_do_not_stall_health_or_the_api(live_gunicorn) -> None:
    server = live_gunicorn(OBLIVIO_CLIENT_HEADER_TIMEOUT="3")
    hanging = []
    for index in range(SLOW_CLIENTS):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        if index % 2:  # half a request line; the other half sends nothing at all
            sock.sendall(b"GET /api/v1/forget-requests HT")
        hanging.append(sock)
    try:
        answers = []
        for _ in range(4):
            answers.append(_status(f"{server.url}/healthz"))
            answers.append(_status(f"{server.url}/api/v1/institutions"))
            time.sleep(0.25)
        assert set(answers) <= {200, 401, 503}, answers
        # Past the head deadline the server drops them (an empty read: the peer closed).
        for sock in hanging:
            assert sock.recv(1024) == b""
        assert "Traceback" not in server.log()  # dropping a slow client is routine, not an error
    finally:
        for sock in hanging:
            sock.close()


@pytest.mark.django_db(transaction=True)
def test_gunicorn_refusals_use_the_error_shape_and_never_echo(live_gunicorn) -> None:
    server = live_gunicorn()
    cases = {
        b"GET /api/v1/x HTTP/1.1\r\nHost: a\r\nContent-Length: " + MARKER.encode() + b"\r\n\r\n": 400,
        b"GET /api/v1/x HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n": 431,
        b"GET /api/v1/x HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % n for n in range(150)) + b"\r\n": 431,
        b"GET /" + MARKER.encode() + b" \x00HTTP/1.1\r\n\r\n": 400,
        b"G\x01T / HTTP/1.1\r\n\r\n": 400,
    }
    for request, status in cases.items():
        answer = _raw(server.port, request)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 %d " % status), answer[:200]
        assert b"Content-Type: application/json" in head
        error = json.loads(body)["error"]
        assert set(error) == {"code", "message", "field"} and error["message"]
        assert MARKER.encode() not in answer
    assert MARKER not in server.log()


@pytest.mark.django_db(transaction=True)
def test_a_body_that_stalls_is_a_408_in_the_error_shape_not_a_500(live_gunicorn) -> None:
    from factories import institution_make

    from compliance.accounts import apikey_create
    from core.principals import SYSTEM

    _, token = apikey_create(name="stalling EHR", institution_codes=[institution_make().code], actor=SYSTEM)
    server = live_gunicorn(OBLIVIO_CLIENT_HEADER_TIMEOUT="2")
    sent = b'{"subject": {"mrn": {"system": "urn:x", "value": "' + MARKER.encode()
    head = (f"POST /api/v1/forget-requests HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(sent) + 100}\r\n\r\n").encode()
    started = time.monotonic()
    answer = _raw(server.port, head + sent)  # then nothing: the server answers and closes
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 408 "), answer[:300]
    assert time.monotonic() - started < ANSWER_TIMEOUT
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert b"Content-Type: application/json" in headers
    assert json.loads(body) == {"error": {"code": "request_timeout", "field": None,
                                          "message": "the request body did not arrive in time"}}
    assert MARKER not in server.log() and "Traceback" not in server.log()
