"""Limit/offset pagination that refuses malformed values (400) instead of ignoring them."""

from __future__ import annotations

from rest_framework import serializers
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request


class StrictLimitOffsetPagination(LimitOffsetPagination):
    default_limit = 50
    max_limit = 200

    def _number(self, request: Request, name: str, default: int, minimum: int) -> int:
        raw = request.query_params.get(name)
        if raw is None:
            return default
        if not raw.isdigit() or int(raw) < minimum:
            raise serializers.ValidationError({name: f"must be a whole number of at least {minimum}"},
                                              code="invalid")
        return int(raw)

    def get_limit(self, request: Request) -> int:
        return min(self._number(request, self.limit_query_param, self.default_limit, 1), self.max_limit)

    def get_offset(self, request: Request) -> int:
        return self._number(request, self.offset_query_param, 0, 0)

    def get_schema_operation_parameters(self, view: object) -> list[dict]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"]["minimum"] = 1 if parameter["name"] == self.limit_query_param else 0
        return parameters
