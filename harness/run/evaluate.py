"""Run one task on one engine: warm-up, timed scoring, per-sample records.

Only the engine interface is used here (``harness.engines.base.Engine``): no
transformers, so any engine gets the same records, warm-up and trackers.
"""

from __future__ import annotations

import gc
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from harness.config.schema import RuntimeConfig
from harness.engines.base import Engine
from harness.measure.energy import EnergyReading, EnergyTracker
from harness.measure.memory import MemoryStats, MemoryTracker
from harness.results.records import RecordWriter, SampleRecord
from harness.serialize import Serializable, encode
from harness.tasks.metrics import key_fact_recall, rouge
from harness.tasks.prompts import Prompt, build_prompt
from harness.tasks.types import Sample, Task, TaskType

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


SHARED_START_CHARS = 32  # prompts sharing at least this many leading characters are batched together


def batch_order(
    engine: Engine, prompts: Sequence[Prompt], runtime: RuntimeConfig, task_type: TaskType = TaskType.classification
) -> list[int]:
    """The order items are batched in: longest first when ``runtime.sort_by_length`` and batches hold several items.

    Similar lengths pad less, and the first batch is the largest, so running
    out of memory shows at once (lm-eval's Collator does the same). Records
    carry their ids and reports read them in the task's order, so results do
    not depend on this order; at batch size 1 the task's order is kept.
    """
    if not runtime.sort_by_length or runtime.batch_size == 1:
        return list(range(len(prompts)))
    lengths = [engine.prompt_length(p) for p in prompts]
    if not (runtime.share_prefixes and task_type is TaskType.classification):
        return sorted(range(len(prompts)), key=lambda i: -lengths[i])
    # prompts that start alike (the same passage) stay together, so the engine can run their start once;
    # groups are ordered longest first, as single prompts are
    groups: list[list[int]] = []
    for i in sorted(range(len(prompts)), key=lambda i: prompts[i].text):
        if groups and len(os.path.commonprefix([prompts[groups[-1][-1]].text, prompts[i].text])) >= SHARED_START_CHARS:
            groups[-1].append(i)
        else:
            groups.append([i])
    groups.sort(key=lambda g: -max(lengths[i] for i in g))
    return [i for g in groups for i in g]  # in text order inside a group: equal starts are neighbours


def is_latency_mode(runtime: RuntimeConfig) -> bool:
    """Batch size 1 measures each request's latency; larger batches measure throughput."""
    return runtime.batch_size == 1


def _warm_up(
    engine: Engine, task: Task, head: Sequence[Sample], first: Sequence[Prompt], runtime: RuntimeConfig
) -> None:
    """Untimed passes first: kernels, allocator and caches reach their steady state."""
    for _ in range(runtime.warmup_steps):
        if task.type is TaskType.classification:
            engine.loglikelihood(first, [_choices(task, s)[1] for s in head])
        else:
            engine.generate_until(first, max_new_tokens=2, stops=[])


def _record(
    engine: Engine,
    task: Task,
    sample: Sample,
    prompt: Prompt,
    batch_size: int,
    batch_s: float,
    latency_mode: bool,
    latency_s: float,
    **measured: Any,
) -> SampleRecord:
    """The fields every record shares, plus what this kind of task measured.

    A request's latency is recorded in latency mode only: in a batch, an
    item's time is its share of the batch (``item_s``), not a latency.
    """
    return SampleRecord(
        task=task.name,
        model=engine.model_name,
        sample_id=sample.id,
        prompt=prompt.text,
        gold=sample.target,
        batch_size=batch_size,
        batch_s=batch_s,
        item_s=batch_s / batch_size,
        latency_s=latency_s if latency_mode else None,
        metadata=sample.metadata(task.spec.metadata_fields),
        **measured,
    )


def _classify(
    engine: Engine, task: Task, batch: Sequence[Sample], prompts: Sequence[Prompt], runtime: RuntimeConfig
) -> tuple[list[SampleRecord], float]:
    options = [_choices(task, s) for s in batch]
    latency_mode = is_latency_mode(runtime)
    scored, seconds = engine.loglikelihood(prompts, [texts for _, texts in options])
    concurrent = engine.concurrency > 1
    records = []
    for sample, prompt, sc, (labels, _) in zip(batch, prompts, scored, options):
        best = max(range(len(labels)), key=lambda i: sc.logliks[i])
        probs = softmax(sc.logliks)  # over the item's choices: the model's confidence
        ranked = sorted(probs, reverse=True)
        records.append(
            _record(
                engine,
                task,
                sample,
                prompt,
                len(batch),
                seconds,
                latency_mode,
                sc.latency_s if sc.latency_s is not None else seconds,
                prediction=labels[best],
                scores={"correct": float(labels[best] == sample.target)},
                input_tokens=sc.input_tokens,
                output_tokens=0,
                truncated=sc.tokens_dropped > 0,
                tokens_dropped=sc.tokens_dropped,
                details={
                    "choices": labels,
                    "logliks": sc.logliks,
                    "choice_tokens": sc.num_tokens,
                    "is_greedy": sc.greedy,
                    "probs": probs,
                    "margin": ranked[0] - (ranked[1] if len(ranked) > 1 else 0.0),
                    "chat_template": prompt.chat,
                    **({"concurrency": engine.concurrency} if concurrent else {}),
                    **encode(sc.details),  # its retries as Retry.to_dict writes them
                },
            )
        )
    return records, seconds


def _summarize(
    engine: Engine, task: Task, batch: Sequence[Sample], prompts: Sequence[Prompt], runtime: RuntimeConfig
) -> tuple[list[SampleRecord], float]:
    latency_mode = is_latency_mode(runtime)
    if runtime.fixed_generation_length:  # every model does the same work: timing comparisons on equal lengths
        outs = engine.generate_until(prompts, task.spec.max_new_tokens, [], min_new_tokens=task.spec.max_new_tokens)
    else:
        outs = engine.generate_until(prompts, task.spec.max_new_tokens, task.spec.stop)
    seconds = max(out.latency_s for out in outs)  # every sequence starts with the batch; the batch ends with the last
    records = []
    for sample, prompt, out in zip(batch, prompts, outs):
        scores = rouge(out.text, sample.target)
        facts_field = task.spec.key_facts_field
        if facts_field and sample.fields.get(facts_field):
            scores["key_fact_recall"] = key_fact_recall(
                out.text, sample.fields[facts_field], task.spec.key_fact_min_share
            )
        records.append(
            _record(
                engine,
                task,
                sample,
                prompt,
                len(batch),
                seconds,
                latency_mode,
                out.latency_s,
                prediction=out.text,
                scores=scores,
                input_tokens=out.input_tokens,
                output_tokens=out.output_tokens,
                truncated=out.tokens_dropped > 0,
                tokens_dropped=out.tokens_dropped,
                ttft_s=out.ttft_s if latency_mode else None,
                decode_tokens_per_s=out.decode_tokens_per_s if latency_mode else None,
                details={
                    "mean_logprob": out.mean_logprob,
                    "min_logprob": out.min_logprob,
                    "chat_template": prompt.chat,
                    **({"concurrency": engine.concurrency} if engine.concurrency > 1 else {}),
                    **encode(out.details),  # its retries as Retry.to_dict writes them
                },
            )
        )
    return records, seconds


@dataclass
class MemoryPressure(Serializable):
    """What running out of memory did to a task: how often, the batch size finally used, the items lost."""

    batch_size: int
    final_batch_size: int
    oom_events: int = 0
    failed_ids: list[str] = field(default_factory=list)


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA's OutOfMemoryError, a host MemoryError, or an allocator RuntimeError saying so (MPS, XPU, older torch)."""
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if isinstance(exc, MemoryError) or (oom is not None and isinstance(exc, oom)):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def _recover(exc: BaseException, engine: Engine) -> None:
    """Inside ``except``: re-raise anything but running out of memory; after it, free what the failed batch held."""
    if not is_out_of_memory(exc):
        raise exc
    gc.collect()
    if engine.device.type == "cuda":
        torch.cuda.empty_cache()


def _warm_up_fitting(
    engine: Engine, task: Task, samples: Sequence[Sample], prompts: Sequence[Prompt], runtime: RuntimeConfig
) -> None:
    """Warm the engine up on the first batch, halved while it runs out of memory."""
    warm = runtime.batch_size
    while (
        samples and warm
    ):  # the first batch is the longest: out of memory here halves the warm-up, the loop below finds its own size
        try:
            _warm_up(engine, task, samples[:warm], prompts[:warm], runtime)
            break
        except Exception as exc:
            _recover(exc, engine)
            warm //= 2


def _score_batches(
    engine: Engine,
    task: Task,
    samples: Sequence[Sample],
    prompts: Sequence[Prompt],
    runtime: RuntimeConfig,
    writer: RecordWriter,
    progress: Optional[Progress],
    pressure: MemoryPressure,
) -> float:
    """Score and write every item batch by batch, halving the batch when it runs out of memory; the model seconds."""
    run = _classify if task.type is TaskType.classification else _summarize
    wall = 0.0
    # served engines: calls of 4 x concurrency prompts keep that many requests in flight most of the time
    size, i = (runtime.batch_size if engine.concurrency == 1 else 4 * engine.concurrency), 0
    while i < len(samples):
        batch = samples[i : i + size]
        try:
            records, seconds = run(engine, task, batch, prompts[i : i + size], runtime)
        except Exception as exc:
            _recover(exc, engine)
            pressure.oom_events += 1
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
    return wall


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
    engine.check_task(task.type)  # a capability the engine lacks is named before any item runs
    pressure = MemoryPressure(runtime.batch_size, runtime.batch_size)
    prompts = _prompts(engine, task, samples, runtime)
    order = batch_order(engine, prompts, runtime, task.type)
    samples, prompts = [samples[j] for j in order], [prompts[j] for j in order]
    _warm_up_fitting(engine, task, samples, prompts, runtime)
    with MemoryTracker(engine.device) as mem, EnergyTracker(engine.device) as energy:
        wall = _score_batches(engine, task, samples, prompts, runtime, writer, progress, pressure)
    assert mem.stats is not None
    return wall, mem.stats, energy.reading, pressure
