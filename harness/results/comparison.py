"""A comparison: which models and tasks it covers, and the cells that hold their records.

A run directory holds ``plan.json`` (the models, the reference, the tasks and
their item ids) and ``cells.json`` (one entry per model and task: the cell's
key, its directory in the store, and whether this run computed, resumed or
reused it). The report is built from that, so one comparison can also be
assembled from several run directories (a Hydra sweep where each job computed
some cells) or from a whole store; a planned cell that is not complete is
listed as missing, never dropped silently.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Optional, TypedDict

from harness.errors import HarnessError
from harness.results.cells import (
    CellManifest,
    CellRef,
    RefStatus,
    read_cell_records,
    read_manifest,
    without_hardware,
)
from harness.results.records import SampleRecord, read_json, write_json
from harness.results.schema import StopRule
from harness.serialize import Serializable


class ModelInfo(TypedDict, total=False):
    """A model's facts from its config that the engine cannot know (plan.json)."""

    published_params: Optional[int]  # the model card's count
    architecture_only: bool  # random weights at a published size: no quality measured


@dataclass
class RunPlan(Serializable):
    """``plan.json``: what a comparison is meant to hold."""

    name: str
    task_group: str
    models: list[str]  # in the order given
    reference: Optional[str]  # None: the model with the most parameters
    tasks: dict[str, dict[str, Any]]  # task -> type, file, n_available, n_selected, sample_ids, ...
    store: str = ""
    sources: list[str] = field(default_factory=list)  # run directories a combined comparison came from
    model_info: dict[str, ModelInfo] = field(
        default_factory=dict
    )  # config facts per model (published size, architecture only)
    sequential: Optional[StopRule] = None  # runtime.stop_when_decided: the stop rule

    where = "plan.json"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: Optional[str] = None) -> RunPlan:
        if "pair" in d:  # plans written before N-model comparisons named the comparison "pair"
            d = {k: v for k, v in d.items() if k != "pair"} | {"name": d.get("name") or d["pair"]}
        return super().from_dict(d, where)


@dataclass
class LoadedCell:
    """A complete cell, read: its reference, manifest and records."""

    ref: CellRef
    manifest: CellManifest
    records: list[SampleRecord]


def write_cells(run_dir: Path, refs: list[CellRef]) -> None:
    write_json(Path(run_dir) / "cells.json", {"cells": [r.to_dict() for r in refs]})


def read_run(run_dir: Path) -> tuple[RunPlan, list[CellRef]]:
    run_dir = Path(run_dir)
    if not (run_dir / "plan.json").is_file():
        raise HarnessError(
            f"{run_dir} is not a run directory (no plan.json)",
            "pass a directory written by a harness run, e.g. results/<date>/<time>_<models>_<tasks>, a sweep directory or a cell store",
        )
    if not (run_dir / "cells.json").is_file():
        raise HarnessError(
            f"{run_dir} has no cells.json: it was written by an older version of the harness (records under samples/)",
            "run the same command again with this version: its cells are computed once and reused after",
        )
    plan = RunPlan.from_dict(read_json(run_dir / "plan.json"))
    refs = [CellRef.from_dict(c) for c in read_json(run_dir / "cells.json")["cells"]]
    return plan, refs


def load_cells(refs: list[CellRef]) -> tuple[list[LoadedCell], list[CellRef]]:
    """(complete cells with their records, cells that are missing or incomplete)."""
    loaded, missing = [], []
    for ref in refs:
        manifest = read_manifest(Path(ref.path))
        if not manifest or not manifest.reportable:
            missing.append(ref)
            continue
        loaded.append(LoadedCell(ref, manifest, read_cell_records(Path(ref.path), manifest)))
    return loaded, missing


def is_store(path: Path) -> bool:
    return not (path / "plan.json").exists() and any(path.glob("*/*/*/manifest.json"))


def _run_dirs_under(path: Path) -> list[Path]:
    return sorted(p.parent for p in path.glob("*/cells.json") if (p.parent / "plan.json").is_file())


def store_cells(store: Path) -> tuple[RunPlan, list[CellRef]]:
    """Every complete cell of a store as one comparison (one cell per model and task)."""
    refs: dict[tuple[str, str], CellRef] = {}
    tasks: dict[str, dict[str, Any]] = {}
    models: list[str] = []
    for mpath in sorted(store.glob("*/*/*/manifest.json")):
        m = read_manifest(mpath.parent)
        if not m or not m.reportable:
            continue
        key = (m.model, m.task)
        if key in refs:
            first = read_manifest(Path(refs[key].path))
            hardware_only = first is not None and without_hardware(first.parts) == without_hardware(m.parts)
            raise HarnessError(
                f"the store {store} holds two complete cells for {m.model} on {m.task} ({refs[key].key} and {m.key}), "
                + ("computed on two hardware classes" if hardware_only else "computed under different settings"),
                "report the run directories instead (harness report RUN_DIR ...), which name the cells they used",
            )
        refs[key] = CellRef(m.model, m.task, m.key, str(mpath.parent), RefStatus.reused, m.completed_at)
        tasks.setdefault(m.task, m.task_info)
        if m.model not in models:
            models.append(m.model)
    if not refs:
        raise HarnessError(
            f"the store {store} holds no complete cell", "run an experiment with paths.store_dir pointing there first"
        )
    return RunPlan(
        name=f"store {store.name}",
        task_group=f"{len(tasks)} tasks",
        models=models,
        reference=None,
        tasks=tasks,
        store=str(store),
    ), list(refs.values())


def combine(paths: list[Path]) -> tuple[RunPlan, list[CellRef], dict[str, Any]]:
    """One comparison from run directories, sweep directories (holding run directories) or a store.

    Returns the plan, the cells and the first run's config (for the report's settings).
    """
    runs: list[Path] = []
    for path in paths:
        path = Path(path)
        if not path.is_dir():
            raise HarnessError(f"{path} does not exist", "pass run directories, a sweep directory or a cell store")
        if (path / "plan.json").is_file():
            runs.append(path)
        elif is_store(path):  # before the run directories under it: its own comparison/ from an earlier report
            plan, refs = store_cells(path)
            return plan, refs, {}
        elif _run_dirs_under(path):
            runs.extend(_run_dirs_under(path))
        else:
            raise HarnessError(
                f"{path} is neither a run directory, a sweep directory nor a cell store",
                "pass a directory written by a harness run (it holds plan.json and cells.json)",
            )
    plans: list[RunPlan] = []
    all_refs: dict[tuple[str, str], CellRef] = {}
    for run in runs:
        plan, refs = read_run(run)
        plans.append(plan)
        for r in refs:
            prior = all_refs.get((r.model, r.task))
            if prior is not None and prior.key != r.key:
                raise HarnessError(
                    f"{r.model} on {r.task} was run under different settings in {run} (cell {r.key}) and another run (cell {prior.key})",
                    "combine runs that share settings (dtype, batch size, items...), or report them separately",
                )
            if prior is None or (prior.status == RefStatus.missing and r.status != RefStatus.missing):
                all_refs[(r.model, r.task)] = r
    models: list[str] = []
    tasks: dict[str, dict[str, Any]] = {}
    model_info: dict[str, ModelInfo] = {}
    for plan in plans:
        models += [m for m in plan.models if m not in models]
        for m, facts in plan.model_info.items():
            model_info.setdefault(m, facts)
        for t, info in plan.tasks.items():
            tasks.setdefault(t, info)
    references = {p.reference for p in plans if p.reference}
    combined = RunPlan(
        name=plans[0].name if len(plans) == 1 else f"{len(models)} models from {len(plans)} runs",
        task_group=plans[0].task_group if len({p.task_group for p in plans}) == 1 else f"{len(tasks)} tasks",
        models=models,
        reference=references.pop() if len(references) == 1 else None,
        tasks=tasks,
        store=plans[0].store,
        sources=[str(r) for r in runs],
        model_info=model_info,
        sequential=next((p.sequential for p in plans if p.sequential), None),
    )
    config = read_json(runs[0] / "config.json") if (runs[0] / "config.json").is_file() else {}
    return combined, list(all_refs.values()), config


def write_combined(paths: list[Path], out_dir: Optional[Path]) -> Path:
    """Write a comparison directory (plan.json, cells.json, config.json) for ``harness report`` over several sources."""
    plan, refs, config = combine(paths)
    if out_dir is None:
        stamp = datetime.now().strftime("%Y-%m-%d/%H-%M-%S")
        out_dir = Path("results") / f"{stamp}_combined"
    out_dir = Path(out_dir)
    if out_dir.resolve() in {Path(p).resolve() for p in paths}:
        raise HarnessError(f"the output directory {out_dir} is one of the inputs", "pass --out <a new directory>")
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "plan.json", plan.to_dict())
    write_cells(out_dir, refs)
    if config:
        write_json(out_dir / "config.json", config)
    env = Path(plan.sources[0]) / "environment.json" if plan.sources else None
    if env and env.is_file():  # the report's method section: where the first run ran
        write_json(out_dir / "environment.json", read_json(env))
    return out_dir
