"""Command line: ``harness --help`` lists the sub-commands, ``harness COMMAND --help`` explains one.

With no sub-command the arguments are Hydra overrides and an experiment runs (``-m`` for a sweep).
Each sub-command imports its stage when it runs, so ``harness --help`` starts without torch.

Bad input (unknown names, malformed task files, impossible settings) ends with
one ``error: ...`` line and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, Optional

if TYPE_CHECKING:
    from rich.console import Console

from harness.config.schema import CONFIG_DIR, register_configs
from harness.errors import EXIT_USAGE, HarnessError

EXIT_INTERRUPTED = 130  # the shell's convention for Ctrl-C


def _fail(message: str) -> NoReturn:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(EXIT_USAGE)


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def explain_hydra_error(exc: BaseException) -> str:
    """One line for a Hydra/OmegaConf composition error, naming the valid choices."""
    text = str(exc)
    missing = re.search(r"Could not find '([^']+)/([^'/]+)'", text)
    if missing:
        group, name = missing.group(1), missing.group(2)
        leaf = group.split("/")[-1]
        if group.startswith("hydra/launcher") and "submitit" in text:
            return (
                "the submitit launcher is not installed (hydra/launcher=submitit_local, submitit_slurm, slurm_gpu need it) "
                "-- fix: pip install hydra-submitit-launcher (or the package's slurm extra)"
            )
        valid = _options(leaf)
        return f"unknown {leaf} {name!r}; valid {leaf}s: {', '.join(valid)} -- fix: pass {leaf}=<one of these> (or add configs/{leaf}/{name}.yaml)"
    unknown_key = re.search(r"Could not override '([^']+)'", text)
    if unknown_key:
        return f"unknown setting {unknown_key.group(1)!r} -- fix: check the spelling (see configs/ and harness/config/schema.py), or use +{unknown_key.group(1)}=... to add a new key"
    cause = exc.__cause__ or exc.__context__
    first = text.splitlines()[0] if text else type(exc).__name__
    if cause is not None:
        detail = str(cause).splitlines()
        key = next((line.split(":", 1)[1].strip() for line in detail if line.strip().startswith("full_key:")), None)
        reason = detail[0] if detail else type(cause).__name__
        return f"{first}: {key + ': ' if key else ''}{reason} -- fix: correct the value (types are in harness/config/schema.py)"
    return f"{first} -- fix: check the overrides (harness --help lists the config groups)"


def make_console() -> Console:
    """stdout console; when piped (CI, files) wide enough for the comparison table."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=240)


def quiet_libraries() -> None:
    """Our own progress bar and log lines replace the libraries' per-step noise."""
    import logging

    logging.getLogger("absl").setLevel(logging.WARNING)  # rouge-score logs every tokenizer choice
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:
        pass


class _Parser(argparse.ArgumentParser):
    """argparse with this harness's error style: one ``error: ... -- fix: ...`` line, exit code 2."""

    def error(self, message: str) -> NoReturn:
        _fail(f"{self.prog}: {message} -- fix: see {self.prog} --help")


def _split_paths(paths: Sequence[str], usage: str) -> tuple[list[Path], list[str]]:
    """Run directories and the ``key=value`` overrides mixed among them, checked."""
    overrides = [a for a in paths if "=" in a and not Path(a).exists()]
    runs = [Path(a) for a in paths if a not in overrides]
    if not runs:
        _fail(f"{usage} needs a run directory -- fix: {usage} results/<date>/<run>")
    for run_dir in runs:
        if not run_dir.is_dir():
            _fail(f"run directory {run_dir} does not exist -- fix: pass a directory under results/")
    return runs, overrides


def _comparison_dir(runs: list[Path], out: Optional[Path]) -> Path:
    """The directory a report goes to: the run itself, or a new one combining several runs / a sweep / a store."""
    from harness.results.comparison import write_combined

    if len(runs) == 1 and out is None:
        if (runs[0] / "plan.json").is_file():
            return runs[0]  # a run (an older one without cells.json gets read_run's explanation)
        out = runs[0] / "comparison"  # a sweep directory or a store: the combined report lives inside it
    return write_combined(runs, out)


def _report(args: argparse.Namespace) -> None:
    from harness.report.build import build_report

    runs, overrides = _split_paths(args.paths, f"harness {args.command}")
    build_report(_comparison_dir(runs, args.out), console=make_console(), overrides=overrides)


def _study(args: argparse.Namespace) -> None:
    from harness.report.study import write_study

    runs, overrides = _split_paths(args.paths, "harness study")
    if len(runs) != 1:
        _fail("harness study takes one run directory -- fix: harness study RUN_DIR [--out FILE] [KEY=VALUE ...]")
    out = args.out or runs[0] / "study.md"
    command = " ".join(["harness study", str(runs[0]), *(["--out", str(args.out)] if args.out else []), *overrides])
    print(f"study: {write_study(runs[0], out, overrides, command)}")


def _claims(args: argparse.Namespace) -> None:
    from harness.report.build import build_report
    from harness.report.tables import CLAIMS_HEADER, claim_rows
    from harness.report.terminal import rich_table
    from harness.results.records import read_json
    from harness.results.schema import check_format
    from harness.verdicts.claims import CLAIMS_FORMAT, Verdict

    runs, overrides = _split_paths(args.paths, "harness claims")
    console = make_console()
    for run_dir in runs:
        build_report(run_dir, console=None, overrides=overrides)
        claims = read_json(run_dir / "claims.json")
        check_format(claims, CLAIMS_FORMAT, f"{run_dir / 'claims.json'}")
        verdicts = [Verdict.from_dict(v) for v in claims["verdicts"]]
        console.print(rich_table(f"claims: {run_dir}", CLAIMS_HEADER, claim_rows(verdicts)))
        for v in verdicts:
            console.print(f"{v.id} ({v.verdict}): {v.sentence}")


def _followup(args: argparse.Namespace) -> None:
    from harness.report.markdown import md_table
    from harness.report.terminal import rich_table
    from harness.verdicts.followup import PLAN_HEADER, plan_note, plan_rows

    runs, _ = _split_paths(args.paths, f"harness {args.command}")
    console = make_console()
    for run_dir in runs:
        rows = plan_rows(run_dir)
        if not console.is_terminal:
            print(f"## Follow-up run for {run_dir}\n\n{md_table(PLAN_HEADER, rows)}\n\n{plan_note()}")
            continue
        console.print(rich_table(f"follow-up run for {run_dir}", PLAN_HEADER, rows))
        console.print(plan_note())


def _merge(args: argparse.Namespace) -> None:
    if len(args.runs) < 2:
        _fail(
            "harness merge needs an output directory and at least two runs -- fix: harness report RUN_DIR RUN_DIR --out OUT_DIR"
        )
    _report(argparse.Namespace(command="merge", paths=args.runs, out=Path(args.out)))


def _regress(args: argparse.Namespace) -> None:
    from harness.config.schema import regress_config
    from harness.verdicts.regress import ALLOWABLE, load_baseline, markdown, regress, update_baseline

    usage = "harness regress RUN_DIR --baseline results/baselines/<name>.json"
    overrides = [a for a in args.paths if "=" in a]
    runs = [Path(a) for a in args.paths if "=" not in a]
    if len(runs) != 1 or not runs[0].is_dir():
        _fail(f"harness regress needs one existing run directory, got {[str(r) for r in runs]} -- fix: {usage}")
    allow = {a for a in (args.allow or "").split(",") if a}
    if allow - set(ALLOWABLE):
        _fail(
            f"--allow {','.join(sorted(allow - set(ALLOWABLE)))} is not one of {','.join(ALLOWABLE)} -- fix: --allow items,task"
        )
    cfg = regress_config(overrides)
    if args.update:
        data = update_baseline(runs[0], args.baseline)
        print(
            f"wrote baseline {args.baseline}: {len(data.cells)} cells, measured on "
            f"{', '.join(sorted({c.hardware for c in data.cells.values()}))}"
        )
        return
    baseline = load_baseline(args.baseline)
    report = regress(runs[0], baseline, cfg, allow, strict_hardware=args.strict_hardware)
    if report.other_hardware:
        print(
            f"other hardware: {report.other_hardware} -- latency and memory not compared, quality compared",
            file=sys.stderr,
        )
    text = markdown(report, baseline, runs[0])
    print(text)
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    sys.exit(1 if report.regressed else 0)


def _flips(args: argparse.Namespace) -> None:
    import json

    from harness.analysis.flips import compare_records, flips_markdown
    from harness.results.summary import cell_records, summarize_with_outcomes

    usage = "harness flips RUN [RUN_B] [--models A,B] [--task T] [--format md|json]"
    runs = [Path(r) for r in args.runs]
    for run in runs:
        if not (run / "plan.json").is_file():
            _fail(f"{run} is not a run directory (no plan.json) -- fix: {usage}")
    if len(runs) > 2:
        _fail(f"harness flips compares one run's models or two runs, got {len(runs)} runs -- fix: {usage}")
    loaded = [summarize_with_outcomes(run) for run in runs]
    names = [a for a in (args.models or "").split(",") if a]
    first, second = loaded[0], loaded[-1]
    if len(runs) == 1:
        if not names:
            others = [n for n in first[0].order if n != first[0].reference]
            names = [others[0], str(first[0].reference)] if others and first[0].reference else []
        if len(names) != 2:
            _fail(f"name two models of {runs[0]} -- fix: --models A,B with A, B among {', '.join(first[0].order)}")
    else:
        if not names:
            common = [n for n in first[0].order if n in second[0].order]
            names = common[:1]
        if len(names) == 1:
            names = names * 2
        if len(names) != 2:
            _fail("name the model of each run -- fix: --models A (the same in both) or --models A,B")
    for (summary, _), name, run in zip((first, second), names, (runs[0], runs[-1])):
        if name not in summary.models:
            _fail(f"model {name!r} is not in {run} -- fix: use one of {', '.join(summary.order)}")
    tasks = [t for t in first[0].tasks if t in second[0].tasks]
    if args.task:
        if args.task not in tasks:
            _fail(f"task {args.task!r} is not in both -- fix: --task one of {', '.join(tasks) or '(none in common)'}")
        tasks = [args.task]
    per_task = {}
    for task in tasks:
        # only the two cells compared are read again, for their text (predictions, gold)
        a, b = cell_records(first[0], task, names[0]), cell_records(second[0], task, names[1])
        if a and b:
            per_task[task] = compare_records(first[0].tasks[task].type, a, b)
    label_a = names[0] if len(runs) == 1 else f"{names[0]} in {runs[0]}"
    label_b = names[1] if len(runs) == 1 else f"{names[1]} in {runs[1]}"
    if args.format == "json":
        out = {
            "a": label_a,
            "b": label_b,
            "tasks": {t: {"counts": dict(c), "flips": [f.to_dict() for f in fl]} for t, (c, fl) in per_task.items()},
        }
        print(json.dumps(out, indent=2, ensure_ascii=False, default=str))
    else:
        print(flips_markdown(label_a, label_b, per_task, limit=args.limit))


def _cells(args: argparse.Namespace) -> None:
    from harness.results.listing import cells_text, list_cells

    path = Path(args.dir)
    if not path.is_dir():
        _fail(
            f"{path} is not a directory -- fix: harness cells DIR with DIR a run directory, a sweep directory or a cell store"
        )
    print(cells_text(list_cells(path), path, only_missing=args.missing))


def _export_lmeval(args: argparse.Namespace) -> None:
    from harness.config.resources import tasks_dir as shipped_tasks_dir
    from harness.tasks.export_lmeval import export_tasks
    from harness.tasks.local import available_tasks, find_task, load_task

    tasks_dir = shipped_tasks_dir()
    names = list(args.tasks) or sorted(n for n in available_tasks(tasks_dir) if n.startswith("seed_"))
    paths = export_tasks([load_task(find_task(n, tasks_dir)) for n in names], args.out_dir)
    print(f"wrote {len(paths)} lm-eval task(s) to {args.out_dir}: {', '.join(p.stem for p in paths)}")
    print(
        f"run them with: lm_eval --model hf --model_args pretrained=<model> --include_path {args.out_dir} --tasks {','.join(p.stem for p in paths)}"
    )


RUN_HELP = """\
The default command runs an experiment (Hydra):
  harness [KEY=VALUE ...]              e.g. harness pair=olmoe_vs_olmo2 task=seed runtime.device=cuda
  harness -m [KEY=A,B ...]             a sweep (Hydra multirun), e.g. harness -m models=[a,b] task=seed_claims,seed_stance
  harness --cfg job [KEY=VALUE ...]    print the composed configuration without running
  harness --hydra-help                 Hydra's own options
config groups: {groups}
"""


def build_parser() -> argparse.ArgumentParser:
    """The sub-commands; anything else on the command line is a Hydra run."""
    groups = ", ".join(f"{g} ({'|'.join(_options(g))})" for g in ("pair", "comparison", "task", "runtime", "hardware"))
    parser = _Parser(
        prog="harness",
        description="Small-vs-large LLM evaluation harness: quality, latency, memory and cost of "
        "models compared on your tasks.",
        epilog=RUN_HELP.format(groups=groups),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", title="commands (no command: run an experiment)", parser_class=_Parser)
    overrides_help = (
        "run directories, sweep directories or cell stores, and KEY=VALUE overrides for this report only "
        "(e.g. claims.C3.thresholds.accuracy_tolerance=0.03 hardware.hourly_usd=2.5)"
    )

    p = sub.add_parser(
        "report",
        help="rebuild summary, statistics, claims and report.md/.html from the records (no model loaded)",
        description="Rebuild a report from stored records. One run directory: its report is rewritten in place. "
        "Several runs, a sweep directory or a cell store: one comparison of all their cells.",
    )
    p.add_argument("paths", nargs="+", metavar="DIR_OR_KEY=VALUE", help=overrides_help)
    p.add_argument(
        "--out", type=Path, help="directory of the combined report (default: the run itself, or DIR/comparison)"
    )
    p.set_defaults(func=_report)

    p = sub.add_parser(
        "claims",
        help="the verdicts on the seed articles' claims again, e.g. with other thresholds",
        description="Recompute the claims' verdicts of existing runs (no model loaded); config.json is never rewritten.",
    )
    p.add_argument("paths", nargs="+", metavar="DIR_OR_KEY=VALUE", help=overrides_help)
    p.set_defaults(func=_claims)

    p = sub.add_parser(
        "study",
        help="each claim decided on each group of a run's tasks (seed vs real), side by side, as one markdown file",
        description="The claims study (docs/claims-study.md): the run's tasks grouped by the folder their file lives "
        "in (tasks/seed, tasks/real, yours), every claim decided on each group alone by the report's checks, with "
        "the command, the machine, the time and every task's n. No model is loaded.",
    )
    p.add_argument("paths", nargs="+", metavar="RUN_DIR_OR_KEY=VALUE", help=overrides_help)
    p.add_argument("--out", type=Path, metavar="FILE", help="where to write it (default: RUN_DIR/study.md)")
    p.set_defaults(func=_study)

    for name in ("followup", "plan"):
        p = sub.add_parser(
            name,
            help="how many items a follow-up run needs to decide each comparison, and how long it would take"
            if name == "followup"
            else "the former name of followup",
            description="Sample sizes that would decide each "
            "undecided comparison of a run, from its own paired differences, and the expected wall time.",
        )
        p.add_argument("paths", nargs="+", metavar="RUN_DIR")
        p.set_defaults(func=_followup)

    p = sub.add_parser("merge", help="the former spelling of: harness report RUN_DIR ... --out OUT_DIR")
    p.add_argument("out", metavar="OUT_DIR")
    p.add_argument("runs", nargs="*", metavar="RUN_DIR")
    p.set_defaults(func=_merge)

    p = sub.add_parser(
        "regress",
        help="compare a run with a stored baseline (exit 0 ok, 1 regression, 2 bad input)",
        description="Regression check of a run against a stored baseline, per model and task: quality, latency, memory.",
    )
    p.add_argument(
        "paths",
        nargs="+",
        metavar="RUN_DIR_OR_KEY=VALUE",
        help="one run directory, and KEY=VALUE overrides of configs/regress/default.yaml (e.g. latency_ratio_max=1.5)",
    )
    p.add_argument(
        "--baseline", type=Path, required=True, metavar="FILE", help="the baseline JSON (results/baselines/<name>.json)"
    )
    p.add_argument("--update", action="store_true", help="write the run as the new baseline instead of comparing")
    p.add_argument(
        "--allow",
        default="",
        metavar="KINDS",
        help="comma-separated differences that are not failures: items, task, model, missing",
    )
    p.add_argument(
        "--output", type=Path, metavar="FILE", help="also write the markdown verdict to FILE (e.g. a CI job summary)"
    )
    p.add_argument(
        "--strict-hardware",
        action="store_true",
        help="refuse a run measured on another hardware class than the baseline's (default: compare quality only)",
    )
    p.set_defaults(func=_regress)

    p = sub.add_parser(
        "flips",
        help="the items where two models (or one model in two runs) differ, as a table for a pull request",
        description="Per task: the outcome counts of two models over the same items (McNemar's discordant pairs "
        "for classification) and every item on which they differ. One run: two of its models (default: the "
        "first candidate against the reference). Two runs: a model in each (default: the first model they share).",
    )
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="one run directory, or two to compare across runs")
    p.add_argument("--models", metavar="A,B", help="the two models (two runs: A for both, or A,B)")
    p.add_argument("--task", metavar="TASK", help="one task only")
    p.add_argument("--format", choices=("md", "json"), default="md", help="markdown tables (default) or JSON")
    p.add_argument("--limit", type=int, default=50, metavar="N", help="items listed per task in markdown (default 50)")
    p.set_defaults(func=_flips)

    p = sub.add_parser(
        "cells",
        help="each (model, task) cell of a run, sweep or store and its status: complete, partial, stopped, running, missing",
        description="List the cells of a run directory, a sweep directory or a cell store (what harness report takes), "
        "with their status and records done / planned. --missing: only the cells not reportable yet (running or "
        "missing), e.g. after a cluster sweep. Exit 0 either way.",
    )
    p.add_argument("dir", metavar="DIR", help="a run directory, a sweep directory or a cell store")
    p.add_argument("--missing", action="store_true", help="only the cells that are not reportable (running, missing)")
    p.set_defaults(func=_cells)

    p = sub.add_parser("export-lmeval", help="write lm-eval task YAMLs for harness tasks, so lm-eval runs them too")
    p.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    p.add_argument("tasks", nargs="*", metavar="TASK", help="task names (default: every seed_* task)")
    p.set_defaults(func=_export_lmeval)
    return parser


def _run_hydra() -> None:
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import DictConfig

    @hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base=None)
    def _main(cfg: DictConfig) -> None:
        from hydra.types import RunMode

        from harness.run.runner import run_experiment

        quiet_libraries()
        sweep_job = HydraConfig.get().mode == RunMode.MULTIRUN
        try:
            run_experiment(cfg, Path(HydraConfig.get().runtime.output_dir), console=make_console(), sweep_job=sweep_job)
        except HarnessError as exc:
            if sweep_job:  # a scheduler's job: the launcher (submitit) records a raised error for the sweep's command
                print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
                raise
            _fail(str(exc))  # exit here: Hydra would print its own line before re-raising
        except KeyboardInterrupt:
            _interrupted()
        except OSError as exc:
            if exc.errno in _DISK_FULL or isinstance(exc, PermissionError):
                _os_error(exc)
            raise

    _main()


_DISK_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


def _os_error(exc: OSError) -> NoReturn:
    """A file that could not be written or created: one line, and what is kept."""
    where = exc.filename or "a file"
    if exc.errno in _DISK_FULL:
        _fail(
            f"could not write {where}: {exc.strerror} (no space left for it) -- fix: free disk space (or raise the quota/file size limit), "
            "then run the same command again: every record already written is kept and the run resumes"
        )
    _fail(
        f"cannot write {where}: {exc.strerror} -- fix: choose a writable location (hydra.run.dir=..., paths.store_dir=..., paths.cache_dir=...)"
    )


def _sweep_job_failure(exc: BaseException) -> Optional[str]:
    """One line for a job of a submitit sweep that failed, or ended without a result (cancelled, past its time
    limit, killed); None for any other exception."""
    kind = type(exc).__name__
    if kind not in ("FailedJobError", "UncompletedJobError"):
        return None
    text = str(exc)
    job = re.search(r"Job (\d[\w.]*)", text)
    name = f"sweep job {job.group(1)}" if job else "a sweep job"
    logs = re.findall(r"(/\S+_log\.(?:err|out))", text)
    where = f" (log: {logs[0]})" if logs else ""
    resume = "run the same sweep again: complete cells are reused and an interrupted cell resumes after its last record"
    if "timed-out" in text or "TIMEOUT" in text:
        return (
            f"{name} ran past its time limit and was not requeued{where} -- fix: {resume} "
            "(or raise hydra.launcher.timeout_min, or hydra.launcher.max_num_timeout to requeue it)"
        )
    if kind == "UncompletedJobError":
        state = re.search(r"state: ([^)]*)\)", text)
        return f"{name} ended without a result ({state.group(1) if state else 'killed'}){where} -- fix: {resume}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    reason = next((line for line in reversed(lines) if "Error" in line), lines[-1] if lines else kind)
    return f"{name} failed: {reason}{where} -- fix: correct what it names, then {resume}"


def _interrupted() -> NoReturn:
    print(
        "interrupted: every record written so far is kept in its cell -- fix: run the same command again to resume "
        "(complete cells are reused, the interrupted one continues after its last record)",
        file=sys.stderr,
    )
    sys.exit(EXIT_INTERRUPTED)


COMMANDS = ("report", "claims", "study", "followup", "plan", "merge", "regress", "flips", "cells", "export-lmeval")


def main(argv: Optional[Sequence[str]] = None) -> None:
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    args = sys.argv[1:]
    if args and (args[0] in COMMANDS or args[0] in ("-h", "--help")):
        parser = build_parser()
        # directories and KEY=VALUE overrides may follow the options too (harness regress RUN --baseline F key=v)
        parsed, rest = parser.parse_known_args(args)
        if parsed.command is None:
            return
        flags = [a for a in rest if a.startswith("-")]
        if flags or (rest and not hasattr(parsed, "paths")):
            parser.error(f"unrecognized arguments: {' '.join(flags or rest)}")
        if rest:
            parsed.paths = [*parsed.paths, *rest]
        try:
            parsed.func(parsed)
        except HarnessError as exc:
            _fail(str(exc))
        return
    # Let composition errors reach us as exceptions, so they can be reworded.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    register_configs()
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        _run_hydra()
    except HarnessError as exc:
        _fail(str(exc))
    except (HydraException, OmegaConfBaseException) as exc:
        _fail(explain_hydra_error(exc))
    except KeyboardInterrupt:
        _interrupted()
    except OSError as exc:  # Hydra creates the run directory before the run starts
        if (
            exc.errno in _DISK_FULL
            or isinstance(exc, PermissionError)
            or exc.errno in (errno.ENOENT, errno.EROFS, errno.EACCES)
        ):
            _os_error(exc)
        raise
    except Exception as exc:  # a job of a submitit sweep: its own error, in one line
        failure = _sweep_job_failure(exc)
        if failure is None:
            raise
        _fail(failure)


if __name__ == "__main__":
    main()
