"""Statistics on known cases, the cascade on hand-made records, and verdicts that flip at their threshold."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import make_cell_summary, make_record, make_summary

from harness.analysis.cascade import simulate
from harness.analysis.schema import RunAnalysis
from harness.analysis.stats import bootstrap_ci, mcnemar_exact, paired_difference, ratio_of_statistics
from harness.verdicts.claims import evaluate_claims


def test_mcnemar_on_a_hand_made_table():
    # 10 items: small right & large wrong on 1, small wrong & large right on 6, 3 concordant
    small = [1, 0, 0, 0, 0, 0, 0, 1, 1, 0]
    large = [0, 1, 1, 1, 1, 1, 1, 1, 1, 0]
    res = mcnemar_exact([bool(x) for x in small], [bool(x) for x in large])
    assert (res.small_only, res.large_only) == (1, 6)
    # exact two-sided binomial p for 1 success in 7 at p=0.5: 2 * (1 + 7) / 128
    assert res.p_value == pytest.approx(2 * 8 / 128)
    assert mcnemar_exact([True, False], [True, False]).p_value == 1.0


def test_bootstrap_ci_covers_the_true_difference_in_a_seeded_simulation():
    rng = np.random.default_rng(42)
    covered = 0
    trials = 40
    for t in range(trials):
        base = rng.normal(0.5, 0.2, size=60)
        a = base + 0.05 + rng.normal(0, 0.05, size=60)  # true difference 0.05, paired noise
        b = base + rng.normal(0, 0.05, size=60)
        est = paired_difference(a, b, seed=t)
        covered += est.low <= 0.05 <= est.high
    assert covered >= 0.85 * trials  # nominal 95%; bootstrap percentile runs a little narrow at n=60


def test_bootstrap_ci_of_a_constant_sample_is_a_point():
    est = bootstrap_ci([1.0] * 10)
    assert (est.value, est.low, est.high) == (1.0, 1.0, 1.0)


def test_ratio_of_medians():
    est = ratio_of_statistics([1.0, 1.0, 1.0, 1.2], [2.0, 2.0, 2.0, 2.4])
    assert est.value == pytest.approx(0.5)
    assert est.low <= 0.5 <= est.high


def _rec(i: int, correct: float, margin: float, latency: float, pred: str = "a"):
    return make_record(
        sample_id=str(i), scores={"correct": correct}, details={"margin": margin}, latency_s=latency, prediction=pred
    )


def test_cascade_on_hand_made_records():
    # small: right on confident items 0,1; wrong on unsure items 2,3. large: right everywhere.
    small = [_rec(0, 1, 0.9, 1.0), _rec(1, 1, 0.8, 1.0), _rec(2, 0, 0.1, 1.0, "b"), _rec(3, 0, 0.2, 1.0, "b")]
    large = [_rec(i, 1, 0.9, 10.0) for i in range(4)]
    cas = simulate(small, large, "classification", keep_share=0.95)
    assert cas["agreement"]["same_prediction"] == 0.5
    never = cas["curve"][0]
    assert never["escalated"] == 0 and never["score"] == 0.5 and never["cost_share"] == pytest.approx(4 / 40)
    best = cas["best"]  # escalate the two unsure items (threshold above 0.2, below 0.8)
    assert best["escalated"] == 0.5 and best["score"] == 1.0
    assert best["cost_share"] == pytest.approx((4 + 20) / 40)


def _summary_and_analysis(diff_low: float, diff_high: float, latency_ratio: float) -> tuple[dict, dict]:
    est = {"value": (diff_low + diff_high) / 2, "low": diff_low, "high": diff_high, "n": 50, "method": "test"}
    lat = {"value": latency_ratio, "low": latency_ratio * 0.9, "high": latency_ratio * 1.1, "n": 50, "method": "test"}
    energy = {
        "value": 1 / latency_ratio,
        "low": 0.9 / latency_ratio,
        "high": 1.1 / latency_ratio,
        "n": 50,
        "method": "estimated",
    }
    models = {
        "s": {"role": "small", "name": "s", "device": "cpu", "params": {"total": 100, "active": 100, "is_moe": False}},
        "l": {
            "role": "large",
            "name": "l",
            "device": "cpu",
            "params": {"total": 1000, "active": 1000, "is_moe": False},
        },
    }
    res = make_cell_summary(
        n=50, primary_metric="accuracy", quality={"accuracy": 0.5}, latency_s={"p50": 1.0}, peak_memory_bytes=2**30
    )
    summary = make_summary(
        {"t": ({"n_selected": 50}, {"s": res, "l": res})},
        {"t": {"s": {"peak_memory_ratio": 0.2, "cost_ratio": latency_ratio}}},
        models=models,
        order=["s", "l"],
        reference="l",
    )
    analysis = {
        "confidence_level": 0.95,
        "seed": 0,
        "reference": "l",
        "tasks": {
            "t": {
                "task_type": "classification",
                "models": {
                    "s": {
                        "n": 50,
                        "quality": {},
                        "latency_s": {"p95": {"value": 0.5, "low": 0.4, "high": 0.6, "n": 50, "method": "test"}},
                    }
                },
                "comparisons": {
                    "s": {
                        "same_items": True,
                        "difference_vs_reference": {"accuracy": est},
                        "mcnemar": {"small_only": 0, "large_only": 5, "p_value": 0.01},
                        "latency_median_ratio": lat,
                        "energy_ratio_reference_over_candidate": energy,
                        "cascade": {"available": False},
                    }
                },
            }
        },
    }
    return summary, RunAnalysis.from_dict(analysis)


CLAIMS = {
    cid: {"thresholds": th}
    for cid, th in {
        "C2": {},
        "C3": {"accuracy_tolerance": 0.05},
        "C5": {"max_ratio": 1.0},
        "C9": {"min_params_ratio": 10.0},
        "C10": {},
    }.items()
}


def _verdicts(*args: float, claims: dict | None = None) -> dict[str, str]:
    summary, analysis = _summary_and_analysis(*args)
    return {v.id: v.verdict for v in evaluate_claims(summary, analysis, claims or CLAIMS)}


def test_verdicts_flip_at_their_thresholds():
    # small 2 points worse, CI [-4, -1]: within a 5-point tolerance -> C3 supported; large better -> C2 supported
    v = _verdicts(-0.04, -0.01, 0.2)
    assert v["C3"] == "supported" and v["C2"] == "supported" and v["C5"] == "supported" and v["C10"] == "supported"
    # CI [-9, -6]: beyond the tolerance -> refuted
    assert _verdicts(-0.09, -0.06, 0.2)["C3"] == "refuted"
    # CI straddles -5 -> inconclusive
    assert _verdicts(-0.07, -0.02, 0.2)["C3"] == "inconclusive"
    # a tighter tolerance from config flips the first case
    tight = {**CLAIMS, "C3": {"thresholds": {"accuracy_tolerance": 0.005}}}
    assert _verdicts(-0.04, -0.01, 0.2, claims=tight)["C3"] == "refuted"
    # latency ratio above 1 -> C5 refuted
    assert _verdicts(-0.04, -0.01, 1.5)["C5"] == "refuted"
    # small significantly better with 10x fewer parameters -> C9 supported, C2 refuted
    v = _verdicts(0.02, 0.08, 0.2)
    assert v["C9"] == "supported" and v["C2"] == "refuted"


def test_a_claim_names_its_check_and_a_check_serves_several_claims():
    from pathlib import Path

    from harness.results.schema import RunSummary
    from harness.verdicts.claims import CHECKS, NOT_MEASURED

    expected = json.loads((Path(__file__).parent / "golden" / "three" / "expected.json").read_text())
    summary = RunSummary.from_dict(json.loads(expected["summary.json"]))
    analysis = RunAnalysis.from_dict(json.loads(expected["analysis.json"]))
    cfg = {
        "C3": {"thresholds": {"accuracy_tolerance": 0.05, "rouge_tolerance": 0.02}},  # an older config.json: no check:
        "exact_parity": {
            "check": "small_within_tolerance",
            "thresholds": {"accuracy_tolerance": 0.0, "rouge_tolerance": 0.0},
        },
        "typo": {"check": "small_within_tolerence"},
    }
    verdicts = {v.id: v for v in evaluate_claims(summary, analysis, cfg)}
    assert set(verdicts) == {"C3", "exact_parity", "typo"}
    assert verdicts["C3"].verdict != NOT_MEASURED and verdicts["exact_parity"].verdict != NOT_MEASURED
    assert verdicts["C3"].key_number != verdicts["exact_parity"].key_number  # same check, its own thresholds
    assert verdicts["typo"].verdict == NOT_MEASURED
    assert "small_within_tolerance" in CHECKS and not any(
        name.startswith("c") and name[1:].isdigit() for name in CHECKS
    )
