"""Each pinned statistic on hand-made cases (values worked out by hand, not by the code under test)."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest

from mllm.verify import stats


def test_wilson_interval_matches_the_textbook_values() -> None:
    low, high = stats.wilson(8, 10)  # p = 0.8, n = 10: Wilson 95% = [0.490, 0.943]
    assert low == pytest.approx(0.4902, abs=1e-3) and high == pytest.approx(0.9433, abs=1e-3)
    assert stats.wilson(0, 0) == (0.0, 1.0)
    zero = stats.rate([False] * 5)
    assert zero.value == 0 and zero.low == 0 and zero.high == pytest.approx(0.4345, abs=1e-3)


def test_auc_counts_ordered_pairs_and_half_ties() -> None:
    # members 3, 2; non-members 1, 2 -> pairs (3>1, 3>2, 2>1, 2=2) = 3.5 / 4
    assert stats.auc([3, 2], [1, 2]).value == pytest.approx(0.875)
    assert stats.auc([0.9, 0.8], [0.1, 0.2]).value == 1.0
    assert stats.auc([0.1, 0.2], [0.9, 0.8]).value == 0.0
    spread = stats.auc([1, 2, 3, 4], [1.5, 2.5, 3.5, 0.5])
    assert spread.low <= spread.value <= spread.high and spread.n == 4
    assert math.isnan(stats.auc([], [1.0]).value)


def test_privleak_is_relative_to_the_oracle_and_never_falls_back() -> None:
    assert stats.privleak(0.75, 0.5) == pytest.approx(0.5)
    assert stats.privleak(0.25, 0.5) == pytest.approx(-0.5)
    assert math.isnan(stats.privleak(0.7, 0.0)) and math.isnan(stats.privleak(0.7, float("nan")))


def test_membership_scores_on_hand_made_log_probs() -> None:
    logps = [-0.1, -2.0, -0.5, -3.0, -0.2]
    assert stats.loss_score(logps) == pytest.approx(-1.16)
    text = "levothyroxine"
    assert stats.zlib_score(logps, text) == pytest.approx(-1.16 / len(zlib.compress(text.encode(), 9)))
    assert stats.min_k_score(logps) == pytest.approx(-3.0)  # ceil(0.2 * 5) = 1 lowest token
    assert stats.min_k_score(logps, k=0.4) == pytest.approx(-2.5)  # two lowest: -3.0, -2.0
    # Min-K%++: (logp - mu) / sigma per token, then the lowest 20 %
    mu, sigma = [-1.0] * 5, [0.5, 1.0, 0.5, 2.0, 1.0]
    z = [(-0.1 + 1) / 0.5, (-2 + 1) / 1, (-0.5 + 1) / 0.5, (-3 + 1) / 2, (-0.2 + 1) / 1]
    assert stats.min_k_plus_score(logps, mu, sigma) == pytest.approx(min(z))
    assert set(stats.membership_scores(logps, mu, sigma, text)) == set(stats.MIA_SCORES)


def test_paired_difference_and_difference_intervals_contain_the_value() -> None:
    same = stats.paired_difference([1, 1, 0, 1], [1, 1, 0, 1])
    assert same.value == 0 and same.low == 0 and same.high == 0
    drop = stats.paired_difference([1, 1, 1, 1], [0, 0, 1, 1])
    assert drop.value == pytest.approx(0.5) and drop.low <= 0.5 <= drop.high
    gap = stats.difference([1, 1, 1], [0, 0, 0])
    assert gap.value == 1 and gap.low == 1 and gap.high == 1


def test_paired_ratio_resamples_the_pairs_together() -> None:
    same = stats.paired_ratio([1, 0, 1, 0], [1, 0, 1, 0])  # every resample: the same items on both sides
    assert same.value == 1 and same.low == 1 and same.high == 1
    # 3 of 4 kept from 4 of 4: 0.75; a resample holds k of the kept and 4-k of the lost one -> k/4
    lost_one = stats.paired_ratio([1, 1, 1, 0], [1, 1, 1, 1])
    assert lost_one.value == pytest.approx(0.75) and lost_one.low < 0.75 < lost_one.high <= 1
    assert math.isnan(stats.paired_ratio([1, 1], [0, 0]).value)  # nothing to keep: no ratio
    assert math.isnan(stats.paired_ratio([1], [1, 1]).value)  # not paired


def test_matched_excess_averages_per_item_against_its_twins() -> None:
    twins_a, twins_b = np.array([1.0, 0.0]), np.array([0.0, 0.0, 0.0])
    # item x: two probes, both succeed, twins a (rate 0.5) -> excess 0.5; item y: fails, twins b -> 0
    reference, excess, _ = stats.matched_excess(
        [True, True, False], [twins_a, twins_a, twins_b], ["x", "x", "y"]
    )
    assert reference.value == pytest.approx(0.25) and excess.value == pytest.approx(0.25)
    assert excess.n == 2 and excess.low <= 0.25 <= excess.high
    # a twin stratum that is itself uncertain widens the interval
    sure = stats.matched_excess([True] * 4, [np.zeros(50)] * 4, list("abcd")).excess
    unsure = stats.matched_excess([True] * 4, [np.array([0.0, 1.0])] * 4, list("abcd")).excess
    assert sure.high - sure.low < unsure.high - unsure.low


def test_shortfall_is_the_share_of_the_twins_success_the_forget_set_misses() -> None:
    twins = [np.array([1.0, 0.0, 0.0, 0.0] * 10)] * 40  # never-trained twins: right on 25 %
    items = [f"r{i}" for i in range(40)]
    # none right where strangers get 25 %: the whole reference missed, and surely so
    none = stats.matched_excess([False] * 40, twins, items).shortfall
    assert none.value == pytest.approx(1.0) and none.low > 0.5
    # right on 5 of 40 (12.5 %): half of the reference missed
    half = stats.matched_excess([i < 5 for i in range(40)], twins, items).shortfall
    assert half.value == pytest.approx(0.5) and half.low < 0.5 < half.high
    # at or above the reference: no shortfall (negative: answered better than strangers)
    assert stats.matched_excess([i < 10 for i in range(40)], twins, items).shortfall.value == pytest.approx(0)
    assert stats.matched_excess([True] * 40, twins, items).shortfall.value == pytest.approx(-3.0)
    # strangers never right: nothing to fall short of
    zero = stats.matched_excess([False] * 40, [np.zeros(40)] * 40, items).shortfall
    assert math.isnan(zero.value) and math.isnan(zero.low)
