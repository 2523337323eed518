"""Per-sample records: the ground truth of every number in a report.

One JSON line per item, appended and flushed as soon as the item is scored,
so a killed run loses at most the batch in flight (``harness.results.cells`` keeps them
per model and task). JSON files other than records are written atomically
(temp file + rename), so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

from harness.errors import HarnessError
from harness.serialize import Serializable


@dataclass
class SampleRecord(Serializable):
    task: str
    model: str
    sample_id: str
    prompt: str
    gold: Any  # label, or list of references
    prediction: str
    scores: dict[str, float]  # per-sample metric values (correct, rouge1, ...)
    input_tokens: int
    output_tokens: int
    latency_s: Optional[float]  # the request's end-to-end latency: latency mode (batch size 1) only, else None
    batch_size: int
    item_s: float  # the item's share of model time: its batch's seconds / items in the batch (costs and energy use it)
    batch_s: float  # seconds of the batch that held this item
    truncated: bool = False  # the prompt did not fit the context window: its start was dropped
    tokens_dropped: int = 0
    ttft_s: Optional[float] = None  # generation only
    decode_tokens_per_s: Optional[float] = None  # generation only
    details: dict[str, Any] = field(default_factory=dict)  # choice log-likelihoods, confidences
    metadata: dict[str, Any] = field(default_factory=dict)  # provenance (seed file, paragraph...)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: Optional[str] = "a record") -> SampleRecord:
        """A record as written by any version of the harness (records before ``item_s`` held the batch time in
        ``latency_s``); a field this version does not know means a newer writer: named, never dropped silently."""
        if d.keys() == _FIELDS:  # every field and no other, as this version writes them (a million in a large store):
            record = object.__new__(cls)  # the fields as they are, without __init__'s argument binding (5x faster)
            record.__dict__.update(d)
            return record
        if not _FIELDS.issuperset(d):  # (a set difference per record costs a large store seconds)
            unknown = sorted(set(d) - _FIELDS)
            raise RecordFormatError(
                f"{where} has fields this version of the harness does not know ({', '.join(unknown)}): "
                "it was written by a newer version",
                "upgrade the harness (pip install -U small-vs-large) to read it",
            )
        fields = dict(d)
        if "item_s" not in fields:
            fields["item_s"] = fields["latency_s"] / fields.get("batch_size", 1)
            fields.setdefault("batch_s", fields["latency_s"])
        fields.setdefault("batch_size", 1)
        try:
            return cls(**fields)
        except TypeError as exc:  # a required field missing
            raise RecordFormatError(
                f"{where} is not a harness record ({exc})", "move the cell aside and run again"
            ) from exc


_FIELDS = {f.name for f in fields(SampleRecord)}


class RecordFormatError(HarnessError):
    """A records.jsonl line that this version cannot read as a record."""


def write_json(path: Path, payload: Any, indent: Optional[int] = 2) -> None:
    """Write JSON atomically (temp file + rename); the temp name is per process, so racing writers never mix.

    ``indent=None``: one line, by Python's C encoder (an indented file is written by its pure-Python one, ten times
    slower: a report of thousands of cells writes tens of MB)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(payload, indent=indent, ensure_ascii=False, default=str) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


class RecordWriter:
    """Appends records to a JSONL file, one flushed line per record."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: Any = None
        self.count = 0
        self.input_tokens = 0  # this session's own tokens: its throughput is over the items it timed
        self.output_tokens = 0

    def __enter__(self) -> RecordWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a", encoding="utf-8")
        return self

    def write(self, record: SampleRecord) -> None:
        assert self._fh is not None
        # one write() per line: a kill leaves at most one partial last line, which a reader drops
        self._fh.write(json.dumps(record.to_dict(), ensure_ascii=False, default=str) + "\n")
        self._fh.flush()
        self.count += 1
        self.input_tokens += record.input_tokens
        self.output_tokens += record.output_tokens

    def __exit__(self, *exc: object) -> None:
        assert self._fh is not None
        os.fsync(self._fh.fileno())
        self._fh.close()


_DECODER = json.JSONDecoder()


def _parse(line: str) -> Any:
    """A record line as written (no leading space): raw_decode skips json.loads' two whitespace scans, a third of
    its time over a store's million lines; anything else goes through json.loads."""
    try:
        return _DECODER.raw_decode(line)[0]
    except ValueError:
        return json.loads(line)


def read_records(path: Path) -> list[SampleRecord]:
    """Every complete record of a JSONL file (a partial last line, left by a kill, is skipped)."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.endswith("\n"):
                break  # written when the process was killed: not a record
            if line.strip():
                out.append(SampleRecord.from_dict(_parse(line), f"{path}:{lineno}"))
    return out
