"""Source ``lmeval:<task>``: any lm-eval task, run through the harness's own model and measurement code.

lm-eval's task registry supplies the documents, the prompt (``doc_to_text``,
description, the task's own few-shot setting with lm-eval's fixed seed), the
choices, the gold answer and the target delimiter; the harness scores them,
so every lm-eval task also gets latency, tokens and memory per item. Prompts
are built with lm-eval's own ``fewshot_context``, without a chat template, so
``runtime.chat_template=false`` reproduces ``lm_eval.simple_evaluate``'s
accuracy (tests/test_lmeval_tasks.py checks it); with a chat template the same
text becomes the user turn, as for every harness task.

- ``multiple_choice`` -> classification over each document's own choices
  (accuracy: lm-eval's ``acc``; the gold answer is the first one when a
  document has several);
- ``generate_until`` -> generation scored with ROUGE against ``doc_to_target``
  (not the task's own metric), stopping at its ``until`` strings after at most
  ``max_gen_toks`` tokens (``?max_new_tokens=N`` overrides);
- other output types (log-likelihood, perplexity) and multiple-input tasks
  (Winogrande-style) are refused with a clear error.

Tasks are looked up first in the local include paths (``tasks/lmeval/`` and
``paths.lmeval_include_path``), then in lm-eval's built-in registry (indexing
it takes about 15 s). Built-in tasks download their data from the Hugging Face
hub; a task YAML over local files (``dataset_path: json``,
``dataset_kwargs: {data_files: {test: /abs/path.jsonl}}``) runs offline.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from harness.errors import TaskFileError
from harness.tasks.sources import SourceRef
from harness.tasks.types import Sample, Task, TaskSpec, TaskType

FEWSHOT_SEED = 1234  # lm_eval.simple_evaluate's default fewshot_random_seed


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _manager(name: str, include: Sequence[Path]) -> Any:
    """A TaskManager that knows ``name``: the local include paths alone when they have it (fast)."""
    from lm_eval.tasks import TaskManager

    paths = [str(p) for p in include if Path(p).is_dir()]
    if paths:
        local = TaskManager(include_path=paths, include_defaults=False)
        if name in local.all_tasks:
            return local
    full = TaskManager(include_path=paths or None)
    if name not in full.all_tasks:
        close = difflib.get_close_matches(name, full.all_tasks, n=5, cutoff=0.6)
        hint = (
            ("close matches: " + ", ".join(f"lmeval:{c}" for c in close))
            if close
            else "list them with: lm_eval ls tasks"
        )
        where = f" or under {', '.join(paths)}" if paths else ""
        raise TaskFileError(
            f"unknown lm-eval task {name!r} (not in lm-eval's registry{where})",
            hint + "; local task YAMLs go in tasks/lmeval/ or paths.lmeval_include_path",
        )
    return full


def _build(name: str, include: Sequence[Path]) -> tuple[Any, Path | None]:
    manager = _manager(name, include)
    entry = manager.task_index.get(name)
    yaml_path = Path(entry.yaml_path) if entry is not None and getattr(entry, "yaml_path", None) else None
    where = str(yaml_path) if yaml_path else f"lm-eval task {name}"
    quiet = logging.getLogger("lm_eval")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:  # the harness has its own progress display
        from datasets.utils.logging import disable_progress_bar

        disable_progress_bar()
    except ImportError:
        pass
    try:
        loaded = manager.load([name])
    except Exception as exc:  # lm-eval and datasets raise anything (bad YAML, no hub, bad data file)
        raise TaskFileError(
            f"{where}: lm-eval could not build task {name} ({_first_line(exc)})",
            "check the task YAML and its data (built-in tasks download their data from the Hugging Face hub)",
        ) from exc
    finally:
        quiet.setLevel(level)
    tasks = loaded["tasks"]
    if len(tasks) != 1 or loaded.get("groups"):
        raise TaskFileError(
            f"lm-eval name {name!r} is a group of {len(tasks)} tasks",
            "name one task: " + ", ".join(f"lmeval:{t}" for t in sorted(tasks)[:12]),
        )
    return next(iter(tasks.values())), yaml_path


@dataclass(frozen=True)
class _Plan:
    """What the harness takes from an lm-eval task's config: how it prompts, and where generation stops."""

    name: str
    where: str
    yaml_path: Path | None
    output: str
    num_fewshot: int
    until: list[str]
    max_new: int


def _check_output_type(task: Any, name: str) -> None:
    """Refuse the output types and multiple-input tasks the harness has no task type for."""
    output = task.OUTPUT_TYPE
    if output not in ("multiple_choice", "generate_until"):
        raise TaskFileError(
            f"lm-eval task {name} has output_type {output}",
            "only multiple_choice (-> classification) and generate_until (-> generation) tasks can run",
        )
    if getattr(task, "multiple_input", 0):
        raise TaskFileError(
            f"lm-eval task {name} puts its choices in the context (multiple inputs)",
            "such tasks (Winogrande-style) cannot run through the harness",
        )


def _plan(task: Any, ref: SourceRef, yaml_path: Path | None, where: str) -> _Plan:
    """Fix lm-eval's few-shot seed and read the prompting and stopping settings, as lm_eval.simple_evaluate would."""
    cfg = task.config
    num_fewshot = cfg.num_fewshot or 0
    task.set_fewshot_seed(seed=FEWSHOT_SEED)
    gen_kwargs = dict(cfg.generation_kwargs or {})
    until = gen_kwargs.get("until") or [cfg.fewshot_delimiter]
    until = [until] if isinstance(until, str) else list(until)
    max_new = ref.options.get("max_new_tokens", int(gen_kwargs.get("max_gen_toks", 256)))
    return _Plan(ref.ref, where, yaml_path, task.OUTPUT_TYPE, num_fewshot, until, max_new)


def _eval_docs(task: Any, plan: _Plan) -> list[Any]:
    """The task's evaluation documents, or a task-file error naming why lm-eval has none."""
    try:
        return list(task.eval_docs)
    except Exception as exc:
        raise TaskFileError(
            f"{plan.where}: lm-eval task {plan.name} has no evaluation documents ({_first_line(exc)})",
            "give it a test_split or validation_split",
        ) from exc


def _render(task: Any, plan: _Plan, doc_id: int, doc: Any) -> tuple[str, Any, list[str] | None]:
    """lm-eval's own prompt, target and choices for one document, so its accuracy is reproduced."""
    try:
        ctx = task.fewshot_context(doc, num_fewshot=plan.num_fewshot, gen_prefix=task.doc_to_prefix(doc))
        target = task.doc_to_target(doc)
        choices = (
            [str(c) for c in task.doc_to_choice(doc)]
            if plan.output == "multiple_choice" or task.config.doc_to_choice
            else None
        )
    except Exception as exc:
        raise TaskFileError(
            f"{plan.where}: document {doc_id}: lm-eval could not render it ({_first_line(exc)})",
            "check doc_to_text/doc_to_target/doc_to_choice against the data",
        ) from exc
    if not isinstance(ctx, str):
        raise TaskFileError(
            f"lm-eval task {plan.name} builds several contexts per document",
            "such tasks cannot run through the harness",
        )
    return ctx, target, choices


def _gold_choice(plan: _Plan, doc_id: int, target: Any, choices: list[str]) -> str:
    """The gold answer among a document's choices, read as lm-eval reads it."""
    gold = target[0] if isinstance(target, list) else target  # several golds: the first
    # an int is an index, a string must be one of the choices
    index = gold if isinstance(gold, int) else choices.index(gold) if isinstance(gold, str) and gold in choices else -1
    if not 0 <= index < len(choices):
        raise TaskFileError(
            f"{plan.where}: document {doc_id}: target {gold!r} is not one of its {len(choices)} choices",
            "fix doc_to_target or doc_to_choice",
        )
    return choices[index]


def _sample(task: Any, plan: _Plan, doc_id: int, doc: Any) -> Sample:
    """One evaluation document as a harness sample: a classification over its choices, or a generation."""
    ctx, target, choices = _render(task, plan, doc_id, doc)
    fields = dict(doc) if isinstance(doc, dict) else {"doc": doc}
    if plan.output == "multiple_choice":
        assert choices is not None
        gold = _gold_choice(plan, doc_id, target, choices)
        return Sample(id=str(doc_id), fields=fields, target=gold, line=doc_id + 1, prompt=ctx, choices=choices)
    if isinstance(target, int) and choices:
        target = choices[target]
    refs = [str(t) for t in target] if isinstance(target, list) else [str(target)]
    return Sample(id=str(doc_id), fields=fields, target=refs, line=doc_id + 1, prompt=ctx)


def _task(ref: SourceRef, task: Any, plan: _Plan, samples: list[Sample]) -> Task:
    """The harness task over the rendered samples, with the lm-eval settings recorded as its source."""
    cfg = task.config
    kind = TaskType.classification if plan.output == "multiple_choice" else TaskType.summarization
    spec = TaskSpec(
        name=ref.task_name,
        type=kind,
        data=str(plan.yaml_path or plan.name),
        prompt="{doc}",  # each sample carries lm-eval's rendered context
        description=str(cfg.description or ""),
        split_field=None,
        target_delimiter=str(cfg.target_delimiter),
        max_new_tokens=plan.max_new,
        stop=plan.until,
    )
    source = {
        "source": "lmeval",
        "task": plan.name,
        "yaml": str(plan.yaml_path) if plan.yaml_path else None,
        "output_type": plan.output,
        "num_fewshot": plan.num_fewshot,
        **({"max_new_tokens": plan.max_new, "until": plan.until} if kind is TaskType.summarization else {}),
    }
    path = plan.yaml_path or Path(plan.name)
    return Task(spec=spec, path=path, data_path=path, samples=samples, fewshot=[], source=source)


def load(ref: SourceRef, cache: Optional[Path] = None, include: Sequence[Path] = ()) -> Task:
    """Build the lm-eval task and turn every evaluation document into a harness sample."""
    from lm_eval.api.task import ConfigurableTask

    name = ref.ref
    task, yaml_path = _build(name, include)
    where = str(yaml_path) if yaml_path else f"lm-eval task {name}"
    if not isinstance(task, ConfigurableTask):
        raise TaskFileError(
            f"lm-eval task {name} is a Python task class",
            "only YAML-configured lm-eval tasks can run through the harness",
        )
    _check_output_type(task, name)
    plan = _plan(task, ref, yaml_path, where)
    samples = [_sample(task, plan, doc_id, doc) for doc_id, doc in enumerate(_eval_docs(task, plan))]
    if not samples:
        raise TaskFileError(
            f"{where}: lm-eval task {name} has no evaluation documents", "check its data files and splits"
        )
    return _task(ref, task, plan, samples)
