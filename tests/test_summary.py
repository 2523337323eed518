"""Aggregation from records: breakdowns and cross-item consistency on hand-made records."""

from __future__ import annotations

import pytest
from conftest import make_cell_summary, make_record

from harness.results.schema import ModelRecord
from harness.results.summary import _breakdown, _consistency, compare


def rec(pred: str, gold: str, lang: str, fact: str):
    return make_record(
        prediction=pred,
        gold=gold,
        scores={"correct": float(pred == gold)},
        details={"choices": ["a", "b"]},
        metadata={"lang": lang, "fact_id": fact},
    )


RECORDS = [
    rec("a", "a", "fr", "f1"),
    rec("a", "a", "es", "f1"),
    rec("b", "a", "ja", "f1"),  # inconsistent
    rec("b", "b", "fr", "f2"),
    rec("b", "b", "es", "f2"),
    rec("b", "b", "ja", "f2"),  # consistent, correct
    rec("a", "b", "fr", "f3"),
    rec("a", "b", "es", "f3"),
    rec("a", "b", "ja", "f3"),  # consistent, wrong
]


def test_breakdown_by_language():
    by_lang = _breakdown("classification", RECORDS, ["lang"])["lang"]
    assert by_lang["fr"]["accuracy"] == pytest.approx(2 / 3) and by_lang["fr"]["n"] == 3
    assert by_lang["ja"]["accuracy"] == pytest.approx(1 / 3)


def test_consistency_across_languages():
    c = _consistency(RECORDS, "fact_id")
    assert c is not None and c.to_dict() == {
        "field": "fact_id",
        "groups": 3,
        "same_answer": pytest.approx(2 / 3),
        "all_correct": pytest.approx(1 / 3),
    }


def test_compare_refuses_different_items():
    base = {
        "primary_metric": "accuracy",
        "quality": {"accuracy": 0.5},
        "latency_s": {"p50": 1.0, "p95": 2.0},
        "throughput_samples_per_s": 1.0,
        "peak_memory_bytes": 10,
    }
    small = ModelRecord({"params": {"total": 1, "active": 1}})
    large = ModelRecord({"params": {"total": 10, "active": 10}})

    def cell(*ids: str):
        return make_cell_summary(**base, sample_ids=list(ids))

    same = compare(cell("1", "2"), cell("1", "2"), small, large)
    other = compare(cell("1", "2"), cell("1", "3"), small, large)
    assert same.same_items and same.delta_vs_reference == 0.0 and same.params_total_ratio == 0.1
    assert not other.same_items and other.delta_vs_reference is None


def test_classification_baselines_and_the_one_label_flag():
    """The default run's SmolLM2 answered "supported" on every claim: its accuracy is the majority share, and the
    report must say so beside the majority and chance baselines."""
    from conftest import make_record, make_summary

    from harness.report.tables import baseline_lines
    from harness.results.summary import summarize_model_task

    golds = ["supported"] * 7 + ["contradicted"] * 8 + ["not_mentioned"] * 5
    choices = {"choices": ["supported", "contradicted", "not_mentioned"]}
    meta = {"task_type": "classification", "wall_s": 1.0, "memory": {"peak_bytes": None}}
    lazy = [make_record(sample_id=str(i), gold=g, prediction="supported", details=choices) for i, g in enumerate(golds)]
    reader = [make_record(sample_id=str(i), gold=g, prediction=g, details=choices) for i, g in enumerate(golds)]
    s_lazy, s_reader = summarize_model_task(lazy, meta), summarize_model_task(reader, meta)
    assert s_lazy.baselines is not None and s_lazy.baselines.to_dict() == {
        "majority_label": "contradicted",
        "majority": 0.4,
        "chance": 1 / 3,
        "top_prediction": "supported",
        "top_prediction_share": 1.0,
    }
    assert s_lazy.quality["accuracy"] == 0.35 and s_reader.baselines.top_prediction_share == 0.4
    summary = make_summary({"seed_claims": ({"type": "classification"}, {"small": s_lazy, "large": s_reader})})
    lines = baseline_lines(summary, 90)
    assert "'contradicted') scores 40.0%" in lines[0] and "uniform guess 33.3%" in lines[0]
    assert len(lines) == 2 and "small answers one label" in lines[1] and "'supported' on 100%" in lines[1]
    assert len(baseline_lines(summary, 101)) == 1  # the threshold is the report's setting
