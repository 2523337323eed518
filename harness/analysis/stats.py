"""Uncertainty: bootstrap confidence intervals and paired tests, from scipy.

Everything works on per-sample values read from the records, so every
interval can be recomputed from disk. Resampling is seeded: the same records
give the same intervals.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Optional

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

CONFIDENCE = 0.95
N_RESAMPLES = 2000


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its 95% confidence interval."""

    value: float
    low: float
    high: float
    n: int
    method: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def excludes(self, threshold: float) -> Optional[str]:
        """'above' / 'below' when the whole interval is on one side of ``threshold``, else None."""
        if self.low > threshold:
            return "above"
        if self.high < threshold:
            return "below"
        return None


def _bootstrap(data: tuple[np.ndarray, ...], statistic: Callable[..., Any], seed: int, paired: bool = False) -> Any:
    with warnings.catch_warnings():  # constant samples (e.g. all correct) are expected, not a problem
        warnings.simplefilter("ignore")
        return stats.bootstrap(
            data,
            statistic,
            paired=paired,
            n_resamples=N_RESAMPLES,
            confidence_level=CONFIDENCE,
            method="percentile",
            random_state=np.random.default_rng(seed),
            vectorized=False,
        )


def _interval(res: Any, value: float) -> tuple[float, float]:
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if np.isnan(low) or np.isnan(high):  # degenerate sample (all values equal): no spread
        return value, value
    return low, high


def bootstrap_ci(values: Sequence[float], statistic: Callable[..., float] = np.mean, seed: int = 0) -> Estimate:
    """Percentile-bootstrap 95% CI of ``statistic`` over independent samples."""
    arr = np.asarray(values, dtype=float)
    value = float(statistic(arr))
    if len(arr) < 2:
        return Estimate(value, value, value, len(arr), "n<2: no interval")
    res = _bootstrap((arr,), statistic, seed)
    low, high = _interval(res, value)
    return Estimate(value, low, high, len(arr), "bootstrap percentile")


def paired_difference(a: ArrayLike, b: ArrayLike, seed: int = 0) -> Estimate:
    """mean(a) - mean(b) over the same items, with a paired bootstrap 95% CI."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape:
        raise ValueError("paired comparison needs the same items for both models")
    value = float(x.mean() - y.mean())
    if len(x) < 2:
        return Estimate(value, value, value, len(x), "n<2: no interval")
    res = _bootstrap((x, y), lambda u, v: np.mean(u) - np.mean(v), seed, paired=True)
    low, high = _interval(res, value)
    return Estimate(value, low, high, len(x), "paired bootstrap percentile")


def ratio_of_statistics(
    a: Sequence[float], b: Sequence[float], statistic: Callable[..., float] = np.median, seed: int = 0
) -> Estimate:
    """statistic(a) / statistic(b) (e.g. median latency small / large) with a bootstrap CI.

    The two samples are resampled independently: latencies of two models are
    not paired in time even when the items are the same.
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if statistic(y) == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), min(len(x), len(y)), "undefined: denominator is 0")
    value = float(statistic(x) / statistic(y))
    if len(x) < 2 or len(y) < 2:
        return Estimate(value, value, value, min(len(x), len(y)), "n<2: no interval")
    res = _bootstrap((x, y), lambda u, v: statistic(u) / statistic(v) if statistic(v) else np.nan, seed)
    low, high = _interval(res, value)
    return Estimate(value, low, high, min(len(x), len(y)), "bootstrap percentile, independent resampling")


def paired_ratio(
    a: Sequence[float], b: Sequence[float], statistic: Callable[..., float] = np.median, seed: int = 0
) -> Estimate:
    """statistic(a) / statistic(b) over the same items, items resampled together (paired bootstrap).

    For one model measured twice on the same items (a regression check): an
    item's latency depends mostly on its length, so pairing removes that spread.
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape:
        raise ValueError("a paired ratio needs the same items")
    if statistic(y) == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), len(x), "undefined: denominator is 0")
    value = float(statistic(x) / statistic(y))
    if len(x) < 2:
        return Estimate(value, value, value, len(x), "n<2: no interval")
    res = _bootstrap((x, y), lambda u, v: statistic(u) / statistic(v) if statistic(v) else np.nan, seed, paired=True)
    low, high = _interval(res, value)
    return Estimate(value, low, high, len(x), "paired bootstrap percentile")


def percentile_ci(values: Sequence[float], q: float, seed: int = 0) -> Estimate:
    """The q-th percentile (0-100) with a bootstrap CI."""
    return bootstrap_ci(values, lambda v: float(np.percentile(v, q)), seed=seed)


@dataclass(frozen=True)
class McNemar:
    """Exact McNemar test on paired correct/incorrect outcomes."""

    small_only: int  # items the small model got right and the large one wrong
    large_only: int  # the reverse
    p_value: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def mcnemar_exact(small_correct: Sequence[bool], large_correct: Sequence[bool]) -> McNemar:
    """Two-sided exact McNemar: a binomial test on the discordant pairs (scipy.stats.binomtest)."""
    if len(small_correct) != len(large_correct):
        raise ValueError("McNemar needs the same items for both models")
    s_only = sum(bool(s) and not bool(l) for s, l in zip(small_correct, large_correct))
    l_only = sum(bool(l) and not bool(s) for s, l in zip(small_correct, large_correct))
    n = s_only + l_only
    p = 1.0 if n == 0 else float(stats.binomtest(s_only, n, 0.5, alternative="two-sided").pvalue)
    return McNemar(s_only, l_only, p)


def spearman(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Spearman rank correlation and its p-value (scipy); nan where either side is constant."""
    import warnings

    with warnings.catch_warnings():  # constant input is an expected case (e.g. every summary scores 0), reported as nan
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        res = stats.spearmanr(x, y)
    return float(res.statistic), float(res.pvalue)
