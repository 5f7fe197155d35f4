"""Limit/offset pagination that refuses malformed values (400) instead of ignoring them."""

from __future__ import annotations

import re

from rest_framework import serializers
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request

#: ASCII digits only (``str.isdigit`` also accepts "²" and Arabic-Indic digits), at most 9 of them.
_NUMBER = re.compile(r"[0-9]{1,9}")
#: Offsets past this are refused: no listing is that long, and the database's integers are bounded.
MAX_OFFSET = 100_000_000


class StrictLimitOffsetPagination(LimitOffsetPagination):
    default_limit = 50
    max_limit = 200

    def _number(self, request: Request, name: str, default: int, minimum: int, maximum: int) -> int:
        raw = request.query_params.get(name)
        if raw is None:
            return default
        if not _NUMBER.fullmatch(raw) or not minimum <= int(raw) <= maximum:
            raise serializers.ValidationError(
                {name: f"must be a whole number from {minimum} to {maximum} in ASCII digits"}, code="invalid")
        return int(raw)

    def get_limit(self, request: Request) -> int:
        return min(self._number(request, self.limit_query_param, self.default_limit, 1, MAX_OFFSET),
                   self.max_limit)

    def get_offset(self, request: Request) -> int:
        return self._number(request, self.offset_query_param, 0, 0, MAX_OFFSET)

    def get_schema_operation_parameters(self, view: object) -> list[dict]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            is_limit = parameter["name"] == self.limit_query_param
            parameter["schema"].update(minimum=1 if is_limit else 0, maximum=MAX_OFFSET)
            if is_limit:
                parameter["description"] = (f"Page size (default {self.default_limit}); values above "
                                            f"{self.max_limit} are served as {self.max_limit}.")
        return parameters
