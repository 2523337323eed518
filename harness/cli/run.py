"""The default command: an experiment run by Hydra (``-m`` for a sweep), its errors reworded in one line."""

from __future__ import annotations

import errno
import os
import re
import sys
from pathlib import Path
from typing import NoReturn, Optional

from harness.cli.common import fail, interrupted, make_console, options, quiet_libraries
from harness.config.schema import CONFIG_DIR, register_configs
from harness.errors import HarnessError

RUN_HELP = """\
The default command runs an experiment (Hydra):
  harness [KEY=VALUE ...]              e.g. harness pair=olmoe_vs_olmo2 task=seed runtime.device=cuda
  harness -m [KEY=A,B ...]             a sweep (Hydra multirun), e.g. harness -m models=[a,b] task=seed_claims,seed_stance
  harness --cfg job [KEY=VALUE ...]    print the composed configuration without running
  harness --hydra-help                 Hydra's own options
config groups: {groups}
"""


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
        valid = options(leaf)
        return f"unknown {leaf} {name!r}; valid {leaf}s: {', '.join(valid)} -- fix: pass {leaf}=<one of these> (or add configs/{leaf}/{name}.yaml)"
    new_claim = re.search(r"override \+?claims\.(\w+)", text)
    if new_claim and "ClaimConfig" in f"{text} {exc.__cause__ or exc.__context__ or ''}":
        return (
            f"claim {new_claim.group(1)!r} cannot be built from the command line (a claim is a typed entry) -- fix: add it "
            "to a claims YAML of your own (claims/<name>.yaml with defaults: [seed_articles, _self_], in a folder on "
            "hydra.searchpath) and pass claims=<name>"
        )
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
            fail(str(exc))  # exit here: Hydra would print its own line before re-raising
        except KeyboardInterrupt:
            interrupted()
        except OSError as exc:
            if exc.errno in _DISK_FULL or isinstance(exc, PermissionError):
                os_error(exc)
            raise

    _main()


_DISK_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


def os_error(exc: OSError) -> NoReturn:
    """A file that could not be written or created: one line, and what is kept."""
    where = exc.filename or "a file"
    if exc.errno in _DISK_FULL:
        fail(
            f"could not write {where}: {exc.strerror} (no space left for it) -- fix: free disk space (or raise the quota/file size limit), "
            "then run the same command again: every record already written is kept and the run resumes"
        )
    fail(
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


def run_experiment_command() -> None:
    """Compose the configuration from the command line and run it; every known failure is one line, exit 2."""
    # Let composition errors reach us as exceptions, so they can be reworded.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    register_configs()
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        _run_hydra()
    except HarnessError as exc:
        fail(str(exc))
    except (HydraException, OmegaConfBaseException) as exc:
        fail(explain_hydra_error(exc))
    except KeyboardInterrupt:
        interrupted()
    except OSError as exc:  # Hydra creates the run directory before the run starts
        if (
            exc.errno in _DISK_FULL
            or isinstance(exc, PermissionError)
            or exc.errno in (errno.ENOENT, errno.EROFS, errno.EACCES)
        ):
            os_error(exc)
        raise
    except Exception as exc:  # a job of a submitit sweep: its own error, in one line
        failure = _sweep_job_failure(exc)
        if failure is None:
            raise
        fail(failure)
