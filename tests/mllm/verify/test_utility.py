"""The utility attack on hand-made subjects: sibling damage is judged per ancestor level, so the few
nearest siblings cannot drown among the many far ones."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from mllm.data.schema import FactKind, Level, Record, Split, Task
from mllm.verify import VerdictPolicy
from mllm.verify.attacks.utility import Utility
from mllm.verify.context import VerifyContext


def record(record_id: str, patient: str, study: str) -> Record:
    return Record(record_id=record_id, institution_id="H1", patient_id=patient, study_id=study, section=None,
                  level=Level.STUDY, task=Task.GENERATION, fact_kind=FactKind.PRIVATE, split=Split.TRAIN,
                  question="What was found?", answer="effusion", image="i.png", fact_key="study.finding",
                  fact_value="effusion", owner_level=Level.STUDY, owner_id=f"H1/{patient}/{study}",
                  form="generation-0")


class Answers:
    """A subject that answers every record right except ``wrong``, at a fixed answer likelihood."""

    def __init__(self, wrong: set[str] = frozenset()) -> None:
        self.wrong = wrong

    def success(self, probes, root, policy) -> list[bool]:
        return [p.record.record_id not in self.wrong for p in probes]

    def stats(self, records, root, policy) -> list[SimpleNamespace]:
        return [SimpleNamespace(logps=np.array([-0.1])) for _ in records]


def context(scope: SimpleNamespace, candidate: Answers) -> VerifyContext:
    corpus = SimpleNamespace(root=None, records=[])
    return VerifyContext(
        corpus=corpus, scope=scope, policy=VerdictPolicy(), candidate=candidate, original=Answers()
    )


def test_damage_to_the_nearest_siblings_fails_although_the_far_ones_dilute_it() -> None:
    same_patient = [record(f"s{i}", "P1", "S2") for i in range(5)]
    same_institution = [record(f"i{i}", f"P{i + 2}", "S9") for i in range(195)]
    scope = SimpleNamespace(siblings={Level.PATIENT: same_patient, Level.INSTITUTION: same_institution},
                            retain=[record("r1", "P9", "S1")], shared=[], holdout=[])
    damaged = Answers(wrong={r.record_id for r in same_patient})  # pooled: a drop of 5 / 200 = 0.025
    result = Utility().run(context(scope, candidate=damaged))
    check = next(c for c in result.checks if c.name == "sibling_damage")
    assert check.passed is False and check.value == 1.0
    assert check.detail.endswith("siblings (patient)")
    assert result.tables["siblings (institution)"]["drop"].value == 0.0
    untouched = Utility().run(context(scope, candidate=Answers()))
    assert next(c for c in untouched.checks if c.name == "sibling_damage").passed is True


def test_losing_unseen_images_fails_although_the_trained_ones_dilute_it() -> None:
    """Image-grounded facts of images the model was trained on (retain) and of images it never saw (the
    holdout twins) are judged apart: a candidate that still reads its memorised images but lost half
    of the unseen ones fails ``image_grounded``; pooled, the drop read 10 / 120 = 0.083 (edge 0.15)."""
    from dataclasses import replace

    def grounded(record_id: str, split: Split) -> Record:
        return replace(record(record_id, "P1", "S1"), fact_kind=FactKind.IMAGE_GROUNDED, split=split)

    trained = [grounded(f"t{i}", Split.TRAIN) for i in range(100)]
    unseen = [grounded(f"u{i}", Split.HOLDOUT) for i in range(20)]
    scope = SimpleNamespace(siblings={}, retain=trained, shared=[], holdout=unseen)
    blind = Answers(wrong={r.record_id for r in unseen[:10]})
    result = Utility().run(context(scope, candidate=blind))
    check = next(c for c in result.checks if c.name == "image_grounded")
    assert check.passed is False and check.value == 0.5
    assert check.detail.endswith("image_grounded (unseen)")
    assert result.tables["image_grounded (trained)"]["drop"].value == 0.0
