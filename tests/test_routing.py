"""The cascade measured as a router: held-out thresholds, APGR by hand, a random baseline, confidence signals."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_record

from harness.analysis.routing import apgr, calls_to_recover, choose_threshold, cross_fit, evaluate_router, gap_curve


def _records(model: str, correct: list[int], margins: list[float] | None = None, seconds: float = 1.0) -> list:
    out = []
    for i, c in enumerate(correct):
        probs = [0.5 + (margins[i] if margins else 0.0) / 2, 0.5 - (margins[i] if margins else 0.0) / 2]
        out.append(
            make_record(
                sample_id=f"s{i}",
                model=model,
                scores={"correct": float(c)},
                item_s=seconds,
                details={"margin": margins[i] if margins else 0.0, "probs": probs},
            )
        )
    return out


def test_apgr_on_a_hand_computed_case():
    # 4 items; small right on items 0-1, large right on all. Confidence ranks the small model's wrong items lowest.
    conf = np.array([0.9, 0.8, 0.1, 0.2])
    s = np.array([1.0, 1.0, 0.0, 0.0])
    l_ = np.array([1.0, 1.0, 1.0, 1.0])
    pts = gap_curve(conf, s, l_)
    # escalate 0, 1/4 (item 2), 2/4 (items 2, 3), 3/4, all: PGR 0, 0.5, 1, 1, 1
    assert pts == [(0.0, 0.0), (0.25, 0.5), (0.5, 1.0), (0.75, 1.0), (1.0, 1.0)]
    # area: 0.25*(0+0.5)/2 + 0.25*(0.5+1)/2 + 0.25*1 + 0.25*1 = 0.0625 + 0.1875 + 0.5 = 0.75
    assert apgr(pts) == pytest.approx(0.75)
    assert calls_to_recover(pts, 0.5) == 0.25 and calls_to_recover(pts, 0.95) == 0.5
    assert apgr([(0.0, 0.0), (1.0, 1.0)]) == pytest.approx(0.5)  # a router no better than random


def test_cross_fitting_never_scores_an_item_with_a_threshold_it_helped_choose():
    rng = np.random.default_rng(3)
    n = 40
    conf, s, l_ = rng.random(n), rng.integers(0, 2, n).astype(float), rng.integers(0, 2, n).astype(float)
    cost_s, cost_l = np.full(n, 0.2), np.full(n, 1.0)
    res = cross_fit(conf, s, l_, cost_s, cost_l, keep_share=0.95, folds=5, seed=0)
    tests = [i for f in res["folds"] for i in f["test"]]
    assert sorted(tests) == list(range(n))  # every item scored exactly once
    for f in res["folds"]:
        assert not set(f["train"]) & set(f["test"])  # chosen without the items it routes
        train = np.array(f["train"])
        assert f["threshold"] == choose_threshold(conf[train], s[train], l_[train], cost_s[train], cost_l[train], 0.95)


def test_held_out_figures_beside_in_sample_and_signals_on_records():
    correct_small = [1, 1, 1, 0, 1, 0, 1, 0, 1, 1, 0, 1]
    margins = [0.9, 0.8, 0.7, 0.1, 0.6, 0.2, 0.85, 0.15, 0.75, 0.65, 0.05, 0.95]
    small = _records("s", correct_small, margins, seconds=0.2)
    large = _records("l", [1] * 12, seconds=1.0)
    r = evaluate_router(small, large, "classification", keep_share=0.95, folds=3, seed=0)
    assert set(r["signals"]) == {"margin", "negative_entropy"} and r["best_signal"] in r["signals"]
    sig = r["signals"]["margin"]
    assert sig["in_sample"]["score"] >= 0.95  # the in-sample threshold meets the target on its own items
    # the 4 lowest margins are exactly the small model's 4 errors: PGR rises linearly to 1 at 4/12 of the calls, then stays:
    # area = (4/12) / 2 + 8/12 = 5/6
    assert 0 <= sig["cross_fitted"]["escalated"] <= 1 and sig["apgr"] == pytest.approx(5 / 6)
    assert sig["random_at_same_calls"] == pytest.approx(
        r["small_score"] + sig["cross_fitted"]["escalated"] * (1 - r["small_score"])
    )
    # here the margin orders the small model's errors first: the router beats random
    assert sig["apgr"] > r["random_apgr"]


def test_generation_signals_need_their_details():
    small = [
        {
            "sample_id": "a",
            "scores": {"rougeL": 0.2},
            "item_s": 1.0,
            "details": {"mean_logprob": -1.0, "min_logprob": -3.0},
        },
        {
            "sample_id": "b",
            "scores": {"rougeL": 0.6},
            "item_s": 1.0,
            "details": {"mean_logprob": -0.2, "min_logprob": -0.5},
        },
    ]
    large = [
        {"sample_id": "a", "scores": {"rougeL": 0.5}, "item_s": 2.0, "details": {}},
        {"sample_id": "b", "scores": {"rougeL": 0.6}, "item_s": 2.0, "details": {}},
    ]
    small, large = [make_record(**r) for r in small], [make_record(**r) for r in large]
    r = evaluate_router(small, large, "summarization", folds=2)
    assert set(r["signals"]) == {"mean_logprob", "min_logprob"}
    del small[0].details["min_logprob"]
    assert set(evaluate_router(small, large, "summarization", folds=2)["signals"]) == {"mean_logprob"}
