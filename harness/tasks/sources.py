"""Names of task sources beyond the YAML tasks under ``tasks/``: a prefix on the task name picks one.

- ``bigbench:<path>``: a BIG-bench JSON task, e.g. ``bigbench:gem/xsum`` (harness.tasks.bigbench);
- ``lmeval:<task>``: a task from lm-eval's registry, e.g. ``lmeval:hellaswag`` (harness.tasks.lmeval);
- anything else is a YAML task under ``tasks/`` (harness.tasks.local).

Another source is a ``TaskSource`` registered in ``TASK_SOURCES`` under its prefix, or provided by an installed
package's entry point in the group ``small_vs_large.task_sources`` (docs/tasks-and-models.md).

A few settings can follow the name as ``?key=value&key=value`` (a group entry
carries no other options), e.g. ``bigbench:gem/xsum?max_new_tokens=48&max_input_chars=2000``.
Every source returns a ``harness.tasks.types.Task`` (``harness.tasks.resolve`` loads it), so the runner, the measurement
and the records are the same for all of them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from harness.errors import TaskFileError
from harness.registry import Registry, import_target
from harness.tasks.types import Task

# a source's loader: (the parsed name, the cache directory, lm-eval include folders) -> a harness Task
Loader = Callable[["SourceRef", Path, Sequence[Path]], Task]


@dataclass(frozen=True)
class TaskSource:
    """Task names ``<prefix>:<ref>[?options]`` and how they load; ``loader`` may be ``"module:function"``, imported
    only when a task of the source is named (lm-eval's import takes seconds)."""

    loader: Union[str, Loader]
    options: dict[str, str] = field(default_factory=dict)  # option -> what it sets
    example: str = ""  # a task name of this source, for error messages

    def load(self, ref: SourceRef, cache_dir: Path, include: Sequence[Path] = ()) -> Task:
        loader = import_target(self.loader) if isinstance(self.loader, str) else self.loader
        return loader(ref, cache_dir, include)  # type: ignore[operator]


TASK_SOURCES: Registry[TaskSource] = Registry("task source", "task_sources", "a task name's prefix")
TASK_SOURCES.register("bigbench")(
    TaskSource(
        "harness.tasks.bigbench:load",
        {
            "max_new_tokens": "generation length (generative tasks)",
            "max_input_chars": "characters of an example's input kept (longer ones are cut)",
        },
        "bigbench:gem/xsum",
    )
)
TASK_SOURCES.register("lmeval")(
    TaskSource(
        "harness.tasks.lmeval:load",
        {"max_new_tokens": "generation length (generate_until tasks; default: the task's max_gen_toks)"},
        "lmeval:hellaswag",
    )
)


@dataclass(frozen=True)
class SourceRef:
    """A parsed ``<source>:<ref>[?options]`` task name."""

    source: str  # the prefix: bigbench, lmeval, or an installed source's
    ref: str  # what follows it: a BIG-bench task path, an lm-eval task name, ...
    options: dict[str, int] = field(default_factory=dict)
    text: str = ""  # as written in the task group

    @property
    def task_name(self) -> str:
        """A file-name-safe harness task name (records go to ``samples/<role>/<task>.jsonl``)."""
        return f"{self.source}-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", self.ref).strip("-")


def parse(name: str) -> Optional[SourceRef]:
    """The source a task name selects, or None for a plain (YAML) task name."""
    prefix, sep, rest = name.partition(":")
    if not sep or prefix not in TASK_SOURCES:
        return None
    source = TASK_SOURCES.get(prefix)
    ref, _, query = rest.partition("?")
    ref = ref.strip()
    if not ref:
        raise TaskFileError(
            f"task {name!r} names no {prefix} task after '{prefix}:'",
            f"write {prefix}:<name>" + (f", e.g. {source.example}" if source.example else ""),
        )
    options: dict[str, int] = {}
    for pair in filter(None, query.split("&")):
        key, eq, value = pair.partition("=")
        if key not in source.options:
            raise TaskFileError(
                f"task {name!r}: unknown option {key!r}",
                f"{prefix} tasks accept: " + (", ".join(f"{k} ({v})" for k, v in source.options.items()) or "none"),
            )
        if not eq or not value.isdigit() or int(value) < 1:
            raise TaskFileError(
                f"task {name!r}: option {key} needs a positive integer, got {value!r}", f"write {key}=N"
            )
        options[key] = int(value)
    return SourceRef(prefix, ref, options, name)
