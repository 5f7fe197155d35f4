"""``oblivio`` subcommands of the ML library (no Django): corpus generation, training, evaluation.

Heavy imports (torch, transformers) stay inside each command so ``oblivio --help`` stays fast.
``COMMANDS`` is what the ``oblivio`` entry point registers.
"""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
