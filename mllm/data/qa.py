"""Facts and the forms they are asked in: generation, cloze and multiple choice, two phrasings each.

A :class:`Fact` is one thing that can be asked about a study image (the patient's name, the main
finding, the LAB section, ...): its key, owner level, value, two question phrasings (the generation
questions, which are also the multiple-choice stems), two cloze statements and the wrong values a
multiple-choice question offers. A fact is asked in six :data:`FORMS` (task x phrasing);
:func:`form_plan` says which are trained and which held out for evaluation only (one phrasing of a
trained task and both phrasings of one cross-task form), rotating with a number so that every
form is trained for some facts of each key and held out for others. Multiple-choice options are
drawn once per fact (:func:`draw_options`), so both phrasings show the same options in the same
order — and holdout patients' questions are built by the same code as trained ones.
"""

from __future__ import annotations

import random
import re
import string
from dataclasses import dataclass

from .schema import CLOZE_BLANK, FactKind, Level, Record, Section, Split, Task, node_path

TASKS = (Task.GENERATION, Task.CLASSIFICATION, Task.CLOZE)
LETTERS = "ABCD"
PHRASINGS = 2
_CHOICE = re.compile(r"(?:^|\s)([A-Z])\) ")


@dataclass(frozen=True)
class QA:
    question: str
    answer: str
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class Form:
    """A task and a phrasing (0 or 1); ``id`` is what :attr:`Record.form` stores."""

    task: Task
    phrasing: int

    @property
    def id(self) -> str:
        return f"{self.task.value}-{self.phrasing}"


FORMS = tuple(Form(task, phrasing) for task in TASKS for phrasing in range(PHRASINGS))


@dataclass(frozen=True)
class Fact:
    """One askable fact of a study image, with its wording in every form."""

    key: str
    level: Level
    section: Section | None
    kind: FactKind
    value: str  # the fact value: the correct multiple-choice option
    questions: tuple[str, str]  # generation questions = multiple-choice stems, one per phrasing
    answer: str  # the generation answer (the value, or a report sentence stating it)
    clozes: tuple[tuple[str, str], tuple[str, str]]  # (statement with CLOZE_BLANK, blanked text)
    decoys: tuple[str, ...]  # wrong values, at least 3, none equal to ``value``
    shared: bool = False  # asked on every study image of an owner above the study

    def __post_init__(self) -> None:
        if len(set(self.decoys) - {self.value}) < 3 or len(set(self.decoys)) != len(self.decoys):
            raise ValueError(f"fact {self.key}: needs 3 distinct decoys other than the value")
        if any(CLOZE_BLANK not in statement for statement, _ in self.clozes):
            raise ValueError(f"fact {self.key}: every cloze statement needs {CLOZE_BLANK}")


def format_choices(stem: str, options: tuple[str, ...]) -> str:
    """``stem A) x B) y C) z D) w`` — the MedForget multiple-choice form."""
    return stem + " " + " ".join(f"{LETTERS[i]}) {option}" for i, option in enumerate(options))


def parse_choices(question: str) -> tuple[str, tuple[str, ...]] | None:
    """Split a multiple-choice question into stem and options (``A)``, ``B)``, ... in order), or None."""
    marks = list(_CHOICE.finditer(question))
    letters = "".join(mark.group(1) for mark in marks)
    if len(marks) < 2 or letters != string.ascii_uppercase[:len(marks)]:
        return None
    ends = [mark.start() for mark in marks[1:]] + [len(question)]
    options = tuple(question[mark.end():end].strip() for mark, end in zip(marks, ends, strict=True))
    return question[:marks[0].start()].strip(), options


def draw_options(fact: Fact, rng: random.Random) -> tuple[str, ...]:
    """The value and three decoys, shuffled: the options of every multiple-choice form of the fact."""
    options = [fact.value, *rng.sample(sorted(set(fact.decoys) - {fact.value}), 3)]
    rng.shuffle(options)
    return tuple(options)


def ask(fact: Fact, form: Form, options: tuple[str, ...]) -> QA:
    """``fact`` in ``form`` (``options`` from :func:`draw_options`, used by multiple choice only)."""
    if form.task is Task.GENERATION:
        return QA(fact.questions[form.phrasing], fact.answer)
    if form.task is Task.CLOZE:
        return QA(*fact.clozes[form.phrasing])
    return QA(format_choices(fact.questions[form.phrasing], options), LETTERS[options.index(fact.value)],
              options)


# (held-out task, which trained task holds one phrasing out, that phrasing), as indexes into TASKS,
# the trained tasks in TASKS order and the phrasings: all 12 combinations, ordered so that any 3
# consecutive rotations train and hold out every form at least once.
ROTATIONS = ((0, 0, 0), (2, 1, 1), (1, 0, 1), (0, 1, 0), (2, 1, 0), (1, 0, 0), (2, 0, 1), (1, 1, 1),
             (0, 0, 1), (2, 0, 0), (1, 1, 0), (0, 1, 1))


def form_plan(rotation: int) -> list[tuple[Form, bool]]:
    """(form, eval_only) for the six forms of a fact, as rotation ``rotation`` holds them out.

    One task is held out entirely (the cross-task forms, both phrasings); of the two trained tasks,
    one trains both phrasings and the other one phrasing, holding the other out. Three forms are
    trained and three held out; any 3 consecutive rotations train and hold out every form.
    """
    held_index, partial_index, held_phrasing = ROTATIONS[rotation % len(ROTATIONS)]
    held = TASKS[held_index]
    partial = [task for task in TASKS if task is not held][partial_index]
    return [(form, form.task is held or (form.task is partial and form.phrasing == held_phrasing))
            for form in FORMS]


@dataclass(frozen=True)
class Place:
    """Where records are asked: the image, its hierarchy path and the context the renderer may show."""

    institution_id: str
    patient_id: str
    study_id: str
    image: str
    split: Split
    institution_name: str | None = None
    study_date: str | None = None
    modality: str | None = None


def fact_record(record_id: str, place: Place, fact: Fact, form: Form, qa: QA, *, eval_only: bool) -> Record:
    """The record asking ``fact`` in ``form`` on ``place``'s image."""
    owner = node_path(place.institution_id, place.patient_id, place.study_id, fact.section, fact.level)
    return Record(
        record_id=record_id, institution_id=place.institution_id, patient_id=place.patient_id,
        study_id=place.study_id, section=fact.section, level=fact.level, task=form.task, fact_kind=fact.kind,
        split=place.split, question=qa.question, answer=qa.answer, image=place.image, fact_key=fact.key,
        fact_value=fact.value, owner_level=fact.level, owner_id=owner, form=form.id, shared=fact.shared,
        eval_only=eval_only, options=qa.options, institution_name=place.institution_name,
        study_date=place.study_date, modality=place.modality)
