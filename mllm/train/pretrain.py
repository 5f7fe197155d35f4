"""The pretrained reference base: a fresh reference model aligned on the public teaching file.

A hospital fine-tunes a base that already reads images (LLaVA-Med, Qwen2-VL); the reference
model's counterpart is built here, once, from nothing that belongs to a patient:

1. a byte-level BPE tokenizer trained on the text of the teaching file plus the text (never the
   images) of the reserved vocabulary corpus (:mod:`mllm.data.text`), so it covers the generator's
   whole vocabulary — names, dates, report phrases, context labels — of any corpus fine-tuned later;
2. a randomly initialised reference model (:mod:`mllm.models.reference`) trained on the teaching
   file (:mod:`mllm.data.teaching`): image-grounded questions on anonymous radiographs.

The result is an artifact of kind ``pretrained-base``. ``oblivio train --base`` fine-tunes it on a
hospital corpus; trained with records excluded, that run is still a valid retrain oracle, because
the base never saw any corpus record.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mllm.data.prompts import render_prompt
from mllm.data.teaching import generate_teaching_file
from mllm.data.text import TOKENIZER_CORPUS_SEED, TOKENIZER_CORPUS_SIZE, record_texts, vocabulary_texts
from mllm.models.artifact import ArtifactKind, ArtifactMetadata, save_artifact
from mllm.models.reference import build_reference, count_parameters
from mllm.models.specs import SPECS, ReferenceSpec

from .checkpoint import checkpoint_dir_for
from .loop import Progress, TrainConfig
from .recipe import TrainOutcome, train_on_records


@dataclass(frozen=True)
class PretrainJob:
    """One ``oblivio pretrain`` run: ``cases`` teaching-file radiographs, trained with ``config``."""

    out: Path
    spec: ReferenceSpec = SPECS["small"]
    cases: int = 3000
    config: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=1.5))
    checkpoint_every: int = 200
    resume: bool = False

    @property
    def checkpoint_dir(self) -> Path:
        """The teaching file is redrawn identically from the seed, so only training state is kept."""
        return checkpoint_dir_for(self.out)


def run_pretrain_job(job: PretrainJob, callback: Callable[[Progress], None] | None = None) -> TrainOutcome:
    """Generate the teaching file, build tokenizer and reference model, pretrain, save the artifact."""
    if job.out.exists():
        raise FileExistsError(f"{job.out} already exists; choose a new output directory")
    with tempfile.TemporaryDirectory(prefix="oblivio-pretrain-") as tmp:
        scratch = Path(tmp)
        teaching = generate_teaching_file(cases=job.cases, seed=job.config.seed, out=scratch / "teaching")
        model, processor = build_reference([*record_texts(teaching.records), *vocabulary_texts()], job.spec)
        parameters = count_parameters(model)
        model, result = train_on_records(model, processor, teaching.root, teaching.records, job.config,
                                         prompts=[render_prompt(r, 0) for r in teaching.records],
                                         callback=callback, checkpoint_dir=job.checkpoint_dir,
                                         checkpoint_every=job.checkpoint_every, resume=job.resume)
    metadata = ArtifactMetadata(
        kind=ArtifactKind.PRETRAINED_BASE, seed=job.config.seed, parameters=parameters,
        reference_spec=asdict(job.spec), corpus_sha256=teaching.header.records_sha256,
        training={"config": asdict(job.config), "teaching_cases": job.cases, "records": len(teaching.records),
                  "steps": result.steps, "tokenizer_corpus": {"size": TOKENIZER_CORPUS_SIZE,
                                                              "seed": TOKENIZER_CORPUS_SEED},
                  "probe_loss": [result.probe_loss_before, result.probe_loss_after]})
    digest = save_artifact(model, processor, job.out, metadata)
    shutil.rmtree(job.checkpoint_dir, ignore_errors=True)
    return TrainOutcome(digest=digest, records=len(teaching.records), parameters=parameters, result=result)
