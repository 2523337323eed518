"""What the benchmarks share: loading a model and tasks the way the harness does, timing, the JSON they write.

Benchmarks are scripts, not unit tests: they take minutes, print their table last and write
``results/bench/<name>.json`` (machine, settings, every repetition). Compare ratios measured side
by side in one run; absolute times move with the machine and whatever else runs on it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch  # noqa: E402

from harness.config.resources import tasks_dir  # noqa: E402
from harness.config.schema import RuntimeConfig, load_model_config  # noqa: E402
from harness.measure.environment import environment_record  # noqa: E402
from harness.measure.timing import synchronize  # noqa: E402
from harness.models import LoadedModel, load_model  # noqa: E402
from harness.models.loader import default_cache_dir  # noqa: E402
from harness.results.cells import read_cell_records  # noqa: E402
from harness.results.records import RecordWriter, write_json  # noqa: E402
from harness.run.evaluate import evaluate_task  # noqa: E402
from harness.tasks.resolve import resolve_tasks  # noqa: E402
from harness.tasks.types import Sample, Task, select_samples

DEVICE = torch.device("cpu")  # where the benchmark runs (set by its --device)


def sync(device: torch.device) -> None:
    synchronize(device)


def runtime(device: str, dtype: str, batch_size: int = 1, **kw: Any) -> RuntimeConfig:
    """The harness's runtime for a benchmark: no chat template (lm-eval's default), no warm-up (the repetitions warm up)."""
    return RuntimeConfig(
        **{
            "device": device,
            "dtype": dtype,
            "batch_size": batch_size,
            "warmup_steps": 0,
            "chat_template": False,
            "progress": False,
            **kw,
        }
    )


def model(name: str, device: str, dtype: str) -> LoadedModel:
    return load_model(load_model_config(name), runtime(device, dtype))


def task(name: str, limit: int | None, seed: int = 1234) -> tuple[Task, list[Sample]]:
    """A shipped task (or ``bigbench:<path>``), with the first ``limit`` items of its seeded selection, as a task of its own."""
    t = resolve_tasks([name], [tasks_dir()], default_cache_dir())[0]
    samples = select_samples(t, limit, seed)
    return dataclasses.replace(t, samples=samples), samples


def harness_pass(
    engine: Any, t: Task, samples: Sequence[Sample], rt: RuntimeConfig
) -> tuple[float, list[dict[str, Any]]]:
    """The harness's evaluation loop as a run uses it (prompts, batching, scoring, metrics, records on disk): (wall s, records)."""
    with tempfile.TemporaryDirectory() as tmp:
        cell = Path(tmp)
        start = time.perf_counter()
        with RecordWriter(cell / "records.jsonl") as writer:
            evaluate_task(engine, t, samples, rt, writer)
        wall = time.perf_counter() - start
        write_json(cell / "manifest.json", {"task_info": {"sample_ids": [s.id for s in samples]}})
        return wall, read_cell_records(cell)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def best_of(fn: Callable[[], Any], reps: int) -> float:
    """The fastest of ``reps`` synchronized runs of ``fn`` after one warm-up run, in seconds."""
    fn()  # warm
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        sync(DEVICE)
        times.append(time.perf_counter() - start)
    return min(times)


def bandwidth(device: str, mib: int, reps: int) -> float:
    """This machine's copy bandwidth: bytes read + written per second by a ``mib`` MiB tensor copy, best of ``reps``."""
    src = torch.empty(mib * 2**20 // 4, dtype=torch.float32, device=device).fill_(1.0)
    dst = torch.empty_like(src)
    return 2 * src.numel() * 4 / best_of(lambda: dst.copy_(src), reps)


def spread(values: Sequence[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def machine() -> dict[str, Any]:
    env = environment_record(ROOT)
    return {
        "cpu": env.get("cpu") or platform.processor(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "environment": env,
    }


def write_result(name: str, payload: dict[str, Any], out_dir: Path | None = None) -> Path:
    out = (out_dir or ROOT / "results" / "bench") / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"bench": name, "machine": machine(), **payload}, indent=2, default=str) + "\n")
    return out


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table (printed last by every benchmark, pasted as is into notes)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def lmeval_version() -> str:
    from importlib.metadata import version

    return version("lm_eval")
