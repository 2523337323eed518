"""Model execution engines, chosen by name in config (``runtime.engine``, or ``engine:`` per model).

``hf`` (transformers) runs any model source on CPU or GPU; ``llamacpp``
(llama-cpp-python, the ``[llamacpp]`` extra) runs GGUF files natively on CPUs;
``openai`` asks a model behind any OpenAI-compatible server (``source: served``).
``auto`` (the default) picks llamacpp for a model with a GGUF file on a CPU when
llama-cpp-python imports and no hf-only setting is asked for, else hf, and says
why. Another engine is a subclass of ``harness.engines.base.Engine`` with a
``load`` classmethod, named in ``ENGINES`` (the shipped ones as ``"module:Class"``,
imported only when chosen) or by an installed package's entry point in the group
``small_vs_large.engines`` (docs/engines.md: writing an engine).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from harness.config.schema import ModelConfig, ModelSource, RuntimeConfig, builtin_source, source_name
from harness.engines.base import ChoiceScores, Engine, Generation
from harness.errors import ConfigError
from harness.models import resolve_device
from harness.registry import Registry

AUTO = "auto"  # runtime.engine=auto: chosen per model and device (choose_engine)
ENGINES: Registry[type[Engine]] = Registry(
    "engine",
    "engines",
    "runtime.engine",
    {
        "hf": "harness.engines.hf:HFEngine",
        "llamacpp": "harness.engines.llamacpp:LlamaCppEngine",
        "openai": "harness.engines.served:ServedEngine",
        "vllm": "harness.engines.vllm:VllmEngine",
    },
    also=(AUTO,),
)

__all__ = [
    "AUTO",
    "ENGINES",
    "ChoiceScores",
    "Engine",
    "EngineChoice",
    "Generation",
    "check_engine",
    "choose_engine",
    "load_engine",
]


@dataclass(frozen=True)
class EngineChoice:
    """The engine a model runs on, why, and a notice for the user when ``auto`` fell back for a reason they can fix."""

    name: str
    reason: str
    notice: Optional[str] = None


def check_engine(name: str) -> str:
    """The engine name, or a one-line error listing the known ones."""
    return ENGINES.check(name)


def hf_only_settings(cfg: ModelConfig, runtime: RuntimeConfig) -> list[str]:
    """The settings asked for that only the hf engine honours."""
    found = []
    if runtime.batch_size > 1:
        found.append(f"runtime.batch_size={runtime.batch_size}")
    loop = getattr(runtime.decode_loop, "value", runtime.decode_loop)
    if loop != "harness":
        found.append(f"runtime.decode_loop={loop}")
    if runtime.compile:
        found.append("runtime.compile=true")
    if runtime.prompt_lookup_tokens:
        found.append(f"runtime.prompt_lookup_tokens={runtime.prompt_lookup_tokens}")
    dtype = cfg.dtype or runtime.dtype
    if dtype not in (None, AUTO):
        found.append(f"{'dtype' if cfg.dtype else 'runtime.dtype'}={dtype}")
    return found


def choose_engine(cfg: ModelConfig, runtime: RuntimeConfig, device_type: str) -> EngineChoice:
    """The engine for ``cfg`` (the model's ``engine:``, else ``runtime.engine``); a setting it cannot honour is a one-line error."""
    from harness.engines.llamacpp import INSTALL_HINT, has_gguf, llama_cpp_available

    requested = cfg.engine or runtime.engine
    if builtin_source(cfg) is ModelSource.served or requested == "openai":
        return _served_choice(cfg, runtime, requested)
    if requested != AUTO:
        check_engine(requested)
        if requested == "vllm" and device_type == "cpu":
            raise ConfigError(
                f"engine vllm runs on CUDA GPUs, but runtime.device resolved to {device_type}",
                "pip install vllm on a CUDA machine, or use runtime.engine=hf",
            )
        if requested == "llamacpp":
            blocking = hf_only_settings(cfg, runtime)
            if blocking:
                raise ConfigError(
                    f"engine llamacpp does not support {', '.join(blocking)} (model {cfg.name})",
                    "drop the setting (llamacpp runs the GGUF as stored, one request at a time), or use runtime.engine=hf",
                )
            if device_type != "cpu":
                raise ConfigError(
                    f"engine llamacpp runs on the CPU here, but runtime.device resolved to {device_type}",
                    "use runtime.device=cpu, or runtime.engine=hf on the GPU",
                )
            if not has_gguf(cfg):
                raise ConfigError(
                    f"model {cfg.name} has no GGUF file for engine llamacpp",
                    "use runtime.engine=hf for it, or give it a GGUF (source gguf_wheel, a .gguf path, or hub with gguf_file)",
                )
            missing = llama_cpp_available()
            if missing is not None:
                raise ConfigError(
                    f"runtime.engine=llamacpp but llama-cpp-python does not import ({missing})", INSTALL_HINT
                )
        return EngineChoice(requested, "set in the configuration")
    if device_type != "cpu":
        return EngineChoice("hf", f"auto: {device_type} device")
    if not has_gguf(cfg):
        return EngineChoice("hf", "auto: no GGUF file")
    blocking = hf_only_settings(cfg, runtime)
    if blocking:
        return EngineChoice("hf", f"auto: {', '.join(blocking)} is an hf engine setting")
    missing = llama_cpp_available()
    if missing is not None:
        return EngineChoice(
            "hf",
            "auto: llama-cpp-python is not installed",
            notice=f"notice: {cfg.name} runs on the hf engine (transformers, slower on CPUs): llama-cpp-python "
            f"does not import ({missing}); for the llamacpp engine: {INSTALL_HINT}",
        )
    return EngineChoice("llamacpp", "auto: a GGUF file on a CPU")


def _served_choice(cfg: ModelConfig, runtime: RuntimeConfig, requested: str) -> EngineChoice:
    """A served model runs on the openai engine, and only there; its settings are the server's."""
    if builtin_source(cfg) is not ModelSource.served:
        raise ConfigError(
            f"engine openai asks a served model, but model {cfg.name} has source={source_name(cfg)}",
            "give the model source: served and a served: {base_url, model} section, or use another engine",
        )
    if requested not in (AUTO, "openai"):
        raise ConfigError(
            f"model {cfg.name} is served (source: served), so engine {requested} cannot run it",
            "drop the engine setting for it (served models run on engine openai)",
        )
    blocking = hf_only_settings(cfg, runtime)
    if blocking:
        raise ConfigError(
            f"engine openai does not support {', '.join(blocking)} (model {cfg.name}): the server decides them",
            "drop the setting; for requests in flight at once use runtime.concurrency=N",
        )
    return EngineChoice("openai", "a served model" if requested == AUTO else "set in the configuration")


def load_engine(cfg: ModelConfig, runtime: RuntimeConfig, cache_dir: Path) -> Engine:
    """Load ``cfg`` with its engine (the model's ``engine:``, else ``runtime.engine``; ``auto`` resolved for the CPU)."""
    name = cfg.engine or runtime.engine
    if name == AUTO:
        name = choose_engine(cfg, runtime, resolve_device(runtime.device).type).name
    return ENGINES.get(check_engine(name)).load(cfg, runtime, cache_dir)
