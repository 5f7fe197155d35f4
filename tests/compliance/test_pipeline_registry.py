"""Registering a served model: its scopes are resolved against the corpus it names, so a model of another
corpus, or a corpus directory that holds another corpus, is refused before anything is stored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pipeline_support import write_corpus, write_model

from compliance.errors import Invalid
from compliance.models import ModelVersion
from compliance.pipeline.registry import model_version_register
from core.models import AuditEvent
from core.principals import SYSTEM
from hierarchy.services import corpus_ingest
from mllm.data.schema import load_corpus

pytestmark = pytest.mark.django_db


def trained_on(root: Path, corpus_sha256: str) -> Path:
    model = write_model(root)
    metadata = json.loads((model / "oblivio.json").read_text())
    (model / "oblivio.json").write_text(json.dumps({**metadata, "corpus_sha256": corpus_sha256}))
    return model


def test_a_model_is_registered_only_with_the_corpus_it_was_trained_on(tmp_path: Path) -> None:
    first_dir, other_dir = write_corpus(tmp_path / "first"), write_corpus(tmp_path / "other")
    first = corpus_ingest(corpus_dir=first_dir, actor=SYSTEM).corpus
    other = load_corpus(other_dir).header.records_sha256
    events = AuditEvent.objects.count()

    def register(model: Path, corpus_root: Path) -> ModelVersion:
        return model_version_register(deployment="default", artifact_dir=model, corpus=first,
                                      corpus_root=corpus_root, actor=SYSTEM)

    with pytest.raises(Invalid) as wrong_model:
        register(trained_on(tmp_path / "m1", other), first_dir)
    assert wrong_model.value.code == "corpus_mismatch" and wrong_model.value.field == "corpus"
    with pytest.raises(Invalid) as wrong_directory:
        register(trained_on(tmp_path / "m2", first.records_sha256), other_dir)
    assert wrong_directory.value.code == "corpus_mismatch" and wrong_directory.value.field == "corpus_root"
    with pytest.raises(Invalid) as no_corpus:
        register(trained_on(tmp_path / "m3", first.records_sha256), tmp_path)
    assert no_corpus.value.code == "not_a_corpus"
    assert not ModelVersion.objects.exists() and AuditEvent.objects.count() == events

    version = register(trained_on(tmp_path / "m4", first.records_sha256), first_dir)
    assert version.deployment.served == version
