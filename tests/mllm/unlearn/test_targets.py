"""Forgotten facts keep their truth at the model's accuracy on never-seen records of the same fact and
task: hand-made cases."""

from __future__ import annotations

from mllm.data.schema import FactKind, Level, Record, Split, Task
from mllm.unlearn.targets import calibrated_answers


def grounded(record_id: str, answer: str, fact: str = "study.finding",
             task: Task = Task.GENERATION) -> Record:
    return Record(record_id=record_id, institution_id="H1", patient_id="P1", study_id="S1", section=None,
                  level=Level.STUDY, task=task, fact_kind=FactKind.IMAGE_GROUNDED,
                  split=Split.TRAIN, question="What does the image show?", answer=answer, image="i.png",
                  fact_key=fact, fact_value=answer, owner_level=Level.STUDY, owner_id="H1/P1/S1",
                  form="generation-0")


FINDING = ("study.finding", "generation")
FORGET = [grounded(f"f{i}", "effusion") for i in range(4)]
KEPT = [grounded("k1", "effusion"), grounded("k2", "pneumothorax"), grounded("k3", "nodule")]


def test_the_share_read_right_on_unseen_images_keeps_its_answer_the_rest_gets_a_different_one() -> None:
    answers = calibrated_answers(FORGET, KEPT, {FINDING: 0.5}, seed=0)
    kept = [rid for rid, answer in answers.items() if answer == "effusion"]
    assert len(kept) == 2
    assert {answers[r.record_id] for r in FORGET} - {"effusion"} <= {"pneumothorax", "nodule"}
    assert calibrated_answers(FORGET, KEPT, {FINDING: 0.5}, seed=0) == answers  # seeded


def test_a_model_that_reads_unseen_images_perfectly_is_never_forced_wrong() -> None:
    assert set(calibrated_answers(FORGET, KEPT, {FINDING: 1.0}, seed=3).values()) == {"effusion"}
    assert set(calibrated_answers(FORGET, KEPT, {}, seed=3).values()) == {"effusion"}  # not measured


def test_without_a_differing_twin_the_true_answer_stays() -> None:
    same = [grounded("k1", "effusion")]
    assert set(calibrated_answers(FORGET, same, {FINDING: 0.0}, seed=0).values()) == {"effusion"}
    assert set(calibrated_answers(FORGET, KEPT, {FINDING: 0.0}, seed=0).values()) <= {
        "pneumothorax", "nodule"}


def test_each_task_form_keeps_the_truth_at_its_own_unseen_accuracy() -> None:
    """A fact never generated right for a stranger but picked at chance in multiple choice: its
    generation records are all retargeted, a quarter of its multiple-choice ones keep the truth."""
    choice = [grounded(f"c{i}", "B", task=Task.CLASSIFICATION) for i in range(8)]
    kept = [*KEPT, *(grounded(f"k{i}", letter, task=Task.CLASSIFICATION) for i, letter in enumerate("AC"))]
    accuracy = {FINDING: 0.0, ("study.finding", "classification"): 0.25}
    answers = calibrated_answers([*FORGET, *choice], kept, accuracy, seed=0)
    assert all(answers[r.record_id] != "effusion" for r in FORGET)
    assert sum(answers[r.record_id] == "B" for r in choice) == 2
    # a task form the holdout never asks falls back to the fact's accuracy over its tasks
    pooled = calibrated_answers(choice, kept, {("study.finding",): 0.5}, seed=0)
    assert sum(answer == "B" for answer in pooled.values()) == 4
