"""Names a model config's ``source:`` takes, and what each one does: identify the weights, load them in process.

Shipped: ``hub``, ``local``, ``gguf_wheel``, ``random`` and ``served`` (no weights in process: engine ``openai``).
Another source is a ``WeightSource`` registered in ``MODEL_SOURCES`` under its name, or provided by an installed
package's entry point in the group ``small_vs_large.model_sources`` (docs/tasks-and-models.md); its model configs
then say ``source: <name>``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, TypedDict, Union

import torch

from harness.config.schema import ModelConfig, source_name
from harness.errors import ConfigError
from harness.registry import Registry, import_target


@dataclass
class Weights:
    """What a source loaded: the model and tokenizer, where they came from, and the one-off preparation's seconds
    (download, verify, convert: timed apart from loading)."""

    model: Any  # a transformers PreTrainedModel (causal LM)
    tokenizer: Any
    origin: str  # hub id, directory or file the weights came from
    prepare_s: float = 0.0


class ModelIdentity(TypedDict, total=False):
    """What determines a model's outputs, in clear: the model part of a cell key (each source sets its own fields)."""

    source: str
    hub_id: str  # hub
    revision: Optional[str]  # hub: the commit; served: the config's label
    revision_resolved: bool
    gguf_file: str
    gguf_sha256: str  # gguf_wheel, local .gguf
    weights_sha256: str  # local directory
    config_class: str  # random
    config: dict[str, Any]  # random: the transformers config's settings, as given
    seed: int
    tokenizer_sha256: str
    host: str  # served
    served_model: str
    owned_by: Optional[str]
    identity_from: str


Identify = Callable[[ModelConfig, Path], ModelIdentity]
Load = Callable[[ModelConfig, torch.dtype, torch.device, Path], Weights]


@dataclass(frozen=True)
class WeightSource:
    """A ``source:`` name's two steps; each may be ``"module:function"``, imported only when a model of the source
    is named (transformers' import takes seconds)."""

    identity: Union[str, Identify]  # (config, cache dir) -> the parts that determine outputs, in clear (cell key)
    load: Union[str, Load, None] = None  # (config, dtype, device, cache dir) -> Weights; None: no in-process weights

    def identify(self, cfg: ModelConfig, cache_dir: Path) -> ModelIdentity:
        fn = import_target(self.identity) if isinstance(self.identity, str) else self.identity
        return fn(cfg, cache_dir)  # type: ignore[operator]

    def load_weights(self, cfg: ModelConfig, dtype: torch.dtype, device: torch.device, cache_dir: Path) -> Weights:
        if self.load is None:
            raise ConfigError(
                f"model {cfg.name} has source={cfg.source}, which has no weights to load in this process",
                "run it with runtime.engine=openai (a served model), or give the model a source with weights",
            )
        fn = import_target(self.load) if isinstance(self.load, str) else self.load
        return fn(cfg, dtype, device, cache_dir)  # type: ignore[operator]


MODEL_SOURCES: Registry[WeightSource] = Registry("model source", "model_sources", "source: in a model config")
for _name, _load in (
    ("hub", "load_hub"),
    ("local", "load_local"),
    ("gguf_wheel", "load_gguf_wheel"),
    ("random", "load_random"),
):
    MODEL_SOURCES.register(_name)(
        WeightSource(f"harness.models.identity:{_name}_identity", f"harness.models.loader:{_load}")
    )
MODEL_SOURCES.register("served")(WeightSource("harness.models.identity:served_model_identity"))


def source_of(cfg: ModelConfig) -> WeightSource:
    """The source a model config names (one line naming the known ones when it is none of them)."""
    return MODEL_SOURCES.get(source_name(cfg))
