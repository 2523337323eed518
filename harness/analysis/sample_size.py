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

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Optional

import numpy as np
from numpy.typing import ArrayLike

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
    return (
        float(_solver().solve_power(effect_size=None, nobs=n, alpha=alpha, power=power, alternative="two-sided")) * sd
    )


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
    return int(
        math.ceil(solver.solve_power(effect_size=effect, nobs=None, alpha=alpha, power=power, alternative="two-sided"))
    )


@dataclass(frozen=True)
class SampleSize:
    """What a comparison's paired differences say about sample size."""

    n: int
    mean: float
    sd: float
    mde: Optional[float]
    alpha: float = ALPHA
    power: float = POWER

    def items_for(self, threshold: float) -> Optional[int]:
        return items_to_decide(self.mean, self.sd, threshold, self.alpha, self.power)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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


def one_sided_p(ss: SampleSize, threshold: float, above: bool) -> float:
    """Paired t-test p-value that the true mean difference is above (or below) ``threshold``."""
    from scipy.stats import t

    gap = ss.mean - threshold if above else threshold - ss.mean
    if ss.n < 2 or ss.sd == 0:
        return 0.0 if gap > 0 else 1.0
    return float(t.sf(gap / (ss.sd / math.sqrt(ss.n)), df=ss.n - 1))


def holm(p_values: Sequence[float], alpha: float = ALPHA) -> list[float]:
    """Holm-adjusted p-values (statsmodels): family-wise error control over a claim's comparisons."""
    if not p_values:
        return []
    from statsmodels.stats.multitest import multipletests

    return [float(p) for p in multipletests(list(p_values), alpha=alpha, method="holm")[1]]
