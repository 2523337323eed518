"""``harness followup RUN``: how many items a follow-up run needs to decide each comparison, and how long it would take.

Read from a run's reports (no model is loaded): each comparison's paired
differences (``analysis.json``: n, mean, spread; see ``harness.analysis.sample_size``), the
claims' thresholds (``claims.json``: C3's tolerance, C2's zero), and each
model's measured time per item (``summary.json``) for the expected wall time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from harness.analysis.sample_size import ALPHA, POWER
from harness.analysis.schema import RunAnalysis
from harness.config.schema import ClaimConfig, claim_settings
from harness.errors import HarnessError
from harness.results.records import read_json
from harness.results.schema import RunSummary, check_format
from harness.verdicts.claims import CLAIMS_FORMAT, ClaimsSection, Verdict, checked_by

PLAN_HEADER = [
    "task",
    "model vs reference",
    "metric",
    "n",
    "difference x100 [95% CI]",
    "MDE x100 at n",
    "items to decide C3 (tolerance)",
    "items to decide C2 (zero)",
    "available",
    "expected wall time at that n",
]


def _tolerances(verdicts: list[Verdict], claims: dict[str, ClaimConfig]) -> dict[tuple[str, str], float]:
    """The tolerance margin per (task, model) of the claim checked by small_within_tolerance."""
    cid = checked_by(claims, "small_within_tolerance")[0]
    c3 = next((v for v in verdicts if v.id == cid), None)
    return {
        (d["task"], d["model"]): d["margin"]
        for d in (c3.numbers if c3 else {}).values()
        if isinstance(d, dict) and "margin" in d
    }


def _items(k: Optional[int], available: int) -> str:
    if k is None:
        return "never (the difference sits on the threshold)"
    return f"{k}" + (f" (more than the {available} the task has)" if k > available else "")


def _duration(seconds: float) -> str:
    return (
        f"{seconds:.0f} s"
        if seconds < 120
        else f"{seconds / 60:.0f} min"
        if seconds < 7200
        else f"{seconds / 3600:.1f} h"
    )


def plan_rows(run_dir: Path) -> list[list[str]]:
    run_dir = Path(run_dir)
    for name in ("summary.json", "analysis.json", "claims.json"):
        if not (run_dir / name).is_file():
            raise HarnessError(
                f"{run_dir} has no {name}", f"pass a run directory with a report (harness report {run_dir} writes it)"
            )
    summary = RunSummary.from_dict(read_json(run_dir / "summary.json"))
    analysis = RunAnalysis.from_dict(read_json(run_dir / "analysis.json"))
    claims = read_json(run_dir / "claims.json")
    config = read_json(run_dir / "config.json") if (run_dir / "config.json").is_file() else {}
    check_format(claims, CLAIMS_FORMAT, f"{run_dir / 'claims.json'}")
    verdicts = [Verdict.from_dict(v) for v in claims.get("verdicts", [])]
    return sample_size_rows(summary, analysis, verdicts, config.get("claims") or {})


def sample_size_rows(
    summary: RunSummary, analysis: RunAnalysis, verdicts: list[Verdict], claims_cfg: ClaimsSection
) -> list[list[str]]:
    """One row per comparison and primary metric (the report's "How many items are enough" table)."""
    tolerance = _tolerances(verdicts, claim_settings(claims_cfg))
    reference = str(analysis.reference)
    rows = []
    for task, entry in analysis.tasks.items():
        results = summary.tasks[task].results
        available = summary.tasks[task].info.get("n_available") or max(r.n for r in results.values())
        for cand, cmp in entry.comparisons.items():
            if any(summary.models[m].architecture_only for m in (cand, reference)):
                continue  # random weights: quality is not measured, nothing to decide
            metric = results[cand].primary_metric
            ss = cmp.sample_size.get(metric)
            diff = cmp.difference_vs_reference.get(metric)
            if not ss or not diff:
                continue
            tol = tolerance.get((task, cand))  # C3's, as the claims judged it (absent: C3 not configured)
            k3, k2 = (ss.items_for(-tol) if tol is not None else None), ss.items_for(0.0)
            per_item = (results[cand].item_s.mean or 0.0) + (
                results[reference].item_s.mean or 0.0
            )  # both models answer each item
            wanted = [k for k in (k3, k2) if k is not None]
            wall = _duration(per_item * max(wanted)) + f" for {max(wanted)} items" if wanted else "-"
            rows.append(
                [
                    task,
                    f"{cand} vs {reference}",
                    metric,
                    str(ss.n),
                    f"{diff.value * 100:+.1f} [{diff.low * 100:+.1f}, {diff.high * 100:+.1f}]",
                    f"{ss.mde * 100:.1f}" if ss.mde is not None else "-",
                    _items(k3, available) if tol is not None else "-",
                    _items(k2, available),
                    str(available),
                    wall,
                ]
            )
    return rows


def plan_note() -> str:
    return (
        f"Paired t-test on the per-item differences (statsmodels TTestPower), two-sided, level {ALPHA:g}, power {POWER:.0%}. "
        "MDE: the smallest true difference this run detects with that power. Items to decide: the n at which the observed difference "
        "would be told apart from the claim's threshold at the observed spread (C3: -tolerance; C2: zero), if the observed difference is real. "
        "Wall time: the two models' measured mean time per item, times that n."
    )
