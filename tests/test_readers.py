"""Readers at the file boundary: user files as common tools write them load as the clean file does,
and damaged or moved results are named, never turned into silent wrong numbers or a traceback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.report.build import build_report
from harness.tasks.local import load_task

GOLDEN = Path(__file__).parent / "golden"
ROWS = [
    {"id": "1", "text": "fine", "label": "pos"},
    {"id": "2", "text": "caf\u00e9 \u00e0 l'\u00e9cole", "label": "neg"},
    {"id": "3", "text": "ok", "label": "pos"},
]


def _task(tmp: Path, data_name: str, data: bytes) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / data_name).write_bytes(data)
    yaml = tmp / "mine.yaml"
    yaml.write_text(
        f"name: mine\ntype: classification\ndata: {data_name}\nprompt: '{{text}}'\nlabels: {{pos: positive, neg: negative}}\n"
    )
    return yaml


def _items(yaml: Path) -> list[tuple[str, str, str]]:
    return [(s.id, s.fields["text"], s.target) for s in load_task(yaml).samples]


@pytest.mark.parametrize("kind", ["jsonl", "csv", "tsv"])
def test_bom_crlf_and_blank_lines_load_as_the_clean_file(tmp_path: Path, kind: str) -> None:
    if kind == "jsonl":
        lines = [json.dumps(r, ensure_ascii=False) for r in ROWS]
    else:
        sep = "," if kind == "csv" else "\t"
        lines = [sep.join(["id", "text", "label"])] + [sep.join(r.values()) for r in ROWS]
    clean = _task(tmp_path / "clean", f"data.{kind}", ("\n".join(lines) + "\n").encode())
    # a Windows editor's file: byte-order mark, CRLF line endings, blank lines between and after the items
    windows = "\ufeff" + "\r\n".join(lines[:2] + ["", "  "] + lines[2:]) + "\r\n\r\n"
    messy = _task(tmp_path / "messy", f"data.{kind}", windows.encode("utf-8"))
    assert _items(messy) == _items(clean) == [(r["id"], r["text"], r["label"]) for r in ROWS]


def _golden_run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(GOLDEN / "three" / "input", run)
    for path in run.rglob("*.json"):
        path.write_text(path.read_text().replace("@RUN@", str(run)))
    return run


def test_a_report_over_deleted_or_moved_cells_lists_them(tmp_path: Path) -> None:
    run = _golden_run(tmp_path)
    cells = json.loads((run / "cells.json").read_text())["cells"]
    shutil.rmtree(cells[0]["path"])  # deleted
    shutil.move(cells[1]["path"], tmp_path / "elsewhere")  # moved away
    build_report(run)
    summary = json.loads((run / "summary.json").read_text())
    gone = {f"{c['model']}/{c['task']}" for c in cells[:2]}
    assert gone <= set(summary["missing_cells"])
    report = (run / "report.md").read_text()
    assert "**Missing cells:**" in report and all(name in report for name in gone)


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HARNESS_CACHE": str(cwd / "cache")}
    return subprocess.run(
        [sys.executable, "-m", "harness", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=600
    )


def test_a_cell_whose_manifest_cannot_be_read_is_named_then_computed_anew(tmp_path: Path) -> None:
    args = [
        "pair=tiny",
        "task=smoke",
        "runtime.max_samples=2",
        "runtime.progress=false",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    assert _cli(args, tmp_path).returncode == 0
    cell = Path(json.loads((tmp_path / "run" / "cells.json").read_text())["cells"][0]["path"])
    records = (cell / "records.jsonl").read_bytes()
    (cell / "manifest.json").write_text('{"status": "comp')  # cut short
    report = _cli(["report", str(tmp_path / "run")], tmp_path)
    assert (
        report.returncode == 2
        and "manifest.json cannot be read" in report.stderr
        and "run the same command again" in report.stderr
    )
    again = _cli(args, tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "computed anew" in again.stdout + again.stderr
    aside = [p for p in cell.parent.iterdir() if p.name.startswith(f"{cell.name}.superseded-")]
    assert len(aside) == 1 and (aside[0] / "records.jsonl").read_bytes() == records  # nothing lost
    assert json.loads((cell / "manifest.json").read_text())["status"] == "complete"
    assert _cli(["report", str(tmp_path / "run")], tmp_path).returncode == 0


@pytest.mark.parametrize("name", ["default", "three"])
def test_summary_json_round_trips_through_its_typed_form(name: str) -> None:
    from harness.results.schema import RunSummary

    expected = json.loads((GOLDEN / name / "expected.json").read_text())
    data = json.loads(expected["summary.json"])
    summary = RunSummary.from_dict(data)
    assert summary.reference in summary.order and all(
        r.cell for t in summary.tasks.values() for r in t.results.values()
    )
    assert json.dumps(summary.to_dict(), indent=2, ensure_ascii=False) + "\n" == expected["summary.json"]


def test_a_summary_from_a_newer_version_is_named_not_misread() -> None:
    from harness.results.schema import ResultFormatError, RunSummary

    data = json.loads(json.loads((GOLDEN / "default" / "expected.json").read_text())["summary.json"])
    task = next(iter(data["tasks"].values()))
    next(iter(task["results"].values()))["quality_v2"] = {}
    with pytest.raises(ResultFormatError, match="quality_v2.*newer version"):
        RunSummary.from_dict(data)


def _typed_files() -> list[tuple[str, Any, dict[str, Any]]]:
    """(name, reader) for every typed file of the golden default run, with the JSON each reads."""
    from harness.analysis.schema import RunAnalysis
    from harness.results.cells import CellManifest
    from harness.results.comparison import RunPlan
    from harness.results.schema import RunSummary
    from harness.verdicts.claims import Verdict

    expected = json.loads((GOLDEN / "default" / "expected.json").read_text())
    manifest = json.loads(next((GOLDEN / "default" / "input" / "cells").glob("*/*/*/manifest.json")).read_text())
    plan = json.loads((GOLDEN / "default" / "input" / "plan.json").read_text())
    return [
        ("summary.json", RunSummary.from_dict, json.loads(expected["summary.json"])),
        ("analysis.json", RunAnalysis.from_dict, json.loads(expected["analysis.json"])),
        ("a verdict", Verdict.from_dict, json.loads(expected["claims.json"])["verdicts"][0]),
        ("a manifest", CellManifest.from_dict, manifest),
        ("plan.json", RunPlan.from_dict, plan),
    ]


@pytest.mark.parametrize("index", range(5))
def test_every_typed_file_refuses_a_field_it_does_not_know_by_one_rule(index: int) -> None:
    """One rule for unknown fields, whatever the file: named as a newer writer's, never dropped or misread."""
    from harness.serialize import ResultFormatError

    name, read, data = _typed_files()[index]
    read(data)  # as written: read without complaint
    with pytest.raises(ResultFormatError, match=r"field_from_the_future\).*newer version"):
        read({**data, "field_from_the_future": 1})


def test_a_manifest_round_trips_and_a_newer_format_is_named(tmp_path: Path) -> None:
    from harness.results.cells import CellKey, CellStatus, ManifestError, Store, read_manifest
    from harness.results.schema import ResultFormatError

    cell = next((GOLDEN / "default" / "input" / "cells").glob("*/*/*/manifest.json")).parent
    data = json.loads((cell / "manifest.json").read_text())
    manifest = read_manifest(cell)
    assert manifest is not None and manifest.status is CellStatus.complete and manifest.reportable
    assert {k: v for k, v in manifest.to_dict().items() if k in data} == data  # nothing read is lost on rewrite
    newer = tmp_path / "cell"
    newer.mkdir()
    (newer / "manifest.json").write_text(json.dumps({**data, "format": 99}))
    with pytest.raises(ResultFormatError, match="format 99, written by a newer version") as raised:
        read_manifest(newer)
    assert not isinstance(raised.value, ManifestError)  # refused, not set aside and recomputed as a damaged cell
    store, key = Store(tmp_path / "store"), CellKey("m", "t", {"x": 1})
    store.cell_dir(key).mkdir(parents=True)
    (store.cell_dir(key) / "manifest.json").write_text(json.dumps({**data, "format": 99}))
    with pytest.raises(ResultFormatError):  # a run stops with the one-line error instead of recomputing the cell
        store.is_complete(key)


@pytest.mark.parametrize("name", ["default", "three"])
def test_analysis_json_round_trips_through_its_typed_form(name: str) -> None:
    from harness.analysis.schema import RunAnalysis

    text = json.loads((GOLDEN / name / "expected.json").read_text())["analysis.json"]
    analysis = RunAnalysis.from_dict(json.loads(text))
    assert analysis.tasks and all(t.comparisons for t in analysis.tasks.values())
    assert json.dumps(analysis.to_dict(), indent=2, ensure_ascii=False) + "\n" == text
