"""Source ``local``: a directory written by ``save_pretrained`` (model + tokenizer), or one .gguf file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from harness.errors import ModelSourceError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def check_weights_format(path: Path, allow_pickle: bool) -> None:
    """Safetensors (or GGUF) only, unless the model config opts in to pickle checkpoints, which can run code when loaded."""
    if allow_pickle or any(path.glob("*.safetensors")) or any(path.glob("*.gguf")):
        return
    pickles = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise ModelSourceError(
            f"model directory {path} holds only pickle checkpoints ({', '.join(pickles[:3])}), which can run code when loaded",
            "convert them to safetensors, or set allow_pickle: true in the model config if you trust their source",
        )


def load_from_dir(
    path: Path, dtype: torch.dtype, trust_remote_code: bool = False, allow_pickle: bool = False
) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if (
        path.suffix == ".gguf" and path.is_file()
    ):  # one GGUF file: transformers dequantizes it on every load (slow; engine llamacpp runs it as it is)
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        return AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype), tokenizer
    if not (path / "config.json").is_file():
        raise ModelSourceError(
            f"model directory {path} has no config.json",
            "point path: at a directory written by save_pretrained (config.json, *.safetensors, tokenizer files)",
        )
    check_weights_format(path, allow_pickle)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=dtype, trust_remote_code=trust_remote_code, use_safetensors=None if allow_pickle else True
    )
    return model, tokenizer
