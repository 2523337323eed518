"""A small-first cascade measured as routers are (RouteLLM, Ong et al. 2024): held-out thresholds, APGR, a random baseline.

From the records of a small and a large model on the same items (no model call):

- **cross-fitted threshold**: items are split into ``folds`` seeded parts; each part's
  items are routed with the threshold chosen on the *other* parts (the cheapest that
  keeps ``keep_share`` of the large model's score there), so every item is scored
  once, by a threshold that never saw it. The in-sample figure (threshold chosen
  and scored on all items, ``harness.analysis.cascade``) is reported beside it for contrast.
- **APGR**: the performance gap recovered, PGR = (score - small) / (large - small),
  averaged over the share of calls escalated from 0 to 1 (the area under the
  PGR-vs-calls curve, trapezoids; RouteLLM's definition). It ranks items by
  confidence only, so it fits nothing. A random router recovers PGR = its call
  share on average: APGR 0.5.
- **calls needed** to recover 50%, 80% and 95% of the gap.
- **signals**: classification: the label-probability margin and the negative
  entropy of the label distribution; generation: the mean and the lowest token
  log-probability. The best signal is the one whose cross-fitted cascade meets the
  target at the lowest cost (else scores highest).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional, TypedDict

import numpy as np

from harness.analysis.cascade import cheapest, curve, outcomes, routed
from harness.analysis.schema import (
    CrossFitted,
    Interval,
    Routed,
    RoutedAt,
    RouterEvaluation,
    SignalEvaluation,
)
from harness.analysis.stats import paired_difference
from harness.results.outcomes import SIGNALS, Outcomes, as_outcomes
from harness.tasks.types import is_classification

GAP_TARGETS = (0.5, 0.8, 0.95)


class FoldThreshold(TypedDict):
    """One fold of a cross-fitted cascade: the items its threshold was chosen on, those it routed, the threshold."""

    train: list[int]
    test: list[int]
    threshold: float


class CrossFit(Routed):
    """A cross-fitted cascade: its share escalated, score and cost, each fold's threshold, which items went up."""

    folds: list[FoldThreshold]
    up: np.ndarray


def choose_threshold(
    conf: np.ndarray,
    s_score: np.ndarray,
    l_score: np.ndarray,
    s_cost: np.ndarray,
    l_cost: np.ndarray,
    keep_share: float,
) -> float:
    """The cheapest threshold that keeps ``keep_share`` of the large model's score on these items (+inf: escalate all)."""
    if len(l_score) == 0:  # a fold of a one-item task chooses on nothing: escalate
        return math.inf
    best = cheapest(curve(conf, s_score, l_score, s_cost, l_cost), keep_share * float(l_score.mean()))
    return best["threshold"] if best else math.inf


def cross_fit(
    conf: np.ndarray,
    s_score: np.ndarray,
    l_score: np.ndarray,
    s_cost: np.ndarray,
    l_cost: np.ndarray,
    keep_share: float,
    folds: int,
    seed: int,
) -> CrossFit:
    """Each fold routed by the threshold chosen on the other folds; every item scored exactly once."""
    n = len(conf)
    k = max(2, min(folds, n))
    order = np.random.default_rng(seed).permutation(n)
    parts = [p for p in (order[i::k] for i in range(k)) if len(p)]
    up = np.zeros(n, dtype=bool)
    used: list[FoldThreshold] = []
    for test in parts:
        train = np.setdiff1d(np.arange(n), test)
        t = choose_threshold(conf[train], s_score[train], l_score[train], s_cost[train], l_cost[train], keep_share)
        up[test] = conf[test] < t
        used.append({"train": train.tolist(), "test": sorted(test.tolist()), "threshold": t})
    return {**routed(up, s_score, l_score, s_cost, l_cost), "folds": used, "up": up}


def gap_curve(conf: np.ndarray, s_score: np.ndarray, l_score: np.ndarray) -> list[tuple[float, float]]:
    """(share of calls escalated, PGR) from escalating nobody to everybody, least confident first."""
    small, large = float(s_score.mean()), float(l_score.mean())
    points = curve(conf, s_score, l_score, np.zeros_like(s_score), np.ones_like(l_score))  # costs play no part here
    return sorted({(p["escalated"], (p["score"] - small) / (large - small)) for p in points})


def apgr(points: Sequence[tuple[float, float]]) -> float:
    """Area under PGR over the share of calls (0 to 1), by trapezoids."""
    xs, ys = zip(*sorted(points))
    return float(sum((xs[i + 1] - xs[i]) * (ys[i + 1] + ys[i]) / 2 for i in range(len(xs) - 1)))


def calls_to_recover(points: Sequence[tuple[float, float]], share: float) -> Optional[float]:
    ok = [x for x, y in points if y >= share]
    return min(ok) if ok else None


def evaluate_router(
    small: Outcomes,
    large: Outcomes,
    task_type: str,
    keep_share: float = 0.95,
    folds: int = 5,
    seed: int = 0,
) -> RouterEvaluation:
    """Every available confidence signal: cross-fitted and in-sample cascades, APGR, calls needed, random baseline."""
    kind = "classification" if is_classification(task_type) else "generation"
    small, large = as_outcomes(small, task_type), as_outcomes(large, task_type)
    s_score, l_score, s_cost, l_cost = outcomes(small, large, task_type)
    gap = float(l_score.mean() - s_score.mean())
    out: RouterEvaluation = {
        "small_score": float(s_score.mean()),
        "large_score": float(l_score.mean()),
        "keep_share": keep_share,
        "folds": folds,
        "random_apgr": 0.5,
        "signals": {},
    }
    for name in SIGNALS[kind]:
        conf = small.signals.get(name)  # present on every item, or not at all
        if conf is None:
            continue
        t_in = choose_threshold(conf, s_score, l_score, s_cost, l_cost, keep_share)
        held = cross_fit(conf, s_score, l_score, s_cost, l_cost, keep_share, folds, seed)
        up = held["up"]
        in_sample: RoutedAt = {**routed(conf < t_in, s_score, l_score, s_cost, l_cost), "threshold": t_in}
        cross_fitted: CrossFitted = {
            "escalated": held["escalated"],
            "score": held["score"],
            "cost_share": held["cost_share"],
            # what the decision table needs: the cascade's quality against the large model, and its tail time per item
            "difference_vs_large": Interval.of(
                paired_difference(np.where(up, l_score, s_score), l_score, seed=seed)
            ).record(),
            "item_s_p95": float(np.percentile(s_cost + np.where(up, l_cost, 0.0), 95)),
        }
        sig: SignalEvaluation = {
            "in_sample": in_sample,
            "cross_fitted": cross_fitted,
            # a random router escalating the same share of calls: small + share x gap on average
            "random_at_same_calls": float(s_score.mean() + held["escalated"] * gap),
        }
        if gap > 0:
            pts = gap_curve(conf, s_score, l_score)
            sig["apgr"] = apgr(pts)
            sig["calls_to_recover"] = {f"{int(s * 100)}%": calls_to_recover(pts, s) for s in GAP_TARGETS}
        out["signals"][name] = sig
    if out["signals"]:
        target = keep_share * float(l_score.mean())

        def rank(item: tuple[str, SignalEvaluation]) -> tuple[bool, float, float]:
            cf = item[1]["cross_fitted"]
            return (cf["score"] >= target, -cf["cost_share"], cf["score"])

        out["best_signal"] = max(out["signals"].items(), key=rank)[0]
    return out
