"""A cell's per-item outcomes in arrays: what the statistics, the cascade, the router and the claims read of its records.

A cell's records are read once (``harness.results.summary``); its summary and these arrays are kept, the records
themselves (prompts, gold answers, details) are dropped, so a store of 100 models x 50 tasks x 200 items holds
about 20 kB per cell instead of every record. Pages that show the text (``samples.html``, ``harness flips``)
read the few cells they show again, from disk.

Every value is taken from the records exactly as the statistics took it before (the same floats, the same
"missing" rules), so the numbers of a report do not change with the representation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Optional, Union

import numpy as np

from harness.results.records import SampleRecord
from harness.tasks.types import is_classification, item_score_key


def _detail(name: str) -> Callable[[SampleRecord], Optional[float]]:
    def get(r: SampleRecord) -> Optional[float]:
        v = r.details.get(name)
        return float(v) if v is not None else None

    return get


def _negative_entropy(r: SampleRecord) -> Optional[float]:
    probs = r.details.get("probs")
    return float(sum(p * math.log(p) for p in probs if p > 0)) if probs else None  # -entropy: higher = surer


def _confidence(r: SampleRecord) -> Optional[float]:
    """Label-probability margin (classification) or mean token log-probability (generation)."""
    if "margin" in r.details:
        return float(r.details["margin"])
    value = r.details.get("mean_logprob")
    return float(value) if value is not None else None


# the routing signals (harness.analysis.routing): higher = the model is surer of its answer
SIGNALS: dict[str, dict[str, Callable[[SampleRecord], Optional[float]]]] = {
    "classification": {"margin": _detail("margin"), "negative_entropy": _negative_entropy},
    "generation": {"mean_logprob": _detail("mean_logprob"), "min_logprob": _detail("min_logprob")},
}


def _all_or_none(values: list[Optional[float]]) -> Optional[np.ndarray]:
    """An array of the values, or None where any item lacks one (or there are none): a signal is all or nothing."""
    if not values or any(v is None for v in values):
        return None
    return np.asarray(values, dtype=float)


@dataclass
class CellOutcomes:
    """One model on one task, item by item, in the task's item order."""

    task_type: str
    sample_ids: list[str]
    item_score: np.ndarray  # the per-item score whose mean is the primary metric (correct, rougeL)
    metrics: dict[str, np.ndarray]  # per-item values of every metric (accuracy = correct; NaN scores left out)
    item_s: np.ndarray  # each item's share of model time
    latency_s: Optional[np.ndarray]  # request latencies; None in throughput mode (or where one is missing)
    confidence: Optional[np.ndarray]  # the cascade's signal (margin or mean log-probability); None when absent
    signals: dict[str, np.ndarray] = field(default_factory=dict)  # routing signals present on every item
    predictions: list[str] = field(default_factory=list)  # for agreement between models (the cascade)

    @property
    def n(self) -> int:
        return len(self.sample_ids)

    @property
    def nbytes(self) -> int:
        """The arrays' size (the predictions' text not counted)."""
        arrays = [self.item_score, self.item_s, *self.metrics.values(), *self.signals.values()]
        arrays += [a for a in (self.latency_s, self.confidence) if a is not None]
        return sum(a.nbytes for a in arrays)

    @classmethod
    def of(cls, records: Sequence[SampleRecord], task_type: str) -> CellOutcomes:
        key = item_score_key(task_type)
        if is_classification(task_type):
            metrics = {"accuracy": np.asarray([r.scores["correct"] for r in records], dtype=float)}
        else:
            names = sorted({k for r in records for k in r.scores})
            metrics = {
                n: np.asarray(
                    [r.scores[n] for r in records if n in r.scores and r.scores[n] == r.scores[n]], dtype=float
                )
                for n in names
            }
        kind = "classification" if is_classification(task_type) else "generation"
        signals = {name: _all_or_none([get(r) for r in records]) for name, get in SIGNALS[kind].items()}
        return cls(
            task_type=task_type,
            sample_ids=[r.sample_id for r in records],
            item_score=np.asarray([float(r.scores.get(key, np.nan)) for r in records], dtype=float),
            metrics=metrics,
            item_s=np.asarray([r.item_s for r in records], dtype=float),
            latency_s=_all_or_none([r.latency_s for r in records]),
            confidence=_all_or_none([_confidence(r) for r in records]),
            signals={k: v for k, v in signals.items() if v is not None},
            predictions=[r.prediction for r in records],
        )


Outcomes = Union[CellOutcomes, Sequence[SampleRecord]]


def as_outcomes(cell: Outcomes, task_type: str) -> CellOutcomes:
    """Outcomes from either form (tests and tools pass records; a report passes outcomes read once)."""
    return cell if isinstance(cell, CellOutcomes) else CellOutcomes.of(cell, task_type)
