"""Uncertainty: bootstrap confidence intervals and paired tests, from scipy.

Everything works on per-sample values read from the records, so every
interval can be recomputed from disk. Resampling is seeded: the same records
give the same intervals.

The means, medians and percentiles of a bootstrap are computed here, vectorized, over exactly the resamples
``scipy.stats.bootstrap`` draws (the same generator and draws, the same percentile interval): the same numbers
to the last bit, about 50 times faster, which a store of 100 models x 50 tasks needs. The resample indices of
``n`` items depend only on ``n`` and the seed, so they are drawn once and shared by every model of a task.
Any other statistic goes through scipy itself.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from harness.serialize import Serializable

CONFIDENCE = 0.95
N_RESAMPLES = 2000


@dataclass(frozen=True)
class Estimate(Serializable):
    """A point estimate with its 95% confidence interval."""

    value: float
    low: float
    high: float
    n: int
    method: str

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


@functools.lru_cache(maxsize=4)
def resample_indices(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The item indices of scipy's bootstrap of ``n`` items: (first sample's, second independent sample's) resamples."""
    rng = np.random.default_rng(seed)
    first = rng.integers(0, n, (N_RESAMPLES, n), dtype=np.int64)
    second = rng.integers(0, n, (N_RESAMPLES, n), dtype=np.int64)
    first.flags.writeable = second.flags.writeable = False
    return first, second


# a task's reference is compared with every other model over the same resamples: its resampled statistics are
# computed once (keyed by the values themselves, so a hit is always the same numbers)
_MEMO: dict[tuple[Any, ...], np.ndarray] = {}
_MEMO_ENTRIES = 4096


def _memo(kind: Any, x: np.ndarray, seed: int, draw: int, compute: Callable[[], np.ndarray]) -> np.ndarray:
    key = (kind, len(x), seed, draw, np.ascontiguousarray(x, dtype=float).tobytes())
    hit = _MEMO.get(key)
    if hit is None:
        if len(_MEMO) >= _MEMO_ENTRIES:
            _MEMO.clear()
        hit = _MEMO[key] = compute()
    return hit


def _percentile_interval(theta: np.ndarray, value: float) -> tuple[float, float]:
    """scipy.stats.bootstrap's percentile interval of a bootstrap distribution: ``scipy.stats.quantile``'s linear
    method (Hyndman and Fan's 7th) operation for operation, without its input checks (1 ms a call, 55,000 calls in
    a store of 100 models)."""
    if np.isnan(theta).any():  # scipy propagates NaN: no interval
        return value, value
    alpha = np.asarray((1 - CONFIDENCE) / 2, dtype=theta.dtype)
    p = np.stack((alpha, 1 - alpha), axis=-1)
    n = np.asarray(len(theta), dtype=theta.dtype)
    jg = p * n + (1 - p)
    jp1 = jg // 1
    j = jp1 - 1
    g = jg % 1
    g[j < 0] = 0
    lo, hi = np.clip(j, 0.0, n - 1).astype(np.int64), np.clip(jp1, 0.0, n - 1).astype(np.int64)
    y = np.partition(theta, np.unique(np.concatenate([lo, hi])))  # the four order statistics, as a sort puts them
    ci = (1 - g) * y[lo] + g * y[hi]
    return float(ci[0]), float(ci[1])


def _lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """numpy's own interpolation between order statistics (np.percentile, method linear), operation for operation."""
    diff_b_a = np.subtract(b, a)
    out: np.ndarray = np.asanyarray(np.add(a, diff_b_a * t))
    np.subtract(b, diff_b_a * (1 - t), out=out, where=t >= 0.5, casting="unsafe", dtype=out.dtype)
    return out


_SORTED: dict[tuple[Any, ...], np.ndarray] = {}
_SORTED_ENTRIES = 4  # 3 MB each at 200 items: a model's latencies, shared by its percentiles and its median


def _order_statistics(x: np.ndarray, seed: int, draw: int, ks: np.ndarray) -> np.ndarray:
    """The ks-th smallest values (0-based) of every resample of ``x``, shape (resamples, len(ks)).

    One vectorized sort of all resamples (numpy sorts floats with SIMD) instead of np.percentile's partition per
    percentile: the same values, five times faster; the last few sorts are kept, for the median after the percentiles."""
    key = (len(x), seed, draw, np.ascontiguousarray(x, dtype=float).tobytes())
    ordered = _SORTED.get(key)
    if ordered is None:
        if len(_SORTED) >= _SORTED_ENTRIES:
            _SORTED.pop(next(iter(_SORTED)))
        ordered = _SORTED[key] = np.sort(x[resample_indices(len(x), seed)[draw]], axis=1)
    return np.asarray(ordered[:, ks])


def resampled_percentiles(x: np.ndarray, seed: int, qs: Sequence[float], draw: int = 0) -> np.ndarray:
    """np.percentile(x[idx], qs, axis=1) over the seed's resamples, shape (len(qs), resamples), without sorting them."""

    def compute() -> np.ndarray:
        n = len(x)
        virtual = (n - 1) * (np.asarray(qs, dtype=float) / 100)
        lo = np.floor(virtual).astype(np.int64)
        hi = np.minimum(lo + 1, n - 1)
        stat = _order_statistics(x, seed, draw, np.concatenate([lo, hi]))
        gamma = virtual - lo
        return np.asarray(_lerp(stat[:, : len(qs)], stat[:, len(qs) :], gamma[None, :]).T)

    return _memo(("percentiles", tuple(qs)), x, seed, draw, compute)


def resampled_medians(x: np.ndarray, seed: int, draw: int = 0) -> np.ndarray:
    """np.median of every resample: the middle value, or the mean of the two middle ones."""

    def compute() -> np.ndarray:
        n = len(x)
        if n % 2:
            return _order_statistics(x, seed, draw, np.array([n // 2]))[:, 0]
        mid = _order_statistics(x, seed, draw, np.array([n // 2 - 1, n // 2]))
        return np.asarray((mid[:, 0] + mid[:, 1]) / 2)

    return _memo("median", x, seed, draw, compute)


def resampled_means(x: np.ndarray, seed: int, draw: int = 0) -> np.ndarray:
    """The mean of every resample (gathered, so each sums in the order scipy's would)."""
    return _memo("mean", x, seed, draw, lambda: np.asarray(x[resample_indices(len(x), seed)[draw]].mean(axis=1)))


def _resampled(statistic: Callable[..., Any], x: np.ndarray, seed: int, draw: int) -> Optional[np.ndarray]:
    """The statistic over every resample, where it is one computed here (mean, median); None: let scipy do it."""
    if statistic is np.mean:
        return resampled_means(x, seed, draw)
    if statistic is np.median:
        return resampled_medians(x, seed, draw)
    return None


def bootstrap_ci(values: ArrayLike, statistic: Callable[..., float] = np.mean, seed: int = 0) -> Estimate:
    """Percentile-bootstrap 95% CI of ``statistic`` over independent samples."""
    arr = np.asarray(values, dtype=float)
    value = float(statistic(arr))
    if len(arr) < 2:
        return Estimate(value, value, value, len(arr), "n<2: no interval")
    theta = _resampled(statistic, arr, seed, 0)
    low, high = (
        _interval(_bootstrap((arr,), statistic, seed), value) if theta is None else _percentile_interval(theta, value)
    )
    return Estimate(value, low, high, len(arr), "bootstrap percentile")


def paired_difference(a: ArrayLike, b: ArrayLike, seed: int = 0) -> Estimate:
    """mean(a) - mean(b) over the same items, with a paired bootstrap 95% CI."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape:
        raise ValueError("paired comparison needs the same items for both models")
    value = float(x.mean() - y.mean())
    if len(x) < 2:
        return Estimate(value, value, value, len(x), "n<2: no interval")
    # paired: both sides resampled by the same items
    low, high = _percentile_interval(resampled_means(x, seed) - resampled_means(y, seed), value)
    return Estimate(value, low, high, len(x), "paired bootstrap percentile")


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den != 0, num / np.where(den != 0, den, 1.0), np.nan)


def ratio_of_statistics(
    a: ArrayLike, b: ArrayLike, statistic: Callable[..., float] = np.median, seed: int = 0
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
    if len(x) == len(y) and statistic in (np.mean, np.median):
        # scipy draws the first sample's resamples, then the second's
        num, den = _resampled(statistic, x, seed, 0), _resampled(statistic, y, seed, 1)
        assert num is not None and den is not None
        low, high = _percentile_interval(_ratio(num, den), value)
    else:
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


def percentile_cis(values: ArrayLike, qs: Sequence[float], seed: int = 0) -> list[Estimate]:
    """The qs-th percentiles (0-100), each with its bootstrap CI, from one pass over the resamples."""
    arr = np.asarray(values, dtype=float)
    points = [float(np.percentile(arr, q)) for q in qs]
    if len(arr) < 2:
        return [Estimate(v, v, v, len(arr), "n<2: no interval") for v in points]
    thetas = resampled_percentiles(arr, seed, qs)
    return [Estimate(v, *_percentile_interval(t, v), len(arr), "bootstrap percentile") for v, t in zip(points, thetas)]


@dataclass(frozen=True)
class McNemar(Serializable):
    """Exact McNemar test on paired correct/incorrect outcomes."""

    small_only: int  # items the small model got right and the large one wrong
    large_only: int  # the reverse
    p_value: float


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
