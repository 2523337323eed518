"""Source ``local``: a directory written by ``save_pretrained`` (model + tokenizer)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from harness.errors import ModelSourceError


def load_from_dir(path: Path, dtype: torch.dtype, trust_remote_code: bool = False) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (path / "config.json").is_file():
        raise ModelSourceError(
            f"model directory {path} has no config.json",
            "point path: at a directory written by save_pretrained (config.json, *.safetensors, tokenizer files)",
        )
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, trust_remote_code=trust_remote_code)
    return model, tokenizer
