"""Scope resolution on the database (``hierarchy.scope``), which runs ``mllm.data.scope``'s algorithm."""

from collections import Counter

import pytest
from factories import hierarchy_make

from core.principals import SYSTEM
from hierarchy.models import TrainingRecord
from hierarchy.scope import scope_resolve
from hierarchy.selectors import institution_by_code, patient_by_mrn, section_get, study_by_uid
from hierarchy.services import corpus_ingest
from mllm.data.entities import load_hierarchy
from mllm.data.schema import Level
from mllm.data.scope import GROUPS, NodeRef, resolve_scope, twins_per_record
from mllm.data.synth import generate_corpus

pytestmark = pytest.mark.django_db


@pytest.fixture
def tree():
    return hierarchy_make()


def _ids(queryset) -> set[str]:
    return set(queryset.values_list("record_id", flat=True))


def _key(record_id: str, corpus) -> tuple:
    record = TrainingRecord.objects.select_related("section").get(corpus=corpus, record_id=record_id)
    return record.level, record.fact_kind, record.task, record.section.name if record.section else ""


def _check_invariants(scope, tree) -> None:
    records = TrainingRecord.objects.filter(corpus=tree.corpus)
    trainable = _ids(records.filter(is_holdout=False, eval_only=False))
    parts = [scope.forget, scope.shared, scope.siblings, scope.retain]
    assert set().union(*parts) == trainable and sum(map(len, parts)) == len(trainable)
    assert scope.children <= scope.forget
    assert scope.holdout <= _ids(records.filter(is_holdout=True, eval_only=False))
    pool = _ids(records.filter(is_holdout=True, eval_only=False))
    assert len(scope.holdout) == min(twins_per_record(len(scope.forget)) * len(scope.forget), len(pool))
    assert scope.forget_forms <= _ids(records.filter(is_holdout=False, eval_only=True))
    for group in GROUPS:
        assert sum(scope.counts_by_level[group].values()) == len(getattr(scope, group))


def test_patient_scope(tree) -> None:
    patient, sibling = tree.patients[0], tree.patients[1]
    scope = scope_resolve(node=patient, corpus=tree.corpus)
    _check_invariants(scope, tree)
    assert scope.level is Level.PATIENT and scope.subject_hash == patient.mrn_hash
    under = TrainingRecord.objects.filter(study__patient=patient, is_holdout=False, eval_only=False)
    assert scope.forget == _ids(under.exclude(level="institution")) and len(scope.forget) == 11
    assert scope.shared == _ids(under.filter(level="institution")) and len(scope.shared) == 1
    assert scope.children == _ids(under.filter(level__in=["study", "section"]))
    assert scope.siblings == _ids(TrainingRecord.objects.filter(study__patient=sibling, eval_only=False))
    assert scope.siblings_by_ancestor == {"institution": len(scope.siblings)}
    assert len(scope.retain) == 23 and len(scope.forget_forms) == 1
    assert scope.counts_by_level["forget"] == {"patient": 1, "section": 8, "study": 2}
    # 11 forget records ask for 3 twins each (MIN_TWINS): the 22-record holdout slice gives all it has,
    # every level x kind x task x section of the forget set matched as far as the slice holds it
    assert len(scope.holdout) == sum(scope.holdout_match["holdout"].values()) == 22
    pool = Counter(_key(rid, tree.corpus) for rid in _ids(TrainingRecord.objects.filter(
        corpus=tree.corpus, is_holdout=True, eval_only=False)))
    holdout_mix = Counter(_key(rid, tree.corpus) for rid in scope.holdout)
    for key, count in Counter(_key(rid, tree.corpus) for rid in scope.forget).items():
        assert holdout_mix[key] == min(3 * count, pool[key])


def test_study_scope(tree) -> None:
    study, sibling = tree.studies[0], tree.studies[1]
    assert study.patient_id == sibling.patient_id
    scope = scope_resolve(node=study, corpus=tree.corpus)
    _check_invariants(scope, tree)
    assert len(scope.forget) == 5 and len(scope.shared) == 2 and len(scope.holdout) == 22
    assert scope.siblings >= _ids(TrainingRecord.objects.filter(study=sibling, eval_only=False))
    assert scope.siblings_by_ancestor["patient"] == 5


def test_section_scope(tree) -> None:
    section = tree.sections[0]
    scope = scope_resolve(node=section, corpus=tree.corpus)
    _check_invariants(scope, tree)
    assert scope.forget == _ids(TrainingRecord.objects.filter(section=section, eval_only=False))
    assert len(scope.forget) == 2 and not scope.children and not scope.shared
    assert scope.siblings_by_ancestor["study"] == 5  # the study's other section and study-level records
    assert len(scope.forget_forms) == 1
    assert len(scope.validation) == 2  # the same section kind of another patient


def test_institution_scope(tree) -> None:
    scope = scope_resolve(node=tree.institutions[0], corpus=tree.corpus)
    _check_invariants(scope, tree)
    assert len(scope.forget) == 23 and not scope.siblings and len(scope.retain) == 23
    assert len(scope.forget_forms) == 2 and len(scope.validation) == 23


def test_resolution_is_deterministic_and_never_trained(tree) -> None:
    first = scope_resolve(node=tree.patients[1], corpus=tree.corpus)
    assert first == scope_resolve(node=tree.patients[1], corpus=tree.corpus)
    trained = _ids(TrainingRecord.objects.filter(corpus=tree.corpus, is_holdout=False))
    assert not first.holdout & trained


def test_summary_has_counts_and_hashes_only(tree) -> None:
    summary = scope_resolve(node=tree.studies[0], corpus=tree.corpus).summary()
    assert summary["counts"] == {"forget": 5, "children": 4, "shared": 2, "siblings": 16, "retain": 23,
                                 "validation": 5, "holdout": 22, "forget_forms": 1, "holdout_forms": 0}
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


def test_database_scope_equals_the_library_scope(tmp_path) -> None:
    """On a generated corpus, every group equals ``mllm.data.scope.resolve_scope``'s (one algorithm)."""
    corpus = generate_corpus(size="tiny", seed=5, out=tmp_path / "tiny")
    row = corpus_ingest(corpus_dir=corpus.root, actor=SYSTEM).corpus
    systems = {i.institution_id: i.mrn_system for i in load_hierarchy(corpus.root).institutions}
    record = next(r for r in corpus.records if r.section is not None and r.is_trainable)
    institution = institution_by_code(code=record.institution_id)
    patient = patient_by_mrn(system=systems[record.institution_id], value=record.patient_id)
    study = study_by_uid(uid=record.study_id)
    nodes = [institution, patient, study, section_get(study=study, name=record.section)]
    for level, node in zip(Level, nodes, strict=True):
        scope = scope_resolve(node=node, corpus=row)
        reference = resolve_scope(corpus, NodeRef.of(record, level), salt=scope.subject_hash).ids()
        for group in GROUPS:
            if group != "validation":  # chosen by a hash of node ids, which differ (db ids vs identifiers)
                assert getattr(scope, group) == reference[group], (level, group)
        assert len(scope.validation) > 0
