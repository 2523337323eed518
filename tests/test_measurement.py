"""Timing and memory trackers (CPU here; the GPU tests skip cleanly without CUDA)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from harness.measure.memory import MemoryTracker, peak_rss_bytes, reset_peak_rss
from harness.measure.timing import Stopwatch, TokenClock, generation_timing


def cuda(test):
    """A GPU test: selected by ``make test-gpu`` (``-m gpu``), skipped cleanly without CUDA."""
    return pytest.mark.gpu(pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")(test))


def test_stopwatch_measures_wall_time():
    with Stopwatch(torch.device("cpu")) as sw:
        time.sleep(0.05)
    assert 0.045 < sw.elapsed < 1.0


def test_generation_timing_splits_prefill_and_decode():
    t = generation_timing(start=10.0, end=12.0, stamps=[10.5, 11.0, 11.5, 12.0], new_tokens=4)
    assert t.latency_s == 2.0 and t.ttft_s == 0.5
    assert t.decode_tokens_per_s == pytest.approx(3 / 1.5)
    assert generation_timing(0.0, 1.0, [], 0).ttft_s is None


def test_cpu_peak_memory_sees_an_allocation_and_resets():
    big = 256 * 2**20
    with MemoryTracker(torch.device("cpu")) as mt:
        x = torch.ones(big // 4, dtype=torch.float32)  # touched, so resident
        del x
    assert mt.stats is not None
    if mt.stats.peak_rss_is_region:
        assert mt.stats.peak_rss_bytes - mt.stats.rss_before_bytes >= 0.9 * big
        assert reset_peak_rss()
        assert peak_rss_bytes() < mt.stats.peak_rss_bytes  # the peak was reset
    assert mt.stats.peak_bytes == mt.stats.peak_rss_bytes


def _gpu_work(dev: torch.device, size: int, steps: int) -> None:
    """Queued matmuls: the launch returns long before the GPU is done."""
    a = torch.randn(size, size, device=dev)
    for _ in range(steps):
        a = a @ a
        a = a / a.norm()


@cuda
def test_cuda_stopwatch_synchronizes():
    dev = torch.device("cuda")
    with Stopwatch(dev) as sw:
        _gpu_work(dev, 4096, 20)
    assert sw.elapsed > 0.001  # without synchronize this would be the launch time only


@cuda
def test_cuda_peak_memory_and_nvml():
    dev = torch.device("cuda")
    with MemoryTracker(dev) as mt:
        x = torch.empty(512 * 2**20, dtype=torch.uint8, device=dev)
        del x
    assert mt.stats.cuda_max_allocated_bytes >= 512 * 2**20
    assert mt.stats.cuda_max_reserved_bytes >= mt.stats.cuda_max_allocated_bytes
    assert mt.stats.peak_bytes == mt.stats.cuda_max_allocated_bytes
    assert mt.stats.nvml_used_bytes is None or mt.stats.nvml_used_bytes > 0
    if mt.stats.nvml_samples:  # NVML readable: the sampled peak saw the 512 MiB buffer
        assert mt.stats.nvml_peak_used_bytes >= 512 * 2**20


@cuda
def test_token_clock_on_gpu(tiny_cfgs):
    from harness.config.schema import RuntimeConfig
    from harness.engines.hf import generate
    from harness.models import load_model
    from harness.tasks.prompts import Prompt

    lm = load_model(tiny_cfgs[1], RuntimeConfig(device="cuda", dtype="float32"))
    out = generate(lm, [Prompt("hello there", " ", False)], max_new_tokens=8, stops=[])[0]
    assert out.ttft_s is not None and out.ttft_s < out.latency_s


def test_token_clock_records_each_step():
    clock = TokenClock(torch.device("cpu"))
    scores = torch.zeros(1, 5)
    for _ in range(3):
        assert clock(torch.zeros(1, 1, dtype=torch.long), scores) is scores
    assert len(clock.stamps) == 3 and clock.stamps == sorted(clock.stamps)


@cuda
def test_energy_counter_around_a_timed_region():
    from harness.measure.energy import EnergyTracker

    dev = torch.device("cuda")
    with EnergyTracker(dev) as et:
        _gpu_work(dev, 8192, 50)
    if et.reading.method == "nvml":  # Volta and newer
        assert et.reading.joules and et.reading.joules > 0


@cuda
def test_gpu_cells_record_cuda_measurements(tmp_path):
    """A whole run on the GPU: synchronized per-token timing, allocator peaks, NVML samples, energy in the cell manifests."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HARNESS_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "comparison=arch_tiny",
            "task=smoke",
            "runtime.device=cuda",
            "runtime=regression",
            "runtime.progress=false",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for cell in json.loads((tmp_path / "run" / "cells.json").read_text())["cells"]:
        manifest = json.loads((Path(cell["path"]) / "manifest.json").read_text())
        mem = manifest["sessions"][-1]["memory"]
        assert mem["cuda_max_allocated_bytes"] > 0 and mem["cuda_max_reserved_bytes"] >= mem["cuda_max_allocated_bytes"]
        assert manifest["model_record"]["device"].startswith("cuda")
        recs = [json.loads(x) for x in (Path(cell["path"]) / "records.jsonl").read_text().splitlines()]
        if cell["task"] == "smoke_summarize":
            assert all(r["ttft_s"] is not None and 0 < r["ttft_s"] <= r["latency_s"] for r in recs)
