"""Which calibration candidates a scope admits: an institution has no sibling to damage."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from mllm.data.schema import Level
from mllm.verify.calibration import CANDIDATES, applicable, build_candidate


def test_sibling_damage_needs_a_sibling() -> None:
    institution = SimpleNamespace(siblings={}, forget=(), retain=(), all_siblings=(), shared=())
    patient = SimpleNamespace(siblings={Level.INSTITUTION: ("r1",)})
    assert not applicable("sibling-damaged", institution)
    assert applicable("sibling-damaged", patient)
    assert all(applicable(name, institution) for name in CANDIDATES if name != "sibling-damaged")
    with pytest.raises(ValueError, match="does not apply"):
        build_candidate("sibling-damaged", corpus=None, scope=institution, original=None, oracle=None)
