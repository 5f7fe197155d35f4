"""The synthetic hospital: institutions → patients → studies → sections, as a corpus on disk.

Every study has one procedurally drawn radiograph (:mod:`mllm.data.images`) and 13 facts asked on
it (:func:`mllm.data.facts.study_facts`): institution (1), patient (2), study (3) and one per
section (7). Each fact is asked in six forms (generation, cloze, multiple choice; two phrasings
each): three are trained and three held out as ``eval_only`` (:func:`mllm.data.qa.form_plan`), the
rotation following the fact's owner (institution, patient or study ordinal within its split) so
that a shared fact is held out in the same forms on every image of its owner. Every section node
thus has 3 trainable records of its own fact.

A corpus has train patients and, per institution, never-trained **holdout** patients drawn from
the same distribution and asked the same way: they share no patient, study or image with the train
split. Names, dates of birth, study dates and lab results are unique in the corpus, and
multiple-choice decoys are drawn outside every value of the corpus (:class:`mllm.data.facts.Decoys`).
Record counts depend only on the size, never on the seed; everything else is drawn from
``random.Random(seed)``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from . import vocab
from .entities import Hierarchy, InstitutionInfo, PatientInfo, StudyInfo, write_hierarchy
from .facts import (
    FIRST_STUDY_DATE,
    LAST_STUDY_DATE,
    Decoys,
    StudyContent,
    random_birth_date,
    random_date,
    random_lab_value,
    random_name,
    study_facts,
)
from .images import MAX_MARKER, Radiograph, draw, encode_png, random_anatomy, random_finding
from .qa import Place, ask, draw_options, fact_record, form_plan
from .schema import IMAGES_DIR, Corpus, Level, Record, Split, new_corpus_dir, write_corpus

MAX_PATIENTS = 500
# Multiple-choice questions on the institution offer three institutions the corpus does not have.
MAX_INSTITUTIONS = len(vocab.INSTITUTIONS) - 3


@dataclass(frozen=True)
class SizeSpec:
    """How big a corpus is. Study counts cycle through ``studies_per_patient`` within an institution."""

    name: str
    institutions: int
    train_patients: int  # per institution
    holdout_patients: int  # per institution
    studies_per_patient: tuple[int, ...]

    def __post_init__(self) -> None:
        if not 1 <= self.institutions <= MAX_INSTITUTIONS:
            raise ValueError(f"institutions must be in 1..{MAX_INSTITUTIONS}")
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
    # `make demo`'s hospital: small enough to train the reference model in a minute or two on 2 cores
    SizeSpec("mini", institutions=2, train_patients=2, holdout_patients=1, studies_per_patient=(2, 1)),
    SizeSpec("demo", institutions=4, train_patients=5, holdout_patients=2, studies_per_patient=(1, 2, 3)),
    # About as many trained QA pairs as MedForget (3,840): 92 train studies x 39 trained forms.
    SizeSpec("medforget", institutions=4, train_patients=10, holdout_patients=3,
             studies_per_patient=(1, 2, 3, 4)),
    # The 50-request pipeline benchmark: 56 train patients, 50 forgotten one by one, one per
    # institution kept out of the requests to measure the retained utility.
    SizeSpec("sequential", institutions=4, train_patients=14, holdout_patients=2, studies_per_patient=(1, 2)),
)}


def resolve_size(size: str | SizeSpec) -> SizeSpec:
    if isinstance(size, SizeSpec):
        return size
    if size not in SIZES:
        raise ValueError(f"unknown corpus size {size!r}; choose one of: {', '.join(SIZES)}")
    return SIZES[size]


T = TypeVar("T")


def _unique(seen: set[T], draw_value: Callable[[], T], attempts: int = 10_000) -> T:
    """Draw values until one is not in ``seen``; remember and return it."""
    for _ in range(attempts):
        if (value := draw_value()) not in seen:
            seen.add(value)
            return value
    raise ValueError("the corpus is too large for unique identifying values")


@dataclass(frozen=True)
class _Study:
    """A planned study: its place, its hierarchy entry (image not drawn yet) and what its records say."""

    institution_id: str
    institution_ordinal: int
    patient_ordinal: int
    info: StudyInfo
    content: StudyContent


class _Plan:
    """Draws the hierarchy from one ``random.Random``, keeping identifying values unique in the corpus."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.patients: list[PatientInfo] = []
        self.studies: list[_Study] = []
        self.used: dict[str, set] = {key: set() for key in (
            "patient.name", "patient.birth_date", "study.date", "section.lab", "mrn", "uid", "marker")}

    def unique(self, key: str, draw_value: Callable[[], T]) -> T:
        return _unique(self.used[key], draw_value)

    def add_patient(self, institution: InstitutionInfo, institution_ordinal: int, split: Split,
                    n_studies: int) -> None:
        rng = self.rng
        ordinal = sum(p.split is split for p in self.patients)  # the patient's ordinal within its split
        sex = rng.choice(("female", "male"))
        name = self.unique("patient.name", lambda: random_name(rng, sex))
        birth = self.unique("patient.birth_date", lambda: random_birth_date(rng))
        mrn = self.unique("mrn", lambda: str(rng.randrange(10_000_000, 100_000_000)))
        self.patients.append(PatientInfo(mrn, institution.institution_id, name, sex, birth, split))
        anatomy = random_anatomy(rng)
        adult = dt.date(int(birth[:4]) + 18, 12, 31)
        dates = sorted(self.unique("study.date", lambda: random_date(rng, max(FIRST_STUDY_DATE, adult),
                                                                     LAST_STUDY_DATE))
                       for _ in range(n_studies))
        for study_date in dates:
            examination, view = rng.choice(vocab.EXAMINATIONS)
            lab = rng.choice(vocab.LAB_TESTS)
            lab_value = self.unique("section.lab", lambda lab=lab: random_lab_value(rng, lab))
            radiograph = Radiograph(random_finding(rng), anatomy,
                                    marker=self.unique("marker", lambda: rng.randint(1, MAX_MARKER)),
                                    noise_seed=rng.getrandbits(32))
            info = StudyInfo(study_id=self.unique("uid", lambda: f"2.25.{rng.getrandbits(128)}"),
                             patient_id=mrn, study_date=study_date, modality=rng.choice(vocab.MODALITIES),
                             body_part="CHEST", view=view, image="", radiograph=radiograph, split=split)
            content = StudyContent(
                institution_name=institution.name, patient_name=name, birth_date=birth, study_date=study_date,
                finding=radiograph.finding, examination=examination, indication=rng.choice(vocab.INDICATIONS),
                lab=lab, lab_value=lab_value, medication=rng.choice(vocab.MEDICATIONS),
                history=rng.choice(vocab.HISTORIES))
            self.studies.append(
                _Study(institution.institution_id, institution_ordinal, ordinal, info, content))


def _plan(spec: SizeSpec, rng: random.Random) -> tuple[list[InstitutionInfo], _Plan]:
    plan = _Plan(rng)
    institutions = [InstitutionInfo(code, name, f"https://{code}.hospital.example/fhir/mrn")
                    for code, name in rng.sample(vocab.INSTITUTIONS, spec.institutions)]
    cycle = spec.studies_per_patient
    for institution_ordinal, institution in enumerate(institutions):
        for split, count in ((Split.TRAIN, spec.train_patients), (Split.HOLDOUT, spec.holdout_patients)):
            for i in range(count):
                plan.add_patient(institution, institution_ordinal, split, cycle[i % len(cycle)])
    return institutions, plan


def _rotation(study: _Study, ordinal: int, level: Level, index: int) -> int:
    """Which forms a fact is held out in: follows the fact's owner, offset by the fact's index."""
    owner = {Level.INSTITUTION: study.institution_ordinal, Level.PATIENT: study.patient_ordinal}
    return owner.get(level, ordinal) + index


def _study_records(study: _Study, ordinal: int, first_id: int, decoys: Decoys,
                   rng: random.Random) -> list[Record]:
    """The records asked on one study's image: every fact in every form (see :func:`form_plan`)."""
    info = study.info
    place = Place(study.institution_id, info.patient_id, info.study_id, info.image, info.split,
                  institution_name=study.content.institution_name, study_date=info.study_date,
                  modality=info.modality)
    records: list[Record] = []
    for index, fact in enumerate(study_facts(study.content, decoys)):
        options = draw_options(fact, rng)
        for form, eval_only in form_plan(_rotation(study, ordinal, fact.level, index)):
            records.append(fact_record(f"r{first_id + len(records):06d}", place, fact, form,
                                       ask(fact, form, options), eval_only=eval_only))
    return records


def _records(institutions: list[InstitutionInfo], plan: _Plan, rng: random.Random) -> Iterator[Record]:
    """Every record of the planned corpus, study by study (images as already set in ``plan``)."""
    used = {"institution.name": {i.name for i in institutions},
            **{key: plan.used[key] for key in ("patient.name", "patient.birth_date", "study.date")},
            "section.lab": {s.content.lab_result for s in plan.studies}}
    decoys = Decoys(used, rng)
    count = 0
    ordinals = dict.fromkeys(Split, 0)
    for study in plan.studies:
        ordinal = ordinals[study.info.split]  # within the split: holdout patients are asked the same way
        ordinals[study.info.split] += 1
        records = _study_records(study, ordinal, count + 1, decoys, rng)
        count += len(records)
        yield from records


def write_radiograph(root: Path, radiograph: Radiograph) -> str:
    """Draw ``radiograph`` into ``root/images/<sha256>.png``; return that path relative to ``root``."""
    png = encode_png(draw(radiograph))
    image = f"{IMAGES_DIR}/{hashlib.sha256(png).hexdigest()}.png"
    (root / image).write_bytes(png)
    return image


def generate_corpus(*, size: str | SizeSpec, seed: int, out: Path) -> Corpus:
    """Generate a corpus of ``size`` from ``seed`` into the (new or empty) directory ``out``."""
    from .text import TOKENIZER_CORPUS_SEED

    if seed == TOKENIZER_CORPUS_SEED:
        raise ValueError(f"seed {seed} is reserved for the tokenizer corpus")
    spec = resolve_size(size)
    out = new_corpus_dir(Path(out))
    rng = random.Random(seed)
    institutions, plan = _plan(spec, rng)
    for ordinal, planned in enumerate(plan.studies):
        image = write_radiograph(out, planned.info.radiograph)
        plan.studies[ordinal] = replace(planned, info=replace(planned.info, image=image))
    records = list(_records(institutions, plan, rng))
    header = write_corpus(out, name=f"synth-{spec.name}-{seed}", seed=seed, size=spec.name, records=records)
    hierarchy = Hierarchy(tuple(institutions), tuple(plan.patients), tuple(s.info for s in plan.studies))
    write_hierarchy(out, hierarchy)
    return Corpus(root=out, header=header, records=tuple(records))


def corpus_records(*, size: str | SizeSpec, seed: int) -> list[Record]:
    """The records :func:`generate_corpus` would write, without drawing images (image paths are
    placeholders): the text of a corpus, e.g. for training a tokenizer."""
    rng = random.Random(seed)
    institutions, plan = _plan(resolve_size(size), rng)
    plan.studies = [replace(s, info=replace(s.info, image=f"{IMAGES_DIR}/{i}.png"))
                    for i, s in enumerate(plan.studies)]
    return list(_records(institutions, plan, rng))
