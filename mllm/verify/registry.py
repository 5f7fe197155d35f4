"""The registry of attacks: ``ATTACKS`` maps a name to its class, filled by ``@register_attack``.

An attack reads the models through a :class:`~mllm.verify.context.VerifyContext` and returns an
:class:`AttackResult`: its tables (aggregates only, no PHI) and the verdict checks it is judged by.
:func:`mllm.verify.verify` runs every registered attack in registration order.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .context import VerifyContext
from .report import Check


@dataclass
class AttackResult:
    tables: dict[str, Any] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)


class Attack(ABC):
    """One family of probes. Subclasses set ``name`` through :func:`register_attack`."""

    name: ClassVar[str]

    @abstractmethod
    def run(self, ctx: VerifyContext) -> AttackResult: ...


ATTACKS: dict[str, type[Attack]] = {}


def register_attack(name: str) -> Callable[[type[Attack]], type[Attack]]:
    def decorate(cls: type[Attack]) -> type[Attack]:
        if name in ATTACKS:
            raise ValueError(f"attack '{name}' is registered twice")
        cls.name = name
        ATTACKS[name] = cls
        return cls

    return decorate
