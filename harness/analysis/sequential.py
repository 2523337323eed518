"""Stop when decided: confidence sequences for paired differences, and the rule that stops a task.

A fixed-n confidence interval is valid only at the n chosen in advance; looking
after every batch and stopping once it excludes a threshold makes it miss far
more often than 5% (tests/test_sequential.py measures it). A confidence
sequence is valid at every n at once, so a run may look as often as it likes and
stop whenever it is decided. Two are offered (``runtime.confidence_sequence``):

- ``asymptotic`` (default): the asymptotic confidence sequence of Waudby-Smith,
  Arbour, Sinha, Kennedy & Ramdas, "Time-uniform central limit theory and
  asymptotic confidence sequences" (Ann. Statist. 2024, Robbins' Gaussian
  mixture boundary with the running variance): time-uniform under the same
  large-sample approximation as the t and bootstrap intervals of every report,
  and as tight as they are up to a log factor. The variance carries one
  pseudo-observation of the largest possible variance (as PrPl-EB's bets do), so
  a run whose first items all agree does not get a zero-width interval, and the
  running intersection starts at the first look (not at n=1, where no large-sample
  argument holds). Simulated coverage: tests/test_sequential.py.
- ``bernstein``: the predictable plug-in empirical-Bernstein sequence (PrPl-EB) of
  Waudby-Smith & Ramdas, "Estimating means of bounded random variables by
  betting" (JRSS-B 2024): exact at every n for bounded differences, but its width
  has a floor of about 4 log(2/alpha) / n whatever the spread, so on a few hundred
  items it rarely decides (the offline pair on the seed suite: 1 task of 5).

Paired differences lie in [-1, 1] (accuracy: -1/0/+1; ROUGE differences). Why
formulas of our own: the authors' package ``confseq`` (0.0.11) ships only as a
source distribution that needs Boost and a C++ build, its Python modules fail to
import under NumPy 2 (``np.float_``), and it has no asymptotic sequence;
``expectation`` needs Python >= 3.12 and carries a GPL-3.0 licence with an
AI-training clause. PrPl-EB follows confseq's ``predmix_empbern_twosided_cs`` line
for line (truncation 1/2, prior mean 1/2 and variance 1/4 from one
pseudo-observation, running intersection) and is tested against numbers confseq
computed; the asymptotic one is the paper's equation (two-sided, rho tuned for
``T_STAR`` items) and is tested by simulation.

Several comparisons are decided at once (tasks x candidate models): each
sequence runs at ``alpha / comparisons`` (Bonferroni), which keeps the
family-wise error at ``alpha`` at any stopping time; Holm's step-down needs
p-values fixed in advance, a union bound does not.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from harness.analysis.schema import Interval, IntervalRecord
from harness.serialize import Serializable

METHODS = {
    "asymptotic": "asymptotic confidence sequence (Waudby-Smith et al. 2024)",
    "bernstein": "anytime-valid confidence sequence (PrPl-EB, Waudby-Smith & Ramdas 2024)",
}
T_STAR = 200  # the asymptotic sequence is tightest near this many items; its width elsewhere changes little with it


def is_sequential(interval: Interval | IntervalRecord) -> bool:
    """Whether a reported interval (or its written form) is a confidence sequence (valid under optional stopping)."""
    method = interval.method if isinstance(interval, Interval) else interval.get("method")
    return method in METHODS.values()


def _lower_sequence(x: np.ndarray, alpha: float, truncation: float = 0.5) -> np.ndarray:
    """One-sided lower confidence sequence for the mean of ``x`` in [0, 1], at every n (running maximum)."""
    t = np.arange(1, len(x) + 1)
    mean_prev = np.append(0.0, (np.cumsum(x) / t)[:-1])
    v = (x - mean_prev) ** 2
    # predictable bets: regularized running mean and variance (one pseudo-observation of mean 1/2, variance 1/4)
    reg_mean = np.minimum((0.5 + np.cumsum(x)) / (t + 1), 1.0)
    reg_var = (0.25 + np.cumsum((x - reg_mean) ** 2)) / (t + 1)
    var_prev = np.append(0.25, reg_var[:-1])
    bets = np.minimum(truncation, np.sqrt(2 * math.log(1 / alpha) / (t * np.log(1 + t) * var_prev)))
    psi = -np.log(1 - bets) - bets
    centre = np.cumsum(bets * x) / np.cumsum(bets)
    margin = (math.log(1 / alpha) + np.cumsum(v * psi)) / np.cumsum(bets)
    return np.maximum.accumulate(np.maximum(centre - margin, 0.0))


def unit_sequence(x: ArrayLike, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided (1 - alpha) confidence sequence for the mean of observations in [0, 1]: (lows, highs) at every n."""
    arr = np.clip(np.asarray(x, dtype=float), 0.0, 1.0)
    return _lower_sequence(arr, alpha / 2), 1.0 - _lower_sequence(1.0 - arr, alpha / 2)


def asymptotic_sequence(
    diffs: Sequence[float], alpha: float, start: int = 1, t_star: int = T_STAR
) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided (1 - alpha) asymptotic confidence sequence for the mean of differences in [-1, 1], at every n.

    mean_t +/- sd_t * sqrt(2 (t rho^2 + 1) / (t^2 rho^2) * log(sqrt(t rho^2 + 1) / alpha)), with
    rho^2 = (-2 log alpha + log(-2 log alpha + 1)) / t_star (the paper's choice for a target n).
    Before ``start`` the interval is the whole range; the running intersection starts there.
    """
    d = np.asarray(diffs, dtype=float)
    t = np.arange(1, len(d) + 1)
    mean = np.cumsum(d) / t
    # one pseudo-observation of variance 1 (the largest for [-1, 1]): no zero-width interval from a few equal items
    var = (1.0 + np.maximum(np.cumsum(d**2) - t * mean**2, 0.0)) / (t + 1)
    rho2 = (-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / t_star
    half = np.sqrt(var * 2 * (t * rho2 + 1) / (t**2 * rho2) * np.log(np.sqrt(t * rho2 + 1) / alpha))
    low, high = np.maximum(mean - half, -1.0), np.minimum(mean + half, 1.0)
    low[: start - 1], high[: start - 1] = -1.0, 1.0
    return np.maximum.accumulate(low), np.minimum.accumulate(high)


def difference_sequence(
    diffs: Sequence[float], alpha: float, method: str = "asymptotic", start: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """A confidence sequence for paired differences in [-1, 1] by ``method`` (asymptotic | bernstein): (lows, highs)."""
    if method == "asymptotic":
        return asymptotic_sequence(diffs, alpha, start)
    if method != "bernstein":
        raise ValueError(f"unknown confidence sequence {method!r} (asymptotic | bernstein)")
    low, high = unit_sequence((np.asarray(diffs, dtype=float) + 1.0) / 2.0, alpha)
    return 2.0 * low - 1.0, 2.0 * high - 1.0


@dataclass(frozen=True)
class SequentialInterval(Serializable):
    """A paired difference with its anytime-valid interval after ``n`` items."""

    value: float
    low: float
    high: float
    n: int
    method: str
    alpha: float  # the level of this sequence (the family's alpha / comparisons)


def paired_sequence(
    candidate: Sequence[float], reference: Sequence[float], alpha: float, method: str = "asymptotic", start: int = 1
) -> SequentialInterval:
    """mean(candidate - reference) with its confidence sequence at the last item (``start``: the first look)."""
    d = np.asarray(candidate, dtype=float) - np.asarray(reference, dtype=float)
    if len(d) == 0:
        return SequentialInterval(float("nan"), -1.0, 1.0, 0, METHODS[method], alpha)
    low, high = difference_sequence(d, alpha, method, min(start, len(d)))
    return SequentialInterval(float(d.mean()), float(low[-1]), float(high[-1]), len(d), METHODS[method], alpha)


def undecided(interval: SequentialInterval | Mapping[str, float], thresholds: dict[str, float]) -> list[str]:
    """The claims whose threshold still lies inside the interval, or its bounds ({"low": .., "high": ..}); a threshold
    on its edge is not decided."""
    low, high = (
        (interval.low, interval.high)
        if isinstance(interval, SequentialInterval)
        else (interval["low"], interval["high"])
    )
    return [claim for claim, th in thresholds.items() if not (low > th or high < th)]


def looks(first: int, growth: float, cap: int) -> list[int]:
    """Item counts after which a run looks: ``first``, then x ``growth`` each time, ending at ``cap``.

    Geometric looks cost few model reloads (each look runs every model on the
    new items, one model in memory at a time) and overshoot the first decided n
    by at most a factor ``growth``.
    """
    points, n = [], min(first, cap)
    while n < cap:
        points.append(n)
        n = min(cap, max(n + 1, math.ceil(n * growth)))
    return [*points, cap]
