"""What a report is rendered from: the typed results of a run and the facts it recorded (one bundle for every renderer)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from harness.analysis.load import LoadSummary
from harness.analysis.schema import RunAnalysis
from harness.config.schema import ReportConfig
from harness.measure.environment import EnvironmentRecord
from harness.results.leaderboard import is_large
from harness.results.schema import RunSummary
from harness.verdicts.claims import Verdict
from harness.verdicts.decision import TaskDecision


@dataclass
class ReportInputs:
    """The typed summary, statistics, verdicts and decision, with the run's environment and configuration."""

    summary: RunSummary
    environment: EnvironmentRecord
    config: dict[str, Any]
    verdicts: list[Verdict]
    analysis: Optional[RunAnalysis]
    decision: dict[str, TaskDecision]
    load: Optional[LoadSummary] = None  # a load sweep's figures (load.levels), when the run had one
    settings: ReportConfig = field(default_factory=ReportConfig)  # how a report of many models reads

    @property
    def large(self) -> bool:
        """So many models that the report reads as leaderboards (report.leaderboard_from)."""
        return is_large(self.summary, self.settings.leaderboard_from)

    @property
    def claim_keep(self) -> Optional[int]:
        """How many comparisons a claim's key number lists (None: all of them, as a comparison of few models does)."""
        return self.settings.claim_key_parts if self.large else None

    def standing(self, task: str) -> dict[str, str]:
        """Where the decision puts each model alone on ``task`` (meets / not shown / falls short / reference)."""
        d = self.decision.get(task)
        return {o.name: o.standing for o in d.options if o.kind == "model"} if d else {}
