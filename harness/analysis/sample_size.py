"""How many items are enough: minimum detectable effects and sample sizes from a run's own paired differences.

A comparison's per-item differences (candidate minus reference on the same items:
0/±1 for accuracy, ROUGE differences for summaries) are tested as a paired
t-test: statsmodels' ``TTestPower`` on the differences, two-sided, 5% level, 80%
power (stated in every table). The paired t-test is the normal-theory version
of the paired bootstrap the verdicts use; at the sample sizes it proposes the
two agree closely, and it is the textbook planning formula (no formula of our
own: statsmodels solves it).

- minimum detectable effect at n: the smallest true mean difference the run
  would detect with that power, ``effect size x sd``;
- items to decide a threshold: the n at which the observed mean difference,
  ``|mean - threshold|`` away from a claim's threshold, would be detected at the
  observed spread -- the size of a follow-up run that would likely turn an
  inconclusive verdict into a decided one, if the observed difference is real.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
from numpy.typing import ArrayLike

from harness.serialize import Serializable

ALPHA = 0.05
POWER = 0.80


def _solver() -> Any:
    from statsmodels.stats.power import TTestPower

    return TTestPower()


def minimum_detectable_effect(sd: float, n: int, alpha: float = ALPHA, power: float = POWER) -> Optional[float]:
    """Smallest true mean difference a paired test on ``n`` items detects with ``power`` (None below 2 items)."""
    if n < 2:
        return None
    if sd == 0:
        return 0.0
    return _standardized_mde(n, alpha, power) * sd


@functools.lru_cache(maxsize=256)
def _standardized_mde(n: int, alpha: float, power: float) -> float:
    """The detectable effect in standard deviations: it depends on n only (a root search, 7 ms: once per n)."""
    return float(_solver().solve_power(effect_size=None, nobs=n, alpha=alpha, power=power, alternative="two-sided"))


def items_to_decide(
    mean: float, sd: float, threshold: float, alpha: float = ALPHA, power: float = POWER
) -> Optional[int]:
    """Items a paired test needs to tell ``mean`` from ``threshold`` at spread ``sd`` (None: never, the mean sits on it)."""
    gap = abs(mean - threshold)
    if gap == 0:
        return None
    if sd == 0:
        return 2
    solver, effect = _solver(), gap / sd
    at_three = solver.power(effect_size=effect, nobs=3, alpha=alpha, alternative="two-sided")
    if (
        not np.isfinite(at_three) or at_three >= power
    ):  # an effect so large that 3 items do (the root finder fails below that)
        return 3
    return _first_n_with_power(effect, alpha, power)


def items_to_decide_many(
    cases: Sequence[tuple[float, float, float]], alpha: float = ALPHA, power: float = POWER
) -> list[Optional[int]]:
    """``items_to_decide(mean, sd, threshold)`` of many comparisons at once (a claim over 99 models x 50 tasks):
    the same numbers, the powers of all of them evaluated by two vectorized calls."""
    from scipy.stats import norm

    out: list[Optional[int]] = [None] * len(cases)
    todo: list[tuple[int, float]] = []
    for i, (mean, sd, threshold) in enumerate(cases):
        gap = abs(mean - threshold)
        if gap == 0:
            continue
        if sd == 0:
            out[i] = 2
        else:
            todo.append((i, gap / sd))
    if not todo:
        return out
    solver = _solver()
    effects = np.array([e for _, e in todo])
    at_three = np.asarray(solver.power(effect_size=effects, nobs=3, alpha=alpha, alternative="two-sided"))
    guess = np.maximum(3, np.ceil(((norm.ppf(1 - alpha / 2) + norm.ppf(power)) / effects) ** 2)).astype(np.int64)
    start = np.maximum(3, guess - 2)
    window = start[:, None] + np.arange(16)[None, :]
    reached = (
        np.asarray(solver.power(effect_size=effects[:, None], nobs=window, alpha=alpha, alternative="two-sided"))
        >= power
    )
    for row, (i, effect) in enumerate(todo):
        if not np.isfinite(at_three[row]) or at_three[row] >= power:
            out[i] = 3  # an effect so large that 3 items do (the root finder fails below that)
        elif reached[row].any() and (reached[row].argmax() > 0 or start[row] == 3):
            out[i] = int(window[row, reached[row].argmax()])
        else:
            out[i] = _first_n_with_power(effect, alpha, power)
    return out


def _first_n_with_power(effect: float, alpha: float, power: float) -> int:
    """The fewest items whose paired t-test reaches ``power``: the ceiling of statsmodels' solve_power root, read off
    the powers just above the normal approximation (one vectorized evaluation instead of a 9 ms root search, which
    thousands of comparisons of a large store would pay each); the root search where the window misses it."""
    from scipy.stats import norm

    solver = _solver()
    guess = max(3, int(math.ceil(((norm.ppf(1 - alpha / 2) + norm.ppf(power)) / effect) ** 2)))
    # the t-test needs a few items more than the normal approximation: the crossing is in a short window above it,
    # whose powers one vectorized call evaluates
    window = np.arange(max(3, guess - 2), guess + 14)
    reached = np.asarray(solver.power(effect_size=effect, nobs=window, alpha=alpha, alternative="two-sided")) >= power
    if reached.any() and (reached.argmax() > 0 or window[0] == 3):
        return int(window[reached.argmax()])
    return int(
        math.ceil(solver.solve_power(effect_size=effect, nobs=None, alpha=alpha, power=power, alternative="two-sided"))
    )


@dataclass(frozen=True)
class SampleSize(Serializable):
    """What a comparison's paired differences say about sample size."""

    n: int
    mean: float
    sd: float
    mde: Optional[float]
    alpha: float = ALPHA
    power: float = POWER

    def items_for(self, threshold: float) -> Optional[int]:
        return items_to_decide(self.mean, self.sd, threshold, self.alpha, self.power)


def sample_size(differences: ArrayLike, alpha: float = ALPHA, power: float = POWER) -> SampleSize:
    d = np.asarray(differences, dtype=float)
    sd = float(d.std(ddof=1)) if len(d) > 1 else 0.0
    return SampleSize(
        len(d),
        float(d.mean()) if len(d) else 0.0,
        sd,
        minimum_detectable_effect(sd, len(d), alpha, power),
        alpha,
        power,
    )


def one_sided_ps(sizes: Sequence[SampleSize], thresholds: Sequence[float], above: bool) -> list[float]:
    """``one_sided_p`` of many comparisons, the t distribution evaluated once for all of them."""
    from scipy.stats import t

    out = [one_sided_p(ss, th, above) if ss.n < 2 or ss.sd == 0 else math.nan for ss, th in zip(sizes, thresholds)]
    rows = [i for i, ss in enumerate(sizes) if not (ss.n < 2 or ss.sd == 0)]
    if rows:
        gap = np.array([sizes[i].mean - thresholds[i] if above else thresholds[i] - sizes[i].mean for i in rows])
        se = np.array([sizes[i].sd / math.sqrt(sizes[i].n) for i in rows])
        df = np.array([sizes[i].n - 1 for i in rows])
        for i, p in zip(rows, t.sf(gap / se, df=df)):
            out[i] = float(p)
    return out


def one_sided_p(ss: SampleSize, threshold: float, above: bool) -> float:
    """Paired t-test p-value that the true mean difference is above (or below) ``threshold``."""
    from scipy.stats import t

    gap = ss.mean - threshold if above else threshold - ss.mean
    if ss.n < 2 or ss.sd == 0:
        return 0.0 if gap > 0 else 1.0
    return float(t.sf(gap / (ss.sd / math.sqrt(ss.n)), df=ss.n - 1))


def holm(p_values: Sequence[float], alpha: float = ALPHA) -> list[float]:
    """Holm-adjusted p-values: family-wise error control over a claim's comparisons. statsmodels' multipletests
    (method="holm"), operation for operation, without the full garbage collection it runs on every call (seconds in a
    report process holding thousands of cells)."""
    if not p_values:
        return []
    p = np.asarray(list(p_values))
    order = np.argsort(p)
    adjusted = np.maximum.accumulate(np.take(p, order) * np.arange(len(p), 0, -1))
    adjusted[adjusted > 1] = 1
    out = np.empty_like(adjusted)
    out[order] = adjusted
    return [float(v) for v in out]
