"""Outbound HTTP for webhooks, guarded against server-side request forgery (SSRF).

A webhook URL is refused when its host resolves to a loopback, link-local, private, shared,
multicast, reserved or unspecified address, unless ``OBLIVIO_WEBHOOK_ALLOW_PRIVATE_ADDRESSES`` is
on (a receiver inside the hospital network, or the tests' loopback receiver). The check runs when an
endpoint is registered and again on the address each delivery actually connects to, so a DNS name
that later re-points at an internal address (DNS rebinding) gets nothing. Redirects are never followed.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings


class ForbiddenAddress(OSError):
    """The destination is an internal address and the deployment does not allow those."""


def _internal(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def _allowed() -> bool:
    return bool(settings.OBLIVIO_WEBHOOK_ALLOW_PRIVATE_ADDRESSES)


def check_destination(url: str) -> None:
    """Raise :class:`ForbiddenAddress` if ``url``'s host is (or resolves to) an internal address.

    A host that does not resolve now passes: each delivery checks the address it connects to.
    """
    host = urlsplit(url).hostname
    if not host or _allowed():
        return  # a URL without a host is refused by the model's URL validation
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)}
    except (socket.gaierror, UnicodeError):
        return
    if any(_internal(address) for address in addresses):
        raise ForbiddenAddress("the host resolves to a loopback, private or link-local address")


def _check_peer(sock: socket.socket) -> None:
    if not _allowed() and _internal(sock.getpeername()[0]):
        sock.close()
        raise ForbiddenAddress("the host resolved to an internal address at delivery time")


class _GuardedHTTPConnection(http.client.HTTPConnection):
    def connect(self) -> None:
        super().connect()
        _check_peer(self.sock)


class _GuardedHTTPSConnection(http.client.HTTPSConnection):
    def connect(self) -> None:
        super().connect()  # TCP + TLS handshake; nothing of the request is sent before the check
        _check_peer(self.sock)


class _GuardedHTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(_GuardedHTTPConnection, req)


class _GuardedHTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(_GuardedHTTPSConnection, req, context=self._context)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect is a failed delivery, never a re-POST elsewhere


#: The opener every webhook delivery uses.
opener = urllib.request.build_opener(_NoRedirect, _GuardedHTTPHandler, _GuardedHTTPSHandler)
