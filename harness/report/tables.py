"""The report's tables as rows of strings: the one view model that the markdown, HTML and terminal renderers share.

Two models read as small vs large, side by side in one row per task (S / L);
three or more get one row per model and task, each model against the reference;
many (``report.leaderboard_from``) get a leaderboard per task instead.
Every cell of every table comes from ``summary.json`` / ``analysis.json``,
themselves computed from the records.
"""

from __future__ import annotations

from typing import Any, Optional

from harness.analysis.load import LoadStep, LoadSummary, ModelLoad, slo_text
from harness.analysis.schema import Interval, ModelStatistics, RunAnalysis
from harness.analysis.stats import McNemar
from harness.results.leaderboard import pareto_models, ranked
from harness.results.load import CLOSED
from harness.results.schema import CellSummary, ModelRecord, RunSummary, TaskSummary
from harness.verdicts.claims import Verdict

METRIC_LABEL = {"accuracy": "accuracy %", "rougeL": "ROUGE-L x100"}


def _num(value: Optional[float], fmt: str = "{:.1f}") -> str:
    return "-" if value is None else fmt.format(value)


def _bytes(value: Optional[float]) -> str:
    if value is None:
        return "-"
    return f"{value / 2**30:.2f} GiB" if value >= 2**30 else f"{value / 2**20:.0f} MiB"


def _ms(seconds: Optional[float]) -> str:
    return "-" if seconds is None else (f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s")


def _params(m: ModelRecord) -> str:
    total = f"{m.params_total / 1e6:,.1f}M"
    published = m.published_params
    if published and abs(published - m.params_total) > 0.005 * published:  # the loaded model is not the published count
        total += f" loaded, {published / 1e6:,.1f}M published"
    return f"{total} ({m.params_active / 1e6:,.1f}M active)" if m.is_moe else total


def _ci(est: Interval | None, scale: float = 100.0) -> str:
    if not est:
        return "-"
    return f"{est.value * scale:.1f} [{est.low * scale:.1f}, {est.high * scale:.1f}]"


def _mode(result: CellSummary) -> str:
    """How a cell was timed: latency mode (batch 1, per-request latency) or throughput mode (batches: items/s only)."""
    return f"throughput (batch {result.batch_size})" if result.mode == "throughput" else "latency (batch 1)"


def _lat(result: CellSummary, q: str) -> str:
    """A latency percentile; batched items have none (their batch's time is not a request's latency)."""
    return "n/a (throughput)" if result.mode == "throughput" else _ms(getattr(result.latency_s, q))


def _lat_ci(est: Interval) -> str:
    return f"{_ms(est.value)} [{_ms(est.low)}-{_ms(est.high)}]"


def is_pair(summary: RunSummary) -> bool:
    """Two models with a reference: the small-vs-large layout."""
    return len(summary.order) == 2 and summary.reference is not None


def pair_names(summary: RunSummary) -> tuple[str, str]:
    ref = summary.reference
    assert ref is not None  # is_pair
    return next(n for n in summary.order if n != ref), ref


def _n(task: TaskSummary, ns: list[int]) -> str:
    n = str(ns[0]) if len(set(ns)) == 1 else "/".join(map(str, ns))
    if task.info.get("n_available", ns[0]) > ns[0]:
        n += f" of {task.info['n_available']}"
    return n


# --- models ------------------------------------------------------------------------------------

MODEL_HEADER = [
    "role",
    "model",
    "architecture",
    "params total (active)",
    "embedding",
    "device / dtype",
    "engine",
    "load",
    "source",
    "hardware",
]


def _precision(m: ModelRecord) -> str:
    """Device and precision, with the reason when the harness chose it (runtime.dtype=auto, a GGUF's own type)."""
    reason = m.text("dtype_reason", "")
    return f"{m.text('device', 'None')} / {m.text('dtype', 'None')}" + (
        f" ({reason})" if reason and reason != "set in the configuration" else ""
    )


def model_rows(summary: RunSummary) -> list[list[str]]:
    rows = []
    for name in summary.order or summary.models:
        m = summary.models[name]
        rows.append(
            [
                m.role,
                name + (" (architecture only)" if m.architecture_only else ""),
                m.text("architecture"),
                _params(m),
                f"{m.params_embedding / 1e6:,.1f}M",
                _precision(m),
                m.text("engine", "hf"),
                f"{float(m.data.get('load_time_s', 0.0)):.1f} s",
                _source(m),
                _model_hardware(summary, name),
            ]
        )
    return rows


def _model_hardware(summary: RunSummary, name: str) -> str:
    """The hardware classes a model's cells ran on (more than one: some of its cells came from another machine)."""
    labels = [c["label"] for c in summary.hardware_classes.values() if any(x.split("/")[0] == name for x in c["cells"])]
    return "; ".join(labels) or "not recorded"


OTHER_HARDWARE = "n/a (other hardware)"


def hardware_note(summary: RunSummary) -> Optional[str]:
    """The warning at the top of every report whose in-process cells ran on more than one hardware class."""
    if not summary.mixed_hardware:
        return None
    classes = [c for c in summary.hardware_classes.values() if not c.get("served")]
    where = "; ".join(f"{c['label']}: {', '.join(c['cells'])}" for c in classes)
    return (
        f"Mixed hardware: this comparison's cells ran on {len(classes)} hardware classes ({where}). "
        f"Ratios of latency, throughput, cost and energy between cells of different classes are not computed "
        f"({OTHER_HARDWARE}): they would compare the machines, and the decision's costs and latencies are each "
        "model's on its own machine. Quality is compared, but greedy outputs follow each "
        "machine's kernels (llama.cpp and torch pick them by CPU features), so a small difference may be the "
        "machines'. To compare like with like, compute every cell on one class (runtime.other_hardware=compute, "
        "the default, on one kind of node)."
    )


def empty_note(summary: RunSummary) -> Optional[str]:
    """The line a report opens with when none of its cells has records (deleted, or never computed)."""
    if any(info.results for info in summary.tasks.values()):
        return None
    missing = summary.missing_cells + summary.not_run
    return (
        "No cell of this comparison has records: nothing to compare, and no figure is drawn. Missing: "
        + (", ".join(missing) or "every cell")
        + " -- run the same command again to compute them (with the same paths.store_dir)."
    )


def top_notes(summary: RunSummary) -> list[str]:
    """What a reader must know before any table: an empty comparison, cells from several hardware classes."""
    return [n for n in (empty_note(summary), hardware_note(summary)) if n]


def _time_ratio(cmp: Any, value: Optional[float]) -> str:
    return OTHER_HARDWARE if cmp.cross_hardware else _num(value, "{:.2f}x")


def _source(m: ModelRecord) -> str:
    """Where the model came from; a served model's identity is the server's word, and the row says so."""
    if m.text("source") != "served":
        return m.text("source")
    return f"served: {m.text('served_model')} at {m.text('origin').split(' (')[0]}, as the server reports it" + (
        f" (revision {m.text('revision')})" if m.data.get("revision") else ""
    )


# --- per task ----------------------------------------------------------------------------------

PAIR_TASK_HEADER = [
    "task",
    "n",
    "timing mode",
    "metric",
    "small",
    "large",
    "S-L",
    "p50 latency S / L",
    "p95 latency S / L",
    "throughput S / L (items/s)",
    "peak memory S / L",
    "latency ratio S/L",
    "memory ratio S/L",
]
N_TASK_HEADER = [
    "task",
    "model",
    "n",
    "timing mode",
    "metric",
    "quality",
    "vs reference",
    "p50 latency",
    "p95 latency",
    "throughput (items/s)",
    "peak memory",
    "latency ratio vs ref",
    "memory ratio vs ref",
]


def task_header(summary: RunSummary) -> list[str]:
    return PAIR_TASK_HEADER if is_pair(summary) else N_TASK_HEADER


def _pair_task_rows(summary: RunSummary) -> list[list[str]]:
    small, large = pair_names(summary)
    rows = []
    for task, info in summary.tasks.items():
        res = info.results
        s, l = res.get(small), res.get(large)
        cmp = summary.comparisons.get(task, {}).get(small)
        if not (s and l and cmp):
            rows.append(
                [task, str(info.info.get("n_selected", "-")), "-", "incomplete"] + ["-"] * (len(PAIR_TASK_HEADER) - 4)
            )
            continue
        delta = (
            "not comparable (different items)"
            if cmp.delta_vs_reference is None
            else f"{cmp.delta_vs_reference * 100:+.1f}"
        )
        arch = [summary.models[n].architecture_only for n in (small, large)]
        q_small = "not measured (random weights)" if arch[0] else _num(cmp.candidate * 100)
        q_large = "not measured (random weights)" if arch[1] else _num(cmp.reference * 100)
        if any(arch):
            delta = "-"
        rows.append(
            [
                task,
                _n(info, [s.n, l.n]),
                _mode(s),
                METRIC_LABEL.get(cmp.metric, cmp.metric),
                q_small,
                q_large,
                delta,
                f"{_lat(s, 'p50')} / {_lat(l, 'p50')}",
                f"{_lat(s, 'p95')} / {_lat(l, 'p95')}",
                f"{_num(s.throughput_samples_per_s, '{:.2f}')} / {_num(l.throughput_samples_per_s, '{:.2f}')}",
                f"{_bytes(s.peak_memory_bytes)} / {_bytes(l.peak_memory_bytes)}",
                _time_ratio(cmp, cmp.latency_p50_ratio),
                _num(cmp.peak_memory_ratio, "{:.2f}x"),
            ]
        )
    return rows


def _n_task_rows(summary: RunSummary) -> list[list[str]]:
    rows = []
    ref = summary.reference
    for task, info in summary.tasks.items():
        for name in summary.order:
            r = info.results.get(name)
            if r is None:
                rows.append(
                    [task, name, str(info.info.get("n_selected", "-")), "-", "missing"]
                    + ["-"] * (len(N_TASK_HEADER) - 5)
                )
                continue
            metric = r.primary_metric
            cmp = summary.comparisons.get(task, {}).get(name)
            ref_model = summary.models.get(ref or "")
            arch = summary.models[name].architecture_only or (ref_model is not None and ref_model.architecture_only)
            if name == ref:
                vs, lat_ratio, mem_ratio = "reference", "1.00x", "1.00x"
            elif cmp is None:
                vs, lat_ratio, mem_ratio = "-", "-", "-"
            else:
                vs = (
                    "not comparable (different items)"
                    if cmp.delta_vs_reference is None
                    else f"{cmp.delta_vs_reference * 100:+.1f}"
                )
                lat_ratio, mem_ratio = (
                    _time_ratio(cmp, cmp.latency_p50_ratio),
                    _num(cmp.peak_memory_ratio, "{:.2f}x"),
                )
            quality = (
                "not measured (random weights)"
                if summary.models[name].architecture_only
                else _num(r.quality[metric] * 100)
            )
            if arch and name != ref:
                vs = "-"
            rows.append(
                [
                    task,
                    name,
                    _n(info, [r.n]),
                    _mode(r),
                    METRIC_LABEL.get(metric, metric),
                    quality,
                    vs,
                    _lat(r, "p50"),
                    _lat(r, "p95"),
                    _num(r.throughput_samples_per_s, "{:.2f}"),
                    _bytes(r.peak_memory_bytes),
                    lat_ratio,
                    mem_ratio,
                ]
            )
    return rows


def task_rows(summary: RunSummary) -> list[list[str]]:
    return _pair_task_rows(summary) if is_pair(summary) else _n_task_rows(summary)


def task_title(summary: RunSummary) -> str:
    if is_pair(summary):
        return "Per task (S = small, L = large; ratios below 1 favour the small model)"
    return f"Per task and model (each against the reference, {summary.reference}; ratios below 1 favour the model)"


# --- cost --------------------------------------------------------------------------------------

PAIR_COST_HEADER = [
    "task",
    "cost / 1k requests S / L",
    "energy / request S / L",
    "energy method",
    "CO2 / 1k requests S / L",
    "copies that fit S / L",
]
N_COST_HEADER = [
    "task",
    "model",
    "cost / 1k requests",
    "energy / request",
    "energy method",
    "CO2 / 1k requests",
    "copies that fit",
]


def cost_header(summary: RunSummary) -> list[str]:
    return PAIR_COST_HEADER if is_pair(summary) else N_COST_HEADER


def cost_rows(summary: RunSummary) -> list[list[str]]:
    rows = []
    if is_pair(summary):
        small, large = pair_names(summary)
        for task, info in summary.tasks.items():
            s, l = (res.economics if (res := info.results.get(r)) else None for r in (small, large))
            if not (s and l):
                continue
            method = s.energy_method if s.energy_method == l.energy_method else f"{s.energy_method} / {l.energy_method}"
            rows.append(
                [
                    task,
                    f"${s.cost_per_1k_usd:.4f} / ${l.cost_per_1k_usd:.4f}"
                    + (" (token prices)" if "tokens" in (s.cost_basis, l.cost_basis) else ""),
                    f"{s.energy_per_request_j:.1f} J / {l.energy_per_request_j:.1f} J",
                    method,
                    f"{s.co2_g_per_1k:.2f} g / {l.co2_g_per_1k:.2f} g",
                    f"{s.memory_headroom_copies} / {l.memory_headroom_copies}",
                ]
            )
        return rows
    for task, info in summary.tasks.items():
        for name in summary.order:
            e = res.economics if (res := info.results.get(name)) else None
            if e:
                rows.append(
                    [
                        task,
                        name,
                        f"${e.cost_per_1k_usd:.4f}" + (" (token prices)" if e.cost_basis == "tokens" else ""),
                        f"{e.energy_per_request_j:.1f} J",
                        e.energy_method,
                        f"{e.co2_g_per_1k:.2f} g",
                        str(e.memory_headroom_copies),
                    ]
                )
    return rows


# --- statistics --------------------------------------------------------------------------------

PAIR_STATS_HEADER = [
    "task",
    "metric",
    "small [95% CI]",
    "large [95% CI]",
    "S-L paired [95% CI]",
    "McNemar p",
    "latency p50 / p90 / p95 / p99 [95% CI] S",
    "latency p50 / p90 / p95 / p99 [95% CI] L",
]
N_STATS_HEADER = [
    "task",
    "model",
    "metric",
    "score [95% CI]",
    "minus reference, paired [95% CI]",
    "McNemar p",
    "latency p50 / p90 / p95 / p99 [95% CI]",
]


def stats_header(summary: RunSummary) -> list[str]:
    return PAIR_STATS_HEADER if is_pair(summary) else N_STATS_HEADER


def _mcnemar(mc: Optional[McNemar]) -> str:
    return f"{mc.p_value:.3g} ({mc.small_only} vs {mc.large_only} discordant)" if mc else "-"


def _lat_line(models: dict[str, ModelStatistics], name: str) -> str:
    if name not in models:
        return "-"
    latency = models[name].latency_s
    if latency is None:
        return "not measured (throughput mode)"
    return " / ".join(_lat_ci(latency[f"p{q}"]) for q in (50, 90, 95, 99))


def stats_rows(summary: RunSummary, analysis: RunAnalysis) -> list[list[str]]:
    rows = []
    pair = is_pair(summary)
    for task, e in analysis.tasks.items():
        models = e.models
        comparisons = e.comparisons
        if pair:
            small, large = pair_names(summary)
            cmp = comparisons.get(small)
            shown = models.get(small) or models.get(large)
            for i, metric in enumerate(shown.quality if shown else {}):
                diff = cmp.difference_vs_reference.get(metric) if cmp else None
                s_stat, l_stat = models.get(small), models.get(large)
                rows.append(
                    [
                        task if i == 0 else "",
                        metric,
                        _ci(s_stat.quality.get(metric) if s_stat else None),
                        _ci(l_stat.quality.get(metric) if l_stat else None),
                        _ci(diff) if cmp and cmp.same_items else "not comparable (different items)",
                        _mcnemar(cmp.mcnemar if cmp and metric == "accuracy" else None),
                        _lat_line(models, small) if i == 0 else "",
                        _lat_line(models, large) if i == 0 else "",
                    ]
                )
            continue
        first = True
        for name in summary.order or list(models):
            if name not in models:
                continue
            cmp = comparisons.get(name)
            for i, metric in enumerate(models[name].quality):
                diff = cmp.difference_vs_reference.get(metric) if cmp else None
                vs = "reference" if name == summary.reference else (_ci(diff) if cmp and cmp.same_items else "-")
                rows.append(
                    [
                        task if first else "",
                        name if i == 0 else "",
                        metric,
                        _ci(models[name].quality[metric]),
                        vs,
                        _mcnemar(cmp.mcnemar if cmp and metric == "accuracy" else None),
                        _lat_line(models, name) if i == 0 else "",
                    ]
                )
                first = False
    return rows


# --- claims and cells --------------------------------------------------------------------------

CLAIMS_HEADER = ["claim", "who", "verdict", "key number [95% CI]", "rests on"]


def _first(parts: list[str], keep: Optional[int], sep: str) -> str:
    """The first ``keep`` parts (None: all), and how many more claims.json holds."""
    if keep is None or len(parts) <= keep + 1:
        return sep.join(parts)
    return sep.join(parts[:keep]) + f"{sep}... and {len(parts) - keep} more (claims.json)"


def claim_rows(verdicts: list[Verdict], keep: Optional[int] = None) -> list[list[str]]:
    """One row per claim; ``keep``: with many models, the first few of a key number's comparisons and of its tasks."""
    return [
        [
            v.id,
            v.who,
            v.verdict.upper() if v.verdict in ("supported", "refuted") else v.verdict,
            _first(v.key_number.split("; "), keep, "; "),
            _first(v.tasks, keep, ", ") or "-",
        ]
        for v in verdicts
    ]


CELLS_HEADER = ["model", "task", "cell", "this run", "completed at", "sessions", "out of memory"]
_STATUS = {
    "computed": "computed now",
    "resumed": "resumed now",
    "reused": "reused",
    "planned": "not computed",
    "missing": "missing",
}


def cell_rows(summary: RunSummary) -> list[list[str]]:
    rows = []
    for c in summary.cells:
        res = summary.result(c["task"], c["model"])
        cell = res.cell if res and res.cell else None
        status = _STATUS.get(c["status"], c["status"]) if c.get("complete") else "missing (incomplete)"
        failed = (cell.failed_ids if cell else None) or []
        if failed:
            status += f"; {len(failed)} item(s) failed (retried by the next run)"
        oom = f"{cell.oom_events} time(s), batch size -> {cell.final_batch_size}" if cell and cell.oom_events else "-"
        rows.append(
            [
                c["model"],
                c["task"],
                c["key"],
                status,
                (cell.computed_at if cell else None) or "-",
                str(cell.sessions if cell else "-"),
                oom,
            ]
        )
    return rows


# --- text lines --------------------------------------------------------------------------------


def baseline_lines(summary: RunSummary, one_label_percent: int) -> list[str]:
    """Per classification task: the accuracy of answering without reading (the majority label, chance), and each
    model that gives one answer on ``one_label_percent``% of the items or more."""
    lines = []
    for task, info in summary.tasks.items():
        results = {n: r for n, r in info.results.items() if r.baselines}
        if not results:
            continue
        b = next(iter(results.values())).baselines
        assert b is not None  # results holds the cells with baselines
        lines.append(
            f"- {task}: always answering the most common label ({b.majority_label!r}) scores "
            f"{b.majority * 100:.1f}% on these items, a uniform guess {b.chance * 100:.1f}%"
        )
        for name, r in results.items():
            rb = r.baselines
            if rb is None or (summary.models.get(name) is not None and summary.models[name].architecture_only):
                continue
            if rb.top_prediction_share * 100 >= one_label_percent:
                lines.append(
                    f"  - **{name} answers one label**: {rb.top_prediction!r} on "
                    f"{rb.top_prediction_share * 100:.0f}% of the items; its accuracy "
                    f"{r.quality['accuracy'] * 100:.1f} is about that label's share, not evidence that it read them"
                )
    return lines


def secondary_lines(summary: RunSummary) -> list[str]:
    """Other quality metrics and generation speed, per task and model."""
    lines = []
    for task, info in summary.tasks.items():
        for name, res in info.results.items():
            q = ", ".join(f"{k} {v * 100:.1f}" for k, v in res.quality.items())
            extra = ""
            if res.ttft_s:
                extra = f"; time to first token p50 {_ms(res.ttft_s.p50)}, decode {_num(res.decode_tokens_per_s_median)} tok/s"
            if res.truncated_items:
                extra += f"; {res.truncated_items} prompt(s) longer than the context window, truncated from the left"
            lines.append(
                f"- {task} / {name}: {q}; {res.input_tokens} input + {res.output_tokens} output tokens in {res.wall_s:.1f} s{extra}"
            )
            metric = res.primary_metric
            for field, values in (res.breakdown or {}).items():
                per = ", ".join(f"{v} {d[metric] * 100:.1f} (n={d['n']})" for v, d in values.items())
                lines.append(f"  - {metric} by {field}: {per}")
            if res.consistency:
                c = res.consistency
                lines.append(
                    f"  - same answer across the {c.groups} groups of items sharing {c.field}: {c.same_answer * 100:.1f}% (all correct: {c.all_correct * 100:.1f}%)"
                )
    return lines


def sampling_line(config: dict[str, Any] | None) -> str:
    rt = (config or {}).get("runtime", {})
    if not rt:
        return ""
    cap = rt.get("max_samples")
    subset = (
        f"a seeded subset of at most {cap} items per task (seed {rt.get('seed')}), the same items for every model"
        if cap
        else "every item of every task"
    )
    if rt.get("stop_when_decided"):
        subset = (
            f"items in a seeded random order (seed {rt.get('seed')}), at most {cap or 'every item'} per task, the same for every model, "
            "each task stopped once its claims were decided"
        )
    return (
        f"- Items: {subset}; batch size {rt.get('batch_size')}, {rt.get('warmup_steps')} warm-up passes, "
        f"chat template {'on' if rt.get('chat_template') else 'off'}, dtype setting {rt.get('dtype')}, engine {rt.get('engine', 'hf')}"
    )


# --- cascade measured as a router ----------------------------------------------------------------

ROUTING_HEADER = [
    "task",
    "small vs large",
    "signal",
    "in-sample: score / cost / escalated",
    "cross-fitted: score / cost / escalated",
    "random router, same calls: score",
    "APGR (random 0.50)",
    "calls for 50% / 80% / 95% of the gap",
]


def routing_rows(analysis: RunAnalysis) -> list[list[str]]:
    """One row per comparison and confidence signal; the best held-out signal is marked."""
    rows = []
    pct = lambda v: "-" if v is None else f"{v:.0%}"  # noqa: E731
    for task, entry in analysis.tasks.items():
        for cand, cmp in entry.comparisons.items():
            r = cmp.routing
            if r is None:
                continue
            for name, sig in r["signals"].items():
                i, c = sig["in_sample"], sig["cross_fitted"]
                calls = sig.get("calls_to_recover")
                rows.append(
                    [
                        task,
                        f"{cand} vs {analysis.reference}",
                        name + (" (best held-out)" if r.get("best_signal") == name else ""),
                        f"{i['score'] * 100:.1f} / {i['cost_share']:.2f}x / {i['escalated']:.0%}",
                        f"{c['score'] * 100:.1f} / {c['cost_share']:.2f}x / {c['escalated']:.0%}",
                        f"{sig['random_at_same_calls'] * 100:.1f}",
                        _num(sig.get("apgr"), "{:.2f}"),
                        " / ".join(pct(calls[k]) for k in ("50%", "80%", "95%")) if calls else "- (no gap to recover)",
                    ]
                )
    return rows


# --- stopped when decided ------------------------------------------------------------------------

STOPPING_HEADER = [
    "task",
    "items used / planned",
    "outcome",
    "items not run (all models)",
    "model time saved (est.)",
    "anytime-valid interval at the stop",
]


def stopping_rows(summary: RunSummary, analysis: RunAnalysis) -> list[list[str]]:
    """Sequential runs: per task, where it stopped and what that saved (items not run x each model's mean time per item)."""
    if not summary.sequential:
        return []
    rows = []
    for task, info in summary.tasks.items():
        results = info.results
        if not results:
            continue
        planned = int(info.info.get("n_selected") or 0)
        used = max(r.n for r in results.values())
        stopped = any(r.cell and r.cell.stopped for r in results.values())
        saved_s = sum((planned - r.n) * (r.item_s.mean or 0.0) for r in results.values())
        entry = analysis.tasks.get(task)
        comparisons = entry.comparisons if entry else {}
        metric = next(iter(results.values())).primary_metric
        intervals = "; ".join(
            f"{c} {_ci(cmp.difference_vs_reference[metric])}"
            for c, cmp in comparisons.items()
            if metric in cmp.difference_vs_reference
        )
        rows.append(
            [
                task,
                f"{used} / {planned}",
                "decided, stopped" if stopped else ("cap reached, not decided" if used >= planned else "running"),
                str(sum(planned - r.n for r in results.values())),
                f"{saved_s:.0f} s",
                intervals or "-",
            ]
        )
    return rows


# --- latency under load --------------------------------------------------------------------------

LOAD_HEADER = [
    "model",
    "load",
    "requests",
    "requests/s",
    "goodput/s",
    "output tokens/s",
    "e2e p50 / p95 / p99",
    "e2e p95 [95% CI]",
    "TTFT p50 / p95 / p99",
    "TPOT p50 / p95",
    "SLO attainment",
    "behind schedule (max)",
    "cost / 1k requests",
    "within SLO?",
]


def _s(v: Optional[float]) -> str:
    return "-" if v is None else (f"{v * 1000:.0f} ms" if v < 1 else f"{v:.2f} s")


def _ps(step: LoadStep, term: str, qs: tuple[int, ...]) -> str:
    p = step.percentiles.get(term)
    if p is None:
        return "-"
    return " / ".join(_s(p.at(q)) if p.at(q) is not None else "too few" for q in qs)


def _p95_ci(step: LoadStep) -> str:
    p = step.percentiles.get("e2e")
    iv = p.values.get("p95") if p else None
    return "-" if iv is None else f"{_s(iv.value)} [{_s(iv.low)}, {_s(iv.high)}]"


def _requests(s: LoadStep) -> str:
    extra = [f"{s.errors} failed"] if s.errors else []
    extra += [f"{s.retries} retries"] if s.retries else []
    return str(s.requests) + (f" ({', '.join(extra)})" if extra else "")


def load_rows(load: LoadSummary) -> list[list[str]]:
    return [
        [
            s.model + (" (edge)" if m.edge is not None and s.offered == m.edge else ""),
            s.label,
            _requests(s),
            f"{s.requests_per_s:.2f}",
            "-" if s.goodput_rps is None else f"{s.goodput_rps:.2f}",
            f"{s.output_tokens_per_s:.1f}",
            _ps(s, "e2e", (50, 95, 99)) if s.percentiles else f"{_s(s.latency_p50_s)} / {_s(s.latency_p95_s)} / -",
            _p95_ci(s),
            _ps(s, "ttft", (50, 95, 99)),
            _ps(s, "tpot", (50, 95)),
            "-" if s.attainment is None else f"{s.attainment:.0%}",
            "-" if s.lag_max_s is None else _s(s.lag_max_s),
            "-" if s.cost_per_1k_usd is None else f"${s.cost_per_1k_usd:.4f}",
            "-" if s.within_slo is None else ("yes" if s.within_slo else "no"),
        ]
        for m in load.models.values()
        for s in m.steps
    ]


def _edge(load: LoadSummary, m: ModelLoad) -> str:
    if m.edge is None:
        return f"{m.model} met the SLO at no step"
    where = f"{m.edge:g} in flight" if load.mode == CLOSED else f"{m.edge:g} requests/s"
    how = " (found by search)" if m.searched else ""
    cost = (
        ""
        if m.cost_per_1k_at_slo_usd is None
        else f", ${m.cost_per_1k_at_slo_usd:.4f} per 1,000 requests ({m.cost_basis})"
    )
    short = (
        f"; below the expected {load.expected_rate:g} requests/s"
        if load.expected_rate is not None and load.mode != CLOSED and m.edge < load.expected_rate
        else ""
    )
    return f"{m.model}: up to {where}{how}{cost}{short}"


def load_note(load: LoadSummary) -> str:
    """Each model's SLO edge and price point, and how the figures were taken."""
    how = (
        "at each level, that many requests kept in flight (the next sent as one ends: a closed loop)"
        if load.mode == CLOSED
        else "at each rate, requests sent "
        + ("at a Poisson process's arrivals (seeded) " if load.mode == "poisson" else "every 1/rate seconds ")
        + "whatever was in flight (an open loop, as real clients send); 'behind schedule' is how late the "
        "client sent, where the requests outstanding reached load.max_outstanding"
    )
    slo = (
        f"SLO: {slo_text(load)} (load.slo); attainment is the share of a step's requests meeting every threshold, "
        "goodput the rate of such requests. " + "; ".join(_edge(load, m) for m in load.models.values()) + ". "
        if load.slo is not None
        else "No SLO set (load.slo): no edge or price point chosen. "
    )
    prompts = (
        "Synthetic prompts (load.input_tokens, load.output_tokens). "
        if load.prompts == "synthetic"
        else f"The task's prompts; {load.repeated_prompts} request(s) repeated an earlier prompt (a server's prefix "
        "cache could have served them). "
    )
    return (
        f"Task {load.task}: {how}. Timed on the client: end to end, time to first token (TTFT), time per output "
        "token after the first (TPOT); a percentile the step has too few requests for (p99 needs 100) says so; the "
        f"interval is a 95% bootstrap one. Requests/s: requests finished over the step's wall time. {slo}{prompts}"
        f"Cost at a step: the {load.hardware} profile's hourly price over that throughput, or a hosted model's token "
        "prices x the tokens its requests used. Every request: load/requests.jsonl; figures: load.json."
    )


# --- many models: a leaderboard per task ------------------------------------------------------------

LEADERBOARD_HEADER = [
    "rank",
    "model",
    "params",
    "score x100 [95% CI]",
    "minus reference [95% CI]",
    "against the tolerance",
    "cost / 1k requests",
    "p50 latency",
    "Pareto front",
]


def leaderboard_rows(
    summary: RunSummary, analysis: Optional[RunAnalysis], task: str, standing: Optional[dict[str, str]] = None
) -> list[list[str]]:
    """The task's models, best score first: score and its CI, the paired difference from the reference (each model
    against the reference only), where the decision puts it (``standing``: model -> meets / falls short / ...),
    cost per 1k requests, median latency, and whether it is on the quality-vs-cost Pareto front."""
    entry = analysis.tasks.get(task) if analysis else None
    front = set(pareto_models(summary, task))
    rows = []
    for rank, name in enumerate(ranked(summary, task), 1):
        res = summary.tasks[task].results[name]
        stats = entry.models.get(name) if entry else None
        cmp = entry.comparisons.get(name) if entry else None
        diff = cmp.difference_vs_reference.get(res.primary_metric) if cmp and cmp.same_items else None
        cost = res.economics.cost_per_1k_usd if res.economics else None
        is_ref = name == summary.reference
        rows.append(
            [
                str(rank),
                name + (" (reference)" if is_ref else ""),
                _params(summary.models[name]),
                _ci(stats.quality.get(res.primary_metric)) if stats else f"{res.score * 100:.1f}",
                "-" if is_ref else _ci(diff),
                (standing or {}).get(name, "reference" if is_ref else "-"),
                "-" if cost is None else f"${cost:.4f}",
                _ms(res.item_s.p50),
                "yes" if name in front else "",
            ]
        )
    return rows


def scale_note(summary: RunSummary, cascades: int, samples: int) -> str:
    """What a report of many models leaves out, and where it is."""
    n, tasks = len(summary.models), len(summary.tasks)
    cells = sum(len(info.results) for info in summary.tasks.values())
    pairs = n * (n - 1) // 2
    return (
        f"{n} models x {tasks} tasks ({cells:,} complete cells). Each model is compared with the reference "
        f"({summary.reference}, the {'requested' if summary.reference else 'largest'} model) only, not every pair "
        f"({pairs:,} pairs per task): every interval below is a model against the reference, paired over the same items. "
        f"Each task's leaderboard ranks its models by score; the Pareto front marks the models that no other beats on both "
        f"score and cost. The cascade and router are simulated for the {cascades} best candidates of each task "
        f"(report.cascade_candidates); samples.html holds the reference and the {samples} best candidates of each task "
        "(report.samples_candidates); `harness flips RUN --models A,B` lists the items of any other pair. "
        "analysis.json and decision.json hold every model's numbers; `harness cells DIR --missing` lists the cells not yet reportable."
    )


def pareto_figure(tasks: list[str], task: str, per_figure: int) -> str:
    """The file (under plots/) of the Pareto-front figure that holds ``task``'s panel."""
    return f"pareto_front_{tasks.index(task) // max(1, per_figure) + 1}.png"
