"""Wall-clock timing that is honest on GPUs: CUDA work is synchronized before a clock is read.

``Stopwatch`` times a region; ``TokenClock`` is a logits processor that stamps
each generation step, which gives time to first token and decode speed
(optimum-benchmark measures per-token latency the same way).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so the clock measures the work and not its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Stopwatch:
    """``with Stopwatch(device) as sw: ...`` then ``sw.elapsed`` in seconds."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.start = 0.0
        self.elapsed = 0.0

    def __enter__(self) -> Stopwatch:
        synchronize(self.device)
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        synchronize(self.device)
        self.elapsed = time.perf_counter() - self.start


@dataclass
class TokenClock:
    """A transformers logits processor that records when each new token's logits are ready.

    ``generate`` calls it once per step, right after the forward pass, so the
    first stamp minus the start is the time to first token (prefill).
    """

    device: torch.device
    stamps: list[float] = field(default_factory=list)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        synchronize(self.device)
        self.stamps.append(time.perf_counter())
        return scores

    def reset(self) -> None:
        self.stamps.clear()


@dataclass(frozen=True)
class GenerationTiming:
    latency_s: float
    ttft_s: float | None
    decode_tokens_per_s: float | None


def generation_timing(start: float, end: float, stamps: list[float], new_tokens: int) -> GenerationTiming:
    """Split a generate() call into prefill (to the first token) and decode."""
    if not stamps:
        return GenerationTiming(end - start, None, None)
    ttft = stamps[0] - start
    decode_time = end - stamps[0]
    decode_tps = (new_tokens - 1) / decode_time if new_tokens > 1 and decode_time > 0 else None
    return GenerationTiming(end - start, ttft, decode_tps)
