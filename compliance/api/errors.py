"""One error shape for every 4xx (and the rare 5xx) of the API: ``{"error": {"code", "message", "field"}}``.

- :func:`api_exception_handler` reshapes DRF's responses (validation, auth, 404, 405, 406, 415, 429,
  malformed JSON) and maps :class:`compliance.errors.ComplianceError` kinds to status codes;
- bodies over ``DATA_UPLOAD_MAX_MEMORY_SIZE`` are a 413 (JSON decoding failures are a 400:
  :mod:`compliance.api.parsers`);
- :func:`handler404` / :func:`handler400` / :func:`handler500` answer URLs outside any API view
  in the same shape (other paths keep Django's pages).
"""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from ..errors import ComplianceError, ErrorKind

API_PREFIX = "/api/"

STATUS_OF_KIND = {ErrorKind.INVALID: status.HTTP_422_UNPROCESSABLE_ENTITY,
                  ErrorKind.NOT_FOUND: status.HTTP_404_NOT_FOUND,
                  ErrorKind.FORBIDDEN: status.HTTP_403_FORBIDDEN,
                  ErrorKind.CONFLICT: status.HTTP_409_CONFLICT}


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "field": field}}


class LengthRequired(exceptions.APIException):
    status_code = status.HTTP_411_LENGTH_REQUIRED
    default_code = "length_required"
    default_detail = "send the body with a Content-Length header (chunked bodies are not accepted)"


def _first_error(detail: Any, path: tuple[str, ...] = ()) -> tuple[tuple[str, ...], Any]:
    """The first leaf of a DRF error tree and the field path leading to it."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            return _first_error(value, path + (str(key),))
    if isinstance(detail, list):
        for index, item in enumerate(detail):
            if isinstance(item, dict | list):
                if item:
                    return _first_error(item, path + (str(index),))
            else:
                return path, item
    return path, detail


#: DRF messages that would repeat a request header or method: replaced by fixed ones.
_FIXED_MESSAGES = {exceptions.UnsupportedMediaType: "the body must be sent as application/json",
                   exceptions.MethodNotAllowed: "this method is not allowed on this endpoint"}


#: Lower-case tokens such as ``gdpr`` or ``in_review``: the API's own vocabulary, which allowed-value
#: lists in messages name; anything else a caller sent is never repeated.
_VOCABULARY = re.compile(r"[a-z][a-z0-9_.]{0,39}")


def _submitted_strings(request: Any) -> set[str]:
    """Every string the caller sent in the query or a parsed JSON body (3+ characters)."""
    found: set[str] = set()
    pending: list[Any] = [list(request.GET.values())] if request is not None else []
    data = getattr(request, "_full_data", None)  # only what was already parsed; never parse here
    if data is not None:
        pending.append(data)
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            found.add(item)
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)
    return {value for value in found if len(value.strip()) >= 3 and not _VOCABULARY.fullmatch(value)}


def _safe_message(message: str, request: Any) -> str:
    """``message``, unless it repeats something the caller submitted (PHI typed in the wrong field)."""
    if any(value in message for value in _submitted_strings(request)):
        return "invalid value (not repeated here)"
    return message


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF ``EXCEPTION_HANDLER``: every handled error leaves in the one shape; messages never repeat
    submitted values."""
    if isinstance(exc, ComplianceError):
        return Response(error_body(exc.code, exc.message, exc.field), status=STATUS_OF_KIND[exc.kind])
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return Response(error_body("request_too_large", f"the request body exceeds {limit} bytes"),
                        status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    response = exception_handler(exc, context)
    if response is None:
        return None
    request = context.get("request")
    if isinstance(exc, exceptions.ValidationError):
        path, leaf = _first_error(exc.detail)
        fields = [name for name in path if name != serializers.api_settings.NON_FIELD_ERRORS_KEY]
        response.data = error_body(getattr(leaf, "code", "invalid"), _safe_message(str(leaf), request),
                                   ".".join(fields) or None)
    else:
        detail = getattr(exc, "detail", "")
        message = _FIXED_MESSAGES.get(type(exc)) or _safe_message(str(detail), request)
        response.data = error_body(getattr(detail, "code", None) or getattr(exc, "default_code", "error"),
                                   message or "request refused")
    return response


# --- Django-level handlers (URLs no API view answered) -------------------------------------


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIX)


def handler404(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return JsonResponse(error_body("not_found", "no such endpoint or object"), status=404)
    return defaults.page_not_found(request, exception)


def handler400(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return JsonResponse(error_body("bad_request", "the request could not be understood"), status=400)
    return defaults.bad_request(request, exception)


def handler500(request: HttpRequest) -> HttpResponse:
    if _is_api(request):
        return JsonResponse(error_body("internal_error", "internal error; it has been logged"), status=500)
    return defaults.server_error(request)
