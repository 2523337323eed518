"""What identifies a model's weights, computed without loading them (the model part of a cell key).

- hub: the hub id and the revision resolved to a commit (asked of the hub, or read
  from the local Hugging Face cache when offline);
- gguf_wheel: the sha256 of the GGUF file (pinned in the model config, verified on fetch);
- local: the sha256 of config.json and every weights file (or of the one .gguf file), cached by (size, mtime)
  so a 15 GB directory is hashed once, not on every run;
- random: the config class, its sizes, the seed and the tokenizer's files.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from omegaconf import OmegaConf

from harness.config.schema import ModelConfig
from harness.errors import ConfigError, ModelSourceError
from harness.models.random_init import tokenizer_path
from harness.models.served import served_identity
from harness.models.sources import ModelIdentity, source_of
from harness.models.wheels import sha256_of

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def _cached_sha256(path: Path, cache_dir: Path) -> str:
    """sha256 of a file, remembered by (path, size, mtime) in ``<cache>/file_hashes.json``."""
    st = path.stat()
    stamp = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    book = cache_dir / "file_hashes.json"
    try:
        known = json.loads(book.read_text())
    except (OSError, ValueError):
        known = {}
    if stamp in known:
        return known[stamp]
    value = sha256_of(path)
    known[stamp] = value
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = book.with_name(f"{book.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known))
        os.replace(tmp, book)
    except OSError:  # a read-only cache only costs the hash next time
        pass
    return value


def _dir_digest(path: Path, cache_dir: Path, names: list[str]) -> str:
    digest = hashlib.sha256()
    for name in sorted(names):
        digest.update(f"{name}:{_cached_sha256(path / name, cache_dir)}\n".encode())
    return digest.hexdigest()


def resolve_hub_revision(hub_id: str, revision: str | None) -> tuple[str, bool]:
    """(commit, resolved): a commit hash as given, else asked of the hub, else read from the local HF cache.

    Untested here (no hub on the development machines): the cache branch is
    what an offline GPU node with a pre-filled HF cache takes.
    """
    rev = revision or "main"
    if _COMMIT.match(rev):
        return rev, True
    if os.environ.get("HF_HUB_OFFLINE") != "1":
        try:
            from huggingface_hub import HfApi

            sha = HfApi().model_info(hub_id, revision=rev).sha
            if sha:
                return sha, True
        except Exception:  # unreachable hub, gated repo: fall back to the cache
            pass
    try:
        from huggingface_hub import constants

        ref = Path(constants.HF_HUB_CACHE) / f"models--{hub_id.replace('/', '--')}" / "refs" / rev
        if ref.is_file():
            return ref.read_text().strip(), True
    except Exception:
        pass
    return rev, False


def model_identity(cfg: ModelConfig, cache_dir: Path) -> ModelIdentity:
    """The parts of a model that determine its outputs, in clear (hashed into the cell key), as its source names them."""
    return source_of(cfg).identify(cfg, cache_dir)


def served_model_identity(cfg: ModelConfig, cache_dir: Path) -> ModelIdentity:
    return served_identity(cfg)


def hub_identity(cfg: ModelConfig, cache_dir: Path) -> ModelIdentity:
    if not cfg.hub_id:
        raise ConfigError(f"model {cfg.name} has source=hub but no hub_id", "set hub_id: org/name")
    commit, resolved = resolve_hub_revision(cfg.hub_id, cfg.revision)
    return {
        "source": "hub",
        "hub_id": cfg.hub_id,
        "revision": commit,
        "revision_resolved": resolved,
        **({"gguf_file": cfg.gguf_file} if cfg.gguf_file else {}),
    }


def gguf_wheel_identity(cfg: ModelConfig, cache_dir: Path) -> ModelIdentity:
    if cfg.gguf is None:
        raise ConfigError(
            f"model {cfg.name} has source=gguf_wheel but no gguf: section",
            "add gguf: {package, member, filename, sha256}",
        )
    return {"source": "gguf_wheel", "gguf_sha256": cfg.gguf.sha256.lower()}


def local_identity(cfg: ModelConfig, cache_dir: Path) -> ModelIdentity:
    if not cfg.path:
        raise ConfigError(f"model {cfg.name} has source=local but no path", "set path: /dir/with/config.json")
    path = Path(cfg.path).expanduser()
    if path.suffix == ".gguf" and path.is_file():
        return {"source": "local", "gguf_sha256": _cached_sha256(path, cache_dir)}
    if not (path / "config.json").is_file():
        raise ModelSourceError(
            f"model directory {path} has no config.json",
            "point path: at a directory written by save_pretrained (config.json, *.safetensors, tokenizer files)",
        )
    names = ["config.json"] + [p.name for p in path.iterdir() if p.suffix in _WEIGHT_SUFFIXES and p.is_file()]
    return {"source": "local", "weights_sha256": _dir_digest(path, cache_dir, names)}


def random_identity(cfg: ModelConfig, cache_dir: Path) -> ModelIdentity:
    if cfg.random is None:
        raise ConfigError(
            f"model {cfg.name} has source=random but no random: section", "add random: {config_class, config}"
        )
    tok = tokenizer_path(cfg.random.tokenizer)
    given = cfg.random.config
    container = OmegaConf.to_container(given, resolve=True) if OmegaConf.is_config(given) else dict(given)
    assert isinstance(container, dict)  # the settings mapping the schema declares
    config = {str(k): v for k, v in container.items()}
    return {
        "source": "random",
        "config_class": cfg.random.config_class,
        "config": config,
        "seed": cfg.random.seed,
        "tokenizer_sha256": _dir_digest(tok, cache_dir, [p.name for p in tok.iterdir() if p.is_file()]),
    }
