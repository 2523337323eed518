"""Verdicts on the seed articles' claims (configs/claims/), from a run's summary and statistics.

A verdict is ``supported``, ``refuted``, ``inconclusive`` (the 95% interval
straddles the threshold) or ``not measured`` (the run lacks what the claim
needs), always with its numbers, the tasks and models it rests on, and one
plain sentence. Verdicts are about the models and tasks actually run, never a
general truth. Thresholds come from the claims config and can be overridden.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Final, Literal, Optional, TypedDict, Union

from harness.analysis.judged import JudgedComparison, JudgeSummary
from harness.analysis.load import LoadSummary
from harness.analysis.sample_size import ALPHA, SampleSize, holm, items_to_decide_many, one_sided_ps
from harness.analysis.schema import CrossFitted, Interval, IntervalRecord, PairedComparison, RoutedAt, RunAnalysis
from harness.analysis.sequential import is_sequential
from harness.analysis.stats import mcnemar_exact, paired_difference, spearman
from harness.config.schema import ClaimConfig, claim_settings
from harness.registry import Registry
from harness.results.cells import read_cell_records
from harness.results.records import SampleRecord
from harness.results.schema import ModelRecord, RunSummary
from harness.serialize import Serializable
from harness.tasks.types import is_classification, item_score_key, primary_metric

VerdictValue = Literal["supported", "refuted", "inconclusive", "not measured"]
SUPPORTED: Final = "supported"
REFUTED: Final = "refuted"
INCONCLUSIVE: Final = "inconclusive"
NOT_MEASURED: Final = "not measured"
VERDICT_VALUES: tuple[VerdictValue, ...] = (SUPPORTED, REFUTED, INCONCLUSIVE, NOT_MEASURED)


@dataclass
class Verdict(Serializable):
    id: str
    verdict: VerdictValue
    key_number: str  # the headline figure, e.g. "latency ratio 0.20 [0.17, 0.24]"
    sentence: str
    tasks: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    # the figures behind it, as claims.json holds them: each check's own (per comparison: one of the TypedDicts below)
    numbers: dict[str, Any] = field(default_factory=dict)
    who: str = ""
    source: str = ""
    quote: str = ""
    hypothesis: str = ""

    where: ClassVar[str] = "a verdict of claims.json"


class ClaimRecord(TypedDict, total=False):
    """A claim as a run's config.json records it (its ClaimConfig as a mapping; no ``check`` before claims named it)."""

    check: Optional[str]
    who: str
    source: str
    quote: str
    hypothesis: str
    metrics: list[str]
    thresholds: dict[str, float]


# a run's claims section: claim id -> its settings, typed or as recorded (read once with claim_settings)
ClaimsSection = Mapping[str, Union[ClaimConfig, ClaimRecord]]


class DifferenceCore(IntervalRecord):
    margin: float  # the threshold's distance below zero (C3's tolerance; C2: 0)
    task: str
    model: str


class DifferenceNumbers(DifferenceCore, total=False):
    """A paired quality difference against a margin (C2, C3): the interval, the margin and, when they apply, the
    majority baseline, the Holm-adjusted one-sided p-values and the items a fixed-n follow-up would need."""

    majority_baseline: float
    holm_p_above: float
    holm_p_below: float
    items_to_decide: Optional[int]  # None: no number of items would (the difference sits on the threshold)
    # a summary task a judge graded: each rubric's paired difference (1-5 scale), beside ROUGE-L's (never deciding)
    judge: str
    judged: dict[str, IntervalRecord]
    judged_disagree: list[str]  # rubrics whose difference excludes 0 on the other side of ROUGE-L's


class CascadeNumbers(TypedDict):
    """C4 on one comparison: the cross-fitted cascade of the best signal, the in-sample one beside it."""

    signal: str
    cross_fitted: CrossFitted
    kept_share: float
    in_sample: Optional[RoutedAt]
    agreement: dict[str, float]
    large_score: float
    small_score: float


class CostCore(TypedDict):
    latency_median_ratio: IntervalRecord
    peak_memory_ratio: Optional[float]
    cost_ratio: Optional[float]


class CostNumbers(CostCore, total=False):
    """C5 on one comparison: the small/large ratios; the cost's basis when a load sweep priced it; served models."""

    cost_basis: str
    served: bool


class CpuNumbers(TypedDict):
    """C8 on one task: the small model's p95 latency on a CPU and its peak memory (None: a served model's)."""

    p95_latency_s: IntervalRecord
    peak_memory_gb: Optional[float]


class PairNumbers(TypedDict):
    """C9 on one pair and task: the smaller and the much larger model, their paired difference and McNemar's p."""

    small: str
    large: str
    params_ratio: float
    difference: IntervalRecord
    mcnemar_p: Optional[float]


def judged_records(c: JudgedComparison) -> dict[str, IntervalRecord]:
    """Each rubric's paired difference as claims.json writes it (ROUGE-L's is the claim's own number)."""
    return {r: iv.record() for r, iv in c.differences.items() if r != "rougeL"}


def judged_text(judge: str, judged: Mapping[str, IntervalRecord], disagree: list[str]) -> str:
    """ "judged by J (1-5): coverage +0.14 [+0.01, +0.24], ...; coverage disagrees in sign with ROUGE-L"."""
    parts = ", ".join(f"{r} {d['value']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]" for r, d in judged.items())
    sign = f"; {', '.join(disagree)} {'disagrees' if len(disagree) == 1 else 'disagree'} in sign with ROUGE-L"
    return f"judged by {judge} (1-5): {parts}" + (sign if disagree else "")


def _judged_note(d: DifferenceNumbers) -> str:
    return f"; {judged_text(d['judge'], d['judged'], d['judged_disagree'])}" if "judged" in d else ""


def _fmt(est: IntervalRecord, scale: float = 1.0, unit: str = "") -> str:
    return f"{est['value'] * scale:.2f}{unit} [{est['low'] * scale:.2f}, {est['high'] * scale:.2f}]"


def _combine(per_task: list[VerdictValue]) -> VerdictValue:
    """All tasks agree -> that verdict; any refutation wins over support; otherwise inconclusive."""
    if not per_task:
        return NOT_MEASURED
    if all(v == SUPPORTED for v in per_task):
        return SUPPORTED
    if any(v == REFUTED for v in per_task):
        return REFUTED
    return INCONCLUSIVE


CLAIMS_FORMAT = 1  # claims.json
Check = Callable[["RunView", dict[str, float]], Verdict]
# check name -> function; a claim in the claims YAML names its check (an installed package adds its own: an entry
# point in the group small_vs_large.claim_checks)
CHECKS: Registry[Check] = Registry("claim check", "claim_checks", "check: in the claims YAML")
UNSET = ""  # a check's verdict gets its claim's id from the claims YAML (evaluate_claims)

# Runs recorded before claims named their check (config.json without `check:`) used these ids.
SEED_CLAIM_CHECKS = {
    "C1": "size_predicts_quality_weakly",
    "C2": "large_model_better",
    "C3": "small_within_tolerance",
    "C4": "cascade_keeps_quality",
    "C5": "small_faster_and_cheaper",
    "C6": "small_uses_less_energy",
    "C7": "moe_more_efficient",
    "C8": "cpu_interactive",
    "C9": "small_beats_much_larger",
    "C10": "nothing_dropped",
}


def check(name: str) -> Callable[[Check], Check]:
    """Register a claim check under a descriptive name (the claims YAML refers to it with ``check: <name>``)."""

    return CHECKS.register(name)


def check_name(cid: str, cfg: Optional[ClaimConfig]) -> Optional[str]:
    """The check a configured claim names (older configs, or a claim not configured: the seed articles' id)."""
    return (cfg.check if cfg else None) or SEED_CLAIM_CHECKS.get(cid)


def checked_by(claims: dict[str, ClaimConfig], name: str) -> tuple[str, Optional[ClaimConfig]]:
    """(id, config) of the first claim checked by ``name``; ("", None) when no configured claim uses it."""
    return next(((cid, cfg) for cid, cfg in claims.items() if check_name(cid, cfg) == name), ("", None))


KEEP_SHARE = 0.95  # the cascade keeps this share of the large model's score, where the claims set no keep_share


def cascade_keep_share(claims_cfg: ClaimsSection) -> float:
    """The share of the large model's score a cascade must keep: the cascade claim's threshold, else KEEP_SHARE (the
    statistics simulate the cascade at it; the claim's check judges it)."""
    claim = checked_by(claim_settings(claims_cfg), "cascade_keeps_quality")[1]
    return float(claim.thresholds.get("keep_share", KEEP_SHARE)) if claim else KEEP_SHARE


def at_majority_baseline(summary: RunSummary, analysis: RunAnalysis, task: str, model: str) -> Optional[float]:
    """The majority-class accuracy of a classification task's items when ``model`` is not shown to beat it (the low
    end of its accuracy interval is at or below it: no better than always answering the most common label), else None.
    """
    res = summary.result(task, model)
    if res is None or not res.baselines:
        return None
    majority = res.baselines.majority
    stats = analysis.tasks[task].models.get(model) if task in analysis.tasks else None
    interval = stats.quality.get("accuracy") if stats else None
    low = interval.low if interval is not None else res.quality.get("accuracy", 0.0)
    return majority if low <= majority else None


def baseline_note(majority: float) -> str:
    return f" (both no better than always answering the most common label, {majority * 100:.0f}%)"


class RunView:
    """What the verdict functions read: the summary, the analysis, the models, each model against the reference."""

    def __init__(
        self,
        summary: RunSummary,
        analysis: RunAnalysis,
        load: Optional[LoadSummary] = None,
        all_pairs: bool = True,
        judged: Optional[JudgeSummary] = None,
    ) -> None:
        self.summary = summary
        self.judged = judged  # a judge's grades of the summaries (judge.json), shown beside ROUGE-L
        # False with many models: checks over pairs of models (C9) take each model against the reference only
        self.all_pairs = all_pairs
        self.analysis = analysis
        self.load = load  # a load sweep's figures, when the run had one
        self.models: dict[str, ModelRecord] = summary.models
        self.names: list[str] = list(summary.order or self.models)
        self.reference: Optional[str] = summary.reference
        self.candidates = [n for n in self.names if n != self.reference]
        # architecture-only models (random weights at a published size) have latency and memory, no quality
        self.measured = [n for n in self.names if not self.models[n].architecture_only]
        paired: dict[tuple[str, str], PairedComparison] = {
            (t, cand): cmp for t, e in analysis.tasks.items() for cand, cmp in e.comparisons.items() if cmp.same_items
        }
        # comparisons whose times compare models, not machines (both cells on one hardware class)
        self.timed = {k: v for k, v in paired.items() if not v.cross_hardware}
        self.compared = {k: v for k, v in paired.items() if k[1] in self.measured and self.reference in self.measured}

    def primary(self, task: str) -> str:
        return primary_metric(self.analysis.tasks[task].task_type)

    def diff(self, task: str, cand: str) -> Interval:
        return self.compared[(task, cand)].difference_vs_reference[self.primary(task)]

    def judged_difference(self, task: str, cand: str) -> Optional[JudgedComparison]:
        """A judge's paired differences for ``cand`` against the reference on a summary task (None: not judged)."""
        return self.judged.comparison(task, cand) if self.judged is not None else None

    def label(self, task: str, cand: str) -> str:
        """How a (task, model) comparison is named in a key number: the task alone when there is one candidate."""
        return task if len(self.candidates) <= 1 else f"{cand} on {task}"

    def tasks_of(self, keys: Iterable[tuple[str, str]]) -> list[str]:
        return sorted({t for t, _ in keys})

    def scope(self) -> str:
        tasks = {t for t, _ in (self.compared or self.timed)}
        vs = f", each against {self.reference}" if len(self.candidates) > 1 else ""
        names = ", ".join(self.names) if len(self.names) <= 10 else f"{', '.join(self.names[:3])} ... {self.names[-1]}"
        return f"On these {len(self.names)} models ({names}{vs}) and {len(tasks)} task(s)"

    def at_baseline(self, task: str, cand: str) -> Optional[float]:
        """The majority-class accuracy when both ``cand`` and the reference are indistinguishable from it, else None."""
        if self.reference is None:
            return None
        ref = at_majority_baseline(self.summary, self.analysis, task, self.reference)
        return ref if ref is not None and at_majority_baseline(self.summary, self.analysis, task, cand) else None

    def records(self, model: str, task: str) -> list[SampleRecord]:
        from pathlib import Path

        cell = self.summary.tasks[task].results[model].cell
        assert cell is not None  # a summary built from cells
        return read_cell_records(Path(cell.path))


@check("size_predicts_quality_weakly")
def size_predicts_quality_weakly(run: RunView, th: dict[str, float]) -> Verdict:
    models = [run.models[n] for n in run.measured]
    if len(models) >= th.get("min_models", 3):
        rhos = {}
        for task, info in run.summary.tasks.items():
            rows = [(run.models[n].size, res.score) for n, res in info.results.items() if n in run.measured]
            if len(rows) >= 3:
                rhos[task] = spearman([p for p, _ in rows], [q for _, q in rows])[0]
        rhos = {t: r for t, r in rhos.items() if r == r}  # nan when every model scores the same
        if rhos:
            mean_rho = sum(rhos.values()) / len(rhos)
            verdict: VerdictValue = SUPPORTED if abs(mean_rho) < th.get("weak_correlation", 0.5) else REFUTED
            return Verdict(
                UNSET,
                verdict,
                f"mean Spearman rho {mean_rho:.2f} over {len(models)} models",
                f"{run.scope()}: rank correlation between parameters and score is {mean_rho:.2f} (per task: "
                + ", ".join(f"{t} {r:.2f}" for t, r in rhos.items())
                + ").",
                list(rhos),
                run.names,
                {"spearman_by_task": rhos},
            )
    wins = [(t, c) for (t, c) in run.compared if run.diff(t, c).low > 0]
    if wins:
        return Verdict(
            UNSET,
            SUPPORTED,
            f"smaller beats larger on {len(wins)} comparison(s)",
            f"{run.scope()}: a smaller model scores significantly higher than {run.reference} on {', '.join(run.label(t, c) for t, c in wins)}.",
            run.tasks_of(wins),
            run.names,
            {run.label(t, c): run.diff(t, c).to_dict() for t, c in wins},
        )
    return Verdict(
        UNSET,
        NOT_MEASURED,
        f"{len(models)} models",
        f"A rank correlation needs at least {int(th.get('min_models', 3))} models and no smaller model won a task; "
        "compare three or more models (models=[a,b,c]) to test C1.",
        run.tasks_of(run.compared),
        run.names,
    )


def _difference_verdicts(
    run: RunView, margin: Callable[[str], float]
) -> tuple[list[VerdictValue], dict[str, DifferenceNumbers]]:
    """Per (task, model): is the paired model-minus-reference CI above, below, or across ``-margin(task)``?

    supported = the whole interval is above -margin; refuted = below; else inconclusive.
    """
    keys = list(run.compared)
    sizes = {k: run.compared[k].sample_size.get(run.primary(k[0])) for k in keys}
    # Holm over this claim's comparisons (tasks x models), each direction: a decision needs the 95% interval to
    # exclude the threshold AND the Holm-adjusted paired t-test to reject, so the claim's family-wise error stays at 5%
    tested = {k: ss for k in keys if (ss := sizes[k]) is not None}
    thresholds = [-margin(k[0]) for k in tested]
    p_above = dict(zip(tested, holm(one_sided_ps(list(tested.values()), thresholds, True))))
    p_below = dict(zip(tested, holm(one_sided_ps(list(tested.values()), thresholds, False))))
    undecided: list[tuple[str, SampleSize, float]] = []  # (label, sizes, threshold): items to decide, all at once
    per: list[VerdictValue] = []
    nums: dict[str, DifferenceNumbers] = {}
    for t, c in keys:
        d, m = run.diff(t, c), margin(t)
        above, below = p_above.get((t, c), 0.0), p_below.get((t, c), 0.0)
        if is_sequential(d):  # anytime-valid and family-wise already (Bonferroni): the interval decides alone
            above = below = 0.0
        verdict: VerdictValue = (
            SUPPORTED if d.low > -m and above < ALPHA else REFUTED if d.high < -m and below < ALPHA else INCONCLUSIVE
        )
        num: DifferenceNumbers = {**d.record(), "margin": m, "task": t, "model": c}
        nums[run.label(t, c)] = num
        if (majority := run.at_baseline(t, c)) is not None:
            num["majority_baseline"] = majority
        if run.judged is not None and (judged := run.judged_difference(t, c)) is not None:
            if rubrics := judged_records(judged):
                num["judge"], num["judged"], num["judged_disagree"] = (
                    run.judged.judge,
                    rubrics,
                    judged.disagree_with_rouge,
                )
        ss = sizes[(t, c)]
        if ss and not is_sequential(d):
            num["holm_p_above"], num["holm_p_below"] = above, below
        # how many items a fixed-n follow-up would need, at the observed difference and spread (a sequential run's own
        # interval already says how far it is from deciding: no fixed-n figure beside it)
        if verdict == INCONCLUSIVE and ss and not is_sequential(d):
            undecided.append((run.label(t, c), ss, -m))
        per.append(verdict)
    for alpha, power in {(ss.alpha, ss.power) for _, ss, _ in undecided}:  # one level in practice: one batch
        group = [u for u in undecided if (u[1].alpha, u[1].power) == (alpha, power)]
        items = items_to_decide_many([(ss.mean, ss.sd, th) for _, ss, th in group], alpha, power)
        for (label, ss, _), n_items in zip(group, items):
            nums[label]["n"], nums[label]["items_to_decide"] = ss.n, n_items
    return per, nums


def decide_note(d: DifferenceNumbers) -> str:
    """ " (inconclusive at n=20; about 310 items would decide it)" for an undecided comparison, else ""."""
    if "items_to_decide" not in d:
        return ""
    k = d["items_to_decide"]
    more = (
        f"about {k} items would decide it"
        if k is not None
        else "no number of items would: the difference sits on the threshold"
    )
    return f" (inconclusive at n={d['n']}; {more})"


@check("large_model_better")
def large_model_better(run: RunView, th: dict[str, float]) -> Verdict:
    # "large is better" = small - large is below 0 everywhere: the mirror of "within a margin of 0".
    per, nums = _difference_verdicts(run, lambda t: 0.0)
    flipped: list[VerdictValue] = [REFUTED if v == SUPPORTED else SUPPORTED if v == REFUTED else v for v in per]
    verdict = _combine(flipped)
    key = "; ".join(
        f"{k} S-L {_fmt(d, 100)}{decide_note(d)}{_at_baseline(d)}{_judged_note(d)}" for k, d in nums.items()
    )
    sentence = {
        SUPPORTED: "the larger model scores significantly higher on every task",
        REFUTED: "a smaller model scores significantly higher on at least one task",
    }
    sentence_text = sentence.get(
        verdict, "on some task the difference is within the 95% interval" if nums else "no task was compared"
    )
    return Verdict(UNSET, verdict, key, f"{run.scope()}: {sentence_text}.", run.tasks_of(run.compared), run.names, nums)


def _at_baseline(d: DifferenceNumbers) -> str:
    return baseline_note(d["majority_baseline"]) if "majority_baseline" in d else ""


def _baseline_caveat(nums: dict[str, DifferenceNumbers]) -> str:
    """A sentence's caveat: the comparisons where both models sit at the majority baseline decide nothing of substance."""
    at = sorted({d["task"] for d in nums.values() if "majority_baseline" in d})
    if not at:
        return ""
    return (
        f"; on {', '.join(at)} the compared models are no better than always answering the most common label, so "
        "a difference within tolerance there says nothing about whether the smaller model can do the task"
    )


def c3_tolerance(th: dict[str, float], metric: str) -> float:
    """C3's tolerance on a task's primary metric (accuracy or ROUGE-L), as a fraction."""
    return th.get("accuracy_tolerance", 0.05) if metric == "accuracy" else th.get("rouge_tolerance", 0.02)


# checks decided by where a paired quality difference lies: their threshold on candidate - reference
DIFFERENCE_CHECKS: dict[str, Callable[[dict[str, float], str], float]] = {
    "large_model_better": lambda th, m: 0.0,
    "small_within_tolerance": lambda th, m: -c3_tolerance(th, m),
}


# These two take the claims section as run/setup.py builds it today ({id: {check, thresholds}}, values of mixed types):
# open until it passes its ClaimConfigs (cfg.claims), when ClaimsSection fits.
def difference_claims(claims_cfg: dict[str, Any]) -> list[str]:
    """The configured claim ids whose check is decided by a quality difference (those can stop a task)."""
    return [cid for cid, cfg in claim_settings(claims_cfg).items() if check_name(cid, cfg) in DIFFERENCE_CHECKS]


def difference_thresholds(claims_cfg: dict[str, Any], metric: str, ids: list[str]) -> dict[str, float]:
    """Where each claim of ``ids`` puts the candidate-minus-reference difference of ``metric`` (a task stops on these)."""
    claims = claim_settings(claims_cfg)
    return {
        cid: DIFFERENCE_CHECKS[str(check_name(cid, cfg := claims.get(cid)))](
            dict(cfg.thresholds) if cfg else {}, metric
        )
        for cid in ids
    }


@check("small_within_tolerance")
def small_within_tolerance(run: RunView, th: dict[str, float]) -> Verdict:
    def tolerance(t: str) -> float:
        return c3_tolerance(th, run.primary(t))

    per, nums = _difference_verdicts(run, tolerance)
    verdict = _combine(per)
    key = "; ".join(
        f"{k} S-L {_fmt(d, 100)} (tol -{d['margin'] * 100:g}){decide_note(d)}{_at_baseline(d)}{_judged_note(d)}"
        for k, d in nums.items()
    )
    sentence = {
        SUPPORTED: "the smaller model(s) stay within the tolerance on every task",
        REFUTED: "a smaller model falls short by more than the tolerance on at least one task",
        INCONCLUSIVE: "the intervals straddle the tolerance",
    }.get(verdict, "no task was compared")
    sentence += _baseline_caveat(nums) if verdict != REFUTED else ""
    return Verdict(UNSET, verdict, key, f"{run.scope()}: {sentence}.", run.tasks_of(run.compared), run.names, nums)


@check("cascade_keeps_quality")
def cascade_keeps_quality(run: RunView, th: dict[str, float]) -> Verdict:
    """Judged on the cross-fitted cascade (threshold chosen on other items than it is scored on); in-sample beside it."""
    per: list[VerdictValue] = []
    nums: dict[str, CascadeNumbers] = {}
    max_cost, keep = th.get("max_cost_share", 0.8), th.get("keep_share", KEEP_SHARE)
    for (t, c), e in run.compared.items():
        cas, routing = e.cascade, e.routing
        signal = routing.get("best_signal") if routing else None
        if not cas or not cas["available"] or not routing or not signal:
            continue
        held = routing["signals"][signal]["cross_fitted"]
        kept = held["score"] / cas["large_score"] if cas["large_score"] else 1.0
        nums[run.label(t, c)] = {
            "signal": signal,
            "cross_fitted": held,
            "kept_share": kept,
            "in_sample": cas["best"],
            "agreement": cas["agreement"],
            "large_score": cas["large_score"],
            "small_score": cas["small_score"],
        }
        per.append(SUPPORTED if kept >= keep and held["cost_share"] <= max_cost else REFUTED)
    verdict = _combine(per)

    def key_of(k: str, v: CascadeNumbers) -> str:
        held, ins = v["cross_fitted"], v["in_sample"]
        contrast = f"; in-sample {ins['cost_share']:.2f}x" if ins else "; in-sample: no threshold keeps it"
        return (
            f"{k}: held-out threshold keeps {v['kept_share']:.0%} of L at {held['cost_share']:.2f}x L's latency cost "
            f"({held['escalated']:.0%} escalated, {v['signal']}{contrast})"
        )

    outcome = {
        SUPPORTED: "keeps",
        REFUTED: "does not keep, on at least one task,",
        INCONCLUSIVE: "does not always keep",
    }.get(verdict, "was not simulated to keep")
    return Verdict(
        UNSET,
        verdict,
        "; ".join(key_of(k, v) for k, v in nums.items()) or "-",
        f"{run.scope()}: a small-first cascade, its threshold chosen on other items than those it is scored on (cross-fitted), "
        f"{outcome} {keep:.0%} of the large model's score at no more than {max_cost:.0%} of its latency cost (simulated from the records).",
        run.tasks_of(run.compared),
        run.names,
        nums,
    )


def _cost_ratio_at_slo(load: Optional[LoadSummary], cand: str, reference: Optional[str]) -> Optional[float]:
    """Candidate over reference cost per 1,000 requests, each at its highest load within the SLO (both swept)."""
    if load is None or reference is None or cand not in load.models or reference not in load.models:
        return None
    a, b = load.models[cand].cost_per_1k_at_slo_usd, load.models[reference].cost_per_1k_at_slo_usd
    return a / b if a is not None and b else None


SERVED_ENGINE = "openai"  # its memory is the server's: not measured by the client


@check("small_faster_and_cheaper")
def small_faster_and_cheaper(run: RunView, th: dict[str, float]) -> Verdict:
    per: list[VerdictValue] = []
    nums: dict[str, CostNumbers] = {}
    limit = th.get("max_ratio", 1.0)
    for (t, c), e in run.timed.items():
        assert e.latency_median_ratio is not None  # a comparison timed on one hardware class has its latency ratio
        lat = e.latency_median_ratio.record()
        cmp = run.summary.comparisons.get(t, {}).get(c)
        mem, cost = (cmp.peak_memory_ratio, cmp.cost_ratio) if cmp else (None, None)
        at_slo = _cost_ratio_at_slo(run.load, c, run.reference)
        if at_slo is not None:  # the sweep priced both at the highest load within the SLO: that figure decides
            cost = at_slo
        num: CostNumbers = {"latency_median_ratio": lat, "peak_memory_ratio": mem, "cost_ratio": cost}
        if at_slo is not None:
            num["cost_basis"] = "load sweep, at the highest load within the SLO"
        if SERVED_ENGINE in (run.models[c].text("engine"), run.models[str(run.reference)].text("engine")):
            num["served"] = True
        nums[run.label(t, c)] = num
        if lat["high"] < limit and (mem or 0) < limit and (cost or 0) < limit:
            per.append(SUPPORTED)
        elif lat["low"] > limit or (mem or 0) > limit or (cost or 0) > limit:
            per.append(REFUTED)
        else:
            per.append(INCONCLUSIVE)
    verdict = _combine(per)
    key = "; ".join(
        f"{k}: {v['latency_median_ratio'].get('basis', 'latency')} {_fmt(v['latency_median_ratio'])}, memory "
        + (f"{v['peak_memory_ratio']:.2f}" if v["peak_memory_ratio"] is not None else "not measured (served)")
        + f", cost {v['cost_ratio']:.2f}"
        + (" at the SLO load (load sweep)" if "cost_basis" in v else "")
        for k, v in nums.items()
        if v["cost_ratio"] is not None and (v["peak_memory_ratio"] is not None or v.get("served"))
    )
    outcome = {SUPPORTED: "are all below", REFUTED: "are not all below", INCONCLUSIVE: "are not clearly below"}.get(
        verdict, "could not be compared against"
    )
    return Verdict(
        UNSET,
        verdict,
        key or "-",
        f"{run.scope()}: the small/large ratios of median latency, peak memory and cost per 1k requests {outcome} {limit:g}.",
        run.tasks_of(run.timed),
        run.names,
        nums,
    )


@check("small_uses_less_energy")
def small_uses_less_energy(run: RunView, th: dict[str, float]) -> Verdict:
    per: list[VerdictValue] = []
    nums: dict[str, IntervalRecord] = {}
    methods: set[str] = set()
    floor = th.get("min_ratio", 1.0)
    for (t, c), e in run.timed.items():
        assert e.energy_ratio_reference_over_candidate is not None  # as the latency ratio: every timed comparison
        r = e.energy_ratio_reference_over_candidate.record()
        nums[run.label(t, c)] = r
        methods.add(r["method"])
        per.append(SUPPORTED if r["low"] > floor else REFUTED if r["high"] < floor else INCONCLUSIVE)
    verdict = _combine(per)
    label = ", ".join(sorted(methods)) or "-"
    key = "; ".join(f"{k}: energy L/S {_fmt(r)} ({r['method']})" for k, r in nums.items())
    outcome = {
        SUPPORTED: "uses more energy per request than the smaller one(s)",
        REFUTED: "uses less energy per request than a smaller one on at least one task",
        INCONCLUSIVE: "does not clearly use more energy per request than the smaller one(s)",
    }.get(verdict, "was not compared")
    return Verdict(
        UNSET,
        verdict,
        key or "-",
        f"{run.scope()}: the large model {outcome} (energy {label}; CO2 per 1k requests in the report's cost table).",
        run.tasks_of(run.timed),
        run.names,
        {**nums, "energy_method": label},
    )


@check("moe_more_efficient")
def moe_more_efficient(run: RunView, th: dict[str, float]) -> Verdict:
    moe = [m for m in run.models.values() if m.is_moe]
    dense = [m for m in run.models.values() if not m.is_moe]
    if not moe or not dense:
        return Verdict(
            UNSET,
            NOT_MEASURED,
            "no MoE vs dense pair",
            "This run has no mixture-of-experts model next to a dense one (try pair=olmoe_vs_olmo2 on a GPU).",
            [],
            run.names,
        )
    m, d = moe[0], dense[-1]  # the first MoE against the largest dense model
    if m.architecture_only or d.architecture_only:
        return _c7_cost_side(run, m, d)
    per: list[VerdictValue] = []
    nums: dict[str, dict[str, float]] = {}
    for t, info in run.summary.tasks.items():
        res = info.results
        if m.name not in res or d.name not in res:
            continue

        def eff(model: ModelRecord) -> tuple[float, float]:
            r = res[model.name]
            q = r.score
            return q / (model.params_active / 1e9), q / (
                r.item_s.p50 or float("nan")
            )  # item time: at batch 1, the latency

        (mp, ml), (dp, dl) = eff(m), eff(d)
        nums[t] = {
            "moe_score_per_b_active": mp,
            "dense_score_per_b_active": dp,
            "moe_score_per_s": ml,
            "dense_score_per_s": dl,
        }
        per.append(SUPPORTED if mp > dp and ml > dl else REFUTED if mp < dp and ml < dl else INCONCLUSIVE)
    verdict = _combine(per)
    return Verdict(
        UNSET,
        verdict,
        "; ".join(
            f"{t}: per B active {v['moe_score_per_b_active']:.2f} vs {v['dense_score_per_b_active']:.2f}"
            for t, v in nums.items()
        )
        or "-",
        f"{run.scope()}: the MoE model {m.name} {'gives' if verdict == SUPPORTED else 'does not clearly give'} more score per active parameter and per second than {d.name} (point estimates).",
        list(nums),
        [m.name, d.name],
        nums,
    )


def _c7_cost_side(run: RunView, m: ModelRecord, d: ModelRecord) -> Verdict:
    """Architecture-only models: no quality, so only C7's latency and memory side, per active parameter."""
    nums: dict[str, dict[str, float]] = {}
    for t, info in run.summary.tasks.items():
        res = info.results
        if m.name not in res or d.name not in res:
            continue
        mr, dr = res[m.name], res[d.name]
        lat = (mr.item_s.p50 or float("nan")) / (dr.item_s.p50 or float("nan"))
        mem = (mr.peak_memory_bytes or float("nan")) / (dr.peak_memory_bytes or float("nan"))
        active = m.params_active / d.params_active
        nums[t] = {
            "latency_p50_ratio": lat,
            "peak_memory_ratio": mem,
            "active_params_ratio": active,
            "latency_per_active_param_ratio": lat / active,
        }
    key = (
        "; ".join(
            f"{t}: MoE/dense latency x{v['latency_p50_ratio']:.2f} at x{v['active_params_ratio']:.2f} active params, memory x{v['peak_memory_ratio']:.2f}"
            for t, v in nums.items()
        )
        or "-"
    )
    return Verdict(
        UNSET,
        NOT_MEASURED,
        key,
        f"{m.name} vs {d.name} are architecture-only (random weights): quality is not measured, so only the cost side of C7 is shown "
        "(median latency and peak memory of the MoE relative to the dense model, against their active-parameter ratio).",
        list(nums),
        [m.name, d.name],
        nums,
    )


def _cpu_small_model(run: RunView) -> Optional[ModelRecord]:
    """The smallest (first) model when it ran on a CPU, else None."""
    small_name = run.names[0] if run.names else None
    small = run.models.get(small_name) if small_name else None
    return small if small and small.device.startswith("cpu") else None


def _cpu_standing(p95: Interval, mem: Optional[int], max_p95: float, max_mem: float) -> VerdictValue:
    """Supported when the p95 interval and the peak memory are both within their limits; refuted when either is over."""
    return (
        SUPPORTED
        if p95.high < max_p95 and mem is not None and mem < max_mem
        else REFUTED
        if p95.low > max_p95 or (mem is not None and mem > max_mem)
        else INCONCLUSIVE
    )


@check("cpu_interactive")
def cpu_interactive(run: RunView, th: dict[str, float]) -> Verdict:
    small = _cpu_small_model(run)
    if not small:
        return Verdict(
            UNSET,
            NOT_MEASURED,
            "small model not run on CPU",
            "C8 needs the smallest model run on a CPU (runtime.device=cpu).",
            [],
            run.names,
        )
    small_name = run.names[0]
    max_p95, max_mem = th.get("max_p95_latency_s", 2.0), th.get("max_memory_gb", 4.0) * 2**30
    per: list[VerdictValue] = []
    nums: dict[str, CpuNumbers] = {}
    for t, e in run.analysis.tasks.items():
        if not is_classification(e.task_type) or small_name not in e.models:
            continue
        small_latency = e.models[small_name].latency_s
        if small_latency is None:
            return Verdict(
                UNSET,
                NOT_MEASURED,
                "throughput mode",
                "C8 is about request latency: run with runtime.batch_size=1 (latency mode) to measure it.",
                [],
                run.names,
            )
        mem = run.summary.tasks[t].results[small_name].peak_memory_bytes  # None: a served model's (the server's)
        nums[t] = {
            "p95_latency_s": small_latency["p95"].record(),
            "peak_memory_gb": mem / 2**30 if mem is not None else None,
        }
        per.append(_cpu_standing(small_latency["p95"], mem, max_p95, max_mem))
    if not per:
        return Verdict(
            UNSET,
            NOT_MEASURED,
            "no classification task",
            "C8 is about classification requests; this run has none.",
            [],
            run.names,
        )
    verdict = _combine(per)
    key = "; ".join(
        f"{t}: p95 {_fmt(v['p95_latency_s'], unit=' s')}, peak "
        + (f"{v['peak_memory_gb']:.2f} GB" if v["peak_memory_gb"] is not None else "not measured (served)")
        for t, v in nums.items()
    )
    return Verdict(
        UNSET,
        verdict,
        key,
        f"On this CPU, {small.name} {'stays' if verdict == SUPPORTED else 'does not clearly stay'} within p95 < {max_p95:g} s per classification and peak memory < {max_mem / 2**30:g} GB.",
        list(nums),
        [small.name],
        nums,
    )


def _pair_test(run: RunView, small: str, large: str, task: str) -> Optional[tuple[Interval, Optional[float]]]:
    """(paired difference small - large, McNemar p) on one task: from the analysis when ``large`` is the reference, else from the records."""

    if large == run.reference and (task, small) in run.compared:
        mc = run.compared[(task, small)].mcnemar
        return run.diff(task, small), (mc.p_value if mc else None)
    results = run.summary.tasks[task].results
    if small not in results or large not in results:
        return None
    a, b = run.records(small, task), run.records(large, task)
    if [r.sample_id for r in a] != [r.sample_id for r in b]:
        return None
    key = item_score_key(run.analysis.tasks[task].task_type)
    d = Interval.of(paired_difference([r.scores[key] for r in a], [r.scores[key] for r in b]))
    p = (
        mcnemar_exact([r.scores[key] > 0 for r in a], [r.scores[key] > 0 for r in b]).p_value
        if key == "correct"
        else None
    )
    return d, p


def _distant_pairs(run: RunView, names: list[str], size: dict[str, int], min_ratio: float) -> list[tuple[str, str]]:
    """Every (smaller, larger) pair at least ``min_ratio`` apart in parameters (larger: the reference only, without all_pairs)."""
    return [
        (a, b)
        for a in names
        for b in names
        if a != b and size[b] >= min_ratio * size[a] and (run.all_pairs or b == run.reference)
    ]


def _too_close(run: RunView, names: list[str], size: dict[str, int], min_ratio: float) -> Verdict:
    """C9 not measured: no two models are ``min_ratio`` apart; the widest ratio there is."""
    biggest = max(size[b] / size[a] for a in names for b in names) if names else 0.0
    return Verdict(
        UNSET,
        NOT_MEASURED,
        f"params ratio {biggest:.1f}x",
        f"The most distant models are only {biggest:.1f}x apart in parameters; C9 needs at least {min_ratio:g}x.",
        [],
        run.names,
        {"params_ratio": biggest},
    )


def _c9_sentence(verdict: VerdictValue, min_ratio: float, wins: list[str]) -> str:
    """What the verdict says of the small models against the much larger ones."""
    return {
        SUPPORTED: f"a model significantly beats one at least {min_ratio:g}x its size on {', '.join(wins)}",
        REFUTED: f"the model {min_ratio:g}x larger is significantly better on every task",
        INCONCLUSIVE: "no task shows a significant win for the smaller model",
    }[verdict]


@check("small_beats_much_larger")
def small_beats_much_larger(run: RunView, th: dict[str, float]) -> Verdict:
    """Over every pair of models at least ``min_params_ratio`` apart: does the smaller one significantly win a task?"""
    min_ratio = th.get("min_params_ratio", 10.0)
    names = [n for n in run.measured if run.models[n].size > 0]  # a served model without published_params: unknown
    size = {n: run.models[n].size for n in names}
    pairs = _distant_pairs(run, names, size, min_ratio)
    if not pairs:
        return _too_close(run, names, size, min_ratio)
    per: list[VerdictValue] = []
    nums: dict[str, PairNumbers] = {}
    wins: list[str] = []
    for a, b in pairs:
        ratio = size[b] / size[a]
        for t in run.analysis.tasks:
            test = _pair_test(run, a, b, t)
            if test is None:
                continue
            d, p = test
            label = t if len(pairs) == 1 else f"{a} vs {b} on {t}"
            nums[label] = {"small": a, "large": b, "params_ratio": ratio, "difference": d.record(), "mcnemar_p": p}
            win = d.low > 0 and (p is None or p < 0.05)
            wins += [label] if win else []
            per.append(SUPPORTED if win else REFUTED if d.high < 0 else INCONCLUSIVE)
    if not per:
        return Verdict(
            UNSET,
            NOT_MEASURED,
            "-",
            f"No pair of models with a {min_ratio:g}x parameter ratio answered the same items.",
            [],
            run.names,
        )
    verdict: VerdictValue = SUPPORTED if wins else REFUTED if all(v == REFUTED for v in per) else INCONCLUSIVE
    ratios = sorted({f"{v['params_ratio']:.1f}x" for v in nums.values()})
    key = f"params {', '.join(ratios)}; " + "; ".join(f"{k} S-L {_fmt(v['difference'], 100)}" for k, v in nums.items())
    sentence = _c9_sentence(verdict, min_ratio, wins)
    return Verdict(
        UNSET,
        verdict,
        key,
        f"{run.scope()}: {sentence}.",
        sorted({k.split(" on ")[-1] for k in nums}),
        run.names,
        {"params_ratio": max(v["params_ratio"] for v in nums.values()), **nums},
    )


@check("nothing_dropped")
def nothing_dropped(run: RunView, th: dict[str, float]) -> Verdict:
    missing = list(run.summary.missing_cells)
    stopped: dict[str, str] = {}
    for t, info in run.summary.tasks.items():
        for name in run.models:
            res = info.results.get(name)
            if res is None:
                if f"{name}/{t}" not in missing and f"{name}/{t}" not in (run.summary.not_run):
                    missing.append(f"{name}/{t}")
            elif res.cell and res.cell.stopped and res.n == res.cell.stopped.at:
                # by design: decided, every item it used is reported
                stopped[t] = f"{t} ({res.n} of {info.info.get('n_selected')} items)"
            elif res.n != info.info.get("n_selected", res.n):
                failed = len((res.cell.failed_ids if res.cell else None) or [])
                missing.append(
                    f"{name}/{t} ({res.n} of {info.info['n_selected']} items"
                    + (f"; {failed} failed out of memory)" if failed else ")")
                )
    verdict: VerdictValue = REFUTED if missing else SUPPORTED
    n_tasks = len(run.summary.tasks)
    sentence = (
        "Every planned task and item of this run is in the records and the report."
        if not missing
        else f"Missing from the records: {', '.join(missing)}."
    )
    if stopped:
        sentence += (
            f" Stopped when decided (runtime.stop_when_decided): {', '.join(stopped.values())}; every item a model answered "
            "is reported, and the items after the stop were never run by either model."
        )
    return Verdict(
        UNSET,
        verdict,
        f"{n_tasks} tasks, {len(missing)} incomplete cell(s)"
        + (f", {len(stopped)} stopped when decided" if stopped else ""),
        sentence,
        list(run.summary.tasks),
        run.names,
        {"incomplete": missing, "stopped_when_decided": list(stopped.values())},
    )


def evaluate_claims(
    summary: RunSummary,
    analysis: RunAnalysis,
    claims_cfg: ClaimsSection,
    load: Optional[LoadSummary] = None,
    all_pairs: bool = True,
    judged: Optional[JudgeSummary] = None,
) -> list[Verdict]:
    """A verdict for every configured claim that has a check (unknown ids are reported as not measured).

    ``all_pairs`` False (many models): a check over pairs of models compares each with the reference only.
    ``judged``: a judge's grades of the summaries, shown beside ROUGE-L in C2's and C3's numbers (never deciding)."""
    run = RunView(summary, analysis, load, all_pairs, judged)
    verdicts = []
    for cid, cfg in claim_settings(claims_cfg).items():
        name = check_name(cid, cfg)
        check_fn = CHECKS.get(name) if name and name in CHECKS else None
        if check_fn is None:
            v = Verdict(
                cid,
                NOT_MEASURED,
                "-",
                f"No check is implemented for this claim id (known checks: {', '.join(CHECKS)}).",
            )
        else:
            v = replace(check_fn(run, dict(cfg.thresholds)), id=cid)
        v.who, v.source, v.quote, v.hypothesis = cfg.who, cfg.source, cfg.quote, cfg.hypothesis
        verdicts.append(v)
    return verdicts
