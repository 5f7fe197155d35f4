"""The engine's batch scope (one ScopeGroups for several requests, minus what was already forgotten) and
the check names it shares with the verifier."""

from __future__ import annotations

import pytest

from compliance.pipeline.engine import ScopeTarget, merged_scope
from mllm.data.schema import Level, Split
from mllm.data.scope import NodeRef, resolve_scope
from mllm.data.synth import generate_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory):
    return generate_corpus(size="tiny", seed=3, out=tmp_path_factory.mktemp("corpus") / "c")


def _target(corpus, patient_id: str) -> ScopeTarget:
    first = next(r for r in corpus.records if r.patient_id == patient_id)
    forget = resolve_scope(corpus, NodeRef.of(first, Level.PATIENT)).forget
    return ScopeTarget(request_id=patient_id, level="patient", forget=frozenset(r.record_id for r in forget))


def ids(records) -> set[str]:
    return {r.record_id for r in records}


def test_a_batch_forgets_the_union_and_keeps_nothing_it_forgets(corpus) -> None:
    patients = list(dict.fromkeys(r.patient_id for r in corpus.records if r.split is Split.TRAIN))
    a, b = _target(corpus, patients[0]), _target(corpus, patients[-1])
    scope = merged_scope(corpus, [a, b], frozenset())
    assert ids(scope.forget) == a.forget | b.forget
    kept = ids(scope.retain) | ids(scope.shared) | {r.record_id for g in scope.siblings.values() for r in g}
    assert not kept & (a.forget | b.forget)
    assert ids(scope.holdout) and not ids(scope.holdout) & kept


def test_records_an_earlier_job_removed_are_neither_forgotten_again_nor_kept(corpus) -> None:
    patients = list(dict.fromkeys(r.patient_id for r in corpus.records if r.split is Split.TRAIN))
    earlier, now = _target(corpus, patients[0]), _target(corpus, patients[1])
    scope = merged_scope(corpus, [now], frozenset(earlier.forget))
    siblings = {r.record_id for group in scope.siblings.values() for r in group}
    every_group = ids(scope.retain) | ids(scope.forget) | siblings
    assert not every_group & earlier.forget
    assert ids(scope.forget) == now.forget - earlier.forget
    assert ids(scope.earlier_forgotten) == earlier.forget  # named, so verification checks they stay gone


def test_each_forget_record_keeps_the_level_of_the_coarsest_request_that_forgets_it(corpus) -> None:
    patients = list(dict.fromkeys(r.patient_id for r in corpus.records if r.split is Split.TRAIN))
    whole, other = _target(corpus, patients[0]), patients[-1]
    section_record = next(r for r in corpus.records if r.patient_id == other and r.section is not None
                          and r.split is Split.TRAIN and not r.eval_only)
    section = resolve_scope(corpus, NodeRef.of(section_record, Level.SECTION)).forget
    study = resolve_scope(corpus, NodeRef.of(next(r for r in corpus.records if r.record_id in whole.forget),
                                             Level.STUDY)).forget  # nested in the patient's request
    targets = [ScopeTarget(request_id="s", level="section", forget=frozenset(ids(section))),
               ScopeTarget(request_id="t", level="study", forget=frozenset(ids(study))), whole]
    scope = merged_scope(corpus, targets, frozenset())
    assert {scope.level_of(r) for r in scope.forget if r.record_id in ids(section)} == {Level.SECTION}
    assert {scope.level_of(r) for r in scope.forget if r.patient_id == patients[0]} == {Level.PATIENT}
    assert {scope.level_of(r) for r in scope.forget_forms if r.patient_id == patients[0]} == {Level.PATIENT}


def test_the_served_utility_checks_the_exact_rule_waives_are_the_verifiers_own() -> None:
    """``VerifyOutcome.accepts`` names the checks of utility lost against the served model; they must be
    exactly the utility attack's checks other than ``cumulative_utility`` (a renamed check would
    otherwise silently gate, or a new one silently be waived, for every exact retraining)."""
    from compliance.pipeline.engine import SERVED_UTILITY_CHECKS
    from mllm.verify.attacks.utility import GROUP_CHECKS

    assert {*GROUP_CHECKS, "utility_likelihood"} == SERVED_UTILITY_CHECKS
