"""The decision per task on hand-made runs: records -> summary -> analysis -> the cheapest option within tolerance."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_record, make_summary

from harness.analysis.per_task import analyze_run
from harness.config.schema import HardwareConfig
from harness.results.summary import summarize_model_task
from harness.verdicts.decision import decision_rows, decisions, option_rows

HARDWARE = HardwareConfig(name="test", hourly_usd=3.6, power_w=100.0, memory_gb=16.0, grid_gco2_per_kwh=400.0)
CLAIMS = {"C3": {"thresholds": {"accuracy_tolerance": 0.05}}}


def _records(correct: list[int], margins: list[float], seconds: float) -> list:
    return [
        make_record(
            sample_id=f"s{i}",
            gold="ab"[i % 2],  # two balanced labels: always answering one scores 50%
            prediction="ab"[(i + (not c)) % 2],
            scores={"correct": float(c)},
            details={"margin": m, "probs": [0.5 + m / 2, 0.5 - m / 2]},
            latency_s=seconds,
            item_s=seconds,
            input_tokens=10,
            output_tokens=0,
        )
        for i, (c, m) in enumerate(zip(correct, margins))
    ]


def _run(
    small: list[dict], large: list[dict], small_memory: int = 2**30, large_memory: int = 8 * 2**30
) -> tuple[dict, dict]:
    results = {}
    for name, recs, mem in (("s", small, small_memory), ("l", large, large_memory)):
        meta = {
            "task_type": "classification",
            "wall_s": sum(r.item_s for r in recs),
            "memory": {"peak_bytes": mem},
            "energy": None,
            "batch_size": 1,
        }
        results[name] = summarize_model_task(recs, meta, {}, HARDWARE)
    models = {"s": {"name": "s", "params": {"total": 100}}, "l": {"name": "l", "params": {"total": 1000}}}
    summary = make_summary(
        {"t": ({"n_selected": len(small)}, results)}, models=models, order=["s", "l"], reference="l", hardware=HARDWARE
    )
    return summary, analyze_run(summary, {("t", "s"): small, ("t", "l"): large})


N = 200


def test_the_small_model_alone_when_it_is_within_tolerance_and_cheaper():
    rng = np.random.default_rng(0)
    large = rng.random(N) < 0.8
    small = large.copy()
    small[:4] = ~small[:4]  # differs on 4 of 200 items: about -1..+2 points, well inside 5
    summary, analysis = _run(
        _records(small.astype(int).tolist(), [0.5] * N, 0.1), _records(large.astype(int).tolist(), [0.5] * N, 1.0)
    )
    dec = decisions(summary, analysis, CLAIMS)["t"]
    d = dec.to_dict()
    assert d["choice"]["name"] == "s" and d["choice"]["standing"] == "meets" and d["closest"] is None
    assert d["choice"]["cost_per_1k_usd"] == pytest.approx(3.6 * 0.1 / 3600 * 1000)
    assert d["choice"]["difference"]["low"] > -0.05
    row = decision_rows({"t": dec})[0]
    assert row[:3] == ["t", "use the cheaper option", "s"] and row[6] == "1.00 GB" and row[5] == "100 ms"


def test_a_cross_fitted_cascade_when_the_small_model_alone_falls_short():
    # the small model is wrong on 30% of items, and its margin is lowest exactly there: routing those to l recovers it.
    # The router keeps 95% of l's score (C4's keep_share), so it lands near -5 points: judged against a 10-point tolerance
    correct = [0 if i % 10 < 3 else 1 for i in range(N)]
    margins = [0.05 + 0.001 * i if c == 0 else 0.6 + 0.001 * i for i, c in enumerate(correct)]
    summary, analysis = _run(_records(correct, margins, 0.05), _records([1] * N, [0.9] * N, 1.0))
    dec = decisions(summary, analysis, {"C3": {"thresholds": {"accuracy_tolerance": 0.10}}})["t"]
    d = dec.to_dict()
    standings = {o["name"].split(" ")[0] if o["kind"] == "model" else "cascade": o["standing"] for o in d["options"]}
    assert standings == {"l": "reference", "s": "falls short", "cascade": "meets"}
    choice = d["choice"]
    held = analysis.tasks["t"].comparisons["s"].routing["signals"]["margin"]["cross_fitted"]
    assert (
        choice["kind"] == "cascade"
        and "cross-fitted" in choice["name"]
        and f"{held['escalated']:.0%} escalated" in choice["name"]
    )
    assert 0.2 < held["escalated"] <= 0.3
    l_cost = summary.tasks["t"].results["l"].economics.cost_per_1k_usd
    assert choice["cost_per_1k_usd"] == pytest.approx(l_cost * (0.05 + held["escalated"]), rel=1e-6)
    assert choice["memory_bytes"] == 9 * 2**30  # both models held
    assert choice["latency_p95_s"] == pytest.approx(1.05)  # an escalated item waits for both


def test_no_cheaper_option_meets_the_tolerance_names_the_closest():
    rng = np.random.default_rng(1)
    correct = (rng.random(N) < 0.6).astype(int).tolist()  # 60% vs 90%: 30 points short, and the margin says nothing
    summary, analysis = _run(
        _records(correct, rng.random(N).tolist(), 0.1),
        _records((rng.random(N) < 0.9).astype(int).tolist(), [0.9] * N, 1.0),
    )
    dec = decisions(summary, analysis, CLAIMS)["t"]
    d = dec.to_dict()
    assert d["choice"] is None and d["closest"] is not None
    row = decision_rows({"t": dec})[0]
    assert row[1] == "keep l: no cheaper option meets the tolerance; closest:" and row[2] == d["closest"]["name"]
    assert {r[3] for r in option_rows({"t": dec})} >= {"falls short", "reference"}


def test_a_tolerance_override_changes_the_answer_and_a_costlier_model_is_never_chosen():
    rng = np.random.default_rng(2)
    large = rng.random(N) < 0.8
    small = large.copy()
    small[:20] = False  # up to 10 points worse
    summary, analysis = _run(
        _records(small.astype(int).tolist(), [0.5] * N, 0.1), _records(large.astype(int).tolist(), [0.5] * N, 1.0)
    )
    assert decisions(summary, analysis, CLAIMS)["t"].choice is None
    loose = {"C3": {"thresholds": {"accuracy_tolerance": 0.25}}}
    assert decisions(summary, analysis, loose)["t"].choice.name == "s"
    # the same quality, but the "small" model is slower than the reference: not an option to save cost
    summary, analysis = _run(
        _records(large.astype(int).tolist(), [0.5] * N, 2.0), _records(large.astype(int).tolist(), [0.5] * N, 1.0)
    )
    dec = decisions(summary, analysis, loose)["t"]
    d = dec.to_dict()
    assert d["choice"] is None and d["closest"] is None
    assert decision_rows({"t": dec})[0][1] == "keep l: no cheaper option meets the tolerance"


def test_both_models_at_the_majority_baseline_are_said_to_decide_nothing():
    """Both models answer the majority label on every item: the small one is 'within tolerance' of the large one, and
    C3 and the decision table must say that this is no evidence it can do the task."""
    from harness.verdicts.claims import evaluate_claims

    def lazy(seconds: float) -> list:
        # 70% of the items are labelled "a", and the model always answers "a"
        recs = _records([1] * N, [0.5] * N, seconds)
        for i, r in enumerate(recs):
            r.gold = "a" if i % 10 < 7 else "b"
            r.prediction = "a"
            r.scores = {"correct": float(r.gold == "a")}
        return recs

    summary, analysis = _run(lazy(0.1), lazy(1.0))
    assert summary.tasks["t"].results["s"].baselines.majority == pytest.approx(0.7)
    dec = decisions(summary, analysis, CLAIMS)["t"]
    assert dec.to_dict()["majority_baseline"] == pytest.approx(0.7)
    row = decision_rows({"t": dec})[0]
    assert row[1] == "use the cheaper option (both no better than always answering the most common label, 70%)"
    (c3,) = evaluate_claims(summary, analysis, {"C3": {"check": "small_within_tolerance", **CLAIMS["C3"]}})
    assert c3.verdict == "supported" and "no better than always answering the most common label" in c3.key_number
    assert "on t the compared models are no better than always answering the most common label" in c3.sentence
    # a model that reads the items is not flagged
    rng = np.random.default_rng(0)
    good = rng.random(N) < 0.95
    summary, analysis = _run(_records(good.astype(int).tolist(), [0.5] * N, 0.1), _records([1] * N, [0.5] * N, 1.0))
    assert "majority_baseline" not in decisions(summary, analysis, CLAIMS)["t"].to_dict()


def test_a_reference_that_misses_the_latency_slo_is_said_in_the_answer():
    """The reference keeps the quality, but its load test met the SLO only below the expected rate: the answer says
    that no option meets both, instead of recommending it silently."""
    from harness.analysis.schema import Interval
    from harness.verdicts.decision import Option, TaskDecision

    small = Option(
        "small", "model", Interval(-0.14, -0.2, -0.09, 20, "paired"), 0.04, 2.7, "latency", None, "falls short"
    )
    ref = Option("large", "model", None, 0.1, 3.0, "latency", None, "reference")
    d = TaskDecision("rougeL", 0.02, "large", None, small, [ref, small], reference_fails_slo=True)
    answer, shown = d.shown
    assert "keep large" in answer and "fails the latency SLO itself, so no option meets both" in answer
    assert shown is small and d.to_dict()["reference_fails_slo"] is True
    assert "reference_fails_slo" not in TaskDecision("rougeL", 0.02, "large", None, small, [ref, small]).to_dict()
