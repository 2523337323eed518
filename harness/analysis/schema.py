"""The typed statistics of a run: what ``analysis.json`` holds, as objects that round-trip through their JSON.

Built by ``harness.analysis.per_task`` from the records; read by the claims, the decision, the follow-up table,
the report's tables and plots. ``to_dict`` keeps the file's field order (and leaves out fields a comparison does
not have), so a report rebuilt from the same records is the same byte for byte. The cascade simulation and the
router evaluation stay plain mappings: curves and per-signal tables whose shape is theirs.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Optional

from harness.analysis.sample_size import SampleSize
from harness.analysis.stats import Estimate, McNemar
from harness.results.schema import check_format

ANALYSIS_FORMAT = 1  # analysis.json


def _without_none(obj: Any) -> dict[str, Any]:
    """The dataclass's fields in order, those set to None left out (a comparison has only what applies to it)."""
    out: dict[str, Any] = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if value is not None:
            out[f.name] = value.to_dict() if hasattr(value, "to_dict") else value
    return out


@dataclass
class Interval:
    """A point estimate with its 95% interval, as analysis.json stores it."""

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

    def to_dict(self) -> dict[str, Any]:
        return _without_none(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Interval:
        d = dict(d)
        if d.get("fixed_n") is not None:
            d["fixed_n"] = cls.from_dict(d["fixed_n"])
        return cls(**d)


def _intervals(d: Optional[dict[str, Any]]) -> Optional[dict[str, Interval]]:
    return {k: Interval.from_dict(v) for k, v in d.items()} if d is not None else None


@dataclass
class ModelStatistics:
    """One model on one task: each metric's mean and latency percentiles, with bootstrap intervals."""

    n: int
    quality: dict[str, Interval]
    latency_s: Optional[dict[str, Interval]]  # p50/p90/p95/p99; None in throughput mode

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "quality": {k: v.to_dict() for k, v in self.quality.items()},
            "latency_s": {k: v.to_dict() for k, v in self.latency_s.items()} if self.latency_s is not None else None,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelStatistics:
        return cls(d["n"], _intervals(d["quality"]) or {}, _intervals(d.get("latency_s")))


@dataclass
class PairedComparison:
    """A model against the reference on the same items (absent fields: not applicable, e.g. McNemar for generation)."""

    same_items: bool
    reason: Optional[str] = None  # why there is no paired comparison
    n: Optional[int] = None
    difference_vs_reference: dict[str, Interval] = field(default_factory=dict)  # candidate minus reference, per metric
    sample_size: dict[str, SampleSize] = field(default_factory=dict)
    mcnemar: Optional[McNemar] = None  # classification
    latency_median_ratio: Optional[Interval] = None  # candidate / reference
    energy_ratio_reference_over_candidate: Optional[Interval] = None
    cascade: Optional[dict[str, Any]] = None  # the in-sample cascade simulation (harness.analysis.cascade)
    routing: Optional[dict[str, Any]] = None  # the cascade as a router, cross-fitted (harness.analysis.routing)
    cross_hardware: Optional[bool] = None  # True: the cells ran on different hardware classes (no time ratios)

    def to_dict(self) -> dict[str, Any]:
        if not self.same_items:
            return {"same_items": False, "reason": self.reason}
        out = _without_none(self)
        out["difference_vs_reference"] = {k: v.to_dict() for k, v in self.difference_vs_reference.items()}
        out["sample_size"] = {k: v.to_dict() for k, v in self.sample_size.items()}
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PairedComparison:
        def opt(name: str) -> Optional[Interval]:
            return Interval.from_dict(d[name]) if d.get(name) is not None else None

        return cls(
            same_items=d["same_items"],
            reason=d.get("reason"),
            n=d.get("n"),
            difference_vs_reference=_intervals(d.get("difference_vs_reference")) or {},
            sample_size={k: SampleSize(**v) for k, v in (d.get("sample_size") or {}).items()},
            mcnemar=McNemar(**d["mcnemar"]) if d.get("mcnemar") else None,
            latency_median_ratio=opt("latency_median_ratio"),
            energy_ratio_reference_over_candidate=opt("energy_ratio_reference_over_candidate"),
            cascade=d.get("cascade"),
            routing=d.get("routing"),
            cross_hardware=d.get("cross_hardware"),
        )


@dataclass
class TaskAnalysis:
    task_type: str
    models: dict[str, ModelStatistics] = field(default_factory=dict)
    comparisons: dict[str, PairedComparison] = field(default_factory=dict)  # every model but the reference

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_type": self.task_type,
            "models": {k: v.to_dict() for k, v in self.models.items()},
            "comparisons": {k: v.to_dict() for k, v in self.comparisons.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TaskAnalysis:
        return cls(
            d["task_type"],
            {k: ModelStatistics.from_dict(v) for k, v in d.get("models", {}).items()},
            {k: PairedComparison.from_dict(v) for k, v in d.get("comparisons", {}).items()},
        )


@dataclass
class RunAnalysis:
    """``analysis.json``: per task, every model's statistics and every model against the reference."""

    confidence_level: float
    seed: int
    reference: Optional[str]
    tasks: dict[str, TaskAnalysis]
    format: int = ANALYSIS_FORMAT

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "confidence_level": self.confidence_level,
            "seed": self.seed,
            "reference": self.reference,
            "tasks": {k: v.to_dict() for k, v in self.tasks.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunAnalysis:
        version = check_format(d, ANALYSIS_FORMAT, "analysis.json")
        tasks = {k: TaskAnalysis.from_dict(v) for k, v in d.get("tasks", {}).items()}
        return cls(d["confidence_level"], d["seed"], d.get("reference"), tasks, version)

    def comparison(self, task: str, model: str) -> Optional[PairedComparison]:
        entry = self.tasks.get(task)
        return entry.comparisons.get(model) if entry else None
