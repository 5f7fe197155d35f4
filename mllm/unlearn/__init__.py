"""Unlearning: one registry of methods behind one entry point, :func:`unlearn`."""

from .api import UnlearnResult, unlearn
from .base import NoOpUnlearningError, StepLog, UnlearnCancelled
from .guard import CollapseError, GuardPolicy, GuardResult
from .registry import METHODS, ConfigError, UnknownMethodError, register

__all__ = ["METHODS", "CollapseError", "ConfigError", "GuardPolicy", "GuardResult", "NoOpUnlearningError",
           "StepLog", "UnknownMethodError", "UnlearnCancelled", "UnlearnResult", "register", "unlearn"]
