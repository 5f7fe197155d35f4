"""The matched reference: never-trained twins asked under the forget node's kept ancestors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from mllm.data.schema import Level
from mllm.verify import VerdictPolicy
from mllm.verify.context import VerifyContext
from mllm.verify.probes import Probe
from mllm.verify.testbed import render


class KnowsThePatient:
    """A model that answers right exactly when the prompt names one patient it knows — the cue a kept
    patient gives the forget probes of a study or section request (never the twins of strangers)."""

    def __init__(self, mrn: str) -> None:
        self.cue = f"Patient MRN: {mrn}"

    def success(self, probes: Sequence[Probe], root: Path, policy: VerdictPolicy) -> list[bool]:
        return [self.cue in render(p.record, p.depth) for p in probes]


@pytest.fixture()
def study_request(world) -> tuple[VerifyContext, KnowsThePatient]:
    assert world.scope.node.level is Level.STUDY
    model = KnowsThePatient(world.scope.forget[0].patient_id)
    ctx = VerifyContext(corpus=world.corpus, scope=world.scope, policy=VerdictPolicy(), candidate=model,
                        original=model)  # type: ignore[arg-type]
    return ctx, model


def test_twins_are_asked_under_the_kept_patient(study_request) -> None:
    ctx, model = study_request
    forget = [r for r in ctx.group("forget") if not r.eval_only]
    # at depth 2 the forget probes name the kept patient, and so do their twins: no excess
    named = ctx.compare(model, [Probe(r, 2) for r in forget])
    assert named["forget"].value == 1.0 and named["reference"].value == 1.0 and named["excess"].value == 0.0
    # without context neither does: the cue is the patient, not the forgotten study
    bare = ctx.compare(model, [Probe(r, 0) for r in forget])
    assert bare["forget"].value == 0.0 and bare["excess"].value == 0.0


def test_twin_under_borrows_only_the_kept_ancestors(study_request) -> None:
    ctx, _ = study_request
    forget, twin = ctx.group("forget")[0], ctx.group("holdout")[0]
    assert ctx.kept_depth(forget) == 2  # a study: its institution and patient are kept
    placed = ctx.twin_under(twin, forget, 4)
    assert placed.patient_id == forget.patient_id and placed.institution_id == forget.institution_id
    assert placed.study_date == twin.study_date and placed.study_id == twin.study_id
    assert ctx.twin_under(twin, forget, 0) == twin


def test_a_batch_reads_each_record_at_its_own_requests_level(study_request) -> None:
    ctx, model = study_request
    forget = [r for r in ctx.group("forget") if not r.eval_only]
    # the same records forgotten by a patient-level request of the batch: the patient is not kept
    ctx.scope = replace(ctx.scope, forget_levels=dict.fromkeys((r.record_id for r in forget), Level.PATIENT))
    twin = ctx.twin_under(ctx.group("holdout")[0], forget[0], 4)
    assert ctx.kept_depth(forget[0]) == 1 and twin.patient_id != forget[0].patient_id
    named = ctx.compare(model, [Probe(r, 2) for r in forget])  # the twins name their own patients now
    assert named["forget"].value == 1.0 and named["reference"].value == 0.0
