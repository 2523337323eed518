"""runtime.stop_when_decided on real runs of the tiny random-weight pair: looks, stopped cells, reuse, continuing, bad settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_records
from omegaconf import OmegaConf
from test_cells import _args, _run, big_tasks  # noqa: F401  (the 60-item generation task)

from harness.analysis.sequential import is_sequential

# C3's tolerance at 2 (200 points): any interval clears -2, so the first look decides the task
DECIDE_AT_ONCE = [
    "runtime.stop_when_decided=true",
    "runtime.first_look=4",
    "runtime.look_growth=2",
    "runtime.stop_claims=[C3]",
    "claims.C3.thresholds.rouge_tolerance=2.0",
    "claims.C3.thresholds.accuracy_tolerance=2.0",
]


def _cells(run_dir: Path) -> dict[tuple[str, str], dict]:
    return {(c["model"], c["task"]): c for c in json.loads((run_dir / "cells.json").read_text())["cells"]}


def _manifest(cell: dict) -> dict:
    return json.loads((Path(cell["path"]) / "manifest.json").read_text())


def test_a_decided_task_stops_is_reused_and_continues_when_the_rule_changes(big_tasks, tmp_path):  # noqa: F811
    from harness.config.schema import compose
    from harness.run.setup import prepare

    store = tmp_path / "cells"
    proc = _run(_args(big_tasks, store, tmp_path / "a", *DECIDE_AT_ONCE), tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "decided after 4 of 60 items" in proc.stdout + proc.stderr
    cells = _cells(tmp_path / "a")
    # items in the seeded random order: the first 4 of it, the same for both models
    p = prepare(
        OmegaConf.to_object(
            compose(
                [
                    f"paths.task_dirs=[{big_tasks}]",
                    "task.tasks=[gen,smoke_classify]",
                    "pair=tiny",
                    "runtime.max_samples=null",
                    "runtime.stop_when_decided=true",
                ]
            )
        )
    )
    order = {t.name: [s.id for s in samples] for t, samples in p.tasks}
    assert order["gen"] != sorted(order["gen"])
    for (model, task), c in cells.items():
        m = _manifest(c)
        assert m["status"] == "stopped" and m["stopped"]["at"] == 4 and m["n_done"] == 4, (model, task, m["status"])
        assert [r["sample_id"] for r in run_records(tmp_path / "a", model, task)] == order[task][:4]
        assert c["status"] == "computed"
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["sequential"]["claims"] == ["C3"] and summary["sequential"]["comparisons"] == 2
    assert summary["sequential"]["alpha_per_comparison"] == pytest.approx(0.025)
    analysis = json.loads((tmp_path / "a" / "analysis.json").read_text())
    diff = analysis["tasks"]["gen"]["comparisons"]["tiny_olmoe"]["difference_vs_reference"]["rougeL"]
    assert is_sequential(diff) and diff["alpha"] == pytest.approx(0.025) and "fixed_n" in diff
    verdicts = {v["id"]: v for v in json.loads((tmp_path / "a" / "claims.json").read_text())["verdicts"]}
    assert verdicts["C3"]["verdict"] == "supported"
    assert verdicts["C10"]["verdict"] == "supported" and "stopped when decided" in verdicts["C10"]["key_number"]
    report = (tmp_path / "a" / "report.md").read_text()
    assert "## Stopped when decided" in report and "| gen | 4 / 60 | decided, stopped | 112 |" in report

    # the same command again: decided as it was, nothing computed, no model loaded
    proc = _run(_args(big_tasks, store, tmp_path / "b", *DECIDE_AT_ONCE), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {c["status"] for c in _cells(tmp_path / "b").values()} == {"reused"}
    assert "loading" not in proc.stdout + proc.stderr

    # a stricter rule (C2 too: the difference must clear 0) is not decided at 4 items: the same cells continue
    first = {k: (Path(c["path"]) / "records.jsonl").read_bytes() for k, c in cells.items()}
    stricter = [o for o in DECIDE_AT_ONCE if not o.startswith("runtime.stop_claims")] + ["runtime.stop_claims=[C2,C3]"]
    proc = _run(_args(big_tasks, store, tmp_path / "c", *stricter), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for key, c in _cells(tmp_path / "c").items():
        assert c["path"] == cells[key]["path"] and c["status"] == "resumed"
        records = (Path(c["path"]) / "records.jsonl").read_bytes()
        assert records.startswith(first[key]) and len(records) > len(first[key])  # earlier records kept byte for byte
        assert _manifest(c)["status"] in ("stopped", "complete")
    # on CPU a sequential cell's memory is its first look's (later looks run in a process that reloaded models)
    manifest = _manifest(_cells(tmp_path / "c")[("tiny_olmoe", "gen")])
    assert len(manifest["sessions"]) >= 2 and all("look" in s for s in manifest["sessions"])
    result = json.loads((tmp_path / "c" / "summary.json").read_text())["tasks"]["gen"]["results"]["tiny_olmoe"]
    assert (
        result["memory"]["basis"].startswith("first look")
        and result["peak_memory_bytes"] == manifest["sessions"][0]["memory"]["peak_bytes"]
    )


def test_an_interrupted_look_is_caught_up_before_deciding(big_tasks, tmp_path):  # noqa: F811
    """One model's cell holds fewer records than the other's (a job killed mid-look): it runs up to the other's look first."""
    store = tmp_path / "cells"
    assert _run(_args(big_tasks, store, tmp_path / "a", *DECIDE_AT_ONCE), tmp_path).returncode == 0
    cell = _cells(tmp_path / "a")[("tiny_olmoe", "gen")]
    records = Path(cell["path"]) / "records.jsonl"
    lines = records.read_bytes().splitlines(keepends=True)
    records.write_bytes(b"".join(lines[:2]))  # as if killed after 2 of the 4 items of the first look
    manifest = _manifest(cell)
    (Path(cell["path"]) / "manifest.json").write_text(json.dumps({**manifest, "status": "running", "n_done": 2}))
    proc = _run(_args(big_tasks, store, tmp_path / "b", *DECIDE_AT_ONCE), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cells = _cells(tmp_path / "b")
    assert cells[("tiny_olmoe", "gen")]["status"] == "resumed" and cells[("tiny_llama", "gen")]["status"] == "reused"
    assert records.read_bytes().startswith(b"".join(lines[:2]))  # the two records on disk kept as they were
    assert [json.loads(x)["sample_id"] for x in records.read_bytes().splitlines()] == [
        json.loads(x)["sample_id"] for x in lines
    ]
    assert _manifest(cells[("tiny_olmoe", "gen")])["status"] == "stopped"


@pytest.mark.parametrize(
    "override, message",
    [
        (["runtime.stop_claims=[C5]"], "C5 cannot stop a task"),
        (
            ["runtime.confidence_sequence=hoeffding"],
            "runtime.confidence_sequence='hoeffding' is not one of asymptotic, bernstein",
        ),
        (["runtime.first_look=1"], "runtime.first_look=1"),
        (["runtime.look_growth=0.5"], "runtime.look_growth=0.5"),
        (["models=[tiny_olmoe,tiny_llama_arch]"], "needs a reference and another model whose quality is measured"),
    ],
)
def test_impossible_stop_settings_fail_before_any_model_loads(override, message):
    from harness.config.schema import compose
    from harness.errors import ConfigError
    from harness.run.setup import prepare

    cfg = compose(["pair=tiny", "task=smoke", "runtime.stop_when_decided=true", *override])
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace(".", r"\.")):
        prepare(OmegaConf.to_object(cfg))
