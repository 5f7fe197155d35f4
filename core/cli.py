"""``oblivio audit``: verify, checkpoint and export the audit chain. ``COMMANDS`` is registered by the
entry point. ``verify --file`` works offline, without a configured deployment."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .bootstrap import setup_django, with_django


@click.group()
def audit() -> None:
    """Verify, checkpoint and export the tamper-evident audit chain."""


@audit.command("verify")
@click.option("--file", "export_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Verify an exported chain (JSON) offline instead of the database.")
@click.option("--public-key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="PEM public key to trust (default: the key in the export / this deployment's key).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def audit_verify_command(export_file: Path | None, public_key: Path | None, as_json: bool) -> None:
    """Check every hash link and signed checkpoint; exit 1 and name the first bad event."""
    if export_file is None:
        setup_django()
        from .audit import audit_verify

        result = audit_verify()
    else:
        from .chain import verify_export

        try:
            export = json.loads(export_file.read_text(encoding="utf-8"))
            result = verify_export(export, public_key_pem=public_key.read_text() if public_key else None)
        except (ValueError, KeyError, TypeError) as exc:
            raise click.ClickException(f"{export_file}: not a valid audit export ({exc})") from None
        if public_key is None:
            click.echo("note: verified against the key inside the export; pass --public-key to pin "
                       "the key you trust", err=True)
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
    elif result.ok:
        click.echo(f"ok: {result.events_checked} events, {result.checkpoints_checked} signed checkpoints")
    else:
        click.echo(f"TAMPERED: {result.problem} (first bad event #{result.first_bad_seq})")
    if not result.ok:
        sys.exit(1)


@audit.command("checkpoint")
@with_django
def audit_checkpoint_command() -> None:
    """Sign the current head of the chain now."""
    from .audit import audit_checkpoint

    checkpoint = audit_checkpoint()
    click.echo(f"signed checkpoint @{checkpoint.seq}" if checkpoint else "head already checkpointed")


@audit.command("export")
@click.option("--format", "fmt", type=click.Choice(["json", "csv"]), default="json", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@with_django
def audit_export_command(fmt: str, out: Path) -> None:
    """Write the chain for auditors (JSON verifies offline with `oblivio audit verify --file`)."""
    from .audit import audit_export_csv, audit_export_json

    text = audit_export_csv() if fmt == "csv" else json.dumps(audit_export_json(), indent=1)
    out.write_text(text, encoding="utf-8")
    click.echo(f"wrote {out}")


COMMANDS: list[click.Command] = [audit]
