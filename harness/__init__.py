"""Small-vs-large LLM evaluation harness.

The public surface is small: run an experiment from the command line
(``harness ...`` / ``python -m harness ...``) or from Python with
``run_experiment(cfg)``; rebuild a report from a run directory with
``build_report(run_dir)``.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "run_experiment", "build_report", "HarnessError"]


def __getattr__(name: str):  # lazy: importing harness must not import torch
    if name == "run_experiment":
        from harness.run.runner import run_experiment

        return run_experiment
    if name == "build_report":
        from harness.report.build import build_report

        return build_report
    if name == "HarnessError":
        from harness.errors import HarnessError

        return HarnessError
    raise AttributeError(name)
