"""Source ``random``: a real architecture from its config class, with random weights.

Accuracy means nothing, but the compute graph is the real one: right for unit
tests, and for latency/memory profiling of a published size on a GPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import torch
from omegaconf import OmegaConf

from harness.config.schema import RandomInitConfig
from harness.errors import ConfigError

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "tokenizers"


def tokenizer_path(name_or_path: str) -> Path:
    """A bundled tokenizer by name (harness/assets/tokenizers/<name>) or a directory."""
    bundled = ASSETS / name_or_path
    if bundled.is_dir():
        return bundled
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    names = sorted(p.name for p in ASSETS.iterdir() if p.is_dir())
    raise ConfigError(
        f"tokenizer {name_or_path!r} is neither a bundled tokenizer nor a directory",
        f"use one of {names} or a tokenizer directory",
    )


def build_random(cfg: RandomInitConfig, dtype: torch.dtype) -> tuple[Any, Any]:
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config_cls = getattr(transformers, cfg.config_class, None)
    if config_cls is None or not isinstance(config_cls, type):
        raise ConfigError(
            f"random.config_class {cfg.config_class!r} is not a transformers config class",
            "use a class such as OlmoeConfig, Olmo2Config, LlamaConfig, Qwen2Config",
        )
    kwargs = cast(
        dict[str, Any],
        OmegaConf.to_container(cfg.config, resolve=True) if OmegaConf.is_config(cfg.config) else dict(cfg.config),
    )
    try:
        config = config_cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"random.config is not valid for {cfg.config_class}: {exc}", "fix the sizes in the model's random.config"
        ) from exc
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path(cfg.tokenizer))
    if config.vocab_size < len(tokenizer):
        raise ConfigError(
            f"random.config.vocab_size={config.vocab_size} is smaller than the tokenizer ({len(tokenizer)} tokens)",
            f"set vocab_size >= {len(tokenizer)}",
        )
    torch.manual_seed(cfg.seed)  # the same weights on every run
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model, tokenizer
