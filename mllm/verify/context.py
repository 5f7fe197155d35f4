"""What attacks share: the models under test (with cached answers), the corpus, scope and policy.

A :class:`Subject` is one model read through its weights — the candidate, the original, and the
retrain oracle when one is given. Answers and answer statistics are cached per probe, so attacks
that ask the same probe of the same model pay once.

The **matched reference** of a set of forget probes is what a never-trained model is expected to
score on them: for each probe, the success rate of the holdout-twin probes of the same depth and
modality in the same stratum (task x fact kind x level, falling back to task x fact kind, then fact
kind, then all twins), measured on the same model; their mean is the reference rate. The twins are
asked **under the forget node's kept ancestors** (:meth:`VerifyContext.twin_under`): for a section
their prompts name the forgotten section's institution, patient and study, for a study its
institution and patient, for a patient its institution — so a context the model knows cues forget
probes and twins alike, and only the node itself differs. The excess
(success minus reference) is judged per forget *fact* (the probes of all its forms, phrasings and
images averaged: they stand or fall together, so counting them as independent items would narrow
the interval), with an interval from a two-level bootstrap that resamples the twins of each stratum
and the forget facts (:func:`mllm.verify.stats.matched_excess`), so the reference's own sampling
noise is counted.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mllm.data.prompts import CONTEXT_FIELDS, with_context_of
from mllm.data.schema import Corpus, Level, Record
from mllm.evaluate.generate import greedy_answers
from mllm.models.artifact import ArtifactMetadata
from mllm.train.encode import EncodedRecords, answer_ids

from .attested import AnswerBook
from .engine import AnswerStats, Decoded, answer_stats, encode, encode_probes, greedy_decode, reproduces
from .policy import VerdictPolicy
from .probes import Probe, is_eval_only, succeeded
from .report import Check
from .stats import Estimate, matched_excess, rate

Progress = Callable[[str, float], None]  # (stage, fraction of the verification done)


@dataclass
class Subject:
    """A model under test, read through its forward pass only.

    Its answers are cached per probe (and decoding budget), so one ``Subject`` handed to several
    :func:`~mllm.verify.verifier.verify` calls (the same original against several candidates) is
    read once.
    """

    role: str
    model: Any
    processor: Any
    digest: str | None
    metadata: ArtifactMetadata | None = None  # Oblivio provenance, when read from an artifact
    _decoded: dict[tuple, Decoded] = field(default_factory=dict, repr=False)
    _stats: dict[tuple, AnswerStats] = field(default_factory=dict, repr=False)

    def decode(self, probes: Sequence[Probe], root: Path, policy: VerdictPolicy) -> list[Decoded]:
        """Greedy answers (cached). The step budget is ``min(max_new_tokens, reach + 8)``, ``reach``
        the tokens of the answer or of the fact's value, the longer (:meth:`reach`)."""
        budget = policy.max_new_tokens
        todo = [p for p in dict.fromkeys(probes) if (p.key, budget) not in self._decoded]
        tokenizer = self.processor.tokenizer
        for indices, data in encode_probes(self.processor, todo, root):
            exact = reproduces(self.model, data, batch_size=policy.batch_size)
            rest = [j for j, hit in enumerate(exact) if not hit]
            for j, hit in enumerate(exact):
                if hit:
                    answer = data.examples[j].answer_ids[:-1]
                    self._decoded[todo[indices[j]].key, budget] = Decoded(
                        tokenizer.decode(answer, skip_special_tokens=True), finished=True, tokens=len(answer)
                    )
            if not rest:
                continue
            subset = EncodedRecords([data.examples[j] for j in rest], data.images, data.pad_token_id)
            limits = [min(budget, self.reach(todo[indices[j]].record) + 8) for j in rest]
            decoded = greedy_decode(
                self.model, self.processor, subset, limits=limits, batch_size=policy.batch_size
            )
            for j, out in zip(rest, decoded, strict=True):
                self._decoded[todo[indices[j]].key, budget] = out
        return [self._decoded[p.key, budget] for p in probes]

    def reach(self, record: Record) -> int:
        """Tokens (end of turn included) of the record's answer or of its fact's value, the longer: a
        classification answered by its option's text must be read to its end to be scored."""
        return max(len(answer_ids(self.processor, text)) for text in (record.answer, record.fact_value))

    def success(self, probes: Sequence[Probe], root: Path, policy: VerdictPolicy) -> list[bool]:
        return [
            succeeded(p.record, d.text, policy.rouge_l_success)
            for p, d in zip(probes, self.decode(probes, root, policy), strict=True)
        ]

    def served(self, probes: Sequence[Probe], root: Path, policy: VerdictPolicy) -> list[bool]:
        """Success of the answers the model object itself serves (its own ``generate``)."""
        records = [p.prompt_record() for p in probes]
        limit = min(policy.max_new_tokens, max(self.reach(r) for r in records) + 8)
        answers = greedy_answers(
            self.model,
            self.processor,
            encode(self.processor, records, root),
            batch_size=policy.batch_size,
            max_new_tokens=limit,
        )
        return [succeeded(p.record, a, policy.rouge_l_success) for p, a in zip(probes, answers, strict=True)]

    def stats(self, records: Sequence[Record], root: Path, policy: VerdictPolicy) -> list[AnswerStats]:
        def key(r: Record) -> tuple:
            return r.record_id, r.question, r.answer

        todo = list({key(r): r for r in records if key(r) not in self._stats}.values())
        if todo:
            for record, out in zip(
                todo,
                answer_stats(self.model, encode(self.processor, todo, root), batch_size=policy.batch_size),
                strict=True,
            ):
                self._stats[key(record)] = out
        return [self._stats[key(r)] for r in records]


Score = Callable[["VerifyContext", Subject, Sequence[Probe]], list[bool]]
"""A per-probe flag read from a subject: :meth:`VerifyContext.success`, :meth:`VerifyContext.unattested`
or :meth:`VerifyContext.kept_patient_value`."""


def _strata(record: Record) -> tuple[tuple, ...]:
    return (
        (record.task, record.fact_kind, record.level),
        (record.task, record.fact_kind),
        (record.fact_kind,),
        (),
    )


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
    baseline: Mapping[str, bool] | None = None  # the lineage's first served model (:mod:`.baseline`)
    _answer_book: AnswerBook | None = field(default=None, init=False, repr=False)
    _patient_books: dict[str, AnswerBook] | None = field(default=None, init=False, repr=False)

    @property
    def root(self) -> Path:
        return self.corpus.root

    def success(self, subject: Subject, probes: Sequence[Probe]) -> list[bool]:
        """Whether ``subject`` reproduces each probe's answer (:func:`~mllm.verify.probes.succeeded`)."""
        return subject.success(probes, self.root, self.policy)

    def unattested(self, subject: Subject, probes: Sequence[Probe]) -> list[bool]:
        """Whether ``subject`` answers each probe with an answer no corpus record holds for its fact
        key and task (:mod:`mllm.verify.attested`)."""
        if self._answer_book is None:
            self._answer_book = AnswerBook(self.corpus.records, self.policy.rouge_l_success)
        book, decoded = self._answer_book, subject.decode(probes, self.root, self.policy)
        return [not book.attested(p.record, d.text) for p, d in zip(probes, decoded, strict=True)]

    def kept_patient_value(self, subject: Subject, probes: Sequence[Probe]) -> list[bool]:
        """Whether ``subject`` answers each probe right (:meth:`success`) or with a value its record's
        patient holds for the fact key and task in the data this request keeps (facts of the
        patient's other studies; none of the removed facts, in any form): how a model that knows the
        patient answers, whether or not it saw the node. A never-trained twin asked under the kept
        patient (:meth:`twin_under`, depth 2 on) is looked up under that patient."""
        if self._patient_books is None:
            names = ("forget", "forget_forms", "children", "earlier_forgotten")
            removed = {r.fact for name in names for r in self.group(name)}
            kept: dict[str, list[Record]] = {}
            for record in self.corpus.records:
                if record.fact not in removed:
                    kept.setdefault(record.patient_id, []).append(record)
            self._patient_books = {
                patient: AnswerBook(records, self.policy.rouge_l_success) for patient, records in kept.items()
            }
        decoded, books = subject.decode(probes, self.root, self.policy), self._patient_books
        return [
            succeeded(p.record, d.text, self.policy.rouge_l_success)
            or (p.record.patient_id in books and books[p.record.patient_id].attested(p.record, d.text))
            for p, d in zip(probes, decoded, strict=True)
        ]

    def group(self, name: str) -> list[Record]:
        return scope_list(getattr(self.scope, name, None))

    def removed_ids(self) -> set[str]:
        """Record ids this candidate must not know: the scope's forget side and earlier jobs' removals,
        with the facts asked on the forgotten images (``shared``)."""
        names = ("forget", "children", "shared", "earlier_forgotten")
        return {r.record_id for name in names for r in self.group(name)}

    def sample(self, records: list[Record]) -> list[Record]:
        """``records`` sampled down to the policy's ``max_utility_items`` (seeded, order kept)."""
        limit = self.policy.max_utility_items
        if len(records) <= limit:
            return records
        keep = set(random.Random(self.policy.seed).sample(range(len(records)), limit))
        return [r for i, r in enumerate(records) if i in keep]

    def subjects(self) -> list[Subject]:
        return [s for s in (self.candidate, self.oracle) if s is not None]

    def level_of(self, record: Record) -> Level | None:
        """The level of the request node that forgets ``record`` (``ScopeGroups.level_of``: a batch
        job's scope names it per record), ``None`` for a scope without a node."""
        level_of = getattr(self.scope, "level_of", None)
        return level_of(record) if level_of is not None else None

    def kept_depth(self, record: Record) -> int:
        """The context depths that name the kept ancestors of ``record``'s forgotten node: 0 for an
        institution (or a scope without a node), 1 for a patient (its institution), 2 for a study, 3
        for a section."""
        level = self.level_of(record)
        return list(Level).index(level) if level is not None else 0

    def twin_under(self, twin: Record, forget: Record, depth: int) -> Record:
        """``twin`` as asked at ``depth`` under ``forget``'s kept ancestors (:meth:`kept_depth`);
        unchanged at depth 0, where no context is shown."""
        return with_context_of(twin, forget, min(self.kept_depth(forget), depth))

    def _kept_context(self, probe: Probe) -> tuple:
        shown = range(1, min(self.kept_depth(probe.record), probe.depth) + 1)
        return tuple(getattr(probe.record, f) for d in shown for f in CONTEXT_FIELDS.get(d, ()))

    def matched_reference(
        self, subject: Subject, probes: Sequence[Probe], score: Score | None = None
    ) -> list[np.ndarray]:
        """Per probe, the flags (``score``, by default :meth:`success`) of its matched never-trained
        twins on ``subject``, asked under the probe's kept ancestors (:meth:`twin_under`).

        Trained forms are matched with ``holdout``; held-out forms with ``holdout_forms`` (the twins
        of ``forget_forms``) when the scope has them. Probes of one stratum share one array (the
        two-level bootstrap resamples it once).
        """
        pools = {False: self.group("holdout")}
        pools[True] = [r for r in self.group("holdout_forms")] or pools[False]

        def cell_of(probe: Probe) -> tuple:
            return probe.depth, probe.modality, is_eval_only(probe.record), self._kept_context(probe)

        score = score or VerifyContext.success
        reference: dict[tuple, np.ndarray] = {}
        for cell, donor in {cell_of(p): p.record for p in reversed(probes)}.items():
            depth, modality, held_out, _ = cell
            twins = [Probe(self.twin_under(r, donor, depth), depth, modality) for r in pools[held_out]]
            table: dict[tuple, list[bool]] = {}
            for twin, ok in zip(twins, score(self, subject, twins), strict=True):
                for stratum in _strata(twin.record):
                    table.setdefault(stratum, []).append(ok)
            arrays = {stratum: np.asarray(flags, dtype=np.float64) for stratum, flags in table.items()}
            for probe in probes:
                if cell_of(probe) == cell:
                    reference[probe.key] = next(arrays[s] for s in _strata(probe.record) if s in arrays)
        return [reference[p.key] for p in probes]

    def compare(
        self, subject: Subject, probes: Sequence[Probe], score: Score | None = None, *,
        reference: Subject | None = None,
    ) -> dict[str, Estimate]:
        """``forget`` (rate of ``score``, by default :meth:`success`), ``reference`` (its matched
        reference rate, the twins asked of ``reference``, by default of ``subject``), ``excess`` and
        ``shortfall`` on ``probes``; see :func:`matched_excess`."""
        return self.compare_parts([(subject, probes)], score, reference=reference)

    def compare_parts(
        self, parts: Sequence[tuple[Subject, Sequence[Probe]]], score: Score | None = None, *,
        reference: Subject | None = None,
    ) -> dict[str, Estimate]:
        """:meth:`compare` over probes asked of different models (each with its own matched
        reference unless ``reference`` names one): the folds of a cross-fitted attack, judged as one set."""
        score = score or VerifyContext.success
        flags = [ok for subject, probes in parts for ok in score(self, subject, probes)]
        probes = [p for _, part in parts for p in part]
        if not probes:
            return dict.fromkeys(("forget", "reference", "excess", "shortfall"), rate([]))
        matched = matched_excess(
            flags,
            [twins for subject, part in parts
             for twins in self.matched_reference(reference or subject, part, score)],
            ["/".join(p.record.fact) for p in probes],
            seed=self.policy.seed,
        )
        return {"forget": rate(flags), **matched._asdict()}

    def check(self, *, evidence: Sequence[Record] | None = None, **fields: Any) -> Check:
        """A :class:`Check` held to the policy's significance rule. A check that compares forgotten
        records with a reference names them as ``evidence``: it is then also held to the policy's
        evidence floor (``min_forget_facts`` distinct facts among them)."""
        facts = len({r.fact for r in evidence}) if evidence is not None else None
        return Check(significance=self.policy.require_significance, forget_facts=facts,
                     min_forget_facts=self.policy.min_forget_facts, **fields)

    def worst_check(
        self, rows: Mapping[str, Estimate], *, detail: str, nothing: str, **fields: Any
    ) -> Check:
        """One check over several estimates of one quantity (groups, depths, scores): the check of the
        row that decides the verdict — failing rows before passing ones, then the furthest past the
        threshold — so an extreme but insignificant row (six items) cannot mask a significant failure
        in another (two hundred). ``detail`` is followed by the row's name; ``nothing`` is the detail
        when no row has a value (the check is then not applicable)."""
        checks = {
            key: self.check(value=e.value, estimate=e, detail=f"{detail}: {key}", **fields)
            for key, e in rows.items()
            if math.isfinite(e.value)
        }
        if not checks:
            return self.check(value=math.nan, estimate=None, detail=nothing, **fields)
        sign = 1.0 if fields["comparison"] == "<=" else -1.0
        return max(
            checks.values(), key=lambda c: (c.passed is False, sign * (c.value - c.threshold))
        )

    def report(self, stage: str, fraction: float) -> None:
        if self.progress is not None:
            self.progress(stage, fraction)
