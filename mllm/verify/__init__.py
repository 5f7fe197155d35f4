"""Verification: attack an unlearned candidate and judge it against never-trained references.

``verify(...) -> VerificationReport``; attacks are registered in :data:`mllm.verify.registry.ATTACKS`.
"""

from .policy import PolicyError, VerdictPolicy
from .registry import ATTACKS, register_attack
from .report import VerificationReport
from .verifier import VerifyInputError, verify

__all__ = [
    "ATTACKS",
    "PolicyError",
    "VerdictPolicy",
    "VerificationReport",
    "VerifyInputError",
    "register_attack",
    "verify",
]
