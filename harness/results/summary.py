"""Aggregate a run's per-sample records into ``summary.json`` (no model needed).

Every figure here is computed from files on disk: the records (quality,
per-sample latency, tokens), the per-task meta (wall time, peak memory) and the
per-model record (parameters, load time).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

from harness.results.cells import combined_measurements
from harness.results.comparison import load_cells, read_run
from harness.results.cost import economics
from harness.results.records import SampleRecord, read_json
from harness.results.schema import (
    CellInfo,
    CellSummary,
    Comparison,
    ModelRecord,
    Percentiles,
    RunSummary,
    TaskSummary,
)
from harness.tasks.metrics import ROUGE_TYPES, accuracy, macro_f1
from harness.tasks.types import primary_metric


def _percentiles(values: list[float]) -> Percentiles:
    if not values:
        return Percentiles()
    arr = np.asarray(values, dtype=float)
    p50, p90, p95, p99 = (float(np.percentile(arr, q)) for q in (50, 90, 95, 99))
    return Percentiles(float(arr.mean()), p50, p90, p95, p99)


def _median(values: list[Optional[float]]) -> Optional[float]:
    vals = [v for v in values if v is not None]
    return float(np.median(vals)) if vals else None


def _quality(task_type: str, records: list[SampleRecord]) -> dict[str, float]:
    if task_type == "classification":
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


def _breakdown(task_type: str, records: list[SampleRecord], fields: list[str]) -> dict[str, dict[str, Any]]:
    """Quality per value of each metadata field (e.g. per language)."""
    out: dict[str, dict[str, Any]] = {}
    for name in fields:
        groups: dict[str, list[SampleRecord]] = {}
        for r in records:
            value = r.metadata.get(name)
            if value is not None:
                groups.setdefault(str(value), []).append(r)
        out[name] = {value: {"n": len(rs), **_quality(task_type, rs)} for value, rs in sorted(groups.items())}
    return out


def _consistency(records: list[SampleRecord], field: str) -> dict[str, Any] | None:
    """Items sharing ``field`` ask the same fact: how often does the model answer them all alike?"""
    groups: dict[str, list[SampleRecord]] = {}
    for r in records:
        key = r.metadata.get(field)
        if key is not None:
            groups.setdefault(str(key), []).append(r)
    multi = [rs for rs in groups.values() if len(rs) > 1]
    if not multi:
        return None
    return {
        "field": field,
        "groups": len(multi),
        "same_answer": sum(len({r.prediction for r in rs}) == 1 for rs in multi) / len(multi),
        "all_correct": sum(all(r.prediction == r.gold for r in rs) for rs in multi) / len(multi),
    }


def summarize_model_task(
    records: list[SampleRecord],
    meta: dict[str, Any],
    task_info: dict[str, Any] | None = None,
    hardware: dict[str, Any] | None = None,
) -> CellSummary:
    task_type = meta["task_type"]
    info = task_info or {}
    wall = meta["wall_s"]
    n = len(records)
    in_tok = sum(r.input_tokens for r in records)
    out_tok = sum(r.output_tokens for r in records)
    return CellSummary(
        task_type=task_type,
        n=n,
        primary_metric=primary_metric(task_type),
        quality=_quality(task_type, records),
        # latency mode (batch 1): request latencies; throughput mode: none (a batch's time is no request's latency)
        mode="latency" if all(r.latency_s is not None for r in records) else "throughput",
        batch_size=meta.get("batch_size") or max((r.batch_size for r in records), default=1),  # as configured
        latency_s=_percentiles([r.latency_s for r in records if r.latency_s is not None]),
        item_s=_percentiles([r.item_s for r in records]),
        ttft_s=_percentiles([r.ttft_s for r in records if r.ttft_s is not None])
        if task_type != "classification"
        else None,
        decode_tokens_per_s_median=_median([r.decode_tokens_per_s for r in records]),
        wall_s=wall,
        throughput_samples_per_s=n / wall if wall > 0 else None,
        throughput_tokens_per_s=(in_tok + out_tok) / wall if wall > 0 else None,
        output_tokens_per_s=out_tok / wall if wall > 0 and out_tok else None,
        input_tokens=in_tok,
        truncated_items=sum(bool(r.truncated) for r in records),  # prompts cut to fit the context window
        output_tokens=out_tok,
        peak_memory_bytes=meta["memory"]["peak_bytes"],
        memory=meta["memory"],
        energy=meta.get("energy"),
        sample_ids=[r.sample_id for r in records],
        breakdown=_breakdown(task_type, records, info.get("breakdown_fields") or []),
        consistency=_consistency(records, info["consistency_field"])
        if info.get("consistency_field") and task_type == "classification"
        else None,
        economics=economics(
            n,
            wall,
            [r.item_s for r in records],
            meta["memory"]["peak_bytes"],
            meta.get("energy"),
            hardware,
            meta.get("token_prices"),
            (in_tok, out_tok),
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


def compare(cand: CellSummary, ref: CellSummary, cand_model: ModelRecord, ref_model: ModelRecord) -> Comparison:
    """A model against the reference on one task; refuses to compare different item sets."""
    same_items = cand.sample_ids == ref.sample_ids
    c_q, r_q = cand.score, ref.score
    return Comparison(
        same_items=same_items,
        metric=cand.primary_metric,
        candidate=c_q,
        reference=r_q,
        delta_vs_reference=c_q - r_q if same_items else None,
        latency_p50_ratio=_ratio(cand.latency_s.p50, ref.latency_s.p50),
        latency_p95_ratio=_ratio(cand.latency_s.p95, ref.latency_s.p95),
        throughput_ratio=_ratio(cand.throughput_samples_per_s, ref.throughput_samples_per_s),
        peak_memory_ratio=_ratio(cand.peak_memory_bytes, ref.peak_memory_bytes),
        cost_ratio=_ratio(*(x.economics.cost_per_1k_usd if x.economics else None for x in (cand, ref))),
        energy_ratio=_ratio(*(x.economics.energy_per_request_j if x.economics else None for x in (cand, ref))),
        params_total_ratio=_ratio(cand_model.size, ref_model.size),
        params_active_ratio=_ratio(cand_model.params_active, ref_model.params_active),
    )


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


def summarize_with_records(
    run_dir: Path, config: dict[str, Any] | None = None
) -> tuple[RunSummary, dict[tuple[str, str], list[SampleRecord]]]:
    """Every complete cell of a run (or combined comparison) in one summary keyed by model name, and the
    records it was computed from by (task, model): read once, for the statistics too."""

    run_dir = Path(run_dir)
    plan, refs = read_run(run_dir)
    if config is None:
        config = read_json(run_dir / "config.json") if (run_dir / "config.json").is_file() else {}
    hardware = config.get("hardware")
    cells, missing = load_cells(refs)
    models: dict[str, ModelRecord] = {}
    results: dict[str, dict[str, CellSummary]] = {}
    for cell in cells:
        if not cell.records:
            continue
        name, task = cell.ref.model, cell.ref.task
        # measured facts from the cell, config facts (published size, architecture only) from this comparison's plan
        models.setdefault(name, ModelRecord({**cell.manifest.model_record, **plan.model_info.get(name, {}), "name": name}))
        info = plan.tasks.get(task) or cell.manifest.task_info
        meta = {
            "task_type": info.get("type") or cell.manifest.task_info["type"],
            **combined_measurements(cell.manifest),
            "batch_size": cell.manifest.parts.get("batch_size"),
            "token_prices": token_prices(cell.manifest.model_record),
        }
        summary = summarize_model_task(cell.records, meta, info, hardware)
        m = cell.manifest
        stopped = m.stopped
        summary.cell = CellInfo(
            key=cell.ref.key,
            path=cell.ref.path,
            status=cell.ref.status,
            computed_at=m.completed_at,
            sessions=len(m.sessions),
            failed_ids=m.failed_ids,
            oom_events=sum(int(s.get("oom_events") or 0) for s in m.sessions),
            final_batch_size=(m.sessions or [{}])[-1].get("final_batch_size"),
            stopped={k: stopped.get(k) for k in ("at", "of", "claims")} if stopped else None,
        )
        results.setdefault(task, {})[name] = summary
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
    have = {(c.ref.model, c.ref.task) for c in cells}
    records = {(c.ref.task, c.ref.model): c.records for c in cells if c.records}
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
        cells=[{**r.to_dict(), "complete": (r.model, r.task) in have} for r in refs],
        missing_cells=[f"{r.model}/{r.task}" for r in missing],
        not_run=[
            f"{m}/{t}" for m, t in planned if (m, t) not in have and not any(r.model == m and r.task == t for r in refs)
        ],
        incomplete_tasks=[t for t in plan.tasks if any((m, t) not in have for m in plan.models)],
        sources=plan.sources,
        sequential=plan.sequential,
    ), records
