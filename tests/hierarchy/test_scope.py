"""Scope resolution on a small hand-built hierarchy (see ``factories.hierarchy_make``)."""

from collections import Counter

import pytest
from factories import hierarchy_make, record_make

from core.principals import SYSTEM
from hierarchy.models import TrainingRecord
from hierarchy.scope import GROUPS, scope_resolve
from hierarchy.selectors import institution_by_code, patient_by_mrn, section_get, study_by_uid
from hierarchy.services import corpus_ingest
from mllm.data.entities import HierarchyNode, load_hierarchy
from mllm.data.schema import Level, Split
from mllm.data.synth import generate_corpus

pytestmark = pytest.mark.django_db


@pytest.fixture
def tree():
    return hierarchy_make()


def _key(record_id: str, corpus) -> tuple:
    record = TrainingRecord.objects.select_related("section").get(corpus=corpus, record_id=record_id)
    return record.level, record.task, record.section.name if record.section else ""


def _check_invariants(scope, tree) -> None:
    records = TrainingRecord.objects.filter(corpus=tree.corpus)
    trainable = set(records.filter(is_holdout=False, paraphrase_of="").values_list("record_id", flat=True))
    holdout = set(records.filter(is_holdout=True, paraphrase_of="").values_list("record_id", flat=True))
    assert scope.forget | scope.retain == trainable
    assert not scope.forget & scope.retain
    assert scope.neighbour <= scope.retain
    assert scope.holdout <= holdout
    assert len(scope.holdout) == min(len(scope.forget), len(holdout))
    paraphrases = set(records.exclude(paraphrase_of="").values_list("record_id", flat=True))
    assert scope.forget_paraphrases <= paraphrases
    for group in GROUPS:
        assert sum(scope.counts_by_level[group].values()) == len(getattr(scope, group))


def test_patient_scope(tree) -> None:
    patient, sibling = tree.patients[0], tree.patients[1]
    scope = scope_resolve(node=patient, corpus=tree.corpus)
    _check_invariants(scope, tree)
    assert scope.level is Level.PATIENT and scope.subject_hash == patient.mrn_hash
    under = set(TrainingRecord.objects.filter(study__patient=patient, is_holdout=False, paraphrase_of="")
                .values_list("record_id", flat=True))
    assert scope.forget == under and len(under) == 12
    assert scope.neighbour == set(TrainingRecord.objects.filter(study__patient=sibling, paraphrase_of="")
                                  .values_list("record_id", flat=True))
    assert len(scope.retain) == 34
    assert len(scope.forget_paraphrases) == 1
    assert scope.counts_by_level["forget"] == {"institution": 1, "patient": 1, "section": 8, "study": 2}
    # The holdout slice has no institution-level record: 11 exact twins, the last from any level.
    assert scope.holdout_match == {"level_task_section": 11, "level_task": 0, "level": 0, "any": 1}
    forget_mix = Counter(_key(rid, tree.corpus) for rid in scope.forget)
    holdout_mix = Counter(_key(rid, tree.corpus) for rid in scope.holdout)
    assert sum((forget_mix & holdout_mix).values()) == 11


def test_study_scope(tree) -> None:
    study, sibling = tree.studies[0], tree.studies[1]
    assert study.patient_id == sibling.patient_id
    scope = scope_resolve(node=study, corpus=tree.corpus)
    _check_invariants(scope, tree)
    assert len(scope.forget) == 7 and len(scope.holdout) == 7
    assert scope.neighbour == set(TrainingRecord.objects.filter(study=sibling, paraphrase_of="")
                                  .values_list("record_id", flat=True))
    assert len(scope.neighbour) == 5


def test_section_scope(tree) -> None:
    section = tree.sections[0]
    scope = scope_resolve(node=section, corpus=tree.corpus)
    _check_invariants(scope, tree)
    assert scope.forget == set(TrainingRecord.objects.filter(section=section, paraphrase_of="")
                               .values_list("record_id", flat=True))
    assert len(scope.forget) == 2
    # Everything else of the same study: the other section and the study-wide questions.
    assert len(scope.neighbour) == 5
    assert all(TrainingRecord.objects.get(corpus=tree.corpus, record_id=rid).study_id == section.study_id
               for rid in scope.neighbour)
    assert len(scope.forget_paraphrases) == 1
    assert scope.holdout_match["level_task_section"] == 2
    assert scope.label.endswith("/ FINDINGS")


def test_institution_scope(tree) -> None:
    scope = scope_resolve(node=tree.institutions[0], corpus=tree.corpus)
    _check_invariants(scope, tree)
    assert len(scope.forget) == 23 and scope.neighbour == scope.retain and len(scope.retain) == 23
    assert len(scope.holdout) == 22  # the whole holdout slice, one short of the forget set
    assert len(scope.forget_paraphrases) == 2
    assert scope.label == f"institution {tree.institutions[0].code}"


def test_holdout_twins_are_deterministic_and_never_trained(tree) -> None:
    first = scope_resolve(node=tree.patients[1], corpus=tree.corpus)
    again = scope_resolve(node=tree.patients[1], corpus=tree.corpus)
    assert first == again
    trained = set(TrainingRecord.objects.filter(corpus=tree.corpus, is_holdout=False)
                  .values_list("record_id", flat=True))
    assert not first.holdout & trained


def test_paraphrase_of_a_retained_record_is_not_forgotten(tree) -> None:
    other = TrainingRecord.objects.filter(corpus=tree.corpus, study=tree.studies[-1]).first()
    record_make(corpus=tree.corpus, study=other.study, paraphrase_of=other.record_id, record_id="para-x")
    scope = scope_resolve(node=tree.patients[0], corpus=tree.corpus)
    assert "para-x" not in scope.forget_paraphrases | scope.retain | scope.forget


def test_summary_has_counts_and_hashes_only(tree) -> None:
    scope = scope_resolve(node=tree.studies[0], corpus=tree.corpus)
    summary = scope.summary()
    assert summary["counts"] == {"forget": 7, "retain": 39, "neighbour": 5, "holdout": 7,
                                 "forget_paraphrases": 1}
    assert tree.uids[tree.studies[0].pk] not in str(summary)
    assert summary["subject_hash"] == tree.studies[0].uid_hash


def test_node_without_records_has_empty_scope(tree) -> None:
    from factories import corpus_make

    scope = scope_resolve(node=tree.patients[0], corpus=corpus_make())
    assert not (scope.forget or scope.retain or scope.holdout)


def test_one_query_for_the_records(tree, django_assert_max_num_queries) -> None:
    with django_assert_max_num_queries(1):
        scope_resolve(node=tree.patients[0], corpus=tree.corpus)


def test_rejects_non_nodes(tree) -> None:
    with pytest.raises(TypeError, match="not a hierarchy node"):
        scope_resolve(node=tree.corpus, corpus=tree.corpus)


def test_synthetic_corpus_matches_the_reference_definition(tmp_path) -> None:
    """On a generated corpus, scopes agree with ``mllm.data.entities.HierarchyNode.contains``."""
    corpus = generate_corpus(size="tiny", seed=5, out=tmp_path / "tiny")
    row = corpus_ingest(corpus_dir=corpus.root, actor=SYSTEM).corpus
    systems = {i.institution_id: i.mrn_system for i in load_hierarchy(corpus.root).institutions}
    record = next(r for r in corpus.records if r.section is not None and r.is_trainable)
    institution = institution_by_code(code=record.institution_id)
    patient = patient_by_mrn(system=systems[record.institution_id], value=record.patient_id)
    study = study_by_uid(uid=record.study_id)
    nodes = [(institution, None), (patient, institution), (study, patient),
             (section_get(study=study, name=record.section), study)]
    for level, (node, parent) in zip(Level, nodes, strict=True):
        reference = HierarchyNode.of(record, level)
        above = HierarchyNode.of(record, list(Level)[list(Level).index(level) - 1]) if parent else None
        scope = scope_resolve(node=node, corpus=row)
        trainable = [r for r in corpus.records if r.is_trainable]
        assert scope.forget == {r.record_id for r in trainable if reference.contains(r)}
        assert scope.neighbour == {r.record_id for r in trainable if not reference.contains(r)
                                   and (above is None or above.contains(r))}
        assert scope.forget_paraphrases == {r.record_id for r in corpus.records
                                            if r.paraphrase_of in scope.forget}
        holdout = {r.record_id for r in corpus.records if r.split is Split.HOLDOUT and not r.paraphrase_of}
        assert scope.holdout <= holdout and len(scope.holdout) == min(len(holdout), len(scope.forget))
