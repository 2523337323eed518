"""Verdicts on the seed articles' claims (configs/claims/), from a run's summary and statistics.

A verdict is ``supported``, ``refuted``, ``inconclusive`` (the 95% interval
straddles the threshold) or ``not measured`` (the run lacks what the claim
needs), always with its numbers, the tasks and models it rests on, and one
plain sentence. Verdicts are about the models and tasks actually run, never a
general truth. Thresholds come from the claims config and can be overridden.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional

SUPPORTED, REFUTED, INCONCLUSIVE, NOT_MEASURED = "supported", "refuted", "inconclusive", "not measured"


@dataclass
class Verdict:
    id: str
    verdict: str
    key_number: str  # the headline figure, e.g. "latency ratio 0.20 [0.17, 0.24]"
    sentence: str
    tasks: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)
    who: str = ""
    source: str = ""
    quote: str = ""
    hypothesis: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _fmt(est: dict[str, Any], scale: float = 1.0, unit: str = "") -> str:
    return f"{est['value'] * scale:.2f}{unit} [{est['low'] * scale:.2f}, {est['high'] * scale:.2f}]"


def _combine(per_task: list[str]) -> str:
    """All tasks agree -> that verdict; any refutation wins over support; otherwise inconclusive."""
    if not per_task:
        return NOT_MEASURED
    if all(v == SUPPORTED for v in per_task):
        return SUPPORTED
    if any(v == REFUTED for v in per_task):
        return REFUTED
    return INCONCLUSIVE


class _Run:
    """What the verdict functions read: the summary, the analysis, the models."""

    def __init__(self, summary: dict[str, Any], analysis: dict[str, Any]) -> None:
        self.summary = summary
        self.analysis = analysis
        self.models = summary["models"]
        self.names = [m["name"] for m in sorted(self.models.values(), key=lambda m: m["role"] != "small")]
        self.compared = {t: e for t, e in analysis["tasks"].items() if e.get("comparison", {}).get("same_items")}

    def primary(self, task: str) -> str:
        return "accuracy" if self.analysis["tasks"][task]["task_type"] == "classification" else "rougeL"

    def diff(self, task: str) -> dict[str, Any]:
        return self.compared[task]["comparison"]["difference_small_minus_large"][self.primary(task)]

    def scope(self) -> str:
        return f"On these {len(self.names)} models ({', '.join(self.names)}) and {len(self.compared)} task(s)"


def c1(run: _Run, th: dict[str, float]) -> Verdict:
    from harness.stats import spearman

    models = [m for m in run.models.values()]
    if len(models) >= th.get("min_models", 3):
        rhos = {}
        for task, info in run.summary["tasks"].items():
            rows = [(run.models[r]["params"]["total"], res["quality"][res["primary_metric"]]) for r, res in info["results"].items()]
            if len(rows) >= 3:
                rhos[task] = spearman([p for p, _ in rows], [q for _, q in rows])[0]
        if rhos:
            mean_rho = sum(rhos.values()) / len(rhos)
            verdict = SUPPORTED if abs(mean_rho) < th.get("weak_correlation", 0.5) else REFUTED
            return Verdict("C1", verdict, f"mean Spearman rho {mean_rho:.2f}", f"{run.scope()}: rank correlation between parameters and score is {mean_rho:.2f}.",
                           list(rhos), run.names, {"spearman_by_task": rhos})
    wins = [t for t in run.compared if run.diff(t)["low"] > 0]
    if wins:
        return Verdict("C1", SUPPORTED, f"small beats large on {len(wins)} task(s)",
                       f"{run.scope()}: the smaller model scores significantly higher than the larger one on {', '.join(wins)}.",
                       wins, run.names, {t: run.diff(t) for t in wins})
    return Verdict("C1", NOT_MEASURED, f"{len(models)} models", f"A rank correlation needs at least {int(th.get('min_models', 3))} models and the small model won no task; merge several runs (harness merge) to test C1.",
                   list(run.compared), run.names)


def _difference_verdicts(run: _Run, margin: Callable[[str], float]) -> tuple[list[str], dict[str, Any]]:
    """Per task: is the paired small-minus-large CI above, below, or across ``-margin(task)``?

    supported = the whole interval is above -margin; refuted = below; else inconclusive.
    """
    per, nums = [], {}
    for t in run.compared:
        d, m = run.diff(t), margin(t)
        nums[t] = {**d, "margin": m}
        per.append(SUPPORTED if d["low"] > -m else REFUTED if d["high"] < -m else INCONCLUSIVE)
    return per, nums


def c2(run: _Run, th: dict[str, float]) -> Verdict:
    # "large is better" = small - large is below 0 everywhere: the mirror of "within a margin of 0".
    per, nums = _difference_verdicts(run, lambda t: 0.0)
    flipped = [{SUPPORTED: REFUTED, REFUTED: SUPPORTED}.get(v, v) for v in per]
    verdict = _combine(flipped)
    key = "; ".join(f"{t} S-L {_fmt(d, 100)}" for t, d in nums.items())
    sentence = {SUPPORTED: "the larger model scores significantly higher on every task",
                REFUTED: "the smaller model scores significantly higher on at least one task"}
    sentence_text = sentence.get(verdict, "on some task the difference is within the 95% interval" if nums else "no task was compared")
    return Verdict("C2", verdict, key, f"{run.scope()}: {sentence_text}.", list(nums), run.names, nums)


def c3(run: _Run, th: dict[str, float]) -> Verdict:
    def tolerance(t: str) -> float:
        return th.get("accuracy_tolerance", 0.05) if run.primary(t) == "accuracy" else th.get("rouge_tolerance", 0.02)

    per, nums = _difference_verdicts(run, tolerance)
    verdict = _combine(per)
    key = "; ".join(f"{t} S-L {_fmt(d, 100)} (tol -{d['margin'] * 100:g})" for t, d in nums.items())
    sentence = {SUPPORTED: "the small model stays within the tolerance on every task",
                REFUTED: "the small model falls short by more than the tolerance on at least one task",
                INCONCLUSIVE: "the intervals straddle the tolerance"}.get(verdict, "no task was compared")
    return Verdict("C3", verdict, key, f"{run.scope()}: {sentence}.", list(nums), run.names, nums)


def c4(run: _Run, th: dict[str, float]) -> Verdict:
    per, nums = [], {}
    max_cost = th.get("max_cost_share", 0.8)
    for t, e in run.compared.items():
        cas = e["comparison"]["cascade"]
        if not cas.get("available"):
            continue
        best = cas["best"]
        nums[t] = {"best": best, "agreement": cas["agreement"], "large_score": cas["large_score"], "small_score": cas["small_score"]}
        per.append(SUPPORTED if best and best["cost_share"] <= max_cost else REFUTED)
    verdict = _combine(per)
    key = "; ".join(
        f"{t}: " + (f"keeps {th.get('keep_share', 0.95):.0%} of L at {v['best']['cost_share']:.2f}x L's latency cost ({v['best']['escalated']:.0%} escalated)"
                    if v["best"] else "no threshold keeps the target score")
        for t, v in nums.items())
    outcome = {SUPPORTED: "keeps", REFUTED: "does not keep, on at least one task,", INCONCLUSIVE: "does not always keep"}.get(verdict, "was not simulated to keep")
    return Verdict("C4", verdict, key or "-", f"{run.scope()}: a small-first cascade {outcome} {th.get('keep_share', 0.95):.0%} of the large model's score at no more than {max_cost:.0%} of its latency cost (simulated from the records).",
                   list(nums), run.names, nums)


def c5(run: _Run, th: dict[str, float]) -> Verdict:
    per, nums = [], {}
    limit = th.get("max_ratio", 1.0)
    for t, e in run.compared.items():
        lat = e["comparison"]["latency_median_ratio"]
        cmp = run.summary["comparisons"].get(t, {})
        mem, cost = cmp.get("peak_memory_ratio"), cmp.get("cost_ratio")
        nums[t] = {"latency_median_ratio": lat, "peak_memory_ratio": mem, "cost_ratio": cost}
        if lat["high"] < limit and (mem or 0) < limit and (cost or 0) < limit:
            per.append(SUPPORTED)
        elif lat["low"] > limit or (mem or 0) > limit or (cost or 0) > limit:
            per.append(REFUTED)
        else:
            per.append(INCONCLUSIVE)
    verdict = _combine(per)
    key = "; ".join(f"{t}: latency {_fmt(v['latency_median_ratio'])}, memory {v['peak_memory_ratio']:.2f}, cost {v['cost_ratio']:.2f}" for t, v in nums.items() if v["peak_memory_ratio"] is not None and v["cost_ratio"] is not None)
    outcome = {SUPPORTED: "are all below", REFUTED: "are not all below", INCONCLUSIVE: "are not clearly below"}.get(verdict, "could not be compared against")
    return Verdict("C5", verdict, key or "-", f"{run.scope()}: the small/large ratios of median latency, peak memory and cost per 1k requests {outcome} {limit:g}.",
                   list(nums), run.names, nums)


def c6(run: _Run, th: dict[str, float]) -> Verdict:
    per, nums, methods = [], {}, set()
    floor = th.get("min_ratio", 1.0)
    for t, e in run.compared.items():
        r = e["comparison"]["energy_ratio_large_over_small"]
        nums[t] = r
        methods.add(r["method"])
        per.append(SUPPORTED if r["low"] > floor else REFUTED if r["high"] < floor else INCONCLUSIVE)
    verdict = _combine(per)
    label = ", ".join(sorted(methods)) or "-"
    key = "; ".join(f"{t}: energy L/S {_fmt(r)} ({r['method']})" for t, r in nums.items())
    outcome = {SUPPORTED: "uses more energy per request than the small one", REFUTED: "uses less energy per request than the small one on at least one task",
               INCONCLUSIVE: "does not clearly use more energy per request than the small one"}.get(verdict, "was not compared")
    return Verdict("C6", verdict, key or "-", f"{run.scope()}: the large model {outcome} (energy {label}; CO2 per 1k requests in the report's cost table).",
                   list(nums), run.names, {**nums, "energy_method": label})


def c7(run: _Run, th: dict[str, float]) -> Verdict:
    moe = [m for m in run.models.values() if m["params"].get("is_moe")]
    dense = [m for m in run.models.values() if not m["params"].get("is_moe")]
    if not moe or not dense:
        return Verdict("C7", NOT_MEASURED, "no MoE vs dense pair", "This run has no mixture-of-experts model next to a dense one (try pair=olmoe_vs_olmo2 on a GPU).", [], run.names)
    m, d = moe[0], dense[0]
    per, nums = [], {}
    for t, info in run.summary["tasks"].items():
        res = info["results"]
        if m["role"] not in res or d["role"] not in res:
            continue
        def eff(model: dict[str, Any]) -> tuple[float, float]:
            r = res[model["role"]]
            q = r["quality"][r["primary_metric"]]
            return q / (model["params"]["active"] / 1e9), q / r["latency_s"]["p50"]
        (mp, ml), (dp, dl) = eff(m), eff(d)
        nums[t] = {"moe_score_per_b_active": mp, "dense_score_per_b_active": dp, "moe_score_per_s": ml, "dense_score_per_s": dl}
        per.append(SUPPORTED if mp > dp and ml > dl else REFUTED if mp < dp and ml < dl else INCONCLUSIVE)
    verdict = _combine(per)
    return Verdict("C7", verdict, "; ".join(f"{t}: per B active {v['moe_score_per_b_active']:.2f} vs {v['dense_score_per_b_active']:.2f}" for t, v in nums.items()) or "-",
                   f"{run.scope()}: the MoE model {m['name']} {'gives' if verdict == SUPPORTED else 'does not clearly give'} more score per active parameter and per second than {d['name']} (point estimates).",
                   list(nums), [m["name"], d["name"]], nums)


def c8(run: _Run, th: dict[str, float]) -> Verdict:
    small = run.models.get("small")
    if not small or small["device"] != "cpu":
        return Verdict("C8", NOT_MEASURED, "small model not run on CPU", "C8 needs the small model run on a CPU (runtime.device=cpu).", [], run.names)
    max_p95, max_mem = th.get("max_p95_latency_s", 2.0), th.get("max_memory_gb", 4.0) * 2**30
    per, nums = [], {}
    for t, e in run.analysis["tasks"].items():
        if e["task_type"] != "classification" or "small" not in e["models"]:
            continue
        p95 = e["models"]["small"]["latency_s"]["p95"]
        mem = run.summary["tasks"][t]["results"]["small"]["peak_memory_bytes"]
        nums[t] = {"p95_latency_s": p95, "peak_memory_gb": mem / 2**30}
        per.append(SUPPORTED if p95["high"] < max_p95 and mem < max_mem else REFUTED if p95["low"] > max_p95 or mem > max_mem else INCONCLUSIVE)
    if not per:
        return Verdict("C8", NOT_MEASURED, "no classification task", "C8 is about classification requests; this run has none.", [], run.names)
    verdict = _combine(per)
    key = "; ".join(f"{t}: p95 {_fmt(v['p95_latency_s'], unit=' s')}, peak {v['peak_memory_gb']:.2f} GB" for t, v in nums.items())
    return Verdict("C8", verdict, key, f"On this CPU, {small['name']} {'stays' if verdict == SUPPORTED else 'does not clearly stay'} within p95 < {max_p95:g} s per classification and peak memory < {max_mem / 2**30:g} GB.",
                   list(nums), [small["name"]], nums)


def c9(run: _Run, th: dict[str, float]) -> Verdict:
    s, l = run.models.get("small"), run.models.get("large")
    if not s or not l:
        return Verdict("C9", NOT_MEASURED, "-", "C9 needs a small and a large model.", [], run.names)
    ratio = l["params"]["total"] / s["params"]["total"]
    if ratio < th.get("min_params_ratio", 10.0):
        return Verdict("C9", NOT_MEASURED, f"params ratio {ratio:.1f}x", f"The large model has only {ratio:.1f}x the small one's parameters; C9 needs at least {th.get('min_params_ratio', 10.0):g}x.", [], run.names, {"params_ratio": ratio})
    per, nums = [], {}
    for t, e in run.compared.items():
        d = run.diff(t)
        mc = e["comparison"].get("mcnemar")
        nums[t] = {"difference": d, "mcnemar": mc}
        significant_win = d["low"] > 0 and (mc is None or mc["p_value"] < 0.05)
        per.append(SUPPORTED if significant_win else REFUTED if d["high"] < 0 else INCONCLUSIVE)
    if SUPPORTED in per:
        verdict = SUPPORTED
    elif per and all(v == REFUTED for v in per):
        verdict = REFUTED
    else:
        verdict = INCONCLUSIVE if per else NOT_MEASURED
    key = f"params {ratio:.1f}x; " + "; ".join(f"{t} S-L {_fmt(v['difference'], 100)}" for t, v in nums.items())
    sentence = {SUPPORTED: "the small model significantly beats the 10x larger one on at least one task",
                REFUTED: "the 10x larger model is significantly better on every task",
                INCONCLUSIVE: "no task shows a significant win for the small model"}.get(verdict, "no task was compared")
    return Verdict("C9", verdict, key, f"{run.scope()}: {sentence}.", list(nums), run.names, {"params_ratio": ratio, **nums})


def c10(run: _Run, th: dict[str, float]) -> Verdict:
    missing = []
    for t, info in run.summary["tasks"].items():
        for role in run.models:
            res = info["results"].get(role)
            if res is None or res["n"] != info.get("n_selected", res["n"]):
                missing.append(f"{t}/{role}")
    verdict = REFUTED if missing else SUPPORTED
    n_tasks = len(run.summary["tasks"])
    return Verdict("C10", verdict, f"{n_tasks} tasks, {len(missing)} incomplete",
                   f"Every planned task and item of this run is in the records and the report." if not missing else f"Missing from the records: {', '.join(missing)}.",
                   list(run.summary["tasks"]), run.names, {"incomplete": missing})


CHECKS: dict[str, Callable[[_Run, dict[str, float]], Verdict]] = {
    "C1": c1, "C2": c2, "C3": c3, "C4": c4, "C5": c5, "C6": c6, "C7": c7, "C8": c8, "C9": c9, "C10": c10,
}


def evaluate_claims(summary: dict[str, Any], analysis: dict[str, Any], claims_cfg: dict[str, Any]) -> list[Verdict]:
    """A verdict for every configured claim that has a check (unknown ids are reported as not measured)."""
    run = _Run(summary, analysis)
    verdicts = []
    for cid, cfg in claims_cfg.items():
        check: Optional[Callable[[_Run, dict[str, float]], Verdict]] = CHECKS.get(cid)
        if check is None:
            v = Verdict(cid, NOT_MEASURED, "-", "No check is implemented for this claim id (harness/claims.py).")
        else:
            v = check(run, dict(cfg.get("thresholds") or {}))
        v.who, v.source, v.quote, v.hypothesis = cfg.get("who", ""), cfg.get("source", ""), cfg.get("quote", ""), cfg.get("hypothesis", "")
        verdicts.append(v)
    return verdicts
