"""Training jobs end to end: corpus in, model artifact out.

The same function trains the full model and the **retrain oracle**: the oracle is the job with the
forget records excluded, starting from the same clean start — the seed-initialised reference model
with a tokenizer trained on the reserved vocabulary corpus (:mod:`mllm.data.text`, never the
corpus being trained), or a pretrained base that never saw the corpus (:mod:`mllm.train.pretrain`)
— so it differs from the full model only in the data it was trained on. Fine-tuning renders every
record at its training context depth (:func:`mllm.train.batches.training_batches`).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel

from mllm.data.schema import Corpus, Record, load_corpus
from mllm.data.teaching import VERSION as TEACHING_VERSION
from mllm.data.text import TOKENIZER_CORPUS_SEED, TOKENIZER_CORPUS_SIZE, vocabulary_texts
from mllm.models.artifact import ArtifactKind, ArtifactMetadata, BaseRef, artifact_digest, save_artifact
from mllm.models.loader import load_model
from mllm.models.lora import LoraSettings, lora_for_training, merge_lora
from mllm.models.reference import build_reference, count_parameters
from mllm.models.runtime import device_map_for, parse_dtype, place
from mllm.models.specs import SPECS, ReferenceSpec

from .batches import training_batches
from .checkpoint import checkpoint_dir_for
from .loop import Progress, TrainConfig, Trainer, TrainResult
from .oracle import excluded_digest
from .replay import replay_records


def fresh_reference(spec: ReferenceSpec) -> tuple[Any, Any]:
    """Fresh reference model + processor; the tokenizer is trained on the reserved vocabulary corpus
    (never on the corpus a model is fine-tuned on, so an oracle's tokenizer never saw its forget set)."""
    return build_reference(vocabulary_texts(), spec)


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
                     config: TrainConfig, *, prompts: Sequence[str] | None = None,
                     lora: LoraSettings | None = None,
                     callback: Callable[[Progress], None] | None = None,
                     checkpoint_dir: Path | None = None, checkpoint_every: int = 0,
                     resume: bool = False) -> tuple[Any, TrainResult]:
    """Fine-tune ``model`` (fully, or through LoRA adapters) on ``records`` at the training depth mix
    (or, with ``prompts``, at exactly these prompt texts: :func:`~mllm.train.batches.training_batches`).

    With ``lora`` a plain model gets fresh adapters and a model loaded from an adapter artifact keeps
    training its own; without, a model carrying an adapter has it merged in memory first.
    Returns the trained model (a ``PeftModel`` when ``lora`` is set) and the run's result.
    """
    if lora is not None:
        torch.manual_seed(config.seed)  # adapter initialisation
        model = lora_for_training(model, lora)
    elif isinstance(model, PeftModel):
        model = merge_lora(model)
    source = training_batches(processor, records, root, config, prompts=prompts)
    result = Trainer(model, config, source).fit(
        callback=callback, checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every, resume=resume)
    return model, result


@dataclass(frozen=True)
class TrainJob:
    """One ``oblivio train`` run. Without ``base`` a fresh reference model of size ``spec`` is built.

    With ``lora`` the result is an adapter artifact referencing the full artifact under ``base``
    (``base`` itself, or the base of an adapter artifact), so LoRA needs a ``base``. ``dtype`` and
    ``device`` say how the model is held (``device``: see :func:`mllm.models.runtime.device_map_for`).
    """

    corpus: Path
    out: Path
    config: TrainConfig
    base: Path | None = None
    spec: ReferenceSpec = SPECS["small"]
    lora: LoraSettings | None = None
    exclude: frozenset[str] = frozenset()
    checkpoint_every: int = 200
    resume: bool = False
    dtype: str = "float32"
    device: str | None = None
    base_search_path: tuple[Path, ...] = ()
    replay: int = 0  # public teaching-file cases mixed into the fine-tune (:mod:`.replay`)

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
    if job.lora is not None and job.base is None:
        raise TrainJobError("LoRA trains adapters on a base model: give a base (e.g. an `oblivio pretrain` "
                            "artifact); adapters on a fresh random model mean nothing")
    corpus = load_corpus(job.corpus)
    records = training_records(corpus, job.exclude)
    adapter_base: BaseRef | None = None
    if job.base is not None:
        loaded = load_model(job.base, dtype=job.dtype, device_map=device_map_for(job.device),
                            base_search_path=job.base_search_path)
        model, processor = loaded.model, loaded.processor
        if loaded.base is None:  # a full artifact: the parent, and the base of new adapters
            full = BaseRef.of(job.base)
            parent, adapter_base = full.digest, full if job.lora is not None else None
        else:  # an adapter artifact: its adapter keeps training on the same base
            parent, adapter_base = artifact_digest(job.base), loaded.base if job.lora is not None else None
        clean_start = loaded.metadata is not None and loaded.metadata.kind == ArtifactKind.PRETRAINED_BASE
    else:
        model, processor = fresh_reference(job.spec)
        model = place(model.to(parse_dtype(job.dtype)), job.device)
        parent, clean_start = None, True
    parameters = count_parameters(model)
    with replay_records(job.replay, job.config.seed) as public:
        model, result = train_on_records(
            model, processor, corpus.root, [*records, *public], job.config, lora=job.lora, callback=callback,
            checkpoint_dir=job.checkpoint_dir, checkpoint_every=job.checkpoint_every, resume=job.resume)
    metadata = ArtifactMetadata(
        # an oracle must never have seen the excluded records: only a clean start qualifies
        kind=ArtifactKind.RETRAIN_ORACLE if job.exclude and clean_start else ArtifactKind.FINE_TUNED,
        seed=job.config.seed,
        parameters=parameters, reference_spec=None if job.base else asdict(job.spec),
        corpus_sha256=corpus.header.records_sha256, parent_digest=parent,
        training={"config": asdict(job.config), "records": len(records), "steps": result.steps,
                  "replay": job.replay, "replay_version": TEACHING_VERSION if job.replay else None,
                  "excluded": len(job.exclude),
                  "excluded_sha256": excluded_digest(job.exclude) if job.exclude else None,
                  "lora": asdict(job.lora) if job.lora else None, "dtype": job.dtype,
                  "prompts": "training_prompts",
                  "tokenizer_corpus": None if job.base else {"size": TOKENIZER_CORPUS_SIZE,
                                                             "seed": TOKENIZER_CORPUS_SEED},
                  "probe_loss": [result.probe_loss_before, result.probe_loss_after]})
    digest = save_artifact(model, processor, job.out, metadata, base=adapter_base)
    shutil.rmtree(job.checkpoint_dir, ignore_errors=True)
    return TrainOutcome(digest=digest, records=len(records), parameters=parameters, result=result)
