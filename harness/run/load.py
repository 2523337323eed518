"""The load test (``load.levels=[1,2,4,8]`` or ``load.mode=poisson load.rates=[1,2,4]``): each served model under
rising load, after the cells, as guidellm and ``vllm bench serve`` run one.

Closed loop (``concurrency``): at each level that many requests are in flight at all times (the next is sent as one
ends). Open loop (``constant``, ``poisson``): requests are sent on a seeded schedule of send times whatever is in
flight, as real clients send them, so queueing shows; at most ``load.max_outstanding`` are outstanding, and where a
saturated server holds them all the client falls behind its schedule, which every request records (its scheduled
and actual send time). ``load.search`` chooses the steps: doubling the load from ``search.start`` until attainment
falls below its target, then bisection, within a request budget. ``load.warmup`` requests go first and are not
counted. Prompts are the task's items (made unique per request unless ``load.unique=false``) or synthetic ones of
``load.input_tokens`` tokens with ``load.output_tokens`` generated.

Every request is written to ``load/requests.jsonl`` and every step's wall time to ``load/steps.jsonl``, from which
``harness.analysis.load`` computes the report's figures. In-process engines answer one request at a time, so they
are not tested under load: their cells' latencies are their figures at concurrency 1.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Optional

import numpy as np

from harness.analysis.load import NO_PRICE, summarize_step
from harness.config.schema import LoadConfig, RunConfig
from harness.engines import load_engine
from harness.engines.base import Engine, Generation
from harness.errors import ConfigError, HarnessError
from harness.models.random_init import tokenizer_path
from harness.results.load import CLOSED, REQUESTS, STEPS, TASK, LoadRequest
from harness.results.records import write_json
from harness.run.progress import RunProgress
from harness.run.setup import Setup
from harness.serialize import Serializable
from harness.tasks.prompts import Prompt, build_prompt
from harness.tasks.types import Sample, Task, TaskType

SERVED = "openai"
MODES = (CLOSED, "constant", "poisson")
PROMPT_KINDS = ("task", "synthetic")
# synthetic prompts: plain words, drawn with a seed, cut to the wanted number of tokens (guidellm draws from a book)
WORDS = (
    "the of and to in is was for on that with as by at from it his an were are which this be has had not but "
    "their first its after new two they have one who been also her she would other into more time year city "
    "people during state world school between under where part made while over these called before most three "
    "water river house music market report system story model service light order power small large early"
).split()


@dataclass
class StepWall(Serializable):
    """One step of one model's test as timed (a line of ``load/steps.jsonl``; ``harness.analysis.load`` reads it)."""

    model: str
    level: int  # requests in flight (0: an open loop)
    wall_s: float
    requests: int
    rate: Optional[float] = None  # offered requests/s (open loops)
    mode: str = CLOSED
    searched: bool = False  # chosen by load.search


def send_times(mode: str, rate: float, n: int, seed: int) -> list[float]:
    """When each of ``n`` requests is sent, in seconds from the step's start: every 1/rate s (``constant``), or the
    arrivals of a Poisson process of that rate (``poisson``: exponential gaps of mean 1/rate, seeded), from 0."""
    if mode == "constant":
        return [i / rate for i in range(n)]
    gaps = np.random.default_rng(seed).exponential(1.0 / rate, n)
    return [0.0, *np.cumsum(gaps[:-1]).tolist()][:n]


@dataclass
class Sent:
    """One request as the client sent it: when it was due and sent, and its answer or its error."""

    index: int
    scheduled_s: Optional[float]
    sent_s: float
    generation: Optional[Generation]
    error: Optional[str]
    elapsed_s: float  # from its send to its answer or its failure


def send_all(
    send: Callable[[int], Generation], times: Sequence[Optional[float]], max_outstanding: int
) -> tuple[list[Sent], float]:
    """Send request i at ``times[i]`` (None: as soon as a slot is free) with at most ``max_outstanding`` in flight;
    every request's record and the wall time until the last one ended.

    All times None and ``max_outstanding`` = c is the closed loop at concurrency c; times on a schedule is the open
    loop, where a full set of slots makes the client late (its lag is ``sent_s - scheduled_s``), never unbounded."""
    slots = threading.BoundedSemaphore(max_outstanding)
    out: list[Optional[Sent]] = [None] * len(times)

    def request(i: int, due: Optional[float], sent: float) -> None:
        start = time.perf_counter()
        try:
            gen, err = send(i), None
        except HarnessError as exc:  # after the engine's own retries: recorded, never scored, the test goes on
            gen, err = None, str(exc).splitlines()[0]
        finally:
            slots.release()
        out[i] = Sent(i, due, sent, gen, err, time.perf_counter() - start)

    with ThreadPoolExecutor(max_workers=max_outstanding) as pool:
        t0 = time.perf_counter()
        for i, due in enumerate(times):
            if due is not None and (wait := t0 + due - time.perf_counter()) > 0:
                time.sleep(wait)
            slots.acquire()
            pool.submit(request, i, due, time.perf_counter() - t0)
    wall = time.perf_counter() - t0
    return [s for s in out if s is not None], wall


def check_load(cfg: RunConfig, tasks: list[tuple[Task, list[Sample]]]) -> Optional[tuple[Task, list[Sample]]]:
    """The task a load test sends (None: no test); an impossible setting is a one-line error before any model loads."""
    load = cfg.load
    if not (load.levels or load.rates or load.search.enabled):
        return None
    _check_settings(load)
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
            "a load test is set but the run has no generation task to send",
            "add a summarization task (e.g. task=smoke), or set load.levels=[] load.rates=[]",
        )
    return generation[0]


def _check_settings(load: LoadConfig) -> None:
    closed = load.mode == CLOSED
    problems = [
        (load.mode not in MODES, f"load.mode={load.mode!r} is not a mode", f"use one of: {', '.join(MODES)}"),
        (
            closed and bool(load.rates),
            "load.rates is set with load.mode=concurrency",
            "rates are for open loops: load.mode=constant or poisson; concurrency takes load.levels",
        ),
        (
            not closed and bool(load.levels),
            f"load.levels is set with load.mode={load.mode}",
            "levels are requests in flight (load.mode=concurrency); an open loop takes load.rates (requests/s)",
        ),
        (
            any(level < 1 for level in load.levels) or any(r <= 0 for r in load.rates) or load.requests < 1,
            f"load.levels={list(load.levels)}, load.rates={list(load.rates)}, load.requests={load.requests}",
            "levels, rates and requests must be positive, e.g. load.levels=[1,2,4,8] load.requests=16",
        ),
        (
            load.max_outstanding < 1 or load.warmup < 0,
            f"load.max_outstanding={load.max_outstanding}, load.warmup={load.warmup}",
            "at least one request outstanding, and no negative warm-up",
        ),
        (load.prompts not in PROMPT_KINDS, f"load.prompts={load.prompts!r}", "use task or synthetic"),
        (
            load.input_tokens < 1 or load.output_tokens < 1,
            f"load.input_tokens={load.input_tokens}, load.output_tokens={load.output_tokens}",
            "synthetic lengths are positive numbers of tokens",
        ),
        (not 0 < load.slo.attainment <= 1, f"load.slo.attainment={load.slo.attainment}", "a share in (0, 1]"),
        (
            any(v is not None and v <= 0 for v in (load.slo.ttft_s, load.slo.tpot_s, load.slo.e2e_s, load.slo_p95_s)),
            "an SLO threshold is not positive",
            "set seconds, e.g. load.slo.e2e_s=2.0 load.slo.ttft_s=0.5",
        ),
        (
            load.search.enabled and not load.objective().is_set(),
            "load.search needs an SLO to search for",
            "set a threshold, e.g. load.slo.e2e_s=2.0 (and load.slo.attainment=0.95)",
        ),
        (
            load.search.enabled and (load.search.start <= 0 or load.search.max_steps < 2 or load.search.budget < 1),
            f"load.search.start={load.search.start}, max_steps={load.search.max_steps}, budget={load.search.budget}",
            "a positive start, at least two steps and a positive request budget",
        ),
    ]
    for bad, problem, fix in problems:
        if bad:
            raise ConfigError(problem, fix)


def synthetic_prompts(
    tokenizer: Any, n: int, tokens: int, seed: int, tag: Optional[str] = None
) -> tuple[list[Prompt], list[int]]:
    """``n`` prompts of ``tokens`` tokens of plain words (seeded) and their lengths; ``tag``: each begun by the tag
    and its number, so that no two share a prefix a server could cache, in this test or an earlier one. A tokenizer
    that cannot count (a served model without a client tokenizer) is replaced by the bundled SmolLM2 one: the
    lengths are then approximate, and the server's counts are recorded where it gives them."""
    from transformers import AutoTokenizer  # only where a served model has no tokenizer of its own

    counts = hasattr(tokenizer, "encode") and hasattr(tokenizer, "decode")
    tok = tokenizer if counts else AutoTokenizer.from_pretrained(str(tokenizer_path("smollm2")))
    rng = np.random.default_rng(seed)
    out, lengths = [], []
    for i in range(n):
        words = " ".join(rng.choice(WORDS, size=tokens * 2).tolist())
        ids = tok.encode(f"Request {tag}-{i}. {words}" if tag else words, add_special_tokens=False)[:tokens]
        out.append(Prompt(str(tok.decode(ids)), " ", False))
        lengths.append(len(ids))
    return out, lengths


def _task_prompts(
    task: Task, samples: list[Sample], engine: Engine, setup: Setup, n: int, tag: Optional[str]
) -> tuple[list[Prompt], list[str]]:
    """The task's prompts for ``n`` requests, cycling over its items; ``tag``: each begun by the tag and its
    request's number (a server's prefix cache then serves no repeat, of this test or an earlier one's)."""
    rt = setup.cfg.runtime
    base = [build_prompt(task, s, engine.tokenizer, rt.chat_template, rt.num_fewshot) for s in samples]
    picked = [i % len(base) for i in range(n)]
    ids = [samples[i].id for i in picked]
    if not tag:
        return [base[i] for i in picked], ids
    return [replace(base[i], text=f"Request {tag}-{k}.\n{base[i].text}") for k, i in enumerate(picked)], [
        f"{sid}#{k}" for k, sid in enumerate(ids)
    ]


@dataclass
class _Model:
    """One served model under test: its engine, its prompts and where its rows go."""

    name: str
    engine: Engine
    prompts: list[Prompt]
    ids: list[str]
    max_new: int
    min_new: int
    stops: list[str]
    rows: list[LoadRequest]
    steps: list[StepWall]
    lengths: Optional[list[int]] = None  # synthetic prompts' tokens, for a server that reports none
    used: int = 0  # requests sent so far, warm-ups included (load.search's budget)

    def send(self, k: int) -> Generation:
        prompt = self.prompts[k % len(self.prompts)]
        return self.engine.generate_until([prompt], self.max_new, self.stops, self.min_new)[0]


def _step(m: _Model, load: LoadConfig, value: float, seed: int, searched: bool) -> tuple[list[LoadRequest], float]:
    """One step at ``value`` (requests in flight, or requests/s): its requests' rows and its wall time."""
    n, closed = load.requests, load.mode == CLOSED
    first = m.used
    times: list[Optional[float]] = [None] * n if closed else list(send_times(load.mode, value, n, seed))
    sent, wall = send_all(lambda i: m.send(first + i), times, int(value) if closed else load.max_outstanding)
    m.used += n
    level, rate = (int(value), None) if closed else (0, float(value))
    rows = [_row(m, s, first + s.index, level, rate, load.mode) for s in sent]
    m.rows.extend(rows)
    m.steps.append(StepWall(m.name, level, wall, n, rate, load.mode, searched))
    return rows, wall


def _row(m: _Model, s: Sent, k: int, level: int, rate: Optional[float], mode: str) -> LoadRequest:
    g = s.generation
    return LoadRequest(
        model=m.name,
        level=level,
        index=s.index,
        sample_id=m.ids[k % len(m.ids)],
        latency_s=g.latency_s if g is not None else s.elapsed_s,
        ttft_s=g.ttft_s if g is not None else None,
        inter_token_s=g.details.get("inter_token_s") if g is not None else None,
        input_tokens=(g.input_tokens if g is not None else 0) or (m.lengths[k % len(m.lengths)] if m.lengths else 0),
        output_tokens=g.output_tokens if g is not None else 0,
        retries=len(g.details.get("retries", [])) if g is not None else 0,
        mode=mode,
        rate=rate,
        scheduled_s=s.scheduled_s,
        sent_s=s.sent_s,
        error=s.error,
    )


def search_edge(
    try_load: Callable[[float], bool],
    start: float,
    max_steps: int,
    budget_left: Callable[[], bool],
    precision: float,
    whole: bool = False,
) -> Optional[float]:
    """The highest load at which ``try_load`` passes: double from ``start`` until a step fails (halve while the first
    ones fail), then bisect between the highest pass and the lowest fail until they are within ``precision`` of each
    other (``whole``: loads are whole numbers, requests in flight), within ``max_steps`` steps and the budget."""
    good: Optional[float] = None
    bad: Optional[float] = None
    value, steps = (max(1.0, round(start)) if whole else start), 0
    while steps < max_steps and budget_left():
        steps += 1
        if try_load(value):
            good = value
        else:
            bad = value
        if good is not None and bad is not None:
            if bad - good <= max(precision * good, 1.0 if whole else 0.0):
                break
            value = (good + bad) / 2
            value = float(round(value)) if whole else value
            if value in (good, bad):
                break
        elif good is not None:
            value *= 2
        else:
            if whole and value <= 1:
                break
            value = max(1.0, value / 2) if whole else value / 2
    return good


def _test_model(m: _Model, load: LoadConfig, seed: int, progress: RunProgress) -> None:
    objective = load.objective()
    closed = load.mode == CLOSED
    tried: dict[float, bool] = {}  # a load already run is not run again (its requests would merge into one step)

    def run(value: float, searched: bool) -> bool:
        if value in tried:
            return tried[value]
        rows, wall = _step(m, load, value, seed + len(m.steps), searched)
        step = summarize_step(rows, wall, objective if objective.is_set() else None, NO_PRICE, None, seed)
        met = "" if step.attainment is None else f", SLO attainment {step.attainment:.0%}"
        lag = f", client up to {step.lag_max_s:.2f} s behind schedule" if step.lag_max_s else ""
        progress.note(
            f"load {m.name}: {step.label}, {step.requests_per_s:.2f} requests/s, p95 latency "
            f"{step.latency_p95_s:.2f} s{met}{lag}"
        )
        tried[value] = bool(step.within_slo)
        return tried[value]

    if load.search.enabled:
        s = load.search
        edge = search_edge(
            lambda v: run(v, True),
            s.start,
            s.max_steps,
            lambda: m.used + load.requests <= s.budget,
            s.precision,
            whole=closed,
        )
        found = "no load" if edge is None else (f"{edge:g} in flight" if closed else f"{edge:g} requests/s")
        progress.note(f"load {m.name}: the SLO holds up to {found} (search, {m.used} requests)")
    for value in load.levels if closed else load.rates:
        run(float(value), False)


def run_load_sweep(setup: Setup, chosen: tuple[Task, list[Sample]], run_dir: Path, progress: RunProgress) -> None:
    """Test every served model; the files appear whole at the end (a killed test leaves the last one's)."""
    task, samples = chosen
    load, rt = setup.cfg.load, setup.cfg.runtime
    served = [m for m in setup.models if setup.engines[m.name].name == SERVED]
    if not served:
        progress.note("load test: no served model (in-process engines answer one request at a time)")
        return
    rows: list[LoadRequest] = []
    steps: list[StepWall] = []
    budget = load.search.budget if load.search.enabled else 0
    total = len(load.levels) * load.requests + len(load.rates) * load.requests + budget + load.warmup
    synthetic = load.prompts == "synthetic"
    # a tag of this test's own begins every prompt (load.unique): a server that cached an earlier test's prompts, or
    # this one's, serves none of them from its cache
    tag = secrets.token_hex(4) if load.unique else None
    for model in served:
        engine = load_engine(replace(model, engine=SERVED), rt, setup.cache_dir)
        try:
            lengths = None
            if synthetic:
                prompts, lengths = synthetic_prompts(engine.tokenizer, total, load.input_tokens, rt.seed, tag)
                ids = [f"synthetic-{k}" for k in range(total)]
                max_new, min_new, stops = load.output_tokens, load.output_tokens, []
            else:
                prompts, ids = _task_prompts(task, samples, engine, setup, total, tag)
                max_new, min_new, stops = task.spec.max_new_tokens, 0, list(task.spec.stop)
            m = _Model(model.name, engine, prompts, ids, max_new, min_new, stops, rows, steps, lengths)
            for k in range(load.warmup):  # untimed: connections opened, the server warm; never counted
                m.send(k)
            m.used = load.warmup
            _test_model(m, load, rt.seed, progress)
        finally:
            engine.unload()
    _write_lines(run_dir / REQUESTS, (json.dumps(asdict(r)) for r in rows))
    _write_lines(run_dir / STEPS, (json.dumps(s.to_dict()) for s in steps))
    write_json(
        run_dir / TASK,
        {"task": task.name, "mode": load.mode, "levels": list(load.levels), "rates": list(load.rates)}
        | {"requests": load.requests, "prompts": load.prompts},
    )


def _write_lines(path: Path, lines: Iterable[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    os.replace(tmp, path)
