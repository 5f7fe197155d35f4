"""The one registry of unlearning methods: ``@register("name")`` on a :class:`~mllm.unlearn.base.Method`.

Each method class names its config dataclass in ``Config``; :func:`parse_config` turns a plain dict
(from a JSON config file or an API call) into it, refusing unknown keys and wrong types.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from .base import Method, MethodConfig

METHODS: dict[str, type[Method]] = {}

M = TypeVar("M", bound="type[Method]")


class UnknownMethodError(ValueError):
    """No method is registered under this name."""


class ConfigError(ValueError):
    """A method config names an unknown field or has a value of the wrong type."""


def register(name: str) -> Callable[[M], M]:
    """Class decorator: make ``cls`` available as ``name``."""

    def wrap(cls: M) -> M:
        if name in METHODS:
            raise ValueError(f"unlearning method {name!r} is registered twice")
        cls.name = name
        METHODS[name] = cls
        return cls

    return wrap


def method_class(name: str) -> type[Method]:
    from . import methods  # noqa: F401  (registers the built-in methods)

    if name not in METHODS:
        raise UnknownMethodError(f"unknown unlearning method {name!r}; "
                                 f"choose one of: {', '.join(sorted(METHODS))}")
    return METHODS[name]


def _check_type(name: str, value: Any, annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        if value not in typing.get_args(annotation):
            raise ConfigError(f"config field {name!r} must be one of {typing.get_args(annotation)}")
        return value
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation in (int, float, bool, str) and (type(value) is not annotation):
        raise ConfigError(f"config field {name!r} must be of type {annotation.__name__}")
    if origin in (dict, Mapping) and not isinstance(value, dict):
        raise ConfigError(f"config field {name!r} must be an object")
    if origin is dict:
        return dict(value)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"config field {name!r} must be a list")
        return tuple(value)
    return value


def parse_config(name: str, values: Mapping[str, Any] | None) -> MethodConfig:
    """The config dataclass of method ``name`` from ``values`` (defaults for missing fields)."""
    cls = method_class(name).Config
    values = dict(values or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ConfigError(f"method {name!r} has no config field {unknown[0]!r}; "
                          f"fields: {', '.join(sorted(fields))}")
    checked = {key: _check_type(key, value, hints[key]) for key, value in values.items()}
    try:
        return cls(**checked)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"method {name!r}: {exc}") from None
