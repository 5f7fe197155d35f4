"""The relearning attack on a candidate its fine-tuning steps cannot move."""

from __future__ import annotations

import copy
from dataclasses import replace

import torch

from mllm.verify import VerdictPolicy
from mllm.verify.attacks.relearning import UNMOVED, Relearning
from mllm.verify.context import VerifyContext
from mllm.verify.verifier import subject


def test_a_candidate_without_gradients_fails_both_relearning_checks_closed(world) -> None:
    """An all-zero model passes no gradient, so the attack's steps change nothing: before, the
    verifier stopped with a traceback and no report; now recovery counts as unmeasurable and fails."""
    frozen = copy.deepcopy(world.original.model)
    with torch.no_grad():
        for param in frozen.parameters():
            param.zero_()
    candidate = subject("candidate", replace(world.original, model=frozen))
    ctx = VerifyContext(corpus=world.corpus, scope=world.scope, policy=VerdictPolicy(), candidate=candidate,
                        original=subject("original", world.original))
    result = Relearning().run(ctx)
    checks = {c.name: c for c in result.checks}
    for name in ("relearning_forget", "relearning_siblings"):
        assert checks[name].status == "fail" and checks[name].detail == UNMOVED, checks[name]
    assert result.tables["unmoved"] == ["candidate", "candidate (siblings)"]
