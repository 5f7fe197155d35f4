"""Corpus schema: loading reports the file, line and field of the first problem; hierarchy nodes."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from mllm.data.entities import HIERARCHY_FILE, HierarchyNode, load_hierarchy
from mllm.data.schema import (
    HEADER_FILE,
    RECORDS_FILE,
    CorpusError,
    Level,
    Section,
    load_corpus,
    record_from_json,
    write_corpus,
)
from mllm.data.synth import generate_corpus


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pristine")
    generate_corpus(size="tiny", seed=1, out=root)
    return root


@pytest.fixture
def corpus_dir(pristine: Path, tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    shutil.copytree(pristine, root)
    return root


_DELETE = object()


def _rewrite_line(root: Path, number: int, edit: Callable[[str], str]) -> None:
    """Replace line ``number`` (1-based) of records.jsonl and keep the header digest consistent."""
    lines = (root / RECORDS_FILE).read_text(encoding="utf-8").splitlines(keepends=True)
    lines[number - 1] = edit(lines[number - 1])
    (root / RECORDS_FILE).write_text("".join(lines), encoding="utf-8")
    header = json.loads((root / HEADER_FILE).read_text())
    header["records_sha256"] = hashlib.sha256((root / RECORDS_FILE).read_bytes()).hexdigest()
    (root / HEADER_FILE).write_text(json.dumps(header))


def _edit_field(name: str, value: object) -> Callable[[str], str]:
    def edit(line: str) -> str:
        data = json.loads(line)
        if value is _DELETE:
            del data[name]
        else:
            data[name] = value
        return json.dumps(data) + "\n"

    return edit


def _line(root: Path, number: int) -> dict:
    return json.loads((root / RECORDS_FILE).read_text(encoding="utf-8").splitlines()[number - 1])


def _error(root: Path) -> CorpusError:
    with pytest.raises(CorpusError) as caught:
        load_corpus(root)
    return caught.value


def test_bad_json_names_file_and_line(corpus_dir: Path) -> None:
    _rewrite_line(corpus_dir, 3, lambda line: line[:-5] + "\n")
    error = _error(corpus_dir)
    assert error.path.endswith(RECORDS_FILE) and error.line == 3
    assert f"{RECORDS_FILE}:3:" in str(error) and "invalid JSON" in str(error)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("question", _DELETE, "non-empty string"),
    ("answer", "  ", "non-empty string"),
    ("task", "essay", "must be one of"),
    ("level", "ward", "must be one of"),
    ("section", "HISTORY", "must be null or one of"),
    ("fact_kind", None, "must be one of"),
    ("surprise", 1, "unknown field"),
    ("fact_key", _DELETE, "non-empty string"),
    ("fact_value", "", "non-empty string"),
    ("form", None, "non-empty string"),
    ("owner_level", "study", "must equal level"),
    ("owner_id", "another-institution", "must name the node"),
    ("shared", "yes", "true or false"),
    ("eval_only", 1, "true or false"),
    ("study_date", "", "null or a non-empty string"),
    ("paraphrase_of", "r000001", "unknown field"),  # schema version 1 field
])
def test_bad_field_names_file_line_and_field(corpus_dir: Path, field: str, value: object,
                                             message: str) -> None:
    _rewrite_line(corpus_dir, 5, _edit_field(field, value))
    error = _error(corpus_dir)
    assert (error.line, error.field_name) == (5, field)
    assert f"field '{field}'" in str(error) and message in str(error)


def test_only_facts_owned_above_the_study_can_be_shared(corpus_dir: Path) -> None:
    records = [json.loads(line) for line in (corpus_dir / RECORDS_FILE).read_text().splitlines()]
    number = next(i for i, r in enumerate(records, start=1) if r["level"] == "study")
    _rewrite_line(corpus_dir, number, _edit_field("shared", True))
    error = _error(corpus_dir)
    assert (error.line, error.field_name) == (number, "shared")


def test_error_messages_carry_no_record_values(corpus_dir: Path) -> None:
    _rewrite_line(corpus_dir, 2, _edit_field("task", "essay"))
    record = _line(corpus_dir, 2)
    message = str(_error(corpus_dir))
    for value in (record["patient_id"], record["answer"], record["question"], record["study_id"]):
        assert value not in message


def test_duplicate_record_id(corpus_dir: Path) -> None:
    first_id = _line(corpus_dir, 1)["record_id"]
    _rewrite_line(corpus_dir, 4, _edit_field("record_id", first_id))
    error = _error(corpus_dir)
    assert (error.line, error.field_name) == (4, "record_id") and "duplicate" in str(error)


def test_missing_image(corpus_dir: Path) -> None:
    image = _line(corpus_dir, 1)["image"]
    (corpus_dir / image).unlink()
    error = _error(corpus_dir)
    assert (error.line, error.field_name) == (1, "image") and "not found" in str(error)


def test_records_digest_mismatch(corpus_dir: Path) -> None:
    with (corpus_dir / RECORDS_FILE).open("a", encoding="utf-8") as handle:
        handle.write("\n")  # blank lines are skipped, so only the digest can notice
    error = _error(corpus_dir)
    assert error.path.endswith(HEADER_FILE) and error.field_name == "records_sha256"


def test_record_count_mismatch(corpus_dir: Path) -> None:
    header = json.loads((corpus_dir / HEADER_FILE).read_text())
    header["record_count"] += 1
    (corpus_dir / HEADER_FILE).write_text(json.dumps(header))
    assert _error(corpus_dir).field_name == "record_count"


def test_wrong_schema_version_and_missing_header(corpus_dir: Path, tmp_path: Path) -> None:
    header = json.loads((corpus_dir / HEADER_FILE).read_text())
    header["schema_version"] = 99
    (corpus_dir / HEADER_FILE).write_text(json.dumps(header))
    error = _error(corpus_dir)
    assert error.field_name == "schema_version" and "99" in str(error)
    assert "not found" in str(_error(tmp_path))


def test_classification_and_cloze_shape_are_validated() -> None:
    base = {"record_id": "r1", "institution_id": "i", "patient_id": "p", "study_id": "s", "section": None,
            "level": "study", "fact_kind": "private", "split": "train", "answer": "A", "image": "x.png",
            "fact_key": "study.date", "fact_value": "x", "owner_level": "study", "owner_id": "i/p/s",
            "form": "classification-0"}
    with pytest.raises(CorpusError, match="field 'options'"):
        record_from_json(dict(base, task="classification", question="Q? A) x", options=["x"]), path="f")
    with pytest.raises(CorpusError, match="field 'question'"):
        record_from_json(dict(base, task="cloze", question="no blank here"), path="f")
    with pytest.raises(CorpusError, match="field 'section'"):
        record_from_json(dict(base, level="section", task="generation", question="Q?"), path="f")


def test_write_corpus_round_trip(tmp_path: Path, pristine: Path) -> None:
    corpus = load_corpus(pristine)
    shutil.copytree(pristine / "images", tmp_path / "images")
    header = write_corpus(tmp_path, name="copy", seed=1, size="tiny", records=list(corpus.records))
    assert header.records_sha256 == corpus.header.records_sha256
    assert load_corpus(tmp_path).records == corpus.records


def test_hierarchy_nodes_contain_the_records_on_their_path(pristine: Path) -> None:
    records = load_corpus(pristine).records
    section_record = next(r for r in records if r.level is Level.SECTION)
    assert [node.level for node in HierarchyNode.path(section_record)] == list(Level)
    study_record = next(r for r in records if r.level is Level.STUDY)
    assert HierarchyNode.path(study_record)[-1] == HierarchyNode.of(study_record, Level.STUDY)
    for level in Level:
        node = HierarchyNode.of(section_record, level)
        assert node.level is level and node.contains(section_record)
        assert HierarchyNode.parse(str(node)) == node
    study = HierarchyNode.of(section_record, Level.STUDY)
    inside = [r for r in records if study.contains(r)]
    assert {r.study_id for r in inside} == {section_record.study_id}
    assert {r.level for r in inside} == set(Level)  # every record asked on the study's image
    section = HierarchyNode.of(section_record, Level.SECTION)
    assert {r.section for r in records if section.contains(r)} == {section_record.section}
    institution_record = next(r for r in records if r.level is Level.INSTITUTION)
    with pytest.raises(ValueError):
        HierarchyNode.of(institution_record, Level.SECTION)
    with pytest.raises(ValueError):
        HierarchyNode("i", None, "study")
    with pytest.raises(ValueError):
        HierarchyNode.parse("a//b")
    assert HierarchyNode.parse("i/p/s/LAB").section is Section.LAB


def test_hierarchy_file_problems_are_reported(corpus_dir: Path) -> None:
    assert load_hierarchy(corpus_dir).studies
    data = json.loads((corpus_dir / HIERARCHY_FILE).read_text())
    del data["studies"][0]["radiograph"]["marker"]
    (corpus_dir / HIERARCHY_FILE).write_text(json.dumps(data))
    with pytest.raises(CorpusError, match="field 'studies'"):
        load_hierarchy(corpus_dir)
    (corpus_dir / HIERARCHY_FILE).unlink()
    with pytest.raises(CorpusError, match="not found"):
        load_hierarchy(corpus_dir)
