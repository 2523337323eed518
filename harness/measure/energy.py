"""Energy of a measured region, from hardware counters where they can be read.

- NVIDIA GPUs: NVML's cumulative energy counter (``nvmlDeviceGetTotalEnergyConsumption``,
  millijoules since driver load; Volta and newer) read before and after.
- CPUs: Intel/AMD RAPL package counters under ``/sys/class/powercap`` when readable.
- Otherwise nothing is measured here; the report then estimates energy from
  the hardware profile's power figure times the measured time, and labels it
  ``estimated`` everywhere it appears (see ``harness.results.cost``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, TypedDict

import torch

from harness.serialize import Serializable

_POWERCAP = Path("/sys/class/powercap")


class EnergyTotal(TypedDict):
    """A cell's energy over its sessions (summary.json): joules None where a session had no readable counter."""

    joules: Optional[float]
    method: Optional[str]  # the counters, joined by "+" where sessions used different ones
    scope: str


@dataclass(frozen=True)
class EnergyReading(Serializable):
    joules: Optional[float]  # None when no counter could be read
    method: Optional[str]  # "nvml" | "rapl" | None
    scope: str = ""  # what the counter covers (one GPU board, CPU packages: all processes on them)


def _rapl_domains() -> list[Path]:
    """Top-level package domains (intel-rapl:N), whose counters include their subdomains."""
    if not _POWERCAP.is_dir():
        return []
    return sorted(p for p in _POWERCAP.glob("intel-rapl:*") if p.name.count(":") == 1 and (p / "energy_uj").is_file())


def _read_rapl() -> Optional[dict[Path, tuple[int, int]]]:
    try:
        out = {}
        for d in _rapl_domains():
            out[d] = (int((d / "energy_uj").read_text()), int((d / "max_energy_range_uj").read_text()))
        return out or None
    except (OSError, ValueError):  # unreadable without privileges on many machines
        return None


def _nvml_mj(device: torch.device) -> Optional[int]:
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            index = device.index if device.index is not None else torch.cuda.current_device()
            return int(pynvml.nvmlDeviceGetTotalEnergyConsumption(pynvml.nvmlDeviceGetHandleByIndex(index)))
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no NVML, or a GPU without the counter
        return None


class EnergyTracker:
    """``with EnergyTracker(device) as et: ...`` then ``et.reading``."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.reading = EnergyReading(None, None)
        self._nvml: Optional[int] = None
        self._rapl: Optional[dict[Path, tuple[int, int]]] = None

    def __enter__(self) -> EnergyTracker:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self._nvml = _nvml_mj(self.device)
        else:
            self._rapl = _read_rapl()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            end = _nvml_mj(self.device)
            if self._nvml is not None and end is not None:
                self.reading = EnergyReading((end - self._nvml) / 1000.0, "nvml", "one GPU board (all its processes)")
            return
        end_rapl = _read_rapl()
        if self._rapl and end_rapl:
            total = 0
            for domain, (start, wrap) in self._rapl.items():
                stop = end_rapl.get(domain, (start, wrap))[0]
                total += stop - start if stop >= start else stop + wrap - start  # the counter wraps
            self.reading = EnergyReading(total / 1e6, "rapl", "CPU packages (all processes on them)")
