"""The synthetic hospital corpus: determinism, splits, coverage, answer shape, image-grounded facts."""

from __future__ import annotations

import hashlib
import os
import random
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mllm.data.entities import Hierarchy, load_hierarchy
from mllm.data.facts import (
    finding_name,
    findings_report,
    findings_text,
    impression_report,
    impression_text,
    region,
)
from mllm.data.images import (
    CANVAS,
    Finding,
    FindingKind,
    Radiograph,
    Side,
    Size,
    Zone,
    draw,
    encode_png,
    heart_box,
    random_anatomy,
    zone_box,
)
from mllm.data.qa import FORMS, LETTERS, parse_choices
from mllm.data.schema import CLOZE_BLANK, Corpus, FactKind, Level, Split, Task, load_corpus
from mllm.data.synth import SIZES, SizeSpec, generate_corpus


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Corpus, Hierarchy]:
    root = tmp_path_factory.mktemp("tiny")
    corpus = generate_corpus(size="tiny", seed=7, out=root)
    return corpus, load_hierarchy(root)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path: Path) -> None:
    started = time.perf_counter()
    first = generate_corpus(size="tiny", seed=11, out=tmp_path / "a")
    assert time.perf_counter() - started < 2.0
    second = generate_corpus(size="tiny", seed=11, out=tmp_path / "b")
    other = generate_corpus(size="tiny", seed=12, out=tmp_path / "c")
    assert first.records == second.records
    assert _files(tmp_path / "a") == _files(tmp_path / "b")  # records, header, hierarchy, PNG bytes
    assert [r.answer for r in other.records] != [r.answer for r in first.records]
    assert set(_files(tmp_path / "c")) != set(_files(tmp_path / "a"))  # other images


def test_generation_does_not_depend_on_the_process_hash_seed(tiny: tuple[Corpus, Hierarchy],
                                                             tmp_path: Path) -> None:
    corpus, _ = tiny
    script = ("import sys; from pathlib import Path; from mllm.data.synth import generate_corpus; "
              "print(generate_corpus(size='tiny', seed=7, out=Path(sys.argv[1])).header.records_sha256)")
    seed = "1" if os.environ.get("PYTHONHASHSEED") != "1" else "2"
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "other")], capture_output=True,
                          text=True, check=True, env=dict(os.environ, PYTHONHASHSEED=seed))
    assert done.stdout.strip() == corpus.header.records_sha256
    assert _files(tmp_path / "other") == _files(corpus.root)


def test_written_corpus_loads_back(tiny: tuple[Corpus, Hierarchy]) -> None:
    corpus, _ = tiny
    loaded = load_corpus(corpus.root)
    assert loaded.records == corpus.records
    assert loaded.header == corpus.header


@pytest.mark.parametrize("size", ["tiny", "demo"])
def test_record_counts_depend_only_on_the_size(size: str, tmp_path: Path) -> None:
    corpus = generate_corpus(size=size, seed=3, out=tmp_path)
    spec = SIZES[size]
    train_studies, holdout_studies = spec.train_studies, spec.holdout_studies
    counts = Counter((r.split, r.eval_only) for r in corpus.records)
    assert counts == {(Split.TRAIN, False): 39 * train_studies, (Split.TRAIN, True): 39 * train_studies,
                      (Split.HOLDOUT, False): 39 * holdout_studies,
                      (Split.HOLDOUT, True): 39 * holdout_studies}


def test_medforget_size_is_close_to_medforget() -> None:
    spec = SIZES["medforget"]
    assert abs(39 * spec.train_studies - 3840) < 300  # trained QA pairs, as many as MedForget's


def test_holdout_shares_no_patient_study_or_image_with_train(tiny: tuple[Corpus, Hierarchy]) -> None:
    corpus, hierarchy = tiny

    def keys(split: Split) -> tuple[set[str], set[str], set[str]]:
        records = corpus.select(split=split)
        digests = {hashlib.sha256(corpus.image_path(r).read_bytes()).hexdigest() for r in records}
        return {r.patient_id for r in records}, {r.study_id for r in records}, digests

    for train, holdout in zip(keys(Split.TRAIN), keys(Split.HOLDOUT), strict=True):
        assert train and holdout and not train & holdout
    institutions = {split: {r.institution_id for r in corpus.select(split=split)} for split in Split}
    assert institutions[Split.TRAIN] == institutions[Split.HOLDOUT]
    assert {s.split for s in hierarchy.studies} == set(Split)


def test_every_level_and_task_in_both_splits_and_both_fact_kinds(tiny: tuple[Corpus, Hierarchy]) -> None:
    corpus, _ = tiny
    for split in Split:
        records = [r for r in corpus.select(split=split) if not r.eval_only]
        assert {(r.level, r.task) for r in records} == {(lv, t) for lv in Level for t in Task}
        kinds = Counter(r.fact_kind for r in records)
        assert kinds[FactKind.PRIVATE] == 9 * kinds[FactKind.IMAGE_GROUNDED] / 4
    grounded_levels = {r.level for r in corpus.records if r.fact_kind is FactKind.IMAGE_GROUNDED}
    assert grounded_levels == {Level.STUDY, Level.SECTION}


def test_one_image_per_study_and_every_section_present(tiny: tuple[Corpus, Hierarchy]) -> None:
    corpus, hierarchy = tiny
    images = {s.study_id: s.image for s in hierarchy.studies}
    assert len(set(images.values())) == len(images)
    for record in corpus.records:
        assert record.image == images[record.study_id]
    sections = Counter((r.study_id, r.section) for r in corpus.records
                       if r.level is Level.SECTION and not r.eval_only)
    assert set(sections.values()) == {3}  # every section node: 3 trained records of its own fact
    assert Counter(study for study, _ in sections) == dict.fromkeys({r.study_id for r in corpus.records}, 7)


def test_answers_are_short_and_well_formed(tiny: tuple[Corpus, Hierarchy]) -> None:
    corpus, _ = tiny
    for record in corpus.records:
        words = len(record.answer.split())
        if record.task is Task.CLASSIFICATION:
            stem, options = parse_choices(record.question) or ("", ())
            assert options == record.options and len(options) == 4 and len(set(options)) == 4
            assert record.answer in LETTERS and stem
            assert record.options[LETTERS.index(record.answer)] == record.fact_value
        elif record.task is Task.CLOZE:
            assert record.question.count(CLOZE_BLANK) == 1 and not record.options
            assert words <= 7 and record.answer in record.fact_value
        else:
            assert parse_choices(record.question) is None and CLOZE_BLANK not in record.question
            assert words <= (20 if record.fact_kind is FactKind.IMAGE_GROUNDED else 4)


def test_every_fact_is_asked_in_six_forms_three_held_out(tiny: tuple[Corpus, Hierarchy]) -> None:
    corpus, _ = tiny
    facts: dict[tuple, list] = {}
    for record in corpus.records:
        facts.setdefault((record.study_id, record.fact_key), []).append(record)
    assert len(facts) == 13 * len({r.study_id for r in corpus.records})
    for records in facts.values():
        assert sorted(r.form for r in records) == sorted(form.id for form in FORMS)
        assert len({(r.fact_value, r.owner_id, r.split, r.shared) for r in records}) == 1
        held = [r for r in records if r.eval_only]
        trained_tasks = {r.task for r in records if not r.eval_only}
        assert len(held) == 3 and len(trained_tasks) == 2
        assert any(r.task in trained_tasks for r in held)  # a held-out phrasing of a trained task
        assert any(r.task not in trained_tasks for r in held)  # a cross-task form
        choices = {r.options for r in records if r.task is Task.CLASSIFICATION}
        assert len(choices) == 1  # both phrasings offer the same options in the same order
    for split in Split:  # every form of every fact key is trained for some facts, held out for others
        seen = Counter((r.fact_key, r.form, r.eval_only) for r in corpus.select(split=split))
        assert {(key, form, flag) for key, form, _ in seen for flag in (True, False)} <= set(seen)


def test_identifiers(tiny: tuple[Corpus, Hierarchy]) -> None:
    corpus, hierarchy = tiny
    assert all(re.fullmatch(r"r\d{6}", r.record_id) for r in corpus.records)
    assert len({p.patient_id for p in hierarchy.patients}) == len(hierarchy.patients)
    for study in hierarchy.studies:
        assert len(study.study_id) <= 64
        assert re.fullmatch(r"(0|[1-9]\d*)(\.(0|[1-9]\d*))+", study.study_id)
    patients = {p.patient_id: p for p in hierarchy.patients}
    for study in hierarchy.studies:  # studies happen after the patient's birth, as adults
        assert study.study_date > patients[study.patient_id].birth_date
        assert study.split is patients[study.patient_id].split


def test_images_are_redrawn_bit_for_bit_from_their_spec(tiny: tuple[Corpus, Hierarchy]) -> None:
    corpus, hierarchy = tiny
    for study in hierarchy.studies:
        png = (corpus.root / study.image).read_bytes()
        assert encode_png(draw(study.radiograph)) == png
        assert study.image.endswith(hashlib.sha256(png).hexdigest() + ".png")
        with Image.open(corpus.root / study.image) as image:
            assert image.mode == "L" and image.size == (CANVAS, CANVAS)


def test_image_grounded_answers_are_the_drawn_finding(tiny: tuple[Corpus, Hierarchy]) -> None:
    corpus, hierarchy = tiny
    findings = {s.study_id: s.radiograph.finding for s in hierarchy.studies}
    value_of = {"study.finding": finding_name, "study.region": region, "section.findings": findings_text,
                "section.impression": impression_text}
    report_of = {"section.findings": findings_report, "section.impression": impression_report}
    checked = 0
    for record in corpus.records:
        if record.fact_kind is FactKind.IMAGE_GROUNDED:
            finding = findings[record.study_id]
            assert record.fact_value == value_of[record.fact_key](finding)
            if record.task is Task.GENERATION:
                expected = report_of.get(record.fact_key, value_of[record.fact_key])(finding)
                assert record.answer == expected
                checked += 1
    assert checked > 0
    report = findings_report(findings[next(iter(findings))])
    assert report.count(".") >= 3  # a report-like sentence: ROUGE-L and exact match differ


def _at_64(radiograph: Radiograph) -> np.ndarray:
    image = draw(radiograph).resize((64, 64), Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.float64)


def _box_mean(pixels: np.ndarray, box: tuple[int, int, int, int]) -> float:
    x0, y0, x1, y1 = (v // 2 for v in box)  # canvas pixels → 64-px pixels
    return float(pixels[y0:y1, x0:x1].mean())


CASES = [Finding(kind, side, zone, size) for kind in (FindingKind.NODULE, FindingKind.CONSOLIDATION)
         for side in Side for zone in Zone for size in Size]
CASES += [Finding(FindingKind.EFFUSION, side, Zone.LOWER, size) for side in Side for size in Size]


@pytest.mark.parametrize(("case", "finding"), list(enumerate(CASES)),
                         ids=[f"{f.kind}-{f.side}-{f.zone}-{f.size}" for f in CASES])
def test_localised_findings_are_visible_where_the_answers_say_at_64_px(case: int, finding: Finding) -> None:
    anatomy = random_anatomy(random.Random(case))
    base = Radiograph(Finding(FindingKind.NONE), anatomy, marker=1234, noise_seed=5)
    with_finding = Radiograph(finding, anatomy, marker=1234, noise_seed=5)
    diff = _at_64(with_finding) - _at_64(base)
    boxes = {(side, zone): zone_box(anatomy, side, zone) for side in Side for zone in Zone}
    brightening = {where: _box_mean(diff, box) for where, box in boxes.items()}
    target = (finding.side, finding.zone)
    assert brightening[target] > 12  # clearly visible at 64 px
    assert max(gain for where, gain in brightening.items() if where != target) < brightening[target] / 4
    assert all(gain < 3 for (side, _), gain in brightening.items() if side != finding.side)
    if finding.size is Size.SMALL:
        larger = Radiograph(Finding(finding.kind, finding.side, finding.zone, Size.LARGE), anatomy, 1234, 5)
        assert (_at_64(larger) - _at_64(base)).sum() > 1.5 * diff.sum()


def test_cardiomegaly_widens_the_heart_and_spares_the_lung_zones() -> None:
    anatomy = random_anatomy(random.Random(0))
    base = _at_64(Radiograph(Finding(FindingKind.NONE), anatomy, marker=99, noise_seed=1))
    enlarged = _at_64(Radiograph(Finding(FindingKind.CARDIOMEGALY), anatomy, marker=99, noise_seed=1))
    x0, y0, _, y1 = heart_box(anatomy, enlarged=True)
    normal_x0 = heart_box(anatomy, enlarged=False)[0]
    assert _box_mean(enlarged - base, (x0, (y0 + y1) // 2 - 4, normal_x0, (y0 + y1) // 2 + 4)) > 40
    for side in Side:
        assert abs(_box_mean(enlarged - base, zone_box(anatomy, side, Zone.UPPER))) < 3


def test_size_spec_and_unknown_size_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown corpus size"):
        generate_corpus(size="huge", seed=0, out=tmp_path / "x")
    with pytest.raises(ValueError):
        SizeSpec("bad", institutions=0, train_patients=1, holdout_patients=1, studies_per_patient=(1,))
    with pytest.raises(ValueError, match="at most"):
        SizeSpec("big", institutions=5, train_patients=90, holdout_patients=11, studies_per_patient=(1,))
    with pytest.raises(ValueError, match="institutions"):  # three institution names left for decoys
        SizeSpec("wide", institutions=6, train_patients=1, holdout_patients=1, studies_per_patient=(1,))
    with pytest.raises(ValueError, match="reserved"):
        generate_corpus(size="tiny", seed=1_000_003, out=tmp_path / "reserved")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError):
        generate_corpus(size="tiny", seed=0, out=tmp_path / "full")
