"""Per-sample records: the ground truth of every number in a report.

One JSONL per model and task under ``<run>/samples/<role>/<task>.jsonl``
(role = small | large; the model's name is in every record),
plus ``<task>.meta.json`` with what was measured over the whole task (wall
time, peak memory). Files are written under a temporary name and renamed
when complete, so an interrupted run never leaves a half file that looks whole.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional


@dataclass
class SampleRecord:
    task: str
    model: str
    role: str  # small | large
    sample_id: str
    prompt: str
    gold: Any  # label, or list of references
    prediction: str
    scores: dict[str, float]  # per-sample metric values (correct, rouge1, ...)
    input_tokens: int
    output_tokens: int
    latency_s: float  # wall time of the batch that held this sample
    batch_size: int
    ttft_s: Optional[float] = None  # generation only
    decode_tokens_per_s: Optional[float] = None  # generation only
    details: dict[str, Any] = field(default_factory=dict)  # choice log-likelihoods, confidences
    metadata: dict[str, Any] = field(default_factory=dict)  # provenance (seed file, paragraph...)


def samples_path(run_dir: Path, role: str, task: str) -> Path:
    return run_dir / "samples" / role / f"{task}.jsonl"


def meta_path(run_dir: Path, role: str, task: str) -> Path:
    return run_dir / "samples" / role / f"{task}.meta.json"


def write_json(path: Path, payload: Any) -> None:
    """Write JSON atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


class RecordWriter:
    """Appends records to ``<final>.partial`` and renames it to ``<final>`` on success."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.partial = path.with_name(path.name + ".partial")
        self._fh = None
        self.count = 0

    def __enter__(self) -> "RecordWriter":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.partial, "w", encoding="utf-8")
        return self

    def write(self, record: SampleRecord) -> None:
        assert self._fh is not None
        self._fh.write(json.dumps(asdict(record), ensure_ascii=False, default=str) + "\n")
        self._fh.flush()
        self.count += 1

    def __exit__(self, exc_type: object, *rest: object) -> None:
        assert self._fh is not None
        self._fh.close()
        if exc_type is None:
            os.replace(self.partial, self.path)


def read_records(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def iter_sample_files(run_dir: Path) -> Iterator[tuple[str, str, Path]]:
    """(role, task, path) for every complete records file of a run."""
    for path in sorted((run_dir / "samples").glob("*/*.jsonl")):
        yield path.parent.name, path.stem, path
