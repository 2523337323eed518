"""Sweeps on a real SLURM cluster: a job array into one shared store, jobs cancelled or stopped at their time limit
and resubmitted, two jobs contending for one cell's lock.

The cluster is a real single-node SLURM 22.05 (tests/slurm_fixture.py: munged, MariaDB + slurmdbd, slurmctld,
slurmd on 127.0.0.1), started once for this module; ``harness -m hydra/launcher=slurm_cpu`` submits through
hydra-submitit-launcher as a user would. Jobs get one CPU each (two run at once on a 2-core machine) and compute in
float32 with one thread, so a resumed cell must equal an uninterrupted one item by item.

The cluster's teardown leaves no process of it behind, checked when the module's cluster stops (after the cancelled
and timed-out jobs) and, on a second cluster of its own, with jobs whose processes resist or escape a cancel.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import write_gen_task
from slurm_fixture import Cluster, why_not

HARNESS = [sys.executable, "-m", "harness"]
N_ITEMS = 400  # about 20 s per tiny model on one core: a job is still computing when cancelled or out of time
JOB_TIMEOUT_S = 400


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    reason = why_not()
    if reason:
        if os.environ.get("HARNESS_REQUIRE_SLURM") == "1":
            pytest.fail(f"HARNESS_REQUIRE_SLURM=1 but {reason}")
        pytest.skip(reason)
    c = Cluster(tmp_path_factory.mktemp("slurm"))
    try:
        yield c.start()
    finally:
        killed = c.stop()
    # a teardown error (it fails the run): a slurmstepd of a job that ended as the daemons stopped once outlived
    # them by an hour, retrying to report its job's end
    assert c.leftovers() == [], f"processes of the test cluster outlived its teardown (it killed {killed})"


@pytest.fixture(scope="module")
def gen_tasks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tasks = tmp_path_factory.mktemp("tasks")
    return write_gen_task(tasks, N_ITEMS)


def _sweep_args(store: Path, sweep: Path, *extra: str) -> list[str]:
    return [
        "-m",
        "hydra/launcher=slurm_cpu",
        "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.mem_gb=2",
        "hydra.launcher.timeout_min=10",
        f"hydra.sweep.dir={sweep}",
        f"paths.store_dir={store}",
        "runtime.progress=false",
        *extra,
    ]


def _gen_args(tasks: Path) -> list[str]:
    return [
        "task.name=gen",
        "task.tasks=[gen]",
        f"paths.task_dirs=[{tasks}]",
        "runtime.dtype=float32",
        "runtime.batch_size=1",
        "runtime.max_samples=null",
    ]


def _env(cluster: Cluster, tmp: Path) -> dict[str, str]:
    return {**cluster.env, "HF_HUB_OFFLINE": "1", "HARNESS_CACHE": str(tmp / "cache"), "PYTHONUNBUFFERED": "1"}


def _harness(cluster: Cluster, tmp: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        HARNESS + args, cwd=tmp, env=_env(cluster, tmp), capture_output=True, text=True, timeout=JOB_TIMEOUT_S
    )


def _records(store: Path, model: str, task: str) -> list[dict]:
    files = list((store / model / task).glob("*/records.jsonl")) if (store / model / task).is_dir() else []
    assert len(files) <= 1, files  # one cell per model and task: never computed twice under two keys
    return [json.loads(line) for line in files[0].read_text().splitlines()] if files else []


def _essence(store: Path, model: str, task: str) -> list[tuple]:
    """What an interruption must not change: ids, predictions and scores, in item order."""
    return sorted((r["sample_id"], r["prediction"], r["scores"]) for r in _records(store, model, task))


def _manifest(store: Path, model: str, task: str) -> dict:
    return json.loads(next((store / model / task).glob("*/manifest.json")).read_text())


def _statuses(sweep: Path) -> list[tuple[str, str, str]]:
    return sorted(
        (c["model"], c["task"], c["status"])
        for p in sweep.glob("*/cells.json")
        for c in json.loads(p.read_text())["cells"]
    )


def test_sweep_as_a_job_array_computes_each_cell_once(cluster: Cluster, tmp_path: Path) -> None:
    store, sweep = tmp_path / "shared" / "cells", tmp_path / "sweep"
    args = _sweep_args(
        store,
        sweep,
        "print_report=false",
        "task=smoke",
        "models=[tiny_olmoe],[tiny_llama]",  # one job per model, each computing both tasks
    )
    proc = _harness(cluster, tmp_path, args)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:] + cluster.logs()[-2000:]
    assert "Submitit 'slurm' sweep output dir" in proc.stdout + proc.stderr
    # two array tasks of one SLURM job, each computing its model's cells, recorded in each cell's session
    jobs = {}
    for model in ("tiny_olmoe", "tiny_llama"):
        for task, n in (("smoke_classify", 6), ("smoke_summarize", 3)):
            assert len(_records(store, model, task)) == n
            (session,) = _manifest(store, model, task)["sessions"]
            jobs[(model, task)] = session["slurm"]
    assert len({j["array_job_id"] for j in jobs.values()}) == 1
    assert sorted(j["array_task_id"] for j in jobs.values()) == ["0", "0", "1", "1"]
    assert jobs[("tiny_olmoe", "smoke_classify")]["job_id"] == jobs[("tiny_olmoe", "smoke_summarize")]["job_id"]
    assert {j["job_partition"] for j in jobs.values()} == {cluster.partition} and all(
        j["cpus_per_task"] == "1" for j in jobs.values()
    )
    assert [s for *_, s in _statuses(sweep)] == ["computed"] * 4
    array_id = next(iter(jobs.values()))["array_job_id"]
    cluster.wait_idle()  # submitit returns on a job's result file, a moment before SLURM records the job's end
    states = {j["id"]: j["state"] for j in cluster.jobs() if j["id"].startswith(f"{array_id}_")}
    assert sorted(states.values()) == ["COMPLETED"] * 2, states
    # one report over the sweep, and over the store
    for source, out in ((sweep, sweep / "comparison"), (store, tmp_path / "from_store")):
        rep = _harness(cluster, tmp_path, ["report", str(source), "--out", str(out)])
        assert rep.returncode == 0, rep.stderr[-2000:]
        summary = json.loads((out / "summary.json").read_text())
        assert summary["missing_cells"] == [] and {t: sorted(r["results"]) for t, r in summary["tasks"].items()} == {
            t: ["tiny_llama", "tiny_olmoe"] for t in ("smoke_classify", "smoke_summarize")
        }


@pytest.fixture(scope="module")
def contended(cluster: Cluster, gen_tasks: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two array tasks given the same two cells (they differ only in a setting outside the cell key), running at
    once: the uninterrupted records of both cells, and what each job did."""
    tmp = tmp_path_factory.mktemp("contended")
    store, sweep = tmp / "cells", tmp / "sweep"
    # print_report is outside the cell key: two jobs, the same cells
    args = _sweep_args(store, sweep, *_gen_args(gen_tasks), "models=[tiny_olmoe,tiny_llama]", "print_report=false,true")
    start = time.monotonic()
    proc = _harness(cluster, tmp, args)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    logs = [p.read_text(errors="replace") for p in sorted(sweep.glob(".submitit/*/*_log.out"))]
    return {
        "store": store,
        "sweep": sweep,
        "logs": logs,
        "wall_s": time.monotonic() - start,
        "essence": {m: _essence(store, m, "gen") for m in ("tiny_olmoe", "tiny_llama")},
    }


def test_two_array_tasks_take_turns_on_a_cells_lock(contended: dict) -> None:
    store = contended["store"]
    for model in ("tiny_olmoe", "tiny_llama"):
        ids = [r["sample_id"] for r in _records(store, model, "gen")]
        assert len(ids) == N_ITEMS == len(set(ids))
        (session,) = _manifest(store, model, "gen")["sessions"]  # computed in one session, by one job
        assert session["slurm"]["array_task_id"] in ("0", "1")
    statuses = [s for *_, s in _statuses(contended["sweep"])]
    assert statuses.count("computed") + statuses.count("resumed") == 2 and statuses.count("reused") == 2, statuses
    # the job that found a cell locked said whose lock it waited for (pid and host), then reused the cell
    logs = [" ".join(log.split()) for log in contended["logs"]]  # the console may wrap a long line
    waits = [log for log in logs if "waiting for pid" in log]
    assert waits and all("which is computing this cell" in w for w in waits), logs


def test_cancelled_and_timed_out_jobs_resume_on_resubmission(
    cluster: Cluster, gen_tasks: Path, contended: dict, tmp_path: Path
) -> None:
    store, sweep = tmp_path / "cells", tmp_path / "sweep"
    base = _sweep_args(store, sweep, *_gen_args(gen_tasks), "print_report=false", "models=[tiny_olmoe],[tiny_llama]")
    proc = subprocess.Popen(
        HARNESS + base,
        cwd=tmp_path,
        env=_env(cluster, tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + JOB_TIMEOUT_S
        todo = {"tiny_olmoe": "cancel", "tiny_llama": "time limit"}
        while todo:  # each array task, once it is mid-task
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            for model in [m for m in todo if len(_records(store, m, "gen")) >= 3]:
                array_id = _running_array(cluster)
                if todo.pop(model) == "cancel":
                    cluster.run(["scancel", f"{array_id}_0"])
                else:
                    # SLURM's time-limit warning: submitit asks for USR2 signal_delay_s before the limit (give or take
                    # the 60 s SLURM's event loop allows), treats it as a timeout and, with slurm_cpu's
                    # max_num_timeout 0, ends the job without requeueing it. Sent now rather than minutes from now.
                    cluster.run(["scancel", "--signal=USR2", f"{array_id}_1"])
            time.sleep(0.2)
        out, err = proc.communicate(timeout=JOB_TIMEOUT_S)
        cluster.wait_idle()  # a cancelled job's processes get KillWait seconds to end after SLURM marks it cancelled
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 2 and "Traceback" not in err, err[-3000:]
    # the sweep's command ends with one line naming the first job that ended without a result, and how to resume
    assert f"error: sweep job {array_id}_0 ended without a result (CANCELLED" in err, err[-2000:]
    assert "run the same sweep again" in err
    log = (sweep / ".submitit" / f"{array_id}_1" / f"{array_id}_1_0_log.out").read_text()
    assert "Job not requeued because: timed-out too many times" in log, log[-2000:]
    done = {m: len(_records(store, m, "gen")) for m in ("tiny_olmoe", "tiny_llama")}
    assert all(3 <= n < N_ITEMS for n in done.values()), done
    assert {_manifest(store, m, "gen")["status"] for m in done} == {"running"}

    rerun = _harness(cluster, tmp_path, [*base[:5], f"hydra.sweep.dir={tmp_path / 'rerun'}", *base[6:]])
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-3000:]
    assert [s for *_, s in _statuses(tmp_path / "rerun")] == ["resumed", "resumed"]
    for model in ("tiny_olmoe", "tiny_llama"):
        # every item once, and the same predictions and scores as the uninterrupted cells
        assert _essence(store, model, "gen") == contended["essence"][model]
        manifest = _manifest(store, model, "gen")
        assert manifest["status"] == "complete"
        # the interrupted job never closed its session (its records are what it left); the resubmitted job's did
        (session,) = manifest["sessions"]
        assert session["resumed_after"] == done[model] and session["n"] == N_ITEMS - done[model]
        assert session["slurm"]["array_job_id"] != array_id


def _running_array(cluster: Cluster) -> str:
    ids = {j["id"].split("_")[0] for j in cluster.jobs() if j["state"] == "RUNNING" and "_" in j["id"]}
    assert len(ids) == 1, cluster.jobs()
    return ids.pop()


def test_teardown_leaves_no_process_of_the_cluster(cluster: Cluster, tmp_path: Path) -> None:
    """A second cluster, stopped while one job's step ignores SIGTERM and just after another job, which left a
    process outside SLURM's sight (re-parented to init), was cancelled: nothing of it survives, its jobs' slurmstepd
    end by themselves (having told slurmctld), and the module's cluster, running beside it, keeps every process."""
    own = Cluster(tmp_path / "slurm")
    try:
        own.start()

        def sbatch(script: str) -> str:
            args = ["sbatch", "--parsable", "-c", "1", "-o", str(tmp_path / "%j.out"), "--wrap", script]
            return own.run(args).stdout.strip()

        stubborn = sbatch("srun sh -c \"trap '' TERM; while :; do sleep 1; done\"")
        escaped = sbatch("(sleep 300 &); srun sleep 300")
        deadline = time.monotonic() + 60
        while not {f"{stubborn}.0", f"{escaped}.0"} <= set(own.run(["squeue", "-h", "-s", "-o", "%i"]).stdout.split()):
            assert time.monotonic() < deadline, own.run(["squeue", "-s"]).stdout + own.logs()[-2000:]
            time.sleep(0.2)
        time.sleep(0.5)  # the steps' processes started
        before = [args for _, args in own.leftovers()]
        # a slurmstepd's command line names no directory: leftovers finds it by its environment and open files
        for job in (stubborn, escaped):
            assert f"slurmstepd: [{job}.batch]" in before and f"slurmstepd: [{job}.0]" in before, before
        assert "sleep 300" in before, before  # the escaped process, found by its environment
        theirs = {pid for pid, _ in cluster.leftovers()}
        assert theirs and not theirs & {pid for pid, _ in own.leftovers()}
        own.run(["scancel", escaped])
    finally:
        killed = own.stop()
    assert own.leftovers() == []
    assert [k.split(" ", 1)[1] for k in killed] == ["sleep 300"], killed  # the only one killed: the escaped process
    assert all(p.poll() is None for p in cluster.procs)
    assert cluster.run(["sinfo", "-h", "-N", "-o", "%T"]).stdout.strip() in ("idle", "mixed", "allocated")
