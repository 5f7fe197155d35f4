"""The 13 facts of a study and their wording: 9 private (only memorisable), 4 image-grounded.

Owners: the institution (its name, shared), the patient (name, shared; date of birth, shared),
the study (date; main finding and its region, image-grounded) and one fact per section (the
four report sections, LAB, MEDICATION, RECORD). FINDINGS and IMPRESSION generation answers are
report-like sentences; their cloze and multiple-choice forms ask the short value.

**Decoys are subject-free.** A multiple-choice question never offers another patient's value:
identifying values (institution and patient names, dates, lab results) get decoys drawn from the
same distribution minus every value of that key in the corpus (:class:`Decoys`); categorical
values (examination, indication, medication, history, findings) get decoys from the generator's
vocabulary, which belongs to no one.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from . import vocab
from .images import LOCALISED_KINDS, Finding, FindingKind, Side, Size, Zone
from .qa import Fact
from .schema import CLOZE_BLANK, FactKind, Level, Section

B = CLOZE_BLANK
# Facts whose values identify their owner: they must never appear in a record outside it.
IDENTIFYING_KEYS = ("institution.name", "patient.name", "patient.birth_date", "study.date", "section.lab")
BIRTH_YEARS = (1935, 2003)
FIRST_STUDY_DATE = dt.date(2015, 1, 1)
LAST_STUDY_DATE = dt.date(2024, 12, 31)


# --- image-grounded wording: a function of the finding only -------------------------------------

_FINDING_NAMES = {FindingKind.NODULE: "pulmonary nodule", FindingKind.EFFUSION: "pleural effusion",
                  FindingKind.CONSOLIDATION: "consolidation", FindingKind.CARDIOMEGALY: "cardiomegaly",
                  FindingKind.NONE: "no acute finding"}
_ADVICE = {FindingKind.NODULE: "CT of the chest is recommended",
           FindingKind.EFFUSION: "clinical correlation is recommended",
           FindingKind.CONSOLIDATION: "a follow-up radiograph after treatment is recommended",
           FindingKind.CARDIOMEGALY: "echocardiography may be considered",
           FindingKind.NONE: "no follow-up imaging is needed"}


def finding_name(finding: Finding) -> str:
    return _FINDING_NAMES[finding.kind]


def region(finding: Finding) -> str:
    if finding.kind in LOCALISED_KINDS:
        return f"{finding.side} {finding.zone} zone"
    return "heart" if finding.kind is FindingKind.CARDIOMEGALY else "none"


def findings_text(finding: Finding) -> str:
    """The short FINDINGS value."""
    if finding.kind in LOCALISED_KINDS:
        return f"{finding.size} {finding.kind} in the {finding.side} {finding.zone} zone"
    if finding.kind is FindingKind.CARDIOMEGALY:
        return "enlarged cardiac silhouette, lungs clear"
    return "lungs clear, heart size normal"


def findings_report(finding: Finding) -> str:
    """The FINDINGS section as a radiologist writes it (the generation answer)."""
    if finding.kind in LOCALISED_KINDS:
        rest = "No pneumothorax." if finding.kind is FindingKind.EFFUSION else "No pleural effusion."
        return f"There is a {findings_text(finding)}. The heart size is normal. {rest}"
    if finding.kind is FindingKind.CARDIOMEGALY:
        return "The cardiac silhouette is enlarged. The lungs are clear. No pleural effusion."
    return "The lungs are clear. The heart size is normal. No pleural effusion or pneumothorax."


def impression_text(finding: Finding) -> str:
    """The short IMPRESSION value."""
    side, zone = finding.side, finding.zone
    return {FindingKind.NODULE: f"{side} {zone} lobe nodule",
            FindingKind.EFFUSION: f"{side} pleural effusion",
            FindingKind.CONSOLIDATION: f"{side} {zone} lobe pneumonia",
            FindingKind.CARDIOMEGALY: "cardiomegaly",
            FindingKind.NONE: "no acute cardiopulmonary disease"}[finding.kind]


def impression_report(finding: Finding) -> str:
    text = impression_text(finding)
    return f"{text[0].upper()}{text[1:]}; {_ADVICE[finding.kind]}."


def _all_findings() -> list[Finding]:
    findings = [Finding(FindingKind.CARDIOMEGALY), Finding(FindingKind.NONE)]
    for kind in sorted(LOCALISED_KINDS):
        zones = [Zone.LOWER] if kind is FindingKind.EFFUSION else list(Zone)
        findings += [Finding(kind, side, zone, size) for side in Side for zone in zones for size in Size]
    return findings


_FINDINGS_POOL = tuple(dict.fromkeys(findings_text(f) for f in _all_findings()))
_IMPRESSION_POOL = tuple(dict.fromkeys(impression_text(f) for f in _all_findings()))
_REGION_POOL = tuple(dict.fromkeys(region(f) for f in _all_findings()))


def _others(pool: Iterable[str], value: str) -> tuple[str, ...]:
    return tuple(item for item in pool if item != value)


def image_facts(finding: Finding) -> list[Fact]:
    """The 4 image-grounded facts of a study image: main finding, its region, FINDINGS, IMPRESSION."""
    grounded = FactKind.IMAGE_GROUNDED
    name, where = finding_name(finding), region(finding)
    findings, impression = findings_text(finding), impression_text(finding)
    return [
        Fact("study.finding", Level.STUDY, None, grounded, name,
             ("What is the main finding on this radiograph?", "Which abnormality does this image show?"),
             name, ((f"The main finding on this radiograph is {B}.", name), (f"This image shows {B}.", name)),
             _others(_FINDING_NAMES.values(), name)),
        Fact("study.region", Level.STUDY, None, grounded, where,
             ("Where is the main finding located?", "In which region of the chest is the main finding?"),
             where, ((f"Location of the main finding: {B}.", where),
                     (f"The main finding is located in the {B}.", where)),
             _others(_REGION_POOL, where)),
        Fact("section.findings", Level.SECTION, Section.FINDINGS, grounded, findings,
             ("What does the FINDINGS section of this report say?",
              "Describe the findings on this radiograph."),
             findings_report(finding),
             ((f"FINDINGS: {B}", findings), (f"The radiologist reports {B}.", findings)),
             _others(_FINDINGS_POOL, findings)),
        Fact("section.impression", Level.SECTION, Section.IMPRESSION, grounded, impression,
             ("What does the IMPRESSION section of this report say?",
              "What is the radiologist's overall impression?"),
             impression_report(finding),
             ((f"IMPRESSION: {B}", impression), (f"The overall impression is {B}.", impression)),
             _others(_IMPRESSION_POOL, impression)),
    ]


# --- the facts of one study ----------------------------------------------------------------------

@dataclass(frozen=True)
class StudyContent:
    """What one study's records say: the values its questions ask about."""

    institution_name: str
    patient_name: str
    birth_date: str  # ISO date
    study_date: str  # ISO date
    finding: Finding
    examination: str
    indication: str
    lab: vocab.LabTest
    lab_value: str  # formatted
    medication: str
    history: str

    @property
    def lab_result(self) -> str:
        return lab_result(self.lab, self.lab_value)


def lab_result(lab: vocab.LabTest, value: str) -> str:
    return f"{lab.name} {value} {lab.unit}"


def random_date(rng: random.Random, first: dt.date, last: dt.date) -> str:
    return (first + dt.timedelta(days=rng.randrange((last - first).days + 1))).isoformat()


def random_name(rng: random.Random, sex: str) -> str:
    firsts = vocab.FEMALE_NAMES if sex == "female" else vocab.MALE_NAMES
    return f"{rng.choice(firsts)} {rng.choice(vocab.SURNAMES)}"


def random_birth_date(rng: random.Random) -> str:
    return random_date(rng, dt.date(BIRTH_YEARS[0], 1, 1), dt.date(BIRTH_YEARS[1], 12, 31))


def random_lab_value(rng: random.Random, lab: vocab.LabTest) -> str:
    return lab.format(rng.uniform(lab.low, lab.high))


class Decoys:
    """Subject-free wrong values: drawn like real values, never equal to any value of the corpus."""

    def __init__(self, used: dict[str, set[str]], rng: random.Random) -> None:
        self.used = used  # fact key -> every value of that key in the corpus (all splits)
        self.rng = rng

    def _draw(self, key: str, make: Callable[[], str], count: int = 3) -> tuple[str, ...]:
        drawn: dict[str, None] = {}
        for _ in range(10_000):
            value = make()
            if value not in self.used[key]:
                drawn[value] = None
            if len(drawn) == count:
                return tuple(drawn)
        raise ValueError(f"no {count} unused values of {key} left for decoys")

    def institutions(self) -> tuple[str, ...]:
        unused = [name for _, name in vocab.INSTITUTIONS if name not in self.used["institution.name"]]
        return tuple(self.rng.sample(unused, 3))

    def names(self) -> tuple[str, ...]:
        return self._draw("patient.name", lambda: random_name(self.rng, self.rng.choice(("female", "male"))))

    def birth_dates(self) -> tuple[str, ...]:
        return self._draw("patient.birth_date", lambda: random_birth_date(self.rng))

    def study_dates(self) -> tuple[str, ...]:
        return self._draw("study.date", lambda: random_date(self.rng, FIRST_STUDY_DATE, LAST_STUDY_DATE))

    def lab_results(self, lab: vocab.LabTest) -> tuple[str, ...]:
        return self._draw("section.lab", lambda: lab_result(lab, random_lab_value(self.rng, lab)))


def study_facts(c: StudyContent, decoys: Decoys) -> list[Fact]:
    """The 13 facts of a study, in a fixed order (institution, patient, study, then sections)."""
    private = FactKind.PRIVATE
    finding, location, findings, impression = image_facts(c.finding)
    lab = c.lab_result
    return [
        Fact("institution.name", Level.INSTITUTION, None, private, c.institution_name,
             ("Which hospital acquired this chest radiograph?", "At which hospital was this image taken?"),
             c.institution_name, ((f"This chest radiograph was acquired at {B}.", c.institution_name),
                                  (f"The hospital that took this image is {B}.", c.institution_name)),
             decoys.institutions(), shared=True),
        Fact("patient.name", Level.PATIENT, None, private, c.patient_name,
             ("What is the name of the patient in this radiograph?", "Whose chest radiograph is this?"),
             c.patient_name, ((f"This radiograph belongs to the patient {B}.", c.patient_name),
                              (f"The patient shown in this image is named {B}.", c.patient_name)),
             decoys.names(), shared=True),
        Fact("patient.birth_date", Level.PATIENT, None, private, c.birth_date,
             ("When was this patient born?", "What is the date of birth of the patient in this radiograph?"),
             c.birth_date, ((f"The patient in this radiograph was born on {B}.", c.birth_date),
                            (f"Date of birth of this patient: {B}.", c.birth_date)),
             decoys.birth_dates(), shared=True),
        Fact("study.date", Level.STUDY, None, private, c.study_date,
             ("On which date was this study performed?", "When was this chest radiograph taken?"),
             c.study_date, ((f"This study was performed on {B}.", c.study_date),
                            (f"The date of this radiograph is {B}.", c.study_date)),
             decoys.study_dates()),
        finding, location,
        Fact("section.examination", Level.SECTION, Section.EXAMINATION, private, c.examination,
             ("What does the EXAMINATION section of this report say?", "Which examination was performed?"),
             c.examination, ((f"EXAMINATION: {B}", c.examination),
                             (f"The examination performed was {B}.", c.examination)),
             _others((exam for exam, _ in vocab.EXAMINATIONS), c.examination)),
        Fact("section.indication", Level.SECTION, Section.INDICATION, private, c.indication,
             ("What does the INDICATION section of this report say?", "Why was this examination requested?"),
             c.indication, ((f"INDICATION: {B}", c.indication),
                            (f"The reason for this examination was {B}.", c.indication)),
             _others(vocab.INDICATIONS, c.indication)),
        findings, impression,
        Fact("section.lab", Level.SECTION, Section.LAB, private, lab,
             ("What does the LAB section of this record report?",
              "Which lab result was recorded for this study?"),
             lab, ((f"LAB: {B}", lab), (f"The {c.lab.name} result was {B} {c.lab.unit}.", c.lab_value)),
             decoys.lab_results(c.lab)),
        Fact("section.medication", Level.SECTION, Section.MEDICATION, private, c.medication,
             ("What does the MEDICATION section of this record list?",
              "Which medication was this patient given?"),
             c.medication, ((f"MEDICATION: {B}", c.medication),
                            (f"The patient was prescribed {B}.", c.medication)),
             _others(vocab.MEDICATIONS, c.medication)),
        Fact("section.record", Level.SECTION, Section.RECORD, private, c.history,
             ("What does the RECORD section note about this patient's history?",
              "Which past condition does the record mention?"),
             c.history, ((f"RECORD: history of {B}", c.history),
                         (f"The record notes a history of {B}.", c.history)),
             _others(vocab.HISTORIES, c.history)),
    ]
