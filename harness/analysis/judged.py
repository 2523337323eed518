"""What a judge's grades say, with how far to trust them: per model and rubric the mean score with its bootstrap
interval, each candidate against the reference model paired on the same items beside ROUGE-L's paired difference
(and whether the two disagree in sign), the judge's agreement with the reference-based metrics (Spearman with
key-fact recall and ROUGE-L over the judged items), and the pairwise verdicts that survive swapping the order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

import numpy as np

from harness.analysis.schema import Interval
from harness.analysis.stats import bootstrap_ci, paired_difference, spearman
from harness.config.schema import hardware_profile
from harness.results.cells import read_cell_records, read_manifest
from harness.results.comparison import load_cells, read_run
from harness.results.records import SampleRecord, read_json
from harness.serialize import Serializable

REFERENCE_METRICS = ("rougeL", "key_fact_recall")  # what the judge is checked against, where the items have them


@dataclass
class JudgeCells(Serializable):
    """What one ``harness judge`` did (judge.json): the judge, how it scored, and the cells it judged into (their
    sessions keep the judge's seconds, never counted in a candidate's cost)."""

    where = "judge.json"

    judge: str
    method: str  # probabilities (G-Eval) | parsed
    rubric_cells: dict[str, dict[str, str]] = field(default_factory=dict)  # task -> judged model -> judgment cell
    pairwise_cells: dict[str, dict[str, str]] = field(default_factory=dict)  # task -> candidate -> vs the reference
    command: str = ""  # the command that judged (judge.md's first line)


@dataclass
class Correlation(Serializable):
    """Spearman's rank correlation of a rubric's scores with a reference-based metric over the same items."""

    metric: str
    rho: Optional[float]  # None: fewer than three items, or a constant series
    p_value: Optional[float]
    n: int


@dataclass
class JudgedModel(Serializable):
    """One model's judged summaries on a task: each rubric's mean (1-5) and ROUGE-L's, with 95% intervals."""

    n: int
    rubrics: dict[str, Interval]
    unparseable: dict[str, int]  # answers that stated no scale point, per rubric (left out of the mean, counted here)
    rouge_l: Optional[Interval]


@dataclass
class JudgedComparison(Serializable):
    """A candidate against the reference model on the same items: each rubric's and ROUGE-L's paired difference."""

    n: int
    differences: dict[str, Interval]  # rubric (and "rougeL") -> candidate minus reference
    disagree_with_rouge: list[str]  # rubrics whose difference excludes 0 on the other side of ROUGE-L's


@dataclass
class Pairwise(Serializable):
    """The candidate's summary against the reference model's, both orders: verdicts only where the orders agree."""

    n: int
    orders_agree: int
    position_flips: int  # the preference changed with the order: the judge's position bias
    candidate_preferred: int
    reference_preferred: int
    unparseable: int

    @property
    def flip_share(self) -> float:
        judged = self.orders_agree + self.position_flips
        return self.position_flips / judged if judged else math.nan


@dataclass
class JudgedTask(Serializable):
    models: dict[str, JudgedModel] = field(default_factory=dict)
    comparisons: dict[str, JudgedComparison] = field(default_factory=dict)
    agreement: dict[str, list[Correlation]] = field(default_factory=dict)  # rubric -> with each reference metric
    pairwise: dict[str, Pairwise] = field(default_factory=dict)  # candidate -> against the reference


@dataclass
class JudgeSummary(Serializable):
    """``judge.json``'s analysis: the judge, how it scored, and per task what its grades say."""

    where = "judge.json"

    judge: str
    method: str  # probabilities (G-Eval) | parsed
    reference: Optional[str]
    seconds: float  # the judge's own time over the judgment cells' sessions: never part of a candidate's cost
    tasks: dict[str, JudgedTask]
    warnings: list[str] = field(default_factory=list)
    # the judge's seconds at the run's hardware profile's hourly price (None: the run priced nothing)
    cost_usd: Optional[float] = None

    def comparison(self, task: str, model: str) -> Optional[JudgedComparison]:
        """``model`` against the reference on ``task``, judged (None where the judge did not grade both)."""
        entry = self.tasks.get(task)
        return entry.comparisons.get(model) if entry else None


def _finite(values: list[float]) -> list[float]:
    return [v for v in values if not math.isnan(v)]


def _model(judged: list[SampleRecord], source: dict[str, SampleRecord], rubrics: list[str], seed: int) -> JudgedModel:
    means, unparseable = {}, {}
    for rubric in rubrics:
        values = [r.scores[rubric] for r in judged]
        unparseable[rubric] = sum(math.isnan(v) for v in values)
        if kept := _finite(values):
            means[rubric] = Interval.of(bootstrap_ci(kept, seed=seed))
    rouge = [source[r.sample_id].scores["rougeL"] for r in judged if "rougeL" in source[r.sample_id].scores]
    return JudgedModel(len(judged), means, unparseable, Interval.of(bootstrap_ci(rouge, seed=seed)) if rouge else None)


def _paired(cand: dict[str, float], ref: dict[str, float], seed: int) -> Optional[Interval]:
    items = [i for i in cand if i in ref and not (math.isnan(cand[i]) or math.isnan(ref[i]))]
    if len(items) < 2:
        return None
    return Interval.of(paired_difference([cand[i] for i in items], [ref[i] for i in items], seed=seed))


def _compare(
    cand: list[SampleRecord],
    ref: list[SampleRecord],
    sources: tuple[dict[str, SampleRecord], dict[str, SampleRecord]],
    rubrics: list[str],
    seed: int,
) -> JudgedComparison:
    diffs: dict[str, Interval] = {}
    for name in [*rubrics, "rougeL"]:
        if name == "rougeL":
            c = {i: r.scores.get(name, math.nan) for i, r in sources[0].items()}
            b = {i: r.scores.get(name, math.nan) for i, r in sources[1].items()}
        else:
            c, b = {r.sample_id: r.scores[name] for r in cand}, {r.sample_id: r.scores[name] for r in ref}
        if (interval := _paired(c, b, seed)) is not None:
            diffs[name] = interval
    rouge = diffs.get("rougeL")
    disagree = [
        r
        for r in rubrics
        if r in diffs
        and rouge is not None
        and (side := diffs[r].excludes(0.0))
        and rouge.excludes(0.0) not in (None, side)
    ]
    n = len({r.sample_id for r in cand} & {r.sample_id for r in ref})
    return JudgedComparison(n, diffs, disagree)


def _agreement(
    judged: list[SampleRecord], sources: dict[str, SampleRecord], rubrics: list[str]
) -> dict[str, list[Correlation]]:
    out: dict[str, list[Correlation]] = {}
    for rubric in rubrics:
        out[rubric] = []
        for metric in REFERENCE_METRICS:
            pairs = [
                (r.scores[rubric], sources[r.sample_id].scores[metric])
                for r in judged
                if metric in sources[r.sample_id].scores and not math.isnan(r.scores[rubric])
            ]
            if not pairs:
                continue
            xs, ys = zip(*pairs)
            constant = len(pairs) < 3 or np.ptp(xs) == 0 or np.ptp(ys) == 0
            rho, p = (None, None) if constant else spearman(list(xs), list(ys))
            out[rubric].append(Correlation(metric, rho, p, len(pairs)))
    return out


def _pairwise(records: list[SampleRecord]) -> Pairwise:
    agree = flips = cand = ref = bad = 0
    for r in records:
        first, second = r.scores["candidate_first"], r.scores["candidate_second"]
        if math.isnan(first) or math.isnan(second):
            bad += 1
        elif (first > 0.5) == (second > 0.5):
            agree += 1
            cand += first > 0.5
            ref += first <= 0.5
        else:
            flips += 1
    return Pairwise(len(records), agree, flips, cand, ref, bad)


def _current(cells: JudgeCells, keys: dict[tuple[str, str], str], reference: Optional[str]) -> list[str]:
    """Drop from ``cells`` the judgments of outputs the run no longer uses (its cells recomputed since: their keys
    differ from those the judge read); one warning per dropped judgment."""
    stale = []
    for kind, per_task in (("rubric", cells.rubric_cells), ("pairwise", cells.pairwise_cells)):
        for task, per_model in per_task.items():
            for model, d in list(per_model.items()):
                manifest = read_manifest(Path(d))
                judged = manifest.parts.get("judged") if manifest else None
                want: object = keys.get((task, model))
                if kind == "pairwise":
                    want = [want, keys.get((task, reference or ""))]
                if judged != want:
                    del per_model[model]
                    stale.append(
                        f"the {kind} judgments of {model} on {task} graded outputs this run no longer uses (its cells "
                        "were computed again since, or the judgment cell is gone): left out; run harness judge again"
                    )
    return stale


def _config(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / "config.json"
    return read_json(path) if path.is_file() else {}


def run_seed(run_dir: Path) -> int:
    """The run's ``runtime.seed`` (config.json), which seeds its bootstrap intervals: judge.md and the report agree."""
    return int((_config(run_dir).get("runtime") or {}).get("seed", 0))


def summarize_judgments(run_dir: Path, run: JudgeCells, seed: Optional[int] = None) -> JudgeSummary:
    """The judge's grades of ``run_dir``'s generation cells, read from the judgment cells ``run`` names (``seed``:
    the bootstrap's, by default the run's)."""
    seed = run_seed(run_dir) if seed is None else seed
    plan, refs = read_run(run_dir)
    cells, _ = load_cells(refs)
    sources = {(c.ref.task, c.ref.model): {r.sample_id: r for r in c.records} for c in cells}
    run = replace(run, rubric_cells={t: dict(m) for t, m in run.rubric_cells.items()})
    run.pairwise_cells = {t: dict(m) for t, m in run.pairwise_cells.items()}
    warnings = _current(run, {(c.ref.task, c.ref.model): c.ref.key for c in cells}, plan.reference)
    tasks: dict[str, JudgedTask] = {}
    for task, per_model in run.rubric_cells.items():
        if not per_model:
            continue
        judged = {m: read_cell_records(Path(d)) for m, d in per_model.items()}
        rubrics = sorted({k for rs in judged.values() for r in rs for k in r.scores})
        entry = tasks.setdefault(task, JudgedTask())
        for model, records in judged.items():
            entry.models[model] = _model(records, sources[(task, model)], rubrics, seed)
        pooled = [r for rs in judged.values() for r in rs]
        pooled_sources = {_pooled_id(r): sources[(task, r.metadata["judged_model"])][r.sample_id] for r in pooled}
        entry.agreement = _agreement([replace(r, sample_id=_pooled_id(r)) for r in pooled], pooled_sources, rubrics)
        if plan.reference in judged:
            for model, records in judged.items():
                if model != plan.reference:
                    pair = (sources[(task, model)], sources[(task, plan.reference)])
                    entry.comparisons[model] = _compare(records, judged[plan.reference], pair, rubrics, seed)
    for task, per_model in run.pairwise_cells.items():
        for model, d in per_model.items():
            tasks.setdefault(task, JudgedTask()).pairwise[model] = _pairwise(read_cell_records(Path(d)))
    if run.judge in plan.models:
        warnings.append(
            f"the judge {run.judge} is one of the compared models: judges tend to prefer their own outputs "
            "(self-preference), so its grades of itself are not evidence"
        )
    dirs = [Path(d) for cells in (run.rubric_cells, run.pairwise_cells) for per in cells.values() for d in per.values()]
    seconds = sum(float(s.get("wall_s") or 0.0) for d in dirs if (m := read_manifest(d)) for s in m.sessions)
    profile = hardware_profile(_config(run_dir))
    cost = seconds / 3600 * float(profile.hourly_usd) if profile is not None else None
    return JudgeSummary(run.judge, run.method, plan.reference, seconds, tasks, warnings, cost)


def read_judgments(run_dir: Path, seed: Optional[int] = None) -> Optional[tuple[JudgeCells, JudgeSummary]]:
    """judge.json and the grades recomputed from the judgment cells it names (None: the run was not judged)."""
    path = Path(run_dir) / JudgeCells.where
    if not path.is_file():
        return None
    cells = JudgeCells.from_dict(read_json(path), f"{path}")
    return cells, summarize_judgments(run_dir, cells, seed)


def _pooled_id(record: SampleRecord) -> str:
    """A judged item's id unique across the judged models (their items are pooled for the agreement)."""
    return f"{record.sample_id}/{record.metadata['judged_model']}"
