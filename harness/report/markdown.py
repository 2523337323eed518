"""``report.md``: the report's tables and notes as markdown (rows from ``harness.report.tables``)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from harness.analysis.load import LoadSummary
from harness.analysis.schema import RunAnalysis
from harness.config.schema import ReportConfig
from harness.measure.environment import EnvironmentRecord
from harness.report.inputs import ReportInputs
from harness.report.samples import SAMPLES_FILE
from harness.report.tables import (
    CELLS_HEADER,
    CLAIMS_HEADER,
    LEADERBOARD_HEADER,
    LOAD_HEADER,
    MODEL_HEADER,
    ROUTING_HEADER,
    STOPPING_HEADER,
    baseline_lines,
    cell_rows,
    claim_rows,
    cost_header,
    cost_rows,
    leaderboard_rows,
    load_note,
    load_rows,
    model_rows,
    pareto_figure,
    routing_rows,
    sampling_line,
    scale_note,
    secondary_lines,
    stats_header,
    stats_rows,
    stopping_rows,
    task_header,
    task_rows,
    task_title,
    top_notes,
)
from harness.results.schema import RunSummary
from harness.verdicts.claims import Verdict
from harness.verdicts.decision import (
    DECISION_HEADER,
    OPTIONS_HEADER,
    TaskDecision,
    decision_note,
    decision_rows,
    decision_title,
    option_rows,
)
from harness.verdicts.followup import PLAN_HEADER, plan_note, sample_size_rows


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(
    summary: RunSummary,
    environment: EnvironmentRecord | None = None,
    config: dict[str, Any] | None = None,
    verdicts: list[Verdict] | None = None,
    analysis: RunAnalysis | None = None,
    decision: dict[str, TaskDecision] | None = None,
    load: LoadSummary | None = None,
    settings: ReportConfig | None = None,
) -> str:
    """report.md: the decision, the claims, the comparison, the statistics, the models, costs, cells and method.

    Many models (``settings.leaderboard_from``): the decision, the claims, a leaderboard per task, the router, the
    models and the cells' counts; the per-comparison tables are left to analysis.json and decision.json."""
    r = ReportInputs(
        summary,
        environment or {},
        config or {},
        verdicts or [],
        analysis,
        decision or {},
        load,
        settings or ReportConfig(),
    )
    if r.large:
        return _render_large(r)
    title = "Small vs large" if len(summary.order) == 2 else f"{len(summary.order)} models"
    parts = [
        f"# {title}: {summary.name} on {summary.task_group}",
        "",
        *_top_notes(r),
        f"Every item, every model side by side: [{SAMPLES_FILE}]({SAMPLES_FILE}) (open it in a browser).",
        "",
    ]
    for section in (_decision, _claims, _tasks, _stopping, _statistics, _routing, _sample_size, _models, _cost, _load):
        parts += section(r)
    parts += _options(r) + _cells(r) + _method(r)
    return "\n".join(parts) + "\n"


def _render_large(r: ReportInputs) -> str:
    s, st = r.summary, r.settings
    parts = [
        f"# {len(s.order)} models: {s.name} on {s.task_group}",
        "",
        *_top_notes(r),
        scale_note(s, st.cascade_candidates, st.samples_candidates),
        "",
        f"The reference and the best candidates of each task, item by item: [{SAMPLES_FILE}]({SAMPLES_FILE}).",
        "",
    ]
    models = ["## Models", md_table(MODEL_HEADER, model_rows(s)), ""]
    for section in (_decision, _claims, _leaderboards, _routing, lambda _: models, _load):
        parts += section(r)
    return "\n".join(parts + _cell_counts(r) + _method(r)) + "\n"


def _top_notes(r: ReportInputs) -> list[str]:
    return [line for note in top_notes(r.summary) for line in (f"> **Warning.** {note}", "")]


def _leaderboards(r: ReportInputs) -> list[str]:
    tasks = [t for t, info in r.summary.tasks.items() if info.results]
    figures = sorted({pareto_figure(tasks, t, r.settings.pareto_tasks_per_figure) for t in tasks})
    parts = [
        "## Leaderboards: each task's models by score, each against the reference",
        "",
        "Quality against cost per 1,000 requests, one panel per task: the Pareto-optimal models are labelled and joined, "
        "every other model is a grey point, the reference a black square.",
        "",
        *[f"![quality vs cost, Pareto fronts]({'plots/' + f})" for f in figures],
        "",
    ]
    for task in tasks:
        metric = next(iter(r.summary.tasks[task].results.values())).primary_metric
        parts += [
            f"### {task} ({metric}; panel in {pareto_figure(tasks, task, r.settings.pareto_tasks_per_figure)})",
            "",
            md_table(LEADERBOARD_HEADER, leaderboard_rows(r.summary, r.analysis, task, r.standing(task))),
            "",
        ]
    return parts


def _cell_counts(r: ReportInputs) -> list[str]:
    s = r.summary
    counts = Counter(c["status"] if c.get("complete") else "missing" for c in s.cells)
    parts = [
        "",
        "## Cells",
        "",
        ", ".join(f"{n:,} {k}" for k, n in sorted(counts.items())) + " (cells.json lists each).",
    ]
    if s.missing_cells or s.incomplete_tasks:
        parts += [
            "",
            f"Not reportable: {', '.join(s.missing_cells) or 'none listed'}; tasks missing a model: "
            f"{', '.join(s.incomplete_tasks) or 'none'}. `harness cells DIR --missing` lists each (model, task) cell not yet "
            "complete; rerun the same command to compute them.",
        ]
    return parts


def _load(r: ReportInputs) -> list[str]:
    if r.load is None:
        return []
    return [
        "## Latency under load (load test)",
        md_table(LOAD_HEADER, load_rows(r.load)),
        "",
        load_note(r.load),
        "",
        "![latency under load](plots/load_latency.png)",
        "",
    ]


def _decision(r: ReportInputs) -> list[str]:
    if not r.decision:
        return []
    d = r.decision
    return [f"## {decision_title(d)}", md_table(DECISION_HEADER, decision_rows(d)), "", decision_note(d), ""]


def _claims(r: ReportInputs) -> list[str]:
    if not r.verdicts:
        return []
    return [
        "## Claims of the seed articles",
        md_table(CLAIMS_HEADER, claim_rows(r.verdicts, r.claim_keep)),
        "",
        *[f"- **{v.id}** ({v.verdict}): {v.sentence}" for v in r.verdicts],
        "",
        "Verdicts hold for these models and tasks only. supported/refuted need the whole 95% interval on one side of the "
        "claim's threshold; inconclusive means it straddles it; thresholds are in configs/claims/ (claims.json has every number).",
        "",
    ]


def _tasks(r: ReportInputs) -> list[str]:
    return [
        f"## {task_title(r.summary)}",
        md_table(task_header(r.summary), task_rows(r.summary)),
        "",
        "Quality: accuracy for classification (label scored by log-likelihood), ROUGE-L F1 for summarization (x100). "
        "Timing mode: latency mode (batch size 1) times each request end to end after warm-up (p50/p95 latency; "
        "time to first token and decode speed for generation); throughput mode (batch size > 1) reports items/s and tokens/s "
        "and no per-request latency, since a batch's time is not a request's latency (costs and ratios then use each item's "
        "share of its batch's time, and say so). "
        "Peak memory is the GPU allocator peak on CUDA, the process peak RSS on CPU.",
        "",
        *_baselines(r),
    ]


def _baselines(r: ReportInputs) -> list[str]:
    lines = baseline_lines(r.summary, r.settings.one_label_percent)
    return ["Accuracy without reading the items (classification):", "", *lines, ""] if lines else []


def _stopping(r: ReportInputs) -> list[str]:
    rule = r.summary.sequential
    stop_rows = stopping_rows(r.summary, r.analysis) if r.analysis else []
    if not (rule and stop_rows):
        return []
    return [
        "## Stopped when decided (runtime.stop_when_decided)",
        md_table(STOPPING_HEADER, stop_rows),
        "",
        f"Items were taken in a seeded random order. After {rule.first_look} items, then at each look {rule.look_growth:g}x "
        f"further, every model ran the new items and an anytime-valid confidence sequence ({rule.method}) of each paired "
        f"difference was updated; a task stopped once {', '.join(rule.claims)} were decided for every model (interval clear of "
        f"each threshold), or at its cap. Each sequence runs at level {rule.alpha_per_comparison:.4g} ({rule.alpha:g} over "
        f"{rule.comparisons} comparisons, Bonferroni), so the verdicts keep a 5% family-wise error under this optional stopping; "
        "the intervals of this report are these, wider than fixed-n intervals at the same n. Time saved: items not run x each "
        "model's mean time per item on the task. On CPU a cell's peak memory is its first look's (the process RSS grows as models "
        "are reloaded at later looks); GPU allocator peaks are over every look.",
        "",
    ]


def _statistics(r: ReportInputs) -> list[str]:
    rows = stats_rows(r.summary, r.analysis) if r.analysis else []
    if not rows:
        return []
    return [
        "## Statistics (95% bootstrap intervals; paired over the same items)"
        if not r.summary.sequential
        else "## Statistics (paired differences: anytime-valid intervals, see above; per-model scores: 95% bootstrap intervals)",
        md_table(stats_header(r.summary), rows),
        "",
    ]


def _routing(r: ReportInputs) -> list[str]:
    route_rows = routing_rows(r.analysis) if r.analysis else []
    if not route_rows:
        return []
    return [
        "## Cascade measured as a router (small first, large when unsure)",
        md_table(ROUTING_HEADER, route_rows),
        "",
        "Score x100; cost relative to the large model alone. In-sample: the threshold is chosen and scored on the same items "
        "for contrast. Cross-fitted (C4 and the decision table use it): each of 5 seeded folds is routed by the threshold chosen on the other folds (the cheapest "
        "keeping 95% of the large model's score there), so no item helps choose its own threshold. APGR: the performance gap "
        "recovered, averaged over the share of calls escalated (RouteLLM); a random router gets 0.50.",
        "",
    ]


def _sample_size(r: ReportInputs) -> list[str]:
    claims_cfg = r.config.get("claims") or {}
    size_rows = sample_size_rows(r.summary, r.analysis, r.verdicts, claims_cfg) if r.analysis else []
    if not size_rows:
        return []
    return [
        "## How many items are enough",
        md_table(PLAN_HEADER, size_rows),
        "",
        plan_note(),
        "`harness followup <run>` prints this table for a follow-up run.",
        "",
    ]


def _models(r: ReportInputs) -> list[str]:
    return [
        "## Models",
        md_table(MODEL_HEADER, model_rows(r.summary)),
        "",
        "## All metrics",
        *secondary_lines(r.summary),
    ]


def _cost(r: ReportInputs) -> list[str]:
    rows, hw = cost_rows(r.summary), r.summary.hardware
    if not rows or hw is None:  # costs are priced only under a hardware profile
        return []
    return [
        "",
        f"## Cost, energy and carbon (hardware profile {hw.name}: {hw.description})",
        md_table(cost_header(r.summary), rows),
        "",
        f"Cost = ${hw.hourly_usd}/h x measured time per request. Energy is measured (NVML, RAPL) where a counter could be read, "
        f"otherwise **estimated** as {hw.power_w} W x measured time; CO2 at {hw.grid_gco2_per_kwh} g/kWh. "
        f"Copies that fit: {hw.memory_gb} GB / peak memory.",
    ]


def _options(r: ReportInputs) -> list[str]:
    return (
        ["", "## Every option of the decision table", md_table(OPTIONS_HEADER, option_rows(r.decision))]
        if r.decision
        else []
    )


def _cells(r: ReportInputs) -> list[str]:
    s = r.summary
    parts = [
        "",
        "## Cells (one model on one task; records and manifest in the store)",
        md_table(CELLS_HEADER, cell_rows(s)),
    ]
    if s.missing_cells:
        parts += [
            "",
            f"**Missing cells:** {', '.join(s.missing_cells)} (not complete: rerun the same command to compute them; they are left out of every table above).",
        ]
    if s.not_run:
        parts += ["", f"Not run in any of the combined runs: {', '.join(s.not_run)}."]
    return parts


def _method(r: ReportInputs) -> list[str]:
    env = r.environment
    if not env:
        return []
    pk = env.get("packages", {})
    return [
        "",
        "## Method",
        f"- Hardware: {env.get('cpu')} ({env.get('cpu_count')} CPUs, {env.get('torch_threads')} torch threads)"
        + (f"; GPUs: {', '.join(env['cuda']['devices'])}" if env.get("cuda") else ""),
        f"- Versions: python {env.get('python')}, torch {pk.get('torch')}, transformers {pk.get('transformers')}, lm_eval {pk.get('lm_eval')}",
        sampling_line(r.config),
        f"- Code: git {env.get('git_commit') or 'unknown'}{' (dirty)' if env.get('git_dirty') else ''}",
        "- Records: each cell's records.jsonl (paths in cells.json) holds every prompt, prediction, score and timing behind these numbers.",
        "- Multiple comparisons: a C2/C3 verdict over several tasks and models decides a comparison only when its 95% paired bootstrap "
        "interval excludes the threshold and the Holm-adjusted one-sided paired t-test (over that claim's comparisons, level 0.05) rejects; "
        "the claim's family-wise error rate stays at 5%."
        if not r.summary.sequential
        else "- Multiple comparisons: sequential run; each paired difference's anytime-valid interval is at level 0.05 / comparisons "
        "(Bonferroni), and it alone decides C2/C3 (a fixed-n test is not valid after optional stopping).",
    ]
