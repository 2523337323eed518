"""Model execution engines, chosen by name in config (``runtime.engine``, or ``engine:`` per model).

``hf`` (transformers, the default) is the only one shipped; another engine is a
subclass of ``harness.engines.base.Engine`` with a ``load`` classmethod, added
to ``ENGINES`` as ``"module:Class"`` (imported only when chosen).
"""
from __future__ import annotations

import importlib
from pathlib import Path

from harness.config import ModelConfig, RuntimeConfig
from harness.engines.base import ChoiceScores, Engine, Generation
from harness.errors import ConfigError

ENGINES: dict[str, str] = {"hf": "harness.engines.hf:HFEngine"}

__all__ = ["ENGINES", "ChoiceScores", "Engine", "Generation", "check_engine", "load_engine"]


def check_engine(name: str) -> str:
    """The engine name, or a one-line error listing the known ones."""
    if name not in ENGINES:
        raise ConfigError(f"unknown engine {name!r}", f"use runtime.engine=<one of {', '.join(sorted(ENGINES))}>")
    return name


def load_engine(cfg: ModelConfig, runtime: RuntimeConfig, cache_dir: Path) -> Engine:
    """Load ``cfg`` with its engine (the model's ``engine:``, else ``runtime.engine``)."""
    name = check_engine(cfg.engine or runtime.engine)
    module, _, cls = ENGINES[name].partition(":")
    engine_cls = getattr(importlib.import_module(module), cls)
    return engine_cls.load(cfg, runtime, cache_dir)
