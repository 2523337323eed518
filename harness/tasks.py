"""Task definitions: a YAML (what to ask, how to score) + a JSONL or CSV data file.

A task file under ``tasks/`` looks like::

    name: seed_claims
    type: classification          # or summarization
    data: data/seed_claims.jsonl  # relative to this YAML; .jsonl, .csv or .tsv
    prompt: "Evidence: {evidence}\\nClaim: {claim}\\nAnswer:"
    labels: {supported: supported, contradicted: contradicted, not_mentioned: not mentioned}

In a CSV/TSV file the header names the columns the prompt, ``label_field``,
``reference_fields``, ``id_field`` and ``split_field`` refer to; every value is
a string.

Every problem (missing file, bad YAML, unknown key, a data line without a
field the prompt needs, a label outside the label set) is a ``TaskFileError``
naming the file and line.

``resolve_task`` also reads tasks from other sources, by prefix:
``bigbench:<path>`` (harness.sources.bigbench) and ``lmeval:<task>``
(harness.sources.lmeval_tasks); a plain name is a YAML task under ``tasks/``.
"""
from __future__ import annotations

import csv
import json
import random
import string
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from harness.errors import TaskFileError


class TaskType(str, Enum):
    classification = "classification"  # log-likelihood of each label's verbalization
    summarization = "summarization"  # greedy generation scored with ROUGE


@dataclass
class TaskSpec:
    """The schema of a task YAML."""

    name: str = MISSING
    type: TaskType = MISSING
    data: str = MISSING  # JSONL file, relative to the YAML
    prompt: str = MISSING  # str.format template over the item's fields
    description: str = ""
    system_prompt: Optional[str] = None
    id_field: str = "id"
    split_field: Optional[str] = "split"  # None: every row is scored
    eval_split: str = "test"
    fewshot_split: str = "fewshot"  # rows used only as in-context examples, never scored
    num_fewshot: int = 0
    fewshot_delimiter: str = "\n\n"
    target_delimiter: str = " "  # between prompt and answer; "" under a chat template
    metadata_fields: list[str] = field(default_factory=list)  # copied into each record
    breakdown_fields: list[str] = field(default_factory=list)  # report quality per value (e.g. lang)
    consistency_field: Optional[str] = None  # items sharing this value ask the same fact (e.g. across languages)
    # classification
    label_field: str = "label"
    labels: dict[str, str] = field(default_factory=dict)  # label -> verbalization scored
    # summarization
    reference_fields: list[str] = field(default_factory=lambda: ["reference"])
    max_new_tokens: int = 64
    stop: list[str] = field(default_factory=list)  # the output is cut at the first of these
    key_facts_field: Optional[str] = None  # a list of facts per item -> key-fact recall
    key_fact_min_share: float = 0.5  # share of a fact's words that must appear (numbers always must)


@dataclass
class Sample:
    """One scored item: its fields, its gold answer and where it came from."""

    id: str
    fields: dict[str, Any]
    target: Any  # a label (classification) or a list of reference texts (summarization)
    line: int  # 1-based line in the data file (the item's number where a source has no lines)
    # Sources whose prompt and answers vary per item (BIG-bench, lm-eval multiple choice):
    prompt: Optional[str] = None  # the rendered item text, used instead of spec.prompt
    choices: Optional[list[str]] = None  # texts scored for this item; target is then the gold text

    def metadata(self, names: list[str]) -> dict[str, Any]:
        return {n: self.fields.get(n) for n in names}


@dataclass
class Task:
    spec: TaskSpec
    path: Path  # the YAML
    data_path: Path
    samples: list[Sample]  # the eval split, file order
    fewshot: list[Sample]
    source: dict[str, Any] = field(default_factory=dict)  # where a non-YAML task came from, and its options (plan.json)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def type(self) -> TaskType:
        return TaskType(self.spec.type)


def _template_fields(template: str) -> set[str]:
    return {name.split(".")[0].split("[")[0] for _, name, _, _ in string.Formatter().parse(template) if name}


def render(template: str, fields: dict[str, Any]) -> str:
    return template.format(**fields)


TaskDirs = Union[Path, Sequence[Path]]


def _dirs(tasks_dirs: TaskDirs) -> list[Path]:
    return [Path(tasks_dirs)] if isinstance(tasks_dirs, (str, Path)) else [Path(d) for d in tasks_dirs]


def available_tasks(tasks_dirs: TaskDirs) -> dict[str, Path]:
    """Task name -> YAML path, for every ``*.yaml`` with a ``name:`` under the directories (the first wins)."""
    found: dict[str, Path] = {}
    for tasks_dir in _dirs(tasks_dirs):
        lmeval_dir = tasks_dir / "lmeval"  # lm-eval task YAMLs (lmeval:<name>), not harness tasks
        for path in sorted(tasks_dir.rglob("*.yaml")):
            if path.is_relative_to(lmeval_dir):
                continue
            try:
                head = OmegaConf.load(path)
            except Exception:  # a malformed file is reported when it is asked for
                found.setdefault(path.stem, path)
                continue
            name = head.get("name") if OmegaConf.is_dict(head) else None
            found.setdefault(str(name) if name else path.stem, path)
    return found


def find_task(name: str, tasks_dirs: TaskDirs) -> Path:
    tasks = available_tasks(tasks_dirs)
    if name not in tasks:
        where = ", ".join(str(d) for d in _dirs(tasks_dirs))
        raise TaskFileError(
            f"unknown task {name!r} (no task YAML with that name under {where})",
            f"use one of: {', '.join(sorted(tasks)) or '(none found)'}",
        )
    return tasks[name]


def load_spec(path: Path) -> TaskSpec:
    if not path.is_file():
        raise TaskFileError(f"task file {path} does not exist", "check the path or the task name")
    try:
        raw = OmegaConf.load(path)
    except Exception as exc:  # yaml.YAMLError carries the line in its message
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise TaskFileError(f"{where}: not valid YAML ({getattr(exc, 'problem', None) or exc})", "fix the YAML syntax") from exc
    try:
        merged = OmegaConf.merge(OmegaConf.structured(TaskSpec), raw)
        spec: TaskSpec = OmegaConf.to_object(merged)  # type: ignore[assignment]
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or getattr(exc, "key", None)
        msg = str(exc).splitlines()[0]
        raise TaskFileError(f"{path}: key {key!r}: {msg}", "see harness.tasks.TaskSpec for the allowed keys and types") from exc
    if spec.type is TaskType.classification and len(spec.labels) < 2:
        raise TaskFileError(f"{path}: a classification task needs at least 2 labels under labels:", "add labels: {label: verbalization, ...}")
    if spec.num_fewshot < 0 or spec.max_new_tokens < 1:
        raise TaskFileError(f"{path}: num_fewshot must be >= 0 and max_new_tokens >= 1", "fix the values")
    return spec


_EXTRA_CELLS = "\x00extra"  # csv.DictReader's key for cells beyond the header


def _read_table(data_path: Path, delimiter: str) -> list[tuple[int, dict[str, Any]]]:
    """CSV/TSV rows by header; a row with too few or too many cells is an error naming its line."""
    rows = []
    with open(data_path, encoding="utf-8-sig", newline="") as fh:  # -sig: spreadsheets write a BOM
        reader = csv.DictReader(fh, delimiter=delimiter, restkey=_EXTRA_CELLS, restval=None)
        try:
            header = reader.fieldnames
            if not header:
                raise TaskFileError(f"{data_path}: empty file (no header line)", "the first line must name the columns")
            if len(set(header)) != len(header) or any(not h.strip() for h in header):
                raise TaskFileError(f"{data_path}:1: column names must be non-empty and unique, got {header}", "fix the header line")
            for row in reader:
                lineno = reader.line_num  # the row's last line (a quoted cell may span lines)
                extra = row.pop(_EXTRA_CELLS, None)
                if all(not (v or "").strip() for v in row.values()) and not extra:
                    continue  # a blank row
                if extra is not None:
                    raise TaskFileError(f"{data_path}:{lineno}: {len(header) + len(extra)} cells but the header has {len(header)} columns",
                                        "fix that line (quote cells that contain the delimiter)")
                missing = [k for k, v in row.items() if v is None]
                if missing:
                    raise TaskFileError(f"{data_path}:{lineno}: missing column(s) {missing} (the line has {len(header) - len(missing)} of {len(header)} cells)",
                                        "fix that line (quote cells that contain the delimiter)")
                rows.append((lineno, dict(row)))
        except csv.Error as exc:
            raise TaskFileError(f"{data_path}:{reader.line_num}: not valid CSV ({exc})", "fix that line") from exc
        except UnicodeDecodeError as exc:
            raise TaskFileError(f"{data_path}:{reader.line_num + 1}: not UTF-8 text ({exc.reason})", "save the file as UTF-8") from exc
    return rows


def _read_rows(data_path: Path, yaml_path: Path) -> list[tuple[int, dict[str, Any]]]:
    if not data_path.is_file():
        raise TaskFileError(f"{yaml_path}: data file {data_path} does not exist", "fix data: (it is relative to the task YAML)")
    suffix = data_path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        rows = _read_table(data_path, "," if suffix == ".csv" else "\t")
        if not rows:
            raise TaskFileError(f"{data_path}: no items", "add one row per item under the header")
        return rows
    rows = []
    with open(data_path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TaskFileError(f"{data_path}:{lineno}: not valid JSON ({exc.msg}, column {exc.colno})", "fix that line") from exc
            if not isinstance(row, dict):
                raise TaskFileError(f"{data_path}:{lineno}: a line must be a JSON object", "fix that line")
            rows.append((lineno, row))
    if not rows:
        raise TaskFileError(f"{data_path}: no items", "add one JSON object per line")
    return rows


def _make_sample(spec: TaskSpec, row: dict[str, Any], lineno: int, data_path: Path, needed: set[str]) -> Sample:
    where = f"{data_path}:{lineno}"
    missing = sorted(f for f in needed if f not in row)
    if missing:
        raise TaskFileError(f"{where}: missing field(s) {missing} used by task {spec.name}", "add them to that line or fix the task's prompt/fields")
    if spec.type is TaskType.classification:
        target = row[spec.label_field]
        if target not in spec.labels:
            raise TaskFileError(f"{where}: label {target!r} is not in the label set {sorted(spec.labels)}", "fix the label or the task's labels:")
    else:
        target = [row[f] for f in spec.reference_fields if row.get(f)]
        if not target:
            raise TaskFileError(f"{where}: no reference text in {spec.reference_fields}", "add a reference")
    sample_id = str(row.get(spec.id_field, f"line{lineno}"))
    return Sample(id=sample_id, fields=row, target=target, line=lineno)


def load_task(path: Path) -> Task:
    """Parse and check a task YAML and its data; nothing is run."""
    spec = load_spec(path)
    data_path = (path.parent / spec.data).resolve()
    needed = _template_fields(spec.prompt) | (_template_fields(spec.system_prompt) if spec.system_prompt else set())
    needed |= {spec.label_field} if spec.type is TaskType.classification else set(spec.reference_fields[:1])
    samples, fewshot, seen = [], [], set()
    for lineno, row in _read_rows(data_path, path):
        sample = _make_sample(spec, row, lineno, data_path, needed)
        if sample.id in seen:
            raise TaskFileError(f"{data_path}:{lineno}: duplicate id {sample.id!r}", "ids must be unique")
        seen.add(sample.id)
        split = row.get(spec.split_field, spec.eval_split) if spec.split_field else spec.eval_split
        if split == spec.eval_split:
            samples.append(sample)
        elif split == spec.fewshot_split:
            fewshot.append(sample)
    if not samples:
        raise TaskFileError(f"{data_path}: no items in split {spec.eval_split!r}", f"set eval_split: or the {spec.split_field!r} field")
    if spec.num_fewshot > len(fewshot):
        raise TaskFileError(f"{path}: num_fewshot={spec.num_fewshot} but only {len(fewshot)} {spec.fewshot_split!r} items", "lower num_fewshot or add examples")
    return Task(spec=spec, path=path, data_path=data_path, samples=samples, fewshot=fewshot)


def resolve_task(name: str, tasks_dirs: TaskDirs, cache_dir: Path, lmeval_include: Optional[Path] = None) -> Task:
    """The task a task-group entry names: ``bigbench:<path>``, ``lmeval:<task>`` or a YAML task under the task directories."""
    from harness import sources

    ref = sources.parse(name)
    if ref is None:
        return load_task(find_task(name, tasks_dirs))
    include = [d / "lmeval" for d in _dirs(tasks_dirs)] + ([lmeval_include] if lmeval_include else [])
    return sources.load(ref, cache_dir, include)


def resolve_tasks(names: list[str], tasks_dirs: TaskDirs, cache_dir: Path, lmeval_include: Optional[Path] = None) -> list[Task]:
    """Every task of a group, in order; external data is fetched first, once for all of them."""
    from harness import sources

    sources.prefetch(names, cache_dir)
    return [resolve_task(name, tasks_dirs, cache_dir, lmeval_include) for name in names]


def select_samples(task: Task, max_samples: Optional[int], seed: int, shuffled: bool = False) -> list[Sample]:
    """A seeded subset (the same for every model given the same seed), in file order; ``shuffled``: the first
    ``max_samples`` of a seeded random order, in that order (a sequential run takes items in it)."""
    if shuffled:
        order = random.Random(f"{seed}:{task.name}:order").sample(range(len(task.samples)), len(task.samples))
        return [task.samples[i] for i in order[:max_samples]]
    if max_samples is None or max_samples >= len(task.samples):
        return list(task.samples)
    rng = random.Random(f"{seed}:{task.name}")  # per task, independent of the task list
    keep = set(rng.sample(range(len(task.samples)), max_samples))
    return [s for i, s in enumerate(task.samples) if i in keep]


def task_fingerprint(task: Task) -> dict[str, Any]:
    """What identifies a task's content, wherever its files live: its definition and hashes of its data.

    The data file's bytes are hashed as the file is (any edit gives new cells);
    the parsed items are hashed too, which covers sources whose items do not
    come from one file (lm-eval's datasets). Paths are left out, so a store
    shared by machines with different checkouts or caches finds the same cells.
    """
    import hashlib
    from dataclasses import asdict

    spec = {k: (v.value if isinstance(v, Enum) else v) for k, v in asdict(task.spec).items() if k != "data"}
    items = [[s.id, s.fields, s.target, s.prompt, s.choices] for s in [*task.samples, *task.fewshot]]
    data_sha = None
    if task.data_path.is_file():
        digest = hashlib.sha256()
        with open(task.data_path, "rb") as fh:
            while chunk := fh.read(1 << 22):
                digest.update(chunk)
        data_sha = digest.hexdigest()
    return {
        "name": task.name,
        "spec": spec,
        "data_sha256": data_sha,
        "items_sha256": hashlib.sha256(json.dumps(items, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest(),
        "source": {k: v for k, v in task.source.items() if k not in ("truncated_items", "yaml")},  # paths and derived counts left out
    }
