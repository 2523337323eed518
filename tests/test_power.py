"""How many items are enough: MDE and sample sizes (statsmodels' paired t-test power), in the claims and `harness plan`."""

from __future__ import annotations

import numpy as np
import pytest

from harness.analysis.sample_size import SampleSize, items_to_decide, minimum_detectable_effect, sample_size
from harness.verdicts.claims import decide_note


def test_sample_size_matches_the_textbook_case():
    # paired t-test, d = 0.5, two-sided 5%, 80% power: 33.4 pairs -> 34 (Cohen's tables; G*Power gives 34)
    assert items_to_decide(mean=0.5, sd=1.0, threshold=0.0) == 34
    assert items_to_decide(mean=0.01, sd=0.3, threshold=-0.05) == items_to_decide(
        mean=0.2, sd=1.0, threshold=0.0
    )  # only gap/sd matters
    assert items_to_decide(mean=0.1, sd=0.5, threshold=0.1) is None  # the difference sits on the threshold
    assert (
        items_to_decide(mean=0.5, sd=0.01, threshold=0.0) == items_to_decide(mean=0.5, sd=0.05, threshold=0.0) == 3
    )  # beyond the solver's bracket


def test_mde_has_the_stated_power():
    from statsmodels.stats.power import TTestPower

    for n, sd in [(20, 0.5), (34, 1.0), (200, 0.3)]:
        mde = minimum_detectable_effect(sd, n)
        assert TTestPower().power(effect_size=mde / sd, nobs=n, alpha=0.05, alternative="two-sided") == pytest.approx(
            0.8, abs=1e-4
        )
    assert minimum_detectable_effect(0.5, 40) < minimum_detectable_effect(0.5, 20)  # more items detect less
    assert minimum_detectable_effect(0.5, 1) is None


def test_sample_size_of_paired_accuracy_differences():
    diffs = np.array([1, 0, 0, -1, 0, 1, 0, 0, 1, 0] * 2, dtype=float)  # 20 items: +0.2 on average
    ss = sample_size(diffs)
    assert ss.n == 20 and ss.mean == pytest.approx(0.2) and ss.sd == pytest.approx(diffs.std(ddof=1))
    assert ss.items_for(-0.05) == items_to_decide(0.2, diffs.std(ddof=1), -0.05)
    assert SampleSize(**ss.to_dict()) == ss


def test_inconclusive_verdicts_say_how_many_items_would_decide_them():
    assert decide_note({"n": 20, "items_to_decide": 310}) == " (inconclusive at n=20; about 310 items would decide it)"
    assert "no number of items" in decide_note({"n": 20, "items_to_decide": None})
    assert decide_note({"value": 0.1}) == ""


def test_holm_adjusts_like_statsmodels_and_one_sided_p_like_scipy():
    from scipy.stats import ttest_1samp

    from harness.analysis.sample_size import holm, one_sided_p

    d = np.array([0.3, -0.1, 0.2, 0.25, 0.05, 0.4, -0.05, 0.15])
    ss = sample_size(d)
    assert one_sided_p(ss, 0.0, above=True) == pytest.approx(ttest_1samp(d, 0.0, alternative="greater").pvalue)
    assert one_sided_p(ss, -0.05, above=False) == pytest.approx(ttest_1samp(d, -0.05, alternative="less").pvalue)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])  # sorted: 0.01*3, 0.03*2, max(0.04*1, 0.06)
    assert holm([]) == []


def test_a_claim_over_many_comparisons_needs_the_holm_adjusted_test():
    """Three comparisons each barely decided alone (p about 0.03) are not all decided together (Holm: 0.09 > 0.05)."""
    from harness.analysis.schema import Interval, PairedComparison
    from harness.verdicts.claims import _difference_verdicts

    class Run:  # the part of RunView that _difference_verdicts reads
        judged = None  # no judge graded these

        def __init__(self, ss):
            self.compared = {(f"t{i}", "small"): PairedComparison(True, sample_size={"accuracy": ss}) for i in range(3)}

        def primary(self, task):
            return "accuracy"

        def diff(self, task, cand):
            return Interval(0.2, 0.01, 0.4, 30, "bootstrap")  # each interval alone says "above zero"

        def label(self, task, cand):
            return task

        def at_baseline(self, task, cand):
            return None  # these scores are not at a majority baseline

    from scipy.stats import t as student

    n, sd = 30, 0.5
    mean = student.isf(0.03, n - 1) * sd / np.sqrt(n)  # one-sided p = 0.03 against zero
    ss = SampleSize(n, float(mean), sd, minimum_detectable_effect(sd, n))
    per, nums = _difference_verdicts(Run(ss), lambda task: 0.0)
    assert per == ["inconclusive"] * 3 and nums["t0"]["holm_p_above"] == pytest.approx(0.09, abs=1e-6)
    per_one, _ = _difference_verdicts(_single(Run, ss), lambda task: 0.0)
    assert per_one == ["supported"]


def _single(cls, ss):
    run = cls(ss)
    run.compared = {("t0", "small"): run.compared[("t0", "small")]}
    return run
