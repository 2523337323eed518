"""Merge several runs (e.g. a Hydra multirun) into one report comparing more than two models.

Needed for claims about many models (C1: parameters vs score across models;
C9: a small model beating any model 10x its size). Models are keyed by name;
the first run that has a model wins, and a task compares two models only where
both answered exactly the same items.
"""
from __future__ import annotations

from itertools import permutations
from pathlib import Path
from typing import Any

from harness.claims import INCONCLUSIVE, NOT_MEASURED, REFUTED, SUPPORTED, Verdict, _Run, c1
from harness.errors import HarnessError
from harness.records import read_records, samples_path, write_json
from harness.report import CLAIMS_HEADER, _md_table, claim_rows
from harness.stats import mcnemar_exact, paired_difference
from harness.summary import summarize_run


def _collect(run_dirs: list[Path]) -> tuple[dict[str, Any], dict[str, Any], dict[tuple[str, str], list[dict[str, Any]]], list[str]]:
    models: dict[str, Any] = {}
    tasks: dict[str, dict[str, Any]] = {}
    records: dict[tuple[str, str], list[dict[str, Any]]] = {}
    notes = []
    for run_dir in run_dirs:
        summary = summarize_run(run_dir)
        for role, model in summary["models"].items():
            name = model["name"]
            if name in models:
                notes.append(f"{name} also in {run_dir} (kept the first)")
                continue
            models[name] = {**model, "role": name, "run_dir": str(run_dir)}
            for task, info in summary["tasks"].items():
                if role in info["results"]:
                    tasks.setdefault(task, {"results": {}})["results"][name] = info["results"][role]
                    records[(name, task)] = read_records(samples_path(run_dir, role, task))
    return models, tasks, records, notes


def _c9(models: dict[str, Any], records: dict[tuple[str, str], list[dict[str, Any]]], min_ratio: float) -> Verdict:
    """Any (small, large) pair with >= min_ratio x parameters where the small one wins a task significantly."""
    found, checked = [], []
    for a, b in permutations(models, 2):
        ratio = models[b]["params"]["total"] / models[a]["params"]["total"]
        if ratio < min_ratio:
            continue
        for (name, task), recs in records.items():
            if name != a or (b, task) not in records:
                continue
            other = records[(b, task)]
            if [r["sample_id"] for r in recs] != [r["sample_id"] for r in other]:
                continue
            key = "correct" if "correct" in recs[0]["scores"] else "rougeL"
            d = paired_difference([r["scores"][key] for r in recs], [r["scores"][key] for r in other])
            p = mcnemar_exact([r["scores"][key] > 0 for r in recs], [r["scores"][key] > 0 for r in other]).p_value if key == "correct" else None
            checked.append((a, b, task))
            if d.low > 0 and (p is None or p < 0.05):
                found.append({"small": a, "large": b, "task": task, "params_ratio": ratio, "difference": d.to_dict(), "mcnemar_p": p})
    if not checked:
        return Verdict("C9", NOT_MEASURED, "-", f"No pair of models with a {min_ratio:g}x parameter ratio answered the same items.")
    if found:
        f = found[0]
        return Verdict("C9", SUPPORTED, f"{f['small']} beats {f['large']} ({f['params_ratio']:.1f}x) on {f['task']}",
                       f"Across {len(models)} models: a model beats one at least {min_ratio:g}x its size on {len(found)} task comparison(s).",
                       sorted({x['task'] for x in found}), sorted(models), {"wins": found})
    return Verdict("C9", INCONCLUSIVE if checked else REFUTED, f"{len(checked)} comparisons, no significant win",
                   f"Across {len(models)} models, no model significantly beats one {min_ratio:g}x its size.", sorted({c[2] for c in checked}), sorted(models))


def merge_runs(run_dirs: list[Path], out_dir: Path, claims_cfg: dict[str, Any] | None = None) -> Path:
    """Write a merged summary, C1/C9 verdicts, plots and report into ``out_dir``."""
    from harness.plots import make_plots

    missing = [str(d) for d in run_dirs if not (Path(d) / "plan.json").is_file()]
    if missing:
        raise HarnessError(f"not run directories: {', '.join(missing)}", "pass directories written by harness runs (they hold plan.json)")
    models, tasks, records, notes = _collect([Path(d) for d in run_dirs])
    summary = {"pair": "merged", "task_group": f"{len(run_dirs)} runs", "models": models, "tasks": tasks, "comparisons": {}, "notes": notes,
               "runs": [str(d) for d in run_dirs]}
    cfg = claims_cfg or {}
    th1 = dict((cfg.get("C1") or {}).get("thresholds") or {"weak_correlation": 0.5, "min_models": 3})
    th9 = dict((cfg.get("C9") or {}).get("thresholds") or {"min_params_ratio": 10.0})
    run = _Run(summary, {"tasks": {}})
    verdicts = []
    for v in (c1(run, th1), _c9(models, records, float(th9.get("min_params_ratio", 10.0)))):
        meta = cfg.get(v.id) or {}
        v.who, v.source, v.quote, v.hypothesis = meta.get("who", ""), meta.get("source", ""), meta.get("quote", ""), meta.get("hypothesis", "")
        verdicts.append(v.to_dict())
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "summary.json", summary)
    write_json(out_dir / "claims.json", {"verdicts": verdicts})
    make_plots(summary, None, out_dir / "plots")
    rows = []
    for task, info in tasks.items():
        for name, res in sorted(info["results"].items(), key=lambda kv: models[kv[0]]["params"]["total"]):
            rows.append([task, name, f"{models[name]['params']['total'] / 1e6:,.1f}M", f"{res['quality'][res['primary_metric']] * 100:.1f} ({res['primary_metric']})",
                         str(res["n"]), f"{res['latency_s']['p50'] * 1000:.0f} ms", f"{res['peak_memory_bytes'] / 2**30:.2f} GiB"])
    text = "\n".join([
        f"# Merged report: {len(models)} models from {len(run_dirs)} runs", "",
        "## Claims that need several models", _md_table(CLAIMS_HEADER, claim_rows(verdicts)), "",
        *[f"- **{v['id']}** ({v['verdict']}): {v['sentence']}" for v in verdicts], "",
        "## Every model on every task", _md_table(["task", "model", "params", "quality", "n", "p50 latency", "peak memory"], rows), "",
        "Runs: " + ", ".join(str(d) for d in run_dirs), *(["", "Notes: " + "; ".join(notes)] if notes else []), "",
        "Plots: plots/quality_vs_latency.png, plots/quality_vs_memory.png, plots/quality_vs_cost.png", "",
    ])
    report = out_dir / "report.md"
    report.write_text(text, encoding="utf-8")
    return report
