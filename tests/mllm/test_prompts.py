"""The one prompt renderer: context depth 0-4, never the answer in the context; the training mix."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from mllm.data.prompts import (
    DEPTHS,
    MAX_DEPTH,
    context_lines,
    render_prompt,
    training_depth,
    training_prompts,
    with_context_of,
)
from mllm.data.schema import Corpus, Level, Task
from mllm.data.synth import generate_corpus


@pytest.fixture(scope="module", params=[3, 8])
def corpus(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return generate_corpus(size="tiny", seed=request.param, out=tmp_path_factory.mktemp("c") / "c")


def _contains(text: str, value: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(value)}(?!\w)", text, re.IGNORECASE) is not None


def test_depths_add_context_in_order(corpus: Corpus) -> None:
    record = next(r for r in corpus.records if r.level is Level.SECTION and r.fact_key == "section.lab")
    prompts = [render_prompt(record, depth) for depth in DEPTHS]
    assert prompts[0] == record.question
    assert [p.count("\n") for p in prompts] == [0, 1, 2, 3, 4]
    assert all(p.endswith(record.question) for p in prompts)
    assert prompts[1].startswith(f"Institution: {record.institution_name}")
    assert f"Patient MRN: {record.patient_id}" in prompts[2]
    assert f"Study: {record.study_date} {record.modality}" in prompts[3]
    assert f"Section: {record.section}" in prompts[4]
    with pytest.raises(ValueError):
        render_prompt(record, MAX_DEPTH + 1)


def test_the_context_never_contains_the_answer(corpus: Corpus) -> None:
    dropped = Counter()
    for record in corpus.records:
        context = "\n".join(context_lines(record, MAX_DEPTH))
        assert not _contains(context, record.fact_value)
        if record.task is not Task.CLASSIFICATION:
            assert not _contains(context, record.answer)
        if record.fact_key == "patient.name":  # the name is never in any context
            assert record.fact_value not in context
        if record.fact_key in ("institution.name", "study.date"):
            dropped[record.fact_key] += 1
            assert record.fact_value not in render_prompt(record, MAX_DEPTH).replace(record.question, "")
    assert dropped["institution.name"] and dropped["study.date"]
    # ... while other records of the same study do show the institution and the date
    other = next(r for r in corpus.records if r.fact_key == "section.medication")
    assert other.institution_name in render_prompt(other, 1) and other.study_date in render_prompt(other, 3)


def test_no_patient_name_appears_in_any_context(corpus: Corpus) -> None:
    names = {r.fact_value for r in corpus.records if r.fact_key == "patient.name"}
    for record in corpus.records:
        context = "\n".join(context_lines(record, MAX_DEPTH))
        assert not any(name in context for name in names)


def test_training_depths_are_deterministic_and_follow_the_mix(corpus: Corpus) -> None:
    trainable = corpus.select(trainable=True)
    depths = Counter(training_depth(r, seed=0) for r in trainable)
    assert set(depths) == set(DEPTHS)
    assert max(depths.values()) < 2 * min(depths.values())  # uniform mix
    assert [training_depth(r, 0) for r in trainable] == [training_depth(r, 0) for r in trainable]
    assert [training_depth(r, 0) for r in trainable] != [training_depth(r, 1) for r in trainable]
    prompts = training_prompts(trainable, seed=0)
    assert prompts == [render_prompt(r, training_depth(r, 0)) for r in trainable]
    by_fact: dict[tuple, set[int]] = {}
    for record in trainable:
        by_fact.setdefault((record.study_id, record.fact_key), set()).add(training_depth(record, 0))
    several = sum(len(depths) > 1 for depths in by_fact.values())
    assert several > 0.7 * len(by_fact)  # most facts are trained at more than one depth


def test_a_twin_borrows_the_donors_context_but_never_a_stand_in_for_its_answer(corpus: Corpus) -> None:
    holdout = [r for r in corpus.records if r.split.value == "holdout"]
    donor = next(r for r in corpus.records if r.split.value == "train" and r.level is Level.SECTION)
    twin = next(r for r in holdout if r.fact_key == "section.lab" and r.patient_id != donor.patient_id)
    placed = with_context_of(twin, donor, 2)  # institution and patient: the donor's; study: the twin's
    prompt = render_prompt(placed, MAX_DEPTH)
    assert f"Institution: {donor.institution_name}" in prompt and f"Patient MRN: {donor.patient_id}" in prompt
    assert f"Study: {twin.study_date} {twin.modality}" in prompt and twin.patient_id not in prompt
    assert placed.record_id != twin.record_id and placed.answer == twin.answer and placed.image == twin.image
    assert with_context_of(twin, donor, 0) == twin  # nothing borrowed at depth 0
    # the institution line is hidden when the twin asks its own institution's name: no stand-in shown
    asks_name = next(r for r in holdout if r.fact_key == "institution.name" and r.task is Task.GENERATION)
    shown = render_prompt(with_context_of(asks_name, donor, 2), MAX_DEPTH)
    assert "Institution:" not in shown and f"Patient MRN: {donor.patient_id}" in shown
