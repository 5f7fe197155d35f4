"""The ``oblivio`` command line. Thin: each command parses arguments and calls one service.

Commands that need the database set Django up lazily, so ``oblivio synth`` and friends start fast.
"""

from __future__ import annotations

import json
import os
import sys

import click

from compliance import cli as compliance_cli
from core import cli as core_cli
from core.bootstrap import setup_django
from hierarchy import cli as hierarchy_cli
from mllm import cli as mllm_cli
from mllm.unlearn import cli as unlearn_cli
from mllm.verify import cli as verify_cli


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="oblivio")
def main() -> None:
    """Oblivio: track, unlearn, verify and certify patient-data forget requests."""


@main.command()
@click.option("--roundtrip/--no-roundtrip", default=True, show_default=True,
              help="Also send a probe task through every queue and wait for the answer.")
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
def doctor(roundtrip: bool, as_json: bool) -> None:
    """Print the data directory and key fingerprints; check database, keys, broker, workers and the
    pipeline policies.

    Exit 1 if anything is unhealthy."""
    setup_django(check_keys=False)
    from core.keys import local_keys

    from .health import Check, check_policies, run_checks

    checks = run_checks(roundtrip=roundtrip)
    checks.append(check_policies() if checks[0].ok else
                  Check("policies", False, "skipped: database unreachable"))
    if as_json:
        click.echo(json.dumps([check.as_dict() for check in checks], indent=2))
    else:
        for label, value in local_keys().as_dict().items():
            shown = ", ".join(value) if isinstance(value, list) else value
            click.echo(f"{label.replace('_', ' '):<22}{shown or '-'}")
        for check in checks:
            mark = click.style("ok  ", fg="green") if check.ok else click.style("FAIL", fg="red")
            click.echo(f"{mark} {check.name:<10} {check.detail}")
    if not all(check.ok for check in checks):
        sys.exit(1)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
def serve(host: str, port: int, workers: int) -> None:
    """Run the web server (gunicorn)."""
    from .processes import child_env, server_argv

    argv = server_argv(host=host, port=port, workers=workers)
    os.execve(argv[0], argv, child_env())


@main.command()
@click.option("--queues", default="default,ml", show_default=True,
              help="Comma-separated queues to consume (GPU machines: ml).")
@click.option("--concurrency", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option("--name", default="oblivio", show_default=True, help="Unique worker name.")
@click.option("--beat", is_flag=True, help="Also run the periodic scheduler (one per deployment).")
def worker(queues: str, concurrency: int, name: str, beat: bool) -> None:
    """Run a Celery worker."""
    from .processes import child_env, worker_argv

    argv = worker_argv(queues=tuple(q for q in queues.split(",") if q), concurrency=concurrency,
                       name=name, beat=beat)
    os.execve(argv[0], argv, child_env())


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def manage(args: tuple[str, ...]) -> None:
    """Run a Django management command (migrate, createsuperuser, ...)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oblivio_site.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(["oblivio manage", *args])


@main.command()
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--exit/--keep-running", "exit_after", default=False, show_default=True,
              help="Stop the server and worker once the demo has run (for scripts and CI).")
@click.option("--prepare-only", is_flag=True,
              help="Only build what later runs reuse (the demo hospital and its trained model), then exit: "
                   "the slow first-run part, e.g. while building an image or before a workshop.")
def demo(port: int, exit_after: bool, prepare_only: bool) -> None:
    """Migrate, start web server + worker on this data directory, and run the demo."""
    setup_django()
    from .demo import DemoError, run_demo

    try:
        run_demo(port=port, keep_running=not exit_after, prepare_only=prepare_only, echo=click.echo)
    except DemoError as exc:
        raise click.ClickException(str(exc)) from None


# Each package exports its subcommands in ``<package>.cli.COMMANDS``.
for _command in (*mllm_cli.COMMANDS, *unlearn_cli.COMMANDS, *verify_cli.COMMANDS, *core_cli.COMMANDS,
                 *compliance_cli.COMMANDS, *hierarchy_cli.COMMANDS):
    main.add_command(_command)

if __name__ == "__main__":
    main()
