"""Load a model from its configured source onto a device, timed."""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from harness.config.schema import ModelConfig, RuntimeConfig, source_name
from harness.errors import ConfigError
from harness.models.gguf_wheel import prepare_gguf_wheel
from harness.models.hub import load_from_hub
from harness.models.local import load_from_dir
from harness.models.params import ParamCounts, count_params
from harness.models.precision import resolve_dtype_choice
from harness.models.random_init import build_random
from harness.models.sources import Weights, source_of
from harness.models.wheels import default_cache_dir


@dataclass
class LoadedModel:
    """A model ready to score: weights on their device, tokenizer, and load facts."""

    name: str
    model: Any  # a transformers PreTrainedModel (causal LM)
    tokenizer: Any
    device: torch.device
    dtype: torch.dtype
    load_time_s: float
    params: ParamCounts
    source: str
    origin: str  # hub id, directory or file the weights came from
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def unload(self) -> None:
        """Free the weights (the next model of the pair gets the memory)."""
        self.model = None
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        _return_freed_memory_to_os()


def _return_freed_memory_to_os() -> None:
    """glibc keeps freed heap pages; trim them so the next model's peak RSS is its own."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def resolve_device(requested: str) -> torch.device:
    """``auto`` picks CUDA when present; ``cuda`` without a GPU is an error."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"runtime.device={requested} but no CUDA GPU is visible to torch "
                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda is not None})",
                "use runtime.device=cpu or runtime.device=auto, or run on a GPU machine with a CUDA build of torch",
            )
        return torch.device(requested)
    if requested == "cpu":
        return torch.device("cpu")
    raise ConfigError(f"runtime.device={requested!r} is not a device", "use auto, cpu, cuda or cuda:N")


def resolve_dtype(requested: str | None, device: torch.device) -> torch.dtype:
    """``auto`` is chosen for the hardware (``harness.models.precision``); a name is taken as it is."""
    return resolve_dtype_choice(requested, device).dtype


def load_model(cfg: ModelConfig, runtime: RuntimeConfig, cache_dir: Path | None = None) -> LoadedModel:
    """Load ``cfg`` on the runtime's device and dtype; the clock covers fetch-from-cache to ready (a source's one-off
    preparation, such as download, verify or convert, is timed apart)."""
    device = resolve_device(runtime.device)
    choice = resolve_dtype_choice(cfg.dtype or runtime.dtype, device)
    dtype = choice.dtype
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    source = source_of(cfg)

    start = time.perf_counter()
    weights = source.load_weights(cfg, dtype, device, cache)
    model, tokenizer = weights.model, weights.tokenizer
    if device.type != "cpu" and next(model.parameters()).device != device:
        model = model.to(device)
    model.eval()
    if tokenizer.pad_token_id is None:  # batching needs a pad id; it is always masked out
        tokenizer.pad_token = tokenizer.eos_token
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    load_time = time.perf_counter() - start - weights.prepare_s
    return LoadedModel(
        name=cfg.name,
        model=model,
        tokenizer=tokenizer,
        device=device,
        dtype=dtype,
        load_time_s=load_time,
        params=count_params(model),
        source=source_name(cfg),
        origin=weights.origin,
        extra={"prepare_s": weights.prepare_s, "dtype_reason": choice.reason},
    )


def load_hub(cfg: ModelConfig, dtype: torch.dtype, device: torch.device, cache: Path) -> Weights:
    model, tokenizer, origin = load_from_hub(cfg, dtype, device)
    return Weights(model, tokenizer, origin)


def load_local(cfg: ModelConfig, dtype: torch.dtype, device: torch.device, cache: Path) -> Weights:
    if not cfg.path:
        raise ConfigError(f"model {cfg.name} has source=local but no path", "set path: /dir/with/config.json")
    model, tokenizer = load_from_dir(Path(cfg.path).expanduser(), dtype, cfg.trust_remote_code, cfg.allow_pickle)
    return Weights(model, tokenizer, str(cfg.path))


def load_gguf_wheel(cfg: ModelConfig, dtype: torch.dtype, device: torch.device, cache: Path) -> Weights:
    if cfg.gguf is None:
        raise ConfigError(
            f"model {cfg.name} has source=gguf_wheel but no gguf: section",
            "add gguf: {package, member, filename, sha256}",
        )
    t0 = time.perf_counter()
    prepared = prepare_gguf_wheel(cfg.gguf, cache)
    prepare_s = time.perf_counter() - t0
    model, tokenizer = load_from_dir(prepared, dtype)
    origin = f"{cfg.gguf.package} ({cfg.gguf.filename}, sha256 {cfg.gguf.sha256[:12]})"
    return Weights(model, tokenizer, origin, prepare_s)


def load_random(cfg: ModelConfig, dtype: torch.dtype, device: torch.device, cache: Path) -> Weights:
    if cfg.random is None:
        raise ConfigError(
            f"model {cfg.name} has source=random but no random: section", "add random: {config_class, config}"
        )
    model, tokenizer = build_random(cfg.random, dtype)
    return Weights(model, tokenizer, f"random:{cfg.random.config_class}")
