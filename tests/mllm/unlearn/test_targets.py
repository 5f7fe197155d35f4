"""Forgotten facts keep their truth at the model's accuracy on never-seen records of the same fact and
task: hand-made cases."""

from __future__ import annotations

from dataclasses import replace

from mllm.data.prompts import DEPTHS
from mllm.data.schema import FactKind, Level, Record, Split, Task
from mllm.unlearn.targets import CALIBRATION_RECORDS, calibrated_answers, calibration_holdout


def grounded(record_id: str, answer: str, fact: str = "study.finding",
             task: Task = Task.GENERATION, split: Split = Split.TRAIN, eval_only: bool = False) -> Record:
    return Record(record_id=record_id, institution_id="H1", patient_id="P1", study_id="S1", section=None,
                  level=Level.STUDY, task=task, fact_kind=FactKind.IMAGE_GROUNDED,
                  split=split, question="What does the image show?", answer=answer, image="i.png",
                  fact_key=fact, fact_value=answer, owner_level=Level.STUDY, owner_id="H1/P1/S1",
                  form="generation-0", eval_only=eval_only)


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


def test_under_a_kept_patient_the_new_answer_is_one_of_that_patients_other_values() -> None:
    # a study of P1 forgotten, P1's other study kept: a model that never saw the study answers with it
    others = [replace(grounded(f"o{i}", answer), patient_id="P2") for i, answer in enumerate(["nodule"] * 5)]
    sibling = replace(grounded("s1", "pneumothorax"), study_id="S2")
    answers = calibrated_answers(FORGET, [*others, sibling], {FINDING: 0.0}, seed=0)
    assert set(answers.values()) == {"pneumothorax"}
    # a forgotten patient has no kept record: another patient's value
    assert set(calibrated_answers(FORGET, others, {FINDING: 0.0}, seed=0).values()) == {"nodule"}


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


def test_small_groups_keep_their_truth_at_the_rate_in_total_not_rounded_to_zero_each() -> None:
    """A patient's facts come one or two records per fact and task: rounding 0.25 x 1 per group kept
    no truth at all (the forgotten patient below a stranger's accuracy); over eight such groups two
    keep it, whatever the seed, and every group keeps at most its size."""
    facts = [f"section.fact{i}" for i in range(8)]
    forget = [grounded(f"f{i}", "effusion", fact=fact) for i, fact in enumerate(facts)]
    kept = [grounded(f"k{i}", "nodule", fact=fact) for i, fact in enumerate(facts)]
    accuracy = {(fact, "generation"): 0.25 for fact in facts}
    for seed in range(5):
        answers = calibrated_answers(forget, kept, accuracy, seed=seed)
        assert sum(answer == "effusion" for answer in answers.values()) == 2
    one = calibrated_answers(forget[:1], kept, {(facts[0], "generation"): 0.25}, seed=0)
    assert len(one) == 1 and set(one.values()) <= {"effusion", "nodule"}


def test_unseen_accuracy_is_measured_on_the_twins_topped_up_from_the_holdout_split() -> None:
    """One twin per fact and task gave rates of 0 or 1; the corpus's holdout tops each up to
    CALIBRATION_RECORDS (seeded), trained forms only, and only for the facts and tasks in scope."""
    twin = grounded("t0", "nodule", split=Split.HOLDOUT)
    pool = [grounded(f"h{i}", "effusion", split=Split.HOLDOUT) for i in range(40)]
    other = [grounded(f"o{i}", "x", fact="patient.name", split=Split.HOLDOUT) for i in range(5)]
    held_out_form = grounded("e0", "effusion", split=Split.HOLDOUT, eval_only=True)
    measured = calibration_holdout(FORGET, [twin], [*pool, *other, held_out_form, twin], seed=0)
    assert measured[0] is twin and len(measured) == CALIBRATION_RECORDS
    assert {r.fact_key for r in measured} == {"study.finding"} and held_out_form not in measured
    assert measured == calibration_holdout(FORGET, [twin], [*pool, *other, held_out_form, twin], seed=0)
    assert measured != calibration_holdout(FORGET, [twin], [*pool, *other, held_out_form, twin], seed=1)


def private(record_id: str) -> Record:
    return replace(grounded(record_id, "cough", fact="section.indication"), fact_kind=FactKind.PRIVATE)


def hierarchy_run(monkeypatch, retain: list[Record]):
    """A ``hierarchy`` run's inputs without a model: p1 keeps its truth at a stranger's rate, p2 is
    retargeted."""
    from types import SimpleNamespace

    from mllm.unlearn.methods import hierarchy

    scope = SimpleNamespace(forget=[private("p1"), private("p2")], children=[], siblings={}, shared=[],
                            retain=retain, holdout=[])
    corpus = SimpleNamespace(select=lambda **_: [])
    monkeypatch.setattr(hierarchy, "unseen_level_answers", lambda *a: {"p1": "cough", "p2": "fever"})
    return SimpleNamespace(ctx=SimpleNamespace(model=None, processor=None, root=None, scope=scope,
                                               corpus=corpus, seed=0),
                           config=hierarchy.HierarchyConfig(truth_weight=0), encode=lambda streams: streams)


def test_hierarchy_anchors_every_forget_record_that_keeps_its_truth(monkeypatch) -> None:
    """A private generation record kept at a stranger's rate is trained on its own answer (left
    untrained it followed its retargeted siblings below that rate); a retargeted one is not."""
    from mllm.unlearn.methods import hierarchy

    retargeted, unchanged = hierarchy.forget_targets(hierarchy_run(monkeypatch, retain=[]))
    assert {(i.record.record_id, i.answer) for i in unchanged} == {("p1", "cough")}
    assert {(i.record.record_id, i.answer) for i in retargeted} == {("p2", "fever")}
    assert len(unchanged) == len(DEPTHS)  # at every depth


def test_hierarchy_trains_kept_truths_in_the_kept_stream_not_beside_the_retargeted(monkeypatch) -> None:
    """Kept truths are anchored in the kept stream (weight ``grounded``), not cycled with the
    retargeted records: trained as often as those, the forgotten patient's truths came back in the
    attacks (verification's context, held-out-form and relearning leaks rose toward their edges;
    docs/design.md, "Unlearning")."""
    from mllm.unlearn.methods import hierarchy

    monkeypatch.setattr(hierarchy, "unseen_logprob", lambda *a: -5.0)
    far = [replace(private(f"r{i}"), patient_id="P2") for i in range(50)]
    streams = hierarchy.Hierarchy.streams(hierarchy_run(monkeypatch, retain=far))
    assert {(i.record.record_id, i.answer) for i in streams["forget"]} == {("p2", "fever")}
    kept = [(i.record.record_id, i.answer) for i in streams["kept"]]
    assert kept.count(("p1", "cough")) == 2 * len(DEPTHS) and kept.count(("r0", "cough")) == 1


def test_hierarchy_repeats_retargeted_multiple_choice_items_in_the_forget_stream() -> None:
    """One option letter flips slower than a generated answer: each retargeted multiple-choice item
    enters the forget stream ``choice_repeats`` times, every other item once."""
    from mllm.unlearn.data import Item
    from mllm.unlearn.methods.hierarchy import HierarchyConfig, forget_stream

    choice = replace(grounded("c", "B"), task=Task.CLASSIFICATION)
    text = grounded("g", "fever")
    stream = forget_stream(HierarchyConfig(choice_repeats=3), [Item(choice, "C"), Item(text, "cough")])
    assert [i.record.record_id for i in stream].count("c") == 3
    assert [i.record.record_id for i in stream].count("g") == 1
    assert forget_stream(HierarchyConfig(choice_repeats=1), [Item(choice, "C")]) == [Item(choice, "C")]
