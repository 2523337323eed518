"""Cells: keys, resume after a kill, racing jobs, reuse across comparisons, reports from several runs or a store.

Real runs of the tiny random-weight models in subprocesses, killed with
SIGKILL at chosen moments; float32, so a resumed cell must equal an
uninterrupted one item by item.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_records, write_gen_task
from omegaconf import OmegaConf

HARNESS = [sys.executable, "-m", "harness"]
N_ITEMS = 60


def _env(tmp: Path) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HARNESS_CACHE": str(tmp / "cache"), "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def big_tasks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A summarization task of 40 generated items: slow enough (about 3 s for the tiny pair) to be killed mid-task."""
    tasks = tmp_path_factory.mktemp("tasks")
    return write_gen_task(tasks, N_ITEMS)


def _args(tasks: Path, store: Path, run_dir: Path, *extra: str) -> list[str]:
    return [
        "pair=tiny",
        "task.name=gen",
        "task.tasks=[gen,smoke_classify]",
        f"paths.task_dirs=[{tasks}]",
        f"paths.store_dir={store}",
        "runtime.dtype=float32",
        "runtime.batch_size=1",
        "runtime.max_samples=null",
        "runtime.progress=false",
        f"hydra.run.dir={run_dir}",
        *extra,
    ]


def _run(args: list[str], tmp: Path) -> subprocess.CompletedProcess:
    return subprocess.run(HARNESS + args, cwd=tmp, capture_output=True, text=True, env=_env(tmp), timeout=600)


def _kill_when(args: list[str], tmp: Path, ready: callable, sig: int = signal.SIGKILL) -> tuple[int, str]:
    """Start a run and send ``sig`` as soon as ``ready(output so far)`` says so (polled every 5 ms); (exit code, output)."""
    proc = subprocess.Popen(
        HARNESS + args,
        cwd=tmp,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=_env(tmp),
        # a suite started in the background (cmd &) passes SIGINT ignored to its children: Python would then never
        # raise KeyboardInterrupt; the child gets the default handler, as in a terminal
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    buf = ""
    deadline = time.time() + 300
    try:
        while time.time() < deadline:
            try:
                buf += os.read(fd, 1 << 16).decode(errors="replace")
            except BlockingIOError:
                pass
            if ready(buf):
                proc.send_signal(sig)
                proc.wait(timeout=60)
                rest = proc.stdout.read() if sig != signal.SIGKILL else b""
                return proc.returncode, buf + (rest or b"").decode(errors="replace")
            if proc.poll() is not None:
                raise AssertionError(f"the run ended before the kill point:\n{buf[-3000:]}")
            time.sleep(0.005)
        raise AssertionError("the kill point was never reached")
    finally:
        if proc.poll() is None:
            proc.kill()


def _records_file(store: Path, model: str, task: str) -> Path | None:
    hits = [p for p in (store / model / task).glob("*/records.jsonl")] if (store / model / task).is_dir() else []
    return hits[0] if hits else None


def _lines(store: Path, model: str, task: str) -> int:
    f = _records_file(store, model, task)
    return f.read_bytes().count(b"\n") if f else 0


def _essence(run_dir: Path) -> dict:
    """What must not depend on an interruption: per model and task, the ids, predictions and scores in order."""
    cells = json.loads((run_dir / "cells.json").read_text())["cells"]
    return {
        (c["model"], c["task"]): [
            (r["sample_id"], r["prediction"], r["scores"]) for r in run_records(run_dir, c["model"], c["task"])
        ]
        for c in cells
    }


@pytest.fixture(scope="module")
def uninterrupted(big_tasks: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("ref")
    proc = _run(_args(big_tasks, tmp / "cells", tmp / "run"), tmp)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return _essence(tmp / "run")


@pytest.mark.parametrize("moment", ["model load", "mid-task", "report"])
def test_killed_run_resumes_to_the_same_records(moment, big_tasks, uninterrupted, tmp_path):
    store, run_dir = tmp_path / "cells", tmp_path / "run"
    args = _args(big_tasks, store, run_dir)
    if moment == "model load":
        _kill_when(args, tmp_path, lambda out: "loading tiny_olmoe" in out)
        assert _lines(store, "tiny_olmoe", "gen") == 0
    elif moment == "mid-task":
        _kill_when(args, tmp_path, lambda out: _lines(store, "tiny_olmoe", "gen") >= 3)
        done = _lines(store, "tiny_olmoe", "gen")
        assert 3 <= done < N_ITEMS, done
    else:
        _kill_when(args, tmp_path, lambda out: "writing the report" in out)
        assert _lines(store, "tiny_llama", "smoke_classify") == 6
    rerun = _run(args, tmp_path)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    assert _essence(run_dir) == uninterrupted  # same ids, predictions and scores; nothing lost or duplicated
    cells = {(c["model"], c["task"]): c["status"] for c in json.loads((run_dir / "cells.json").read_text())["cells"]}
    if moment == "mid-task":
        assert cells[("tiny_olmoe", "gen")] == "resumed" and "resuming after" in rerun.stdout
        manifest = json.loads((_records_file(store, "tiny_olmoe", "gen").parent / "manifest.json").read_text())
        assert [s["n"] for s in manifest["sessions"]][-1] == N_ITEMS - manifest["sessions"][-1]["resumed_after"]
    if moment == "report":
        assert set(cells.values()) == {"reused"} and (run_dir / "report.md").is_file()


def test_cell_killed_after_its_last_record_is_closed_not_skipped(tmp_path):
    """A kill between the last record's flush and the cell's close leaves every record and a ``running`` manifest
    without that session: the rerun closes the cell (nothing recomputed) and gives no throughput for untimed items."""
    store, run_dir = tmp_path / "cells", tmp_path / "run"
    args = [
        "pair=tiny",
        "task.tasks=[smoke_classify]",
        f"paths.store_dir={store}",
        "runtime.progress=false",
        "print_report=false",
        f"hydra.run.dir={run_dir}",
    ]
    assert _run(args, tmp_path).returncode == 0
    manifest_path = _records_file(store, "tiny_llama", "smoke_classify").parent / "manifest.json"
    records_before = (manifest_path.parent / "records.jsonl").read_bytes()
    left = json.loads(manifest_path.read_text())
    # the state a SIGKILL right after the 6th record leaves: Claim.begin's manifest, no session, all records
    manifest_path.write_text(
        json.dumps({**left, "status": "running", "completed_at": None, "sessions": [], "n_done": 0})
    )
    rerun = _run(args, tmp_path)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    assert (
        "tiny_llama / smoke_classify: resuming after 6 of 6 records (killed before it closed the cell)" in rerun.stdout
    )
    assert "loading tiny_llama" not in rerun.stdout  # nothing left to compute: the model is not loaded
    closed = json.loads(manifest_path.read_text())
    assert closed["status"] == "complete" and closed["n_done"] == 6 and closed["sessions"][-1]["closed_after_kill"]
    assert (manifest_path.parent / "records.jsonl").read_bytes() == records_before
    cells = {(c["model"], c["task"]): c["status"] for c in json.loads((run_dir / "cells.json").read_text())["cells"]}
    assert cells[("tiny_llama", "smoke_classify")] == "resumed"
    summary = json.loads((run_dir / "summary.json").read_text())
    row = summary["tasks"]["smoke_classify"]["results"]["tiny_llama"]
    assert row["n"] == 6 and row["throughput_samples_per_s"] is None  # no items/s over a session never timed
    again = _run(args, tmp_path)
    assert "tiny_llama / smoke_classify: reused" in again.stdout


def test_ctrl_c_mid_task_says_how_to_resume(big_tasks, uninterrupted, tmp_path):
    store, run_dir = tmp_path / "cells", tmp_path / "run"
    args = _args(big_tasks, store, run_dir)
    code, out = _kill_when(args, tmp_path, lambda out: _lines(store, "tiny_olmoe", "gen") >= 3, sig=signal.SIGINT)
    assert code == 130 and "Traceback" not in out, out[-3000:]
    assert "interrupted: every record written so far is kept" in out and "run the same command again to resume" in out
    rerun = _run(args, tmp_path)
    assert rerun.returncode == 0 and "resuming after" in rerun.stdout
    assert _essence(run_dir) == uninterrupted


def test_two_jobs_racing_on_the_same_cells(big_tasks, tmp_path):
    store = tmp_path / "cells"
    procs = [
        subprocess.Popen(
            HARNESS + _args(big_tasks, store, tmp_path / f"run{i}", "print_report=false"),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(tmp_path),
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    for model in ("tiny_olmoe", "tiny_llama"):
        for task, n in (("gen", N_ITEMS), ("smoke_classify", 6)):
            assert len(list((store / model / task).glob("*/records.jsonl"))) == 1
            ids = [json.loads(x)["sample_id"] for x in _records_file(store, model, task).read_text().splitlines()]
            assert len(ids) == n == len(set(ids))
    statuses = [
        c["status"] for i in range(2) for c in json.loads((tmp_path / f"run{i}" / "cells.json").read_text())["cells"]
    ]
    assert statuses.count("computed") == 4 and statuses.count("reused") == 4  # each cell computed once, by one job


def test_cell_key_changes_with_what_changes_the_records(tmp_path):
    from harness.config.schema import compose
    from harness.run.setup import prepare

    def keys(*overrides: str) -> dict:
        cfg = compose(["pair=tiny", "task=smoke", f"paths.store_dir={tmp_path}", "runtime.max_samples=3", *overrides])
        return {k: v.digest for k, v in prepare(OmegaConf.to_object(cfg)).keys.items()}

    base = keys()
    assert keys() == base  # deterministic
    for change in [
        "runtime.dtype=float32",
        "runtime.batch_size=2",
        "runtime.max_samples=4",
        "runtime.seed=1",
        "runtime.chat_template=false",
        "pair.small.random.seed=1",
        "pair.small.random.config.num_hidden_layers=3",
    ]:
        changed = keys(change)
        assert changed != base, change
    # a change to one model leaves the other model's cells alone (it is reused)
    other = keys("pair.small.random.seed=1")
    assert other[("tiny_llama", "smoke_classify")] == base[("tiny_llama", "smoke_classify")]
    # settings that do not change the records keep the key
    assert keys("runtime.warmup_steps=0", "runtime.progress=false", "print_report=false") == base


def test_recompute_keeps_the_old_cell(tmp_path):
    args = ["pair=tiny", "task=smoke", "runtime.max_samples=2", "runtime.progress=false", "print_report=false"]
    assert _run([*args, f"hydra.run.dir={tmp_path / 'a'}"], tmp_path).returncode == 0
    proc = _run([*args, f"hydra.run.dir={tmp_path / 'b'}", "runtime.recompute=true"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    cell_dirs = sorted(
        p.name for p in (tmp_path / "results" / "cells" / "tiny_olmoe" / "smoke_classify").iterdir() if p.is_dir()
    )
    assert len(cell_dirs) == 2 and any(".superseded-" in d for d in cell_dirs)
    assert {c["status"] for c in json.loads((tmp_path / "b" / "cells.json").read_text())["cells"]} == {"computed"}


def test_three_models_reuse_the_cells_of_a_pair_and_measure_c1(tmp_path):
    base = ["task=smoke", "runtime.max_samples=4", "runtime.progress=false"]
    assert _run(["pair=tiny", *base, f"hydra.run.dir={tmp_path / 'pair'}"], tmp_path).returncode == 0
    proc = _run(["comparison=tiny_three", *base, f"hydra.run.dir={tmp_path / 'three'}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    statuses = {
        (c["model"], c["task"]): c["status"]
        for c in json.loads((tmp_path / "three" / "cells.json").read_text())["cells"]
    }
    assert [statuses[(m, "smoke_classify")] for m in ("tiny_olmoe", "tiny_llama", "tiny_llama_wide")] == [
        "reused",
        "reused",
        "computed",
    ]
    report = (tmp_path / "three" / "report.md").read_text()
    for model in ("tiny_olmoe", "tiny_llama", "tiny_llama_wide"):
        assert f"| smoke_classify | {model} |" in report  # one row per model per task
    summary = json.loads((tmp_path / "three" / "summary.json").read_text())
    assert summary["reference"] == "tiny_llama_wide" and set(summary["comparisons"]["smoke_classify"]) == {
        "tiny_olmoe",
        "tiny_llama",
    }
    c1 = next(v for v in json.loads((tmp_path / "three" / "claims.json").read_text())["verdicts"] if v["id"] == "C1")
    assert "Spearman" in c1["key_number"] and c1["verdict"] in ("supported", "refuted")


def test_models_list_override_and_reference(tmp_path):
    proc = _run(
        [
            "models=[tiny_llama,tiny_olmoe]",
            "reference=tiny_olmoe",
            "task=smoke",
            "task.tasks=[smoke_classify]",
            "runtime.max_samples=3",
            "runtime.progress=false",
            "print_report=false",
            f"hydra.run.dir={tmp_path / 'r'}",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["reference"] == "tiny_olmoe" and summary["models"]["tiny_llama"]["role"] == "small"
    bad = _run(["models=[tiny_llama,nope]", "task=smoke", f"hydra.run.dir={tmp_path / 'x'}"], tmp_path)
    assert bad.returncode == 2 and "unknown model 'nope'" in bad.stderr and "tiny_olmoe" in bad.stderr


def test_report_over_a_sweep_and_a_store_lists_missing_cells(tmp_path):
    sweep = tmp_path / "sweep"
    proc = _run(
        [
            "-m",
            "pair=tiny",
            "task=smoke",
            "task.tasks=[smoke_classify],[smoke_summarize]",
            "runtime.max_samples=2",
            "runtime.progress=false",
            "print_report=false",
            f"hydra.sweep.dir={sweep}",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rep = _run(["report", str(sweep)], tmp_path)
    assert rep.returncode == 0, rep.stderr[-2000:]
    summary = json.loads((sweep / "comparison" / "summary.json").read_text())
    assert set(summary["tasks"]) == {"smoke_classify", "smoke_summarize"} and summary["missing_cells"] == []
    # one cell made incomplete: the combined report lists it instead of dropping it silently
    manifest_path = next((tmp_path / "results" / "cells" / "tiny_llama" / "smoke_summarize").glob("*/manifest.json"))
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, "status": "running"}))
    rep = _run(["report", str(sweep), "--out", str(tmp_path / "again")], tmp_path)
    assert rep.returncode == 0, rep.stderr[-2000:]
    assert "missing: tiny_llama/smoke_summarize" in rep.stdout
    claims = {v["id"]: v for v in json.loads((tmp_path / "again" / "claims.json").read_text())["verdicts"]}
    assert claims["C10"]["verdict"] == "refuted" and "tiny_llama/smoke_summarize" in claims["C10"]["sentence"]
    # the store itself: every complete cell
    store_rep = _run(["report", str(tmp_path / "results" / "cells"), "--out", str(tmp_path / "from_store")], tmp_path)
    assert store_rep.returncode == 0, store_rep.stderr[-2000:]
    tasks = json.loads((tmp_path / "from_store" / "summary.json").read_text())["tasks"]
    assert set(tasks["smoke_classify"]["results"]) == {"tiny_olmoe", "tiny_llama"} and set(
        tasks["smoke_summarize"]["results"]
    ) == {"tiny_olmoe"}


def test_submitit_local_sweep_into_one_store(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep = tmp_path / "sweep"
    proc = _run(
        [
            "-m",
            "hydra/launcher=submitit_local",
            "pair=tiny",
            "task=smoke",
            "task.tasks=[smoke_classify],[smoke_summarize]",
            "runtime.max_samples=2",
            "runtime.progress=false",
            "print_report=false",
            f"hydra.sweep.dir={sweep}",
            "hydra.launcher.timeout_min=10",
            "hydra.launcher.cpus_per_task=1",
            # a shared store by absolute path, as on a cluster: a "/" in the job's directory name would nest it
            f"paths.store_dir={tmp_path / 'shared' / 'cells'}",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert len(list(sweep.glob("*/cells.json"))) == 2
    assert len(list(sweep.glob(".submitit/*/*_result.pkl"))) == 2  # really ran as submitit jobs
    rep = _run(["report", str(sweep)], tmp_path)
    assert rep.returncode == 0, rep.stderr[-2000:]
    assert set(json.loads((sweep / "comparison" / "summary.json").read_text())["tasks"]) == {
        "smoke_classify",
        "smoke_summarize",
    }
