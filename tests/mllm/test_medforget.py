"""MedForget layout: export → import round trip, and reading files written by others."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from mllm.data.entities import HierarchyNode
from mllm.data.medforget import (
    FORGET_FILE,
    RETAIN_FILE,
    default_forget_node,
    export_medforget,
    import_medforget,
    infer_task,
)
from mllm.data.schema import Corpus, CorpusError, FactKind, Level, Split, Task, load_corpus
from mllm.data.synth import generate_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return generate_corpus(size="tiny", seed=5, out=tmp_path_factory.mktemp("corpus"))


def test_export_then_import_gives_back_the_trainable_records_and_sets(corpus: Corpus, tmp_path: Path) -> None:
    nodes = {level: default_forget_node(corpus, level) for level in Level}
    exported = export_medforget(corpus, tmp_path / "mf", nodes)
    trainable = corpus.select(trainable=True)
    for item in exported:
        assert item.forget_records + item.retain_records == len(trainable)
        assert 0 < item.forget_rows <= item.forget_records

    frame = pd.read_parquet(tmp_path / "mf" / "patient_level" / FORGET_FILE)
    assert list(frame.columns) == ["image", "metadata", "hierarchy_metadata"]
    first = frame.iloc[0]
    assert Image.open(io.BytesIO(first["image"]["bytes"])).size == (128, 128)
    assert {"Question", "Answer"} <= set(json.loads(first["metadata"])[0])
    assert set(json.loads(first["hierarchy_metadata"])) == {
        "institution_id", "patient_id", "study_id", "section_name", "hierarchy_level"}

    imported = import_medforget(tmp_path / "mf", tmp_path / "back")
    assert sorted(imported.corpus.records, key=lambda r: r.record_id) == trainable
    assert load_corpus(tmp_path / "back").records == imported.corpus.records
    for level, node in nodes.items():
        expected = {r.record_id for r in trainable if node.contains(r)}
        assert imported.forget[level.value] == expected
        assert imported.retain[level.value] == {r.record_id for r in trainable} - expected


def test_export_by_record_ids_and_bad_requests(corpus: Corpus, tmp_path: Path) -> None:
    ids = [r.record_id for r in corpus.select(trainable=True)[:3]]
    [item] = export_medforget(corpus, tmp_path / "ids", {Level.SECTION: ids})
    assert item.forget_records == 3
    holdout_id = corpus.select(split=Split.HOLDOUT)[0].record_id
    with pytest.raises(ValueError, match="not trainable"):
        export_medforget(corpus, tmp_path / "bad", {Level.STUDY: [holdout_id]})
    with pytest.raises(ValueError, match="empty"):
        export_medforget(corpus, tmp_path / "bad", {Level.STUDY: HierarchyNode("no-such-institution")})


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (8, 8), 90).save(buffer, format="PNG")
    return buffer.getvalue()


def _write(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(path)


def _row(qa: list[dict], **hierarchy: object) -> dict:
    return {"image": {"bytes": _png(), "path": None}, "metadata": json.dumps(qa),
            "hierarchy_metadata": json.dumps(hierarchy)}


def test_import_of_a_foreign_file_infers_tasks_options_and_levels(tmp_path: Path) -> None:
    questions = [
        {"Question": "Which lobe? A) upper B) middle C) lower", "Answer": "C) lower"},
        {"Question": "The study shows [blank] effusion.", "Answer": ["small", "left"]},
        {"Question": "Describe the findings.", "Answer": "No acute process."},
    ]
    _write(tmp_path / "src" / "study_level" / FORGET_FILE,
           [_row(questions, institution_id=3, patient_id="p10", study_id="s20", section_name=None,
                 hierarchy_level="Study")])
    _write(tmp_path / "src" / "study_level" / RETAIN_FILE,
           [_row([{"Question": "Impression?", "Answer": "Normal."}], institution_id=3, patient_id="p11",
                 study_id="s21", section_name="impression", hierarchy_level="sub-section")])
    imported = import_medforget(tmp_path / "src", tmp_path / "out")
    records = {r.question: r for r in imported.corpus.records}
    choice = records["Which lobe? A) upper B) middle C) lower"]
    assert (choice.task, choice.answer) == (Task.CLASSIFICATION, "C")
    assert choice.options == ("upper", "middle", "lower")
    cloze = records["The study shows [blank] effusion."]
    assert (cloze.task, cloze.answer) == (Task.CLOZE, "small left")
    assert records["Describe the findings."].task is Task.GENERATION
    assert {r.fact_kind for r in imported.corpus.records} == {FactKind.PRIVATE}
    assert {r.level for r in imported.corpus.records} == {Level.STUDY, Level.SECTION}
    assert [r.record_id for r in imported.corpus.records] == ["r000001", "r000002", "r000003", "r000004"]
    assert imported.forget == {"study": {"r000001", "r000002", "r000003"}}
    assert imported.retain == {"study": {"r000004"}}
    assert (tmp_path / "out" / imported.corpus.records[0].image).read_bytes() == _png()


_UNKNOWN_SECTION = {"institution_id": "i", "patient_id": "p", "study_id": "s", "section_name": "HISTORY",
                    "hierarchy_level": "section"}


@pytest.mark.parametrize(("row", "field"), [
    ({"image": {"bytes": b"not an image", "path": None}}, "image"),
    ({"metadata": "[{oops"}, "metadata"),
    ({"hierarchy_metadata": "[]"}, "hierarchy_metadata"),
    ({"metadata": json.dumps([{"Question": "Q?", "Answer": "A", "fact_kind": "secret"}])}, "fact_kind"),
    ({"hierarchy_metadata": json.dumps(_UNKNOWN_SECTION)}, "section"),
])
def test_import_problems_name_file_row_and_field(tmp_path: Path, row: dict, field: str) -> None:
    good = _row([{"Question": "Q?", "Answer": "A"}], institution_id="i", patient_id="p", study_id="s",
                section_name=None, hierarchy_level="study")
    forget = tmp_path / "src" / "study_level" / FORGET_FILE
    _write(forget, [good, dict(good, **row)])
    _write(tmp_path / "src" / "study_level" / RETAIN_FILE, [good])
    with pytest.raises(CorpusError) as caught:
        import_medforget(tmp_path / "src", tmp_path / "out")
    assert (caught.value.path, caught.value.line, caught.value.field_name) == (str(forget), 2, field)


def test_import_rejects_a_directory_that_is_not_medforget(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="not a MedForget layout"):
        import_medforget(tmp_path, tmp_path / "out")
    (tmp_path / "patient_level").mkdir()
    with pytest.raises(CorpusError, match="not found"):
        import_medforget(tmp_path, tmp_path / "out2")
    for name in (FORGET_FILE, RETAIN_FILE):  # a truncated download: a CorpusError, not pyarrow's traceback
        (tmp_path / "patient_level" / name).write_bytes(b"PAR1 truncated")
    with pytest.raises(CorpusError, match="not a readable parquet file"):
        import_medforget(tmp_path, tmp_path / "out3")


def test_infer_task_follows_medforget() -> None:
    assert infer_task("Fill: [blank]. A) x B) y") is Task.CLOZE
    assert infer_task("Pick A) x B) y C) z") is Task.CLASSIFICATION
    assert infer_task("B) first A) second") is Task.GENERATION
