"""Cells: one model on one task under the settings that change its results; the unit of work and storage.

A cell's key is a hash of everything that determines its records (the model's
identity, dtype, device type, engine, the task's identity, the selected item
ids, generation settings, batch size and ``SCORING_VERSION``), so results of
different settings never mix and the same cell is never computed twice.

Layout in the store (``paths.store_dir``, default ``results/cells``)::

    <store>/<model>/<task>/<key>/records.jsonl   one line per scored item, appended and flushed
    <store>/<model>/<task>/<key>/manifest.json   status, counts, timings, memory, energy, environment,
                                                 the key's parts in clear (written atomically)
    <store>/<model>/<task>/<key>.lock            held while a job computes the cell

The lock is an fcntl lock: the kernel releases it when its job dies (even on
SIGKILL), so a crashed job never blocks the cell, and two jobs racing on one
cell take turns: the second finds it complete and reuses it. On a shared file
system fcntl locks need the file system's lock manager (NFSv4 has one).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any, Optional

from harness.errors import HarnessError
from harness.measure.energy import EnergyTotal
from harness.measure.environment import EnvironmentRecord
from harness.measure.hardware import HardwareRecord
from harness.results.records import RecordWriter, SampleRecord, read_json, read_records, write_json
from harness.results.schema import check_format
from harness.serialize import MissingFieldsError, Serializable
from harness.tasks.types import task_fingerprint

# Bump when scoring or the record format changes what a cell's records mean:
# every cell is then computed again, and old cells stay on disk untouched.
SCORING_VERSION = 3  # 3: records split latency_s (latency mode only) from item_s/batch_s; length-sorted batches
MANIFEST_FORMAT = 1


class CellStatus(str, Enum):
    def __str__(self) -> str:  # the value in f-strings and str() on every Python version
        return str(self.value)

    """Where a cell stands (its manifest's ``status``)."""

    running = "running"  # a job holds it, or one died while computing it: the next run resumes it
    complete = "complete"  # every planned item has a record
    partial = (
        "partial"  # every item was tried, some failed even at batch size 1 (out of memory): retried by the next run
    )
    stopped = "stopped"  # a sequential run (runtime.stop_when_decided) decided the task on a prefix of the items


RUNNING, COMPLETE, PARTIAL, STOPPED = CellStatus.running, CellStatus.complete, CellStatus.partial, CellStatus.stopped
REPORTABLE = (COMPLETE, PARTIAL, STOPPED)


class RefStatus(str, Enum):
    def __str__(self) -> str:  # the value in f-strings and str() on every Python version
        return str(self.value)

    """What a run did with a cell (cells.json, the report's Cells table)."""

    planned = "planned"
    computed = "computed"
    resumed = "resumed"
    reused = "reused"
    missing = "missing"


@dataclass
class CellManifest(Serializable):
    """A cell's manifest.json: what was computed, under which settings, in which sessions, and how far it got."""

    where = "a cell manifest"

    key: str
    model: str
    task: str
    parts: dict[str, Any]  # the key's parts in clear
    status: CellStatus
    created_at: Optional[str] = None
    completed_at: Optional[str] = None
    sessions: list[dict[str, Any]] = field(
        default_factory=list
    )  # timings, memory, energy of each run that added records
    model_record: dict[str, Any] = field(default_factory=dict)  # the engine's description of the model
    task_info: dict[str, Any] = field(default_factory=dict)  # the task as planned, with its item ids
    environment: EnvironmentRecord = field(default_factory=lambda: EnvironmentRecord())
    # the hardware class (harness.measure.hardware); {}: unrecorded
    hardware: HardwareRecord = field(default_factory=lambda: HardwareRecord())
    n_planned: int = 0
    n_done: int = 0
    failed_ids: list[str] = field(default_factory=list)
    stopped: Optional[dict[str, Any]] = None  # a sequential run's stop: at, of, claims, decision
    format: int = MANIFEST_FORMAT

    @property
    def reportable(self) -> bool:
        return self.status in REPORTABLE

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: Optional[str] = None) -> CellManifest:
        # a newer format or field is refused (ResultFormatError), never taken for a damaged manifest: the run would
        # set it aside
        check_format(d, MANIFEST_FORMAT, where or cls.where)
        try:
            return super().from_dict(d, where)
        except (MissingFieldsError, ValueError) as exc:
            raise ManifestError(
                f"{where}: not a cell manifest ({exc})",
                "run the same command again: the harness sets that cell aside (records kept) and computes it anew",
            ) from exc


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def digest(value: Any, length: int = 16) -> str:
    return hashlib.sha256(_canonical(value).encode()).hexdigest()[:length]


@dataclass(frozen=True)
class CellKey:
    """A cell's address: its model and task names (for people) and the hashed parts (for identity)."""

    model: str
    task: str
    parts: dict[str, Any] = field(hash=False)

    @property
    def digest(self) -> str:
        return digest(self.parts)


@dataclass
class CellRef(Serializable):
    """A cell as a run uses it: where it is and whether this run computed it."""

    model: str
    task: str
    key: str
    path: str  # the cell directory
    status: str = RefStatus.planned
    computed_at: Optional[str] = None  # when the cell was completed
    hardware: Optional[str] = None  # the hardware class's id and label (harness.measure.hardware), once known
    hardware_label: Optional[str] = None

    where = "an entry of cells.json"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in name)


class Store:
    """The directory of cells (shared by every job that points ``paths.store_dir`` at it)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def cell_dir(self, key: CellKey) -> Path:
        return self.root / _safe(key.model) / _safe(key.task) / key.digest

    def manifest(self, key: CellKey) -> Optional[CellManifest]:
        return read_manifest(self.cell_dir(key))

    def is_complete(self, key: CellKey) -> bool:
        """False for a cell whose manifest cannot be read: the run sets it aside and computes it anew."""
        try:
            m = self.manifest(key)
        except ManifestError:
            return False
        return bool(m and m.status == COMPLETE)

    def check_writable(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".write-test.{os.getpid()}"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise HarnessError(
                f"the cell store {self.root} is not writable ({exc.strerror})",
                "set paths.store_dir=<a writable directory>",
            ) from exc

    @contextmanager
    def claim(
        self, key: CellKey, on_wait: Optional[Callable[[str], None]] = None, poll_s: float = 0.5
    ) -> Iterator[Claim]:
        """Hold the cell's lock (waiting for another job that holds it) for the duration of the block."""
        cell = self.cell_dir(key)
        cell.parent.mkdir(parents=True, exist_ok=True)
        lock_path = cell.parent / f"{key.digest}.lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            told = False
            while True:
                try:
                    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EACCES, errno.EAGAIN):
                        raise
                    if on_wait and not told:
                        holder = lock_path.read_text(errors="replace").strip() or "another job"
                        on_wait(f"{key.model} / {key.task}: waiting for {holder}, which is computing this cell")
                        told = True
                    time.sleep(poll_s)
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {now_iso()}".encode())
            yield Claim(self, key, cell)
        finally:
            try:
                os.ftruncate(fd, 0)
            except OSError:
                pass
            os.close(fd)  # releases the lock


def without_hardware(parts: dict[str, Any]) -> dict[str, Any]:
    """A key's parts but its hardware class: what two cells of one setting computed on two machines share."""
    return {k: v for k, v in parts.items() if k != "hardware"}


def same_but_hardware(store: Store, key: CellKey) -> Optional[tuple[CellManifest, CellKey]]:
    """A complete cell of the store whose key differs from ``key`` only by its hardware class (or has none: a cell
    written before classes were recorded), with its own key; None if there is none. The most recent is taken."""
    wanted = without_hardware(key.parts)
    folder = store.cell_dir(key).parent
    found: list[tuple[str, CellManifest, CellKey]] = []
    for cell in sorted(folder.glob("*/manifest.json")) if folder.is_dir() else []:
        try:
            m = read_manifest(cell.parent)
        except ManifestError:
            continue
        if m is None or m.status != COMPLETE or m.key != cell.parent.name:
            continue  # a set-aside copy (runtime.recompute) keeps its manifest under another name
        if without_hardware(m.parts) == wanted:
            found.append((m.completed_at or "", m, CellKey(key.model, key.task, m.parts)))
    if not found:
        return None
    _, manifest, other = max(found, key=lambda x: x[0])
    return manifest, other


class ManifestError(HarnessError):
    """A cell's manifest exists but cannot be read: its measurements (memory, wall time, sessions) are lost."""


def read_manifest(cell: Path) -> Optional[CellManifest]:
    """The cell's manifest; None where there is none yet; ``ManifestError`` where it cannot be read."""
    path = Path(cell) / "manifest.json"
    if not path.is_file():
        return None
    try:
        data = read_json(path)
    except (OSError, ValueError) as exc:
        data = exc
    if not isinstance(data, dict):
        reason = (
            str(data).splitlines()[0] if isinstance(data, Exception) else f"a JSON {type(data).__name__}, not an object"
        )
        raise ManifestError(
            f"cell {cell}: manifest.json cannot be read ({reason})",
            "run the same command again: the harness sets that cell aside (records kept) and computes it anew",
        )
    return CellManifest.from_dict(data, f"cell {cell}: manifest.json")


class Claim:
    """A locked cell: read what is done, append what is missing, mark it complete."""

    def __init__(self, store: Store, key: CellKey, cell: Path) -> None:
        self.store = store
        self.key = key
        self.dir = cell
        self.records = cell / "records.jsonl"
        self.manifest_path = cell / "manifest.json"

    @property
    def manifest(self) -> Optional[CellManifest]:
        return read_manifest(self.dir)

    @property
    def complete(self) -> bool:
        m = self.manifest
        return bool(m and m.status == COMPLETE)

    def unreadable(self) -> Optional[ManifestError]:
        """Why the cell's manifest cannot be read, or None (readable or absent)."""
        try:
            read_manifest(self.dir)
        except ManifestError as exc:
            return exc
        return None

    def supersede(self) -> Optional[Path]:
        """Move an existing cell aside (runtime.recompute): kept on disk, never overwritten."""
        if not self.dir.exists():
            return None
        aside = self.dir.with_name(
            f"{self.dir.name}.superseded-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S%f')}"
        )
        os.replace(self.dir, aside)
        return aside

    def done_ids(self) -> list[str]:
        """Ids of the records already flushed; a partial last line (the process was killed mid-write) is cut off."""
        if not self.records.is_file():
            return []
        ids: list[str] = []
        good = 0
        with open(self.records, "rb") as fh:
            for raw in fh:
                if not raw.endswith(b"\n"):
                    break
                try:
                    ids.append(json.loads(raw)["sample_id"])
                except (ValueError, KeyError):
                    break
                good += len(raw)
        if good != self.records.stat().st_size:
            with open(self.records, "r+b") as fh:
                fh.truncate(good)
        return ids

    def begin(
        self,
        model_record: dict[str, Any],
        task_info: dict[str, Any],
        environment: EnvironmentRecord,
        n_planned: int,
        hardware: Optional[HardwareRecord] = None,
    ) -> CellManifest:
        """Write a ``running`` manifest (keeping earlier sessions of a resumed cell)."""
        old = self.manifest
        manifest = CellManifest(
            key=self.key.digest,
            model=self.key.model,
            task=self.key.task,
            parts=self.key.parts,
            status=RUNNING,
            created_at=(old.created_at if old else None) or now_iso(),
            completed_at=None,
            sessions=old.sessions if old else [],
            model_record=model_record,
            task_info=task_info,
            environment=environment,
            hardware=hardware or {},
            n_planned=n_planned,
            n_done=old.n_done if old else 0,
        )
        self.dir.mkdir(parents=True, exist_ok=True)
        write_json(self.manifest_path, manifest.to_dict())
        return manifest

    def writer(self) -> RecordWriter:
        return RecordWriter(self.records)

    def finish(self, manifest: CellManifest, session: dict[str, Any], n_planned: int) -> CellManifest:
        """Add this session; the cell is complete when every planned item has a record, partial when the rest failed."""
        ids = self.done_ids()
        if len(ids) != len(set(ids)):
            raise HarnessError(
                f"cell {self.dir} holds duplicate records", "move the cell directory aside and run again"
            )
        failed = list(session.get("failed_ids") or [])
        manifest = replace(
            manifest, sessions=[*manifest.sessions, session], n_planned=n_planned, n_done=len(ids), failed_ids=failed
        )
        if len(ids) == n_planned:
            manifest = replace(manifest, status=COMPLETE, completed_at=now_iso())
        elif failed and len(ids) + len(failed) == n_planned:
            manifest = replace(manifest, status=PARTIAL, completed_at=now_iso())
        write_json(self.manifest_path, manifest.to_dict())
        return manifest

    def stop(self, info: dict[str, Any]) -> CellManifest:
        """Mark a cell that holds a prefix of its items as stopped when decided (``info``: at which n, and why)."""
        old = self.manifest
        if old is None:
            raise HarnessError(f"cell {self.dir} has no manifest to mark stopped", "run the same command again")
        manifest = replace(old, status=STOPPED, completed_at=now_iso(), stopped=info)
        write_json(self.manifest_path, manifest.to_dict())
        return manifest


def read_cell_records(cell: Path, manifest: Optional[CellManifest] = None) -> list[SampleRecord]:
    """A cell's records in the task's item order (they are written in batch order, which may sort by length)."""
    manifest = manifest if manifest is not None else read_manifest(cell)
    records = read_records(cell / "records.jsonl")
    order = {sid: i for i, sid in enumerate((manifest.task_info.get("sample_ids") if manifest else None) or [])}
    return sorted(records, key=lambda r: order.get(r.sample_id, len(order)))


def combined_measurements(manifest: CellManifest) -> dict[str, Any]:
    """Wall time, peak memory and energy over a cell's sessions (a resumed cell has several)."""
    sessions = manifest.sessions
    wall = sum(float(s.get("wall_s") or 0.0) for s in sessions)
    done = [s for s in sessions if s.get("memory") and s.get("n")]
    mems = [s["memory"] for s in done]
    memory = max(mems, key=lambda m: m.get("peak_bytes") or 0) if mems else {"peak_bytes": None}
    if done and all("look" in s for s in done) and mems[0].get("device") == "cpu":
        # a sequential run's later looks run in a process that has loaded and freed every model once per look, and a
        # process RSS keeps part of that (smollm2: 753 MiB at its first look, 1,621 MiB at its sixth): the first look's peak
        memory = {**mems[0], "basis": "first look (process RSS grows as models are reloaded)"}
    energies = [s.get("energy") or {} for s in sessions if s.get("n")]
    if energies and all(e.get("joules") is not None for e in energies):
        methods = sorted({str(e.get("method")) for e in energies})
        energy: EnergyTotal = {
            "joules": sum(e["joules"] for e in energies),
            "method": "+".join(methods),
            "scope": energies[0].get("scope", ""),
        }
    else:
        energy = {"joules": None, "method": None, "scope": ""}
    # the items and tokens the sessions timed: fewer than the records where a killed session never wrote its time
    timed = (
        {k: sum(int(s[k]) for s in sessions) for k in ("n", "input_tokens", "output_tokens")}
        if sessions and all("input_tokens" in s for s in sessions)
        else None
    )
    return {"wall_s": wall, "memory": memory, "energy": energy, "sessions": len(sessions), "timed": timed}


def task_identity(task: Any, samples: Sequence[Any], num_fewshot: Optional[int], chat_template: bool) -> dict[str, Any]:
    """The task part of a key: its definition, a hash of its data, the selected items, prompting settings."""

    return {
        **task_fingerprint(task),
        "sample_ids": [s.id for s in samples],
        "num_fewshot": task.spec.num_fewshot if num_fewshot is None else num_fewshot,
        "chat_template": chat_template,
    }
