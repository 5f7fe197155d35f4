"""Scope resolution in ``mllm.data.scope``: groups, ownership, twins, validation node, scope files."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from mllm.data.schema import Corpus, Level, Split
from mllm.data.scope import (
    GROUPS,
    MIN_TWINS,
    NodeRef,
    ScopeError,
    load_scope_file,
    resolve_scope,
    twins_per_record,
)
from mllm.data.synth import generate_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return generate_corpus(size="tiny", seed=5, out=tmp_path_factory.mktemp("c") / "c")


def _node(corpus: Corpus, level: Level, index: int = 0) -> NodeRef:
    records = [r for r in corpus.select(trainable=True) if r.section is not None]
    nodes = list(dict.fromkeys(NodeRef.of(r, level) for r in records))
    return nodes[index]


def _key(record) -> tuple:
    return record.level, record.fact_kind, record.task, record.section


@pytest.mark.parametrize("level", list(Level))
def test_groups_partition_the_trainable_records(corpus: Corpus, level: Level) -> None:
    node = _node(corpus, level)
    scope = resolve_scope(corpus, node)
    ids = scope.ids()
    trainable = {r.record_id for r in corpus.select(trainable=True)}
    parts = [ids["forget"], ids["shared"], ids["siblings"], ids["retain"]]
    assert set().union(*parts) == trainable and sum(map(len, parts)) == len(trainable)
    assert ids["children"] <= ids["forget"]
    for record in scope.forget:  # the node or a descendant owns every forget fact
        assert node.contains(record) and list(Level).index(record.owner_level) >= list(Level).index(level)
    for record in scope.shared:  # an ancestor owns the shared facts asked on the node's images
        assert node.contains(record) and record.shared
        assert list(Level).index(record.owner_level) < list(Level).index(level)
    for ancestor_level, records in scope.siblings.items():
        ancestor = NodeRef.of(scope.forget[0], ancestor_level)
        assert all(ancestor.contains(r) and not node.contains(r) for r in records)
    if level is not Level.INSTITUTION:
        assert node.institution_id not in {r.institution_id for r in scope.retain}
    assert all(r.eval_only and r.split is Split.TRAIN for r in scope.forget_forms)
    facts = {(r.owner_id, r.fact_key) for r in scope.forget}
    assert {(r.owner_id, r.fact_key) for r in scope.forget_forms} == facts
    assert all(r.split is Split.HOLDOUT and not r.eval_only for r in scope.holdout)
    assert all(r.split is Split.HOLDOUT and r.eval_only for r in scope.holdout_forms)
    assert set(scope.summary()["counts"]) == set(GROUPS)
    assert str(node) not in json.dumps(scope.summary())  # counts only


def test_study_scope_tells_children_shared_and_siblings_apart(corpus: Corpus) -> None:
    node = _node(corpus, Level.STUDY)
    scope = resolve_scope(corpus, node)
    assert {r.fact_key for r in scope.shared} == {"institution.name", "patient.name", "patient.birth_date"}
    assert {r.level for r in scope.children} == {Level.SECTION} and len(scope.children) == 7 * 3
    assert len(scope.forget) == 10 * 3  # 3 study facts + 7 section facts, 3 trained forms each
    assert set(scope.siblings) <= {Level.PATIENT, Level.INSTITUTION} and scope.siblings[Level.INSTITUTION]


def test_section_scope_has_the_study_as_nearest_sibling_level(corpus: Corpus) -> None:
    node = _node(corpus, Level.SECTION)
    scope = resolve_scope(corpus, node)
    assert len(scope.forget) == 3 and not scope.children and not scope.shared
    assert {r.study_id for r in scope.siblings[Level.STUDY]} == {node.study_id}


@pytest.mark.parametrize("level", list(Level))
def test_holdout_twins_match_level_kind_task_and_section(corpus: Corpus, level: Level) -> None:
    scope = resolve_scope(corpus, _node(corpus, level))
    holdout = [r for r in corpus.records if r.split is Split.HOLDOUT]
    for targets, twins, eval_only in ((scope.forget, scope.holdout, False),
                                      (scope.forget_forms, scope.holdout_forms, True)):
        pool = Counter(_key(r) for r in holdout if r.eval_only is eval_only)
        per = twins_per_record(len(targets))
        assert len(twins) == min(per * len(targets), pool.total())
        matched = Counter(map(_key, twins))
        for key, count in Counter(map(_key, targets)).items():  # coarser keys only where the pool ran out
            assert matched[key] >= min(per * count, pool[key])
    tiers = scope.holdout_match["holdout"]
    assert sum(tiers.values()) == len(scope.holdout) and tiers["fact_form"] > len(scope.holdout) / 2


def test_a_small_scope_is_compared_with_at_least_min_twins(corpus: Corpus) -> None:
    scope = resolve_scope(corpus, _node(corpus, Level.SECTION))
    assert len(scope.forget) == 3 and twins_per_record(3) == 8 and len(scope.holdout) == MIN_TWINS
    assert twins_per_record(MIN_TWINS) == 1 and twins_per_record(500) == 1


def test_validation_node_is_another_patients_node_of_the_same_level(corpus: Corpus) -> None:
    for level in Level:
        node = _node(corpus, level)
        scope = resolve_scope(corpus, node)
        other = scope.validation_node
        assert other is not None and other.level is level and other != node
        if level is not Level.INSTITUTION:
            assert other.patient_id != node.patient_id
        else:
            assert other.institution_id != node.institution_id
        assert scope.validation and all(other.contains(r) for r in scope.validation)
        assert not {r.record_id for r in scope.validation} & {r.record_id for r in scope.forget}


def test_resolution_is_deterministic_and_refuses_an_empty_node(corpus: Corpus) -> None:
    node = _node(corpus, Level.PATIENT, 1)
    assert resolve_scope(corpus, node).ids() == resolve_scope(corpus, node).ids()
    with pytest.raises(ScopeError, match="owns no trainable record"):
        resolve_scope(corpus, NodeRef(node.institution_id, "no-such-patient"))
    holdout = next(r for r in corpus.records if r.split is Split.HOLDOUT)
    with pytest.raises(ScopeError):
        resolve_scope(corpus, NodeRef.of(holdout, Level.PATIENT))


def test_scope_file(tmp_path: Path, corpus: Corpus) -> None:
    node = _node(corpus, Level.SECTION)
    path = tmp_path / "SCOPE.json"
    path.write_text(json.dumps({"institution_id": node.institution_id, "patient_id": node.patient_id,
                                "study_id": node.study_id, "section": node.section.value}))
    assert load_scope_file(path) == node
    path.write_text(json.dumps({"institution_id": node.institution_id}))
    assert load_scope_file(path).level is Level.INSTITUTION
    for data, field in (({"institution_id": "i", "study_id": "s"}, "patient_id"),
                        ({"institution_id": "i", "patient_id": "p", "study_id": "s", "section": "X"},
                         "section"),
                        ({"patient_id": "p"}, "institution_id"), ({"institution_id": "i", "mrn": "1"}, "mrn"),
                        ({"institution_id": 3}, "institution_id")):
        path.write_text(json.dumps(data))
        with pytest.raises(ScopeError) as caught:
            load_scope_file(path)
        assert caught.value.field_name == field
    path.write_text("[not json")
    with pytest.raises(ScopeError, match="cannot read"):
        load_scope_file(path)
