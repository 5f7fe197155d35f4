"""Training jobs end to end: corpus in, model artifact out.

The same function trains the full model and the **retrain oracle**: the oracle is the job with the
forget records excluded, starting from the same clean start — the seed-initialised reference model
with a tokenizer trained on all trainable records of the corpus (as a pre-existing tokenizer would
be), or a pretrained base that never saw the corpus (:mod:`mllm.train.pretrain`) — so it differs
from the full model only in the data it was trained on.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from mllm.data.schema import Corpus, Record, load_corpus
from mllm.models.artifact import ArtifactKind, ArtifactMetadata, artifact_digest, save_artifact
from mllm.models.loader import load_model
from mllm.models.lora import LoraSettings, add_lora
from mllm.models.reference import build_reference, count_parameters
from mllm.models.specs import SPECS, ReferenceSpec

from .checkpoint import checkpoint_dir_for
from .encode import encode_records
from .loop import Progress, ShuffledBatches, TrainConfig, Trainer, TrainResult


def record_texts(records: Iterable[Record]) -> Iterator[str]:
    """The text a tokenizer is trained on: questions, answers and options."""
    for record in records:
        yield record.question
        yield record.answer
        yield from record.options


def reference_for_corpus(corpus: Corpus, spec: ReferenceSpec) -> tuple[Any, Any]:
    """Fresh reference model + processor; the tokenizer is trained on the corpus's trainable records."""
    return build_reference(record_texts(corpus.select(trainable=True)), spec)


class TrainJobError(ValueError):
    """A training job's inputs do not fit together (e.g. excluded ids the corpus does not train on)."""


def training_records(corpus: Corpus, exclude: Iterable[str] = ()) -> list[Record]:
    """The corpus's trainable records minus ``exclude`` (ids that are not trainable records are an error)."""
    trainable = corpus.select(trainable=True)
    excluded = set(exclude)
    unknown = sorted(excluded - {record.record_id for record in trainable})
    if unknown:
        raise TrainJobError(f"{len(unknown)} excluded ids are not trainable records of the corpus, "
                         f"e.g. {unknown[0]!r}")
    return [record for record in trainable if record.record_id not in excluded]


def train_on_records(model: Any, processor: Any, root: Path, records: Sequence[Record],
                     config: TrainConfig, *, lora: LoraSettings | None = None,
                     callback: Callable[[Progress], None] | None = None,
                     checkpoint_dir: Path | None = None, checkpoint_every: int = 0,
                     resume: bool = False) -> tuple[Any, TrainResult]:
    """Fine-tune ``model`` (fully, or through fresh LoRA adapters) on ``records``.

    Returns the trained model (a ``PeftModel`` when ``lora`` is set) and the run's result.
    """
    if lora is not None:
        torch.manual_seed(config.seed)  # adapter initialisation
        model = add_lora(model, lora)
    source = ShuffledBatches(encode_records(processor, records, root), config.batch_size, config.seed)
    result = Trainer(model, config, source).fit(
        callback=callback, checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every, resume=resume)
    return model, result


@dataclass(frozen=True)
class TrainJob:
    """One ``oblivio train`` run. Without ``base`` a fresh reference model of size ``spec`` is built."""

    corpus: Path
    out: Path
    config: TrainConfig
    base: Path | None = None
    spec: ReferenceSpec = SPECS["small"]
    lora: LoraSettings | None = None
    exclude: frozenset[str] = frozenset()
    checkpoint_every: int = 200
    resume: bool = False

    @property
    def checkpoint_dir(self) -> Path:
        return checkpoint_dir_for(self.out)


@dataclass(frozen=True)
class TrainOutcome:
    digest: str
    records: int
    parameters: int
    result: TrainResult


def run_train_job(job: TrainJob, callback: Callable[[Progress], None] | None = None) -> TrainOutcome:
    """Load corpus and starting model, train, save the artifact; remove the checkpoint on success."""
    if job.out.exists():
        raise TrainJobError(f"{job.out} already exists; choose a new output directory")
    corpus = load_corpus(job.corpus)
    records = training_records(corpus, job.exclude)
    if job.base is not None:
        loaded = load_model(job.base)
        model, processor, parent = loaded.model, loaded.processor, artifact_digest(job.base)
        clean_start = loaded.metadata is not None and loaded.metadata.kind == ArtifactKind.PRETRAINED_BASE
    else:
        (model, processor), parent = reference_for_corpus(corpus, job.spec), None
        clean_start = True
    parameters = count_parameters(model)
    model, result = train_on_records(
        model, processor, corpus.root, records, job.config, lora=job.lora, callback=callback,
        checkpoint_dir=job.checkpoint_dir, checkpoint_every=job.checkpoint_every, resume=job.resume)
    excluded = "\n".join(sorted(job.exclude)).encode()
    metadata = ArtifactMetadata(
        # an oracle must never have seen the excluded records: only a clean start qualifies
        kind=ArtifactKind.RETRAIN_ORACLE if job.exclude and clean_start else ArtifactKind.FINE_TUNED,
        seed=job.config.seed,
        parameters=parameters, reference_spec=None if job.base else asdict(job.spec),
        corpus_sha256=corpus.header.records_sha256, parent_digest=parent,
        training={"config": asdict(job.config), "records": len(records), "steps": result.steps,
                  "excluded": len(job.exclude),
                  "excluded_sha256": hashlib.sha256(excluded).hexdigest() if job.exclude else None,
                  "lora": asdict(job.lora) if job.lora else None,
                  "probe_loss": [result.probe_loss_before, result.probe_loss_after]})
    digest = save_artifact(model, processor, job.out, metadata)
    shutil.rmtree(job.checkpoint_dir, ignore_errors=True)
    return TrainOutcome(digest=digest, records=len(records), parameters=parameters, result=result)
