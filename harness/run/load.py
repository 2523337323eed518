"""The load sweep (``load.levels=[1,2,4,8]``): each served model under rising concurrency, after the cells.

At each level, ``load.requests`` generation requests (the task's prompts, in
order, cycling when there are fewer items) are sent with that many in flight at
all times (the engine's thread pool takes the next one as soon as a request ends);
every request is written to ``load/requests.jsonl`` and every step's wall time to
``load/steps.jsonl``, from which ``harness.results.load`` computes the report's
figures. In-process engines answer one request at a time, so they are not swept:
their cells' latencies are their figures at concurrency 1.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Optional

from harness.config.schema import RunConfig
from harness.engines import load_engine
from harness.errors import ConfigError
from harness.results.load import REQUESTS, STEPS, TASK, LoadRequest, percentile
from harness.results.records import write_json
from harness.run.progress import RunProgress
from harness.run.setup import Setup
from harness.serialize import Serializable
from harness.tasks.prompts import build_prompt
from harness.tasks.types import Sample, Task, TaskType

SERVED = "openai"


@dataclass
class StepWall(Serializable):
    """One level of one model's sweep as timed (a line of ``load/steps.jsonl``; ``harness.results.load`` reads it)."""

    model: str
    level: int
    wall_s: float
    requests: int


def check_load(cfg: RunConfig, tasks: list[tuple[Task, list[Sample]]]) -> Optional[tuple[Task, list[Sample]]]:
    """The task a sweep sends (None: no sweep); an impossible setting is a one-line error before any model loads."""
    load = cfg.load
    if not load.levels:
        return None
    if any(level < 1 for level in load.levels) or load.requests < 1:
        raise ConfigError(
            f"load.levels={list(load.levels)}, load.requests={load.requests}: levels and requests must be positive",
            "e.g. load.levels=[1,2,4,8] load.requests=16",
        )
    if load.slo_p95_s is not None and load.slo_p95_s <= 0:
        raise ConfigError(f"load.slo_p95_s={load.slo_p95_s} must be positive", "set seconds, e.g. load.slo_p95_s=2.0")
    generation = [(t, s) for t, s in tasks if t.type is TaskType.summarization]
    if load.task is not None:
        named = [(t, s) for t, s in tasks if t.name == load.task]
        if not named or named[0][0].type is not TaskType.summarization:
            raise ConfigError(
                f"load.task={load.task!r} is not a generation task of this run",
                f"use one of: {', '.join(t.name for t, _ in generation) or 'none (add a summarization task)'}",
            )
        return named[0]
    if not generation:
        raise ConfigError(
            "load.levels is set but the run has no generation task to send",
            "add a summarization task (e.g. task=smoke), or set load.levels=[]",
        )
    return generation[0]


def run_load_sweep(setup: Setup, chosen: tuple[Task, list[Sample]], run_dir: Path, progress: RunProgress) -> None:
    """Sweep every served model; the files appear whole at the end (a killed sweep leaves the last one's)."""
    task, samples = chosen
    load, rt = setup.cfg.load, setup.cfg.runtime
    served = [m for m in setup.models if setup.engines[m.name].name == SERVED]
    if not served:
        progress.note("load sweep: no served model (in-process engines answer one request at a time)")
        return
    rows: list[LoadRequest] = []
    steps: list[StepWall] = []
    for model in served:
        engine = load_engine(replace(model, engine=SERVED), rt, setup.cache_dir)
        try:
            prompts = [build_prompt(task, s, engine.tokenizer, rt.chat_template, rt.num_fewshot) for s in samples]
            engine.generate_until(prompts[:1], 2, [])  # untimed: connections opened, the server warm
            for level in load.levels:
                engine.concurrency = level
                picked = [i % len(prompts) for i in range(load.requests)]
                start = time.perf_counter()
                outs = engine.generate_until([prompts[i] for i in picked], task.spec.max_new_tokens, task.spec.stop)
                wall = time.perf_counter() - start
                for n, (i, out) in enumerate(zip(picked, outs)):
                    rows.append(
                        LoadRequest(
                            model=model.name,
                            level=level,
                            index=n,
                            sample_id=samples[i].id,
                            latency_s=out.latency_s,
                            ttft_s=out.ttft_s,
                            inter_token_s=out.details.get("inter_token_s"),
                            input_tokens=out.input_tokens,
                            output_tokens=out.output_tokens,
                            retries=len(out.details.get("retries", [])),
                        )
                    )
                steps.append(StepWall(model.name, level, wall, len(outs)))
                p95 = percentile([o.latency_s for o in outs], 95) or 0.0
                progress.note(
                    f"load {model.name}: {level} in flight, {len(outs) / wall:.2f} requests/s, p95 latency {p95:.2f} s"
                )
        finally:
            engine.unload()
    _write_lines(run_dir / REQUESTS, (json.dumps(asdict(r)) for r in rows))
    _write_lines(run_dir / STEPS, (json.dumps(s.to_dict()) for s in steps))
    write_json(run_dir / TASK, {"task": task.name, "levels": list(load.levels), "requests": load.requests})


def _write_lines(path: Path, lines: Iterable[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    os.replace(tmp, path)
