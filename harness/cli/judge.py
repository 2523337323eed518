"""harness judge: a judge model grades a run's summaries (rubrics 1-5, and pairwise in both orders) into judge.md."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def judge(args: argparse.Namespace) -> None:
    from dataclasses import replace

    from harness.config.schema import RuntimeConfig, judge_settings, load_model_config
    from harness.models.loader import default_cache_dir
    from harness.report.build import build_report
    from harness.report.judged import JUDGE_MD, write_judged
    from harness.run.judge import JudgeSetup, judge_into

    run_dir: Path = args.run_dir
    cfg = judge_settings(args.rubrics)
    judge_model = load_model_config(args.model)
    runtime = replace(RuntimeConfig(), engine=args.engine, progress=False)
    command = " ".join(
        ["harness judge", str(run_dir), "--model", args.model, "--engine", args.engine]
        + (["--rubrics", str(args.rubrics)] if args.rubrics else [])
        + (["--no-pairwise"] if args.no_pairwise else [])
    )
    setup = JudgeSetup(judge_model, runtime, cfg, default_cache_dir(), not args.no_pairwise)
    judge_into(run_dir, setup, command)
    # the run's report, rebuilt with the judged scores beside ROUGE-L, writes judge_summary.json and judge.md
    report = build_report(run_dir) if (run_dir / "summary.json").is_file() else None
    if report is None:  # a run without a report yet: the judged files alone
        write_judged(run_dir)
    out = run_dir / JUDGE_MD
    if args.out:
        args.out.write_text(out.read_text(encoding="utf-8"), encoding="utf-8")
        out = args.out
    print(f"judge: {out}")
    if report is not None:
        print(f"report: {report}")


def add(sub: Any) -> None:
    p = sub.add_parser(
        "judge",
        help="a judge model grades a run's summaries (faithfulness, coverage, fluency; pairwise) beside ROUGE-L",
        description="A judge model (a model config's name, on any engine) grades every complete generation cell of "
        "a run on the rubrics of configs/rubrics/default.yaml (or --rubrics FILE), and each candidate's summaries "
        "against the reference model's in both orders. Judgments are cells of the run's store: computed once, "
        "resumed after a kill. Writes RUN_DIR/judge.md, judge.json and judge_summary.json, and rebuilds the run's "
        "report with the judged scores beside ROUGE-L.",
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--model", required=True, metavar="NAME", help="the judge's model config (configs/model/NAME.yaml)")
    p.add_argument("--engine", default="auto", help="the judge's engine (auto, hf, llamacpp, openai, vllm)")
    p.add_argument("--rubrics", type=Path, metavar="FILE", help="a rubric file (default: configs/rubrics/default.yaml)")
    p.add_argument("--no-pairwise", action="store_true", help="rubric scores only")
    p.add_argument("--out", type=Path, metavar="FILE", help="where to write the markdown (default: RUN_DIR/judge.md)")
    p.set_defaults(func=judge)
