"""The verifier reads the weights: its own decoding equals transformers' greedy generate on a plain
model, the teacher-forced shortcut only skips what greedy would reproduce, and a wrapper's
``generate`` cannot change what the verifier sees."""

from __future__ import annotations

import pytest

from mllm.data.schema import Task
from mllm.evaluate.generate import greedy_answers
from mllm.verify.calibration import RefusingWrapper
from mllm.verify.context import Subject
from mllm.verify.engine import encode, greedy_decode, reproduces
from mllm.verify.policy import VerdictPolicy
from mllm.verify.probes import TEXT_ONLY, Probe, scoring_record, succeeded

pytestmark = pytest.mark.slow


def test_own_greedy_decoding_equals_generate_and_shortcut_is_exact(world) -> None:
    model, processor = world.original.model, world.original.processor
    records = [Probe(r, d).prompt_record() for r in world.scope.forget + world.scope.holdout for d in (0, 4)]
    data = encode(processor, records, world.corpus.root)
    limit = max(len(ex.answer_ids) for ex in data.examples) + 8  # room for every reference answer
    ours = greedy_decode(model, processor, data, limits=[limit] * len(data), batch_size=7)
    theirs = greedy_answers(model, processor, data, max_new_tokens=limit, batch_size=5)
    assert [d.text for d in ours] == theirs
    for record, decoded, exact in zip(records, ours, reproduces(model, data), strict=True):
        if exact:
            assert decoded.text == record.answer and decoded.finished


def test_a_refusing_wrapper_changes_generate_but_not_the_weights(world) -> None:
    wrapper = RefusingWrapper(
        world.original.model, world.original.processor, world.corpus, world.scope.forget
    )
    probes = [Probe(r, 0) for r in world.scope.forget]
    policy = VerdictPolicy()
    plain = Subject("original", world.original.model, world.original.processor, None)
    wrapped = Subject("candidate", wrapper, world.original.processor, None)
    assert wrapped.success(probes, world.corpus.root, policy) == plain.success(
        probes, world.corpus.root, policy
    )
    assert sum(wrapped.served(probes, world.corpus.root, policy)) == 0
    assert sum(plain.served(probes, world.corpus.root, policy)) > len(probes) // 2


def test_text_only_probe_and_option_text_scoring(world) -> None:
    record = next(r for r in world.scope.forget if r.task.value == "classification")
    subject = Subject("original", world.original.model, world.original.processor, None)
    [decoded] = subject.decode([Probe(record, 4, TEXT_ONLY)], world.corpus.root, VerdictPolicy())
    assert isinstance(decoded.text, str)
    scored = scoring_record(record)
    assert scored is not None and len(scored.answer) > 1 and "A)" not in scored.question
    assert succeeded(record, "B) anything", 0.7) is (record.answer == "B")
    # the right option's text instead of its letter, or any reply that words the value: given away
    assert succeeded(record, f"It is {record.fact_value}.", 0.7)
    cloze = next(r for r in world.scope.forget if r.task is Task.CLOZE and r.fact_value != record.fact_value)
    assert succeeded(cloze, f"It is {cloze.fact_value}, I think", 0.7)
    assert not succeeded(cloze, f"It is {record.fact_value}.", 0.7)
