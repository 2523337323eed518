"""The typed results of a run: what ``summary.json`` holds, as objects that round-trip through their JSON.

Modules pass these objects; string keys appear only here, where JSON is read or written. Each
``to_dict`` keeps the field order of the file, so a report rebuilt from the same records is the same
byte for byte. Model records (``ModelRecord``) and task descriptions (``TaskSummary.info``) keep the mapping
an engine or a task source wrote, open to new fields; ``ModelRecord`` gives typed access to the fields read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional, TypedDict

from harness.config.schema import HardwareConfig
from harness.measure.energy import EnergyTotal
from harness.measure.hardware import HardwareRecord
from harness.serialize import UPGRADE, Serializable
from harness.serialize import ResultFormatError as ResultFormatError  # raised by every reader of a results file

SUMMARY_FORMAT = 1  # summary.json; bump when a field changes meaning (readers of older files keep working)


def check_format(d: Mapping[str, Any], newest: int, where: str) -> int:
    """The file's format version (1 where a file predates versions); a newer one is named, never misread."""
    version = int(d.get("format", 1))
    if version > newest:
        raise ResultFormatError(
            f"{where} is format {version}, written by a newer version of the harness (this one reads up to {newest})",
            UPGRADE,
        )
    return version


@dataclass
class ModelRecord(Serializable):
    """A model as its engine described it when it loaded (``Engine.describe()`` + the plan's facts), kept as written.

    Engines add fields of their own (a GGUF's quantization, llama.cpp's context size), so the record stays the
    mapping it is on disk; the fields reports and verdicts use are read here, typed, and nowhere else.
    """

    data: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.data.get("name", ""))

    @property
    def role(self) -> str:  # small / large with two models; reference / candidate with more
        return str(self.data.get("role", ""))

    @role.setter
    def role(self, value: str) -> None:
        self.data["role"] = value

    @property
    def architecture_only(self) -> bool:  # random weights at a published size: latency and memory, no quality
        return bool(self.data.get("architecture_only"))

    @property
    def published_params(self) -> Optional[int]:
        value = self.data.get("published_params")
        return int(value) if value else None

    @property
    def params_total(self) -> int:
        return int(self.data["params"]["total"])

    @property
    def params_active(self) -> int:
        return int(self.data["params"]["active"])

    @property
    def params_embedding(self) -> int:
        return int(self.data["params"]["embedding"])

    @property
    def is_moe(self) -> bool:
        return bool(self.data["params"].get("is_moe"))

    @property
    def size(self) -> int:
        """The size used in ratios: the published parameter count where the config gives one, else the loaded count."""
        return self.published_params or self.params_total

    @property
    def device(self) -> str:
        return str(self.data.get("device"))

    def text(self, key: str, default: str = "-") -> str:
        """A descriptive field as shown in the report (architecture, dtype, engine, source ...)."""
        value = self.data.get(key)
        return default if value is None else str(value)

    def to_dict(self) -> dict[str, Any]:
        return self.data

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: Optional[str] = None) -> ModelRecord:
        return cls(dict(d))


@dataclass
class Percentiles(Serializable):
    """Mean and percentiles of a per-item quantity (seconds); all None when no item had it."""

    where = "a latency summary"

    mean: Optional[float] = None
    p50: Optional[float] = None
    p90: Optional[float] = None
    p95: Optional[float] = None
    p99: Optional[float] = None


@dataclass
class Economics(Serializable):
    """Cost, energy and carbon of one model on one task under a hardware profile."""

    where = "an economics entry"
    omit_none = ("cost_basis",)  # absent unless priced by tokens: older summaries stay as written

    hardware: str
    cost_per_1k_usd: float
    energy_per_request_j: float
    energy_method: str
    co2_g_per_1k: float
    memory_headroom_copies: Optional[int]
    # None: hardware price x measured time; "tokens": a hosted model's price per million tokens x the tokens used
    cost_basis: Optional[str] = None


# a hardware class of a comparison: its label, its record, whether it is a server's, and its cells ("model/task")
HardwareGroup = TypedDict(
    "HardwareGroup", {"label": str, "class": Optional[HardwareRecord], "served": bool, "cells": list[str]}
)


class CellEntry(TypedDict, total=False):
    """A cell of a comparison as summary.json lists it: its reference (``CellRef``) and whether it is complete."""

    model: str
    task: str
    key: str
    path: str
    status: str
    computed_at: Optional[str]
    hardware: Optional[str]
    hardware_label: Optional[str]
    complete: bool


@dataclass
class CellStop(Serializable):
    """A sequential run's stop of a cell: after how many items, of how many planned, decided by which claims."""

    at: Optional[int] = None
    of: Optional[int] = None
    claims: Optional[list[str]] = None


@dataclass
class Baselines(Serializable):
    """What answering a classification task without reading scores on its items, and the model's own habit."""

    majority_label: str  # the most common gold label
    majority: float  # always answering it: its share of the items
    chance: float  # a uniform guess over the labels
    top_prediction: str  # the model's most common answer
    top_prediction_share: float


@dataclass
class Consistency(Serializable):
    """Items sharing a metadata field ask the same fact: how often the model answers them all alike."""

    field: str
    groups: int
    same_answer: float
    all_correct: float


@dataclass
class CellInfo(Serializable):
    """Where a cell summary came from: the cell, how it was computed, whether it stopped early."""

    where = "a cell entry"
    omit_none = ("stopped", "hardware_class")

    key: str
    path: str
    status: str
    computed_at: Optional[str]
    sessions: int
    failed_ids: list[str]
    oom_events: int
    final_batch_size: Optional[int]
    stopped: Optional[CellStop] = None
    hardware_class: Optional[HardwareRecord] = (
        None  # where it was computed (harness.measure.hardware); None: unrecorded
    )


@dataclass
class CellSummary(Serializable):
    """One model on one task: quality, timing, tokens, memory, cost, computed from the cell's records."""

    where = "a cell summary"
    omit_none = ("cell", "baselines")

    task_type: str
    n: int
    primary_metric: str
    quality: dict[str, float]
    mode: str  # "latency" (batch 1: per-request latencies) or "throughput" (batches: no request latency)
    batch_size: int
    latency_s: Percentiles
    item_s: Percentiles  # each item's share of model time (both modes)
    ttft_s: Optional[Percentiles]  # generation only
    decode_tokens_per_s_median: Optional[float]
    wall_s: float
    throughput_samples_per_s: Optional[float]
    throughput_tokens_per_s: Optional[float]
    output_tokens_per_s: Optional[float]
    input_tokens: int
    truncated_items: int
    output_tokens: int
    peak_memory_bytes: Optional[int]
    memory: dict[str, Any]
    energy: Optional[EnergyTotal]
    sample_ids: list[str]
    breakdown: dict[str, dict[str, dict[str, float]]]  # field -> value -> n and each quality metric
    consistency: Optional[Consistency]
    economics: Optional[Economics]
    cell: Optional[CellInfo] = None
    # classification: majority-class and chance accuracy of these items, the model's most common answer and its share
    baselines: Optional[Baselines] = None

    @property
    def score(self) -> float:
        """The value of the primary metric."""
        return self.quality[self.primary_metric]


@dataclass
class Comparison(Serializable):
    """A model against the reference on one task (ratios are candidate / reference)."""

    where = "a comparison"

    same_items: bool
    metric: str
    candidate: float
    reference: float
    delta_vs_reference: Optional[float]
    latency_p50_ratio: Optional[float]
    latency_p95_ratio: Optional[float]
    throughput_ratio: Optional[float]
    peak_memory_ratio: Optional[float]
    cost_ratio: Optional[float]
    energy_ratio: Optional[float]
    params_total_ratio: Optional[float]
    params_active_ratio: Optional[float]
    # the two cells ran on different hardware classes: latency, throughput, cost and energy ratios are not computed
    cross_hardware: bool = False


@dataclass
class TaskSummary(Serializable):
    """A task as planned (its description, open to each source's fields) and every model's cell summary on it."""

    info: dict[str, Any]
    results: dict[str, CellSummary] = field(default_factory=dict)

    @property
    def type(self) -> str:
        return str(self.info.get("type", ""))

    def to_dict(self) -> dict[str, Any]:
        return {**self.info, "results": {name: r.to_dict() for name, r in self.results.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: Optional[str] = None) -> TaskSummary:
        info = {k: v for k, v in d.items() if k != "results"}
        return cls(info, {name: CellSummary.from_dict(r) for name, r in (d.get("results") or {}).items()})


@dataclass(frozen=True)
class StopRule(Serializable):
    """runtime.stop_when_decided as a run applied it (plan.json, summary.json): which claims stop a task, their
    thresholds per metric, and the level and looks of each anytime-valid sequence. The defaults are the rule assumed
    for stopped cells gathered from a store without a plan: 5%, one comparison."""

    claims: list[str] = field(default_factory=list)
    thresholds: dict[str, Any] = field(default_factory=dict)  # primary metric -> the stopping claims' thresholds
    alpha: float = 0.05
    comparisons: int = 1
    alpha_per_comparison: float = 0.05  # Bonferroni: alpha / comparisons
    first_look: int = 1
    look_growth: float = 1.5
    sequence: str = "asymptotic"  # runtime.confidence_sequence
    method: str = ""  # the sequence's name in words

    where: ClassVar[str] = "a stop rule"


@dataclass
class RunSummary(Serializable):
    """``summary.json``: every complete cell of a run (or combined comparison), each model against the reference."""

    where = "summary.json"
    lead = ("format",)

    run_dir: str
    name: str
    pair: str
    task_group: str
    hardware: Optional[HardwareConfig]  # the price profile
    models: dict[str, ModelRecord]
    order: list[str]  # smallest first
    reference: Optional[str]
    tasks: dict[str, TaskSummary]
    comparisons: dict[str, dict[str, Comparison]]
    cells: list[CellEntry]
    missing_cells: list[str] = field(default_factory=list)
    not_run: list[str] = field(default_factory=list)
    incomplete_tasks: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    sequential: Optional[StopRule] = None
    # hardware class id -> its group; empty where no cell recorded its class
    hardware_classes: dict[str, HardwareGroup] = field(default_factory=dict)
    format: int = SUMMARY_FORMAT

    @property
    def mixed_hardware(self) -> bool:
        """The comparison's in-process cells ran on more than one hardware class: timings compare machines, not
        models (a served model's class is its server: a deployment chosen for the comparison, not a mix-up)."""
        return len([c for c in self.hardware_classes.values() if not c.get("served")]) > 1

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: Optional[str] = None) -> RunSummary:
        check_format(d, SUMMARY_FORMAT, "summary.json")
        return super().from_dict(d, where)

    def result(self, task: str, model: Optional[str]) -> Optional[CellSummary]:
        """``model``'s summary on ``task``, or None where the cell is missing."""
        return self.tasks[task].results.get(model) if model is not None and task in self.tasks else None
