"""Peak memory of a measured region: GPU (torch allocator, NVML) or process RSS on CPU.

On Linux the process high-water mark (VmHWM) is reset through
``/proc/self/clear_refs`` so each model and task gets its own peak instead of
the whole process's.
"""

from __future__ import annotations

import resource
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from harness.serialize import Serializable

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kb(key: str) -> Optional[int]:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def current_rss_bytes() -> Optional[int]:
    kb = _status_kb("VmRSS")
    return kb * 1024 if kb is not None else None


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter for this process; False where not possible."""
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    kb = _status_kb("VmHWM")
    if kb is None:  # not Linux: the lifetime peak is all there is (ru_maxrss is KiB on Linux, bytes on macOS)
        import sys

        raw = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return raw if sys.platform == "darwin" else raw * 1024
    return kb * 1024


def nvml_used_bytes(device: torch.device) -> Optional[int]:
    """Device memory in use as the driver sees it (all processes), via nvidia-ml-py."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            index = device.index if device.index is not None else torch.cuda.current_device()
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            return int(pynvml.nvmlDeviceGetMemoryInfo(handle).used)
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no driver / no NVML: simply not measured
        return None


class NvmlSampler:
    """Polls the driver's view of device memory in a background thread: the peak NVML saw during a region.

    The torch allocator peak misses memory held outside it (CUDA context,
    cuBLAS workspaces, NCCL, other processes); NVML sees the whole device.
    Untested here: the development machines have no GPU.
    """

    def __init__(self, device: torch.device, interval_s: float = 0.05) -> None:
        self.device = device
        self.interval_s = interval_s
        self.peak: Optional[int] = None
        self.samples = 0
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def _run(self) -> None:
        try:
            import pynvml

            pynvml.nvmlInit()
        except Exception:  # no driver / no NVML: nothing sampled
            return
        try:
            index = self.device.index if self.device.index is not None else torch.cuda.current_device()
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            while True:
                used = int(pynvml.nvmlDeviceGetMemoryInfo(handle).used)
                self.peak = used if self.peak is None else max(self.peak, used)
                self.samples += 1
                if self._stop.wait(self.interval_s):
                    break
        finally:
            pynvml.nvmlShutdown()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="nvml-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


@dataclass
class MemoryStats(Serializable):
    derived = ("peak_bytes",)

    device: str
    peak_rss_bytes: int  # process high-water mark over the region (CPU RAM)
    rss_before_bytes: Optional[int]
    peak_rss_is_region: bool  # False when the counter could not be reset (lifetime peak)
    cuda_max_allocated_bytes: Optional[int] = None
    cuda_max_reserved_bytes: Optional[int] = None
    nvml_used_bytes: Optional[int] = None  # device memory in use at the end of the region (all processes)
    nvml_peak_used_bytes: Optional[int] = None  # the highest value sampled during the region
    nvml_samples: int = 0

    @property
    def peak_bytes(self) -> int:
        """The headline figure: GPU allocator peak on CUDA, process peak RSS on CPU."""
        if self.cuda_max_allocated_bytes is not None:
            return self.cuda_max_allocated_bytes
        return self.peak_rss_bytes


class MemoryTracker:
    """``with MemoryTracker(device) as mt: ...`` then ``mt.stats``."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.stats: Optional[MemoryStats] = None
        self._reset_ok = False
        self._rss_before: Optional[int] = None
        self._sampler: Optional[NvmlSampler] = None

    def __enter__(self) -> MemoryTracker:
        self._rss_before = current_rss_bytes()
        self._reset_ok = reset_peak_rss()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._sampler = NvmlSampler(self.device)
            self._sampler.start()
        return self

    def __exit__(self, *exc: object) -> None:
        stats = MemoryStats(
            device=str(self.device),
            peak_rss_bytes=peak_rss_bytes(),
            rss_before_bytes=self._rss_before,
            peak_rss_is_region=self._reset_ok,
        )
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            stats.cuda_max_allocated_bytes = int(torch.cuda.max_memory_allocated(self.device))
            stats.cuda_max_reserved_bytes = int(torch.cuda.max_memory_reserved(self.device))
            stats.nvml_used_bytes = nvml_used_bytes(self.device)
            if self._sampler is not None:
                self._sampler.stop()
                stats.nvml_peak_used_bytes, stats.nvml_samples = self._sampler.peak, self._sampler.samples
        self.stats = stats
