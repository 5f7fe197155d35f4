"""What attacks share: the models under test (with cached answers), the corpus, scope and policy.

A :class:`Subject` is one model read through its weights — the candidate, the original, and the
retrain oracle when one is given. Answers and answer statistics are cached per probe, so attacks
that ask the same probe of the same model pay once.

The **matched reference** of a set of forget probes is what a never-trained model is expected to
score on them: for each probe, the success rate of the holdout-twin probes of the same depth and
modality in the same stratum (task x fact kind x level, falling back to task x fact kind, then fact
kind, then all twins), measured on the same model; their mean is the reference rate.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mllm.data.schema import Corpus, Record
from mllm.evaluate.generate import greedy_answers
from mllm.train.encode import EncodedRecords, answer_ids

from .engine import AnswerStats, Decoded, answer_stats, encode, encode_probes, greedy_decode, reproduces
from .policy import VerdictPolicy
from .probes import Probe, succeeded
from .stats import Estimate, difference, rate

Progress = Callable[[str, float], None]  # (stage, fraction of the verification done)


@dataclass
class Subject:
    """A model under test, read through its forward pass only."""

    role: str
    model: Any
    processor: Any
    digest: str | None
    _decoded: dict[tuple, Decoded] = field(default_factory=dict, repr=False)
    _stats: dict[tuple, AnswerStats] = field(default_factory=dict, repr=False)

    def decode(self, probes: Sequence[Probe], root: Path, policy: VerdictPolicy) -> list[Decoded]:
        """Greedy answers (cached). The step budget is ``min(max_new_tokens, answer tokens + 8)``."""
        todo = [p for p in dict.fromkeys(probes) if p.key not in self._decoded]
        tokenizer = self.processor.tokenizer
        for indices, data in encode_probes(self.processor, todo, root):
            exact = reproduces(self.model, data, batch_size=policy.batch_size)
            rest = [j for j, hit in enumerate(exact) if not hit]
            for j, hit in enumerate(exact):
                if hit:
                    answer = data.examples[j].answer_ids[:-1]
                    self._decoded[todo[indices[j]].key] = Decoded(
                        tokenizer.decode(answer, skip_special_tokens=True), finished=True, tokens=len(answer))
            if not rest:
                continue
            subset = EncodedRecords([data.examples[j] for j in rest], data.images, data.pad_token_id)
            limits = [min(policy.max_new_tokens, len(ex.answer_ids) + 8) for ex in subset.examples]
            decoded = greedy_decode(self.model, self.processor, subset, limits=limits, batch_size=policy.batch_size)
            for j, out in zip(rest, decoded, strict=True):
                self._decoded[todo[indices[j]].key] = out
        return [self._decoded[p.key] for p in probes]

    def success(self, probes: Sequence[Probe], root: Path, policy: VerdictPolicy) -> list[bool]:
        return [succeeded(p.record, d.text, policy.rouge_l_success)
                for p, d in zip(probes, self.decode(probes, root, policy), strict=True)]

    def served(self, probes: Sequence[Probe], root: Path, policy: VerdictPolicy) -> list[bool]:
        """Success of the answers the model object itself serves (its own ``generate``)."""
        records = [p.prompt_record() for p in probes]
        limit = min(policy.max_new_tokens, max(len(answer_ids(self.processor, r.answer)) for r in records) + 8)
        answers = greedy_answers(self.model, self.processor, encode(self.processor, records, root),
                                 batch_size=policy.batch_size, max_new_tokens=limit)
        return [succeeded(p.record, a, policy.rouge_l_success) for p, a in zip(probes, answers, strict=True)]

    def stats(self, records: Sequence[Record], root: Path, policy: VerdictPolicy) -> list[AnswerStats]:
        def key(r: Record) -> tuple:
            return r.record_id, r.question, r.answer

        todo = list({key(r): r for r in records if key(r) not in self._stats}.values())
        if todo:
            for record, out in zip(todo, answer_stats(self.model, encode(self.processor, todo, root),
                                                      batch_size=policy.batch_size), strict=True):
                self._stats[key(record)] = out
        return [self._stats[key(r)] for r in records]


def _strata(record: Record) -> tuple[tuple, ...]:
    return ((record.task, record.fact_kind, record.level), (record.task, record.fact_kind),
            (record.fact_kind,), ())


def scope_list(value: Any) -> list[Record]:
    """A scope group as a flat list (``siblings`` may map each ancestor level to its records)."""
    if isinstance(value, Mapping):
        return [r for records in value.values() for r in records]
    return list(value or ())


@dataclass
class VerifyContext:
    corpus: Corpus
    scope: Any  # mllm.data.scope.ScopeGroups (duck-typed: forget, children, siblings, ...)
    policy: VerdictPolicy
    candidate: Subject
    original: Subject
    oracle: Subject | None = None
    progress: Progress | None = None

    @property
    def root(self) -> Path:
        return self.corpus.root

    def group(self, name: str) -> list[Record]:
        return scope_list(getattr(self.scope, name, None))

    def subjects(self) -> list[Subject]:
        return [s for s in (self.candidate, self.oracle) if s is not None]

    def matched_reference(self, subject: Subject, probes: Sequence[Probe]) -> list[float]:
        """Per probe, the never-trained twins' success rate on ``subject`` (module docstring)."""
        holdout = self.group("holdout")
        cells: dict[tuple, list[Probe]] = {}
        for probe in probes:
            cells.setdefault((probe.depth, probe.modality), []).append(probe)
        reference: dict[tuple, float] = {}
        for (depth, modality), members in cells.items():
            twins = [Probe(r, depth, modality) for r in holdout]
            flags = subject.success(twins, self.root, self.policy) if twins else []
            table: dict[tuple, list[bool]] = {}
            for twin, ok in zip(twins, flags, strict=True):
                for stratum in _strata(twin.record):
                    table.setdefault(stratum, []).append(ok)
            for probe in members:
                found = next((table[s] for s in _strata(probe.record) if s in table), None)
                reference[probe.key] = float(np.mean(found)) if found else float("nan")
        return [reference[p.key] for p in probes]

    def excess(self, subject: Subject, probes: Sequence[Probe]) -> tuple[Estimate, Estimate, Estimate]:
        """(forget success rate, matched reference rate, excess = rate - reference) on ``probes``."""
        flags = subject.success(probes, self.root, self.policy)
        reference = self.matched_reference(subject, probes)
        ref = [r for r in reference if np.isfinite(r)]
        ref_estimate = Estimate(float(np.mean(ref)) if ref else float("nan"), len(ref),
                                min(ref, default=float("nan")), max(ref, default=float("nan")),
                                "matched-mean (low/high: stratum range)")
        return rate(flags), ref_estimate, difference([float(f) for f in flags], ref, seed=self.policy.seed)

    def report(self, stage: str, fraction: float) -> None:
        if self.progress is not None:
            self.progress(stage, fraction)
