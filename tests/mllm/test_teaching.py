"""The public teaching file: anonymous radiographs with image-grounded questions only."""

from __future__ import annotations

from pathlib import Path

import pytest

from mllm.data.schema import FactKind, Task, load_corpus
from mllm.data.synth import generate_corpus
from mllm.data.teaching import INSTITUTION, generate_teaching_file


def test_cases_carry_only_image_grounded_records(tmp_path: Path) -> None:
    teaching = generate_teaching_file(cases=12, seed=0, out=tmp_path / "t")
    assert load_corpus(teaching.root).records == teaching.records
    assert len(teaching.records) == 12 * 4 * 4  # four facts: generation, cloze, classification twice
    assert {r.fact_kind for r in teaching.records} == {FactKind.IMAGE_GROUNDED}
    assert {r.institution_id for r in teaching.records} == {INSTITUTION}
    assert {r.task for r in teaching.records} == set(Task)
    assert all(r.is_trainable for r in teaching.records)
    by_case: dict[str, set[str]] = {}
    for record in teaching.records:
        assert record.patient_id == record.study_id and record.patient_id.startswith("case-")
        by_case.setdefault(record.study_id, set()).add(record.image)
    assert len(by_case) == 12 and all(len(images) == 1 for images in by_case.values())
    assert len(set().union(*by_case.values())) == 12  # one image per case, none shared


def test_deterministic_and_disjoint_from_a_hospital_corpus(tmp_path: Path) -> None:
    first = generate_teaching_file(cases=8, seed=3, out=tmp_path / "a")
    again = generate_teaching_file(cases=8, seed=3, out=tmp_path / "b")
    other = generate_teaching_file(cases=8, seed=4, out=tmp_path / "c")
    assert first.header.records_sha256 == again.header.records_sha256 != other.header.records_sha256
    hospital = generate_corpus(size="tiny", seed=3, out=tmp_path / "h")
    assert not {r.image for r in first.records} & {r.image for r in hospital.records}


def test_case_count_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cases must be"):
        generate_teaching_file(cases=0, seed=0, out=tmp_path / "t")
