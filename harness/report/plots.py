"""Report figures (matplotlib, PNG): trade-offs with the Pareto frontier, CI bars, cascade curves.

Many models (``report.leaderboard_from``): one quality-vs-cost panel per task in a grid instead, the Pareto-optimal
models labelled and joined, the others grey points: 100 labelled bars or points per task would be unreadable.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import matplotlib

from harness.analysis.load import LoadSummary
from harness.analysis.schema import RunAnalysis
from harness.config.schema import ReportConfig
from harness.results.leaderboard import cost_of, is_large, pareto_models
from harness.results.schema import RunSummary

matplotlib.use("Agg")  # no display needed
import matplotlib.pyplot as plt  # noqa: E402

from harness.report.tables import pareto_figure
from harness.tasks.types import primary_metric

TRADEOFFS = {
    "quality_vs_latency": ("latency_p50_s", "p50 latency per request (s; time per item when batched)"),
    "quality_vs_memory": ("peak_memory_gb", "peak memory (GB)"),
    "quality_vs_cost": ("cost_per_1k_usd", "cost per 1,000 requests (USD)"),
}


@dataclass(frozen=True)
class PlotPoint:
    """A model on a task in the trade-off figures: its quality and what it costs (x axes named in TRADEOFFS)."""

    task: str
    model: str
    metric: str
    quality: float
    latency_p50_s: Optional[float]  # the request latency in latency mode, the per-item share in throughput mode
    peak_memory_gb: float
    cost_per_1k_usd: Optional[float]

    def x(self, key: str) -> Optional[float]:
        value: Optional[float] = getattr(self, key)
        return value


def points(summary: RunSummary) -> list[PlotPoint]:
    """One point per (model, task): quality and its costs, from the summary."""
    out = []
    for task, info in summary.tasks.items():
        for key, res in info.results.items():
            model = summary.models[key].name if key in summary.models else key
            out.append(
                PlotPoint(
                    task=task,
                    model=model,
                    metric=res.primary_metric,
                    quality=res.quality[res.primary_metric],
                    latency_p50_s=res.item_s.p50,
                    peak_memory_gb=(res.peak_memory_bytes or 0) / 2**30,
                    cost_per_1k_usd=res.economics.cost_per_1k_usd if res.economics else None,
                )
            )
    return out


def pareto_front(pts: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points not dominated by another (lower cost and higher quality is better), by cost."""
    front: list[tuple[float, float]] = []
    for cost, quality in sorted(pts, key=lambda p: (p[0], -p[1])):
        if not front or quality > front[-1][1]:
            front.append((cost, quality))
    return front


def _style(ax: Any, title: str, xlabel: str, ylabel: str, legend_size: int = 7) -> None:
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=legend_size)
    ax.grid(alpha=0.3)


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _tradeoff(pts: list[PlotPoint], x_key: str, x_label: str, path: Path) -> Path:
    tasks = sorted({p.task for p in pts})
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        tp = [(x, p) for p in pts if p.task == task and (x := p.x(x_key)) is not None]
        for x, p in tp:
            ax.scatter(x, p.quality * 100, s=40)
            ax.annotate(p.model, (x, p.quality * 100), fontsize=7, xytext=(4, 4), textcoords="offset points")
        front = pareto_front([(x, p.quality * 100) for x, p in tp])
        if len(front) > 1:
            ax.plot(
                [f[0] for f in front], [f[1] for f in front], "--", color="grey", linewidth=1, label="Pareto frontier"
            )
        elif front:
            ax.scatter(
                [front[0][0]], [front[0][1]], s=120, facecolors="none", edgecolors="grey", label="Pareto frontier"
            )
        _style(ax, task, x_label, f"{tp[0][1].metric if tp else 'quality'} x100")
    return _save(fig, path)


def _bars(summary: RunSummary, analysis: RunAnalysis, path: Path) -> Path:
    tasks = [t for t in summary.tasks if t in analysis.tasks]
    present = {r for t in tasks for r in analysis.tasks[t].models}
    roles = [n for n in summary.order or sorted(present) if n in present]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.8 * len(tasks)), 3.8))
    width = 0.8 / max(1, len(roles))
    for i, role in enumerate(roles):
        xs, ys, lo, hi = [], [], [], []
        for j, t in enumerate(tasks):
            m = analysis.tasks[t].models.get(role)
            if not m:
                continue
            metric = primary_metric(analysis.tasks[t].task_type)
            est = m.quality[metric]
            xs.append(j + i * width)
            ys.append(est.value * 100)
            lo.append((est.value - est.low) * 100)
            hi.append((est.high - est.value) * 100)
        label = summary.models[role].role if role in summary.models else ""
        ax.bar(xs, ys, width, yerr=[lo, hi], capsize=3, label=f"{label}: {role}" if label else role)
    ax.set_xticks([j + width * (len(roles) - 1) / 2 for j in range(len(tasks))])
    ax.set_xticklabels(tasks, fontsize=7, rotation=15)
    _style(ax, "quality per task", "", "accuracy / ROUGE-L x100 (95% CI)")
    return _save(fig, path)


def _cascade(analysis: RunAnalysis, path: Path) -> Path | None:
    curves: dict[str, dict[str, Any]] = {}
    for task, e in analysis.tasks.items():
        for cand, cmp in (e.comparisons).items():
            if cmp.cascade and cmp.cascade.get("available"):
                curves.setdefault(task, {})[cand] = cmp.cascade
    if not curves:
        return None
    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.6), squeeze=False)
    for ax, (task, per_model) in zip(axes[0], curves.items()):
        for cand, cas in per_model.items():
            ax.plot(
                [p["cost_share"] for p in cas["curve"]],
                [p["score"] * 100 for p in cas["curve"]],
                "-o",
                markersize=2.5,
                label=f"{cand} first" if len(per_model) > 1 else "cascade",
            )
            if cas["best"]:
                ax.scatter(
                    [cas["best"]["cost_share"]], [cas["best"]["score"] * 100], s=80, facecolors="none", edgecolors="red"
                )
        cas = next(iter(per_model.values()))
        ax.axhline(
            cas["target_score"] * 100,
            color="red",
            linewidth=0.8,
            linestyle=":",
            label=f"{cas['keep_share']:.0%} of large",
        )
        ax.axhline(cas["large_score"] * 100, color="grey", linewidth=0.8, label="large only")
        _style(ax, task, "cost (latency) relative to large only", "score x100", legend_size=6)
    return _save(fig, path)


def _pareto_panel(ax: Any, summary: RunSummary, task: str, labels: int) -> None:
    results = summary.tasks[task].results
    pts = {n: (cost_of(summary, task, n), results[n].score * 100) for n in results}
    pts = {n: p for n, p in pts.items() if p[0] is not None and p[0] > 0}
    front = [n for n in pareto_models(summary, task) if n in pts]
    others = [n for n in pts if n not in front]
    ax.scatter([pts[n][0] for n in others], [pts[n][1] for n in others], s=9, color="#b0b0b0", linewidths=0)
    ax.plot([pts[n][0] for n in front], [pts[n][1] for n in front], "-o", color="#1f5fa8", markersize=3.5, linewidth=1)
    ref = summary.reference
    if ref in pts:
        ax.scatter([pts[ref][0]], [pts[ref][1]], marker="s", s=22, color="black", zorder=3)
    # label the two ends of the front, where the choices are: the best few and the cheapest few (``labels`` in all);
    # the best end crowds at the top right, so its labels go left of their points, the cheap end's right
    best = front[::-1][: (labels + 1) // 2]
    cheap = [n for n in front[: labels // 2] if n not in best]
    for i, n in enumerate(best):
        ax.annotate(n, pts[n], fontsize=6.5, xytext=(-4, -9 * i), textcoords="offset points", ha="right", va="top")
    for n in cheap:
        ax.annotate(n, pts[n], fontsize=6.5, xytext=(4, 2), textcoords="offset points")
    if ref in pts and ref not in best + cheap:
        ax.annotate("ref", pts[ref], fontsize=6.5, xytext=(4, -3), textcoords="offset points", va="top")
    ax.set_xscale("log")
    ax.minorticks_off()  # unlabelled minor ticks of 50 log axes: seconds of drawing, nothing to read
    metric = next(iter(results.values())).primary_metric if results else "quality"
    ax.set_title(f"{task} ({metric}, {len(front)} on the front)", fontsize=8.5)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3, linewidth=0.5)


def pareto_grid(summary: RunSummary, out_dir: Path, settings: ReportConfig) -> dict[str, Path]:
    """Quality vs cost per 1k requests (log), one panel per task, ``pareto_tasks_per_figure`` panels per figure."""
    tasks = [t for t, info in summary.tasks.items() if info.results]
    per, cols = max(1, settings.pareto_tasks_per_figure), max(1, settings.pareto_columns)
    made: dict[str, Path] = {}
    for start in range(0, len(tasks), per):
        chunk = tasks[start : start + per]
        rows = -(-len(chunk) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
        for ax, task in zip(axes.flat, chunk):
            _pareto_panel(ax, summary, task, settings.pareto_labels)
        for ax in list(axes.flat)[len(chunk) :]:
            ax.axis("off")
        for ax in axes[:, 0]:
            ax.set_ylabel("score x100", fontsize=8)
        for ax in axes[-1, :]:
            ax.set_xlabel("cost per 1,000 requests (USD, log)", fontsize=8)
        name = pareto_figure(tasks, chunk[0], per)
        # fixed margins: tight_layout measures every label of every panel (seconds per figure of 20 panels)
        fig.subplots_adjust(left=0.06, right=0.99, bottom=0.07, top=0.96, wspace=0.24, hspace=0.45)
        fig.savefig(out_dir / name, dpi=110)
        plt.close(fig)
        made[name.removesuffix(".png")] = out_dir / name
    return made


def make_plots(
    summary: RunSummary, analysis: RunAnalysis | None, out_dir: Path, settings: ReportConfig | None = None
) -> dict[str, Path]:
    """Write the report's PNGs into ``out_dir``; returns name -> path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = settings or ReportConfig()
    if not any(info.results for info in summary.tasks.values()):
        return {}  # no cell has records: the report lists what is missing, and an empty figure would say nothing
    if is_large(summary, settings.leaderboard_from):
        return pareto_grid(summary, out_dir, settings)
    pts = points(summary)
    made = {name: _tradeoff(pts, key, label, out_dir / f"{name}.png") for name, (key, label) in TRADEOFFS.items()}
    if analysis and analysis.tasks:
        made["quality_with_ci"] = _bars(summary, analysis, out_dir / "quality_with_ci.png")
        cascade = _cascade(analysis, out_dir / "cascade.png")
        if cascade:
            made["cascade"] = cascade
    return made


def load_plot(load: LoadSummary, path: Path) -> Path:
    """Latency (p95, and p99 where measured) and goodput against the offered load, one colour per model: the SLO's
    end-to-end threshold as a line, each model's SLO edge as a vertical mark."""
    fig, (lat, good) = plt.subplots(1, 2, figsize=(9, 3.6))
    closed = all(s.rate is None for m in load.models.values() for s in m.steps)
    for i, m in enumerate(load.models.values()):
        colour = f"C{i}"
        x = [s.offered for s in m.steps]
        lat.plot(x, [s.latency_p95_s for s in m.steps], "-o", color=colour, markersize=3, label=f"{m.model} p95")
        p99 = [(s.offered, v) for s in m.steps if (p := s.percentiles.get("e2e")) and (v := p.at(99)) is not None]
        if p99:
            lat.plot(*zip(*p99), "--", color=colour, linewidth=0.8, label=f"{m.model} p99")
        good.plot(
            x, [s.requests_per_s for s in m.steps], ":", color=colour, linewidth=0.8, label=f"{m.model} throughput"
        )
        if any(s.goodput_rps is not None for s in m.steps):
            good.plot(
                x, [s.goodput_rps or 0.0 for s in m.steps], "-o", color=colour, markersize=3, label=f"{m.model} goodput"
            )
        if m.edge is not None:
            for ax in (lat, good):
                ax.axvline(m.edge, color=colour, linewidth=0.8, linestyle="-.", alpha=0.7)
    if load.expected_rate is not None and not closed:
        good.axvline(load.expected_rate, color="black", linewidth=0.8, linestyle=":", label="expected rate")
    e2e = load.slo.e2e_s if load.slo is not None else load.slo_p95_s
    if e2e is not None:
        lat.axhline(e2e, color="red", linewidth=0.8, linestyle=":", label=f"SLO end to end {e2e:g} s")
    xlabel = "requests in flight" if closed else f"offered rate, requests/s ({load.mode})"
    _style(lat, f"end-to-end latency under load ({load.task})", xlabel + "; dash-dot: SLO edge", "seconds")
    _style(good, "throughput and goodput (requests meeting the SLO)", xlabel, "requests/s")
    return _save(fig, path)
