"""A task's leaderboard: its models ranked by the primary metric; with many models, the report is built around it.

One ranking serves every place that must pick a few models out of many: the leaderboard tables, the candidates
whose cascade is simulated (``report.cascade_candidates``) and those shown in samples.html
(``report.samples_candidates``). Ties are broken by the cheaper model, then by name, so the order is stable.
"""

from __future__ import annotations

from harness.results.schema import RunSummary


def is_large(summary: RunSummary, leaderboard_from: int) -> bool:
    """A comparison of so many models that it reads as leaderboards (``report.leaderboard_from``)."""
    return len(summary.models) >= leaderboard_from


def ranked(summary: RunSummary, task: str) -> list[str]:
    """The task's models with measured quality, best score first (ties: cheaper per 1k requests, then name)."""
    results = summary.tasks[task].results
    measured = [n for n in results if not (n in summary.models and summary.models[n].architecture_only)]

    def key(name: str) -> tuple[float, float, str]:
        score = results[name].score
        cost = cost_of(summary, task, name)
        return (-score if score == score else float("inf"), cost if cost is not None else 0.0, name)  # NaN last

    return sorted(measured, key=key)


def best_candidates(summary: RunSummary, k: int) -> dict[str, list[str]]:
    """Per task, the ``k`` best-scoring models other than the reference."""
    return {task: [n for n in ranked(summary, task) if n != summary.reference][:k] for task in summary.tasks}


def cost_of(summary: RunSummary, task: str, name: str) -> float | None:
    res = summary.tasks[task].results[name]
    return res.economics.cost_per_1k_usd if res.economics else None


def pareto_models(summary: RunSummary, task: str) -> list[str]:
    """The task's models that no other beats on both score and cost per 1k requests (cheapest first)."""
    pts = [(cost_of(summary, task, n), summary.tasks[task].results[n].score, n) for n in ranked(summary, task)]
    front: list[str] = []
    best = float("-inf")
    for _cost, score, name in sorted((p for p in pts if p[0] is not None), key=lambda p: (p[0], -p[1], p[2])):
        if score > best:
            front.append(name)
            best = score
    return front
