"""A load test's requests as sent (``load/requests.jsonl``, the ground truth of every load figure) and each step's
wall time (``load/steps.jsonl``); ``harness.analysis.load`` computes the figures from them.

A step is ``requests`` requests sent either with ``level`` of them in flight at all times (mode ``concurrency``, a
closed loop) or on a schedule at ``rate`` requests/s whatever is in flight (``constant``, ``poisson``: open loops,
as real clients send).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Optional

import numpy as np

from harness.config.schema import SloConfig

REQUESTS = "load/requests.jsonl"
STEPS = "load/steps.jsonl"
TASK = "load/task.json"
CLOSED = "concurrency"


@dataclass
class LoadRequest:
    """One request of a load test (a line of ``load/requests.jsonl``)."""

    model: str
    level: int  # requests in flight (mode concurrency); 0 in an open loop
    index: int
    sample_id: str
    latency_s: float  # end to end, on the client (to the failure, for a failed request)
    ttft_s: Optional[float]
    inter_token_s: Optional[float]
    input_tokens: int
    output_tokens: int
    retries: int = 0
    mode: str = CLOSED  # concurrency | constant | poisson
    rate: Optional[float] = None  # the step's offered requests/s (open loops)
    scheduled_s: Optional[float] = None  # when the schedule said to send it, from the step's start (open loops)
    sent_s: Optional[float] = None  # when it was sent, from the step's start
    error: Optional[str] = None  # the request failed (after its retries): it meets no SLO

    @property
    def tpot_s(self) -> Optional[float]:
        """Time per output token after the first (vLLM's TPOT): (latency - TTFT) / (output tokens - 1)."""
        if self.error or self.ttft_s is None or self.output_tokens < 2:
            return None
        return (self.latency_s - self.ttft_s) / (self.output_tokens - 1)

    @property
    def lag_s(self) -> Optional[float]:
        """How far behind its schedule the client sent it (open loops)."""
        return None if self.scheduled_s is None or self.sent_s is None else max(0.0, self.sent_s - self.scheduled_s)

    @classmethod
    def from_line(cls, line: str) -> LoadRequest:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in json.loads(line).items() if k in known})


def meets(r: LoadRequest, slo: SloConfig) -> bool:
    """Whether a request meets every threshold the SLO sets (a failed one meets none)."""
    if r.error:
        return False
    checks = ((slo.ttft_s, r.ttft_s), (slo.tpot_s, r.tpot_s), (slo.e2e_s, r.latency_s))
    # a term the request has no value for (one output token: no TPOT) is not held against it
    return all(limit is None or value is None or value <= limit for limit, value in checks)


def percentile(values: list[float], q: float) -> Optional[float]:
    """numpy's (linear) percentile, or None without values: load.json, the report and the progress line agree."""
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else None


StepKey = tuple[str, int, Optional[float]]  # model, level, rate


def step_key(model: str, level: int, rate: Optional[float]) -> StepKey:
    return (model, int(level), None if rate is None else float(rate))


def read_load_records(run_dir: Path) -> tuple[list[LoadRequest], dict[StepKey, float], bool]:
    """The test's requests, step wall times and whether a search chose the steps (empty: the run had none)."""
    path, steps = run_dir / REQUESTS, run_dir / STEPS
    if not path.is_file():
        return [], {}, False
    requests = [LoadRequest.from_line(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    walls, searched = {}, False
    if steps.is_file():
        for line in steps.read_text(encoding="utf-8").splitlines():
            if line:
                s = json.loads(line)
                walls[step_key(s["model"], s["level"], s.get("rate"))] = float(s["wall_s"])
                searched = searched or bool(s.get("searched"))
    return requests, walls, searched


