"""Which (model, task) cells a comparison holds and how far each got: ``harness cells DIR [--missing]``.

DIR is what ``harness report`` takes: a run directory (its plan names the cells), a sweep directory (the plans
of its runs together) or a store (every model and task that any cell names: a cell absent from that grid is
missing). A cluster user runs it after a sweep to see what is left before reporting.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from harness.errors import HarnessError
from harness.results.cells import REPORTABLE, CellManifest, ManifestError, read_manifest
from harness.results.comparison import combine, is_store

MISSING = "missing"  # no cell, or one whose manifest cannot be read (the next run computes it anew)
# the most advanced state wins where a store holds several cells of one model and task
_RANK = {"complete": 4, "stopped": 3, "partial": 2, "running": 1, MISSING: 0}


@dataclass(frozen=True)
class CellState:
    model: str
    task: str
    status: str  # complete | partial | stopped | running | missing
    done: int  # records written
    planned: Optional[int]  # items planned (None: unknown, no manifest)
    path: str = ""

    @property
    def reportable(self) -> bool:
        return self.status in {str(s) for s in REPORTABLE}


def _manifest(path: Path) -> Optional[CellManifest]:
    try:
        return read_manifest(path)
    except ManifestError:
        return None


def _state(model: str, task: str, path: Optional[Path], planned: Optional[int]) -> CellState:
    m = _manifest(path) if path is not None else None
    if m is None:
        return CellState(model, task, MISSING, 0, planned, str(path or ""))
    return CellState(model, task, str(m.status), m.n_done, m.n_planned or planned, str(path))


def _store_states(store: Path) -> list[CellState]:
    best: dict[tuple[str, str], CellState] = {}
    models: list[str] = []
    tasks: dict[str, Optional[int]] = {}
    for mpath in sorted(store.glob("*/*/*/manifest.json")):
        m = _manifest(mpath.parent)
        if m is None:
            continue
        state = CellState(m.model, m.task, str(m.status), m.n_done, m.n_planned, str(mpath.parent))
        prior = best.get((m.model, m.task))
        if prior is None or _RANK[state.status] > _RANK[prior.status]:
            best[(m.model, m.task)] = state
        if m.model not in models:
            models.append(m.model)
        tasks.setdefault(m.task, m.n_planned)
    if not best:
        raise HarnessError(
            f"the store {store} holds no cell", "run an experiment with paths.store_dir pointing there first"
        )
    return [best.get((m, t)) or CellState(m, t, MISSING, 0, tasks[t]) for m in models for t in tasks]


def list_cells(path: Path) -> list[CellState]:
    """Every planned (model, task) cell of a run, sweep or store with its state, models then tasks in their order."""
    path = Path(path)
    if path.is_dir() and is_store(path):
        return _store_states(path)
    plan, refs, _ = combine([path])  # a run or a sweep; a bad path ends here with its one-line error
    by_cell = {(r.model, r.task): r for r in refs}
    states = []
    for model in plan.models:
        for task, info in plan.tasks.items():
            ref = by_cell.get((model, task))
            planned = info.get("n_selected")
            states.append(_state(model, task, Path(ref.path) if ref else None, int(planned) if planned else None))
    return states


def cells_text(states: list[CellState], where: Path, only_missing: bool = False) -> str:
    """A header line of counts (starting with #), then one line per cell: model, task, status, records done/planned."""
    counts: dict[str, int] = {}
    for s in states:
        counts[s.status] = counts.get(s.status, 0) + 1
    models = len({s.model for s in states})
    tasks = len({s.task for s in states})
    shown = [s for s in states if not (only_missing and s.reportable)]
    lines = [
        f"# {where}: {models} models x {tasks} tasks, "
        + ", ".join(f"{counts[k]:,} {k}" for k in sorted(counts, key=lambda k: -_RANK.get(k, 0)))
        + (f"; {len(shown)} not reportable" if only_missing else "")
    ]
    if shown:
        width_m = max(len("model"), *(len(s.model) for s in shown))
        width_t = max(len("task"), *(len(s.task) for s in shown))
        lines.append(f"{'model':<{width_m}}  {'task':<{width_t}}  {'status':<9}  records")
        for s in shown:
            total = "?" if s.planned is None else str(s.planned)
            lines.append(f"{s.model:<{width_m}}  {s.task:<{width_t}}  {s.status:<9}  {s.done}/{total}")
    return "\n".join(lines)
