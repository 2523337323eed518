"""Precision and threads chosen for the hardware the run is on.

``runtime.dtype=auto`` (the default) picks, with a reason recorded beside the choice:

- CUDA: bfloat16 where the GPU computes it (Ampere and newer), else float16;
- CPUs with native bfloat16 (AVX512_BF16 or AMX on x86): bfloat16;
- every other CPU: float32. Measured on a 2-core AVX2 EPYC (no native bfloat16):
  a 1024x1024 matmul ran at 0.6 GFLOP/s in bfloat16 against 32 in float32; the
  default run's classification cells took 3-4x longer in bfloat16 (SmolLM2 45.8 s
  vs 11.0 s, Qwen-1.5B 410 s vs 130 s) while its generation was at best 1.2x
  faster (Qwen summaries p50 21.0 s vs 25.5 s: decoding reads half the bytes).
  The whole default run took about twice as long in bfloat16, so the choice is
  made by capability (no per-machine measurement to cache or to go stale), and
  float32 is also exact and batch-size independent.

Threads: the cores this process may use (CPU affinity and the cgroup's CPU quota,
whichever is smaller), not the machine's count: a container limited to 2 CPUs on a
64-core host that ran 64 threads would spend its time descheduled.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from harness.errors import ConfigError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
CONFIGURED = "set in the configuration"
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of x86 CPUs that compute bfloat16 in hardware


@dataclass(frozen=True)
class DtypeChoice:
    """The precision a model runs in and why (the reason goes into the model record and the report)."""

    dtype: torch.dtype
    reason: str

    @property
    def name(self) -> str:
        return str(self.dtype).replace("torch.", "")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU's feature flags as Linux lists them (empty where there is no /proc/cpuinfo)."""
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith(("flags", "Features")):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_capability() -> str:
    """torch's view of the CPU's vector units (AVX2, AVX512, ...)."""
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        return "unknown"


def choose_dtype(
    requested: Optional[str],
    device_type: str,
    *,
    capability: str = "",
    flags: Iterable[str] = (),
    cuda_bf16: bool = False,
) -> DtypeChoice:
    """The dtype for ``requested`` (``auto``/None or a name) on a device with these capabilities (a pure function: tested as a table)."""
    if requested not in (None, "auto"):
        if requested not in DTYPES:
            raise ConfigError(f"dtype {requested!r} is not supported", f"use one of auto, {', '.join(DTYPES)}")
        return DtypeChoice(DTYPES[requested], CONFIGURED)
    if device_type == "cuda":
        if cuda_bf16:
            return DtypeChoice(torch.bfloat16, "auto: GPU with native bfloat16")
        return DtypeChoice(torch.float16, "auto: GPU without native bfloat16")
    native = sorted(set(flags) & set(NATIVE_BF16_FLAGS))
    if native:
        return DtypeChoice(torch.bfloat16, f"auto: native bfloat16 on this CPU ({', '.join(native)})")
    what = f"{capability} " if capability and capability != "unknown" else ""
    return DtypeChoice(torch.float32, f"auto: no native bfloat16 on this {what}CPU")


def resolve_dtype_choice(requested: Optional[str], device: torch.device) -> DtypeChoice:
    """``choose_dtype`` for this machine's real capabilities."""
    if requested not in (None, "auto"):
        return choose_dtype(requested, device.type)
    if device.type == "cuda":
        return choose_dtype(
            requested, "cuda", cuda_bf16=torch.cuda.is_available() and bool(torch.cuda.is_bf16_supported())
        )
    return choose_dtype(requested, device.type, capability=cpu_capability(), flags=cpu_flags())


def _cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> Optional[float]:
    """CPUs allowed by the cgroup's quota (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``), or None when unlimited or unknown."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None


def _scheduler_cpus() -> Optional[int]:
    """The CPUs a SLURM job was given (``--cpus-per-task``): a cluster without CPU binding (task/none) leaves the
    affinity at the whole node, and a job running as many threads as the node has cores slows its neighbours."""
    try:
        return int(os.environ["SLURM_CPUS_PER_TASK"])
    except (KeyError, ValueError):
        return None


def usable_cores(
    affinity: Optional[int] = None, quota: Optional[float] = None, cgroup_root: Path = Path("/sys/fs/cgroup")
) -> int:
    """The cores this process may use: its CPU affinity, capped by the cgroup's CPU quota (rounded up) and by the
    CPUs its SLURM job was given."""
    if affinity is None:
        try:
            affinity = len(os.sched_getaffinity(0))
        except AttributeError:  # macOS, Windows
            affinity = os.cpu_count() or 1
    if quota is None:
        quota = _cgroup_cpu_limit(cgroup_root)
    cores = affinity if quota is None else min(affinity, max(1, math.ceil(quota)))
    allocated = _scheduler_cpus()
    return max(1, cores if allocated is None else min(cores, allocated))


def default_threads(requested: Optional[int]) -> int:
    """``runtime.num_threads`` as given, else the usable cores."""
    if requested is not None:
        if requested < 1:
            raise ConfigError(
                f"runtime.num_threads={requested} must be positive",
                "use a positive number, or null for the cores this process may use",
            )
        return requested
    return usable_cores()
