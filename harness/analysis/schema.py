"""The typed statistics of a run: what ``analysis.json`` holds, as objects that round-trip through their JSON.

Built by ``harness.analysis.per_task`` from the records; read by the claims, the decision, the follow-up table,
the report's tables and plots. ``to_dict`` keeps the file's field order (and leaves out fields a comparison does
not have), so a report rebuilt from the same records is the same byte for byte. The cascade simulation and the
router evaluation stay plain mappings (curves and per-signal tables whose shape is theirs), described key by key
by the TypedDicts below; an interval written into one of them, or into claims.json, is an ``IntervalRecord``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, TypedDict, Union, cast

from harness.analysis.sample_size import SampleSize
from harness.analysis.stats import Estimate, McNemar
from harness.results.schema import check_format
from harness.serialize import Serializable

ANALYSIS_FORMAT = 1  # analysis.json


class EstimateRecord(TypedDict):
    """A point estimate with its 95% interval as a mapping: the fields every written interval has."""

    value: float
    low: float
    high: float
    n: int
    method: str


class IntervalRecord(EstimateRecord, total=False):
    """An ``Interval`` as analysis.json and claims.json write it (``Interval.record``): its optional fields when set."""

    alpha: float
    basis: str
    fixed_n: IntervalRecord


@dataclass
class Interval(Serializable):
    """A point estimate with its 95% interval, as analysis.json stores it."""

    where = "an interval of analysis.json"
    omit_none = True

    value: float
    low: float
    high: float
    n: int
    method: str
    alpha: Optional[float] = None  # a confidence sequence's level (a sequential run)
    basis: Optional[str] = None  # what a latency ratio compares: request latency, or time per item in throughput mode
    fixed_n: Optional[Interval] = None  # beside a confidence sequence: the fixed-n bootstrap interval

    @classmethod
    def of(cls, estimate: Estimate, **extra: Any) -> Interval:
        return cls(estimate.value, estimate.low, estimate.high, estimate.n, estimate.method, **extra)

    def excludes(self, threshold: float) -> Optional[str]:
        """'above' / 'below' when the whole interval is on one side of ``threshold``, else None."""
        return "above" if self.low > threshold else "below" if self.high < threshold else None

    def record(self) -> IntervalRecord:
        """The interval as it is written (``to_dict``: the fields set, in order), typed."""
        return cast(IntervalRecord, self.to_dict())


class Routed(TypedDict):
    """A cascade escalating some items: the share escalated, its mean score, its cost relative to the large model."""

    escalated: float
    score: float
    cost_share: float


class RoutedAt(Routed):
    """A cascade at one confidence threshold (items less confident than it are escalated)."""

    threshold: float


class CascadeUnavailable(TypedDict):
    """No cascade: why (the small model's records carry no confidence)."""

    available: Literal[False]
    reason: str


class CascadeSimulation(TypedDict):
    """The in-sample cascade (``harness.analysis.cascade.simulate``): every threshold, the cheapest keeping the target."""

    available: Literal[True]
    small_score: float
    large_score: float
    keep_share: float
    target_score: float
    best: Optional[RoutedAt]  # None: no threshold keeps the target
    curve: list[RoutedAt]
    agreement: dict[str, float]  # how often the small model says what the large one says, by measure


class CrossFitted(Routed):
    """A cascade whose items are each routed by a threshold chosen on the other folds."""

    difference_vs_large: EstimateRecord  # the cascade's quality minus the large model's, paired
    item_s_p95: float  # its tail time per item


class SignalRequired(TypedDict):
    in_sample: RoutedAt
    cross_fitted: CrossFitted
    random_at_same_calls: float  # a random router escalating the same share of calls: its score


class SignalEvaluation(SignalRequired, total=False):
    """One confidence signal as a router (``harness.analysis.routing``); APGR and calls only when there is a gap."""

    apgr: float
    calls_to_recover: dict[str, Optional[float]]  # "50%" / "80%" / "95%" of the gap -> the share of calls needed


class RouterRequired(TypedDict):
    small_score: float
    large_score: float
    keep_share: float
    folds: int
    random_apgr: float
    signals: dict[str, SignalEvaluation]


class RouterEvaluation(RouterRequired, total=False):
    """The cascade as a router, cross-fitted (``harness.analysis.routing.evaluate_router``); the best signal if any."""

    best_signal: str


@dataclass
class ModelStatistics(Serializable):
    """One model on one task: each metric's mean and latency percentiles, with bootstrap intervals."""

    where = "a model's statistics in analysis.json"

    n: int
    quality: dict[str, Interval]
    latency_s: Optional[dict[str, Interval]]  # p50/p90/p95/p99; None in throughput mode


@dataclass
class PairedComparison(Serializable):
    """A model against the reference on the same items (absent fields: not applicable, e.g. McNemar for generation)."""

    where = "a comparison in analysis.json"
    omit_none = True

    same_items: bool
    reason: Optional[str] = None  # why there is no paired comparison
    n: Optional[int] = None
    difference_vs_reference: dict[str, Interval] = field(default_factory=dict)  # candidate minus reference, per metric
    sample_size: dict[str, SampleSize] = field(default_factory=dict)
    mcnemar: Optional[McNemar] = None  # classification
    latency_median_ratio: Optional[Interval] = None  # candidate / reference
    energy_ratio_reference_over_candidate: Optional[Interval] = None
    cascade: Optional[Union[CascadeSimulation, CascadeUnavailable]] = None  # in-sample (harness.analysis.cascade)
    routing: Optional[RouterEvaluation] = None  # the cascade as a router, cross-fitted (harness.analysis.routing)
    cross_hardware: Optional[bool] = None  # True: the cells ran on different hardware classes (no time ratios)

    def to_dict(self) -> dict[str, Any]:
        if not self.same_items:
            return {"same_items": False, "reason": self.reason}
        return super().to_dict()


@dataclass
class TaskAnalysis(Serializable):
    task_type: str
    models: dict[str, ModelStatistics] = field(default_factory=dict)
    comparisons: dict[str, PairedComparison] = field(default_factory=dict)  # every model but the reference


@dataclass
class RunAnalysis(Serializable):
    """``analysis.json``: per task, every model's statistics and every model against the reference."""

    where = "analysis.json"
    lead = ("format",)

    confidence_level: float
    seed: int
    reference: Optional[str]
    tasks: dict[str, TaskAnalysis]
    format: int = ANALYSIS_FORMAT

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: Optional[str] = None) -> RunAnalysis:
        check_format(d, ANALYSIS_FORMAT, "analysis.json")
        return super().from_dict(d, where)

    def comparison(self, task: str, model: str) -> Optional[PairedComparison]:
        entry = self.tasks.get(task)
        return entry.comparisons.get(model) if entry else None
