"""Statistics of a comparison, per task: CIs, paired differences against the reference, McNemar, latency percentiles, cascade.

Reads the per-sample outcomes of each cell (``CellOutcomes``: the records' numbers, read once; never a model) and
writes ``analysis.json``. Comparisons are refused when the two models did not answer the same items. Every
interval of a task is computed over the same bootstrap resamples (``harness.analysis.stats``), drawn once.
With many models, the cascade and the router are simulated for the best few candidates of each task only
(``cascades``), not for every model against the reference.
"""

from __future__ import annotations

import gc
import multiprocessing
from collections.abc import Mapping, Sequence
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
    percentile_cis,
    ratio_of_statistics,
)
from harness.results.cost import per_sample_energy
from harness.results.outcomes import CellOutcomes, Outcomes, as_outcomes
from harness.results.records import SampleRecord
from harness.results.schema import CellSummary, RunSummary, StopRule
from harness.results.summary import cross_hardware
from harness.tasks.metrics import load_rouge
from harness.tasks.types import is_classification

PERCENTILES = (50, 90, 95, 99)


def metric_values(records: Sequence[SampleRecord], task_type: str) -> dict[str, list[float]]:
    """Per-sample values of every metric (accuracy = mean of 'correct')."""
    return {m: v.tolist() for m, v in CellOutcomes.of(records, task_type).metrics.items()}


def latencies(records: Sequence[SampleRecord]) -> list[float] | None:
    """Per-request latencies, or None for a throughput-mode cell (batched items have no latency of their own)."""
    lat = [r.latency_s for r in records]
    return None if not lat or any(v is None for v in lat) else lat  # type: ignore[return-value]


def model_statistics(cell: Outcomes, task_type: str, seed: int) -> ModelStatistics:
    c = as_outcomes(cell, task_type)
    lat = c.latency_s
    return ModelStatistics(
        n=c.n,
        quality={m: Interval.of(bootstrap_ci(v, seed=seed)) for m, v in c.metrics.items() if len(v)},
        latency_s={f"p{q}": Interval.of(e) for q, e in zip(PERCENTILES, percentile_cis(lat, PERCENTILES, seed=seed))}
        if lat is not None
        else None,
    )


def _difference(candidate: np.ndarray, reference: np.ndarray, seed: int, rule: Optional[StopRule]) -> Interval:
    """One metric's paired difference: the fixed-n interval, or the confidence sequence under the stop rule."""
    fixed = Interval.of(paired_difference(candidate, reference, seed=seed))
    if rule is None:
        return fixed
    seq = paired_sequence(
        candidate.tolist(),
        reference.tolist(),
        rule.alpha_per_comparison,
        rule.sequence,
        rule.first_look,
    )
    return Interval(seq.value, seq.low, seq.high, seq.n, seq.method, alpha=seq.alpha, fixed_n=fixed)


def _differences(
    out: PairedComparison, cand: CellOutcomes, ref: CellOutcomes, seed: int, rule: Optional[StopRule]
) -> None:
    """Record each metric's difference against the reference and the sample size it would need."""
    c_vals, r_vals = cand.metrics, ref.metrics
    for metric in c_vals:
        if len(c_vals[metric]) == len(r_vals.get(metric, [])) and len(c_vals[metric]):
            out.difference_vs_reference[metric] = _difference(c_vals[metric], r_vals[metric], seed, rule)
            out.sample_size[metric] = sample_size(np.subtract(c_vals[metric], r_vals[metric]))


def _latency_ratio(cand: CellOutcomes, ref: CellOutcomes, seed: int) -> Interval:
    """The ratio of median time per item, candidate over reference, labelled with what was timed."""
    c_lat, r_lat = cand.latency_s, ref.latency_s
    # latency mode: request latencies; throughput mode: each item's share of its batch's time, labelled so
    timed = c_lat is not None and r_lat is not None and len(c_lat) > 0 and len(r_lat) > 0
    basis = "latency" if timed else "time per item (throughput mode)"  # the ratio of medians of this, as C5 names it
    c_time = c_lat if c_lat is not None and len(c_lat) else cand.item_s
    r_time = r_lat if r_lat is not None and len(r_lat) else ref.item_s
    return Interval.of(ratio_of_statistics(c_time, r_time, np.median, seed=seed), basis=basis)


def compare_models(
    cand_cell: Outcomes,
    ref_cell: Outcomes,
    task_type: str,
    seed: int,
    power: float,
    results: tuple[CellSummary, CellSummary],
    keep_share: float,
    rule: Optional[StopRule] = None,
    cascade: bool = True,
    timed: bool = True,
) -> PairedComparison:
    """A model against the reference on the same items: paired differences, McNemar, ratios, cascade.

    ``results``: the candidate's and the reference's cell summaries (their recorded energy readings).
    ``rule``: the run stopped when decided, so each difference's interval is its confidence sequence under that
    stop rule (a fixed-n interval is not valid after optional stopping; it is kept beside it as ``fixed_n``).
    ``cascade``: simulate the cascade and the router too (every candidate of a small comparison; the best few of a large one).
    ``timed``: False where the two cells ran on different hardware classes: no latency or energy ratio (they would
    compare the machines).
    """
    cand, ref = as_outcomes(cand_cell, task_type), as_outcomes(ref_cell, task_type)
    if cand.sample_ids != ref.sample_ids:
        return PairedComparison(False, "the two models did not answer the same items; no paired comparison")
    out = PairedComparison(True, n=cand.n)
    _differences(out, cand, ref, seed, rule)
    if is_classification(task_type):
        out.mcnemar = mcnemar_exact((cand.item_score > 0).tolist(), (ref.item_score > 0).tolist())
    if not timed:  # the cascade and the router price each model by its time too: not across machines either
        out.cross_hardware = True
        return out
    out.latency_median_ratio = _latency_ratio(cand, ref, seed)
    c_energy, c_method = per_sample_energy(cand.item_s.tolist(), results[0].energy, power)
    r_energy, r_method = per_sample_energy(ref.item_s.tolist(), results[1].energy, power)
    out.energy_ratio_reference_over_candidate = Interval.of(ratio_of_statistics(r_energy, c_energy, np.mean, seed=seed))
    out.energy_ratio_reference_over_candidate.method = c_method if c_method == r_method else f"{c_method} / {r_method}"
    if cascade:
        # in-sample: the curve, and the contrast to the held-out figure
        out.cascade = simulate(cand, ref, task_type, keep_share)
        # held-out thresholds (C4, decisions), APGR, signals
        out.routing = evaluate_router(cand, ref, task_type, keep_share, seed=seed)
    return out


def _analyze_task(
    summary: RunSummary,
    task: str,
    outcomes_by_cell: Mapping[tuple[str, str], Outcomes],
    keep_share: float,
    seed: int,
    rule: Optional[StopRule],
    cascades: Optional[Mapping[str, Sequence[str]]],
) -> Optional[TaskAnalysis]:
    results = summary.tasks[task].results
    if not results:
        return None
    reference = summary.reference
    power = float(summary.hardware.power_w) if summary.hardware else 0.0
    task_type = next(iter(results.values())).task_type
    cells = {name: as_outcomes(outcomes_by_cell[(task, name)], task_type) for name in results}
    chosen = None if cascades is None else set(cascades.get(task, ()))
    stats: dict[str, ModelStatistics] = {}
    comparisons: dict[str, PairedComparison] = {}
    if reference in cells:
        stats[reference] = model_statistics(cells[reference], task_type, seed)
    # each model's statistics, then at once its comparison: its resamples are still at hand (stats' memo)
    for name, cell in cells.items():
        if name == reference:
            continue
        stats[name] = model_statistics(cell, task_type, seed)
        if reference in cells:
            comparisons[name] = compare_models(
                cell,
                cells[reference],
                task_type,
                seed,
                power,
                (results[name], results[reference]),
                keep_share,
                rule,
                cascade=chosen is None or name in chosen,
                timed=not cross_hardware(results[name], results[reference]),
            )
    entry = TaskAnalysis(task_type, {n: stats[n] for n in cells})  # in the summary's order, as always
    entry.comparisons.update(comparisons)
    return entry


# what forked workers read (set just before the fork, so the outcomes are shared, never pickled)
_FORKED: Optional[tuple[Any, ...]] = None


def _analyze_forked(task: str) -> Optional[TaskAnalysis]:
    assert _FORKED is not None
    return _analyze_task(_FORKED[0], task, *_FORKED[1:])


def analyze_run(
    summary: RunSummary,
    outcomes_by_cell: Mapping[tuple[str, str], Outcomes],
    keep_share: float = 0.95,
    seed: int = 0,
    cascades: Optional[Mapping[str, Sequence[str]]] = None,
    workers: int = 1,
) -> RunAnalysis:
    """Per-task statistics: every model's, and every model against the reference (``outcomes_by_cell``: (task, model)
    -> outcomes or records). ``cascades``: per task, the candidates whose cascade is simulated (None: every one).
    ``workers`` > 1: tasks are analysed by that many forked processes (tasks are independent; the results are the
    same numbers, in the same order)."""
    global _FORKED
    # a sequential run's intervals are anytime-valid, at the level its stop rule used (Bonferroni over its comparisons)
    rule = summary.sequential
    stopped = any(r.cell and r.cell.stopped for info in summary.tasks.values() for r in info.results.values())
    if stopped and not rule:  # stopped cells gathered from a store: no plan says the rule; the default one at 5%
        rule = StopRule()
    names = list(summary.tasks)
    if workers > 1 and len(names) > 1 and "fork" in multiprocessing.get_all_start_methods():
        if any(not is_classification(r.task_type) for info in summary.tasks.values() for r in info.results.values()):
            load_rouge()  # the cascade's agreement on generation tasks: imported once, before the fork
        _FORKED = (summary, outcomes_by_cell, keep_share, seed, rule, cascades)
        gc.freeze()  # the inherited outcomes are never collected in the workers: no walk over (and copy of) them
        try:
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                entries = pool.map(_analyze_forked, names, chunksize=1)
        finally:
            _FORKED = None
    else:
        entries = [_analyze_task(summary, t, outcomes_by_cell, keep_share, seed, rule, cascades) for t in names]
    tasks = {t: e for t, e in zip(names, entries) if e is not None}
    return RunAnalysis(confidence_level=0.95, seed=seed, reference=summary.reference, tasks=tasks)
