"""What the run ran on: hardware, library versions and the code's git commit."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Optional, TypedDict

import torch

_PACKAGES = (
    "torch",
    "transformers",
    "tokenizers",
    "lm_eval",
    "datasets",
    "hydra-core",
    "rouge-score",
    "gguf",
    "numpy",
    "scikit-learn",
)


def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# the scheduler's facts about the job a cell was computed in (which job, array task, node, allocation)
_SLURM_VARS = (
    "SLURM_JOB_ID",
    "SLURM_ARRAY_JOB_ID",
    "SLURM_ARRAY_TASK_ID",
    "SLURM_JOB_NODELIST",
    "SLURM_CPUS_PER_TASK",
    "SLURM_JOB_PARTITION",
)


def scheduler_job() -> dict[str, str] | None:
    """The SLURM job this process runs in (None outside one): recorded with each session of a cell."""
    if "SLURM_JOB_ID" not in os.environ:
        return None
    return {v.removeprefix("SLURM_").lower(): os.environ[v] for v in _SLURM_VARS if v in os.environ}


class CudaFacts(TypedDict, total=False):
    torch_cuda: Optional[str]
    devices: list[str]
    driver: str


class EnvironmentRecord(TypedDict, total=False):
    """The machine and software a run used (environment.json, each cell's manifest)."""

    python: str
    platform: str
    cpu: str
    cpu_count: Optional[int]
    torch_threads: int
    packages: dict[str, Optional[str]]  # package -> installed version (None: not installed)
    cuda_available: bool
    git_commit: Optional[str]
    git_dirty: bool
    hf_hub_offline: bool
    cuda: CudaFacts


def environment_record(project_root: Path) -> EnvironmentRecord:
    env: EnvironmentRecord = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "packages": {p: _version(p) for p in _PACKAGES},
        "cuda_available": torch.cuda.is_available(),
        "git_commit": _git(project_root, "rev-parse", "HEAD"),
        "git_dirty": bool(_git(project_root, "status", "--porcelain", "--untracked-files=no")),
        "hf_hub_offline": os.environ.get("HF_HUB_OFFLINE") == "1",
    }
    if torch.cuda.is_available():
        env["cuda"] = {
            "torch_cuda": torch.version.cuda,
            "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        }
        try:
            import pynvml

            pynvml.nvmlInit()
            env["cuda"]["driver"] = pynvml.nvmlSystemGetDriverVersion()
            pynvml.nvmlShutdown()
        except Exception:
            pass
    return env
