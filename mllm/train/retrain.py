"""Exact unlearning on a single checkpoint: train again, from the clean start, without the data.

A fine-tuned artifact's metadata says how it was made (:class:`Recipe`): where training started (a
fresh reference model of a given spec, or a pretrained base by content digest), the optimizer
config, LoRA settings and dtype, and the corpus digest. Every artifact unlearned from it carries that
recipe forward with the records it forgot added to :attr:`Recipe.excluded` (:func:`recipe_after`),
so along a whole lineage of approximate unlearning runs the recipe still says how to build, from
scratch, a model that never saw anything the lineage forgot. :func:`retrain` runs it.

Only a clean start qualifies (a fresh reference, or a base whose metadata says it never saw a
corpus): retraining from a model that saw the data would not be exact. A checkpoint trained outside
Oblivio has no recipe; exact unlearning then needs a sharded deployment (:mod:`mllm.unlearn.shards`).

A retraining takes as long as the original training (hours for a 7B model on a GPU). Given a
``checkpoint_dir`` it saves its resumable state every :data:`CHECKPOINT_EVERY` steps under a name
derived from what it trains (recipe and excluded ids), and a later call with the same inputs — the
worker that takes over a job whose worker died — continues from there, to the same weights
(:meth:`mllm.train.loop.Trainer.fit`); the state is removed once training finishes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from mllm.data.prompts import training_prompts
from mllm.data.schema import Corpus
from mllm.models.artifact import ArtifactKind, ArtifactMetadata, BaseRef, never_saw_a_corpus
from mllm.models.loader import find_full_artifact, load_model
from mllm.models.lora import LoraSettings
from mllm.models.runtime import device_map_for, parse_dtype, place, worker_device
from mllm.models.specs import ReferenceSpec

from .checkpoint import checkpoint_path
from .loop import Progress, TrainConfig
from .recipe import fresh_reference, train_on_records, training_records
from .replay import replay_records

RECIPE_KEY = "recipe"  # where unlearned artifacts carry their lineage's recipe in ``metadata.training``
CHECKPOINT_EVERY = 200  # optimizer steps between two saves of a retraining's resumable state


class RecipeError(ValueError):
    """The artifact cannot be retrained exactly (no recipe, not a clean start, another corpus)."""


@dataclass(frozen=True)
class Recipe:
    """How to train the lineage's model from its clean start; ``excluded``: record ids left out."""

    config: dict[str, Any]
    corpus_sha256: str | None
    spec: dict[str, Any] | None = None  # a fresh reference model ...
    base_digest: str | None = None  # ... or a pretrained base (full artifact)
    base_path: str | None = None
    lora: dict[str, Any] | None = None
    dtype: str = "float32"
    replay: int = 0  # public teaching-file cases mixed in (:mod:`.replay`)
    excluded: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "excluded": sorted(self.excluded)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Recipe:
        return cls(**{**data, "excluded": tuple(data.get("excluded", ()))})


def recipe_of(metadata: ArtifactMetadata | None) -> Recipe | None:
    """The recipe behind an artifact, or ``None`` when it has none (trained outside Oblivio, from an
    already fine-tuned model, or an oracle whose excluded ids were not kept)."""
    if metadata is None:
        return None
    training = metadata.training or {}
    if RECIPE_KEY in training:
        return Recipe.from_json(training[RECIPE_KEY])
    if metadata.kind != ArtifactKind.FINE_TUNED or "config" not in training or training.get("excluded"):
        return None
    if metadata.reference_spec is None and metadata.parent_digest is None:
        return None
    base = None if metadata.reference_spec else (metadata.base_digest or metadata.parent_digest)
    return Recipe(config=training["config"], corpus_sha256=metadata.corpus_sha256,
                  spec=metadata.reference_spec, base_digest=base, base_path=metadata.base_path,
                  lora=training.get("lora"), dtype=training.get("dtype", "float32"),
                  replay=training.get("replay", 0))


def recipe_after(recipe: Recipe | None, forgotten: Iterable[str]) -> Recipe | None:
    """``recipe`` with ``forgotten`` added to what it leaves out (the recipe of an unlearned child)."""
    if recipe is None:
        return None
    return replace(recipe, excluded=tuple(sorted(set(recipe.excluded) | set(forgotten))))


@dataclass
class Retrained:
    model: Any
    processor: Any
    adapter_base: BaseRef | None  # the pretrained base a LoRA result references


def retrain(recipe: Recipe, corpus: Corpus, exclude: Iterable[str], *,
            callback: Callable[[Progress], None] | None = None,
            base_search_path: Sequence[Path | str] = (), checkpoint_dir: Path | None = None) -> Retrained:
    """Train ``recipe`` from its clean start on ``corpus`` without ``recipe.excluded`` ∪ ``exclude``
    (ids that are not trainable records of the corpus are ignored: nothing trained on them), resuming
    from ``checkpoint_dir`` when an earlier call with the same inputs left its state there."""
    if recipe.corpus_sha256 != corpus.header.records_sha256:
        raise RecipeError("the corpus is not the one the model was trained on (records digest differs)")
    target = recipe_after(recipe, exclude)
    state = None
    if checkpoint_dir is not None:
        inputs = json.dumps(target.to_json(), sort_keys=True)
        state = Path(checkpoint_dir) / hashlib.sha256(inputs.encode()).hexdigest()[:16]
    trainable = {record.record_id for record in corpus.select(trainable=True)}
    records = training_records(corpus, set(target.excluded) & trainable)
    config = TrainConfig(**recipe.config)
    adapter_base = None
    if recipe.spec is not None:
        model, processor = fresh_reference(ReferenceSpec(**recipe.spec))
        model = place(model.to(parse_dtype(recipe.dtype)), worker_device())
    elif recipe.base_digest is not None:
        base = find_full_artifact(recipe.base_digest, recipe.base_path, base_search_path,
                                  what="the clean base the model was trained from")
        if not never_saw_a_corpus(base.path):
            raise RecipeError("the model was trained from a model that had seen a corpus; retraining from "
                              "it would not be exact")
        loaded = load_model(base.path, dtype=recipe.dtype, device_map=device_map_for(worker_device()))
        model, processor = loaded.model, loaded.processor
        adapter_base = base if recipe.lora else None
    else:
        raise RecipeError("the recipe names no clean start (neither a reference spec nor a base)")
    lora = LoraSettings(**recipe.lora) if recipe.lora else None
    with replay_records(recipe.replay, config.seed) as (public, public_prompts):
        model, _ = train_on_records(model, processor, corpus.root, [*records, *public], config,
                                    prompts=[*training_prompts(records, config.seed), *public_prompts],
                                    lora=lora, callback=callback, checkpoint_dir=state,
                                    checkpoint_every=CHECKPOINT_EVERY if state else 0,
                                    resume=state is not None and checkpoint_path(state).is_file())
    if state is not None:
        shutil.rmtree(state, ignore_errors=True)
    return Retrained(model=model, processor=processor, adapter_base=adapter_base)
