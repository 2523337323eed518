"""Out of memory during a batch: halve and retry down to 1, record what happened, never drop an item silently.

The allocation failure is injected into the real transformers engine (torch's own OutOfMemoryError,
raised before the forward pass when a batch is too large or holds a chosen item); everything else is real.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from conftest import PROJECT_ROOT

from harness.config.schema import RuntimeConfig
from harness.engines.hf import HFEngine
from harness.results.records import RecordWriter, SampleRecord, read_records
from harness.run.evaluate import evaluate_task, is_out_of_memory
from harness.tasks.local import find_task, load_task

OOM = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError


class TightMemory(HFEngine):
    """The tiny Llama, with an allocator that fails above ``max_batch`` prompts or on prompts containing ``poison``."""

    def __init__(self, lm, max_batch: int = 1 << 30, poison: str | None = None) -> None:
        super().__init__(lm)
        self.max_batch, self.poison, self.sizes = max_batch, poison, []

    def _check(self, prompts) -> None:
        self.sizes.append(len(prompts))
        if len(prompts) > self.max_batch or (self.poison and any(self.poison in p.text for p in prompts)):
            raise OOM("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")

    def loglikelihood(self, prompts, choices):
        self._check(prompts)
        return super().loglikelihood(prompts, choices)

    def generate_until(self, prompts, max_new_tokens, stops, min_new_tokens=0):
        self._check(prompts)
        return super().generate_until(prompts, max_new_tokens, stops, min_new_tokens)


def _run(engine, task, batch_size: int, path: Path):
    rt = RuntimeConfig(device="cpu", dtype="float32", batch_size=batch_size, warmup_steps=0, chat_template=False)
    with RecordWriter(path) as writer:
        *_, pressure = evaluate_task(engine, task, task.samples, rt, writer)
    return read_records(path), pressure


def test_oom_halves_the_batch_and_keeps_every_item(tiny_llama, tmp_path):
    task = load_task(find_task("smoke_classify", PROJECT_ROOT / "tasks"))
    reference, _ = _run(HFEngine(tiny_llama), task, 1, tmp_path / "ref.jsonl")
    engine = TightMemory(tiny_llama, max_batch=2)
    records, pressure = _run(engine, task, 8, tmp_path / "oom.jsonl")
    assert pressure.oom_events == 2 and pressure.final_batch_size == 2 and not pressure.failed_ids  # 8 -> 4 -> 2
    assert engine.sizes[:3] == [6, 4, 2] and max(engine.sizes[3:]) == 2  # the smaller size is kept afterwards
    # batches are sorted longest first; every item is there once, with the prediction it gets alone
    assert sorted((r.sample_id, r.prediction) for r in records) == sorted(
        (r.sample_id, r.prediction) for r in reference
    )
    assert {r.batch_size for r in records} == {2}


def test_an_item_that_fails_alone_is_counted_not_recorded(tiny_llama, tmp_path):
    task = load_task(find_task("smoke_classify", PROJECT_ROOT / "tasks"))
    victim = task.samples[3]
    poison = next(v for v in victim.fields.values() if isinstance(v, str) and len(v) > 10)
    records, pressure = _run(TightMemory(tiny_llama, poison=poison), task, 4, tmp_path / "r.jsonl")
    assert pressure.failed_ids == [victim.id] and pressure.final_batch_size == 1
    assert sorted(r.sample_id for r in records) == sorted(s.id for s in task.samples if s.id != victim.id)


def test_other_errors_are_not_taken_for_oom():
    assert is_out_of_memory(OOM("CUDA out of memory")) and is_out_of_memory(MemoryError())
    assert is_out_of_memory(RuntimeError("MPS backend out of memory"))
    assert not is_out_of_memory(RuntimeError("shape mismatch")) and not is_out_of_memory(ValueError("out of memory"))


def test_partial_cell_is_reported_and_retried(tmp_path, monkeypatch):
    """A failed item makes the cell partial: shown in the report and C10, then computed by the next run."""
    from harness.config.schema import compose
    from harness.run.runner import run_experiment

    task = load_task(find_task("smoke_classify", PROJECT_ROOT / "tasks"))
    poison = next(v for v in task.samples[2].fields.values() if isinstance(v, str) and len(v) > 10)
    original = HFEngine.loglikelihood

    def failing(self, prompts, choices):
        if self.model_name == "tiny_olmoe" and any(poison in p.text for p in prompts):
            raise OOM("CUDA out of memory (injected)")
        return original(self, prompts, choices)

    overrides = [
        "pair=tiny",
        "task=smoke",
        "task.tasks=[smoke_classify]",
        "runtime.dtype=float32",
        "runtime.batch_size=2",
        "runtime.progress=false",
        "print_report=false",
        f"paths.store_dir={tmp_path / 'cells'}",
    ]
    monkeypatch.setattr(HFEngine, "loglikelihood", failing)
    run_experiment(compose(overrides), tmp_path / "run1")
    summary = json.loads((tmp_path / "run1" / "summary.json").read_text())
    cell = summary["tasks"]["smoke_classify"]["results"]["tiny_olmoe"]["cell"]
    assert cell["failed_ids"] == [task.samples[2].id] and cell["oom_events"] == 2 and cell["final_batch_size"] == 1
    assert summary["tasks"]["smoke_classify"]["results"]["tiny_olmoe"]["n"] == len(task.samples) - 1
    report = (tmp_path / "run1" / "report.md").read_text()
    assert "1 item(s) failed (retried by the next run)" in report and "2 time(s), batch size -> 1" in report
    c10 = next(v for v in json.loads((tmp_path / "run1" / "claims.json").read_text())["verdicts"] if v["id"] == "C10")
    assert c10["verdict"] == "refuted" and "1 failed out of memory" in c10["sentence"]

    monkeypatch.setattr(HFEngine, "loglikelihood", original)  # memory is back
    run_experiment(compose(overrides), tmp_path / "run2")
    cells = {c["model"]: c["status"] for c in json.loads((tmp_path / "run2" / "cells.json").read_text())["cells"]}
    assert cells == {"tiny_olmoe": "resumed", "tiny_llama": "reused"}
    summary = json.loads((tmp_path / "run2" / "summary.json").read_text())
    assert summary["tasks"]["smoke_classify"]["results"]["tiny_olmoe"]["n"] == len(task.samples)


def test_prompts_longer_than_the_context_window_are_cut_from_the_left(tmp_path):
    """A 64-position model: long prompts lose their start, the record says so, the report counts them."""
    from harness.config.schema import ModelConfig, ModelSource, RandomInitConfig
    from harness.models import load_model

    small_window = ModelConfig(
        name="short_llama",
        source=ModelSource.random,
        random=RandomInitConfig(
            config_class="LlamaConfig",
            config={
                "vocab_size": 49152,
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "num_key_value_heads": 2,
                "max_position_embeddings": 64,
                "bos_token_id": 1,
                "eos_token_id": 2,
                "pad_token_id": 2,
            },
        ),
    )
    rt = RuntimeConfig(device="cpu", dtype="float32", batch_size=2, warmup_steps=0, chat_template=False)
    engine = HFEngine(load_model(small_window, rt))
    for name in ("smoke_classify", "smoke_summarize"):
        task = load_task(find_task(name, PROJECT_ROOT / "tasks"))
        for s in task.samples:  # make every prompt far longer than 64 tokens
            s.fields = {
                k: (
                    v + " and more words" * 40
                    if isinstance(v, str) and k not in ("label", "reference", "id", "split")
                    else v
                )
                for k, v in s.fields.items()
            }
        with RecordWriter(tmp_path / f"{name}.jsonl") as writer:
            evaluate_task(engine, task, task.samples, rt, writer)
        records = read_records(tmp_path / f"{name}.jsonl")
        assert len(records) == len(task.samples)
        for r in records:
            assert r.truncated and r.tokens_dropped > 0
            limit = 64 - (task.spec.max_new_tokens if name == "smoke_summarize" else 1)
            assert r.input_tokens <= limit


def test_summary_counts_truncated_prompts():
    from harness.results.summary import summarize_model_task

    rec = {
        "task": "t",
        "model": "m",
        "prompt": "p",
        "scores": {"correct": 1.0},
        "gold": "a",
        "prediction": "a",
        "details": {"choices": ["a", "b"]},
        "latency_s": 0.1,
        "input_tokens": 5,
        "output_tokens": 0,
        "sample_id": "x",
    }
    meta = {"task_type": "classification", "wall_s": 1.0, "memory": {"peak_bytes": 1}}
    records = [SampleRecord.from_dict({**rec, "truncated": True}), SampleRecord.from_dict({**rec, "sample_id": "y"})]
    out = summarize_model_task(records, meta)
    assert out.truncated_items == 1
