"""The report (``report.md``, ``report.html``, the terminal tables), built from a comparison's cells.

``build_report(run_dir)`` re-reads the records, so a report can be rebuilt at
any time without a model (``harness report <run_dir>``). The tables themselves
are in ``harness.report.tables``; markdown.py, html.py and terminal.py render them.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any, Optional, cast

from harness.analysis.load import LoadSummary, load_summary
from harness.analysis.per_task import analyze_run
from harness.analysis.schema import RunAnalysis
from harness.config.schema import ReportConfig, compose, report_settings
from harness.errors import ConfigError
from harness.report.html import render_html
from harness.report.judged import write_judged
from harness.report.markdown import render_markdown
from harness.report.samples import SAMPLES_FILE, render_samples, samples_shown
from harness.report.terminal import print_tables
from harness.results.leaderboard import best_candidates, is_large
from harness.results.outcomes import CellOutcomes
from harness.results.records import read_json, write_json
from harness.results.schema import RunSummary
from harness.results.summary import pool_size, summarize_with_outcomes
from harness.verdicts.claims import CLAIMS_FORMAT, Verdict, cascade_keep_share, evaluate_claims
from harness.verdicts.decision import DECISION_FORMAT, TaskDecision, decisions


def _apply_overrides(config: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply ``key=value`` overrides (e.g. claims.C3.thresholds.accuracy_tolerance=0.03) to a run's config."""
    if not overrides:
        return config
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ConfigError(
            f"override {bad[0]!r} is not key=value",
            "e.g. claims.C3.thresholds.accuracy_tolerance=0.03 or hardware.hourly_usd=2.5",
        )
    try:
        merged = OmegaConf.merge(OmegaConf.create(config), OmegaConf.from_dotlist(list(overrides)))
    except OmegaConfBaseException as exc:
        raise ConfigError(
            f"cannot apply overrides {overrides}: {str(exc).splitlines()[0]}",
            "use key=value with keys from config.json",
        ) from exc
    return OmegaConf.to_container(merged, resolve=True)  # type: ignore[return-value]


def _with_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """Runs recorded before the hardware/claims settings existed get today's defaults (noted in the config)."""
    missing = [k for k in ("hardware", "claims") if not config.get(k)]
    if not missing:
        return config
    from omegaconf import OmegaConf

    defaults = cast(dict[str, Any], OmegaConf.to_container(compose([]), resolve=True, enum_to_str=True))
    return {**config, **{k: defaults[k] for k in missing}, "defaults_applied_at_report_time": missing}


def _write_text(path: Path, text: str) -> None:
    """Atomically: a report is complete or absent, never half written."""
    import os

    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# A report of many models draws its Pareto figures and writes summary.json (seconds each) in a forked process while
# this one computes the claims, the decision and the pages: one of the two cores is otherwise idle then.
_ASIDE: Optional[tuple[RunSummary, Path, ReportConfig, Optional[int]]] = None


def _summary_and_figures() -> dict[str, Path]:
    from harness.report.plots import make_plots

    assert _ASIDE is not None
    summary, run_dir, settings, indent = _ASIDE
    write_json(run_dir / "summary.json", summary.to_dict(), indent)
    return make_plots(summary, None, run_dir / "plots", settings)


class _Aside:
    """The forked process's result (its figures' paths), once it is done."""

    def __init__(self, pool: ProcessPoolExecutor, future: Future[dict[str, Path]]) -> None:
        self.pool, self.future = pool, future

    def result(self) -> dict[str, Path]:
        try:
            return self.future.result()
        finally:
            self.pool.shutdown()


def _start_aside(summary: RunSummary, run_dir: Path, settings: ReportConfig, indent: Optional[int]) -> _Aside:
    global _ASIDE
    _ASIDE = (summary, run_dir, settings, indent)
    pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("fork"))
    try:
        return _Aside(pool, pool.submit(_summary_and_figures))  # the process forks here, with _ASIDE in it
    finally:
        _ASIDE = None


def report_config(run_dir: Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """The run's config.json with today's defaults for what it predates, and this report's ``key=value`` overrides."""
    config = read_json(run_dir / "config.json") if (run_dir / "config.json").is_file() else {}
    return _apply_overrides(_with_defaults(config), overrides)


def _analyze(
    summary: RunSummary,
    outcomes: dict[tuple[str, str], CellOutcomes],
    config: dict[str, Any],
    settings: ReportConfig,
    large: bool,
    workers: int,
) -> RunAnalysis:
    """The statistics of every task, with the cascade's keep share taken from the claims' thresholds."""
    claims_cfg = config.get("claims") or {}
    keep = cascade_keep_share(claims_cfg)
    return analyze_run(
        summary,
        outcomes,
        keep_share=keep,
        seed=int(config.get("runtime", {}).get("seed", 0)),
        cascades=best_candidates(summary, settings.cascade_candidates) if large else None,
        workers=workers,
    )


def _judge(
    run_dir: Path,
    summary: RunSummary,
    analysis: RunAnalysis,
    config: dict[str, Any],
    load: Optional[LoadSummary],
    overrides: list[str] | None,
    large: bool,
    indent: Optional[int],
) -> tuple[list[Verdict], dict[str, TaskDecision]]:
    """Decide the claims and each task's decision, and write them (claims.json, decision.json) with the overrides used;
    a judge's grades of the summaries (judge.json), recomputed from their cells, stand beside ROUGE-L in both."""
    claims_cfg = config.get("claims") or {}
    judged = write_judged(run_dir, int(config.get("runtime", {}).get("seed", 0)))
    verdicts = evaluate_claims(summary, analysis, claims_cfg, load, all_pairs=not large, judged=judged)
    claims_file = {
        "format": CLAIMS_FORMAT,
        "overrides": list(overrides or []),
        "verdicts": [v.to_dict() for v in verdicts],
    }
    write_json(run_dir / "claims.json", claims_file, indent)
    decision = decisions(summary, analysis, claims_cfg, load, judged)
    write_json(
        run_dir / "decision.json",
        {
            "format": DECISION_FORMAT,
            "overrides": list(overrides or []),
            "tasks": {t: d.to_dict() for t, d in decision.items()},
        },
        indent,
    )
    return verdicts, decision


def build_report(run_dir: Path, console: Any | None = None, overrides: list[str] | None = None) -> Path:
    """(Re)build summary.json, analysis.json, claims.json, report.md, report.html and the plots from a run's records.

    ``overrides`` change claim thresholds or the hardware profile for this
    report only; config.json (what was run) is never rewritten.
    """
    from harness.report.plots import load_plot, make_plots

    run_dir = Path(run_dir)
    env_path = run_dir / "environment.json"
    env = read_json(env_path) if env_path.is_file() else None
    config = report_config(run_dir, overrides)
    settings = report_settings(config)
    summary, outcomes = summarize_with_outcomes(run_dir, config, settings.workers, settings.parallel_from)
    workers = pool_size(settings.workers, settings.parallel_from, len(summary.cells))  # as the cells were read
    large = is_large(summary, settings.leaderboard_from)
    indent = None if large else 2  # thousands of cells: tens of MB of JSON, written by the C encoder on one line
    aside = large and workers > 1  # summary.json and the figures in a process of their own, below
    if not aside:
        write_json(run_dir / "summary.json", summary.to_dict(), indent)
    analysis = _analyze(summary, outcomes, config, settings, large, workers)
    del outcomes  # the statistics are computed: nothing below reads per-item numbers of every cell
    background = _start_aside(summary, run_dir, settings, indent) if aside else None
    write_json(run_dir / "analysis.json", analysis.to_dict(), indent)
    load = load_summary(run_dir, config, {name: m.data for name, m in summary.models.items()})
    verdicts, decision = _judge(run_dir, summary, analysis, config, load, overrides, large, indent)
    report = run_dir / "report.md"
    _write_text(report, render_markdown(summary, env, config, verdicts, analysis, decision, load, settings))
    plots = make_plots(summary, analysis, run_dir / "plots", settings) if background is None else {}
    if load is not None:
        plots["load_latency"] = load_plot(load, run_dir / "plots" / "load_latency.png")
    shown = samples_shown(summary, settings.samples_candidates) if large else None
    _write_text(run_dir / SAMPLES_FILE, render_samples(summary, None, analysis, shown))
    if background is not None:
        plots = {**background.result(), **plots}
    html = run_dir / "report.html"
    _write_text(html, render_html(summary, env, config, verdicts, plots, analysis, decision, load, settings))
    if console is not None:
        print_tables(
            summary, console, verdicts, decision, large=large, keep=settings.claim_key_parts if large else None
        )
        console.print(f"report: {report} (and {html.name}, plots/)")
    return report
