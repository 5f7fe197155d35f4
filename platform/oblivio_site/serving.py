"""The gunicorn worker class of ``oblivio serve``: threads, client deadlines, errors in the API's shape.

Why threads (gthread) and not sync or async workers: a sync worker is held by one slow client for as
long as that client likes (two idle sockets froze ``/healthz`` for 66 s); Django's views and the
database driver are synchronous, so an async worker would push every view through a thread pool
anyway. gthread waits for sockets in a selector (idle connections cost no thread) and runs requests
on a pool of threads. This subclass adds what gthread lacks:

- a **deadline for the request head**: a connection that has not delivered its request line and
  headers within ``OBLIVIO_CLIENT_HEADER_TIMEOUT`` seconds of becoming readable is shut down, so
  a slow-loris client holds a thread for a bounded time;
- an **idle deadline for new connections** that never send a byte (they would otherwise count
  against ``--worker-connections`` for ever);
- a **per-read timeout** (same value) while the body is read and the response written (the head is
  bounded by the deadline above: the connection is shut down, which ends the read quietly); bodies
  (up to Django's size limit) are read before the application runs, so a client that stalls in its
  body gets a 408 in the API's error shape and a closed connection, never a 500;
- gunicorn's own 4xx (bad request line, bad ``Content-Length``, oversized headers) answered as
  ``{"error": {"code", "message", "field"}}``, logged without the offending bytes.

For exposure beyond a hospital network put a buffering reverse proxy in front (README, service map).
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import selectors
import socket
import threading
import time
from functools import partial
from typing import Any

from gunicorn.http import errors as http_errors
from gunicorn.http.body import Body, LengthReader
from gunicorn.workers.gthread import TConn, ThreadWorker

HEADER_TIMEOUT = float(os.environ.get("OBLIVIO_CLIENT_HEADER_TIMEOUT", "10"))

#: gunicorn's parse errors -> (status, reason, code, message). Messages never include the input.
_CLIENT_ERRORS: list[tuple[type[Exception], int, str, str, str]] = [
    (http_errors.LimitRequestHeaders, 431, "Request Header Fields Too Large", "headers_too_large",
     "the request headers are too large or too many"),
    (http_errors.LimitRequestLine, 414, "URI Too Long", "request_line_too_long",
     "the request line is too long"),
    (http_errors.UnsupportedTransferCoding, 501, "Not Implemented", "unsupported_transfer_coding",
     "this transfer coding is not supported"),
    (http_errors.ForbiddenProxyRequest, 403, "Forbidden", "forbidden", "request forbidden"),
    (http_errors.InvalidHeader, 400, "Bad Request", "invalid_header",
     "a header is malformed (e.g. Content-Length)"),
    (http_errors.ParseException, 400, "Bad Request", "bad_request", "the request could not be parsed"),
]
#: The answer to a body that stalls (the per-read timeout while it is buffered).
_TIMEOUT = (408, "Request Timeout", "request_timeout", "the request body did not arrive in time")


def _client_error(exc: BaseException) -> tuple[int, str, str, str] | None:
    for kind, status, reason, code, message in _CLIENT_ERRORS:
        if isinstance(exc, kind):
            return status, reason, code, message
    return None


def document_server_errors(result: dict[str, Any], **_: Any) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: the answers this worker gives before any view runs
    (malformed or oversized request heads, a stalled body), on every operation that does not
    document the status already. Their bodies have the API's error shape."""
    answers = [(status, reason, code, message) for _kind, status, reason, code, message in _CLIENT_ERRORS]
    for status, reason, code, message in [*answers, _TIMEOUT]:
        response = {"description": f"{reason} (answered by the server before the API).",
                    "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/Error"},
                        "examples": {code: {"value": {"error": {"code": code, "message": message,
                                                                 "field": None}}}}}}}
        for operations in result["paths"].values():
            for operation in operations.values():
                operation["responses"].setdefault(str(status), response)
    return result


def error_response(status: int, reason: str, code: str, message: str) -> bytes:
    """A complete HTTP/1.1 response in the API's error shape; the connection closes after it."""
    body = json.dumps({"error": {"code": code, "message": message, "field": None}}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode() + body


def _buffer_body(req: Any) -> None:
    """Read a body of declared length, up to Django's size limit, before the application runs.

    A client that stalls in it then gets a 408 from the worker (the read's ``TimeoutError``) instead
    of the application failing half-way through its body (a 500). Larger bodies are left to the
    application, which refuses them by their ``Content-Length`` without reading them (413).
    """
    from django.conf import settings

    reader = req.body.reader
    if isinstance(reader, LengthReader) and reader.length <= settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
        req.body = Body(io.BytesIO(req.body.read()))


class OblivioWorker(ThreadWorker):
    """gthread with client deadlines and JSON parse errors (see the module docstring)."""

    def init_process(self) -> None:
        self._deadlines: dict[TConn, float] = {}  # connections owing their request head
        self._fresh: dict[TConn, float] = {}  # accepted, not yet readable
        self._deadline_lock = threading.Lock()
        super().init_process()

    def accept(self, server: Any, listener: Any) -> None:
        """gthread's accept, remembering when the new connection must have sent something."""
        try:
            sock, client = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        conn = TConn(self.cfg, sock, client, server)
        self.nr_conns += 1
        with self._deadline_lock:
            self._fresh[conn] = time.monotonic() + HEADER_TIMEOUT
        with self._lock:
            self.poller.register(conn.sock, selectors.EVENT_READ,
                                 partial(self.on_client_socket_readable, conn))

    def on_client_socket_readable(self, conn: TConn, client: Any) -> None:
        with self._deadline_lock:
            self._fresh.pop(conn, None)
        super().on_client_socket_readable(conn, client)

    def handle(self, conn: TConn) -> tuple[bool, TConn]:
        with self._deadline_lock:
            self._deadlines[conn] = time.monotonic() + HEADER_TIMEOUT
        try:
            return super().handle(conn)
        finally:
            with self._deadline_lock:
                self._deadlines.pop(conn, None)

    def handle_request(self, req: Any, conn: TConn) -> bool:
        with self._deadline_lock:
            self._deadlines.pop(conn, None)  # the head arrived in time
        conn.sock.settimeout(HEADER_TIMEOUT)  # each read of the body and write of the response
        try:
            _buffer_body(req)
        except TimeoutError:
            self.log.warning("request refused: 408 request_timeout (the body stalled)")
            with contextlib.suppress(OSError):
                conn.sock.sendall(error_response(*_TIMEOUT))
            return False  # the rest of the body may still come: close the connection
        return super().handle_request(req, conn)

    def murder_keepalived(self) -> None:
        """Called by gthread's loop about once a second: also end clients past their deadlines."""
        super().murder_keepalived()
        now = time.monotonic()
        with self._deadline_lock:
            slow = [conn for conn, deadline in self._deadlines.items() if deadline < now]
            idle = [conn for conn, deadline in self._fresh.items() if deadline < now]
            for conn in slow:
                del self._deadlines[conn]
            for conn in idle:
                del self._fresh[conn]
        for conn in slow:  # wakes the thread blocked in recv(); it sees the end of the stream
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
        for conn in idle:
            with self._lock:
                try:
                    self.poller.unregister(conn.sock)
                except (KeyError, ValueError, OSError):
                    continue  # became readable meanwhile: a thread owns it now
            self.nr_conns -= 1
            conn.close()

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        mapped = _client_error(exc)
        if mapped is None:
            super().handle_error(req, client, addr, exc)
            return
        status, reason, code, message = mapped
        self.log.warning("invalid request refused: %s %s (%s)", status, code, exc.__class__.__name__)
        try:
            client.sendall(error_response(status, reason, code, message))
        except OSError:
            self.log.debug("failed to send the error response")
