"""The demo's choices that a second ``make demo`` depends on (the whole demo runs in test_demo.py)."""

from __future__ import annotations

from pathlib import Path

from oblivio_site.walkthrough import demo_model, unforgotten_patient_record
from pipeline_support import *  # noqa: F403  (served fixture)
from pipeline_support import Served

from mllm.data.schema import Level, load_corpus


def test_each_run_forgets_a_patient_the_served_model_still_holds(served: Served) -> None:
    corpus = load_corpus(served.corpus_dir)
    first = unforgotten_patient_record(corpus)
    assert first is not None and first.owner_level is not Level.INSTITUTION
    served.version.forgotten_records = [r.record_id for r in corpus.select(trainable=True)
                                        if r.patient_id == first.patient_id]
    served.version.save(update_fields=["forgotten_records"])
    second = unforgotten_patient_record(corpus)
    assert second is not None and second.patient_id != first.patient_id
    served.version.forgotten_records = [r.record_id for r in corpus.select(trainable=True)
                                        if r.owner_level is not Level.INSTITUTION]
    served.version.save(update_fields=["forgotten_records"])
    assert unforgotten_patient_record(corpus) is None  # the demo says so and stops, it does not wait


def test_the_model_is_trained_once_per_data_directory(tmp_path: Path) -> None:
    model = tmp_path / "demo" / "model"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    said: list[str] = []
    assert demo_model(tmp_path, corpus=None, echo=said.append) == model  # type: ignore[arg-type]
    assert said == []
