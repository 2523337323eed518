"""A self-contained ``report.html``: the same tables as report.md, plots embedded, no network needed."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any
from urllib.parse import quote

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

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;color:#222;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
table{border-collapse:collapse;font-size:.82rem;margin:.5rem 0}th,td{border:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f4f4f4}.supported{background:#e3f4e3}.refuted{background:#fbe3e3}.inconclusive{background:#fff6d9}.not{color:#777}
img{max-width:100%;border:1px solid #eee;margin:.5rem 0}.note{color:#555;font-size:.85rem}.warning{background:#fff3cd;border:1px solid #e0c36a;padding:.5rem .8rem}blockquote{color:#555;margin:.2rem 0 .2rem 1rem;font-size:.8rem}
"""
# the leaderboards of a report of many models: folded per task, numbers right-aligned, the Pareto front shaded
_CSS_LARGE = """details{margin:.3rem 0}summary{cursor:pointer;font-weight:600}
.lb td:nth-child(1),.lb td:nth-child(4),.lb td:nth-child(5),.lb td:nth-child(7),.lb td:nth-child(8){text-align:right;white-space:nowrap}
tr.front td{background:#eef6ff}
"""


def _top_notes(r: ReportInputs) -> list[str]:
    return [f"<p class='warning'><strong>Warning.</strong> {html.escape(n)}</p>" for n in top_notes(r.summary)]


def _table(header: list[str], rows: list[list[str]], row_class: list[str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{row_class[i]}"' if row_class else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def render_html(
    summary: RunSummary,
    env: EnvironmentRecord | None,
    config: dict[str, Any] | None,
    verdicts: list[Verdict],
    plots: dict[str, Path],
    analysis: RunAnalysis | None = None,
    decision: dict[str, TaskDecision] | None = None,
    load: LoadSummary | None = None,
    settings: ReportConfig | None = None,
) -> str:
    """report.html: the markdown report's tables with the plots embedded, in one file that needs no network."""
    r = ReportInputs(
        summary, env or {}, config or {}, verdicts, analysis, decision or {}, load, settings or ReportConfig()
    )
    name, group = html.escape(summary.name), html.escape(summary.task_group)
    if r.large:
        return _render_large(r, plots)
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{name} on {group}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Small vs large: {name} on {group}</h1>",
        *_top_notes(r),
        f"<p class='note'>Every item, every model side by side, filtered by outcome: <a href='{SAMPLES_FILE}'>"
        f"the per-sample comparison ({SAMPLES_FILE})</a>.</p>",
    ]
    for section in (_decision, _claims, _tasks, _statistics):
        parts += section(r)
    parts += _plots(plots) + _models_and_cost(r) + _load(r) + _cells(r) + _method(r)
    return "\n".join(parts)


def _render_large(r: ReportInputs, plots: dict[str, Path]) -> str:
    """Many models: the decision, the claims, then per task its Pareto panel and its leaderboard (folded)."""
    s, st = r.summary, r.settings
    name, group = html.escape(s.name), html.escape(s.task_group)
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{name} on {group}</title>",
        f"<style>{_CSS}{_CSS_LARGE}</style></head><body>",
        f"<h1>{len(s.order)} models: {name} on {group}</h1>",
        *_top_notes(r),
        f"<p class='note'>{html.escape(scale_note(s, st.cascade_candidates, st.samples_candidates))}</p>",
        f"<p class='note'>The reference and the best candidates of each task, item by item: <a href='{SAMPLES_FILE}'>{SAMPLES_FILE}</a>.</p>",
    ]
    parts += _decision(r) + _claims(r)
    tasks = [t for t, info in s.tasks.items() if info.results]
    parts += [
        "<h2>Quality vs cost: the Pareto front of each task</h2>",
        "<p class='note'>One panel per task: the Pareto-optimal models (no other model scores higher for less) are "
        "labelled and joined, every other model is a grey point, the reference a black square.</p>",
    ]
    parts += [
        _img(path, "quality vs cost, Pareto fronts")
        for key, path in sorted(plots.items())
        if key.startswith("pareto_front")
    ]
    parts.append("<h2>Leaderboards: each task's models by score, each against the reference</h2>")
    for i, task in enumerate(tasks):
        rows = leaderboard_rows(s, r.analysis, task, r.standing(task))
        classes = ["front" if row[-1] else "" for row in rows]
        metric = next(iter(s.tasks[task].results.values())).primary_metric
        best = rows[0][1] if rows else "-"
        summary_line = (
            f"{task} ({metric}): best {best}; {sum(1 for c in classes if c)} on the Pareto front "
            f"(panel in {pareto_figure(tasks, task, st.pareto_tasks_per_figure)})"
        )
        table = _table(LEADERBOARD_HEADER, rows, classes).replace("<table>", "<table class='lb'>", 1)
        parts.append(
            f"<details{' open' if i == 0 else ''}><summary>{html.escape(summary_line)}</summary>{table}</details>"
        )
    if route_rows := (routing_rows(r.analysis) if r.analysis else []):
        parts += [
            "<h2>Cascade measured as a router (the best candidates of each task)</h2>",
            _table(ROUTING_HEADER, route_rows),
        ]
    parts += ["<h2>Models</h2>", _table(MODEL_HEADER, model_rows(s))] + _load(r)
    counts: dict[str, int] = {}
    for c in s.cells:
        status = c["status"] if c.get("complete") else "missing"
        counts[status] = counts.get(status, 0) + 1
    parts += [
        "<h2>Cells</h2>",
        f"<p>{html.escape(', '.join(f'{n:,} {k}' for k, n in sorted(counts.items())))} (cells.json lists each). "
        f"Tasks missing a model: {html.escape(', '.join(s.incomplete_tasks) or 'none')}; "
        "<code>harness cells DIR --missing</code> lists each cell not yet reportable.</p>",
    ]
    return "\n".join(parts + _method(r))


def _decision(r: ReportInputs) -> list[str]:
    if not r.decision:
        return []
    table = _table(DECISION_HEADER, decision_rows(r.decision))
    for task in r.decision:  # each task's row leads to its items, side by side
        cell = f"<tr><td>{html.escape(task)}</td>"
        table = table.replace(
            cell, f"<tr><td><a href='{SAMPLES_FILE}#task={quote(task)}'>{html.escape(task)}</a></td>", 1
        )
    return [
        f"<h2>{html.escape(decision_title(r.decision))}</h2>",
        table,
        f"<p class='note'>{html.escape(decision_note(r.decision))}</p>",
    ]


def _claims(r: ReportInputs) -> list[str]:
    if not r.verdicts:
        return []
    classes = [v.verdict.split()[0] for v in r.verdicts]
    parts = [
        "<h2>Claims of the seed articles</h2>",
        _table(CLAIMS_HEADER, claim_rows(r.verdicts, r.claim_keep), classes),
        "<ul>",
    ]
    for v in r.verdicts:
        parts.append(
            f"<li><b>{html.escape(v.id)}</b> ({html.escape(v.verdict)}): {html.escape(v.sentence)}"
            f"<blockquote>{html.escape(v.quote)} ({html.escape(v.who)}, {html.escape(v.source)})</blockquote></li>"
        )
    return parts + [
        "</ul>",
        "<p class='note'>Verdicts hold for these models and tasks only; supported/refuted need the whole 95% interval on one side of the threshold.</p>",
    ]


def _tasks(r: ReportInputs) -> list[str]:
    lines = baseline_lines(r.summary, r.settings.one_label_percent)
    items = "".join(f"<li>{html.escape(x.lstrip(' -').replace('**', ''))}</li>" for x in lines)
    return [f"<h2>{html.escape(task_title(r.summary))}</h2>", _table(task_header(r.summary), task_rows(r.summary))] + (
        [f"<p class='note'>Accuracy without reading the items (classification):</p><ul class='note'>{items}</ul>"]
        if lines
        else []
    )


def _statistics(r: ReportInputs) -> list[str]:
    s, a, parts = r.summary, r.analysis, []
    stop_rows, stat_rows, route_rows = (stopping_rows(s, a), stats_rows(s, a), routing_rows(a)) if a else ([], [], [])
    if stop_rows:
        parts += [
            "<h2>Stopped when decided (runtime.stop_when_decided)</h2>",
            _table(STOPPING_HEADER, stop_rows),
            "<p class='note'>Intervals of paired differences are anytime-valid (see report.md for the rule).</p>",
        ]
    if stat_rows:
        parts += [
            "<h2>Statistics (95% bootstrap intervals, paired over the same items)</h2>",
            _table(stats_header(s), stat_rows),
        ]
    if route_rows:
        parts += ["<h2>Cascade measured as a router</h2>", _table(ROUTING_HEADER, route_rows)]
    if r.decision:
        parts += ["<h2>Every option of the decision table</h2>", _table(OPTIONS_HEADER, option_rows(r.decision))]
    return parts


PLOT_TITLES = [
    ("quality_with_ci", "Quality with 95% CI"),
    ("quality_vs_latency", "Quality vs latency"),
    ("quality_vs_memory", "Quality vs memory"),
    ("quality_vs_cost", "Quality vs cost"),
    ("cascade", "Cascade: small first, large when unsure"),
    ("load_latency", "Latency under load"),
]


def _plots(plots: dict[str, Path]) -> list[str]:
    return [
        part for name, title in PLOT_TITLES if name in plots for part in (f"<h2>{title}</h2>", _img(plots[name], title))
    ]


def _models_and_cost(r: ReportInputs) -> list[str]:
    s, hw = r.summary, r.summary.hardware
    parts = ["<h2>Models</h2>", _table(MODEL_HEADER, model_rows(s))]
    if (rows := cost_rows(s)) and hw is not None:
        parts += [
            f"<h2>Cost, energy and carbon ({html.escape(str(hw.name))})</h2>",
            _table(cost_header(s), rows),
            f"<p class='note'>USD {hw.hourly_usd}/h; energy measured where a counter was readable, otherwise estimated as {hw.power_w} W x time; {hw.grid_gco2_per_kwh} g CO2/kWh.</p>",
        ]
    return parts + [
        "<h2>All metrics</h2><ul>"
        + "".join(f"<li>{html.escape(line.lstrip('- '))}</li>" for line in secondary_lines(s))
        + "</ul>"
    ]


def _load(r: ReportInputs) -> list[str]:
    if r.load is None:
        return []
    return [
        "<h2>Latency under load (load test)</h2>",
        _table(LOAD_HEADER, load_rows(r.load)),
        f"<p class='note'>{html.escape(load_note(r.load))}</p>",
    ]


def _cells(r: ReportInputs) -> list[str]:
    parts = ["<h2>Cells</h2>", _table(CELLS_HEADER, cell_rows(r.summary))]
    if r.summary.missing_cells:
        parts += [
            f"<p><b>Missing cells:</b> {html.escape(', '.join(r.summary.missing_cells))} (rerun the same command to compute them).</p>"
        ]
    return parts


def _method(r: ReportInputs) -> list[str]:
    env = r.environment
    pk = env.get("packages", {})
    return [
        "<h2>Method</h2><ul>",
        f"<li>Hardware: {html.escape(str(env.get('cpu')))} ({env.get('cpu_count')} CPUs)"
        + (f"; GPUs: {html.escape(', '.join(env['cuda']['devices']))}" if env.get("cuda") else "")
        + "</li>",
        f"<li>{html.escape(sampling_line(r.config).lstrip('- '))}</li>",
        f"<li>Versions: torch {pk.get('torch')}, transformers {pk.get('transformers')}, lm_eval {pk.get('lm_eval')}; git {env.get('git_commit')}</li>",
        "<li>Every number comes from the cells' records.jsonl (paths in cells.json); statistics in analysis.json, verdicts in claims.json.</li></ul>",
        "</body></html>",
    ]
