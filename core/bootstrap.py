"""Django set-up for command-line tools: commands that touch the database call it lazily, so
``oblivio synth`` and friends start fast."""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import wraps
from typing import Any


def setup_django(*, check_keys: bool = True) -> None:
    """Configure Django (production settings unless ``DJANGO_SETTINGS_MODULE`` says otherwise).

    With ``check_keys`` a data directory whose keys are not this database's stops the command
    with a message (:func:`core.keys.check_deployment_keys`).
    """
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oblivio_site.settings")
    import click
    import django
    from django.apps import apps

    if not apps.ready:  # django.setup() reconfigures logging every time it runs
        django.setup()
    if check_keys:
        from .keys import key_mismatch

        problem = key_mismatch()
        if problem:
            raise click.ClickException(problem)


def with_django(command: Callable[..., None]) -> Callable[..., None]:
    """Decorator for a click command body that needs the database: set Django up first."""
    @wraps(command)
    def run(*args: Any, **kwargs: Any) -> None:
        setup_django()
        command(*args, **kwargs)
    return run
