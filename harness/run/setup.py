"""Everything an experiment needs, resolved and checked before a model loads: the ``Setup``.

Settings, device, task files and model names are checked first, so a mistake fails in a second and before
anything is written; each (model, task) gets its cell key, each model its engine (and why).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Optional, TypedDict

import torch

from harness.analysis.sample_size import ALPHA
from harness.analysis.sequential import METHODS as SEQUENTIAL_METHODS
from harness.config.resources import tasks_dir as shipped_tasks_dir
from harness.config.schema import PROJECT_ROOT, ModelConfig, OtherHardware, RunConfig, RuntimeConfig, resolve_models
from harness.engines import EngineChoice, check_engine, choose_engine
from harness.errors import ConfigError
from harness.measure.hardware import HardwareClass, hardware_class
from harness.models import resolve_device, resolve_dtype
from harness.models.identity import model_identity
from harness.models.loader import default_cache_dir
from harness.models.precision import default_threads, usable_cores
from harness.models.served import host_of
from harness.models.sources import ModelIdentity
from harness.results.cells import (
    SCORING_VERSION,
    CellKey,
    Store,
    same_but_hardware,
    task_identity,
)
from harness.results.comparison import RunPlan
from harness.results.schema import StopRule
from harness.serialize import Serializable
from harness.tasks.resolve import resolve_tasks
from harness.tasks.types import Sample, Task, TaskSpec, TaskType, select_samples
from harness.verdicts.claims import difference_claims, difference_thresholds


@dataclass
class Setup:
    """The experiment resolved before anything runs: models, tasks and their items, each cell's key, engines, store."""

    cfg: RunConfig
    name: str
    models: list[ModelConfig]
    reference: Optional[str]
    tasks: list[tuple[Task, list[Sample]]]
    device: torch.device
    cache_dir: Path
    store: Store
    keys: dict[tuple[str, str], CellKey] = field(default_factory=dict)
    sequential: Optional[StopRule] = None  # runtime.stop_when_decided: the stop rule (see stop_rule)
    engines: dict[str, EngineChoice] = field(default_factory=dict)  # per model: the engine it runs on and why
    hardware: dict[str, HardwareClass] = field(default_factory=dict)  # per model: the class this machine gives it
    # (model, task) -> the other class's label, where runtime.other_hardware=reuse took a cell computed elsewhere
    borrowed: dict[tuple[str, str], str] = field(default_factory=dict)


def _user_path(value: str) -> Path:
    """A path from the config: ``~`` expanded, relative to the working directory."""
    return Path(value).expanduser().absolute()


def _task_dirs(cfg: RunConfig) -> list[Path]:
    dirs = [_user_path(d) for d in cfg.paths.task_dirs]
    dirs.append(_user_path(cfg.paths.tasks_dir) if cfg.paths.tasks_dir else shipped_tasks_dir())
    for d in dirs:
        if not d.is_dir():
            raise ConfigError(f"task directory {d} does not exist", "fix paths.task_dirs / paths.tasks_dir")
    return dirs


def _check_runtime(cfg: RunConfig) -> None:
    rt = cfg.runtime
    if rt.batch_size < 1:
        raise ConfigError(
            f"runtime.batch_size={rt.batch_size} must be a positive integer", "use runtime.batch_size=1 or more"
        )
    if rt.max_samples is not None and rt.max_samples < 1:
        raise ConfigError(
            f"runtime.max_samples={rt.max_samples} must be positive or null",
            "use runtime.max_samples=N (N>=1) or runtime.max_samples=null for all items",
        )
    if rt.concurrency < 1:
        raise ConfigError(
            f"runtime.concurrency={rt.concurrency} must be a positive integer (requests in flight at once)",
            "use runtime.concurrency=1 (one request at a time) or more",
        )
    if rt.warmup_steps < 0 or (rt.num_fewshot is not None and rt.num_fewshot < 0):
        raise ConfigError("runtime.warmup_steps and runtime.num_fewshot must be >= 0", "fix the value")
    if not cfg.task.tasks:
        raise ConfigError(f"task group {cfg.task.name!r} lists no tasks", "add task names under tasks:")


def stop_rule(cfg: RunConfig, models: list[ModelConfig], reference: Optional[str], n_tasks: int) -> Optional[StopRule]:
    """runtime.stop_when_decided: which claims stop a task, their thresholds per metric, the level of each sequence."""
    rt = cfg.runtime
    if not rt.stop_when_decided:
        return None
    claims = {cid: {"check": c.check, "thresholds": dict(c.thresholds)} for cid, c in cfg.claims.items()}
    stoppable = difference_claims(claims)
    unknown = [c for c in rt.stop_claims if c not in stoppable]
    if unknown or not rt.stop_claims:
        raise ConfigError(
            f"runtime.stop_claims={list(rt.stop_claims)}: {', '.join(unknown) or 'none'} cannot stop a task",
            f"list claims decided by a quality difference: {', '.join(stoppable)}",
        )
    if rt.confidence_sequence not in SEQUENTIAL_METHODS:
        raise ConfigError(
            f"runtime.confidence_sequence={rt.confidence_sequence!r} is not one of {', '.join(SEQUENTIAL_METHODS)}",
            "use runtime.confidence_sequence=asymptotic (default) or bernstein",
        )
    if rt.first_look < 2 or rt.look_growth < 1:
        raise ConfigError(
            f"runtime.first_look={rt.first_look}, runtime.look_growth={rt.look_growth}: the first look needs 2 items or more "
            "and looks cannot come closer together",
            "use runtime.first_look>=2 and runtime.look_growth>=1 (e.g. 20 and 1.5)",
        )
    measured = [m.name for m in models if not m.architecture_only]
    if len(measured) < 2 or (reference is not None and reference not in measured):
        raise ConfigError(
            "runtime.stop_when_decided=true needs a reference and another model whose quality is measured "
            "(architecture-only models have random weights: nothing to decide)",
            "compare two or more models with real weights, or drop runtime.stop_when_decided",
        )
    comparisons = n_tasks * (len(measured) - 1)
    return StopRule(
        claims=list(rt.stop_claims),
        thresholds={
            t.primary_metric: difference_thresholds(claims, t.primary_metric, list(rt.stop_claims)) for t in TaskType
        },
        alpha=ALPHA,
        comparisons=comparisons,
        alpha_per_comparison=ALPHA / comparisons,
        first_look=rt.first_look,
        look_growth=rt.look_growth,
        sequence=rt.confidence_sequence,
        method=SEQUENTIAL_METHODS[rt.confidence_sequence],
    )


def comparison_name(cfg: RunConfig, models: list[ModelConfig]) -> str:
    if cfg.name:
        return cfg.name
    if not cfg.models and cfg.pair is not None:
        return cfg.pair.name
    return "+".join(m.name for m in models)


def _dtype_label(model: ModelConfig, rt: RuntimeConfig, device: torch.device, engine: str) -> str:
    """The weights' precision as the key records it: the GGUF's own, the server's, or the dtype this device runs."""
    if engine == "llamacpp":  # runs the GGUF as stored: its sha256 (in the identity) fixes the weights' precision
        return "gguf"
    if engine == "openai":  # the server fixes the precision
        return "served"
    return str(resolve_dtype(model.dtype or rt.dtype, device)).replace("torch.", "")


class _LlamacppKey(TypedDict):
    n_ctx: int
    n_batch: int


class LlamacppKey(_LlamacppKey, total=False):
    """llama.cpp's settings in a cell key."""

    quant: str  # the GGUF's quantization, where the config names it


class _ServedKey(TypedDict):
    api: str
    concurrency: int


class ServedKey(_ServedKey, total=False):
    """A served engine's settings in a cell key (optional ones only when set, so older keys stay valid)."""

    tokenizer: str
    extra_body: dict[str, Any]  # served.extra_body: the user's JSON for the server, as configured


class EngineOptions(TypedDict, total=False):
    """The cell key's part for a llama.cpp or served engine (absent for the others)."""

    llamacpp: LlamacppKey
    served: ServedKey


class _GenerationKey(TypedDict):
    max_new_tokens: int
    stop: list[str]
    greedy: bool


class GenerationKey(_GenerationKey, total=False):
    """How a task's outputs are generated, in a cell key."""

    fixed_length: bool  # only when on


class ExecutionKey(TypedDict):
    """How items are batched and run, in a cell key."""

    sort_by_length: bool
    share_prefixes: bool
    decode_loop: str
    compile: bool
    prompt_lookup_tokens: int


def _engine_options(model: ModelConfig, rt: RuntimeConfig, engine: str) -> EngineOptions:
    """The settings of a llama.cpp or served engine that change its records (none for the others)."""
    # optional settings are added after the others and only when set: the key's digest depends on its order
    if engine == "llamacpp":
        native: LlamacppKey = {"n_ctx": rt.llamacpp.n_ctx, "n_batch": rt.llamacpp.n_batch}
        if model.gguf is not None and model.gguf.quant:
            native["quant"] = model.gguf.quant
        return {"llamacpp": native}
    if engine == "openai" and model.served is not None:  # latency depends on the requests in flight
        served: ServedKey = {
            "api": getattr(model.served.api, "value", model.served.api),
            "concurrency": rt.concurrency,
        }
        if model.served.tokenizer:
            served["tokenizer"] = model.served.tokenizer
        if model.served.extra_body:
            served["extra_body"] = dict(model.served.extra_body)
        return {"served": served}
    return {}


def _generation_key(spec: TaskSpec, rt: RuntimeConfig) -> GenerationKey:
    """How the task's outputs are generated; fixed_length is absent when off, so older keys stay valid."""
    key: GenerationKey = {"max_new_tokens": spec.max_new_tokens, "stop": list(spec.stop), "greedy": True}
    if rt.fixed_generation_length:
        key["fixed_length"] = True
    return key


def _execution_key(rt: RuntimeConfig) -> ExecutionKey:
    """How items are batched and run: batch composition and kernels change low-order bits outside float32."""
    return {
        "sort_by_length": rt.sort_by_length and rt.batch_size > 1,
        "share_prefixes": rt.share_prefixes and rt.batch_size > 1,
        "decode_loop": getattr(rt.decode_loop, "value", rt.decode_loop),
        "compile": rt.compile,
        "prompt_lookup_tokens": rt.prompt_lookup_tokens if rt.batch_size == 1 else 0,
    }


def cell_key(
    model: ModelConfig,
    identity: ModelIdentity,
    task: Task,
    samples: list[Sample],
    cfg: RunConfig,
    device: torch.device,
    engine: str,
    hardware: HardwareClass,
) -> CellKey:
    """Everything that determines a cell's records, hashed (see harness.results.cells)."""
    rt = cfg.runtime
    return CellKey(
        model.name,
        task.name,
        {
            "scoring_version": SCORING_VERSION,
            "model": identity,
            "dtype": _dtype_label(model, rt, device, engine),
            "device_type": "server" if engine == "openai" else device.type,
            # greedy outputs and timings follow the kernels: each class computes its own cells (runtime.other_hardware)
            "hardware": hardware.id,
            "engine": check_engine(engine),
            **_engine_options(model, rt, engine),
            "task": task_identity(task, samples, rt.num_fewshot, rt.chat_template),
            "generation": _generation_key(task.spec, rt),
            "batch_size": rt.batch_size,
            "execution": _execution_key(rt),
        },
    )


def _reference(cfg: RunConfig, models: list[ModelConfig]) -> Optional[str]:
    """The reference model the others are compared with, checked to be one of them (None: chosen later by size)."""
    reference = cfg.reference or (cfg.pair.large.name if not cfg.models and cfg.pair is not None else None)
    if reference is not None and reference not in {m.name for m in models}:
        raise ConfigError(
            f"reference={reference!r} is not one of the compared models ({', '.join(m.name for m in models)})",
            "set reference=<one of them>, or reference=null for the model with the most parameters",
        )
    return reference


def _selected_samples(cfg: RunConfig, name: str, task: Task) -> list[Sample]:
    """The task's items this run evaluates, after checking its few-shot count and item limit."""
    rt = cfg.runtime
    if rt.num_fewshot is not None and rt.num_fewshot > len(task.fewshot):
        raise ConfigError(
            f"runtime.num_fewshot={rt.num_fewshot} but task {name} has {len(task.fewshot)} few-shot examples",
            f"use runtime.num_fewshot<={len(task.fewshot)}",
        )
    cap = cfg.task.limits.get(
        task.name, cfg.task.limits.get(name, rt.max_samples)
    )  # by task name (CLI-friendly) or as listed
    if cap is not None and cap < 1:
        raise ConfigError(f"task.limits.{name}={cap} must be positive", "use a positive number of items")
    return select_samples(task, cap, rt.seed, shuffled=rt.stop_when_decided)


def _load_tasks(cfg: RunConfig, dirs: list[Path], cache: Path) -> list[tuple[Task, list[Sample]]]:
    """Every task of the group with its selected items, each named once."""
    lmeval_include = _user_path(cfg.paths.lmeval_include_path) if cfg.paths.lmeval_include_path else None
    tasks = []
    seen: dict[str, str] = {}
    # bigbench:<path> and lmeval:<task> entries are fetched (first run) and checked here, before any model loads
    for name, task in zip(cfg.task.tasks, resolve_tasks(list(cfg.task.tasks), dirs, cache, lmeval_include)):
        if task.name in seen:
            raise ConfigError(
                f"task group {cfg.task.name!r} names task {task.name} twice ({seen[task.name]!r} and {name!r})",
                "list each task once",
            )
        seen[task.name] = name
        tasks.append((task, _selected_samples(cfg, name, task)))
    return tasks


def _choose_engines(setup: Setup) -> None:
    """Each model's engine, and the hardware class this machine gives it on that engine."""
    rt, device = setup.cfg.runtime, setup.device
    threads, cores = default_threads(rt.num_threads), usable_cores()
    for model in setup.models:
        engine = choose_engine(model, rt, device.type)
        setup.engines[model.name] = engine
        server = host_of(model.served.base_url) if engine.name == "openai" and model.served is not None else None
        setup.hardware[model.name] = hardware_class(device.type, engine.name, threads, cores, server)


def _key_cells(setup: Setup) -> None:
    """Every (model, task) cell's key, or a complete cell's from other hardware where the run may reuse it."""
    cfg = setup.cfg
    rt = cfg.runtime
    for model in setup.models:
        identity = model_identity(model, setup.cache_dir)
        for task, samples in setup.tasks:
            key = cell_key(
                model,
                identity,
                task,
                samples,
                cfg,
                setup.device,
                setup.engines[model.name].name,
                setup.hardware[model.name],
            )
            if OtherHardware(rt.other_hardware) is OtherHardware.reuse and not rt.recompute:
                key = _borrow(setup, key)
            setup.keys[(model.name, task.name)] = key


def prepare(cfg: RunConfig, sweep_job: bool = False) -> Setup:
    """Check the settings, resolve the models, load every task and compute every cell key; raises ``HarnessError``.
    ``sweep_job``: a job of a multirun sweep, which may compute one model's cells."""
    _check_runtime(cfg)
    rt = cfg.runtime
    device = resolve_device(rt.device)
    models = resolve_models(cfg, sweep_job)
    reference = _reference(cfg, models)
    dirs = _task_dirs(cfg)
    cache = _user_path(cfg.paths.cache_dir) if cfg.paths.cache_dir else default_cache_dir()
    tasks = _load_tasks(cfg, dirs, cache)
    store = Store(_user_path(cfg.paths.store_dir))
    setup = Setup(
        cfg=cfg,
        name=comparison_name(cfg, models),
        models=models,
        reference=reference,
        tasks=tasks,
        device=device,
        cache_dir=cache,
        store=store,
        sequential=stop_rule(cfg, models, reference, len(tasks)),
    )
    _choose_engines(setup)
    _key_cells(setup)
    return setup


def _borrow(setup: Setup, key: CellKey) -> CellKey:
    """``key``, or the key of a complete cell that differs from it only by its hardware class (reused as it is)."""
    if setup.store.is_complete(key):
        return key
    other = same_but_hardware(setup.store, key)
    if other is None:
        return key
    manifest, other_key = other
    label = HardwareClass.from_dict(manifest.hardware).label if manifest.hardware else "unrecorded hardware"
    setup.borrowed[(key.model, key.task)] = label
    return other_key


def _task_file(task: Task) -> str:
    for root in (PROJECT_ROOT, shipped_tasks_dir().parent):
        if task.path.is_relative_to(root):
            return str(task.path.relative_to(root))
    return str(task.path)


@dataclass
class TaskInfo(Serializable):
    """What a report needs to know of a task (plan.json, and every cell's manifest)."""

    omit_none: ClassVar[tuple[str, ...]] = ("source",)

    type: str
    file: str
    n_available: int
    n_selected: int
    sample_ids: list[str]
    breakdown_fields: list[str]
    consistency_field: Optional[str]
    source: Optional[dict[str, Any]] = None  # a task from a source (BIG-bench, lm-eval): the task's own record of it


def task_info(task: Task, samples: list[Sample]) -> TaskInfo:
    return TaskInfo(
        type=task.type.value,
        file=_task_file(task),
        n_available=len(task.samples),
        n_selected=len(samples),
        sample_ids=[x.id for x in samples],
        breakdown_fields=list(task.spec.breakdown_fields),
        consistency_field=task.spec.consistency_field,
        source=task.source or None,
    )


def plan_record(setup: Setup) -> RunPlan:
    return RunPlan(
        name=setup.name,
        task_group=setup.cfg.task.name,
        models=[m.name for m in setup.models],
        reference=setup.reference,
        tasks={t.name: task_info(t, s).to_dict() for t, s in setup.tasks},
        store=str(setup.store.root),
        model_info={
            m.name: {"published_params": m.published_params, "architecture_only": m.architecture_only}
            for m in setup.models
        },
        sequential=setup.sequential,
    )
