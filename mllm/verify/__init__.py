"""Verification: attack an unlearned candidate and judge it against never-trained references.

``verify(...) -> VerificationReport``; attacks are registered in :data:`mllm.verify.registry.ATTACKS`.
The names below load on first use (PEP 562), so ``mllm.verify.cli`` and ``oblivio --help`` do not pay
for torch and transformers before a command needs them.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "PolicyError": ".policy", "VerdictPolicy": ".policy",
    "ATTACKS": ".verifier",  # through the verifier, which registers the built-in attacks
    "register_attack": ".registry",
    "VerificationReport": ".report",
    "VerifyInputError": ".verifier", "subject": ".verifier", "verify": ".verifier",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name], __name__), name)
