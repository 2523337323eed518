"""Cascade simulation (claim C4): the small model answers, the large one when the small is unsure.

Computed from the per-sample outcomes of both models (``CellOutcomes``, or their records), with no new model call:
for every confidence threshold, items whose small-model confidence is below it
are escalated (they cost the small model's time plus the large model's, and get
the large model's score); the others keep the small model's answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional, Union

import numpy as np

from harness.analysis.schema import CascadeSimulation, CascadeUnavailable, Routed, RoutedAt
from harness.results.outcomes import CellOutcomes, Outcomes, as_outcomes
from harness.results.records import SampleRecord
from harness.tasks.metrics import rouge_l
from harness.tasks.types import is_classification, item_score_key


def confidence(record: SampleRecord) -> Optional[float]:
    """Label-probability margin (classification) or mean token log-probability (generation)."""
    details = record.details
    if "margin" in details:
        return float(details["margin"])
    value = details.get("mean_logprob")
    return float(value) if value is not None else None


def item_score(record: SampleRecord, task_type: str) -> float:
    return float(record.scores[item_score_key(task_type)])


def agreement(small: CellOutcomes, large: CellOutcomes, task_type: str) -> dict[str, float]:
    """How often the small model says what the large one says."""
    if is_classification(task_type):
        return {"same_prediction": float(np.mean([s == l for s, l in zip(small.predictions, large.predictions)]))}
    overlap = [rouge_l(s, l) for s, l in zip(small.predictions, large.predictions)]
    return {
        "rougeL_small_vs_large": float(np.mean(overlap)),
        "share_rougeL_ge_0.5": float(np.mean([o >= 0.5 for o in overlap])),
    }


def outcomes(small: Outcomes, large: Outcomes, task_type: str) -> tuple[np.ndarray, ...]:
    """(small scores, large scores, small seconds, large seconds) per item, refusing different item sets."""
    s, l_ = as_outcomes(small, task_type), as_outcomes(large, task_type)
    if s.sample_ids != l_.sample_ids:
        raise ValueError("a cascade needs the same items for both models")
    return s.item_score, l_.item_score, s.item_s, l_.item_s


def routed(up: np.ndarray, s_score: np.ndarray, l_score: np.ndarray, s_cost: np.ndarray, l_cost: np.ndarray) -> Routed:
    """Escalating the items in ``up``: share escalated, mean score, cost relative to the large model alone."""
    return {
        "escalated": float(up.mean()),
        "score": float(np.where(up, l_score, s_score).mean()),
        "cost_share": float((s_cost.sum() + l_cost[up].sum()) / l_cost.sum()),
    }


def curve(
    conf: np.ndarray, s_score: np.ndarray, l_score: np.ndarray, s_cost: np.ndarray, l_cost: np.ndarray
) -> list[RoutedAt]:
    """Every threshold (items whose confidence is below it are escalated): -inf never escalates, +inf always."""
    return [
        {"threshold": float(t), **routed(conf < t, s_score, l_score, s_cost, l_cost)}
        for t in [-np.inf, *sorted(set(conf.tolist())), np.inf]
    ]


def cheapest(points: Sequence[RoutedAt], target: float) -> Optional[RoutedAt]:
    """The cheapest point of a curve scoring at least ``target`` (ties: the higher score), or None."""
    ok = [p for p in points if p["score"] >= target]
    return min(ok, key=lambda p: (p["cost_share"], -p["score"])) if ok else None


def simulate(
    small: Outcomes, large: Outcomes, task_type: str, keep_share: float = 0.95
) -> Union[CascadeSimulation, CascadeUnavailable]:
    """The accuracy/cost curve over thresholds and the cheapest threshold keeping ``keep_share`` of the large score."""
    small, large = as_outcomes(small, task_type), as_outcomes(large, task_type)
    s_score, l_score, s_cost, l_cost = outcomes(small, large, task_type)
    if small.confidence is None:
        return {"available": False, "reason": "the small model's records carry no confidence"}
    points = curve(small.confidence, s_score, l_score, s_cost, l_cost)
    target = keep_share * float(l_score.mean())
    return {
        "available": True,
        "small_score": float(s_score.mean()),
        "large_score": float(l_score.mean()),
        "keep_share": keep_share,
        "target_score": target,
        "best": cheapest(points, target),
        "curve": points,
        "agreement": agreement(small, large, task_type),
    }
