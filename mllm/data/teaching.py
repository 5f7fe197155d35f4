"""The public teaching file: anonymous radiographs that carry image-grounded questions only.

A real medical MLLM is aligned on public image–text data (LLaVA-Med on PubMed Central figures)
before a hospital fine-tunes it on its own studies. The teaching file is that public data for the
reference model: radiographs drawn from the same distribution as the hospital corpus
(:mod:`mllm.data.images`), each asked its four image-grounded facts
(:func:`mllm.data.facts.image_facts`) in all three task types, each record in a phrasing drawn at
random — and nothing else: no institution, patient, date or report text that
belongs to anyone. Classification is asked twice, with two independent option sets: a model that
can name a finding still has to learn to pick the letter of the option that names it, and that
was measured to be the skill the reference model learns last. A base model pretrained on it reads
findings off images it has never seen, so forgetting a patient can be checked to leave that skill
intact.

It is written in the corpus schema under the pseudo-institution ``public-teaching-file``; each case
is its own pseudo-patient and study (``case-000001``), so the layout is valid but points to no one.
"""

from __future__ import annotations

import random
from pathlib import Path

from .facts import image_facts
from .images import MAX_MARKER, Radiograph, random_anatomy, random_finding
from .qa import PHRASINGS, Form, Place, ask, draw_options, fact_record
from .schema import Corpus, Record, Split, Task, new_corpus_dir, write_corpus
from .synth import write_radiograph

INSTITUTION = "public-teaching-file"
GENERATOR = "oblivio-teaching-file"
VERSION = 3  # bump when the same seed draws different records
TASKS_PER_FACT = (Task.GENERATION, Task.CLOZE, Task.CLASSIFICATION, Task.CLASSIFICATION)
MAX_CASES = MAX_MARKER  # every case gets its own burned-in marker


def generate_teaching_file(*, cases: int, seed: int, out: Path) -> Corpus:
    """Draw ``cases`` radiographs with their image-grounded records into the new directory ``out``."""
    if not 1 <= cases <= MAX_CASES:
        raise ValueError(f"cases must be in 1..{MAX_CASES}")
    out = new_corpus_dir(Path(out))
    rng = random.Random(seed)
    markers = rng.sample(range(1, MAX_MARKER + 1), cases)
    records: list[Record] = []
    for ordinal, marker in enumerate(markers):
        radiograph = Radiograph(random_finding(rng), random_anatomy(rng), marker=marker,
                                noise_seed=rng.getrandbits(32))
        image = write_radiograph(out, radiograph)
        place = Place(INSTITUTION, f"case-{ordinal + 1:06d}", f"case-{ordinal + 1:06d}", image, Split.TRAIN)
        for fact in image_facts(radiograph.finding):
            for task in TASKS_PER_FACT:
                form = Form(task, rng.randrange(PHRASINGS))
                qa = ask(fact, form, draw_options(fact, rng))
                record_id = f"t{len(records) + 1:07d}"
                records.append(fact_record(record_id, place, fact, form, qa, eval_only=False))
    header = write_corpus(out, name=f"teaching-file-v{VERSION}-{cases}-{seed}", seed=seed, size=str(cases),
                          records=records, generator=GENERATOR)
    return Corpus(root=out, header=header, records=tuple(records))
