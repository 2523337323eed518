"""How many items are enough: MDE and sample sizes (statsmodels' paired t-test power), in the claims and `harness plan`."""
from __future__ import annotations

import numpy as np
import pytest

from harness.claims import decide_note
from harness.power import SampleSize, items_to_decide, minimum_detectable_effect, sample_size


def test_sample_size_matches_the_textbook_case():
    # paired t-test, d = 0.5, two-sided 5%, 80% power: 33.4 pairs -> 34 (Cohen's tables; G*Power gives 34)
    assert items_to_decide(mean=0.5, sd=1.0, threshold=0.0) == 34
    assert items_to_decide(mean=0.01, sd=0.3, threshold=-0.05) == items_to_decide(mean=0.2, sd=1.0, threshold=0.0)  # only gap/sd matters
    assert items_to_decide(mean=0.1, sd=0.5, threshold=0.1) is None  # the difference sits on the threshold


def test_mde_has_the_stated_power():
    from statsmodels.stats.power import TTestPower

    for n, sd in [(20, 0.5), (34, 1.0), (200, 0.3)]:
        mde = minimum_detectable_effect(sd, n)
        assert TTestPower().power(effect_size=mde / sd, nobs=n, alpha=0.05, alternative="two-sided") == pytest.approx(0.8, abs=1e-4)
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
