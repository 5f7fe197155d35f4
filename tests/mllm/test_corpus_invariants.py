"""Corpus invariants over several seeds: private values stay inside their owner, decoys are
subject-free, section nodes are rich enough, holdout patients are asked exactly like train ones."""

from __future__ import annotations

from collections import defaultdict

import pytest

from mllm.data import vocab
from mllm.data.facts import IDENTIFYING_KEYS
from mllm.data.qa import LETTERS, parse_choices
from mllm.data.schema import Corpus, FactKind, Level, Record, Split, Task
from mllm.data.scope import NodeRef
from mllm.data.synth import generate_corpus

SEEDS = (0, 1, 2, 3)


@pytest.fixture(scope="module", params=SEEDS)
def corpus(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return generate_corpus(size="tiny", seed=request.param, out=tmp_path_factory.mktemp("c") / "c")


def _texts(record: Record) -> list[str]:
    """Everything a record shows or teaches: question, options, answer, fact value and context."""
    return [record.question, record.answer, record.fact_value, *record.options,
            *(v for v in (record.institution_name, record.study_date, record.modality) if v)]


def test_identifying_values_never_leave_their_owner(corpus: Corpus) -> None:
    owners: dict[str, set[str]] = defaultdict(set)
    owner_node: dict[str, NodeRef] = {}
    for record in corpus.records:
        if record.fact_key in IDENTIFYING_KEYS:
            owners[record.fact_value].add(record.owner_id)
            owner_node[record.fact_value] = NodeRef.of(record, record.owner_level)
    assert all(len(ids) == 1 for ids in owners.values())  # unique in the corpus
    assert {key for key in IDENTIFYING_KEYS} <= {r.fact_key for r in corpus.records}
    for record in corpus.records:
        for text in _texts(record):
            for value, node in owner_node.items():
                if value in text:
                    assert node.contains(record), f"{value!r} of {node.level} leaks into {record.record_id}"


def test_decoys_are_subject_free(corpus: Corpus) -> None:
    values: dict[str, set[str]] = defaultdict(set)
    for record in corpus.records:
        values[record.fact_key].add(record.fact_value)
    vocabulary = {"section.examination": {e for e, _ in vocab.EXAMINATIONS},
                  "section.indication": set(vocab.INDICATIONS), "section.medication": set(vocab.MEDICATIONS),
                  "section.record": set(vocab.HISTORIES)}
    for record in corpus.records:
        if record.task is not Task.CLASSIFICATION:
            continue
        decoys = set(record.options) - {record.fact_value}
        assert len(decoys) == 3 and record.fact_value in record.options
        if record.fact_key in IDENTIFYING_KEYS:  # never any value of the corpus (any patient, any split)
            assert not decoys & values[record.fact_key]
        elif record.fact_key in vocabulary:  # the generator's vocabulary, which belongs to no one
            assert decoys <= vocabulary[record.fact_key]


def test_every_section_node_has_three_trained_records_of_its_own_fact(corpus: Corpus) -> None:
    owned: dict[str, int] = defaultdict(int)
    for record in corpus.select(trainable=True):
        if record.level is Level.SECTION:
            owned[record.owner_id] += 1
    sections = {NodeRef.of(r, Level.SECTION) for r in corpus.records if r.section is not None}
    assert len(owned) == sum(1 for s in sections if any(r.split is Split.TRAIN and s.contains(r)
                                                         for r in corpus.records))
    assert min(owned.values()) >= 3


def _mc_shape(record: Record) -> tuple:
    stem, options = parse_choices(record.question) or ("", ())
    correct = options[LETTERS.index(record.answer)] == record.fact_value
    return stem, len(options), record.answer in LETTERS, correct


def test_holdout_is_asked_exactly_like_train(corpus: Corpus) -> None:
    def plan(split: Split) -> set[tuple]:
        return {(r.fact_key, r.form, r.task, r.eval_only) for r in corpus.select(split=split)}

    assert plan(Split.HOLDOUT) <= plan(Split.TRAIN)
    stems = {split: {(r.fact_key, r.form, _mc_shape(r)[0] if r.fact_key != "section.lab" else "")
                     for r in corpus.select(split=split) if r.task is Task.CLASSIFICATION} for split in Split}
    assert stems[Split.HOLDOUT] <= stems[Split.TRAIN]
    for record in corpus.records:
        if record.task is Task.CLASSIFICATION:
            _, count, is_letter, correct = _mc_shape(record)
            assert count == 4 and is_letter and correct
    kinds = {split: {r.fact_kind for r in corpus.select(split=split)} for split in Split}
    assert kinds[Split.HOLDOUT] == kinds[Split.TRAIN] == set(FactKind)
