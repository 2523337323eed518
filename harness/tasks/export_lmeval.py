"""Export harness tasks as lm-eval task YAMLs (local JSON data), so lm-eval runs them too.

``harness export-lmeval OUT_DIR [TASK ...]`` writes, per task, ``<task>.jsonl``
(the scored items) and ``<task>.yaml``; then
``lm_eval --model hf --model_args pretrained=... --include_path OUT_DIR --tasks seed_claims``.
Classification becomes ``multiple_choice`` scored exactly as the harness
scores it (same prompt, same choices, same target delimiter); summarization
becomes ``generate_until`` with a small ``utils.py`` that computes ROUGE and
key-fact recall with the harness's own metric code.
"""

from __future__ import annotations

import json
import re
import string
from pathlib import Path
from typing import Any

import yaml

from harness.tasks.types import Task, TaskType

_UTILS = '''"""Scoring hooks for the exported summarization tasks (written by harness export-lmeval)."""
from harness.tasks.metrics import key_fact_recall, rouge


def process_results(doc, results):
    prediction = results[0].strip()
    refs = [doc[f] for f in REFERENCE_FIELDS.get(doc["_task"], ["reference"]) if doc.get(f)]
    scores = rouge(prediction, refs)
    facts = doc.get("key_facts")
    if facts:
        scores["key_fact_recall"] = key_fact_recall(prediction, facts)
    return scores


REFERENCE_FIELDS = {reference_fields}
'''


def to_jinja(template: str) -> str:
    """A ``str.format`` template as the equivalent Jinja template (literal braces kept literal)."""
    out = []
    for literal, name, spec, conv in string.Formatter().parse(template):
        if literal:
            out.append(literal if not any(c in literal for c in "{}%#") else "{{ " + json.dumps(literal) + " }}")
        if name is not None:
            cut = re.fullmatch(r"\.(\d+)", spec or "")
            if (spec and not cut) or conv:
                raise ValueError(f"format spec in {{{name}:{spec}}} cannot be exported to Jinja")
            # "{text:.1500}" (the first 1,500 characters of a string) is a slice in Jinja
            out.append("{{" + name + (f"[:{cut.group(1)}]" if cut else "") + "}}")
    return "".join(out)


def _task_yaml(task: Task, data_file: Path) -> dict[str, Any]:
    spec = task.spec
    prompt = spec.prompt if not spec.system_prompt else spec.system_prompt + spec.fewshot_delimiter + spec.prompt
    doc: dict[str, Any] = {
        "task": spec.name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data_file.resolve())}},
        "test_split": "test",
        "doc_to_text": "{{_prompt}}" if any(s.prompt is not None for s in task.samples) else to_jinja(prompt),
        "target_delimiter": spec.target_delimiter,
        "fewshot_delimiter": spec.fewshot_delimiter,
        "metadata": {"version": 1.0, "source": f"small-vs-large harness task {spec.name}"},
    }
    if task.type is TaskType.classification and any(s.choices is not None for s in task.samples):
        doc.update(  # choices of their own per item (BIG-bench, lm-eval sources): carried in the data file
            output_type="multiple_choice",
            doc_to_choice="{{_choices}}",
            doc_to_target="{{_gold}}",
            metric_list=[{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        )
    elif task.type is TaskType.classification:
        labels = list(spec.labels)
        doc.update(
            output_type="multiple_choice",
            doc_to_choice=[spec.labels[label] for label in labels],
            doc_to_target="{{ " + json.dumps(labels) + ".index(" + spec.label_field + ") }}",
            metric_list=[{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        )
    else:
        doc.update(
            output_type="generate_until",
            doc_to_target="{{" + spec.reference_fields[0] + "}}",
            generation_kwargs={
                "until": list(spec.stop) or ["\n\n"],
                "max_gen_toks": spec.max_new_tokens,
                "do_sample": False,
            },
            process_results="!function utils.process_results",
            metric_list=[
                {"metric": m, "aggregation": "mean", "higher_is_better": True}
                for m in ("rouge1", "rouge2", "rougeL", *(["key_fact_recall"] if spec.key_facts_field else []))
            ],
        )
    return doc


class _FunctionTag(str):
    pass


def _represent_function(dumper: yaml.SafeDumper, value: _FunctionTag) -> yaml.ScalarNode:
    return dumper.represent_scalar("!function", value.removeprefix("!function "))


def export_tasks(tasks: list[Task], out_dir: Path) -> list[Path]:
    """Write ``<task>.yaml`` + ``<task>.jsonl`` per task into ``out_dir``; returns the YAML paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    dumper = yaml.SafeDumper
    dumper.add_representer(_FunctionTag, _represent_function)
    written = []
    reference_fields = {}
    for task in tasks:
        data_file = out_dir / f"{task.name}.jsonl"
        with open(data_file, "w", encoding="utf-8") as fh:
            for sample in task.samples:
                extra = (
                    {"_choices": sample.choices, "_gold": sample.choices.index(sample.target)}
                    if sample.choices is not None
                    else {}
                )
                if sample.prompt is not None:  # rendered by its source (BIG-bench prefixes): lm-eval gets the same text
                    extra["_prompt"] = sample.prompt
                fh.write(json.dumps({**sample.fields, **extra, "_task": task.name}, ensure_ascii=False) + "\n")
        doc = _task_yaml(task, data_file)
        if "process_results" in doc:
            doc["process_results"] = _FunctionTag(doc["process_results"])
            reference_fields[task.name] = list(task.spec.reference_fields)
        path = out_dir / f"{task.name}.yaml"
        path.write_text(yaml.dump(doc, Dumper=dumper, allow_unicode=True, sort_keys=False), encoding="utf-8")
        written.append(path)
    if reference_fields:
        (out_dir / "utils.py").write_text(
            _UTILS.replace("{reference_fields}", repr(reference_fields)), encoding="utf-8"
        )
    return written
