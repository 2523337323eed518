"""The side-by-side report (``report.md`` and the terminal table), built from ``summary.json``.

``build_report(run_dir)`` re-reads the records, so a report can be rebuilt at
any time without a model (``harness report <run_dir>``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from harness.records import read_json, write_json
from harness.summary import summarize_run

_METRIC_LABEL = {"accuracy": "accuracy %", "rougeL": "ROUGE-L x100"}


def _num(value: Optional[float], fmt: str = "{:.1f}") -> str:
    return "-" if value is None else fmt.format(value)


def _bytes(value: Optional[float]) -> str:
    if value is None:
        return "-"
    return f"{value / 2**30:.2f} GiB" if value >= 2**30 else f"{value / 2**20:.0f} MiB"


def _ms(seconds: Optional[float]) -> str:
    return "-" if seconds is None else (f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s")


def _params(p: dict[str, Any]) -> str:
    total = f"{p['total'] / 1e6:,.1f}M"
    return f"{total} ({p['active'] / 1e6:,.1f}M active)" if p.get("is_moe") else total


def model_rows(summary: dict[str, Any]) -> list[list[str]]:
    rows = []
    for m in sorted(summary["models"].values(), key=lambda m: m["role"] != "small"):
        rows.append([
            m["role"], m["name"], m["architecture"], _params(m["params"]), f"{m['params']['embedding'] / 1e6:,.1f}M",
            f"{m['device']} / {m['dtype']}", f"{m['load_time_s']:.1f} s", m["source"],
        ])
    return rows


MODEL_HEADER = ["role", "model", "architecture", "params total (active)", "embedding", "device / dtype", "load", "source"]
TASK_HEADER = ["task", "n", "metric", "small", "large", "S-L", "p50 latency S / L", "p95 latency S / L", "throughput S / L (items/s)", "peak memory S / L", "latency ratio S/L", "memory ratio S/L"]


def task_rows(summary: dict[str, Any]) -> list[list[str]]:
    rows = []
    for task, info in summary["tasks"].items():
        res = info["results"]
        s, l = res.get("small"), res.get("large")
        cmp = summary["comparisons"].get(task)
        if not (s and l and cmp):
            rows.append([task, str(info.get("n_selected", "-")), "incomplete"] + ["-"] * (len(TASK_HEADER) - 3))
            continue
        scale = 100.0
        n = str(s["n"]) if s["n"] == l["n"] else f"{s['n']}/{l['n']}"
        if info.get("n_available", s["n"]) > s["n"]:
            n += f" of {info['n_available']}"
        delta = "not comparable (different items)" if cmp["delta_small_minus_large"] is None else f"{cmp['delta_small_minus_large'] * scale:+.1f}"
        rows.append([
            task, n, _METRIC_LABEL.get(cmp["metric"], cmp["metric"]),
            _num(cmp["small"] * scale), _num(cmp["large"] * scale), delta,
            f"{_ms(s['latency_s']['p50'])} / {_ms(l['latency_s']['p50'])}",
            f"{_ms(s['latency_s']['p95'])} / {_ms(l['latency_s']['p95'])}",
            f"{_num(s['throughput_samples_per_s'], '{:.2f}')} / {_num(l['throughput_samples_per_s'], '{:.2f}')}",
            f"{_bytes(s['peak_memory_bytes'])} / {_bytes(l['peak_memory_bytes'])}",
            _num(cmp["latency_p50_ratio"], "{:.2f}x"), _num(cmp["peak_memory_ratio"], "{:.2f}x"),
        ])
    return rows


COST_HEADER = ["task", "cost / 1k requests S / L", "energy / request S / L", "energy method", "CO2 / 1k requests S / L", "copies that fit S / L"]


def cost_rows(summary: dict[str, Any]) -> list[list[str]]:
    rows = []
    for task, info in summary["tasks"].items():
        s, l = (info["results"].get(r, {}).get("economics") for r in ("small", "large"))
        if not (s and l):
            continue
        method = s["energy_method"] if s["energy_method"] == l["energy_method"] else f"{s['energy_method']} / {l['energy_method']}"
        rows.append([
            task,
            f"${s['cost_per_1k_usd']:.4f} / ${l['cost_per_1k_usd']:.4f}",
            f"{s['energy_per_request_j']:.1f} J / {l['energy_per_request_j']:.1f} J",
            method,
            f"{s['co2_g_per_1k']:.2f} g / {l['co2_g_per_1k']:.2f} g",
            f"{s['memory_headroom_copies']} / {l['memory_headroom_copies']}",
        ])
    return rows


STATS_HEADER = ["task", "metric", "small [95% CI]", "large [95% CI]", "S-L paired [95% CI]", "McNemar p",
                "latency p50 / p90 / p95 / p99 [95% CI] S", "latency p50 / p90 / p95 / p99 [95% CI] L"]


def _ci(est: dict[str, Any] | None, scale: float = 100.0) -> str:
    if not est:
        return "-"
    return f"{est['value'] * scale:.1f} [{est['low'] * scale:.1f}, {est['high'] * scale:.1f}]"


def _lat_ci(est: dict[str, Any]) -> str:
    return f"{_ms(est['value'])} [{_ms(est['low'])}-{_ms(est['high'])}]"


def stats_rows(analysis: dict[str, Any]) -> list[list[str]]:
    rows = []
    for task, e in analysis.get("tasks", {}).items():
        cmp = e.get("comparison") or {}
        models = e.get("models", {})
        lat = {r: " / ".join(_lat_ci(models[r]["latency_s"][f"p{q}"]) for q in (50, 90, 95, 99)) if r in models else "-" for r in ("small", "large")}
        metrics = list((models.get("small") or models.get("large") or {}).get("quality", {}))
        for i, metric in enumerate(metrics):
            diff = (cmp.get("difference_small_minus_large") or {}).get(metric)
            mc = cmp.get("mcnemar") if metric == "accuracy" else None
            rows.append([
                task if i == 0 else "", metric,
                _ci(models.get("small", {}).get("quality", {}).get(metric)), _ci(models.get("large", {}).get("quality", {}).get(metric)),
                _ci(diff) if cmp.get("same_items") else "not comparable (different items)",
                f"{mc['p_value']:.3g} ({mc['small_only']} vs {mc['large_only']} discordant)" if mc else "-",
                lat["small"] if i == 0 else "", lat["large"] if i == 0 else "",
            ])
    return rows


CLAIMS_HEADER = ["claim", "who", "verdict", "key number [95% CI]", "rests on"]


def claim_rows(verdicts: list[dict[str, Any]]) -> list[list[str]]:
    return [[v["id"], v["who"], v["verdict"].upper() if v["verdict"] in ("supported", "refuted") else v["verdict"],
             v["key_number"], ", ".join(v["tasks"]) or "-"] for v in verdicts]


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _secondary(summary: dict[str, Any]) -> list[str]:
    """Other quality metrics and generation speed, per task and model."""
    lines = []
    for task, info in summary["tasks"].items():
        for role, res in sorted(info["results"].items(), key=lambda kv: kv[0] != "small"):
            model = summary["models"].get(role, {}).get("name", role)
            q = ", ".join(f"{k} {v * 100:.1f}" for k, v in res["quality"].items())
            extra = ""
            if res.get("ttft_s"):
                extra = f"; time to first token p50 {_ms(res['ttft_s']['p50'])}, decode {_num(res['decode_tokens_per_s_median'])} tok/s"
            lines.append(f"- {task} / {role} {model}: {q}; {res['input_tokens']} input + {res['output_tokens']} output tokens in {res['wall_s']:.1f} s{extra}")
            metric = res["primary_metric"]
            for field, values in (res.get("breakdown") or {}).items():
                per = ", ".join(f"{v} {d[metric] * 100:.1f} (n={d['n']})" for v, d in values.items())
                lines.append(f"  - {metric} by {field}: {per}")
            if res.get("consistency"):
                c = res["consistency"]
                lines.append(f"  - same answer across the {c['groups']} groups of items sharing {c['field']}: {c['same_answer'] * 100:.1f}% (all correct: {c['all_correct'] * 100:.1f}%)")
    return lines


def _sampling(config: dict[str, Any] | None) -> str:
    rt = (config or {}).get("runtime", {})
    if not rt:
        return ""
    cap = rt.get("max_samples")
    subset = f"a seeded subset of at most {cap} items per task (seed {rt.get('seed')}), the same items for both models" if cap else "every item of every task"
    return (f"- Items: {subset}; batch size {rt.get('batch_size')}, {rt.get('warmup_steps')} warm-up passes, "
            f"chat template {'on' if rt.get('chat_template') else 'off'}, dtype setting {rt.get('dtype')}")


def render_markdown(summary: dict[str, Any], environment: dict[str, Any] | None = None, config: dict[str, Any] | None = None,
                    verdicts: list[dict[str, Any]] | None = None, analysis: dict[str, Any] | None = None) -> str:
    env = environment or {}
    hw = summary.get("hardware") or {}
    parts = [f"# Small vs large: {summary['pair']} on {summary['task_group']}", ""]
    if verdicts:
        parts += [
            "## Claims of the seed articles",
            _md_table(CLAIMS_HEADER, claim_rows(verdicts)),
            "",
            *[f"- **{v['id']}** ({v['verdict']}): {v['sentence']}" for v in verdicts],
            "",
            "Verdicts hold for these models and tasks only. supported/refuted need the whole 95% interval on one side of the "
            "claim's threshold; inconclusive means it straddles it; thresholds are in configs/claims/ (claims.json has every number).",
            "",
        ]
    parts += [
        "## Per task (S = small, L = large; ratios below 1 favour the small model)",
        _md_table(TASK_HEADER, task_rows(summary)),
        "",
        "Quality: accuracy for classification (label scored by log-likelihood), ROUGE-L F1 for summarization (x100). "
        "Latency is per request (one item; per batch when batch_size > 1), after warm-up. "
        "Peak memory is the GPU allocator peak on CUDA, the process peak RSS on CPU.",
        "",
    ]
    if analysis and stats_rows(analysis):
        parts += [
            "## Statistics (95% bootstrap intervals; paired over the same items)",
            _md_table(STATS_HEADER, stats_rows(analysis)),
            "",
        ]
    parts += [
        "## Models",
        _md_table(MODEL_HEADER, model_rows(summary)),
        "",
        "## All metrics",
        *_secondary(summary),
    ]
    if cost_rows(summary):
        parts += [
            "",
            f"## Cost, energy and carbon (hardware profile {hw.get('name')}: {hw.get('description', '')})",
            _md_table(COST_HEADER, cost_rows(summary)),
            "",
            f"Cost = ${hw.get('hourly_usd')}/h x measured time per request. Energy is measured (NVML, RAPL) where a counter could be read, "
            f"otherwise **estimated** as {hw.get('power_w')} W x measured time; CO2 at {hw.get('grid_gco2_per_kwh')} g/kWh. "
            f"Copies that fit: {hw.get('memory_gb')} GB / peak memory.",
        ]
    if summary.get("incomplete_tasks"):
        parts += ["", f"**Incomplete:** {', '.join(summary['incomplete_tasks'])} (a model did not finish these tasks)."]
    if env:
        pk = env.get("packages", {})
        parts += [
            "",
            "## Method",
            f"- Hardware: {env.get('cpu')} ({env.get('cpu_count')} CPUs, {env.get('torch_threads')} torch threads)"
            + (f"; GPUs: {', '.join(env['cuda']['devices'])}" if env.get("cuda") else ""),
            f"- Versions: python {env.get('python')}, torch {pk.get('torch')}, transformers {pk.get('transformers')}, lm_eval {pk.get('lm_eval')}",
            _sampling(config),
            f"- Code: git {env.get('git_commit') or 'unknown'}{' (dirty)' if env.get('git_dirty') else ''}",
            f"- Records: samples/<role>/<task>.jsonl hold every prompt, prediction, score and timing behind these numbers.",
        ]
    return "\n".join(parts) + "\n"


def print_tables(summary: dict[str, Any], console: Any, verdicts: list[dict[str, Any]] | None = None) -> None:
    from rich.table import Table

    if verdicts:
        claims = Table(title="claims of the seed articles (details in report.md / claims.json)")
        for h in CLAIMS_HEADER:
            claims.add_column(h, overflow="fold")
        for row in claim_rows(verdicts):
            claims.add_row(*row)
        console.print(claims)

    models = Table(title=f"{summary['pair']}: models", show_lines=False)
    for h in MODEL_HEADER:
        models.add_column(h)
    for row in model_rows(summary):
        models.add_row(*row)
    tasks = Table(title=f"{summary['task_group']}: small vs large (ratios < 1 favour the small model)")
    for h in TASK_HEADER:
        tasks.add_column(h, overflow="fold")
    for row in task_rows(summary):
        tasks.add_row(*row)
    console.print(models)
    console.print(tasks)


def _apply_overrides(config: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply ``key=value`` overrides (e.g. claims.C3.thresholds.accuracy_tolerance=0.03) to a run's config."""
    if not overrides:
        return config
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from harness.errors import ConfigError

    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ConfigError(f"override {bad[0]!r} is not key=value", "e.g. claims.C3.thresholds.accuracy_tolerance=0.03 or hardware.hourly_usd=2.5")
    try:
        merged = OmegaConf.merge(OmegaConf.create(config), OmegaConf.from_dotlist(list(overrides)))
    except OmegaConfBaseException as exc:
        raise ConfigError(f"cannot apply overrides {overrides}: {str(exc).splitlines()[0]}", "use key=value with keys from config.json") from exc
    return OmegaConf.to_container(merged, resolve=True)  # type: ignore[return-value]


def _with_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """Runs recorded before the hardware/claims settings existed get today's defaults (noted in the config)."""
    missing = [k for k in ("hardware", "claims") if not config.get(k)]
    if not missing:
        return config
    from omegaconf import OmegaConf

    from harness.config import compose

    defaults = OmegaConf.to_container(compose([]), resolve=True, enum_to_str=True)
    return {**config, **{k: defaults[k] for k in missing}, "defaults_applied_at_report_time": missing}  # type: ignore[index]


def build_report(run_dir: Path, console: Any | None = None, overrides: list[str] | None = None) -> Path:
    """(Re)build summary.json, analysis.json, claims.json, report.md, report.html and the plots from a run's records.

    ``overrides`` change claim thresholds or the hardware profile for this
    report only; config.json (what was run) is never rewritten.
    """
    from harness.analysis import analyze_run
    from harness.claims import evaluate_claims
    from harness.html_report import render_html
    from harness.plots import make_plots

    run_dir = Path(run_dir)
    env_path = run_dir / "environment.json"
    env = read_json(env_path) if env_path.is_file() else None
    config = read_json(run_dir / "config.json") if (run_dir / "config.json").is_file() else {}
    config = _apply_overrides(_with_defaults(config), overrides)
    summary = summarize_run(run_dir, config)
    write_json(run_dir / "summary.json", summary)
    claims_cfg = config.get("claims") or {}
    keep = float((claims_cfg.get("C4") or {}).get("thresholds", {}).get("keep_share", 0.95))
    analysis = analyze_run(run_dir, summary, keep_share=keep, seed=int(config.get("runtime", {}).get("seed", 0)))
    write_json(run_dir / "analysis.json", analysis)
    verdicts = [v.to_dict() for v in evaluate_claims(summary, analysis, claims_cfg)]
    write_json(run_dir / "claims.json", {"overrides": list(overrides or []), "verdicts": verdicts})
    report = run_dir / "report.md"
    tmp = report.with_name("report.md.tmp")
    tmp.write_text(render_markdown(summary, env, config, verdicts, analysis), encoding="utf-8")
    tmp.replace(report)
    plots = make_plots(summary, analysis, run_dir / "plots")
    html = run_dir / "report.html"
    html.write_text(render_html(summary, env, config, verdicts, plots, analysis), encoding="utf-8")
    if console is not None:
        print_tables(summary, console, verdicts)
        console.print(f"report: {report} (and {html.name}, plots/)")
    return report
