"""Anytime-valid confidence sequences: against confseq's numbers, coverage under optional stopping, the stop rule."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from harness.analysis.sequential import difference_sequence, looks, paired_sequence, undecided, unit_sequence

# Computed by confseq 0.0.11 (the authors' package), predmix_empbern_twosided_cs(x, alpha, truncation=0.5,
# running_intersection=True), with its pure-Python modules imported from the sdist (np.float_ aliased for NumPy 2).
X20 = [0.5, 1, 0.5, 0, 0.5, 0.5, 1, 0.5, 0.5, 0.5, 0, 0.5, 0.5, 0.5, 1, 0.5, 0.5, 0.5, 0.5, 0.5]


def test_matches_confseq_reference_values() -> None:
    low, high = unit_sequence(X20, alpha=0.05)
    assert low[[0, 4, 9]].tolist() == [0.0, 0.0, 0.0] and high[[0, 4, 9]].tolist() == [1.0, 1.0, 1.0]
    assert low[19] == pytest.approx(0.12084423, abs=1e-8) and high[19] == pytest.approx(0.92915577, abs=1e-8)
    y = np.random.default_rng(0).uniform(0, 1, 200)
    low, high = unit_sequence(y, alpha=0.01)
    assert low[[99, 199]] == pytest.approx([0.40327825, 0.44718103], abs=1e-8)
    assert high[[99, 199]] == pytest.approx([0.67564416, 0.62864664], abs=1e-8)


def test_paired_differences_map_back_to_minus_one_one() -> None:
    cand, ref = [1, 0, 1, 1, 0] * 20, [0, 0, 1, 0, 0] * 20
    iv = paired_sequence(cand, ref, alpha=0.05, method="bernstein")
    assert iv.value == pytest.approx(0.4) and iv.n == 100 and iv.method.startswith("anytime-valid")
    assert -1.0 <= iv.low < 0.4 < iv.high <= 1.0
    low, high = difference_sequence(np.subtract(cand, ref), 0.05, "bernstein")
    assert (iv.low, iv.high) == (low[-1], high[-1])
    assert np.all(np.diff(low) >= 0) and np.all(np.diff(high) <= 0)  # running intersection: the interval only narrows
    # wider than the fixed-n t interval at the same n: the price of looking at every n
    d = np.subtract(cand, ref)
    half_t = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    assert iv.high - iv.low > 2 * half_t


def _simulated_differences(sims: int, n: int, seed: int) -> tuple[np.ndarray, float]:
    """Paired accuracy differences (-1/0/+1): the small model right where the large is wrong 15%, the reverse 30%."""
    rng = np.random.default_rng(seed)
    d = rng.choice([1.0, 0.0, -1.0], p=[0.15, 0.55, 0.30], size=(sims, n))
    return d, 0.15 - 0.30


@pytest.mark.parametrize("p", [(0.15, 0.55, 0.30), (0.45, 0.10, 0.45)])
def test_coverage_under_optional_stopping(p):
    """Stop at the first look whose interval excludes a threshold: with the threshold at the true mean, the run
    stops exactly when its interval misses the truth. Both sequences keep 95% (within simulation error);
    fixed-n t intervals re-checked at every look do not."""
    sims, n, first = 400, 300, 20
    rng = np.random.default_rng(7)
    d = rng.choice([1.0, 0.0, -1.0], p=p, size=(sims, n))
    truth = p[0] - p[2]
    checks = looks(first, 1.0, n)  # look after every item from the 20th on
    assert checks[:3] == [20, 21, 22] and checks[-1] == n
    idx = np.asarray(checks) - 1
    se = np.sqrt(0.05 * 0.95 / sims)
    for method in ("asymptotic", "bernstein"):
        miss = 0
        for row in d:
            low, high = difference_sequence(row, 0.05, method, start=first)
            miss += bool(np.any((low[idx] > truth) | (high[idx] < truth)))
        assert miss / sims <= 0.05 + 3 * se, (method, miss)
    t = np.arange(1, n + 1)
    mean = np.cumsum(d, axis=1) / t
    var = (np.cumsum(d**2, axis=1) - t * mean**2) / np.maximum(t - 1, 1)
    half = stats.t.ppf(0.975, np.maximum(t - 1, 1)) * np.sqrt(var / t)
    naive_miss = np.any((np.abs(mean - truth) > half)[:, idx], axis=1).sum()
    fixed_miss = (np.abs(mean[:, -1] - truth) > half[:, -1]).sum()  # one look at n: the t interval is fine there
    assert naive_miss / sims > 0.05 + 3 * se, naive_miss  # optional stopping breaks fixed-n intervals
    assert fixed_miss / sims <= 0.05 + 3 * se


def test_a_clear_difference_stops_early_and_a_null_one_does_not():
    rng = np.random.default_rng(3)
    clear = rng.choice([1.0, 0.0, -1.0], p=[0.05, 0.45, 0.50], size=400)
    at = {}
    for method in ("asymptotic", "bernstein"):
        low, high = difference_sequence(clear, 0.05 / 2, method, start=20)
        at[method] = next(
            i + 1
            for i in range(len(clear))
            if not undecided({"low": low[i], "high": high[i]}, {"C2": 0.0, "C3": -0.05})
        )
    assert at["asymptotic"] < at["bernstein"] < 150  # the exact sequence pays for its guarantee in items
    for method in ("asymptotic", "bernstein"):
        low, high = difference_sequence(
            np.zeros(400), 0.05, method
        )  # the models agree on every item: on C2's threshold forever
        assert undecided({"low": low[-1], "high": high[-1]}, {"C2": 0.0, "C3": -0.05}) == ["C2"]
    low, high = difference_sequence(np.zeros(5), 0.05, "asymptotic")  # a few equal items: not a zero-width interval
    assert low[-1] < -0.3 and high[-1] > 0.3


def test_the_asymptotic_sequence_is_near_the_t_interval_on_a_rouge_like_difference():
    d = np.random.default_rng(0).normal(-0.19, 0.1, 65)
    low, high = difference_sequence(d, 0.01, "asymptotic", start=20)
    half_t = stats.t.ppf(0.995, 64) * d.std(ddof=1) / np.sqrt(65)
    assert 1.5 * 2 * half_t < high[-1] - low[-1] < 5 * 2 * half_t  # wider than fixed-n, same order
    blow, bhigh = difference_sequence(d, 0.01, "bernstein")
    assert bhigh[-1] - blow[-1] > 3 * (high[-1] - low[-1])  # PrPl-EB's width floor at n=65


def test_looks_are_geometric_and_end_at_the_cap() -> None:
    assert looks(10, 1.5, 221) == [10, 15, 23, 35, 53, 80, 120, 180, 221]
    assert looks(10, 1.5, 7) == [7]
    assert looks(1, 1.1, 4) == [1, 2, 3, 4]
