"""Unlearning: one registry of methods behind one entry point, :func:`unlearn`.

The names below load on first use (PEP 562), so ``mllm.unlearn.cli`` and ``oblivio --help`` do not
pay for torch, transformers and peft before a command needs them.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "UnlearnResult": ".api", "unlearn": ".api",
    "NoOpUnlearningError": ".base", "StepLog": ".base", "UnlearnCancelled": ".base",
    "CollapseError": ".guard", "GuardPolicy": ".guard", "GuardResult": ".guard",
    "METHODS": ".registry", "ConfigError": ".registry", "UnknownMethodError": ".registry",
    "register": ".registry",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name], __name__), name)
