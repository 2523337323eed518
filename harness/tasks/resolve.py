"""The task a name stands for: ``bigbench:<path>``, ``lmeval:<task>`` or a YAML task under the task directories."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Optional

from harness.tasks import bigbench, sources
from harness.tasks.local import TaskDirs, dirs_of, find_task, load_task
from harness.tasks.types import Task


def resolve_task(name: str, tasks_dirs: TaskDirs, cache_dir: Path, lmeval_include: Optional[Path] = None) -> Task:
    """The task a task-group entry names: ``bigbench:<path>``, ``lmeval:<task>`` or a YAML task under the task directories."""
    ref = sources.parse(name)
    if ref is None:
        return load_task(find_task(name, tasks_dirs), cache_dir)
    include = [d / "lmeval" for d in dirs_of(tasks_dirs)] + ([lmeval_include] if lmeval_include else [])
    return load_source(ref, cache_dir, include)


def resolve_tasks(
    names: list[str], tasks_dirs: TaskDirs, cache_dir: Path, lmeval_include: Optional[Path] = None
) -> list[Task]:
    """Every task of a group, in order; external data is fetched first, once for all of them."""
    prefetch(names, cache_dir)
    return [resolve_task(name, tasks_dirs, cache_dir, lmeval_include) for name in names]


def prefetch(names: Sequence[str], cache_dir: Path) -> None:
    """Fetch what the named tasks need in one go (one pass over the BIG-bench archive for all its tasks)."""
    refs = [r for r in map(sources.parse, names) if r is not None and r.source == "bigbench"]
    if refs:
        bigbench.fetch([r.ref for r in refs], cache_dir)


def load_source(ref: sources.SourceRef, cache_dir: Path, lmeval_include: Sequence[Path] = ()) -> Task:
    """The harness task for a parsed source name."""
    return sources.TASK_SOURCES.get(ref.source).load(ref, cache_dir, lmeval_include)
