"""A load sweep's results: every request it sent (``load/requests.jsonl``, the ground truth) and, per model and level
of concurrency, what that load gave (``load.json``): throughput against p50/p95 latency and time to first token.

As guidellm and vLLM's serving benchmark report it: a step is ``requests`` requests
sent with ``level`` of them in flight at all times; throughput is requests finished
over the step's wall time. The model's price point is the highest level whose p95
end-to-end latency stays within the service-level objective (``load.slo_p95_s``):
the cost per 1,000 requests at that throughput (the hardware's hourly price, or a
hosted model's token prices x the tokens used).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Optional

import numpy as np

from harness.config.schema import HardwareConfig, hardware_profile
from harness.results.records import read_json, write_json
from harness.results.schema import check_format
from harness.results.summary import token_prices
from harness.serialize import Serializable

LOAD_FORMAT = 1  # load.json
REQUESTS = "load/requests.jsonl"
STEPS = "load/steps.jsonl"
TASK = "load/task.json"


@dataclass
class LoadRequest:
    """One request of a load sweep."""

    model: str
    level: int  # requests in flight when it was sent
    index: int
    sample_id: str
    latency_s: float  # end to end, on the client
    ttft_s: Optional[float]
    inter_token_s: Optional[float]
    input_tokens: int
    output_tokens: int
    retries: int = 0


@dataclass
class LoadStep(Serializable):
    """One level of concurrency for one model."""

    model: str
    level: int
    requests: int
    wall_s: float
    requests_per_s: float
    output_tokens_per_s: float
    latency_p50_s: float
    latency_p95_s: float
    ttft_p50_s: Optional[float]
    ttft_p95_s: Optional[float]
    inter_token_mean_s: Optional[float]
    retries: int
    cost_per_1k_usd: Optional[float]  # at this step's throughput
    within_slo: Optional[bool]  # None: no SLO set


@dataclass
class ModelLoad(Serializable):
    """A model's steps and its price point under the SLO."""

    model: str
    steps: list[LoadStep]
    slo_level: Optional[int]  # the highest level within the SLO (None: none, or no SLO)
    cost_per_1k_at_slo_usd: Optional[float]
    cost_basis: str  # "hardware time" | "tokens"


@dataclass
class LoadSummary(Serializable):
    task: str
    slo_p95_s: Optional[float]
    hardware: str
    models: dict[str, ModelLoad] = field(default_factory=dict)
    format: int = LOAD_FORMAT

    where: ClassVar[str] = "load.json"
    lead: ClassVar[tuple[str, ...]] = ("format",)

    def meets_slo(self, model: str) -> Optional[bool]:
        """Whether ``model`` met the SLO at some level (None: not swept, or no SLO)."""
        if self.slo_p95_s is None or model not in self.models:
            return None
        return self.models[model].slo_level is not None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: Optional[str] = None) -> LoadSummary:
        check_format(d, LOAD_FORMAT, "load.json")
        return super().from_dict(d, where)


def percentile(values: list[float], q: float) -> Optional[float]:
    """numpy's (linear) percentile, or None without values: load.json, the report and the progress line agree."""
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else None


def step_cost(
    requests_per_s: float, tokens: tuple[float, float], hardware: HardwareConfig, prices: Optional[tuple[float, float]]
) -> Optional[float]:
    """Cost per 1,000 requests at a throughput: a hosted model's tokens x prices, else the machine's hour shared out."""
    if prices is not None:
        return (tokens[0] * prices[0] + tokens[1] * prices[1]) / 1e6 * 1000
    if requests_per_s <= 0:
        return None
    return float(hardware.hourly_usd) / 3600 / requests_per_s * 1000


def summarize_load(
    requests: list[LoadRequest],
    walls: dict[tuple[str, int], float],
    task: str,
    slo_p95_s: Optional[float],
    hardware: HardwareConfig,
    prices: dict[str, Optional[tuple[float, float]]],
) -> LoadSummary:
    """Steps from the requests on disk and each step's wall time."""
    out = LoadSummary(task=task, slo_p95_s=slo_p95_s, hardware=str(hardware.name))
    for model in dict.fromkeys(r.model for r in requests):
        steps = []
        for level in sorted({r.level for r in requests if r.model == model}):
            rows = [r for r in requests if r.model == model and r.level == level]
            wall = walls.get((model, level)) or sum(r.latency_s for r in rows)
            ttfts = [r.ttft_s for r in rows if r.ttft_s is not None]
            gaps = [r.inter_token_s for r in rows if r.inter_token_s is not None]
            rps = len(rows) / wall if wall > 0 else 0.0
            mean_tokens = (
                float(np.mean([r.input_tokens for r in rows])),
                float(np.mean([r.output_tokens for r in rows])),
            )
            p95 = percentile([r.latency_s for r in rows], 95) or 0.0
            steps.append(
                LoadStep(
                    model=model,
                    level=level,
                    requests=len(rows),
                    wall_s=wall,
                    requests_per_s=rps,
                    output_tokens_per_s=sum(r.output_tokens for r in rows) / wall if wall > 0 else 0.0,
                    latency_p50_s=percentile([r.latency_s for r in rows], 50) or 0.0,
                    latency_p95_s=p95,
                    ttft_p50_s=percentile(ttfts, 50),
                    ttft_p95_s=percentile(ttfts, 95),
                    inter_token_mean_s=float(np.mean(gaps)) if gaps else None,
                    retries=sum(r.retries for r in rows),
                    cost_per_1k_usd=step_cost(rps, mean_tokens, hardware, prices.get(model)),
                    within_slo=None if slo_p95_s is None else p95 <= slo_p95_s,
                )
            )
        within = [s for s in steps if s.within_slo]
        best = max(within, key=lambda s: s.level) if within else None
        out.models[model] = ModelLoad(
            model=model,
            steps=steps,
            slo_level=best.level if best else None,
            cost_per_1k_at_slo_usd=best.cost_per_1k_usd if best else None,
            cost_basis="tokens" if prices.get(model) else "hardware time",
        )
    return out


def read_load_records(run_dir: Path) -> tuple[list[LoadRequest], dict[tuple[str, int], float]]:
    """The sweep's requests and step wall times, as written (empty when the run had no sweep)."""
    path, steps = run_dir / REQUESTS, run_dir / STEPS
    if not path.is_file():
        return [], {}
    requests = [LoadRequest(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line]
    walls = {}
    if steps.is_file():
        for line in steps.read_text(encoding="utf-8").splitlines():
            if line:
                s = json.loads(line)
                walls[(s["model"], int(s["level"]))] = float(s["wall_s"])
    return requests, walls


def load_summary(
    run_dir: Path, config: dict[str, Any], model_records: dict[str, dict[str, Any]]
) -> Optional[LoadSummary]:
    """``load.json`` from the sweep's files (None: no sweep); prices from each model's record."""
    requests, walls = read_load_records(run_dir)
    if not requests:
        return None
    load_cfg = config.get("load") or {}
    prices = {name: token_prices(rec) for name, rec in model_records.items()}
    task = read_json(run_dir / TASK)["task"] if (run_dir / TASK).is_file() else "-"
    summary = summarize_load(
        requests,
        walls,
        task,
        load_cfg.get("slo_p95_s"),
        hardware_profile(config) or HardwareConfig(name="-", hourly_usd=0.0, power_w=0.0, memory_gb=0.0),
        prices,
    )
    write_json(run_dir / "load.json", summary.to_dict())
    return summary
