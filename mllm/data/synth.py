"""The synthetic hospital: institutions → patients → studies → sections, as a corpus on disk.

Every study has one procedurally drawn radiograph (:mod:`mllm.data.images`) and 13 records asked on
it (:func:`mllm.data.qa.study_facts`): institution (1), patient (2), study (3) and one per section
(7). Each fact is asked in one task type, rotating with the study's position so that every level
appears in every task type. Five private facts per study (institution, patient name, study date,
INDICATION, MEDICATION) also get a reworded, evaluation-only paraphrase record.

A corpus has train patients and, per institution, never-trained **holdout** patients drawn from
the same distribution: they share no patient, study or image with the train split. Record counts
depend only on the size, never on the seed; everything else is drawn from ``random.Random(seed)``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from . import vocab
from .entities import Hierarchy, InstitutionInfo, PatientInfo, StudyInfo, write_hierarchy
from .images import MAX_MARKER, Radiograph, draw, encode_png, random_anatomy, random_finding
from .qa import QA, TASKS, AnswerPools, Fact, StudyContent, ask, reword, study_facts
from .schema import IMAGES_DIR, Corpus, Record, Split, Task, new_corpus_dir, write_corpus

MAX_PATIENTS = 500
FIRST_STUDY_DATE = dt.date(2015, 1, 1)
LAST_STUDY_DATE = dt.date(2024, 12, 31)


@dataclass(frozen=True)
class SizeSpec:
    """How big a corpus is. Study counts cycle through ``studies_per_patient`` within an institution."""

    name: str
    institutions: int
    train_patients: int  # per institution
    holdout_patients: int  # per institution
    studies_per_patient: tuple[int, ...]

    def __post_init__(self) -> None:
        if not 1 <= self.institutions <= len(vocab.INSTITUTIONS):
            raise ValueError(f"institutions must be in 1..{len(vocab.INSTITUTIONS)}")
        if self.train_patients < 1 or self.holdout_patients < 1 or min(self.studies_per_patient) < 1:
            raise ValueError("a corpus needs train and holdout patients with at least one study each")
        if self.institutions * (self.train_patients + self.holdout_patients) > MAX_PATIENTS:
            raise ValueError(f"at most {MAX_PATIENTS} patients (unique names run out)")

    def _studies(self, patients: int) -> int:
        cycle = self.studies_per_patient
        return sum(cycle[i % len(cycle)] for i in range(patients)) * self.institutions

    @property
    def train_studies(self) -> int:
        return self._studies(self.train_patients)

    @property
    def holdout_studies(self) -> int:
        return self._studies(self.holdout_patients)


SIZES: dict[str, SizeSpec] = {spec.name: spec for spec in (
    SizeSpec("tiny", institutions=4, train_patients=2, holdout_patients=1, studies_per_patient=(2, 1)),
    SizeSpec("demo", institutions=4, train_patients=5, holdout_patients=2, studies_per_patient=(1, 2, 3)),
    SizeSpec("medforget", institutions=4, train_patients=18, holdout_patients=4,
             studies_per_patient=(1, 2, 3, 4)),
)}


def resolve_size(size: str | SizeSpec) -> SizeSpec:
    if isinstance(size, SizeSpec):
        return size
    if size not in SIZES:
        raise ValueError(f"unknown corpus size {size!r}; choose one of: {', '.join(SIZES)}")
    return SIZES[size]


T = TypeVar("T")


def _unique(seen: set[T], draw_value: Callable[[], T]) -> T:
    """Draw values until one is not in ``seen``; remember and return it."""
    while (value := draw_value()) in seen:
        pass
    seen.add(value)
    return value


@dataclass(frozen=True)
class _Study:
    """A planned study: its place, its hierarchy entry (image not drawn yet) and what its records say."""

    institution_id: str
    info: StudyInfo
    content: StudyContent


class _Plan:
    """Draws the hierarchy from one ``random.Random``, keeping identifiers unique in the corpus."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.patients: list[PatientInfo] = []
        self.studies: list[_Study] = []
        self._names: set[str] = set()
        self._mrns: set[str] = set()
        self._uids: set[str] = set()
        self._markers: set[int] = set()

    def add_patient(self, institution: InstitutionInfo, split: Split, n_studies: int) -> None:
        rng = self.rng
        sex = rng.choice(("female", "male"))
        firsts = vocab.FEMALE_NAMES if sex == "female" else vocab.MALE_NAMES
        name = _unique(self._names, lambda: f"{rng.choice(firsts)} {rng.choice(vocab.SURNAMES)}")
        birth = dt.date(rng.randint(1935, 2003), 1, 1) + dt.timedelta(days=rng.randrange(365))
        mrn = _unique(self._mrns, lambda: str(rng.randrange(10_000_000, 100_000_000)))
        self.patients.append(
            PatientInfo(mrn, institution.institution_id, name, sex, birth.isoformat(), split))
        anatomy, history = random_anatomy(rng), rng.choice(vocab.HISTORIES)
        first = max(FIRST_STUDY_DATE, dt.date(birth.year + 18, birth.month, min(birth.day, 28)))
        for day in sorted(rng.sample(range((LAST_STUDY_DATE - first).days + 1), n_studies)):
            study_date = first + dt.timedelta(days=day)
            examination, view = rng.choice(vocab.EXAMINATIONS)
            lab = rng.choice(vocab.LAB_TESTS)
            radiograph = Radiograph(random_finding(rng), anatomy,
                                    marker=_unique(self._markers, lambda: rng.randint(1, MAX_MARKER)),
                                    noise_seed=rng.getrandbits(32))
            info = StudyInfo(study_id=_unique(self._uids, lambda: f"2.25.{rng.getrandbits(128)}"),
                             patient_id=mrn, study_date=study_date.isoformat(),
                             modality=rng.choice(vocab.MODALITIES), body_part="CHEST", view=view,
                             image="", radiograph=radiograph, split=split)
            content = StudyContent(
                institution_name=institution.name, patient_name=name, birth_year=birth.year,
                study_date=study_date, finding=radiograph.finding, examination=examination,
                indication=rng.choice(vocab.INDICATIONS), lab=lab,
                lab_value=lab.format(rng.uniform(lab.low, lab.high)),
                medication=rng.choice(vocab.MEDICATIONS), history=history)
            self.studies.append(_Study(institution.institution_id, info, content))


def _plan(spec: SizeSpec, rng: random.Random) -> tuple[list[InstitutionInfo], _Plan]:
    plan = _Plan(rng)
    institutions = [InstitutionInfo(code, name, f"https://{code}.hospital.example/fhir/mrn")
                    for code, name in rng.sample(vocab.INSTITUTIONS, spec.institutions)]
    cycle = spec.studies_per_patient
    for institution in institutions:
        for split, count in ((Split.TRAIN, spec.train_patients), (Split.HOLDOUT, spec.holdout_patients)):
            for i in range(count):
                plan.add_patient(institution, split, cycle[i % len(cycle)])
    return institutions, plan


def _study_records(study: _Study, ordinal: int, first_id: int, pools: AnswerPools,
                   rng: random.Random) -> list[Record]:
    """The records asked on one study's image; the fact at ``index`` is asked as TASKS[index + ordinal]."""
    records: list[Record] = []

    def add(fact: Fact, task: Task, qa: QA, paraphrase_of: str | None = None) -> str:
        record_id = f"r{first_id + len(records):06d}"
        info = study.info
        records.append(Record(
            record_id=record_id, institution_id=study.institution_id, patient_id=info.patient_id,
            study_id=info.study_id, section=fact.section, level=fact.level, task=task, fact_kind=fact.kind,
            split=info.split, question=qa.question, answer=qa.answer, image=info.image,
            paraphrase_of=paraphrase_of, options=qa.options))
        return record_id

    for index, fact in enumerate(study_facts(study.content, pools)):
        task = TASKS[(index + ordinal) % len(TASKS)]
        qa = ask(fact, task, rng)
        original = add(fact, task, qa)
        if fact.paraphrase is not None:
            add(fact, task, reword(fact, task, qa), paraphrase_of=original)
    return records


def write_radiograph(root: Path, radiograph: Radiograph) -> str:
    """Draw ``radiograph`` into ``root/images/<sha256>.png``; return that path relative to ``root``."""
    png = encode_png(draw(radiograph))
    image = f"{IMAGES_DIR}/{hashlib.sha256(png).hexdigest()}.png"
    (root / image).write_bytes(png)
    return image


def generate_corpus(*, size: str | SizeSpec, seed: int, out: Path) -> Corpus:
    """Generate a corpus of ``size`` from ``seed`` into the (new or empty) directory ``out``."""
    spec = resolve_size(size)
    out = new_corpus_dir(Path(out))
    rng = random.Random(seed)
    institutions, plan = _plan(spec, rng)
    pools = {split: AnswerPools.of(s.content for s in plan.studies if s.info.split is split)
             for split in Split}
    records: list[Record] = []
    for ordinal, planned in enumerate(plan.studies):
        image = write_radiograph(out, planned.info.radiograph)
        study = replace(planned, info=replace(planned.info, image=image))
        plan.studies[ordinal] = study
        records += _study_records(study, ordinal, len(records) + 1, pools[study.info.split], rng)
    header = write_corpus(out, name=f"synth-{spec.name}-{seed}", seed=seed, size=spec.name, records=records)
    hierarchy = Hierarchy(tuple(institutions), tuple(plan.patients), tuple(s.info for s in plan.studies))
    write_hierarchy(out, hierarchy)
    return Corpus(root=out, header=header, records=tuple(records))
