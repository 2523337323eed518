"""Statistics of a comparison, per task: CIs, paired differences against the reference, McNemar, latency percentiles, cascade.

Reads the per-sample records (never a model) and writes ``analysis.json``.
Comparisons are refused when the two models did not answer the same items.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from harness.analysis.cascade import simulate
from harness.analysis.routing import evaluate_router
from harness.analysis.sample_size import sample_size
from harness.analysis.schema import Interval, ModelStatistics, PairedComparison, RunAnalysis, TaskAnalysis
from harness.analysis.sequential import paired_sequence
from harness.analysis.stats import (
    bootstrap_ci,
    mcnemar_exact,
    paired_difference,
    percentile_ci,
    ratio_of_statistics,
)
from harness.results.cost import per_sample_energy
from harness.results.records import SampleRecord
from harness.results.schema import RunSummary
from harness.tasks.types import TaskType

PERCENTILES = (50, 90, 95, 99)


def metric_values(records: list[SampleRecord], task_type: str) -> dict[str, list[float]]:
    """Per-sample values of every metric (accuracy = mean of 'correct')."""
    if task_type == "classification":
        return {"accuracy": [r.scores["correct"] for r in records]}
    names = sorted({k for r in records for k in r.scores})
    return {n: [r.scores[n] for r in records if n in r.scores and r.scores[n] == r.scores[n]] for n in names}


def latencies(records: list[SampleRecord]) -> list[float] | None:
    """Per-request latencies, or None for a throughput-mode cell (batched items have no latency of their own)."""
    lat = [r.latency_s for r in records]
    return None if not lat or any(v is None for v in lat) else lat  # type: ignore[return-value]


def model_statistics(records: list[SampleRecord], task_type: str, seed: int) -> ModelStatistics:
    lat = latencies(records)
    return ModelStatistics(
        n=len(records),
        quality={m: Interval.of(bootstrap_ci(v, seed=seed)) for m, v in metric_values(records, task_type).items() if v},
        latency_s={f"p{q}": Interval.of(percentile_ci(lat, q, seed=seed)) for q in PERCENTILES} if lat else None,
    )


def compare_models(
    cand: list[SampleRecord],
    ref: list[SampleRecord],
    task_type: str,
    seed: int,
    power: float,
    energy: dict[str, Any],
    keep_share: float,
    rule: Optional[dict[str, Any]] = None,
) -> PairedComparison:
    """A model against the reference on the same items: paired differences, McNemar, ratios, cascade.

    ``rule``: the run stopped when decided, so each difference's interval is its confidence sequence under that
    stop rule (a fixed-n interval is not valid after optional stopping; it is kept beside it as ``fixed_n``).
    """
    if [r.sample_id for r in cand] != [r.sample_id for r in ref]:
        return PairedComparison(False, "the two models did not answer the same items; no paired comparison")
    c_vals, r_vals = metric_values(cand, task_type), metric_values(ref, task_type)
    out = PairedComparison(True, n=len(cand))
    for metric in c_vals:
        if len(c_vals[metric]) == len(r_vals.get(metric, [])) and c_vals[metric]:
            fixed = Interval.of(paired_difference(c_vals[metric], r_vals[metric], seed=seed))
            if rule is None:
                out.difference_vs_reference[metric] = fixed
            else:
                seq = paired_sequence(
                    c_vals[metric],
                    r_vals[metric],
                    rule["alpha_per_comparison"],
                    rule.get("sequence", "asymptotic"),
                    rule.get("first_look", 1),
                )
                out.difference_vs_reference[metric] = Interval(
                    seq.value, seq.low, seq.high, seq.n, seq.method, alpha=seq.alpha, fixed_n=fixed
                )
            out.sample_size[metric] = sample_size(np.subtract(c_vals[metric], r_vals[metric]))
    if task_type == "classification":
        score = TaskType.classification.item_score
        out.mcnemar = mcnemar_exact([r.scores[score] > 0 for r in cand], [r.scores[score] > 0 for r in ref])
    c_lat, r_lat = latencies(cand), latencies(ref)
    c_item, r_item = [r.item_s for r in cand], [r.item_s for r in ref]
    # latency mode: request latencies; throughput mode: each item's share of its batch's time, labelled so
    basis = (
        "latency" if c_lat and r_lat else "time per item (throughput mode)"
    )  # the ratio of medians of this, as C5 names it
    out.latency_median_ratio = Interval.of(
        ratio_of_statistics(c_lat or c_item, r_lat or r_item, np.median, seed=seed), basis=basis
    )
    c_energy, c_method = per_sample_energy(c_item, energy.get("candidate"), power)
    r_energy, r_method = per_sample_energy(r_item, energy.get("reference"), power)
    out.energy_ratio_reference_over_candidate = Interval.of(ratio_of_statistics(r_energy, c_energy, np.mean, seed=seed))
    out.energy_ratio_reference_over_candidate.method = c_method if c_method == r_method else f"{c_method} / {r_method}"
    out.cascade = simulate(
        cand, ref, task_type, keep_share
    )  # in-sample: the curve, and the contrast to the held-out figure
    out.routing = evaluate_router(
        cand, ref, task_type, keep_share, seed=seed
    )  # held-out thresholds (C4, decisions), APGR, signals
    return out


def analyze_run(
    summary: RunSummary,
    records_by_cell: dict[tuple[str, str], list[SampleRecord]],
    keep_share: float = 0.95,
    seed: int = 0,
) -> RunAnalysis:
    """Per-task statistics: every model's, and every model against the reference (``records_by_cell``: (task, model) -> records)."""
    hardware = summary.hardware or {}
    power = float(hardware.get("power_w", 0.0))
    reference = summary.reference
    # a sequential run's intervals are anytime-valid, at the level its stop rule used (Bonferroni over its comparisons)
    rule = summary.sequential
    stopped = any(r.cell and r.cell.stopped for info in summary.tasks.values() for r in info.results.values())
    if stopped and not rule:  # stopped cells gathered from a store: no plan says the rule; the default one at 5%
        rule = {"alpha_per_comparison": 0.05}
    tasks: dict[str, TaskAnalysis] = {}
    for task, info in summary.tasks.items():
        results = info.results
        if not results:
            continue
        task_type = next(iter(results.values())).task_type
        records = {name: records_by_cell[(task, name)] for name in results}
        entry = TaskAnalysis(task_type, {n: model_statistics(recs, task_type, seed) for n, recs in records.items()})
        if reference in records:
            for name in records:
                if name == reference:
                    continue
                energy = {"candidate": results[name].energy, "reference": results[reference].energy}
                entry.comparisons[name] = compare_models(
                    records[name], records[reference], task_type, seed, power, energy, keep_share, rule
                )
        tasks[task] = entry
    return RunAnalysis(confidence_level=0.95, seed=seed, reference=reference, tasks=tasks)
