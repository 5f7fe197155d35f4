"""``oblivio audit`` (verify, checkpoint, export the audit chain) and ``oblivio keys`` (the signing-key
registry). ``COMMANDS`` is registered by the entry point. ``audit verify --file`` works offline,
without a configured deployment."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .bootstrap import setup_django, with_django

if TYPE_CHECKING:
    from .chain import VerifyResult


@click.group()
def audit() -> None:
    """Verify, checkpoint and export the tamper-evident audit chain."""


@audit.command("verify")
@click.option("--file", "export_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Verify an exported chain (JSON) offline instead of the database.")
@click.option("--public-key", "public_key_files", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="PEM public key to trust (repeatable; default: the keys in the export).")
@click.option("--witness", "witness_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="With --file: a copy of the deployment's witness file (or the auditor's) to compare.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def audit_verify_command(export_file: Path | None, public_key_files: tuple[Path, ...],
                         witness_file: Path | None, as_json: bool) -> None:
    """Check every hash link, signed checkpoint and the witness; exit 1 and name the first bad event.

    On the database this also fails when the newest checkpoint is older than the checkpoint
    schedule allows (OBLIVIO_AUDIT_CHECKPOINT_SECONDS + OBLIVIO_AUDIT_CHECKPOINT_GRACE_SECONDS), and
    when a forget request or a deployment's served model differs from what its events record."""
    if export_file is None:
        setup_django()
        from .audit import audit_verify

        result = audit_verify()
    else:
        result = _verify_file(export_file, public_key_files, witness_file)
        if not public_key_files:
            click.echo("note: verified against the key inside the export; pass --public-key to pin "
                       "the key you trust", err=True)
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
    elif result.ok:
        click.echo(f"ok: {result.events_checked} events, {result.checkpoints_checked} signed checkpoints")
    else:
        where = f" (first bad event #{result.first_bad_seq})" if result.first_bad_seq is not None else ""
        click.echo(f"TAMPERED: {result.problem}{where}")
    if not result.ok:
        sys.exit(1)


def _verify_file(export_file: Path, public_key_files: tuple[Path, ...],
                 witness_file: Path | None) -> VerifyResult:
    """Offline: the export, pinned to the given keys, and compared with a witness copy if given."""
    from .chain import export_keys, trusted_keys, verify_export, verify_witness
    from .witness import witness_read

    try:
        export = json.loads(export_file.read_text(encoding="utf-8"))
        keys = trusted_keys(path.read_text() for path in public_key_files) if public_key_files else None
        result = verify_export(export, public_keys=keys)
    except (ValueError, KeyError, TypeError) as exc:
        raise click.ClickException(f"{export_file}: not a valid audit export ({exc})") from None
    if result.ok and witness_file is not None:
        try:
            problem = verify_witness(export["checkpoints"], witness_read(witness_file),
                                     public_keys=keys if keys is not None else export_keys(export))
        except ValueError as exc:
            problem = str(exc)
        if problem:
            result = replace(result, ok=False, problem=problem)
    return result


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


@click.group()
def keys() -> None:
    """The signing-key registry: rotate the key, list active and retired keys."""


@keys.command("rotate")
@with_django
def keys_rotate_command() -> None:
    """Sign with a new key from now on; the retired public key keeps verifying old signatures."""
    from .keys import signing_key_rotate
    from .principals import cli_principal

    retired, new = signing_key_rotate(actor=cli_principal())
    click.echo(f"signing key {new} is active; {retired} is retired (its public key is kept)")


@keys.command("list")
@with_django
def keys_list_command() -> None:
    """Keys the database knows, by fingerprint (never the key itself)."""
    from .models import DeploymentKey

    for key in DeploymentKey.objects.all():
        state = f"retired {key.retired_at:%Y-%m-%d %H:%M}" if key.retired_at else "active"
        click.echo(f"{key.purpose:<11} {key.key_id}  {state:<24} since {key.created_at:%Y-%m-%d %H:%M}")


COMMANDS: list[click.Command] = [audit, keys]
