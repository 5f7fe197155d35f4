"""The collapse guard's accuracy checks count a drop only when it is significant (hand-made hits)."""

import pytest

from mllm.unlearn.guard import GuardPolicy, significant_drop


def _pair(lost: int, gained: int, n: int = 48) -> tuple[list[bool], list[bool]]:
    """Per-record hits of the original and the candidate: ``lost`` right → wrong, ``gained`` wrong → right."""
    before = [True] * lost + [False] * gained + [False] * (n - lost - gained)
    after = [False] * lost + [True] * gained + [False] * (n - lost - gained)
    return before, after


@pytest.mark.parametrize(("lost", "gained", "significant"), [
    (6, 0, True),  # 0.125 lost, every change a loss: refused
    (12, 4, True),  # 0.167 net
    (10, 4, False),  # 0.125 net, but records flipped both ways: inside the noise of 48 records
    (8, 2, False),
])
def test_a_drop_counts_only_when_its_interval_excludes_zero(lost, gained, significant):
    before, after = _pair(lost, gained)
    result, interval = significant_drop(before, after, GuardPolicy())
    assert result is significant
    assert interval.startswith("drop 95 % interval ")


def test_without_significance_every_material_drop_counts():
    before, after = _pair(10, 4)
    assert significant_drop(before, after, GuardPolicy(require_significance=False))[0] is True
