"""Pinned statistics of the verifier: intervals, AUC, PrivLeak and the four membership scores.

Every figure in a report carries its sample size and an interval (:class:`Estimate`). The
definitions below are the only ones used, and the report names them (``DEFINITIONS``).

Membership scores (computed from fp32 answer-token log-probabilities; **higher = more member-like**):

* ``loss`` — minus the mean token negative log-likelihood of the answer.
* ``zlib`` — minus (mean token NLL in nats / length in bytes of ``zlib.compress(answer, 9)``),
  the zlib-entropy ratio of Carlini et al. (2021).
* ``min_k`` — Min-K% Prob (Shi et al., 2024): the mean of the ``ceil(k * n)`` lowest token
  log-probabilities (at least one token), ``k = 0.2``.
* ``min_k_plus`` — Min-K%++ (Zhang et al., 2024): each token's log-probability standardised by the
  mean ``mu = sum_v p(v) log p(v)`` and standard deviation ``sigma = sqrt(sum_v p(v) (log p(v))^2 -
  mu^2)`` of the log-probability under the model's own next-token distribution, then the mean of the
  ``ceil(k * n)`` lowest standardised values, ``k = 0.2``.

AUC is scikit-learn's ``roc_auc_score`` with members (forget items) labelled 1 and never-trained
holdout twins 0, so 0.5 is "cannot tell", 1.0 "every forget item looks trained" and 0.0 "every
forget item looks *less* likely than a never-seen one" (over-forgetting). PrivLeak (MUSE) is
``(AUC_candidate - AUC_oracle) / AUC_oracle``.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from sklearn.metrics import roc_auc_score

MIN_K = 0.2
Z_95 = 1.959963984540054
BOOTSTRAP_SAMPLES = 1000

DEFINITIONS = {
    "success_rate": "fraction of probes whose greedy answer reproduces the reference answer "
    "(classification/cloze: task exact match; generation: exact match or ROUGE-L F1 "
    ">= policy.rouge_l_success) or mentions the fact's value (whole words, normalised); "
    "Wilson 95% interval",
    "excess": "success rate on forget probes minus the matched reference rate (mean over forget "
    "items of the holdout-twin success rate in the same task x fact kind x level stratum)",
    "shortfall": "1 - forget success rate / matched reference rate: the share of what never-trained "
    "twins get right that the forget probes miss (undefined when the reference rate is 0)",
    "loss": "minus mean answer-token NLL (nats, fp32)",
    "zlib": "minus mean answer-token NLL / len(zlib.compress(answer utf-8, level 9))",
    "min_k": f"mean of the ceil({MIN_K}*n) lowest answer-token log-probs",
    "min_k_plus": f"Min-K%++: mean of the ceil({MIN_K}*n) lowest (log p - mu) / sigma, mu and sigma "
    "of log p under the model's next-token distribution",
    "auc": "sklearn roc_auc_score, forget = 1, holdout twins = 0; 95% percentile bootstrap "
    f"({BOOTSTRAP_SAMPLES} resamples, seed 0)",
    "privleak": "(AUC_candidate - AUC_oracle) / AUC_oracle (MUSE), loss score",
    "drop": "original success rate minus candidate success rate on the same probes",
}


@dataclass(frozen=True)
class Estimate:
    """A figure with its sample size and 95% interval (``method`` names how it was computed)."""

    value: float
    n: int
    low: float
    high: float
    method: str

    def as_dict(self) -> dict[str, float | int | str]:
        return {
            "value": _round(self.value),
            "n": self.n,
            "low": _round(self.low),
            "high": _round(self.high),
            "method": self.method,
        }


def _round(value: float) -> float:
    return round(float(value), 6) if math.isfinite(value) else float("nan")


def wilson(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for ``successes`` out of ``n`` (``(0, 1)`` when ``n == 0``)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def rate(flags: Sequence[bool]) -> Estimate:
    """Success rate with its Wilson interval (``nan`` when there is nothing to rate)."""
    n = len(flags)
    hits = sum(bool(f) for f in flags)
    low, high = wilson(hits, n)
    return Estimate(hits / n if n else math.nan, n, low, high, "wilson95")


def _resample(rng: np.random.Generator, size: int) -> np.ndarray:
    return rng.integers(0, size, (BOOTSTRAP_SAMPLES, size))


def difference(a: Sequence[float], b: Sequence[float], *, seed: int = 0) -> Estimate:
    """``mean(a) - mean(b)`` with a 95% percentile bootstrap interval (each side resampled)."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.size == 0 or y.size == 0:
        return Estimate(math.nan, int(min(x.size, y.size)), math.nan, math.nan, "bootstrap95")
    rng = np.random.default_rng(seed)
    draws = x[_resample(rng, x.size)].mean(axis=1) - y[_resample(rng, y.size)].mean(axis=1)
    return Estimate(
        float(x.mean() - y.mean()),
        int(min(x.size, y.size)),
        float(np.quantile(draws, 0.025)),
        float(np.quantile(draws, 0.975)),
        "bootstrap95",
    )


def paired_difference(a: Sequence[float], b: Sequence[float], *, seed: int = 0) -> Estimate:
    """``mean(a - b)`` over paired items with a 95% percentile bootstrap interval (items resampled)."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if d.size == 0:
        return Estimate(math.nan, 0, math.nan, math.nan, "paired bootstrap95")
    draws = d[_resample(np.random.default_rng(seed), d.size)].mean(axis=1)
    return Estimate(
        float(d.mean()),
        int(d.size),
        float(np.quantile(draws, 0.025)),
        float(np.quantile(draws, 0.975)),
        "paired bootstrap95",
    )


def paired_ratio(a: Sequence[float], b: Sequence[float], *, seed: int = 0) -> Estimate:
    """``mean(a) / mean(b)`` over paired items (e.g. a model's successes over its original's on the same
    records) with a 95% percentile bootstrap interval (items resampled; ``nan`` where ``b`` is all 0)."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.size == 0 or x.size != y.size or not y.any():
        return Estimate(math.nan, int(x.size), math.nan, math.nan, "paired bootstrap95")
    index = _resample(np.random.default_rng(seed), x.size)
    with np.errstate(divide="ignore", invalid="ignore"):
        draws = x[index].mean(axis=1) / y[index].mean(axis=1)
    draws = draws[np.isfinite(draws)]
    return Estimate(
        float(x.mean() / y.mean()),
        int(x.size),
        float(np.quantile(draws, 0.025)),
        float(np.quantile(draws, 0.975)),
        "paired bootstrap95",
    )


def auc(members: Sequence[float], nonmembers: Sequence[float], *, seed: int = 0) -> Estimate:
    """ROC AUC of ``members`` (label 1) vs ``nonmembers`` (label 0) with a bootstrap interval.

    The point value is scikit-learn's; the resamples use the identical Mann-Whitney form (share of
    member/non-member pairs ordered correctly, ties counting one half) on the pair matrix, which is
    what makes 1,000 resamples cheap.
    """
    m, h = np.asarray(members, dtype=np.float64), np.asarray(nonmembers, dtype=np.float64)
    if m.size == 0 or h.size == 0:
        return Estimate(math.nan, int(min(m.size, h.size)), math.nan, math.nan, "bootstrap95")
    value = float(roc_auc_score(np.r_[np.ones(m.size), np.zeros(h.size)], np.r_[m, h]))
    pairs = (m[:, None] > h[None, :]) + 0.5 * (m[:, None] == h[None, :])
    rng = np.random.default_rng(seed)
    rows, cols = _resample(rng, m.size), _resample(rng, h.size)
    draws = np.array([pairs[np.ix_(r, c)].mean() for r, c in zip(rows, cols, strict=True)])
    return Estimate(
        value,
        int(min(m.size, h.size)),
        float(np.quantile(draws, 0.025)),
        float(np.quantile(draws, 0.975)),
        "bootstrap95",
    )


class Matched(NamedTuple):
    """Probes against their never-trained twins (:func:`matched_excess`)."""

    reference: Estimate
    excess: Estimate
    shortfall: Estimate


def matched_excess(
    success: Sequence[bool], twins: Sequence[np.ndarray], items: Sequence[str], *, seed: int = 0
) -> Matched:
    """Matched reference, excess and shortfall of probes against their never-trained twins, per item.

    ``twins[j]`` holds the success flags of probe ``j``'s matched twins (probes of one stratum share
    the array). Per item, excess = mean over its probes of (success - twin mean); the estimate is the
    mean over items. Shortfall = minus the excess over the reference (``DEFINITIONS``), ``nan`` when
    the reference is 0. Interval: two-level percentile bootstrap — each distinct twin array
    resampled, then the items resampled — so both the forget side and the reference's sampling noise
    count.
    """
    names = list(dict.fromkeys(items))
    column = np.array([names.index(i) for i in items])
    counts = np.bincount(column, minlength=len(names)).astype(np.float64)
    rng = np.random.default_rng(seed)
    distinct = {id(a): a for a in twins}
    draws = {key: a[_resample(rng, a.size)].mean(axis=1) for key, a in distinct.items()}
    ref_point = np.array([t.mean() for t in twins])
    ref_draws = np.stack([draws[id(t)] for t in twins], axis=1)  # [B, probes]
    hits = np.asarray(success, dtype=np.float64)

    def per_item(values: np.ndarray) -> np.ndarray:  # [..., probes] -> [..., items]
        out = np.zeros((*values.shape[:-1], len(names)))
        for j, item in enumerate(column):
            out[..., item] += values[..., j]
        return out / counts

    item_ref, item_excess = per_item(ref_point), per_item(hits - ref_point)
    pick = _resample(rng, len(names))
    boot_ref = np.take_along_axis(per_item(ref_draws), pick, axis=1).mean(axis=1)
    boot_excess = np.take_along_axis(per_item(hits[None, :] - ref_draws), pick, axis=1).mean(axis=1)

    def estimate(point: float, boot: np.ndarray) -> Estimate:
        finite = boot[np.isfinite(boot)]  # a shortfall draw whose reference resampled to 0 has none
        low, high = np.quantile(finite, [0.025, 0.975]) if finite.size else (math.nan, math.nan)
        return Estimate(point, len(names), float(low), float(high), "two-level bootstrap95 (twins, items)")

    ref, excess = float(item_ref.mean()), float(item_excess.mean())
    with np.errstate(divide="ignore", invalid="ignore"):
        boot_shortfall = np.where(boot_ref > 0, -boot_excess / boot_ref, np.nan)
    return Matched(
        estimate(ref, boot_ref),
        estimate(excess, boot_excess),
        estimate(-excess / ref if ref > 0 else math.nan, boot_shortfall),
    )


def privleak(auc_candidate: float, auc_oracle: float) -> float:
    """MUSE PrivLeak; ``nan`` (never a silent fallback) when the oracle AUC is 0 or undefined."""
    if not math.isfinite(auc_oracle) or auc_oracle == 0:
        return math.nan
    return (auc_candidate - auc_oracle) / auc_oracle


# ---- membership scores of one answer ----


def _lowest_mean(values: np.ndarray, k: float = MIN_K) -> float:
    count = max(1, math.ceil(k * values.size))
    return float(np.sort(values)[:count].mean())


def loss_score(logps: Sequence[float]) -> float:
    return float(np.mean(np.asarray(logps, dtype=np.float64)))


def zlib_score(logps: Sequence[float], text: str) -> float:
    nll = -float(np.mean(np.asarray(logps, dtype=np.float64)))
    return -nll / len(zlib.compress(text.encode("utf-8"), 9))


def min_k_score(logps: Sequence[float], k: float = MIN_K) -> float:
    return _lowest_mean(np.asarray(logps, dtype=np.float64), k)


def min_k_plus_score(
    logps: Sequence[float], mu: Sequence[float], sigma: Sequence[float], k: float = MIN_K
) -> float:
    z = (np.asarray(logps, np.float64) - np.asarray(mu, np.float64)) / np.maximum(
        np.asarray(sigma, np.float64), 1e-12
    )
    return _lowest_mean(z, k)


MIA_SCORES = ("loss", "zlib", "min_k", "min_k_plus")


def membership_scores(
    logps: Sequence[float], mu: Sequence[float], sigma: Sequence[float], text: str
) -> dict[str, float]:
    """The four pinned membership scores of one answer (see the module docstring)."""
    return {
        "loss": loss_score(logps),
        "zlib": zlib_score(logps, text),
        "min_k": min_k_score(logps),
        "min_k_plus": min_k_plus_score(logps, mu, sigma),
    }
