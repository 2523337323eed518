"""judge.md: a judge's grades of a run's summaries beside ROUGE-L, with how far to trust them."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

from harness.analysis.judged import REFERENCE_METRICS, JudgeSummary, read_judgments
from harness.analysis.schema import Interval
from harness.report.markdown import md_table
from harness.results.records import write_json

JUDGE_MD = "judge.md"

METHODS = {
    "probabilities": "G-Eval's score: each scale point weighted by the judge's probability of answering it",
    "parsed": "the scale point the judge's answer states (its engine gives no log-probabilities)",
}


def _iv(iv: Optional[Interval], scale: float = 1.0, signed: bool = False) -> str:
    if iv is None:
        return "-"
    f = "{:+.2f}" if signed else "{:.2f}"
    return f"{f.format(iv.value * scale)} [{f.format(iv.low * scale)}, {f.format(iv.high * scale)}]"


def _rho(rho: Optional[float], p: Optional[float], n: int) -> str:
    return f"n={n}: constant or too few items" if rho is None else f"{rho:+.2f} (p={p:.3f}, n={n})"


def _rubrics(s: JudgeSummary) -> list[str]:
    return sorted({r for t in s.tasks.values() for m in t.models.values() for r in m.rubrics})


def _cost(s: JudgeSummary) -> str:
    return "" if s.cost_usd is None else f" (${s.cost_usd:.4f} at the run's hardware price)"


def _head(s: JudgeSummary, run_dir: str, command: str) -> list[str]:
    return [
        f"# Judged summaries: {s.judge} on {run_dir}",
        "",
        f"`{command}`",
        "",
        f"Judge: **{s.judge}**, scored by {METHODS.get(s.method, s.method)}; rubrics {', '.join(_rubrics(s))} on "
        f"1-5. The judge's own time, {s.seconds:.1f} s over these judgments{_cost(s)}, is not counted in any "
        "candidate's cost. "
        "ROUGE-L and key-fact recall stay the reference-based measures; the judge is shown beside them, with its "
        "agreement with them and its position bias, so that a reader can weigh it.",
        *[f"\n> **Warning.** {w}." for w in s.warnings],
    ]


def _scores(s: JudgeSummary) -> list[str]:
    rubrics = _rubrics(s)
    rows = [
        [task, model, str(m.n), *[_iv(m.rubrics.get(r)) for r in rubrics], _iv(m.rouge_l, 100)]
        + [str(sum(m.unparseable.values()))]
        for task, t in s.tasks.items()
        for model, m in t.models.items()
    ]
    header = ["task", "model", "n", *rubrics, "ROUGE-L x100", "unparseable answers"]
    return ["", "## Scores (mean, 95% bootstrap interval)", "", md_table(header, rows)]


def differences_section(s: JudgeSummary) -> list[str]:
    rubrics = _rubrics(s)
    rows = [
        [task, model, str(c.n), *[_iv(c.differences.get(r), signed=True) for r in rubrics]]
        + [_iv(c.differences.get("rougeL"), 100, True), ", ".join(c.disagree_with_rouge) or "no"]
        for task, t in s.tasks.items()
        for model, c in t.comparisons.items()
    ]
    if not rows:
        return []
    title = f"## Each model against the reference ({s.reference}): paired on the same items, candidate minus reference"
    header = ["task", "model", "n", *rubrics, "ROUGE-L x100", "judge and ROUGE-L disagree in sign"]
    return ["", title, "", md_table(header, rows)]


def _agreement(s: JudgeSummary) -> list[str]:
    rows = []
    for task, t in s.tasks.items():
        for rubric, cors in t.agreement.items():
            by = {c.metric: c for c in cors}
            cells = [_rho(c.rho, c.p_value, c.n) if (c := by.get(m)) else "-" for m in REFERENCE_METRICS]
            rows.append([task, rubric, *cells])
    title = "## How far to trust the judge: Spearman's rho with the reference-based metrics (all judged items)"
    return ["", title, "", md_table(["task", "rubric", "with ROUGE-L", "with key-fact recall"], rows)]


def pairwise_section(s: JudgeSummary) -> list[str]:
    rows = []
    for task, t in s.tasks.items():
        for model, p in t.pairwise.items():
            flips = "-" if math.isnan(p.flip_share) else f"{p.position_flips} ({p.flip_share:.0%})"
            counts = [p.candidate_preferred, p.reference_preferred, p.unparseable]
            rows.append([task, f"{model} vs {s.reference}", str(p.n), str(p.orders_agree), flips, *map(str, counts)])
    if not rows:
        return []
    header = ["task", "pair", "items", "orders agree", "flips with the order (position bias)"]
    header += ["candidate preferred", "reference preferred", "unparseable"]
    title = "## Pairwise, both orders (a preference counts only where the two orders agree)"
    return ["", title, "", md_table(header, rows)]


def render_judged(s: JudgeSummary, run_dir: str, command: str) -> str:
    sections = [_head(s, run_dir, command), _scores(s), differences_section(s), _agreement(s), pairwise_section(s)]
    return "\n".join(line for section in sections for line in section) + "\n"


def write_judged(run_dir: Path, seed: Optional[int] = None) -> Optional[JudgeSummary]:
    """judge_summary.json and judge.md, recomputed from the judgment cells judge.json names (None: not judged)."""
    judged = read_judgments(run_dir, seed)
    if judged is None:
        return None
    cells, summary = judged
    write_json(Path(run_dir) / "judge_summary.json", summary.to_dict())
    (Path(run_dir) / JUDGE_MD).write_text(render_judged(summary, str(run_dir), cells.command), encoding="utf-8")
    return summary
