"""A cell's hardware class: what a model's outputs and timings depend on besides the model, the task and the settings.

Greedy outputs follow the kernels the CPU or GPU runs (Qwen2.5-Coder-1.5B on the
same 20 summaries scored ROUGE-L 33.0 on an AVX-512 EPYC and 30.5 on an AMX
Xeon, the same pinned versions), and latency follows the machine. A class is
the machine as the kernels see it: the CPU model and the instruction-set
features that select kernels (AVX2, AVX-512, AVX512_BF16, AMX, NEON/SVE), the
cores and the threads used; on a GPU its name, compute capability, driver and
CUDA versions; for llama.cpp, the CPU features its build was compiled for. Two
nodes of one type are one class; a served model's class is its server's host
(the client cannot see the server's hardware).

The class is recorded in every cell's manifest, in ``cells.json`` and in the
models table; its ``id`` is part of the cell key, so each class computes its
own cells unless ``runtime.other_hardware=reuse`` (see docs/cells-and-sweeps.md).
"""

from __future__ import annotations

import functools
import hashlib
import json
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, TypedDict, cast

import torch

# the /proc/cpuinfo flags that change which kernels torch, oneDNN and llama.cpp pick (x86 and Arm names)
KERNEL_FEATURES = (
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx_vnni",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "asimd",
    "asimddp",
    "asimdhp",
    "i8mm",
    "bf16",
    "sve",
    "sve2",
)
# the short names the labels use for the features that separate the machines these runs see most
_LABEL_FEATURES = {"avx2": "AVX2", "avx512f": "AVX-512", "avx512_bf16": "AVX512_BF16", "amx_tile": "AMX"}
_LABEL_ARM = {"asimd": "NEON", "sve": "SVE", "sve2": "SVE2"}


@functools.cache  # read once a process: every model of a run asks
def _cpuinfo(path: Path = Path("/proc/cpuinfo")) -> tuple[str, list[str]]:
    """(CPU model, kernel-relevant features) from /proc/cpuinfo; the platform's name and no features elsewhere."""
    model, flags = "", set[str]()
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key in ("model name", "hardware", "cpu model") and not model:
                model = value.strip()
            elif key in ("flags", "features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return model or platform.processor() or platform.machine() or "unknown", [f for f in KERNEL_FEATURES if f in flags]


@functools.cache  # the installed build cannot change while the process runs
def llamacpp_build_features() -> Optional[tuple[str, ...]]:
    """The CPU features the installed llama.cpp was compiled for (``llama_print_system_info``); None without it."""
    try:
        import llama_cpp
    except Exception:  # not installed, or its library does not load: the engine says so where it is asked for
        return None
    info = llama_cpp.llama_print_system_info()
    text = info.decode(errors="replace") if isinstance(info, bytes) else str(info)
    features: set[str] = set()
    for part in text.replace("\n", "|").split("|"):
        name, _, value = part.rpartition("=")
        name = name.split(":")[-1].strip()
        if name and value.strip() == "1":
            features.add(name)
    return tuple(sorted(features))


class GpuFacts(TypedDict):
    """A CUDA device as a hardware class records it."""

    name: str
    compute_capability: str
    cuda: Optional[str]
    driver: Optional[str]
    count: int


class HardwareRecord(TypedDict, total=False):
    """A hardware class as manifests, cells and summaries hold it (``HardwareClass.to_dict``; fields set only)."""

    cpu: str
    cpu_features: list[str]
    cores: int
    threads: int
    torch_cpu_capability: str
    gpu: GpuFacts
    llamacpp_features: list[str]
    server: str


def _gpu(index: int = 0) -> GpuFacts:
    """The CUDA device's name, compute capability, driver and CUDA versions (untested here: no GPU)."""
    cap = torch.cuda.get_device_capability(index)
    out: GpuFacts = {
        "name": torch.cuda.get_device_name(index),
        "compute_capability": f"{cap[0]}.{cap[1]}",
        "cuda": torch.version.cuda,
        "driver": None,
        "count": torch.cuda.device_count(),
    }
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            driver = pynvml.nvmlSystemGetDriverVersion()
            out["driver"] = driver.decode() if isinstance(driver, bytes) else driver
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no NVML (nvidia-ml-py not installed, or no driver library): the class goes without it
        pass
    return out


@dataclass(frozen=True)
class HardwareClass:
    """The machine a cell was computed on, as its kernels and timings see it."""

    cpu: str
    cpu_features: tuple[str, ...]
    cores: int  # the cores this process may use (affinity, cgroup quota, SLURM allocation)
    threads: int  # the threads the engine computes with
    torch_cpu_capability: Optional[str] = None  # the kernels torch dispatches to on this CPU (DEFAULT, AVX2, AVX512)
    gpu: Optional[GpuFacts] = field(default=None, hash=False)  # name, compute capability, driver, CUDA
    llamacpp_features: Optional[tuple[str, ...]] = None  # the llama.cpp build's CPU features (engine llamacpp)
    server: Optional[str] = None  # a served model: the server's host (its hardware is the server's)

    @property
    def id(self) -> str:
        """A short digest of the class: equal on two machines whose kernels and timings should agree."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    @property
    def label(self) -> str:
        """What a reader needs to tell two classes apart, in one short line."""
        if self.server is not None:
            return f"server {self.server}"
        if self.gpu is not None:
            return (
                f"{self.gpu.get('name')} (sm {self.gpu.get('compute_capability')}, CUDA {self.gpu.get('cuda')}, "
                f"driver {self.gpu.get('driver') or 'unknown'})"
            )
        names = _LABEL_FEATURES if any(f in _LABEL_FEATURES for f in self.cpu_features) else _LABEL_ARM
        shown = [names[f] for f in names if f in self.cpu_features]
        return f"{self.cpu} ({', '.join(shown) or 'no AVX2'}; {self.cores} cores, {self.threads} threads)"

    def to_dict(self) -> HardwareRecord:
        d = asdict(self)
        d["cpu_features"] = list(self.cpu_features)
        if self.llamacpp_features is not None:
            d["llamacpp_features"] = list(self.llamacpp_features)
        return cast(HardwareRecord, {k: v for k, v in d.items() if v is not None})

    @classmethod
    def from_dict(cls, d: HardwareRecord) -> HardwareClass:
        return cls(
            cpu=str(d.get("cpu", "unknown")),
            cpu_features=tuple(d.get("cpu_features") or ()),
            cores=int(d.get("cores") or 0),
            threads=int(d.get("threads") or 0),
            torch_cpu_capability=d.get("torch_cpu_capability"),
            gpu=d.get("gpu"),
            llamacpp_features=tuple(d["llamacpp_features"]) if d.get("llamacpp_features") is not None else None,
            server=d.get("server"),
        )


def hardware_class(
    device_type: str, engine: str, threads: int, cores: int, server: Optional[str] = None
) -> HardwareClass:
    """This machine's class for a model run by ``engine`` on ``device_type`` with ``threads`` threads."""
    if server is not None:  # the client's machine does not compute the answers; the server's host names the class
        return HardwareClass(cpu="server", cpu_features=(), cores=0, threads=0, server=server)
    cpu, features = _cpuinfo()
    capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: None)()
    gpu = _gpu(torch.cuda.current_device()) if device_type == "cuda" and torch.cuda.is_available() else None
    build = llamacpp_build_features() if engine == "llamacpp" else None
    return HardwareClass(
        cpu=cpu,
        cpu_features=tuple(features),
        cores=cores,
        threads=threads,
        torch_cpu_capability=capability if engine != "llamacpp" else None,
        gpu=gpu,
        llamacpp_features=build,
    )
