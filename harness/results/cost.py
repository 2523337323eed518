"""Cost, energy and carbon per request, from measured time and the hardware profile.

- cost per 1,000 requests = hourly price x (timed wall seconds / requests) / 3600 x 1000; for a hosted model
  priced by tokens (``served.usd_per_million_input/output``): the tokens its requests used x those prices
- energy per request: measured (NVML on NVIDIA GPUs, RAPL on CPUs) when the run could
  read a counter, else ``estimated`` = profile power x time; the method travels with
  every number so an estimate is never shown as a measurement
- CO2 per 1,000 requests = energy (kWh) x grid intensity (g/kWh)
- memory headroom = how many copies of the model fit in the profile's memory
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Optional

from harness.config.schema import HardwareConfig
from harness.measure.energy import EnergyTotal
from harness.results.schema import Economics

J_PER_KWH = 3.6e6


def per_sample_energy(
    latencies: Sequence[float], energy: EnergyTotal | None, power_w: float
) -> tuple[list[float], str]:
    """Energy of each request (J) and how it was obtained.

    A measured total is shared out in proportion to each request's latency; an
    estimate is the profile's power times each request's latency.
    """
    joules = energy.get("joules") if energy else None
    if energy and joules is not None and sum(latencies) > 0:
        scale = float(joules) / sum(latencies)
        return [lat * scale for lat in latencies], f"measured ({energy.get('method')})"
    return [lat * power_w for lat in latencies], "estimated"


def economics(
    n: int,
    wall_s: float,
    latencies: Sequence[float],
    peak_bytes: Optional[int],
    energy: EnergyTotal | None,
    hardware: HardwareConfig,
    token_prices: Optional[tuple[float, float]] = None,
    tokens: tuple[int, int] = (0, 0),
) -> Economics:
    """Cost, energy, carbon and headroom of one model on one task (``tokens``: input and output tokens in all)."""
    per_request_s = wall_s / n if n else float("nan")
    per_sample, method = per_sample_energy(latencies, energy, float(hardware.power_w))
    joules = sum(per_sample) / len(per_sample) if per_sample else float("nan")
    memory = float(hardware.memory_gb) * 2**30
    return Economics(
        hardware=hardware.name,
        cost_per_1k_usd=(tokens[0] * token_prices[0] + tokens[1] * token_prices[1]) / 1e6 / n * 1000
        if token_prices and n
        else float(hardware.hourly_usd) * per_request_s / 3600 * 1000,
        energy_per_request_j=joules,
        energy_method=method,
        co2_g_per_1k=joules * 1000 / J_PER_KWH * float(hardware.grid_gco2_per_kwh),
        memory_headroom_copies=math.floor(memory / peak_bytes) if peak_bytes else None,
        cost_basis="tokens" if token_prices and n else None,
    )
