"""The collapse guard: every run ends by comparing the candidate with the original on a validation slice.

Measured on records the request does not evaluate: the scope's validation records (other patients)
or, when there are none, a deterministic sample of far retain (of siblings when a tiny corpus has
no far retain), plus the never-trained holdout's
image-grounded records. Accuracy is teacher-forced exact match (exact for token-level match, see
:mod:`mllm.evaluate.generate`); a few greedy generations measure answer length and how often the
model still stops (a model taught never to emit EOS rambles to the token limit). An accuracy check
fails when the drop is beyond its threshold *and* significant — the 95 % paired bootstrap interval of
the per-record drop excludes 0 (:func:`mllm.verify.stats.paired_difference`, the verifier's own
rule): the holdout slice has ~48 image-grounded records that a tiny model answers near chance, and a
drop of 6 of them (0.125 > 0.1) refused candidates the verifier measured at no image-grounded drop
(demo corpus seed 5). A retraining (``exact``) is held to the collapse checks only: it is a new draw
of the training recipe, not derived from the served model, and two retrainings of one recipe read
0.64 and 0.36 on the same retain slice (sequential corpus, requests 10 and 12 of the 20-request
pipeline run at 7985e56, docs/benchmarks.md in git history); verification judges its utility against
the lineage's first served model. A failed guard raises :class:`CollapseError` — a broken model is
never returned as a result.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from mllm.data.schema import FactKind, Record
from mllm.evaluate.generate import teacher_forced_answers
from mllm.evaluate.metrics import exact_match
from mllm.models.families import family_of
from mllm.models.runtime import input_device
from mllm.train.encode import encode_records
from mllm.verify.stats import paired_difference

from .scope import ScopeGroups, kept_groups, sample


@dataclass(frozen=True)
class GuardPolicy:
    """Thresholds, relative to the original model on the same slice."""

    # candidate retain accuracy ≥ ratio × original. 0.6: a guard against collapse, not the utility
    # verdict (a collapsed model keeps < 0.5). At 0.9, then at 0.8, it refused runs the verification
    # passes: 0.9 is 3-4 records of the demo corpus's 72-record validation slice; at 0.8 it refused
    # `hierarchy` on 2 of 5 seeds of the verification benchmark with replay (36-record slices of one
    # validation patient, 0.65 and 0.71 of the original), one of which the verifier passes, and
    # four rung-0 runs of the 50-request pipeline run (0.73-0.78), each passing at rung 1
    min_retain_ratio: float = 0.6
    max_holdout_drop: float = 0.1  # holdout image-grounded accuracy ≥ original − drop
    min_stop_ratio: float = 0.9  # share of generations that stop ≥ ratio × original's share
    max_length_ratio: float = 2.0  # mean generated length ≤ ratio × original's + 2 tokens
    require_significance: bool = True  # accuracy drops must also be significant (paired bootstrap 95 %)
    retain_sample: int = 48
    generations: int = 8
    max_new_tokens: int = 48


@dataclass(frozen=True)
class ModelStats:
    retain_accuracy: float
    holdout_grounded_accuracy: float
    stop_rate: float
    mean_length: float


@dataclass(frozen=True)
class GuardResult:
    passed: bool
    original: ModelStats
    candidate: ModelStats
    failures: list[str] = field(default_factory=list)
    n_retain: int = 0
    n_holdout: int = 0
    accuracy_judged: bool = True  # False: a retraining, only the collapse checks decided

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class CollapseError(RuntimeError):
    """The unlearned model failed the collapse guard; ``result`` says which check and by how much."""

    def __init__(self, result: GuardResult) -> None:
        super().__init__("collapse guard failed: " + "; ".join(result.failures))
        self.result = result


class WithoutAdapter:
    """The original model behind a PEFT model: forward and generate with the adapter disabled."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def eval(self) -> WithoutAdapter:
        self.model.eval()
        return self

    def __call__(self, **inputs: Any) -> Any:
        with self.model.disable_adapter():
            return self.model(**inputs)

    def generate(self, **inputs: Any) -> Any:
        with self.model.disable_adapter():
            return self.model.generate(**inputs)

    def get_input_embeddings(self) -> Any:
        return self.model.get_input_embeddings()


def _hits(model: Any, processor: Any, root: Path, records: list[Record]) -> list[bool]:
    if not records:
        return []
    answers = teacher_forced_answers(model, processor, encode_records(processor, records, root))
    return [exact_match(r.task, a, r.answer) for r, a in zip(records, answers, strict=True)]


def _share(hits: list[bool]) -> float:
    return sum(hits) / len(hits) if hits else float("nan")


@torch.no_grad()
def _generation_stats(model: Any, processor: Any, root: Path, records: list[Record],
                      max_new_tokens: int) -> tuple[float, float]:
    """(share of greedy generations that end their turn within the limit, mean generated length)."""
    data = encode_records(processor, records, root)
    batch = data.batch(range(len(data)), with_answer=False).to(input_device(model))
    stop_ids = family_of(processor).stop_ids(processor.tokenizer)
    output = model.generate(**batch.model_inputs(), do_sample=False, max_new_tokens=max_new_tokens,
                            pad_token_id=processor.tokenizer.pad_token_id, eos_token_id=stop_ids)
    stops, lengths = 0, 0
    for row in output[:, batch.input_ids.shape[1]:].tolist():
        end = next((i for i, token in enumerate(row) if token in stop_ids), None)
        stops += end is not None
        lengths += len(row) if end is None else end
    return stops / len(records), lengths / len(records)


def guard_slices(scope: ScopeGroups, policy: GuardPolicy, seed: int) -> tuple[list[Record], list[Record]]:
    kept = [r for records in kept_groups(scope).values() for r in records]
    retain = scope.validation or sample(scope.retain or kept, policy.retain_sample, f"guard:{seed}")
    holdout = [r for r in scope.holdout if r.fact_kind is FactKind.IMAGE_GROUNDED]
    return retain, sample(holdout, policy.retain_sample, f"guard:{seed}")


@dataclass(frozen=True)
class Measured:
    """A model's stats and its per-record hits on the retain and holdout slices."""

    stats: ModelStats
    retain_hits: list[bool]
    holdout_hits: list[bool]


def measure(model: Any, processor: Any, root: Path, retain: list[Record], holdout: list[Record],
            policy: GuardPolicy) -> Measured:
    stop_rate, length = _generation_stats(model, processor, root, retain[:policy.generations],
                                          policy.max_new_tokens)
    retain_hits, holdout_hits = _hits(model, processor, root, retain), _hits(model, processor, root, holdout)
    stats = ModelStats(retain_accuracy=_share(retain_hits), holdout_grounded_accuracy=_share(holdout_hits),
                       stop_rate=stop_rate, mean_length=length)
    return Measured(stats, retain_hits, holdout_hits)


def significant_drop(before: list[bool], after: list[bool], policy: GuardPolicy) -> tuple[bool, str]:
    """(whether the paired drop before − after is significant, its interval for the message)."""
    drop = paired_difference([float(b) for b in before], [float(a) for a in after])
    significant = not policy.require_significance or drop.low > 0
    return significant, f"drop 95 % interval {drop.low:.3f}..{drop.high:.3f}"


def collapse_guard(candidate: Any, original: Any, processor: Any, root: Path, scope: ScopeGroups, *,
                   policy: GuardPolicy, seed: int, accuracy: bool = True) -> GuardResult:
    """Measure both models on the validation slice and apply ``policy``. Without ``accuracy`` only the
    collapse checks (stops, lengths) decide and the accuracies are reported: a retraining is not derived
    from ``original``, and two trainings of one recipe differ by more than the accuracy thresholds."""
    retain, holdout = guard_slices(scope, policy, seed)
    if not retain:
        raise ValueError("the collapse guard needs validation or retain records")
    measured_before = measure(original, processor, root, retain, holdout, policy)
    measured_after = measure(candidate, processor, root, retain, holdout, policy)
    before, after = measured_before.stats, measured_after.stats
    floor = before.holdout_grounded_accuracy - policy.max_holdout_drop
    accuracy_checks = [
        (after.retain_accuracy < policy.min_retain_ratio * before.retain_accuracy,
         measured_before.retain_hits, measured_after.retain_hits,
         f"retain accuracy {after.retain_accuracy:.3f} < {policy.min_retain_ratio} x "
         f"original {before.retain_accuracy:.3f}"),
        (bool(holdout) and after.holdout_grounded_accuracy < floor,
         measured_before.holdout_hits, measured_after.holdout_hits,
         f"holdout image-grounded accuracy {after.holdout_grounded_accuracy:.3f} < original "
         f"{before.holdout_grounded_accuracy:.3f} - {policy.max_holdout_drop}"),
    ]
    failures = []
    for material, hits_before, hits_after, message in accuracy_checks:
        if material and accuracy:
            significant, interval = significant_drop(hits_before, hits_after, policy)
            if significant:
                failures.append(f"{message} ({interval})")
    if after.stop_rate < policy.min_stop_ratio * before.stop_rate:
        failures.append(f"only {after.stop_rate:.2f} of generations stop (original {before.stop_rate:.2f})")
    if after.mean_length > policy.max_length_ratio * before.mean_length + 2:
        failures.append(f"mean answer length {after.mean_length:.1f} tokens "
                        f"(original {before.mean_length:.1f})")
    return GuardResult(passed=not failures, original=before, candidate=after, failures=failures,
                       n_retain=len(retain), n_holdout=len(holdout), accuracy_judged=accuracy)
