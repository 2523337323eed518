"""Aggregate a run's per-sample records into ``summary.json`` (no model needed).

Every figure here is computed from files on disk: the records (quality,
per-sample latency, tokens), the per-task meta (wall time, peak memory) and the
per-model record (parameters, load time).

Cells are streamed: each cell's records are read once, summarized, and turned into its ``CellOutcomes`` (the
arrays the statistics read); the records are then dropped, so nothing holds every record of a store at once.
A comparison of many cells is read by a small pool of processes (``report.workers``).
"""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Optional, cast

import numpy as np

from harness.config.schema import HardwareConfig, hardware_profile
from harness.measure.hardware import HardwareClass
from harness.results.cells import CellManifest, CellRef, combined_measurements, read_cell_records, read_manifest
from harness.results.comparison import RunPlan, read_run
from harness.results.cost import economics
from harness.results.outcomes import CellOutcomes
from harness.results.records import SampleRecord, read_json
from harness.results.schema import (
    Baselines,
    CellEntry,
    CellInfo,
    CellStop,
    CellSummary,
    Comparison,
    Consistency,
    HardwareGroup,
    ModelRecord,
    Percentiles,
    RunSummary,
    TaskSummary,
)
from harness.tasks.metrics import ROUGE_TYPES, accuracy, macro_f1
from harness.tasks.types import is_classification, primary_metric


def _percentiles(values: list[float]) -> Percentiles:
    if not values:
        return Percentiles()
    arr = np.asarray(values, dtype=float)
    p50, p90, p95, p99 = (float(v) for v in np.percentile(arr, (50, 90, 95, 99)))  # one partition for all four
    return Percentiles(float(arr.mean()), p50, p90, p95, p99)


def _median(values: list[Optional[float]]) -> Optional[float]:
    vals = [v for v in values if v is not None]
    return float(np.median(vals)) if vals else None


def _quality(task_type: str, records: list[SampleRecord]) -> dict[str, float]:
    if is_classification(task_type):
        golds = [r.gold for r in records]
        preds = [r.prediction for r in records]
        labels = records[0].details.get("choices", sorted(set(golds)))
        if any(set(r.details.get("choices", labels)) != set(labels) for r in records):
            labels = sorted(
                set(golds)
            )  # choices vary per item (BIG-bench, lm-eval sources): macro-F1 over the gold answers
        return {"accuracy": accuracy(golds, preds), "macro_f1": macro_f1(golds, preds, labels)}
    names = list(ROUGE_TYPES) + sorted({k for r in records for k in r.scores} - set(ROUGE_TYPES))
    return {name: float(np.nanmean([r.scores.get(name, np.nan) for r in records])) for name in names}


def _baselines(records: list[SampleRecord]) -> Baselines:
    """What answering without reading scores on these items: always the most common gold label (majority), a
    uniform guess (chance); and how often the model gave its own most common answer (a model that always answers
    one label scores the share of that label, whatever it read)."""
    golds = [str(r.gold) for r in records]
    labels = records[0].details.get("choices") or sorted(set(golds))
    top_gold, n_gold = Counter(golds).most_common(1)[0]
    top_pred, n_pred = Counter(str(r.prediction) for r in records).most_common(1)[0]
    return Baselines(
        majority_label=top_gold,
        majority=n_gold / len(records),
        chance=1 / max(1, len(labels)),
        top_prediction=top_pred,
        top_prediction_share=n_pred / len(records),
    )


def _breakdown(
    task_type: str, records: list[SampleRecord], fields: list[str]
) -> dict[str, dict[str, dict[str, float]]]:
    """Quality per value of each metadata field (e.g. per language): the items' count and each metric."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name in fields:
        groups: dict[str, list[SampleRecord]] = {}
        for r in records:
            value = r.metadata.get(name)
            if value is not None:
                groups.setdefault(str(value), []).append(r)
        out[name] = {value: {"n": len(rs), **_quality(task_type, rs)} for value, rs in sorted(groups.items())}
    return out


def _consistency(records: list[SampleRecord], field: str) -> Optional[Consistency]:
    """Items sharing ``field`` ask the same fact: how often does the model answer them all alike?"""
    groups: dict[str, list[SampleRecord]] = {}
    for r in records:
        key = r.metadata.get(field)
        if key is not None:
            groups.setdefault(str(key), []).append(r)
    multi = [rs for rs in groups.values() if len(rs) > 1]
    if not multi:
        return None
    return Consistency(
        field=field,
        groups=len(multi),
        same_answer=sum(len({r.prediction for r in rs}) == 1 for rs in multi) / len(multi),
        all_correct=sum(all(r.prediction == r.gold for r in rs) for rs in multi) / len(multi),
    )


def summarize_model_task(
    records: list[SampleRecord],
    meta: dict[str, Any],
    task_info: dict[str, Any] | None = None,
    hardware: Optional[HardwareConfig] = None,
) -> CellSummary:
    task_type = meta["task_type"]
    info = task_info or {}
    wall = meta["wall_s"]
    n = len(records)
    in_tok = sum(r.input_tokens for r in records)
    out_tok = sum(r.output_tokens for r in records)
    # throughput is over the items the recorded sessions timed (a killed session's items have no wall time)
    timed = meta.get("timed") or {"n": n, "input_tokens": in_tok, "output_tokens": out_tok}
    t_n, t_in, t_out = timed["n"], timed["input_tokens"], timed["output_tokens"]
    return CellSummary(
        task_type=task_type,
        n=n,
        primary_metric=primary_metric(task_type),
        quality=_quality(task_type, records),
        baselines=_baselines(records) if is_classification(task_type) and records else None,
        # latency mode (batch 1): request latencies; throughput mode: none (a batch's time is no request's latency)
        mode="latency" if all(r.latency_s is not None for r in records) else "throughput",
        batch_size=meta.get("batch_size") or max((r.batch_size for r in records), default=1),  # as configured
        latency_s=_percentiles([r.latency_s for r in records if r.latency_s is not None]),
        item_s=_percentiles([r.item_s for r in records]),
        ttft_s=_percentiles([r.ttft_s for r in records if r.ttft_s is not None])
        if not is_classification(task_type)
        else None,
        decode_tokens_per_s_median=_median([r.decode_tokens_per_s for r in records]),
        wall_s=wall,
        throughput_samples_per_s=t_n / wall if wall > 0 and t_n else None,
        throughput_tokens_per_s=(t_in + t_out) / wall if wall > 0 and t_n else None,
        output_tokens_per_s=t_out / wall if wall > 0 and t_out else None,
        input_tokens=in_tok,
        truncated_items=sum(bool(r.truncated) for r in records),  # prompts cut to fit the context window
        output_tokens=out_tok,
        peak_memory_bytes=meta["memory"]["peak_bytes"],
        memory=meta["memory"],
        energy=meta.get("energy"),
        sample_ids=[r.sample_id for r in records],
        breakdown=_breakdown(task_type, records, info.get("breakdown_fields") or []),
        consistency=_consistency(records, info["consistency_field"])
        if info.get("consistency_field") and is_classification(task_type)
        else None,
        economics=economics(
            t_n,
            wall,
            [r.item_s for r in records],
            meta["memory"]["peak_bytes"],
            meta.get("energy"),
            hardware,
            meta.get("token_prices"),
            (t_in, t_out),
        )
        if hardware
        else None,
    )


def token_prices(model_record: dict[str, Any]) -> Optional[tuple[float, float]]:
    """A hosted model's (USD per million input tokens, per million output tokens), when its config prices it so."""
    pin, pout = model_record.get("usd_per_million_input"), model_record.get("usd_per_million_output")
    return (float(pin), float(pout)) if pin is not None and pout is not None else None


def _ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return a / b if a is not None and b not in (None, 0) else None


UNRECORDED = "unrecorded"  # the class of a cell computed before hardware classes were recorded


def _hardware(summary: CellSummary) -> Optional[HardwareClass]:
    hw = summary.cell.hardware_class if summary.cell is not None else None
    return HardwareClass.from_dict(hw) if hw else None


def cross_hardware(a: CellSummary, b: CellSummary) -> bool:
    """The two in-process cells ran on different hardware classes: their times compare machines as much as models.

    A served model is a deployment the user chose to compare (its times are its server's, network included, and
    the report says so): a cell of one is never cross-hardware, or no local model could be weighed against it.
    """
    ha, hb = _hardware(a), _hardware(b)
    if (ha is not None and ha.server is not None) or (hb is not None and hb.server is not None):
        return False
    return (ha.id if ha else UNRECORDED) != (hb.id if hb else UNRECORDED)


def compare(cand: CellSummary, ref: CellSummary, cand_model: ModelRecord, ref_model: ModelRecord) -> Comparison:
    """A model against the reference on one task; refuses to compare different item sets, and withholds the ratios
    of time (latency, throughput, cost, energy) between cells of different hardware classes."""
    same_items = cand.sample_ids == ref.sample_ids
    c_q, r_q = cand.score, ref.score
    timed = not cross_hardware(cand, ref)

    def when_timed(a: Optional[float], b: Optional[float]) -> Optional[float]:
        return _ratio(a, b) if timed else None

    return Comparison(
        same_items=same_items,
        metric=cand.primary_metric,
        candidate=c_q,
        reference=r_q,
        delta_vs_reference=c_q - r_q if same_items else None,
        latency_p50_ratio=when_timed(cand.latency_s.p50, ref.latency_s.p50),
        latency_p95_ratio=when_timed(cand.latency_s.p95, ref.latency_s.p95),
        throughput_ratio=when_timed(cand.throughput_samples_per_s, ref.throughput_samples_per_s),
        peak_memory_ratio=_ratio(cand.peak_memory_bytes, ref.peak_memory_bytes),
        cost_ratio=when_timed(*(x.economics.cost_per_1k_usd if x.economics else None for x in (cand, ref))),
        energy_ratio=when_timed(*(x.economics.energy_per_request_j if x.economics else None for x in (cand, ref))),
        params_total_ratio=_ratio(cand_model.size, ref_model.size),
        params_active_ratio=_ratio(cand_model.params_active, ref_model.params_active),
        cross_hardware=not timed,
    )


def hardware_classes(results: dict[str, dict[str, CellSummary]]) -> dict[str, HardwareGroup]:
    """Each hardware class the comparison's cells ran on, with its label and its cells; {} where none was recorded."""
    classes: dict[str, HardwareGroup] = {}
    for task, per_model in results.items():
        for name, summary in per_model.items():
            hw = _hardware(summary)
            entry = classes.setdefault(
                hw.id if hw else UNRECORDED,
                {
                    "label": hw.label if hw else "not recorded (a cell from an older harness)",
                    "class": hw.to_dict() if hw else None,
                    "served": hw is not None and hw.server is not None,
                    "cells": [],
                },
            )
            entry["cells"].append(f"{name}/{task}")
    if set(classes) == {UNRECORDED}:
        return {}
    for entry in classes.values():
        entry["cells"].sort()
    return classes


def order_models(models: dict[str, ModelRecord], requested: Optional[str]) -> tuple[list[str], Optional[str]]:
    """Models by total parameters (smallest first), and the reference: the requested one, else the largest."""
    order = sorted(models, key=lambda n: (models[n].size, n))
    if requested in models:
        return order, requested
    return order, (order[-1] if order else None)


def assign_roles(models: dict[str, ModelRecord], reference: Optional[str]) -> None:
    """Two models read as small vs large; with more, the reference and the candidates."""
    for name, m in models.items():
        if len(models) == 2:
            m.role = "large" if name == reference else "small"
        else:
            m.role = "reference" if name == reference else "candidate"


def _cell_summary(
    ref: CellRef,
    manifest: CellManifest,
    records: list[SampleRecord],
    info: dict[str, Any],
    hardware: Optional[HardwareConfig],
) -> CellSummary:
    meta = {
        "task_type": info.get("type") or manifest.task_info["type"],
        **combined_measurements(manifest),
        "batch_size": manifest.parts.get("batch_size"),
        "token_prices": token_prices(manifest.model_record),
    }
    summary = summarize_model_task(records, meta, info, hardware)
    stopped = manifest.stopped
    summary.cell = CellInfo(
        key=ref.key,
        path=ref.path,
        status=ref.status,
        computed_at=manifest.completed_at,
        sessions=len(manifest.sessions),
        failed_ids=manifest.failed_ids,
        oom_events=sum(int(s.get("oom_events") or 0) for s in manifest.sessions),
        final_batch_size=(manifest.sessions or [{}])[-1].get("final_batch_size"),
        stopped=CellStop(stopped.get("at"), stopped.get("of"), stopped.get("claims")) if stopped else None,
        hardware_class=manifest.hardware or None,
    )
    return summary


# (reference, model record, summary, outcomes) of a reportable cell with records; None: not reportable
ReadCell = Optional[tuple[CellRef, dict[str, Any], Optional[CellSummary], Optional[CellOutcomes]]]


def read_cell(job: tuple[CellRef, dict[str, Any], Optional[HardwareConfig]]) -> ReadCell:
    """One cell, read once: its summary and outcomes (a process pool's unit of work: picklable in and out)."""
    ref, plan_info, hardware = job
    manifest = read_manifest(Path(ref.path))
    if not manifest or not manifest.reportable:
        return None
    records = read_cell_records(Path(ref.path), manifest)
    if not records:
        return ref, manifest.model_record, None, None
    info = plan_info or manifest.task_info
    summary = _cell_summary(ref, manifest, records, info, hardware)
    return ref, manifest.model_record, summary, CellOutcomes.of(records, summary.task_type)


def read_cells(
    jobs: Sequence[tuple[CellRef, dict[str, Any], Optional[HardwareConfig]]], workers: int = 1
) -> Iterator[ReadCell]:
    """Every cell read once, in order; ``workers`` > 1: by that many processes (JSON parsing is most of the time)."""
    if workers <= 1 or len(jobs) < 2 * workers:
        yield from map(read_cell, jobs)
        return
    gc.freeze()  # what the workers inherit is never collected there: no walk over (and copy of) the parent's heap
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(read_cell, jobs, chunksize=max(1, min(64, len(jobs) // (8 * workers))))


def pool_size(workers: int, parallel_from: int, n_cells: int) -> int:
    """The processes a comparison of ``n_cells`` cells is read and analysed by (``report.workers`` from
    ``report.parallel_from`` cells on; below, a pool costs more to start than it saves)."""
    return workers if n_cells >= parallel_from else 1


def summarize_with_outcomes(
    run_dir: Path, config: dict[str, Any] | None = None, workers: int = 1, parallel_from: int = 0
) -> tuple[RunSummary, dict[tuple[str, str], CellOutcomes]]:
    """Every complete cell of a run (or combined comparison) in one summary keyed by model name, and each cell's
    outcomes by (task, model), for the statistics: the records are read once per cell and not kept. The cells are
    read by ``pool_size(workers, parallel_from, cells)`` processes."""

    run_dir = Path(run_dir)
    plan, refs = read_run(run_dir)
    if config is None:
        config = read_json(run_dir / "config.json") if (run_dir / "config.json").is_file() else {}
    hardware = hardware_profile(config)
    models: dict[str, ModelRecord] = {}
    results: dict[str, dict[str, CellSummary]] = {}
    outcomes: dict[tuple[str, str], CellOutcomes] = {}
    have: set[tuple[str, str]] = set()
    missing: list[CellRef] = []
    jobs = [(ref, plan.tasks.get(ref.task) or {}, hardware) for ref in refs]
    for ref, read in zip(refs, read_cells(jobs, pool_size(workers, parallel_from, len(refs)))):
        if read is None:
            missing.append(ref)
            continue
        have.add((ref.model, ref.task))
        _, model_record, summary, cell_outcomes = read
        if summary is None or cell_outcomes is None:
            continue
        name, task = ref.model, ref.task
        # measured facts from the cell, config facts (published size, architecture only) from this comparison's plan
        models.setdefault(name, ModelRecord({**model_record, **plan.model_info.get(name, {}), "name": name}))
        results.setdefault(task, {})[name] = summary
        outcomes[(task, name)] = cell_outcomes
    return _run_summary(run_dir, plan, refs, missing, have, models, results, hardware), outcomes


def _run_summary(
    run_dir: Path,
    plan: RunPlan,
    refs: list[CellRef],
    missing: list[CellRef],
    have: set[tuple[str, str]],
    models: dict[str, ModelRecord],
    results: dict[str, dict[str, CellSummary]],
    hardware: Optional[HardwareConfig],
) -> RunSummary:
    order, reference = order_models(models, plan.reference)
    assign_roles(models, reference)
    comparisons: dict[str, dict[str, Comparison]] = {}
    for task, per_model in results.items():
        if reference in per_model:
            comparisons[task] = {
                name: compare(
                    per_model[name],
                    per_model[reference],
                    models[name],
                    models[reference],
                )
                for name in order
                if name != reference and name in per_model
            }
    planned = [(m, t) for m in plan.models for t in plan.tasks]
    referenced = {(r.model, r.task) for r in refs}
    return RunSummary(
        run_dir=str(run_dir),
        name=plan.name,
        pair=plan.name,
        task_group=plan.task_group,
        hardware=hardware,
        models={n: models[n] for n in order},
        order=order,
        reference=reference,
        tasks={
            t: TaskSummary(plan.tasks[t], {n: results.get(t, {})[n] for n in order if n in results.get(t, {})})
            for t in plan.tasks
        },
        comparisons=comparisons,
        cells=[cast(CellEntry, {**r.to_dict(), "complete": (r.model, r.task) in have}) for r in refs],
        missing_cells=[f"{r.model}/{r.task}" for r in missing],
        not_run=[f"{m}/{t}" for m, t in planned if (m, t) not in have and (m, t) not in referenced],
        incomplete_tasks=[t for t in plan.tasks if any((m, t) not in have for m in plan.models)],
        sources=plan.sources,
        sequential=plan.sequential,
        hardware_classes=hardware_classes(results),
    )


def cell_records(summary: RunSummary, task: str, model: str) -> list[SampleRecord]:
    """The records of one cell of a summary, read from disk again (pages that show the text: samples.html, flips)."""
    result = summary.tasks[task].results.get(model) if task in summary.tasks else None
    if result is None or result.cell is None:
        return []
    return read_cell_records(Path(result.cell.path))
