"""Aggregate a run's per-sample records into ``summary.json`` (no model needed).

Every figure here is computed from files on disk: the records (quality,
per-sample latency, tokens), the per-task meta (wall time, peak memory) and the
per-model record (parameters, load time).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

from harness.cost import economics
from harness.errors import HarnessError
from harness.metrics import ROUGE_TYPES, accuracy, macro_f1
from harness.records import iter_sample_files, meta_path, read_json, read_records

PRIMARY = {"classification": "accuracy", "summarization": "rougeL"}


def _percentiles(values: list[float]) -> dict[str, Optional[float]]:
    if not values:
        return {"mean": None, "p50": None, "p90": None, "p95": None, "p99": None}
    arr = np.asarray(values, dtype=float)
    return {
        "mean": float(arr.mean()),
        **{f"p{q}": float(np.percentile(arr, q)) for q in (50, 90, 95, 99)},
    }


def _median(values: list[Optional[float]]) -> Optional[float]:
    vals = [v for v in values if v is not None]
    return float(np.median(vals)) if vals else None


def _quality(task_type: str, records: list[dict[str, Any]]) -> dict[str, float]:
    if task_type == "classification":
        golds = [r["gold"] for r in records]
        preds = [r["prediction"] for r in records]
        labels = records[0]["details"].get("choices", sorted(set(golds)))
        if any(set(r["details"].get("choices", labels)) != set(labels) for r in records):
            labels = sorted(set(golds))  # choices vary per item (BIG-bench, lm-eval sources): macro-F1 over the gold answers
        return {"accuracy": accuracy(golds, preds), "macro_f1": macro_f1(golds, preds, labels)}
    names = list(ROUGE_TYPES) + sorted({k for r in records for k in r["scores"]} - set(ROUGE_TYPES))
    return {name: float(np.nanmean([r["scores"].get(name, np.nan) for r in records])) for name in names}


def _breakdown(task_type: str, records: list[dict[str, Any]], fields: list[str]) -> dict[str, dict[str, Any]]:
    """Quality per value of each metadata field (e.g. per language)."""
    out: dict[str, dict[str, Any]] = {}
    for name in fields:
        groups: dict[str, list[dict[str, Any]]] = {}
        for r in records:
            value = r.get("metadata", {}).get(name)
            if value is not None:
                groups.setdefault(str(value), []).append(r)
        out[name] = {value: {"n": len(rs), **_quality(task_type, rs)} for value, rs in sorted(groups.items())}
    return out


def _consistency(records: list[dict[str, Any]], field: str) -> dict[str, Any] | None:
    """Items sharing ``field`` ask the same fact: how often does the model answer them all alike?"""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        key = r.get("metadata", {}).get(field)
        if key is not None:
            groups.setdefault(str(key), []).append(r)
    multi = [rs for rs in groups.values() if len(rs) > 1]
    if not multi:
        return None
    return {
        "field": field,
        "groups": len(multi),
        "same_answer": sum(len({r["prediction"] for r in rs}) == 1 for rs in multi) / len(multi),
        "all_correct": sum(all(r["prediction"] == r["gold"] for r in rs) for rs in multi) / len(multi),
    }


def summarize_model_task(records: list[dict[str, Any]], meta: dict[str, Any], task_info: dict[str, Any] | None = None,
                         hardware: dict[str, Any] | None = None) -> dict[str, Any]:
    task_type = meta["task_type"]
    info = task_info or {}
    wall = meta["wall_s"]
    n = len(records)
    in_tok = sum(r["input_tokens"] for r in records)
    out_tok = sum(r["output_tokens"] for r in records)
    return {
        "task_type": task_type,
        "n": n,
        "primary_metric": PRIMARY[task_type],
        "quality": _quality(task_type, records),
        "latency_s": _percentiles([r["latency_s"] for r in records]),
        "ttft_s": _percentiles([r["ttft_s"] for r in records if r.get("ttft_s") is not None]) if task_type != "classification" else None,
        "decode_tokens_per_s_median": _median([r.get("decode_tokens_per_s") for r in records]),
        "wall_s": wall,
        "throughput_samples_per_s": n / wall if wall > 0 else None,
        "throughput_tokens_per_s": (in_tok + out_tok) / wall if wall > 0 else None,
        "input_tokens": in_tok,
        "output_tokens": out_tok,
        "peak_memory_bytes": meta["memory"]["peak_bytes"],
        "memory": meta["memory"],
        "sample_ids": [r["sample_id"] for r in records],
        "breakdown": _breakdown(task_type, records, info.get("breakdown_fields") or []),
        "consistency": _consistency(records, info["consistency_field"]) if info.get("consistency_field") and task_type == "classification" else None,
        "economics": economics(n, wall, [r["latency_s"] for r in records], meta["memory"]["peak_bytes"], meta.get("energy"), hardware)
        if hardware else None,
    }


def _ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return a / b if a is not None and b not in (None, 0) else None


def compare(small: dict[str, Any], large: dict[str, Any], params: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Small vs large on one task; refuses to compare different item sets."""
    same_items = small["sample_ids"] == large["sample_ids"]
    metric = small["primary_metric"]
    s_q, l_q = small["quality"][metric], large["quality"][metric]
    return {
        "same_items": same_items,
        "metric": metric,
        "small": s_q,
        "large": l_q,
        "delta_small_minus_large": s_q - l_q if same_items else None,
        "latency_p50_ratio": _ratio(small["latency_s"]["p50"], large["latency_s"]["p50"]),
        "latency_p95_ratio": _ratio(small["latency_s"]["p95"], large["latency_s"]["p95"]),
        "throughput_ratio": _ratio(small["throughput_samples_per_s"], large["throughput_samples_per_s"]),
        "peak_memory_ratio": _ratio(small["peak_memory_bytes"], large["peak_memory_bytes"]),
        "cost_ratio": _ratio(*(x["economics"]["cost_per_1k_usd"] if x.get("economics") else None for x in (small, large))),
        "energy_ratio": _ratio(*(x["economics"]["energy_per_request_j"] if x.get("economics") else None for x in (small, large))),
        "params_total_ratio": _ratio(params["small"]["total"], params["large"]["total"]),
        "params_active_ratio": _ratio(params["small"]["active"], params["large"]["active"]),
    }


def summarize_run(run_dir: Path, config: dict[str, Any] | None = None) -> dict[str, Any]:
    run_dir = Path(run_dir)
    if not (run_dir / "plan.json").is_file():
        raise HarnessError(f"{run_dir} is not a run directory (no plan.json)", "pass a directory written by a harness run, e.g. results/<date>/<time>_<pair>_<tasks>")
    plan = read_json(run_dir / "plan.json")
    if config is None:
        config = read_json(run_dir / "config.json") if (run_dir / "config.json").is_file() else {}
    hardware = config.get("hardware")
    models = {p.stem: read_json(p) for p in sorted((run_dir / "models").glob("*.json"))}  # by role
    results: dict[str, dict[str, Any]] = {}
    for role, task, path in iter_sample_files(run_dir):
        records = read_records(path)
        if not records:
            continue
        results.setdefault(task, {})[role] = summarize_model_task(records, read_json(meta_path(run_dir, role, task)), plan["tasks"].get(task), hardware)
    comparisons = {}
    if {"small", "large"} <= set(models):
        params = {role: models[role]["params"] for role in ("small", "large")}
        for task, per_role in results.items():
            if "small" in per_role and "large" in per_role:
                comparisons[task] = compare(per_role["small"], per_role["large"], params)
    missing = [t for t in plan["tasks"] if t not in results or len(results[t]) < len(models)]
    return {
        "run_dir": str(run_dir),
        "pair": plan["pair"],
        "task_group": plan["task_group"],
        "hardware": hardware,
        "models": models,  # role -> model record
        "tasks": {t: {**plan["tasks"][t], "results": results.get(t, {})} for t in plan["tasks"]},
        "comparisons": comparisons,
        "incomplete_tasks": missing,
    }
