"""Names of task sources beyond the YAML tasks under ``tasks/``: a prefix on the task name picks one.

- ``bigbench:<path>``: a BIG-bench JSON task, e.g. ``bigbench:gem/xsum`` (harness.tasks.bigbench);
- ``lmeval:<task>``: a task from lm-eval's registry, e.g. ``lmeval:hellaswag`` (harness.tasks.lmeval);
- anything else is a YAML task under ``tasks/`` (harness.tasks.local).

A few settings can follow the name as ``?key=value&key=value`` (a group entry
carries no other options), e.g. ``bigbench:gem/xsum?max_new_tokens=48&max_input_chars=2000``.
Every source returns a ``harness.tasks.types.Task`` (``harness.tasks.resolve`` loads it), so the runner, the measurement
and the records are the same for all of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

from harness.errors import TaskFileError

# option -> what it sets; which source accepts it
OPTIONS = {
    "bigbench": {
        "max_new_tokens": "generation length (generative tasks)",
        "max_input_chars": "characters of an example's input kept (longer ones are cut)",
    },
    "lmeval": {"max_new_tokens": "generation length (generate_until tasks; default: the task's max_gen_toks)"},
}


@dataclass(frozen=True)
class SourceRef:
    """A parsed ``<source>:<ref>[?options]`` task name."""

    source: str  # bigbench | lmeval
    ref: str  # BIG-bench task path or lm-eval task name
    options: dict[str, int] = field(default_factory=dict)
    text: str = ""  # as written in the task group

    @property
    def task_name(self) -> str:
        """A file-name-safe harness task name (records go to ``samples/<role>/<task>.jsonl``)."""
        return f"{self.source}-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", self.ref).strip("-")


def parse(name: str) -> Optional[SourceRef]:
    """The source a task name selects, or None for a plain (YAML) task name."""
    prefix, sep, rest = name.partition(":")
    if not sep or prefix not in OPTIONS:
        return None
    ref, _, query = rest.partition("?")
    ref = ref.strip()
    if not ref:
        raise TaskFileError(
            f"task {name!r} names no {prefix} task after '{prefix}:'",
            f"write {prefix}:<name>, e.g. " + ("bigbench:gem/xsum" if prefix == "bigbench" else "lmeval:hellaswag"),
        )
    options: dict[str, int] = {}
    for pair in filter(None, query.split("&")):
        key, eq, value = pair.partition("=")
        if key not in OPTIONS[prefix]:
            raise TaskFileError(
                f"task {name!r}: unknown option {key!r}",
                f"{prefix} tasks accept: " + ", ".join(f"{k} ({v})" for k, v in OPTIONS[prefix].items()),
            )
        if not eq or not value.isdigit() or int(value) < 1:
            raise TaskFileError(
                f"task {name!r}: option {key} needs a positive integer, got {value!r}", f"write {key}=N"
            )
        options[key] = int(value)
    return SourceRef(prefix, ref, options, name)
