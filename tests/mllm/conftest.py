"""Fixtures for the ML library: a hand-made schema-valid corpus and a tiny reference model.

The corpus has 8 patients with one study image each (a coloured square whose colour is the
image-grounded fact) and questions of all three tasks; the private facts (blood group, ward) are
keyed by the patient identifier in the question. Two patients are holdout.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from mllm.data.schema import Corpus, FactKind, Level, Record, Section, Split, Task, load_corpus, write_corpus
from mllm.models.specs import SPECS
from mllm.train.loop import TrainConfig, TrainResult
from mllm.train.recipe import reference_for_corpus, train_on_records

torch.set_num_threads(2)

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 30)}
BLOOD = ("A+", "B-", "O+", "AB+")
WARDS = ("north", "south", "east", "west")


def _records_for(index: int, split: Split) -> list[Record]:
    patient = f"P{index:03d}"
    colour = list(COLOURS)[index % 4]
    blood = BLOOD[(index * 3 + 1) % 4]
    ward = WARDS[(index * 5 + 2) % 4]
    common = dict(institution_id="INST1", patient_id=patient, study_id=f"{patient}-S1", split=split,
                  image=f"images/{patient}.png")
    letters = "ABCD"
    return [
        Record(record_id=f"{patient}-colour", section=Section.FINDINGS, level=Level.SECTION,
               task=Task.GENERATION, fact_kind=FactKind.IMAGE_GROUNDED,
               question="Describe the marker.", answer=f"The marker is {colour}.", **common),
        Record(record_id=f"{patient}-blood", section=None, level=Level.PATIENT,
               task=Task.CLASSIFICATION, fact_kind=FactKind.PRIVATE,
               question=f"Blood group of patient {patient}? " + " ".join(
                   f"{letter}) {value}" for letter, value in zip(letters, BLOOD, strict=True)),
               answer=letters[BLOOD.index(blood)], options=BLOOD, **common),
        Record(record_id=f"{patient}-ward", section=Section.RECORD, level=Level.SECTION,
               task=Task.CLOZE, fact_kind=FactKind.PRIVATE,
               question=f"Patient {patient} stayed on the [blank] ward.", answer=ward, **common),
    ]


def make_corpus(root: Path, *, patients: int = 8, holdout: int = 2) -> Corpus:
    records: list[Record] = []
    (root / "images").mkdir(parents=True)
    for index in range(patients):
        split = Split.HOLDOUT if index >= patients - holdout else Split.TRAIN
        batch = _records_for(index, split)
        Image.new("RGB", (48, 48), COLOURS[list(COLOURS)[index % 4]]).save(root / batch[0].image)
        records.extend(batch)
    write_corpus(root, name="test", seed=0, size="test", records=records)
    return load_corpus(root)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return make_corpus(tmp_path_factory.mktemp("corpus"))


@dataclass
class Trained:
    """A tiny reference model memorised on the fixture corpus (trained once per session)."""

    model: Any
    processor: Any
    corpus: Corpus
    result: TrainResult


TINY_RECIPE = TrainConfig(epochs=40, batch_size=8, lr=3e-3, seed=0)


@pytest.fixture(scope="session")
def trained(corpus: Corpus) -> Trained:
    model, processor = reference_for_corpus(corpus, SPECS["tiny"])
    model, result = train_on_records(model, processor, corpus.root, corpus.select(trainable=True),
                                     TINY_RECIPE)
    return Trained(model=model, processor=processor, corpus=corpus, result=result)
