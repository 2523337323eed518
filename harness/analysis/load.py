"""A load test's figures (``load.json``), as guidellm and ``vllm bench serve`` report them, from the requests on disk
(``harness.results.load``).

Per model and step: throughput (requests finished over the step's wall time), percentiles p50/p90/p95/p99 of time to
first token, time per output token and end-to-end latency with bootstrap intervals where the step has the requests to
estimate them, SLO attainment (the share of requests meeting every threshold) and goodput (the rate of such requests,
DistServe's definition), and, in an open loop, how far behind its schedule the client sent. A model's SLO edge is
the highest load at which attainment meets its target; the model is priced there (the hardware's hourly price over
that throughput, or a hosted model's token prices x the tokens used).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Optional

import numpy as np

from harness.analysis.schema import Interval
from harness.analysis.stats import percentile_cis
from harness.config.schema import HardwareConfig, LoadConfig, SloConfig, hardware_profile
from harness.results.load import CLOSED, TASK, LoadRequest, StepKey, meets, percentile, read_load_records, step_key
from harness.results.records import read_json, write_json
from harness.results.schema import check_format
from harness.results.summary import token_prices
from harness.serialize import Serializable

NO_PRICE = HardwareConfig(name="-", hourly_usd=0.0, power_w=0.0, memory_gb=0.0)  # a run whose profile prices nothing
LOAD_FORMAT = 1  # load.json (fields added since are read with their defaults)
PERCENTILES = (50, 90, 95, 99)
# a percentile is estimated only where at least one request lies beyond it (p99: 100 requests, p95: 20)
MIN_BEYOND = 1


@dataclass
class Percentiles(Serializable):
    """One term of a step (TTFT, TPOT, end to end): p50/p90/p95/p99 with 95% bootstrap intervals; a percentile the
    step has too few requests for is left out and named in ``too_few``."""

    omit_none = True

    n: int
    values: dict[str, Interval] = field(default_factory=dict)  # "p50" -> its estimate and interval
    too_few: Optional[list[str]] = None  # e.g. ["p99"]: not enough requests to estimate it

    def at(self, q: int) -> Optional[float]:
        iv = self.values.get(f"p{q}")
        return iv.value if iv else None


def term_percentiles(values: list[float], seed: int = 0) -> Percentiles:
    qs = [q for q in PERCENTILES if len(values) * (1 - q / 100) >= MIN_BEYOND - 1e-9]
    out = Percentiles(len(values))
    if values and qs:
        for q, est in zip(qs, percentile_cis(values, qs, seed)):
            out.values[f"p{q}"] = Interval.of(est)
    missing = [f"p{q}" for q in PERCENTILES if q not in qs]
    out.too_few = missing or None
    return out


@dataclass
class LoadStep(Serializable):
    """One step of one model's load test."""

    model: str
    level: int  # requests in flight (0: an open loop at ``rate``)
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
    within_slo: Optional[bool]  # attainment met its target (None: no SLO set)
    mode: str = CLOSED
    rate: Optional[float] = None  # offered requests/s (open loops)
    percentiles: dict[str, Percentiles] = field(default_factory=dict)  # ttft, tpot, e2e
    attainment: Optional[float] = None  # share of requests meeting every SLO threshold (None: no SLO)
    goodput_rps: Optional[float] = None  # requests meeting the SLO per second of the step
    goodput_tokens_per_s: Optional[float] = None
    errors: int = 0
    lag_p95_s: Optional[float] = None  # how far behind schedule the client sent (open loops)
    lag_max_s: Optional[float] = None

    @property
    def offered(self) -> float:
        """The load the step offered: its rate (open loops) or requests in flight."""
        return self.rate if self.rate is not None else float(self.level)

    @property
    def label(self) -> str:
        return f"{self.rate:g}/s {self.mode}" if self.rate is not None else f"{self.level} in flight"


@dataclass
class ModelLoad(Serializable):
    """A model's steps and its price point at its SLO edge."""

    model: str
    steps: list[LoadStep]
    slo_level: Optional[int]  # closed loop: the most requests in flight within the SLO (None: none, or no SLO)
    cost_per_1k_at_slo_usd: Optional[float]
    cost_basis: str  # "hardware time" | "tokens"
    edge: Optional[float] = None  # the highest load (rate or in flight) whose attainment met the target
    searched: bool = False  # the steps were chosen by load.search (doubling, then bisection)


@dataclass
class LoadSummary(Serializable):
    task: str
    slo_p95_s: Optional[float]  # the legacy setting, when it was the SLO
    hardware: str
    models: dict[str, ModelLoad] = field(default_factory=dict)
    format: int = LOAD_FORMAT
    mode: str = CLOSED
    slo: Optional[SloConfig] = None  # the SLO's thresholds and attainment target (None: no SLO)
    expected_rate: Optional[float] = None  # the user's expected requests/s: an edge below it fails the SLO
    prompts: str = "task"  # task | synthetic
    repeated_prompts: int = 0  # requests whose prompt an earlier request sent: a prefix cache could serve them

    where: ClassVar[str] = "load.json"
    lead: ClassVar[tuple[str, ...]] = ("format",)

    def meets_slo(self, model: str) -> Optional[bool]:
        """Whether ``model`` met the SLO at some step, at the expected rate where one is set (None: not tested, or
        no SLO)."""
        if self.slo is None or model not in self.models:
            return None
        m = self.models[model]
        if m.edge is None:
            return False
        return self.expected_rate is None or self.mode == CLOSED or m.edge >= self.expected_rate

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: Optional[str] = None) -> LoadSummary:
        check_format(d, LOAD_FORMAT, "load.json")
        return super().from_dict(d, where)


def slo_text(load: LoadSummary) -> str:
    """The SLO in words: its thresholds and attainment target ("TTFT within 500 ms and end to end within 2 s for at
    least 95% of requests")."""
    slo = load.slo
    if slo is None:
        return "no SLO"

    def secs(v: float) -> str:
        return f"{v * 1000:.0f} ms" if v < 1 else f"{v:g} s"

    named = (("TTFT", slo.ttft_s), ("TPOT", slo.tpot_s), ("end to end", slo.e2e_s))
    terms = [f"{name} within {secs(v)}" for name, v in named if v is not None]
    return f"{' and '.join(terms)} for at least {slo.attainment:.0%} of requests"


def step_cost(
    requests_per_s: float, tokens: tuple[float, float], hardware: HardwareConfig, prices: Optional[tuple[float, float]]
) -> Optional[float]:
    """Cost per 1,000 requests at a throughput: a hosted model's tokens x prices, else the machine's hour shared out."""
    if prices is not None:
        return (tokens[0] * prices[0] + tokens[1] * prices[1]) / 1e6 * 1000
    if requests_per_s <= 0:
        return None
    return float(hardware.hourly_usd) / 3600 / requests_per_s * 1000


def _attained(rows: list[LoadRequest], wall: float, slo: Optional[SloConfig]) -> dict[str, Any]:
    if slo is None:
        return {"within_slo": None}
    good = [r for r in rows if meets(r, slo)]
    share = len(good) / len(rows) if rows else 0.0
    return {
        "within_slo": share >= slo.attainment,
        "attainment": share,
        "goodput_rps": len(good) / wall if wall > 0 else 0.0,
        "goodput_tokens_per_s": sum(r.output_tokens for r in good) / wall if wall > 0 else 0.0,
    }


def summarize_step(
    rows: list[LoadRequest],
    wall: float,
    slo: Optional[SloConfig],
    hardware: HardwareConfig,
    prices: Optional[tuple[float, float]],
    seed: int = 0,
) -> LoadStep:
    """One step's figures from its requests and wall time."""
    first, done = rows[0], [r for r in rows if not r.error]
    latencies = [r.latency_s for r in done]
    ttfts = [r.ttft_s for r in done if r.ttft_s is not None]
    tpots = [t for r in done if (t := r.tpot_s) is not None]
    gaps = [r.inter_token_s for r in done if r.inter_token_s is not None]
    lags = [lag for r in rows if (lag := r.lag_s) is not None]
    rps = len(done) / wall if wall > 0 else 0.0
    mean_tokens = (float(np.mean([r.input_tokens for r in rows])), float(np.mean([r.output_tokens for r in rows])))
    return LoadStep(
        model=first.model,
        level=first.level,
        requests=len(rows),
        wall_s=wall,
        requests_per_s=rps,
        output_tokens_per_s=sum(r.output_tokens for r in done) / wall if wall > 0 else 0.0,
        latency_p50_s=percentile(latencies, 50) or 0.0,
        latency_p95_s=percentile(latencies, 95) or 0.0,
        ttft_p50_s=percentile(ttfts, 50),
        ttft_p95_s=percentile(ttfts, 95),
        inter_token_mean_s=float(np.mean(gaps)) if gaps else None,
        retries=sum(r.retries for r in rows),
        cost_per_1k_usd=step_cost(rps, mean_tokens, hardware, prices),
        mode=first.mode,
        rate=first.rate,
        percentiles={
            name: term_percentiles(values, seed)
            for name, values in (("ttft", ttfts), ("tpot", tpots), ("e2e", latencies))
            if values
        },
        errors=len(rows) - len(done),
        lag_p95_s=percentile(lags, 95),
        lag_max_s=max(lags) if lags else None,
        **_attained(rows, wall, slo),
    )


def model_load(
    model: str, steps: list[LoadStep], prices: Optional[tuple[float, float]], searched: bool = False
) -> ModelLoad:
    """A model's steps, in order of load, and its SLO edge: the highest load whose attainment met the target."""
    steps = sorted(steps, key=lambda s: s.offered)
    within = [s for s in steps if s.within_slo]
    best = max(within, key=lambda s: s.offered) if within else None
    return ModelLoad(
        model=model,
        steps=steps,
        slo_level=best.level if best is not None and best.rate is None else None,
        cost_per_1k_at_slo_usd=best.cost_per_1k_usd if best else None,
        cost_basis="tokens" if prices else "hardware time",
        edge=best.offered if best else None,
        searched=searched,
    )


def summarize_load(
    requests: list[LoadRequest],
    walls: dict[StepKey, float],
    task: str,
    slo: Optional[SloConfig | float],
    hardware: HardwareConfig,
    prices: dict[str, Optional[tuple[float, float]]],
    settings: Optional[LoadConfig] = None,
    searched: bool = False,
) -> LoadSummary:
    """Steps from the requests on disk and each step's wall time (``slo``: the SLO, or a legacy p95 bound in s)."""
    legacy = slo if isinstance(slo, (int, float)) else None
    objective = SloConfig(e2e_s=float(legacy)) if legacy is not None else slo
    objective = objective if isinstance(objective, SloConfig) and objective.is_set() else None
    out = LoadSummary(task=task, slo_p95_s=legacy, hardware=str(hardware.name), slo=objective)
    if settings is not None:
        out.expected_rate, out.prompts = settings.expected_rate, settings.prompts
    out.mode = requests[0].mode if requests else CLOSED
    seen: set[tuple[str, str]] = set()
    for r in requests:
        out.repeated_prompts += (r.model, r.sample_id) in seen
        seen.add((r.model, r.sample_id))
    groups: dict[StepKey, list[LoadRequest]] = {}
    for r in requests:
        groups.setdefault(step_key(r.model, r.level, r.rate), []).append(r)
    per_model: dict[str, list[LoadStep]] = {}
    for key, rows in groups.items():
        wall = walls.get(key) or sum(r.latency_s for r in rows)
        per_model.setdefault(key[0], []).append(summarize_step(rows, wall, objective, hardware, prices.get(key[0])))
    for model, steps in per_model.items():
        out.models[model] = model_load(model, steps, prices.get(model), searched)
    return out


def load_settings(config: dict[str, Any]) -> LoadConfig:
    """The run's ``load`` section, typed (a run that predates a field gets its default)."""
    from omegaconf import OmegaConf

    typed = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(LoadConfig), config.get("load") or {}))
    assert isinstance(typed, LoadConfig)
    return typed


def load_summary(
    run_dir: Path, config: dict[str, Any], model_records: dict[str, dict[str, Any]]
) -> Optional[LoadSummary]:
    """``load.json`` from the test's files (None: no load test); prices from each model's record."""
    requests, walls, searched = read_load_records(run_dir)
    if not requests:
        return None
    settings = load_settings(config)
    prices = {name: token_prices(rec) for name, rec in model_records.items()}
    task = read_json(run_dir / TASK)["task"] if (run_dir / TASK).is_file() else "-"
    legacy = settings.slo_p95_s is not None and not settings.slo.is_set()
    summary = summarize_load(
        requests,
        walls,
        task,
        settings.slo_p95_s if legacy else settings.objective(),
        hardware_profile(config) or NO_PRICE,
        prices,
        settings,
        searched,
    )
    write_json(run_dir / "load.json", summary.to_dict())
    return summary
