"""Where two models (or one model in two runs) part ways, item by item: the flips behind McNemar's discordant pairs.

One code path for ``harness flips``, ``harness regress``'s changed predictions and the
counts of the per-sample page (``samples.html``):

- classification: an item's outcome is read off the two models' correctness:
  ``a wrong, b right`` and ``a right, b wrong`` are McNemar's discordant pairs,
  then ``both wrong`` and ``both right``;
- generation: the primary score (ROUGE-L) decides ``a lower``, ``a higher`` or ``same``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

from harness.results.records import SampleRecord
from harness.serialize import Serializable
from harness.tasks.types import TaskType

# classification outcomes, A against B
A_WRONG_B_RIGHT, A_RIGHT_B_WRONG, BOTH_WRONG, BOTH_RIGHT = (
    "a wrong, b right",
    "a right, b wrong",
    "both wrong",
    "both right",
)
# generation outcomes, on the primary score
A_LOWER, A_HIGHER, SAME = "a lower", "a higher", "same score"
DISAGREE = {A_WRONG_B_RIGHT, A_RIGHT_B_WRONG, A_LOWER, A_HIGHER}


def outcome(task_type: TaskType | str, score_a: float, score_b: float) -> str:
    if TaskType(task_type) is TaskType.classification:
        a, b = score_a > 0, score_b > 0
        return BOTH_RIGHT if a and b else BOTH_WRONG if not (a or b) else A_RIGHT_B_WRONG if a else A_WRONG_B_RIGHT
    return A_LOWER if score_a < score_b else A_HIGHER if score_a > score_b else SAME


@dataclass
class Flip(Serializable):
    """One item on which A and B differ (outcome, or prediction where scores tie)."""

    task: str
    sample_id: str
    outcome: str
    gold: Any
    a: str  # A's prediction
    b: str
    a_score: float
    b_score: float


def changed_predictions(ids: Sequence[str], before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    """The items whose prediction changed (an exact configuration reproduces every one: regress lists these)."""
    return [i for i in ids if before[i] != after[i]]


def default_models(order: Sequence[str], reference: Optional[str], other_run: Optional[Sequence[str]]) -> list[str]:
    """The models compared when none are named: in one run its first candidate and the reference; across two runs
    the first model both ran (the same model before and after a change)."""
    if other_run is not None:
        return [n for n in order if n in other_run][:1]
    others = [n for n in order if n != reference]
    return [others[0], reference] if others and reference else []


def compare_records(
    task_type: TaskType | str, a: Sequence[SampleRecord], b: Sequence[SampleRecord]
) -> tuple[Counter[str], list[Flip]]:
    """Every common item's outcome (counted), and the items where A and B differ: a discordant outcome, or the same
    score with another prediction (listed last)."""
    key = TaskType(task_type).item_score
    by_id = {r.sample_id: r for r in b}
    counts: Counter[str] = Counter()
    flips: list[Flip] = []
    for ra in a:
        rb = by_id.get(ra.sample_id)
        if rb is None:
            continue
        sa, sb = float(ra.scores[key]), float(rb.scores[key])
        kind = outcome(task_type, sa, sb)
        counts[kind] += 1
        if kind in DISAGREE or ra.prediction != rb.prediction:
            flips.append(Flip(ra.task, ra.sample_id, kind, ra.gold, ra.prediction, rb.prediction, sa, sb))
    flips.sort(key=lambda f: f.outcome not in DISAGREE)  # discordant first, ties of score after
    return counts, flips


def flips_markdown(
    name_a: str, name_b: str, per_task: Mapping[str, tuple[Counter[str], list[Flip]]], limit: Optional[int] = None
) -> str:
    """A table per task, for a pull-request comment: the counts, then each differing item."""

    def cell(text: Any) -> str:
        flat = " ".join(str(text).split())
        return (flat[:160] + "...") if len(flat) > 160 else flat.replace("|", "\\|")

    lines = [f"## Flips: {name_a} (a) vs {name_b} (b)", ""]
    for task, (counts, flips) in per_task.items():
        lines += [f"### {task}", "", ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "no common items", ""]
        if not flips:
            lines += ["No item differs.", ""]
            continue
        lines += ["| item | outcome | gold | a | b |", "|---|---|---|---|---|"]
        shown = flips if limit is None else flips[:limit]
        lines += [
            f"| {cell(f.sample_id)} | {f.outcome} | {cell(f.gold)} | {cell(f.a)} ({f.a_score:.2f}) | {cell(f.b)} ({f.b_score:.2f}) |"
            for f in shown
        ]
        if len(shown) < len(flips):
            lines.append(f"\n... and {len(flips) - len(shown)} more (--format json lists all)")
        lines.append("")
    return "\n".join(lines)
