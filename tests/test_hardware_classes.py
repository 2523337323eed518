"""Hardware classes: every cell records the machine it ran on, a comparison of cells from two classes says so and
withholds the ratios of time between them, ``runtime.other_hardware`` chooses between reusing another class's cell
and computing this machine's own, and ``harness regress`` compares like with like.

The second class is a real cell of the tiny pair moved to another class in the store (its manifest's class, key
and directory rewritten as a job on an AMX node would have written them), since this machine has one CPU.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.measure.hardware import HardwareClass, _cpuinfo, hardware_class
from harness.results.cells import digest

HARNESS = [sys.executable, "-m", "harness"]
# a Sapphire Rapids node as /proc/cpuinfo names it: the class the moved cell claims
OTHER = {
    "cpu": "Intel(R) Xeon(R) Platinum 8480+",
    "cpu_features": ["avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_bf16", "amx_tile", "amx_bf16"],
    "cores": 2,
    "threads": 2,
    "torch_cpu_capability": "AVX512",
}
MOVED = ("tiny_llama", "smoke_classify")


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HARNESS_CACHE": str(cwd / "cache")}
    return subprocess.run(HARNESS + args, cwd=cwd, capture_output=True, text=True, env=env, timeout=600)


def _args(work: Path, run: str, *extra: str) -> list[str]:
    return [
        "pair=tiny",
        "task=smoke",
        "runtime.max_samples=3",
        "runtime.progress=false",
        "print_report=false",
        f"paths.store_dir={work / 'cells'}",
        f"hydra.run.dir={work / run}",
        *extra,
    ]


def _cells(run: Path) -> dict[tuple[str, str], dict]:
    return {(c["model"], c["task"]): c for c in json.loads((run / "cells.json").read_text())["cells"]}


def test_cpuinfo_features_and_the_class_id(tmp_path: Path) -> None:
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nmodel name\t: AMD EPYC 9R14\nflags\t\t: fpu sse avx avx2 fma avx512f avx512_bf16\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd asimddp sve sve2 i8mm bf16\nCPU part\t: 0xd4f\n")
    assert _cpuinfo(x86) == ("AMD EPYC 9R14", ["avx", "avx2", "fma", "avx512f", "avx512_bf16"])
    assert _cpuinfo(arm)[1] == ["asimd", "asimddp", "i8mm", "bf16", "sve", "sve2"]
    base = HardwareClass("AMD EPYC 9R14", ("avx2", "avx512f", "avx512_bf16"), cores=2, threads=2)
    assert base.label == "AMD EPYC 9R14 (AVX2, AVX-512, AVX512_BF16; 2 cores, 2 threads)"
    assert HardwareClass.from_dict(base.to_dict()) == base and HardwareClass.from_dict(base.to_dict()).id == base.id
    # what selects kernels or changes timings changes the class; the same node type is the same class
    assert HardwareClass("AMD EPYC 9R14", ("avx2", "avx512f"), cores=2, threads=2).id != base.id
    assert HardwareClass("AMD EPYC 9R14", ("avx2", "avx512f", "avx512_bf16"), cores=2, threads=1).id != base.id
    assert HardwareClass("AMD EPYC 9R14", ("avx2", "avx512f", "avx512_bf16"), cores=2, threads=2).id == base.id
    here = hardware_class("cpu", "hf", threads=1, cores=1)
    assert here.cpu and here.threads == 1 and here.id == hardware_class("cpu", "hf", threads=1, cores=1).id
    assert hardware_class("cpu", "openai", 1, 1, server="127.0.0.1:8000").label == "server 127.0.0.1:8000"


def _move_to_other_class(store: Path, model: str, task: str) -> Path:
    """Rewrite one complete cell as if a job on the OTHER class had computed it: its class, key and directory."""
    (cell,) = [p.parent for p in (store / model / task).glob("*/manifest.json")]
    manifest = json.loads((cell / "manifest.json").read_text())
    parts = {**manifest["parts"], "hardware": HardwareClass.from_dict(OTHER).id}
    key = digest(parts)
    manifest.update(hardware=OTHER, parts=parts, key=key)
    (cell / "manifest.json").write_text(json.dumps(manifest))
    moved = cell.with_name(key)
    cell.rename(moved)
    return moved


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run of the tiny pair on this machine and its baseline; then one of its cells moved to another class."""
    work = tmp_path_factory.mktemp("hardware")
    first = _run(_args(work, "here"), work)
    assert first.returncode == 0, first.stderr[-3000:]
    made = _run(["regress", str(work / "here"), "--baseline", str(work / "baseline.json"), "--update"], work)
    assert made.returncode == 0, made.stderr[-2000:]
    _move_to_other_class(work / "cells", *MOVED)
    return work


def test_every_cell_records_its_class(work: Path) -> None:
    cells = _cells(work / "here")
    labels = {c["hardware_label"] for c in cells.values()}
    assert len(labels) == 1 and all(c["hardware"] for c in cells.values())
    (label,) = labels
    assert "threads" in label and "cores" in label
    # in the manifest, and the models table has a hardware column
    manifest = json.loads((Path(cells[("tiny_olmoe", "smoke_classify")]["path"]) / "manifest.json").read_text())
    assert (
        manifest["hardware"]["cpu"]
        and manifest["parts"]["hardware"] == cells[("tiny_olmoe", "smoke_classify")]["hardware"]
    )
    report = (work / "here" / "report.md").read_text()
    assert "| hardware |" in report and label in report and "Mixed hardware" not in report


def test_reuse_names_the_other_class_and_the_report_withholds_time_ratios(work: Path) -> None:
    run = work / "reuse"
    proc = _run(_args(work, "reuse", "runtime.other_hardware=reuse"), work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    other_label = HardwareClass.from_dict(OTHER).label
    assert f"{MOVED[0]} / {MOVED[1]}: reused (computed" in log and f"on other hardware: {other_label}" in log
    cells = _cells(run)
    assert cells[MOVED]["hardware_label"] == other_label and cells[MOVED]["status"] == "reused"
    summary = json.loads((run / "summary.json").read_text())
    assert len(summary["hardware_classes"]) == 2
    cmp = summary["comparisons"]["smoke_classify"]["tiny_olmoe"]
    assert cmp["cross_hardware"] is True and cmp["latency_p50_ratio"] is None and cmp["cost_ratio"] is None
    assert cmp["delta_vs_reference"] is not None and cmp["peak_memory_ratio"] is not None  # quality and memory stay
    same = summary["comparisons"]["smoke_summarize"]["tiny_olmoe"]
    assert same["cross_hardware"] is False and same["latency_p50_ratio"] is not None
    analysis = json.loads((run / "analysis.json").read_text())["tasks"]
    assert "latency_median_ratio" not in analysis["smoke_classify"]["comparisons"]["tiny_olmoe"]
    assert "latency_median_ratio" in analysis["smoke_summarize"]["comparisons"]["tiny_olmoe"]
    report = (run / "report.md").read_text()
    head = report.split("## ", 1)[0]  # before the first section: at the top
    assert "Mixed hardware" in head and other_label in head and "tiny_llama/smoke_classify" in head
    assert "n/a (other hardware)" in report
    html = (run / "report.html").read_text()
    assert html.index("Mixed hardware") < html.index("<h2>")
    terminal = _run(["report", str(run)], work)
    assert terminal.returncode == 0 and "Mixed hardware" in terminal.stdout


def test_regress_across_classes_compares_quality_only_or_refuses(work: Path) -> None:
    run = work / "reuse"
    if not run.is_dir():
        assert _run(_args(work, "reuse", "runtime.other_hardware=reuse"), work).returncode == 0
    proc = _run(["regress", str(run), "--baseline", str(work / "baseline.json")], work)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("other hardware: baseline on cpu: ") and "Xeon" in lines[0], lines
    row = next(ln for ln in proc.stdout.splitlines() if ln.startswith(f"| {MOVED[0]}/{MOVED[1]} |"))
    assert "not compared" in row  # latency and memory
    assert "hardware: latency and memory not compared (another hardware class)" in proc.stdout
    strict = _run(["regress", str(run), "--baseline", str(work / "baseline.json"), "--strict-hardware"], work)
    lines = [ln for ln in strict.stderr.splitlines() if ln.strip()]
    assert strict.returncode == 2 and len(lines) == 1 and "measured on other hardware" in lines[0], strict.stderr
    assert "--strict-hardware" in lines[0] and "one baseline per runner class" in lines[0]


def test_by_default_each_class_computes_its_own_cell(work: Path) -> None:
    proc = _run(_args(work, "own"), work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cells = _cells(work / "own")
    assert cells[MOVED]["status"] == "computed" and cells[("tiny_olmoe", "smoke_classify")]["status"] == "reused"
    assert len({c["hardware"] for c in cells.values()}) == 1
    assert "Mixed hardware" not in (work / "own" / "report.md").read_text()


def test_a_report_whose_cells_were_all_deleted_lists_them_and_draws_nothing(work: Path) -> None:
    run = work / "deleted"
    shutil.copytree(work / "here", run)
    for c in _cells(run).values():
        shutil.rmtree(c["path"], ignore_errors=True)  # the first run's cells; the others' stay
    shutil.rmtree(run / "plots", ignore_errors=True)
    proc = _run(["report", str(run)], work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    report = (run / "report.md").read_text()
    assert "No cell of this comparison has records" in report
    for model, task in _cells(run):
        assert f"{model}/{task}" in report
    assert not list((run / "plots").glob("*.png")) if (run / "plots").is_dir() else True


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_gpu_class_names_the_device_its_capability_and_cuda() -> None:
    hw = hardware_class("cuda", "hf", threads=1, cores=1)
    cap = torch.cuda.get_device_capability()
    assert hw.gpu is not None and hw.gpu["name"] == torch.cuda.get_device_name()
    assert hw.gpu["compute_capability"] == f"{cap[0]}.{cap[1]}" and hw.gpu["cuda"] == torch.version.cuda
    assert hw.gpu["name"] in hw.label and "sm " in hw.label
    assert hw.id != hardware_class("cpu", "hf", threads=1, cores=1).id
