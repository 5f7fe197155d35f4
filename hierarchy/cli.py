"""``oblivio ingest`` and ``oblivio ingest-fhir``. ``COMMANDS`` is registered by the entry point."""

from __future__ import annotations

from pathlib import Path

import click

from core.bootstrap import setup_django
from core.principals import cli_principal


def _pairs(values: tuple[str, ...], option: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        code, sep, text = value.partition("=")
        if not sep or not code.strip() or not text.strip():
            raise click.BadParameter(f"expected CODE=VALUE, got {value!r}", param_hint=option)
        pairs[code.strip()] = text.strip()
    return pairs


def _echo_counts(counts: dict[str, int]) -> None:
    for name, value in counts.items():
        click.echo(f"  {name:<22}{value}")


@click.command("ingest")
@click.argument("corpus_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--institution-name", "names", multiple=True, metavar="CODE=NAME",
              help="Display name of an institution this ingest creates (repeatable).")
@click.option("--mrn-system", "systems", multiple=True, metavar="CODE=URI",
              help="MRN identifier system of an institution this ingest creates "
                   "(default urn:oblivio:institution:<code>:mrn; repeatable).")
def ingest(corpus_dir: Path, names: tuple[str, ...], systems: tuple[str, ...]) -> None:
    """File a corpus directory (corpus.json + records.jsonl + images/) in the hierarchy.

    The audit chain records the operating-system user as ``cli:<user>``."""
    institution_names, mrn_systems = _pairs(names, "--institution-name"), _pairs(systems, "--mrn-system")
    setup_django()
    from .services import corpus_ingest

    try:
        result = corpus_ingest(corpus_dir=corpus_dir, actor=cli_principal(),
                               institution_names=institution_names,
                               mrn_systems=mrn_systems)
    except ValueError as exc:  # CorpusError names file, line and field
        raise click.ClickException(str(exc)) from None
    corpus = result.corpus
    verb = "ingested" if result.created else "already ingested, nothing changed:"
    click.echo(f"{verb} corpus {corpus.name} (#{corpus.pk}, records sha256 {corpus.records_sha256[:12]})")
    _echo_counts(result.counts)


@click.command("ingest-fhir")
@click.argument("bundle_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def ingest_fhir(bundle_file: Path) -> None:
    """Import a FHIR R4 Bundle (JSON): organizations, patients, imaging studies, report sections."""
    setup_django()
    from .fhir import fhir_bundle_import

    try:
        result = fhir_bundle_import(bundle=bundle_file.read_bytes(), actor=cli_principal())
    except ValueError as exc:  # FhirImportError names entry and field
        raise click.ClickException(f"{bundle_file}: {exc}") from None
    verb = "imported" if result.created else "already imported, nothing changed:"
    click.echo(f"{verb} bundle {bundle_file.name} (sha256 {result.bundle_sha256[:12]})")
    _echo_counts(result.counts)


COMMANDS: list[click.Command] = [ingest, ingest_fhir]
