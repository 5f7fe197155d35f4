"""``hierarchy``'s likelihood ceiling: which true answers it pushes down, and to where."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from mllm.data.qa import format_choices
from mllm.data.schema import FactKind, Task
from mllm.unlearn.data import Item
from mllm.unlearn.methods import hierarchy

from .test_targets import grounded


def test_every_retargeted_fact_is_held_to_the_ceiling_in_the_form_membership_scores() -> None:
    """Image-grounded facts too (their memorised answers kept the forgotten images apart from unseen
    ones), and a multiple-choice record as its option text (a letter has chance likelihood)."""
    image = grounded("g1", "nodule")
    choice = replace(grounded("c1", "B", fact="patient.name", task=Task.CLASSIFICATION),
                     fact_kind=FactKind.PRIVATE, fact_value="Ada Smith",
                     question=format_choices("Whose scan is this?", ("Bo Li", "Ada Smith", "Cy Ng", "Di Wu")))
    unparsable = replace(choice, record_id="c2", question="Whose scan is this?")
    asked = [Item(image, "effusion", 3), Item(choice, "C", 2), Item(unparsable, "A", 0)]
    truth = hierarchy.answer_text(asked)
    assert [(i.record.record_id, i.record.question, i.answer, i.depth) for i in truth] == [
        ("g1", image.question, "nodule", 3), ("c1", "Whose scan is this?", "Ada Smith", 2)]
    assert truth[1].record.task is Task.GENERATION


@pytest.fixture
def method(monkeypatch) -> hierarchy.Hierarchy:
    """A ``Hierarchy`` whose model reads every never-trained answer at mean log-prob −7 (the
    likelihood functions stubbed; the ceiling it starts from is −5)."""
    seen: list[float] = []
    monkeypatch.setattr(hierarchy, "mean_content_logprob", lambda *a: torch.tensor([-7.0, -7.0]))
    monkeypatch.setattr(hierarchy, "likelihood_excess",
                        lambda model, batch, stop_ids, ceiling: seen.append(ceiling) or torch.tensor(0.0))
    method = object.__new__(hierarchy.Hierarchy)
    method.config, method.stop_ids, method.ceiling = hierarchy.HierarchyConfig(kept_kl=0), (), -5.0
    method.model = SimpleNamespace(training=True)
    method.seen = seen
    return method


def test_the_ceiling_follows_the_never_trained_answers_as_the_model_trains(method) -> None:
    """Unlearning lowers never-seen answers too: a ceiling fixed before training left the forgotten
    answers above them (demo corpus: membership AUC 0.65 against 0.61 with the ceiling following)."""
    for _ in range(60):
        method.loss({"truth": "T", "unseen": "U"})
    assert method.seen[0] == pytest.approx(-5.2)  # one step: 0.9 · (−5) + 0.1 · (−7)
    assert method.seen[-1] == pytest.approx(-7.0, abs=0.01)
    assert all(a > b for a, b in zip(method.seen, method.seen[1:], strict=False))


def test_scoring_outside_training_leaves_the_ceiling_alone(method) -> None:
    method.model.training = False  # the run's before/after probe of the loss
    method.loss({"truth": "T", "unseen": "U"})
    assert method.seen == [-5.0] and method.ceiling == -5.0
