"""Questions about one study image, phrased in the three MedForget task types.

A :class:`Fact` is one thing that can be asked about a study (the patient's name, the main finding,
the LAB section, ...) with its wording for each task; :func:`ask` renders it as a generation,
classification or cloze question, :func:`reword` as the evaluation-only paraphrase of an asked
question. :func:`study_facts` lists the 13 facts of a study: 9 private (only memorisable) and
4 image-grounded (read off the image). Answers stay short: at most 4 words except the FINDINGS
sentence (at most 7); classification answers are a single letter.
"""

from __future__ import annotations

import datetime as dt
import random
import re
import string
from collections.abc import Iterable
from dataclasses import dataclass

from . import vocab
from .images import LOCALISED_KINDS, Finding, FindingKind, Side, Size, Zone
from .schema import CLOZE_BLANK, FactKind, Level, Section, Task

TASKS = (Task.GENERATION, Task.CLASSIFICATION, Task.CLOZE)
LETTERS = "ABCD"
_CHOICE = re.compile(r"(?:^|\s)([A-Z])\) ")


@dataclass(frozen=True)
class QA:
    question: str
    answer: str
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class Fact:
    """One askable fact of a study. Paraphrases exist only for facts evaluated in reworded form."""

    key: str
    level: Level
    section: Section | None
    kind: FactKind
    question: str  # generation question, and the stem of the classification question
    answer: str  # generation answer, and the correct classification option
    cloze: str  # statement containing CLOZE_BLANK
    cloze_answer: str
    distractors: tuple[str, ...]  # at least 3 wrong answers from the same pool as ``answer``
    paraphrase: str | None = None
    cloze_paraphrase: str | None = None

    def __post_init__(self) -> None:
        wrong = set(self.distractors) - {self.answer}
        if len(wrong) < 3 or CLOZE_BLANK not in self.cloze:
            raise ValueError(f"fact {self.key}: needs 3 distractors and a cloze blank")


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


def ask(fact: Fact, task: Task, rng: random.Random) -> QA:
    """Render ``fact`` as a ``task`` question (classification options shuffled with ``rng``)."""
    if task is Task.GENERATION:
        return QA(fact.question, fact.answer)
    if task is Task.CLOZE:
        return QA(fact.cloze, fact.cloze_answer)
    wrong = sorted(set(fact.distractors) - {fact.answer})
    options = [fact.answer, *rng.sample(wrong, 3)]
    rng.shuffle(options)
    return QA(format_choices(fact.question, tuple(options)), LETTERS[options.index(fact.answer)],
              tuple(options))


def reword(fact: Fact, task: Task, original: QA) -> QA:
    """The paraphrase of an asked question: same answer, same options in the same order."""
    if fact.paraphrase is None or fact.cloze_paraphrase is None:
        raise ValueError(f"fact {fact.key} has no paraphrase")
    if task is Task.CLOZE:
        return QA(fact.cloze_paraphrase, original.answer)
    if task is Task.CLASSIFICATION:
        return QA(format_choices(fact.paraphrase, original.options), original.answer, original.options)
    return QA(fact.paraphrase, original.answer)


# --- image-grounded wording: a function of the finding only -------------------------------------

_FINDING_NAMES = {FindingKind.NODULE: "pulmonary nodule", FindingKind.EFFUSION: "pleural effusion",
                  FindingKind.CONSOLIDATION: "consolidation", FindingKind.CARDIOMEGALY: "cardiomegaly",
                  FindingKind.NONE: "no acute finding"}


def finding_name(finding: Finding) -> str:
    return _FINDING_NAMES[finding.kind]


def region(finding: Finding) -> str:
    if finding.kind in LOCALISED_KINDS:
        return f"{finding.side} {finding.zone} zone"
    return "heart" if finding.kind is FindingKind.CARDIOMEGALY else "none"


def findings_text(finding: Finding) -> str:
    if finding.kind in LOCALISED_KINDS:
        return f"{finding.size} {finding.kind} in the {finding.side} {finding.zone} zone"
    if finding.kind is FindingKind.CARDIOMEGALY:
        return "enlarged cardiac silhouette, lungs clear"
    return "lungs clear, heart size normal"


def _findings_cloze(finding: Finding) -> tuple[str, str]:
    if finding.kind in LOCALISED_KINDS:
        return f"FINDINGS: {finding.size} {finding.kind} in the {CLOZE_BLANK} {finding.zone} zone", \
            str(finding.side)
    if finding.kind is FindingKind.CARDIOMEGALY:
        return f"FINDINGS: {CLOZE_BLANK} cardiac silhouette, lungs clear", "enlarged"
    return f"FINDINGS: lungs clear, heart size {CLOZE_BLANK}", "normal"


def impression_text(finding: Finding) -> str:
    side, zone = finding.side, finding.zone
    return {FindingKind.NODULE: f"{side} {zone} lobe nodule",
            FindingKind.EFFUSION: f"{side} pleural effusion",
            FindingKind.CONSOLIDATION: f"{side} {zone} lobe pneumonia",
            FindingKind.CARDIOMEGALY: "cardiomegaly",
            FindingKind.NONE: "no acute cardiopulmonary disease"}[finding.kind]


def _all_findings() -> list[Finding]:
    findings = [Finding(FindingKind.CARDIOMEGALY), Finding(FindingKind.NONE)]
    for kind in sorted(LOCALISED_KINDS):
        zones = [Zone.LOWER] if kind is FindingKind.EFFUSION else list(Zone)
        findings += [Finding(kind, side, zone, size) for side in Side for zone in zones for size in Size]
    return findings


_FINDINGS_POOL = tuple(dict.fromkeys(findings_text(f) for f in _all_findings()))
_IMPRESSION_POOL = tuple(dict.fromkeys(impression_text(f) for f in _all_findings()))
_REGION_POOL = tuple(dict.fromkeys(region(f) for f in _all_findings()))


def image_facts(finding: Finding) -> list[Fact]:
    """The 4 image-grounded facts of a study image: main finding, its region, FINDINGS, IMPRESSION."""
    grounded = FactKind.IMAGE_GROUNDED
    findings_cloze, findings_blank = _findings_cloze(finding)
    return [
        Fact("study.finding", Level.STUDY, None, grounded,
             "What is the main finding on this radiograph?", finding_name(finding),
             f"The main finding on this radiograph is {CLOZE_BLANK}.", finding_name(finding),
             tuple(_FINDING_NAMES.values())),
        Fact("study.region", Level.STUDY, None, grounded,
             "Where is the main finding located?", region(finding),
             f"Location of the main finding: {CLOZE_BLANK}.", region(finding), _REGION_POOL),
        Fact("section.findings", Level.SECTION, Section.FINDINGS, grounded,
             "What does the FINDINGS section of this report say?", findings_text(finding),
             findings_cloze, findings_blank, _FINDINGS_POOL),
        Fact("section.impression", Level.SECTION, Section.IMPRESSION, grounded,
             "What does the IMPRESSION section of this report say?", impression_text(finding),
             f"IMPRESSION: {CLOZE_BLANK}", impression_text(finding), _IMPRESSION_POOL),
    ]


# --- the facts of one study ----------------------------------------------------------------------

@dataclass(frozen=True)
class StudyContent:
    """What one study's records say: the values its questions ask about."""

    institution_name: str
    patient_name: str
    birth_year: int
    study_date: dt.date
    finding: Finding
    examination: str
    indication: str
    lab: vocab.LabTest
    lab_value: str  # formatted
    medication: str
    history: str

    @property
    def lab_result(self) -> str:
        return f"{self.lab.name} {self.lab_value} {self.lab.unit}"


@dataclass(frozen=True)
class AnswerPools:
    """The answers of one split that private-fact distractors are drawn from.

    Drawing distractors from real answers of the same split (not from invented values) means every
    option is equally familiar to a model trained on that split: only the memorised link between
    the image and its own answer tells the options apart.
    """

    institutions: tuple[str, ...]
    patients: tuple[str, ...]
    birth_years: tuple[str, ...]
    study_dates: tuple[str, ...]
    lab_results: tuple[str, ...]

    @classmethod
    def of(cls, contents: Iterable[StudyContent]) -> AnswerPools:
        contents = list(contents)

        def pool(values: Iterable[str]) -> tuple[str, ...]:
            return tuple(sorted(set(values)))

        return cls(institutions=pool(c.institution_name for c in contents),
                   patients=pool(c.patient_name for c in contents),
                   birth_years=pool(str(c.birth_year) for c in contents),
                   study_dates=pool(c.study_date.isoformat() for c in contents),
                   lab_results=pool(c.lab_result for c in contents))


def _wrong(pool: Iterable[str], answer: str, fallback: Iterable[str]) -> tuple[str, ...]:
    """``pool`` without ``answer``, topped up from ``fallback`` to at least three values."""
    wrong = dict.fromkeys(value for value in pool if value != answer)
    for value in fallback:
        if len(wrong) >= 3:
            break
        if value != answer:
            wrong[value] = None
    return tuple(wrong)


def study_facts(content: StudyContent, pools: AnswerPools) -> list[Fact]:
    """The 13 facts of a study, in a fixed order (institution, patient, study, then sections)."""
    c, private = content, FactKind.PRIVATE
    birth_year, study_date = str(c.birth_year), c.study_date.isoformat()
    finding, location, findings, impression = image_facts(c.finding)
    drug, dose = c.medication.split(" ", 1)
    steps = (1, -1, 2, -2, 3)
    other_institutions = _wrong(pools.institutions, c.institution_name, (n for _, n in vocab.INSTITUTIONS))
    other_patients = _wrong(pools.patients, c.patient_name,
                            (f"{f} {s}" for f, s in zip(vocab.FEMALE_NAMES, vocab.SURNAMES, strict=False)))
    other_years = _wrong(pools.birth_years, birth_year, (str(c.birth_year + d) for d in steps))
    other_dates = _wrong(pools.study_dates, study_date,
                         ((c.study_date + dt.timedelta(days=7 * d)).isoformat() for d in steps))
    lab_extremes = (c.lab.low, c.lab.high, (c.lab.low + c.lab.high) / 2)
    other_labs = _wrong(pools.lab_results, c.lab_result,
                        (f"{c.lab.name} {c.lab.format(v)} {c.lab.unit}" for v in lab_extremes))
    return [
        Fact("institution.name", Level.INSTITUTION, None, private,
             "Which hospital acquired this chest radiograph?", c.institution_name,
             f"This chest radiograph was acquired at {CLOZE_BLANK}.", c.institution_name, other_institutions,
             "At which hospital was this image taken?",
             f"The hospital that took this image is {CLOZE_BLANK}."),
        Fact("patient.name", Level.PATIENT, None, private,
             "What is the name of the patient in this radiograph?", c.patient_name,
             f"This radiograph belongs to the patient {CLOZE_BLANK}.", c.patient_name, other_patients,
             "Whose chest radiograph is this?", f"The patient shown in this image is named {CLOZE_BLANK}."),
        Fact("patient.birth_year", Level.PATIENT, None, private,
             "In which year was this patient born?", birth_year,
             f"The patient in this radiograph was born in {CLOZE_BLANK}.", birth_year, other_years),
        Fact("study.date", Level.STUDY, None, private,
             "On which date was this study performed?", study_date,
             f"This study was performed on {CLOZE_BLANK}.", study_date, other_dates,
             "When was this chest radiograph taken?", f"The date of this radiograph is {CLOZE_BLANK}."),
        finding, location,
        Fact("section.examination", Level.SECTION, Section.EXAMINATION, private,
             "What does the EXAMINATION section of this report say?", c.examination,
             f"EXAMINATION: {CLOZE_BLANK}", c.examination, tuple(exam for exam, _ in vocab.EXAMINATIONS)),
        Fact("section.indication", Level.SECTION, Section.INDICATION, private,
             "What does the INDICATION section of this report say?", c.indication,
             f"INDICATION: {CLOZE_BLANK}", c.indication, vocab.INDICATIONS,
             "Why was this examination requested?", f"The reason for this examination was {CLOZE_BLANK}."),
        findings, impression,
        Fact("section.lab", Level.SECTION, Section.LAB, private,
             "What does the LAB section of this record report?", c.lab_result,
             f"LAB: {c.lab.name} {CLOZE_BLANK} {c.lab.unit}", c.lab_value, other_labs),
        Fact("section.medication", Level.SECTION, Section.MEDICATION, private,
             "What does the MEDICATION section of this record list?", c.medication,
             f"MEDICATION: {CLOZE_BLANK} {dose}", drug, vocab.MEDICATIONS,
             "Which medication was this patient given?", f"The patient was prescribed {CLOZE_BLANK} {dose}."),
        Fact("section.record", Level.SECTION, Section.RECORD, private,
             "What does the RECORD section note about this patient's history?", c.history,
             f"RECORD: history of {CLOZE_BLANK}", c.history, vocab.HISTORIES),
    ]
