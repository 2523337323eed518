"""A decision per task: the cheapest option whose quality stays within a tolerance of the reference model.

The options are every model alone and, for each model against the reference, a
small-first cascade at its cross-fitted threshold (``harness.analysis.routing``: chosen on
other items than those it is scored on). An option *meets* the tolerance when the
whole 95% interval of its quality minus the reference's, paired over the same
items, lies above ``-tolerance`` -- the rule C3 uses, so an option is never chosen
on a point estimate alone. The tolerance is C3's (``claims.C3.thresholds``:
accuracy_tolerance, rouge_tolerance), set at run time or for one report with
``harness report RUN claims.C3.thresholds.accuracy_tolerance=0.03``.

Cost is the hardware profile's price x measured time per request (the cascade:
its time share x the reference's cost), latency the 95th percentile per request
(time per item in throughput mode), memory the measured peak (the cascade holds
both models).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, Optional

from harness.analysis.judged import JudgedComparison, JudgeSummary
from harness.analysis.load import LoadSummary, slo_text
from harness.analysis.schema import Interval, RouterEvaluation, RunAnalysis
from harness.config.schema import claim_settings
from harness.results.schema import CellSummary, RunSummary
from harness.serialize import Serializable
from harness.verdicts.claims import (
    ClaimsSection,
    at_majority_baseline,
    baseline_note,
    c3_tolerance,
    checked_by,
    judged_records,
    judged_text,
)

Standing = Literal["meets", "not shown", "falls short", "reference", "fails the latency SLO"]
MEETS: Final = "meets"
NOT_SHOWN: Final = "not shown"
FALLS_SHORT: Final = "falls short"
REFERENCE: Final = "reference"
FAILS_SLO: Final = (
    "fails the latency SLO"  # its load test met the SLO (load.slo) at no step, or only below load.expected_rate
)
DECISION_FORMAT = 1  # decision.json


@dataclass
class Option(Serializable):
    omit_none = ("judged",)

    name: str
    kind: str  # model | cascade
    difference: Optional[Interval]  # quality minus the reference's, paired, with its interval (None: the reference)
    cost_per_1k_usd: Optional[float]
    latency_p95_s: Optional[float]
    latency_basis: str  # latency | time per item (throughput mode)
    memory_bytes: Optional[float]
    standing: Standing
    # a summary task a judge graded: the model's paired differences to the reference per rubric, beside ROUGE-L's
    judged: Optional[JudgedComparison] = None


@dataclass
class TaskDecision(Serializable):
    """A task's answer: every option, the cheapest within tolerance of the reference, or the closest when none is."""

    omit_none = ("slo_p95_s", "majority_baseline", "judge", "slo", "reference_fails_slo")

    metric: str
    tolerance: float
    reference: str
    choice: Optional[Option]
    closest: Optional[Option]
    options: list[Option]
    slo_p95_s: Optional[float] = None  # the load sweep's service-level objective, when one was set
    # the majority-class accuracy, when the reference and the option shown are both no better than answering that label
    majority_baseline: Optional[float] = None
    judge: Optional[str] = None  # the judge model whose grades are beside ROUGE-L (judge.json), when one graded them
    slo: Optional[str] = None  # the load test's SLO in words (load.slo), when one was set
    reference_fails_slo: Optional[bool] = None  # True: the reference itself missed the SLO (or the expected rate)

    @property
    def shown(self) -> tuple[str, Option]:
        """The answer's wording and the option it rests on."""
        caveat = "" if self.majority_baseline is None else baseline_note(self.majority_baseline)
        if self.choice is not None:
            return "use the cheaper option" + caveat, self.choice
        fails = "; it fails the latency SLO itself, so no option meets both" if self.reference_fails_slo else ""
        answer = (
            f"keep {self.reference}: no cheaper option meets the tolerance"
            + caveat
            + fails
            + ("; closest:" if self.closest else "")
        )
        return answer, self.closest or self.options[0]


def _standing(diff: Interval, tolerance: float) -> Standing:
    return MEETS if diff.low > -tolerance else FALLS_SHORT if diff.high < -tolerance else NOT_SHOWN


def _alone(name: str, res: CellSummary, diff: Optional[Interval], tolerance: float) -> Option:
    latency = res.mode == "latency"
    return Option(
        name,
        "model",
        diff,
        res.economics.cost_per_1k_usd if res.economics else None,
        (res.latency_s if latency else res.item_s).p95,
        "latency" if latency else "time per item (throughput mode)",
        res.peak_memory_bytes,
        REFERENCE if diff is None else _standing(diff, tolerance),
    )


def _cascade(
    name: str,
    reference: str,
    routing: Optional[RouterEvaluation],
    res: CellSummary,
    ref_res: CellSummary,
    tolerance: float,
) -> Optional[Option]:
    best = routing.get("best_signal") if routing else None
    signal = routing["signals"].get(best) if routing and best else None
    held = signal.get("cross_fitted") if signal else None
    if not held or "difference_vs_large" not in held:
        return None
    difference = Interval.from_dict(held["difference_vs_large"])
    ref_cost = ref_res.economics.cost_per_1k_usd if ref_res.economics else None
    memory = [res.peak_memory_bytes, ref_res.peak_memory_bytes]
    label = f"{name} -> {reference} cascade ({best}, cross-fitted, {held['escalated']:.0%} escalated)"
    return Option(
        label,
        "cascade",
        difference,
        held["cost_share"] * ref_cost if ref_cost is not None else None,
        held["item_s_p95"],
        "latency" if res.mode == ref_res.mode == "latency" else "time per item (throughput mode)",
        sum(m for m in memory if m is not None) if None not in memory else None,
        _standing(difference, tolerance),
    )


def _options(
    summary: RunSummary, analysis: RunAnalysis, task: str, reference: str, metric: str, tolerance: float
) -> list[Option]:
    """The reference alone first, then each model compared with it on the same items and its cascade."""
    results, models = summary.tasks[task].results, summary.models
    entry = analysis.tasks.get(task)
    comparisons = entry.comparisons if entry else {}
    options = [_alone(reference, results[reference], None, tolerance)]
    for name in summary.order or list(results):
        cmp = comparisons.get(name)
        if (
            name == reference
            or name not in results
            or (name in models and models[name].architecture_only)
            or cmp is None
            or not cmp.same_items
        ):
            continue
        options.append(_alone(name, results[name], cmp.difference_vs_reference[metric], tolerance))
        cascade = _cascade(name, reference, cmp.routing, results[name], results[reference], tolerance)
        if cascade:
            options.append(cascade)
    return options


def _choose(options: list[Option]) -> tuple[Optional[Option], Optional[Option]]:
    """The cheapest option cheaper than the reference that meets the tolerance, else the closest cheaper one."""
    ref_cost = options[0].cost_per_1k_usd
    cheaper = [
        o
        for o in options[1:]
        if o.cost_per_1k_usd is not None and ref_cost is not None and o.cost_per_1k_usd < ref_cost
    ]
    meeting = [o for o in cheaper if o.standing == MEETS]
    # ties (a cascade that escalates nothing costs what its small model does): the smaller memory, then the model alone
    choice = (
        min(meeting, key=lambda o: (round(o.cost_per_1k_usd or 0.0, 9), o.memory_bytes or 0, o.kind != "model"))
        if meeting
        else None
    )
    closest = (
        None
        if choice or not cheaper
        else max(cheaper, key=lambda o: o.difference.value if o.difference else float("-inf"))
    )
    return choice, closest


def task_decision(
    summary: RunSummary,
    analysis: RunAnalysis,
    task: str,
    tolerance: float,
    load: Optional[LoadSummary] = None,
    judged: Optional[JudgeSummary] = None,
) -> Optional[TaskDecision]:
    """Every option on ``task``, the cheapest that meets the tolerance, or the closest when none does (None: no reference).

    With a load sweep and its SLO, a model whose p95 latency met the SLO at no level fails, whatever its cost.
    """
    info, reference = summary.tasks[task], summary.reference
    results = info.results
    models = summary.models
    if reference is None or reference not in results or (reference in models and models[reference].architecture_only):
        return None
    metric = results[reference].primary_metric
    options = _options(summary, analysis, task, reference, metric, tolerance)
    for o in options[1:]:
        if o.kind == "model" and load is not None and load.meets_slo(o.name) is False:
            o.standing = FAILS_SLO
        if o.kind == "model" and judged is not None:
            o.judged = judged.comparison(task, o.name)
    choice, closest = _choose(options)
    shown = choice or closest
    shown_name = shown.name if shown is not None and shown.kind == "model" else reference
    ref_base = at_majority_baseline(summary, analysis, task, reference)
    both = ref_base is not None and at_majority_baseline(summary, analysis, task, shown_name) is not None
    return TaskDecision(
        metric,
        tolerance,
        reference,
        choice,
        closest,
        options,
        load.slo_p95_s if load is not None else None,
        ref_base if both else None,
        judged.judge if judged is not None and any(o.judged for o in options) else None,
        _slo_words(load),
        True if load is not None and load.meets_slo(reference) is False else None,
    )


def decisions(
    summary: RunSummary,
    analysis: RunAnalysis,
    claims_cfg: ClaimsSection,
    load: Optional[LoadSummary] = None,
    judged: Optional[JudgeSummary] = None,
) -> dict[str, TaskDecision]:
    """A decision for every task that has a reference with measured quality (``load``: a sweep with its SLO;
    ``judged``: a judge's grades of the summaries, shown beside ROUGE-L, never deciding)."""
    c3 = checked_by(claim_settings(claims_cfg), "small_within_tolerance")[1]
    th = dict(c3.thresholds) if c3 else {}
    out: dict[str, TaskDecision] = {}
    for task in summary.tasks:
        ref = summary.result(task, summary.reference)
        if ref:
            d = task_decision(summary, analysis, task, c3_tolerance(th, ref.primary_metric), load, judged)
            if d:
                out[task] = d
    return out


# --- as table rows --------------------------------------------------------------------------------

DECISION_HEADER = [
    "task",
    "answer",
    "option",
    "quality minus reference [95% CI]",
    "cost / 1k requests",
    "p95 latency",
    "peak memory",
]
OPTIONS_HEADER = [
    "task",
    "option",
    "quality minus reference [95% CI]",
    "within tolerance?",
    "cost / 1k requests",
    "p95 latency",
    "peak memory",
]


def _money(v: Optional[float]) -> str:
    return "-" if v is None else f"${v:.4f}"


def _secs(o: Option) -> str:
    v = o.latency_p95_s
    return (
        "-"
        if v is None
        else (f"{v * 1000:.0f} ms" if v < 1 else f"{v:.2f} s") + ("" if o.latency_basis == "latency" else " per item")
    )


def _mem(v: Optional[float]) -> str:
    return "-" if v is None else f"{v / 2**30:.2f} GB"


def _diff(o: Option, d: TaskDecision) -> str:
    diff = o.difference
    if diff is None:
        return "(reference)"
    text = f"{diff.value * 100:+.1f} [{diff.low * 100:+.1f}, {diff.high * 100:+.1f}] (tol -{d.tolerance * 100:g})"
    if o.judged is not None and d.judge is not None:
        text += f"; {judged_text(d.judge, judged_records(o.judged), o.judged.disagree_with_rouge)}"
    return text


def decision_rows(table: dict[str, TaskDecision]) -> list[list[str]]:
    rows = []
    for task, d in table.items():
        answer, o = d.shown
        rows.append([task, answer, o.name, _diff(o, d), _money(o.cost_per_1k_usd), _secs(o), _mem(o.memory_bytes)])
    return rows


def decision_title(decision: dict[str, TaskDecision]) -> str:
    return f"Decision per task: the cheapest option within tolerance of {next(iter(decision.values())).reference}"


def decision_note(decision: dict[str, TaskDecision]) -> str:
    ref = next(iter(decision.values())).reference
    return (
        (
            f"Options: each model alone, and each small-first cascade at its cross-fitted threshold (best held-out signal). An option "
            f"meets the tolerance when its whole 95% interval of quality minus {ref}'s is above -tolerance (C3's rule and tolerance: "
            "claims.C3.thresholds, or `harness report RUN claims.C3.thresholds.accuracy_tolerance=0.03`); the answer is the "
            "cheapest such option cheaper than the reference. Cost from the hardware profile's price x measured time; a cascade holds "
            "both models in memory. Every option: decision.json and the table at the end."
        )
        + _slo_note(decision)
        + _judge_note(decision)
    )


def _judge_note(decision: dict[str, TaskDecision]) -> str:
    judges = sorted({d.judge for d in decision.values() if d.judge})
    if not judges:
        return ""
    return (
        f" On summaries, {', '.join(judges)} graded each model's outputs (judge.md): its paired differences to the "
        "reference on a 1-5 scale stand beside ROUGE-L's, and where the two disagree in sign it is said; the "
        "decision rests on ROUGE-L."
    )


def _slo_words(load: Optional[LoadSummary]) -> Optional[str]:
    if load is None or load.slo is None:
        return None
    expected = f", at the expected {load.expected_rate:g} requests/s" if load.expected_rate is not None else ""
    return slo_text(load) + expected


def _slo_note(decision: dict[str, TaskDecision]) -> str:
    first = next(iter(decision.values()))
    slo = first.slo or (f"p95 end to end within {first.slo_p95_s:g} s" if first.slo_p95_s is not None else None)
    if slo is None:
        return ""
    return (
        f" Latency SLO: {slo} (load.slo); a model whose load test met it at no step (or only below the expected rate) "
        f"{FAILS_SLO} and is not an answer, however cheap."
    )


def option_rows(table: dict[str, TaskDecision]) -> list[list[str]]:
    return [
        [
            task,
            o.name,
            _diff(o, d),
            o.standing,
            _money(o.cost_per_1k_usd),
            _secs(o),
            _mem(o.memory_bytes),
        ]
        for task, d in table.items()
        for o in d.options
    ]
