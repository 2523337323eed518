"""Command line.

- ``harness [hydra overrides]``: run an experiment (``-m`` for a sweep);
- ``harness report RUN_DIR [key=value ...]``: rebuild summary, statistics, claims, report.md/.html from the records;
- ``harness report DIR DIR ... [--out OUT_DIR]``: one comparison from several runs, a sweep directory or a cell store;
- ``harness claims RUN_DIR [claims.C3.thresholds.accuracy_tolerance=0.03 ...]``: the verdicts again, no model loaded;
- ``harness merge OUT_DIR RUN_DIR RUN_DIR ...``: the same as ``harness report RUN_DIR ... --out OUT_DIR``;
- ``harness regress RUN_DIR --baseline FILE [--update]``: compare a run with a stored baseline (exit 0 ok, 1 regression, 2 bad input);
- ``harness export-lmeval OUT_DIR [TASK ...]``: write lm-eval task YAMLs for harness tasks.

Bad input (unknown names, malformed task files, impossible settings) ends with
one ``error: ...`` line and exit code 2, never a traceback.
"""
from __future__ import annotations

import errno
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, Optional, Sequence

if TYPE_CHECKING:
    from rich.console import Console

from harness.config import CONFIG_DIR, register_configs
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
            return ("the submitit launcher is not installed (hydra/launcher=submitit_local, submitit_slurm, slurm_gpu need it) "
                    "-- fix: pip install hydra-submitit-launcher (or the package's slurm extra)")
        valid = _options(leaf)
        return f"unknown {leaf} {name!r}; valid {leaf}s: {', '.join(valid)} -- fix: pass {leaf}=<one of these> (or add configs/{leaf}/{name}.yaml)"
    unknown_key = re.search(r"Could not override '([^']+)'", text)
    if unknown_key:
        return f"unknown setting {unknown_key.group(1)!r} -- fix: check the spelling (see configs/ and harness/config.py), or use +{unknown_key.group(1)}=... to add a new key"
    cause = exc.__cause__ or exc.__context__
    first = text.splitlines()[0] if text else type(exc).__name__
    if cause is not None:
        detail = str(cause).splitlines()
        key = next((line.split(":", 1)[1].strip() for line in detail if line.strip().startswith("full_key:")), None)
        reason = detail[0] if detail else type(cause).__name__
        return f"{first}: {key + ': ' if key else ''}{reason} -- fix: correct the value (types are in harness/config.py)"
    return f"{first} -- fix: check the overrides (harness --help lists the config groups)"


def make_console() -> "Console":
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


def _split_runs(args: Sequence[str], usage: str) -> tuple[list[Path], list[str], Optional[Path]]:
    """Directories, key=value overrides and ``--out DIR``, checked."""
    args = list(args)
    out = None
    if "--out" in args:
        i = args.index("--out")
        if i + 1 >= len(args):
            _fail(f"--out needs a directory -- fix: {usage} ... --out results/combined")
        out = Path(args[i + 1])
        del args[i : i + 2]
    overrides = [a for a in args if "=" in a and not Path(a).exists()]
    runs = [Path(a) for a in args if a not in overrides]
    if not runs:
        _fail(f"{usage} needs a run directory -- fix: {usage} results/<date>/<run>")
    for run_dir in runs:
        if not run_dir.is_dir():
            _fail(f"run directory {run_dir} does not exist -- fix: pass a directory under results/")
    return runs, overrides, out


def _comparison_dir(runs: list[Path], out: Optional[Path]) -> Path:
    """The directory a report goes to: the run itself, or a new one combining several runs / a sweep / a store."""
    from harness.comparison import write_combined

    if len(runs) == 1 and out is None:
        if (runs[0] / "plan.json").is_file():
            return runs[0]  # a run (an older one without cells.json gets read_run's explanation)
        out = runs[0] / "comparison"  # a sweep directory or a store: the combined report lives inside it
    return write_combined(runs, out)


def _report(args: Sequence[str]) -> None:
    from harness.report import build_report

    runs, overrides, out = _split_runs(args, "harness report")
    build_report(_comparison_dir(runs, out), console=make_console(), overrides=overrides)


def _claims(args: Sequence[str]) -> None:
    """Recompute the verdicts of existing runs (no model is loaded), e.g. with other thresholds."""
    from harness.records import read_json
    from harness.report import build_report, rich_table
    from harness.tables import CLAIMS_HEADER, claim_rows

    runs, overrides, _ = _split_runs(args, "harness claims")
    console = make_console()
    for run_dir in runs:
        build_report(run_dir, console=None, overrides=overrides)
        verdicts = read_json(run_dir / "claims.json")["verdicts"]
        console.print(rich_table(f"claims: {run_dir}", CLAIMS_HEADER, claim_rows(verdicts)))
        for v in verdicts:
            console.print(f"{v['id']} ({v['verdict']}): {v['sentence']}")


def _plan(args: Sequence[str]) -> None:
    """harness plan RUN_DIR: the sample size that would decide each comparison, and its expected wall time."""
    from harness.followup import PLAN_HEADER, plan_note, plan_rows
    from harness.report import md_table, rich_table

    runs, _, _ = _split_runs(args, "harness plan")
    console = make_console()
    for run_dir in runs:
        rows = plan_rows(run_dir)
        if not console.is_terminal:
            print(f"## Follow-up run for {run_dir}\n\n{md_table(PLAN_HEADER, rows)}\n\n{plan_note()}")
            continue
        console.print(rich_table(f"follow-up run for {run_dir}", PLAN_HEADER, rows))
        console.print(plan_note())


def _merge(args: Sequence[str]) -> None:
    """Kept for older scripts: ``harness report RUN_DIR ... --out OUT_DIR`` does the same."""
    if len(args) < 3:
        _fail("harness merge needs an output directory and at least two runs -- fix: harness report RUN_DIR RUN_DIR --out OUT_DIR")
    _report([*args[1:], "--out", args[0]])


def _regress(args: Sequence[str]) -> None:
    """harness regress RUN_DIR --baseline FILE [--update] [--allow items,task,model,missing] [--output FILE] [key=value ...]"""
    from harness.config import regress_config
    from harness.regress import ALLOWABLE, load_baseline, markdown, regress, update_baseline

    usage = "harness regress RUN_DIR --baseline results/baselines/<name>.json"
    args = list(args)
    opts: dict[str, Optional[str]] = {"--baseline": None, "--allow": "", "--output": None}
    update = "--update" in args
    args = [a for a in args if a != "--update"]
    for flag in opts:
        if flag in args:
            i = args.index(flag)
            if i + 1 >= len(args):
                _fail(f"{flag} needs a value -- fix: {usage}")
            opts[flag] = args[i + 1]
            del args[i : i + 2]
    unknown = [a for a in args if a.startswith("--")]
    if unknown:
        _fail(f"unknown option {unknown[0]} -- fix: {usage} [--update] [--allow {','.join(ALLOWABLE)}] [--output FILE] [key=value ...]")
    if not opts["--baseline"]:
        _fail(f"harness regress needs --baseline -- fix: {usage}")
    overrides = [a for a in args if "=" in a]
    runs = [Path(a) for a in args if "=" not in a]
    if len(runs) != 1 or not runs[0].is_dir():
        _fail(f"harness regress needs one existing run directory, got {[str(r) for r in runs]} -- fix: {usage}")
    allow = {a for a in (opts["--allow"] or "").split(",") if a}
    if allow - set(ALLOWABLE):
        _fail(f"--allow {','.join(sorted(allow - set(ALLOWABLE)))} is not one of {','.join(ALLOWABLE)} -- fix: --allow items,task")
    cfg = regress_config(overrides)
    baseline_path = Path(opts["--baseline"])  # type: ignore[arg-type]
    if update:
        data = update_baseline(runs[0], baseline_path)
        print(f"wrote baseline {baseline_path}: {len(data['cells'])} cells, measured on "
              f"{', '.join(sorted({c['hardware'] for c in data['cells'].values()}))}")
        return
    baseline = load_baseline(baseline_path)
    report = regress(runs[0], baseline, cfg, allow)
    text = markdown(report, baseline, runs[0])
    print(text)
    if opts["--output"]:
        Path(opts["--output"]).write_text(text, encoding="utf-8")
    sys.exit(1 if report.regressed else 0)


def _export_lmeval(args: Sequence[str]) -> None:
    from harness.lmeval_export import export_tasks
    from harness.resources import tasks_dir as shipped_tasks_dir
    from harness.tasks import available_tasks, find_task, load_task

    if not args:
        _fail("harness export-lmeval needs an output directory -- fix: harness export-lmeval OUT_DIR [TASK ...]")
    out_dir, names = Path(args[0]), list(args[1:])
    tasks_dir = shipped_tasks_dir()
    if not names:
        names = sorted(n for n in available_tasks(tasks_dir) if n.startswith("seed_"))
    paths = export_tasks([load_task(find_task(n, tasks_dir)) for n in names], out_dir)
    print(f"wrote {len(paths)} lm-eval task(s) to {out_dir}: {', '.join(p.stem for p in paths)}")
    print(f"run them with: lm_eval --model hf --model_args pretrained=<model> --include_path {out_dir} --tasks {','.join(p.stem for p in paths)}")


def _run_hydra() -> None:
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import DictConfig

    @hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base=None)
    def _main(cfg: DictConfig) -> None:
        from harness.runner import run_experiment

        quiet_libraries()
        try:
            run_experiment(cfg, Path(HydraConfig.get().runtime.output_dir), console=make_console())
        except HarnessError as exc:  # exit here: Hydra would print its own line before re-raising
            _fail(str(exc))
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
        _fail(f"could not write {where}: {exc.strerror} (no space left for it) -- fix: free disk space (or raise the quota/file size limit), "
              "then run the same command again: every record already written is kept and the run resumes")
    _fail(f"cannot write {where}: {exc.strerror} -- fix: choose a writable location (hydra.run.dir=..., paths.store_dir=..., paths.cache_dir=...)")


def _interrupted() -> NoReturn:
    print("interrupted: every record written so far is kept in its cell -- fix: run the same command again to resume "
          "(complete cells are reused, the interrupted one continues after its last record)", file=sys.stderr)
    sys.exit(EXIT_INTERRUPTED)


def main(argv: Optional[Sequence[str]] = None) -> None:
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    args = sys.argv[1:]
    commands = {"report": _report, "claims": _claims, "plan": _plan, "merge": _merge, "regress": _regress, "export-lmeval": _export_lmeval}
    if args and args[0] in commands:
        try:
            commands[args[0]](args[1:])
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
        if exc.errno in _DISK_FULL or isinstance(exc, PermissionError) or exc.errno in (errno.ENOENT, errno.EROFS, errno.EACCES):
            _os_error(exc)
        raise


if __name__ == "__main__":
    main()
