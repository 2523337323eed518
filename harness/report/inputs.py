"""What a report is rendered from: the typed results of a run and the facts it recorded (one bundle for every renderer)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from harness.analysis.schema import RunAnalysis
from harness.results.load import LoadSummary
from harness.results.schema import RunSummary
from harness.verdicts.claims import Verdict
from harness.verdicts.decision import TaskDecision


@dataclass
class ReportInputs:
    """The typed summary, statistics, verdicts and decision, with the run's environment and configuration."""

    summary: RunSummary
    environment: dict[str, Any]
    config: dict[str, Any]
    verdicts: list[Verdict]
    analysis: Optional[RunAnalysis]
    decision: dict[str, TaskDecision]
    load: Optional[LoadSummary] = None  # a load sweep's figures (load.levels), when the run had one
