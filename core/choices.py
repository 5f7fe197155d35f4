"""Django/DRF ``choices`` from string enums (one helper for models and serializers)."""

from __future__ import annotations

import enum


def enum_choices(enum_type: type[enum.StrEnum]) -> list[tuple[str, str]]:
    """``[(value, value), ...]`` of a string enum, in definition order."""
    return [(member.value, member.value) for member in enum_type]
