"""One registry for everything a configuration names by a word: engines, task and model sources, claim checks.

The shipped entries are ``"module:attribute"`` strings, imported when first asked for (llama-cpp-python, vLLM and
lm-eval stay optional). A third-party package adds its own with Python entry points, without editing this one::

    [project.entry-points."small_vs_large.engines"]
    my_engine = "my_package.engine:MyEngine"          # runtime.engine=my_engine

    [project.entry-points."small_vs_large.task_sources"]
    mysource = "my_package.source:load"               # task=... with tasks: [mysource:<ref>]

    [project.entry-points."small_vs_large.model_sources"]
    my_weights = "my_package.weights:SOURCE"          # source: my_weights in a model config

    [project.entry-points."small_vs_large.claim_checks"]
    my_check = "my_package.checks:my_check"           # check: my_check in a claims YAML

Code in the running process can also call ``register`` (a decorator). A name given twice is an error naming both.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Iterator
from importlib import metadata
from typing import Generic, Optional, TypeVar

from harness.errors import ConfigError

T = TypeVar("T")
ENTRY_POINT_PREFIX = "small_vs_large"


@functools.cache
def _entry_points(group: str) -> dict[str, metadata.EntryPoint]:
    """The installed packages' entry points of ``group`` (read once a process)."""
    return {ep.name: ep for ep in metadata.entry_points(group=group)}


def import_target(target: str) -> object:
    """The object a ``"module:attribute"`` string names, its module imported now."""
    module, _, attr = target.partition(":")
    obj: object = importlib.import_module(module)
    for part in filter(None, attr.split(".")):
        obj = getattr(obj, part)
    return obj


class Registry(Generic[T]):
    """Names -> objects of one kind (``kind``: what an error calls them; ``setting``: where a user names one;
    ``also``: other values the setting takes, listed in the error, e.g. ``auto``)."""

    def __init__(
        self,
        kind: str,
        group: str,
        setting: str,
        builtins: Optional[dict[str, str]] = None,
        also: tuple[str, ...] = (),
    ) -> None:
        self.kind, self.setting, self.also = kind, setting, also
        self.group = f"{ENTRY_POINT_PREFIX}.{group}"
        self._targets: dict[str, str] = dict(builtins or {})  # shipped: imported on first use
        self._objects: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """A decorator that adds ``obj`` under ``name``."""

        def add(obj: T) -> T:
            if name in self._targets or name in self._objects:
                raise ConfigError(f"two {self.kind}s named {name!r}", f"rename one of them ({obj!r})")
            self._objects[name] = obj
            return obj

        return add

    def names(self) -> list[str]:
        """Every name: shipped, registered in this process, and installed packages' entry points."""
        return sorted({*self._targets, *self._objects, *_entry_points(self.group)})

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (
            name in self._targets or name in self._objects or name in _entry_points(self.group)
        )

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def check(self, name: str) -> str:
        """``name``, or a one-line error listing the known ones."""
        if name not in self:
            raise ConfigError(
                f"unknown {self.kind} {name!r}",
                f"use {self.setting}=<one of {', '.join([*self.also, *self.names()])}>, or install the package that "
                "provides it "
                f"(entry point group {self.group})",
            )
        return name

    def get(self, name: str) -> T:
        """The object named ``name``, imported or loaded on first use."""
        if name not in self._objects:
            self.check(name)
            target = self._targets.get(name)
            try:
                obj = import_target(target) if target else _entry_points(self.group)[name].load()
            except (ImportError, AttributeError) as exc:
                raise ConfigError(
                    f"{self.kind} {name!r} cannot be loaded: {type(exc).__name__}: {exc}",
                    f"install what it needs, or check the entry point {name} = ... of group {self.group}",
                ) from exc
            self._objects[name] = obj  # type: ignore[assignment]
        return self._objects[name]
