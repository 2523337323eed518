"""Metrics on known cases."""

from __future__ import annotations

import pytest

from harness.tasks.metrics import accuracy, macro_f1, rouge


def test_rouge_identical_and_disjoint():
    assert rouge("the council approved the bridge", ["the council approved the bridge"]) == pytest.approx(
        {"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0}
    )
    assert rouge("apples and pears", ["the council approved the bridge"])["rouge1"] == 0.0


def test_rouge_known_pair():
    # prediction: "the cat sat" ; reference: "the cat sat on the mat"
    # ROUGE-1: P=3/3, R=3/6 -> F=2/3 ; ROUGE-2: bigrams 2/2 vs 2/5 -> F=4/7 ; ROUGE-L: LCS 3 -> F=2/3
    got = rouge("the cat sat", ["the cat sat on the mat"])
    assert got["rouge1"] == pytest.approx(2 / 3)
    assert got["rouge2"] == pytest.approx(4 / 7)
    assert got["rougeL"] == pytest.approx(2 / 3)


def test_rouge_takes_best_reference():
    one = rouge("the cat sat", ["a dog ran"])
    best = rouge("the cat sat", ["a dog ran", "the cat sat"])
    assert best["rougeL"] == 1.0 > one["rougeL"]


def test_accuracy_and_macro_f1_by_hand():
    golds = ["a", "a", "b", "b", "c"]
    preds = ["a", "b", "b", "b", "a"]
    assert accuracy(golds, preds) == pytest.approx(3 / 5)
    # a: P=1/2 R=1/2 F=1/2 ; b: P=2/3 R=1 F=4/5 ; c: P=0 R=0 F=0 -> macro (0.5+0.8+0)/3
    assert macro_f1(golds, preds, ["a", "b", "c"]) == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    # a label never gold does not count
    assert macro_f1(["a", "b"], ["a", "b"], ["a", "b", "z"]) == pytest.approx(1.0)


def test_key_fact_normalization():
    from harness.tasks.metrics import fact_tokens

    assert fact_tokens("3,000 billion dollars") == fact_tokens("3 trillion dollars") == ["3000000000000", "dollar"]
    assert fact_tokens("a six-month pause") == ["6", "month", "paus"]
    assert fact_tokens("Hajishirzi déclaré") == ["hajishirzi", "declar"]
    assert "not" in fact_tokens("not training GPT-5")  # negations are content


def test_key_fact_recall_known_cases():
    from harness.tasks.metrics import key_fact_recall

    facts = ["Sam Altman", "more than six months", "GPT-4", "external audits"]
    out = "Altman says OpenAI waited more than 6 months after training GPT-4."
    assert key_fact_recall(out, facts) == pytest.approx(3 / 4)  # surname keeps the name; no audits
    assert key_fact_recall("GPT-5 was trained for six months", ["GPT-4"]) == 0.0  # a wrong number loses the fact
    assert key_fact_recall("Nvidia is worth 3,000 billion dollars", ["$3 trillion", "Nvidia"]) == 1.0
    assert key_fact_recall("", ["Nvidia"]) == 0.0
    assert key_fact_recall("anything", [], 0.5) != key_fact_recall("anything", [], 0.5)  # NaN: nothing to recall
