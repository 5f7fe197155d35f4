"""``oblivio ingest`` and ``oblivio ingest-fhir`` through the real entry point (in process)."""

import getpass
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from factories import corpus_dir_write
from oblivio_site.cli import main

from core.models import AuditEvent
from hierarchy.models import Corpus, Institution, Study

pytestmark = pytest.mark.django_db


def _run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_ingest_prints_counts_and_is_idempotent(tmp_path: Path) -> None:
    corpus_dir = corpus_dir_write(tmp_path / "corpus")
    first = _run("ingest", str(corpus_dir), "--institution-name", "H1=Hospital One")
    assert first.exit_code == 0, first.output
    assert AuditEvent.objects.get().actor == f"cli:{getpass.getuser()}"
    assert first.output.startswith("ingested corpus tiny-test")
    assert "records               72" in first.output and "patients_created      6" in first.output
    assert Institution.objects.get(code="H1").name == "Hospital One"
    again = _run("ingest", str(corpus_dir))
    assert again.exit_code == 0 and again.output.startswith("already ingested, nothing changed")
    assert Corpus.objects.count() == 1


def test_the_audit_actor_cannot_be_chosen_on_the_command_line(tmp_path: Path) -> None:
    corpus_dir = corpus_dir_write(tmp_path / "corpus")
    result = _run("ingest", str(corpus_dir), "--actor", "user:alice")
    assert result.exit_code == 2 and "No such option" in result.output
    assert not AuditEvent.objects.exists()


def test_ingest_bad_input(tmp_path: Path) -> None:
    missing = _run("ingest", str(tmp_path / "nope"))
    assert missing.exit_code == 2 and "does not exist" in missing.output
    not_a_corpus = _run("ingest", str(tmp_path))
    assert not_a_corpus.exit_code == 1 and "corpus.json: not found" in not_a_corpus.output
    corpus_dir = corpus_dir_write(tmp_path / "corpus")
    malformed = _run("ingest", str(corpus_dir), "--mrn-system", "H1")
    assert malformed.exit_code == 2 and "expected CODE=VALUE" in malformed.output
    records = corpus_dir / "records.jsonl"
    lines = records.read_text().splitlines()
    lines[2] = lines[2].replace('"task": "', '"task": "x')
    records.write_text("\n".join(lines) + "\n")
    broken = _run("ingest", str(corpus_dir))
    assert broken.exit_code == 1
    assert "records.jsonl:3: field 'task' must be one of" in broken.output
    assert not Corpus.objects.exists()


def test_ingest_fhir(tmp_path: Path, bundle_make) -> None:
    sample = bundle_make()
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(sample.data))
    result = _run("ingest-fhir", str(path))
    assert result.exit_code == 0, result.output
    assert result.output.startswith("imported bundle bundle.json")
    assert "studies_created       4" in result.output and Study.objects.count() == 4
    again = _run("ingest-fhir", str(path))
    assert again.exit_code == 0 and again.output.startswith("already imported")


def test_ingest_fhir_bad_bundle(tmp_path: Path, bundle_make) -> None:
    sample = bundle_make()
    number, patient = sample.entry("Patient", 1)
    patient["identifier"][0]["type"]["coding"][0]["code"] = "SS"
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(sample.data))
    result = _run("ingest-fhir", str(path))
    assert result.exit_code == 1
    assert f"bundle.json: entry[{number}] Patient.identifier: needs a medical record number" in result.output
    assert sample.mrns[1] not in result.output
    path.write_text("{")
    assert "not valid JSON" in _run("ingest-fhir", str(path)).output
    assert _run("ingest-fhir", str(tmp_path / "missing.json")).exit_code == 2
