"""Statistics of a run, per task: CIs, paired differences, McNemar, latency percentiles, cascade.

Reads the per-sample records (never a model) and writes ``analysis.json``.
Comparisons are refused when the two models did not answer the same items.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from harness.cascade import simulate
from harness.cost import per_sample_energy
from harness.records import meta_path, read_json, read_records, samples_path
from harness.stats import bootstrap_ci, mcnemar_exact, paired_difference, percentile_ci, ratio_of_statistics

PERCENTILES = (50, 90, 95, 99)


def _metric_values(records: list[dict[str, Any]], task_type: str) -> dict[str, list[float]]:
    """Per-sample values of every metric (accuracy = mean of 'correct')."""
    if task_type == "classification":
        return {"accuracy": [r["scores"]["correct"] for r in records]}
    names = sorted({k for r in records for k in r["scores"]})
    return {n: [r["scores"][n] for r in records if n in r["scores"] and r["scores"][n] == r["scores"][n]] for n in names}


def model_statistics(records: list[dict[str, Any]], task_type: str, seed: int) -> dict[str, Any]:
    lat = [r["latency_s"] for r in records]
    return {
        "n": len(records),
        "quality": {m: bootstrap_ci(v, seed=seed).to_dict() for m, v in _metric_values(records, task_type).items() if v},
        "latency_s": {f"p{q}": percentile_ci(lat, q, seed=seed).to_dict() for q in PERCENTILES},
    }


def compare_models(small: list[dict[str, Any]], large: list[dict[str, Any]], task_type: str, seed: int,
                   power: dict[str, float], energy: dict[str, Any], keep_share: float) -> dict[str, Any]:
    """Small vs large on the same items: paired differences, McNemar, ratios, cascade."""
    if [r["sample_id"] for r in small] != [r["sample_id"] for r in large]:
        return {"same_items": False, "reason": "the two models did not answer the same items; no paired comparison"}
    s_vals, l_vals = _metric_values(small, task_type), _metric_values(large, task_type)
    out: dict[str, Any] = {"same_items": True, "n": len(small), "difference_small_minus_large": {}}
    for metric in s_vals:
        if len(s_vals[metric]) == len(l_vals.get(metric, [])) and s_vals[metric]:
            out["difference_small_minus_large"][metric] = paired_difference(s_vals[metric], l_vals[metric], seed=seed).to_dict()
    if task_type == "classification":
        out["mcnemar"] = mcnemar_exact([r["scores"]["correct"] > 0 for r in small], [r["scores"]["correct"] > 0 for r in large]).to_dict()
    s_lat, l_lat = [r["latency_s"] for r in small], [r["latency_s"] for r in large]
    out["latency_median_ratio"] = ratio_of_statistics(s_lat, l_lat, np.median, seed=seed).to_dict()
    s_energy, s_method = per_sample_energy(s_lat, energy.get("small"), power["small"])
    l_energy, l_method = per_sample_energy(l_lat, energy.get("large"), power["large"])
    out["energy_ratio_large_over_small"] = {**ratio_of_statistics(l_energy, s_energy, np.mean, seed=seed).to_dict(),
                                            "method": s_method if s_method == l_method else f"{s_method} / {l_method}"}
    out["cascade"] = simulate(small, large, task_type, keep_share)
    return out


def analyze_run(run_dir: Path, summary: dict[str, Any], keep_share: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """Per-task statistics for every task both models ran."""
    run_dir = Path(run_dir)
    hardware = summary.get("hardware") or {}
    power = float(hardware.get("power_w", 0.0))
    tasks: dict[str, Any] = {}
    for task, info in summary["tasks"].items():
        results = info["results"]
        if not results:
            continue
        task_type = next(iter(results.values()))["task_type"]
        records = {role: read_records(samples_path(run_dir, role, task)) for role in results}
        entry: dict[str, Any] = {"task_type": task_type, "models": {r: model_statistics(recs, task_type, seed) for r, recs in records.items()}}
        if "small" in records and "large" in records:
            energy = {role: read_json(meta_path(run_dir, role, task)).get("energy") for role in ("small", "large")}
            entry["comparison"] = compare_models(records["small"], records["large"], task_type, seed,
                                                 {"small": power, "large": power}, energy, keep_share)
        tasks[task] = entry
    return {"confidence_level": 0.95, "seed": seed, "tasks": tasks}
