"""Source ``hub``: ``from_pretrained("org/name")``, the path users take on GPU machines."""

from __future__ import annotations

import os
from typing import Any

import torch

from harness.config.schema import ModelConfig
from harness.errors import ConfigError, ModelSourceError


def load_from_hub(cfg: ModelConfig, dtype: torch.dtype, device: torch.device) -> tuple[Any, Any, str]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not cfg.hub_id:
        raise ConfigError(f"model {cfg.name} has source=hub but no hub_id", "set hub_id: org/name")
    kwargs: dict[str, Any] = {"revision": cfg.revision, "trust_remote_code": cfg.trust_remote_code}
    try:
        tokenizer = AutoTokenizer.from_pretrained(cfg.hub_id, **kwargs)
        # On a GPU, place the weights directly (no CPU copy of a 7B model first).
        # use_safetensors=True: a repository with only pickle weights is refused (they can run code) unless allow_pickle
        model = AutoModelForCausalLM.from_pretrained(
            cfg.hub_id,
            dtype=dtype,
            device_map=str(device) if device.type == "cuda" else None,
            use_safetensors=None if cfg.allow_pickle else True,
            **kwargs,
        )
    except OSError as exc:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        raise ModelSourceError(
            f"cannot load {cfg.hub_id} from the model hub{' (HF_HUB_OFFLINE=1)' if offline else ''}: "
            f"{str(exc).splitlines()[0]}",
            "run on a machine that reaches the hub (or has the model in its HF cache), "
            "or use an offline pair such as pair=offline_default; a repository without safetensors weights needs allow_pickle: true",
        ) from exc
    origin = cfg.hub_id + (f"@{cfg.revision}" if cfg.revision else "")
    return model, tokenizer, origin
