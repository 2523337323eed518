"""Shared fixtures: tiny real-architecture models, offline guards.

Tests never reach the network: the hub is switched off by environment and any
socket connection to a non-local address fails the test that tries it.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SEEDS_DIR = PROJECT_ROOT.parent / "shared" / "seeds"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", help="also run tests that need the real offline models")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="needs --runslow (real models fetched once from PyPI)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


class NetworkAccessError(RuntimeError):
    pass


_real_connect = socket.socket.connect


def _guarded_connect(self: socket.socket, address: object) -> object:
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and (host.startswith("127.") or host in ("localhost", "::1") or host.startswith("/")):
        return _real_connect(self, address)
    if self.family == socket.AF_UNIX:
        return _real_connect(self, address)
    raise NetworkAccessError(f"test tried to reach the network: {address!r}")


@pytest.fixture(autouse=True)
def no_network(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if "slow" in request.keywords:  # slow tests may fetch the real wheels from PyPI once
        return
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)


@pytest.fixture
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("HARNESS_CACHE", str(cache))
    return cache


@pytest.fixture(scope="session")
def tiny_cfgs():
    from harness.config.schema import compose

    cfg = compose(["pair=tiny"])
    return cfg.pair.small, cfg.pair.large


@pytest.fixture(scope="session")
def cpu_runtime():
    from harness.config.schema import RuntimeConfig

    return RuntimeConfig(device="cpu", dtype="float32", warmup_steps=0, progress=False)


@pytest.fixture(scope="session")
def tiny_olmoe(tiny_cfgs, cpu_runtime):
    from harness.models import load_model

    return load_model(tiny_cfgs[0], cpu_runtime)


@pytest.fixture(scope="session")
def tiny_llama(tiny_cfgs, cpu_runtime):
    from harness.models import load_model

    return load_model(tiny_cfgs[1], cpu_runtime)


@pytest.fixture(scope="session")
def saved_tiny_llama(tmp_path_factory: pytest.TempPathFactory, tiny_llama) -> Path:
    """The tiny Llama written with save_pretrained, as a user's local model directory."""
    path = tmp_path_factory.mktemp("tiny_llama")
    tiny_llama.model.save_pretrained(path)
    tiny_llama.tokenizer.save_pretrained(path)
    return path


def run_records(run_dir: Path, model: str, task: str) -> list[dict]:
    """The records a run used for ``model`` on ``task`` (read from its cell, as the report does)."""
    import json

    from harness.results.cells import read_cell_records

    cells = json.loads((Path(run_dir) / "cells.json").read_text())["cells"]
    cell = next(c for c in cells if c["model"] == model and c["task"] == task)
    return [r.to_dict() for r in read_cell_records(Path(cell["path"]))]  # the JSON view, in the task's order


def write_gen_task(tasks: Path, n_items: int) -> Path:
    """A summarization task ``gen`` of ``n_items`` generated items in ``tasks``: long enough to interrupt mid-task."""
    import json

    rows = [
        {
            "id": f"s{i:03d}",
            "text": f"Item {i}: the committee met on day {i} and agreed on {i * 3} points about the budget.",
            "reference": f"The committee agreed on {i * 3} points.",
        }
        for i in range(n_items)
    ]
    (tasks / "gen.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tasks / "gen.yaml").write_text(
        "name: gen\ntype: summarization\ndata: gen.jsonl\nprompt: 'Summarize: {text}\\nSummary:'\nmax_new_tokens: 16\n"
    )
    return tasks


def make_record(**fields: object):
    """A SampleRecord for hand-made cases: the fields a test names, neutral values for the rest."""
    from harness.results.records import SampleRecord

    item_s = fields.get("item_s", fields.get("latency_s") or 0.0)
    defaults = {"task": "t", "model": "m", "sample_id": "0", "prompt": "", "gold": None, "prediction": "", "scores": {}, "input_tokens": 0,
                "output_tokens": 0, "latency_s": None, "batch_size": 1, "item_s": item_s, "batch_s": item_s}  # fmt: skip
    return SampleRecord.from_dict({**defaults, **fields})


def make_cell_summary(**fields: object):
    """A CellSummary for hand-made cases: the fields a test names, neutral values for the rest."""
    from harness.results.schema import CellSummary

    defaults = {"task_type": "classification", "n": 0, "primary_metric": "accuracy", "quality": {}, "mode": "latency",
                "batch_size": 1, "latency_s": {}, "item_s": {}, "ttft_s": None, "decode_tokens_per_s_median": None,
                "wall_s": 0.0, "throughput_samples_per_s": None, "throughput_tokens_per_s": None,
                "output_tokens_per_s": None, "input_tokens": 0, "truncated_items": 0, "output_tokens": 0,
                "peak_memory_bytes": None, "memory": {}, "energy": None, "sample_ids": [], "breakdown": {},
                "consistency": None, "economics": None}  # fmt: skip
    return CellSummary.from_dict({**defaults, **fields})


def make_summary(tasks: dict, comparisons: dict | None = None, **fields: object):
    """A RunSummary for hand-made cases. ``tasks``: name -> (task info, {model: CellSummary});
    ``comparisons``: task -> model -> the Comparison fields a test names."""
    from harness.results.schema import Comparison, ModelRecord, RunSummary, TaskSummary

    cmp_fields = {f: None for f in Comparison.__dataclass_fields__} | {"same_items": True, "metric": "accuracy"}
    defaults = {"run_dir": "", "name": "test", "pair": "test", "task_group": "test", "hardware": None, "models": {},
                "order": [], "reference": None, "cells": []}  # fmt: skip
    models = {n: ModelRecord(dict(m)) for n, m in dict(fields.pop("models", {})).items()}  # type: ignore[call-overload]
    return RunSummary(
        **{**defaults, **fields, "models": models},  # type: ignore[arg-type]
        tasks={t: TaskSummary(dict(info), dict(results)) for t, (info, results) in tasks.items()},
        comparisons={
            t: {m: Comparison(**{**cmp_fields, **c}) for m, c in per.items()} for t, per in (comparisons or {}).items()
        },
    )
