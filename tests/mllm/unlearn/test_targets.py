"""Image-grounded targets end at the model's unseen-image accuracy: hand-made cases."""

from __future__ import annotations

from mllm.data.schema import FactKind, Level, Record, Split, Task
from mllm.unlearn.targets import calibrated_answers


def grounded(record_id: str, answer: str, fact: str = "study.finding") -> Record:
    return Record(record_id=record_id, institution_id="H1", patient_id="P1", study_id="S1", section=None,
                  level=Level.STUDY, task=Task.GENERATION, fact_kind=FactKind.IMAGE_GROUNDED,
                  split=Split.TRAIN, question="What does the image show?", answer=answer, image="i.png",
                  fact_key=fact, fact_value=answer, owner_level=Level.STUDY, owner_id="H1/P1/S1",
                  form="generation-0")


FORGET = [grounded(f"f{i}", "effusion") for i in range(4)]
KEPT = [grounded("k1", "effusion"), grounded("k2", "pneumothorax"), grounded("k3", "nodule")]


def test_the_share_read_right_on_unseen_images_keeps_its_answer_the_rest_gets_a_different_one() -> None:
    answers = calibrated_answers(FORGET, KEPT, {"study.finding": 0.5}, seed=0)
    kept = [rid for rid, answer in answers.items() if answer == "effusion"]
    assert len(kept) == 2
    assert {answers[r.record_id] for r in FORGET} - {"effusion"} <= {"pneumothorax", "nodule"}
    assert calibrated_answers(FORGET, KEPT, {"study.finding": 0.5}, seed=0) == answers  # seeded


def test_a_model_that_reads_unseen_images_perfectly_is_never_forced_wrong() -> None:
    assert set(calibrated_answers(FORGET, KEPT, {"study.finding": 1.0}, seed=3).values()) == {"effusion"}
    assert set(calibrated_answers(FORGET, KEPT, {}, seed=3).values()) == {"effusion"}  # not measured


def test_without_a_differing_twin_the_true_answer_stays() -> None:
    same = [grounded("k1", "effusion")]
    assert set(calibrated_answers(FORGET, same, {"study.finding": 0.0}, seed=0).values()) == {"effusion"}
    assert set(calibrated_answers(FORGET, KEPT, {"study.finding": 0.0}, seed=0).values()) <= {
        "pneumothorax", "nodule"}
