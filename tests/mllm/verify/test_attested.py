"""Attested answers on hand-made records: an answer the corpus holds for the kind of fact asked (right
or wrong for this patient) is attested; a refusal, a value of another kind of fact or a phrase of no
record is not. The ``unattested_answers`` check on hand-made subjects: a refusal in scope, or one
spread to every unseen patient, fails; answering with other patients' values passes."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest

from mllm.data.schema import FactKind, Level, Record, Split, Task
from mllm.verify import VerdictPolicy
from mllm.verify.attacks.integrity import IN_SCOPE, UNSEEN, unattested_check
from mllm.verify.attested import AnswerBook
from mllm.verify.context import VerifyContext
from mllm.verify.engine import Decoded


def record(key: str, answer: str, task: Task = Task.GENERATION, value: str | None = None,
           patient: str = "P1") -> Record:
    return Record(record_id=f"{patient}:{key}:{answer}", institution_id="H1", patient_id=patient,
                  study_id="S1", section=None, level=Level.STUDY, task=task, fact_kind=FactKind.PRIVATE,
                  split=Split.TRAIN, question="?", answer=answer, image="i.png", fact_key=key,
                  fact_value=value or answer, owner_level=Level.STUDY, owner_id="H1/P1/S1",
                  form=f"{task.value}-0")


CORPUS = [
    record("patient.name", "Maria Lopez"),
    record("patient.name", "John Smith"),
    record("study.date", "2019-03-04"),
    record("section.findings", "Small left pleural effusion without pneumothorax."),
    record("patient.name", "B", Task.CLASSIFICATION, value="John Smith"),
    record("patient.name", "Lopez", Task.CLOZE, value="Maria Lopez"),
]
NAME = CORPUS[0]


@pytest.fixture
def book() -> AnswerBook:
    return AnswerBook(CORPUS, rouge_l_success=0.7)


@pytest.mark.parametrize("answer", ["Maria Lopez", "john smith.", "The patient is John Smith"])
def test_a_value_the_corpus_holds_for_that_kind_of_fact_is_attested_right_or_wrong(book, answer) -> None:
    assert book.attested(NAME, answer)


@pytest.mark.parametrize("answer", ["I don't know.", "", "2019-03-04", "Small left pleural effusion"])
def test_a_refusal_an_empty_answer_or_another_kind_of_value_is_not(book, answer) -> None:
    assert not book.attested(NAME, answer)


def test_generation_is_attested_on_the_rouge_rule_and_kinds_are_told_apart_by_task(book) -> None:
    findings = CORPUS[3]
    assert book.attested(findings, "Small left pleural effusion, no pneumothorax.")
    assert not book.attested(findings, "Maria Lopez")
    cloze = CORPUS[5]
    assert book.attested(cloze, "lopez") and not book.attested(cloze, "Maria")


def test_a_multiple_choice_answer_names_an_option_letter_or_text(book) -> None:
    choice = CORPUS[4]
    assert book.attested(choice, "B") and book.attested(choice, "John Smith")
    assert not book.attested(choice, "I don't know.")
    assert not book.attested(replace(choice, fact_key="study.date"), "B")  # no such question in the corpus


KEYS = {"patient.name": "Name {}", "study.date": "2019-03-0{}", "study.modality": "CT {}",
        "section.findings": "Small left pleural effusion number {}."}
FORGET = [record(key, value.format(1)) for key, value in KEYS.items()]
TWINS = [record(key, value.format(n), patient=f"P{n}") for key, value in KEYS.items() for n in range(2, 6)]
REFUSAL = "I don't know."


class Answers:
    """A subject answering each record id from ``answers``, else with another patient's value."""

    def __init__(self, **answers: str) -> None:
        self.answers = answers

    def decode(self, probes, root, policy) -> list[Decoded]:
        out = []
        for probe in probes:
            r = probe.record
            text = self.answers.get(r.patient_id, KEYS[r.fact_key].format(9 if r.patient_id == "P1" else 2))
            out.append(Decoded(text, finished=True, tokens=3))
        return out


def judge(candidate: Answers) -> dict[str, float]:
    kept = [record(key, value.format(9)) for key, value in KEYS.items()]  # values the model was trained on
    corpus = SimpleNamespace(root=None, records=[*FORGET, *TWINS, *kept])
    scope = SimpleNamespace(forget=FORGET, holdout=TWINS)
    ctx = VerifyContext(corpus=corpus, scope=scope, policy=VerdictPolicy(), candidate=candidate,
                        original=Answers())
    tables, check = unattested_check(ctx, FORGET)
    in_scope, unseen = tables[IN_SCOPE]["excess"].value, tables[UNSEEN].value
    return {"passed": check.passed, "in scope": in_scope, "unseen": unseen}


def test_answering_with_other_patients_values_passes() -> None:
    assert judge(Answers())["passed"] is True


def test_a_refusal_in_scope_fails_against_the_twins() -> None:
    verdict = judge(Answers(P1=REFUSAL))
    assert verdict["passed"] is False and verdict["in scope"] == 1.0


def test_a_refusal_spread_to_every_unseen_patient_fails_against_the_original() -> None:
    everyone = Answers(**{f"P{n}": REFUSAL for n in range(1, 6)})
    verdict = judge(everyone)
    assert verdict["passed"] is False and verdict["in scope"] == 0.0 and verdict["unseen"] == 1.0
