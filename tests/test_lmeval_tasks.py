"""lm-eval tasks by name: built from lm-eval's registry over local files, scored by the harness,
and equal to what ``lm_eval.simple_evaluate`` reports on the same model, items and prompt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT

from harness.config.schema import RuntimeConfig
from harness.engines.hf import HFEngine
from harness.errors import TaskFileError
from harness.results.records import RecordWriter, read_records
from harness.run.evaluate import evaluate_task
from harness.tasks.resolve import resolve_task
from harness.tasks.types import TaskType

DOCS = PROJECT_ROOT / "tests" / "fixtures" / "lmeval_docs.jsonl"
TASKS_DIR = PROJECT_ROOT / "tasks"

MC_YAML = """task: fixture_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {docs}
test_split: test
output_type: multiple_choice
description: "Answer the question.\\n\\n"
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_choice: choices
doc_to_target: label
metric_list:
  - metric: acc
metadata:
  version: 1.0
"""

GEN_YAML = """task: fixture_gen
dataset_path: json
dataset_kwargs:
  data_files:
    test: {docs}
test_split: test
output_type: generate_until
doc_to_text: "Complete: {{{{question}}}}"
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until: ["\\n", "."]
  max_gen_toks: 5
metadata:
  version: 1.0
"""


def write_task(directory: Path, name: str, text: str, docs: Path = DOCS) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.yaml"
    path.write_text(text.format(docs=docs), encoding="utf-8")
    return directory


@pytest.fixture
def include(tmp_path: Path) -> Path:
    inc = write_task(tmp_path / "lmeval_tasks", "fixture_mc", MC_YAML)
    write_task(inc, "fixture_gen", GEN_YAML)
    return inc


def test_multiple_choice_task_has_per_item_choices(include, tmp_path):
    task = resolve_task("lmeval:fixture_mc", TASKS_DIR, tmp_path / "cache", include)
    assert task.name == "lmeval-fixture_mc" and task.type is TaskType.classification
    docs = [json.loads(line) for line in DOCS.read_text().splitlines()]
    assert [s.id for s in task.samples] == [str(i) for i in range(len(docs))]  # lm-eval's doc ids
    for sample, doc in zip(task.samples, docs):
        assert sample.prompt == f"Answer the question.\n\nQuestion: {doc['question']}\nAnswer:"
        assert sample.choices == doc["choices"] and sample.target == doc["choices"][doc["label"]]
    assert task.spec.target_delimiter == " "
    assert task.source == {
        "source": "lmeval",
        "task": "fixture_mc",
        "yaml": str(include / "fixture_mc.yaml"),
        "output_type": "multiple_choice",
        "num_fewshot": 0,
    }


def test_generate_until_task_becomes_generation(include, tmp_path):
    task = resolve_task("lmeval:fixture_gen", TASKS_DIR, tmp_path / "cache", include)
    assert task.type is TaskType.summarization
    assert task.spec.stop == ["\n", "."] and task.spec.max_new_tokens == 5
    assert task.samples[0].prompt == "Complete: The capital of France is" and task.samples[0].target == ["Paris"]
    assert (
        resolve_task("lmeval:fixture_gen?max_new_tokens=2", TASKS_DIR, tmp_path / "cache", include).spec.max_new_tokens
        == 2
    )


def test_harness_accuracy_equals_lm_eval_on_a_task_loaded_by_name(include, tiny_llama, tmp_path):
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    task = resolve_task("lmeval:fixture_mc", TASKS_DIR, tmp_path / "cache", include)
    runtime = RuntimeConfig(device="cpu", dtype="float32", chat_template=False, warmup_steps=0, batch_size=4)
    with RecordWriter(tmp_path / "records.jsonl") as writer:
        evaluate_task(HFEngine(tiny_llama), task, task.samples, runtime, writer)
    records = read_records(tmp_path / "records.jsonl")
    ours = sum(r.scores["correct"] for r in records) / len(records)

    lm = HFLM(pretrained=tiny_llama.model, tokenizer=tiny_llama.tokenizer, batch_size=4)
    out = simple_evaluate(
        model=lm,
        tasks=["fixture_mc"],
        task_manager=TaskManager(include_path=str(include), include_defaults=False),
        log_samples=True,
        bootstrap_iters=0,
    )
    assert out["results"]["fixture_mc"]["acc,none"] == pytest.approx(ours, abs=1e-9)
    by_id = {r.sample_id: r for r in records}
    samples = out["samples"]["fixture_mc"]
    assert len(samples) == len(records)
    for s in samples:
        mine = by_id[str(s["doc_id"])]
        assert [float(r[0]) for r in s["filtered_resps"]] == pytest.approx(mine.details["logliks"], abs=1e-4)
        assert s["acc"] == mine.scores["correct"]


def test_include_path_setting_reaches_the_plan(include, tmp_path):
    from omegaconf import OmegaConf

    from harness.config.schema import compose
    from harness.run.setup import prepare

    cfg = compose(
        [
            "pair=tiny",
            "task.name=lm",
            "task.tasks=[lmeval:fixture_mc,lmeval:fixture_gen]",
            f"paths.lmeval_include_path={include}",
            f"paths.cache_dir={tmp_path / 'cache'}",
            "runtime.max_samples=3",
        ]
    )
    the_plan = prepare(OmegaConf.to_object(cfg))
    assert [(t.name, len(s)) for t, s in the_plan.tasks] == [("lmeval-fixture_mc", 3), ("lmeval-fixture_gen", 3)]


def test_task_yamls_in_tasks_lmeval_are_found_and_not_harness_tasks(tmp_path):
    from harness.tasks.local import available_tasks

    tasks_dir = tmp_path / "tasks"
    write_task(tasks_dir / "lmeval", "fixture_mc", MC_YAML)
    assert "fixture_mc" not in available_tasks(tasks_dir)
    assert len(resolve_task("lmeval:fixture_mc", tasks_dir, tmp_path / "cache").samples) == 10


def test_bad_data_file_names_the_task_yaml(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "choices": ["a", "b"], "label": 0}\n{"question": \n')
    inc = write_task(tmp_path / "inc", "fixture_bad", MC_YAML.replace("fixture_mc", "fixture_bad"), docs=bad)
    with pytest.raises(TaskFileError, match=r"fixture_bad\.yaml: lm-eval could not build task fixture_bad"):
        resolve_task("lmeval:fixture_bad", TASKS_DIR, tmp_path / "cache", inc)


def test_target_outside_the_choices_names_the_document(tmp_path):
    docs = tmp_path / "docs.jsonl"
    docs.write_text(
        '{"question": "q", "choices": ["a", "b"], "label": 0}\n{"question": "r", "choices": ["a", "b"], "label": 5}\n'
    )
    inc = write_task(tmp_path / "inc", "fixture_mc", MC_YAML, docs=docs)
    with pytest.raises(TaskFileError, match=r"fixture_mc\.yaml: document 1: target 5 is not one of its 2 choices"):
        resolve_task("lmeval:fixture_mc", TASKS_DIR, tmp_path / "cache", inc)


def test_unsupported_output_type_is_refused(tmp_path):
    text = (
        MC_YAML.replace("output_type: multiple_choice", "output_type: loglikelihood")
        .replace("doc_to_choice: choices\n", "")
        .replace("doc_to_target: label", "doc_to_target: answer")
    )
    inc = write_task(tmp_path / "inc", "fixture_mc", text)
    with pytest.raises(TaskFileError, match="has output_type loglikelihood"):
        resolve_task("lmeval:fixture_mc", TASKS_DIR, tmp_path / "cache", inc)


def test_unknown_task_lists_close_matches(include, tmp_path):
    """Not in the include path: lm-eval's whole registry is searched (about 15 s), then close names are suggested."""
    with pytest.raises(TaskFileError, match=r"unknown lm-eval task 'fixture_mcq'.*close matches: lmeval:fixture_mc"):
        resolve_task("lmeval:fixture_mcq", TASKS_DIR, tmp_path / "cache", include)
