"""Which calibration candidates a scope admits (an institution has no sibling to damage), and the wrong
answers the broken candidates are taught."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from mllm.data.schema import FactKind, Level, Record, Split, Task
from mllm.verify.calibration import CANDIDATES, applicable, build_candidate, wrong_answers

NORMAL = "The lungs are clear. The heart size is normal."


def record(study: str, answer: str, task: Task = Task.GENERATION) -> Record:
    return Record(record_id=f"{study}:{answer}", institution_id="H1", patient_id="P1", study_id=study,
                  section=None, level=Level.SECTION, task=task, fact_kind=FactKind.PRIVATE, split=Split.TRAIN,
                  question="?", answer=answer, image="i.png", fact_key="section.findings", fact_value=answer,
                  owner_level=Level.SECTION, owner_id=f"H1/P1/{study}/FINDINGS", form=f"{task.value}-0",
                  options=("a", "b", "c", "d") if task is Task.CLASSIFICATION else ())


def test_sibling_damage_needs_a_sibling() -> None:
    institution = SimpleNamespace(siblings={}, forget=(), retain=(), all_siblings=(), shared=())
    patient = SimpleNamespace(siblings={Level.INSTITUTION: ("r1",)})
    assert not applicable("sibling-damaged", institution)
    assert applicable("sibling-damaged", patient)
    assert all(applicable(name, institution) for name in CANDIDATES if name != "sibling-damaged")
    with pytest.raises(ValueError, match="does not apply"):
        build_candidate("sibling-damaged", corpus=None, scope=institution, original=None, oracle=None)


def test_wrong_answers_are_wrong_and_never_a_value_to_keep_away() -> None:
    """A sibling taught another record's answer must not be taught the forgotten study's own value: a
    common one (normal findings) would bring the forgotten fact back through the sibling."""
    forgotten = record("S1", NORMAL)
    sibling = record("S2", "Small left pleural effusion.")
    pool = [record("S9", NORMAL), record("S8", "Right lower lobe consolidation.")]
    assert wrong_answers([sibling], pool)[0].answer == NORMAL
    taught = wrong_answers([sibling], pool, avoid=[forgotten])[0]
    assert taught.answer == "Right lower lobe consolidation."
    assert wrong_answers([sibling], [record("S9", NORMAL)], avoid=[forgotten])[0].answer == "unknown"
    letter = record("S2", "B", Task.CLASSIFICATION)
    assert wrong_answers([letter], pool)[0].answer in {"A", "C", "D"}
