"""Run one task on one engine: warm-up, timed scoring, per-sample records.

Only the engine interface is used here (``harness.engines.base.Engine``): no
transformers, so any engine gets the same records, warm-up and trackers.
"""
from __future__ import annotations

import gc
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional, Sequence

import torch

from harness.config import RuntimeConfig
from harness.energy import EnergyReading, EnergyTracker
from harness.engines.base import Engine
from harness.memory import MemoryStats, MemoryTracker
from harness.metrics import key_fact_recall, rouge
from harness.prompts import Prompt, build_prompt
from harness.records import RecordWriter, SampleRecord
from harness.tasks import Sample, Task, TaskType

Progress = Callable[[int], None]


def softmax(values: Sequence[float]) -> list[float]:
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    total = sum(exps)
    return [e / total for e in exps]


def _choices(task: Task, sample: Sample) -> tuple[list[str], list[str]]:
    """(answers as recorded, texts scored): the task's labels, or the item's own choices (BIG-bench, lm-eval)."""
    if sample.choices is not None:
        return sample.choices, sample.choices
    return list(task.spec.labels), list(task.spec.labels.values())


def _prompts(engine: Engine, task: Task, batch: Sequence[Sample], runtime: RuntimeConfig) -> list[Prompt]:
    return [build_prompt(task, s, engine.tokenizer, runtime.chat_template, runtime.num_fewshot) for s in batch]


def _warm_up(engine: Engine, task: Task, samples: Sequence[Sample], runtime: RuntimeConfig) -> None:
    """Untimed passes first: kernels, allocator and caches reach their steady state."""
    head = samples[: runtime.batch_size]
    first = _prompts(engine, task, head, runtime)
    for _ in range(runtime.warmup_steps):
        if task.type is TaskType.classification:
            engine.loglikelihood(first, [_choices(task, s)[1] for s in head])
        else:
            engine.generate_until(first, max_new_tokens=2, stops=[])


def _record(engine: Engine, task: Task, sample: Sample, prompt: Prompt, batch_size: int, **measured: Any) -> SampleRecord:
    """The fields every record shares, plus what this kind of task measured."""
    return SampleRecord(
        task=task.name,
        model=engine.model_name,
        sample_id=sample.id,
        prompt=prompt.text,
        gold=sample.target,
        batch_size=batch_size,
        metadata=sample.metadata(task.spec.metadata_fields),
        **measured,
    )


def _classify(engine: Engine, task: Task, batch: Sequence[Sample], runtime: RuntimeConfig) -> tuple[list[SampleRecord], float]:
    options = [_choices(task, s) for s in batch]
    prompts = _prompts(engine, task, batch, runtime)
    scored, seconds = engine.loglikelihood(prompts, [texts for _, texts in options])
    records = []
    for sample, prompt, sc, (labels, _) in zip(batch, prompts, scored, options):
        best = max(range(len(labels)), key=lambda i: sc.logliks[i])
        probs = softmax(sc.logliks)  # over the item's choices: the model's confidence
        ranked = sorted(probs, reverse=True)
        records.append(
            _record(
                engine, task, sample, prompt, len(batch),
                prediction=labels[best],
                scores={"correct": float(labels[best] == sample.target)},
                input_tokens=sc.input_tokens,
                output_tokens=0,
                truncated=sc.tokens_dropped > 0,
                tokens_dropped=sc.tokens_dropped,
                latency_s=seconds,
                details={
                    "choices": labels,
                    "logliks": sc.logliks,
                    "choice_tokens": sc.num_tokens,
                    "is_greedy": sc.greedy,
                    "probs": probs,
                    "margin": ranked[0] - (ranked[1] if len(ranked) > 1 else 0.0),
                    "chat_template": prompt.chat,
                },
            )
        )
    return records, seconds


def _summarize(engine: Engine, task: Task, batch: Sequence[Sample], runtime: RuntimeConfig) -> tuple[list[SampleRecord], float]:
    prompts = _prompts(engine, task, batch, runtime)
    if runtime.fixed_generation_length:  # every model does the same work: timing comparisons on equal lengths
        outs = engine.generate_until(prompts, task.spec.max_new_tokens, [], min_new_tokens=task.spec.max_new_tokens)
    else:
        outs = engine.generate_until(prompts, task.spec.max_new_tokens, task.spec.stop)
    records = []
    for sample, prompt, out in zip(batch, prompts, outs):
        scores = rouge(out.text, sample.target)
        facts_field = task.spec.key_facts_field
        if facts_field and sample.fields.get(facts_field):
            scores["key_fact_recall"] = key_fact_recall(out.text, sample.fields[facts_field], task.spec.key_fact_min_share)
        records.append(
            _record(
                engine, task, sample, prompt, len(batch),
                prediction=out.text,
                scores=scores,
                input_tokens=out.input_tokens,
                output_tokens=out.output_tokens,
                truncated=out.tokens_dropped > 0,
                tokens_dropped=out.tokens_dropped,
                latency_s=out.latency_s,
                ttft_s=out.ttft_s,
                decode_tokens_per_s=out.decode_tokens_per_s,
                details={"mean_logprob": out.mean_logprob, "chat_template": prompt.chat},
            )
        )
    return records, outs[0].latency_s


@dataclass
class MemoryPressure:
    """What running out of memory did to a task: how often, the batch size finally used, the items lost."""

    batch_size: int
    final_batch_size: int
    oom_events: int = 0
    failed_ids: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA's OutOfMemoryError, a host MemoryError, or an allocator RuntimeError saying so (MPS, XPU, older torch)."""
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if isinstance(exc, MemoryError) or (oom is not None and isinstance(exc, oom)):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def _release(engine: Engine) -> None:
    gc.collect()
    if engine.device.type == "cuda":
        torch.cuda.empty_cache()


def evaluate_task(
    engine: Engine,
    task: Task,
    samples: Sequence[Sample],
    runtime: RuntimeConfig,
    writer: RecordWriter,
    progress: Optional[Progress] = None,
) -> tuple[float, MemoryStats, EnergyReading, MemoryPressure]:
    """Score ``samples``, writing (and flushing) a record per sample; returns (model seconds, peak memory, energy, memory pressure).

    The seconds are the sum of the timed model calls (prompt building, metric
    computation and record writing are excluded), so throughput and cost
    reflect the model, not the harness.

    Out of memory during a batch halves the batch size and retries the same
    items, down to 1, and the smaller size is kept for the rest of the task;
    an item that fails alone gets no record (the cell is then ``partial`` and
    the next run retries it).
    """
    pressure = MemoryPressure(runtime.batch_size, runtime.batch_size)
    if samples:
        _warm_up(engine, task, samples, runtime)
    run = _classify if task.type is TaskType.classification else _summarize
    wall = 0.0
    size, i = runtime.batch_size, 0
    with MemoryTracker(engine.device) as mem, EnergyTracker(engine.device) as energy:
        while i < len(samples):
            batch = samples[i : i + size]
            try:
                records, seconds = run(engine, task, batch, runtime)
            except Exception as exc:
                if not is_out_of_memory(exc):
                    raise
                pressure.oom_events += 1
                _release(engine)
                if size > 1:
                    size = pressure.final_batch_size = max(1, size // 2)
                else:
                    pressure.failed_ids.append(batch[0].id)
                    i += 1
                    if progress:
                        progress(1)
                continue
            for record in records:
                writer.write(record)
            wall += seconds
            i += len(batch)
            if progress:
                progress(len(batch))
    assert mem.stats is not None
    return wall, mem.stats, energy.reading, pressure
