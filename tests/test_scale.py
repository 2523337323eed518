"""A store of many models: the report reads as leaderboards, cells are streamed, ``harness cells`` lists what is left.

The store is written by the scale benchmark's own generator (bench/scale_store.py) at a test's size:
12 models x 3 tasks x 30 records, three cells missing and two running.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from harness.analysis import stats
from harness.cli import main
from harness.results import summary as summary_mod
from harness.results.outcomes import CellOutcomes

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import scale_store  # noqa: E402

MODELS, TASKS, RECORDS = 12, 3, 30


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[str]]]:
    root = tmp_path_factory.mktemp("scale") / "store"
    holes = scale_store.generate(root, MODELS, TASKS, RECORDS)
    return root, holes


@pytest.fixture(scope="module")
def report(store: tuple[Path, dict[str, list[str]]]) -> Path:
    root, _ = store
    # no cascade options: the decision's choice is then checked against every model alone; from 10 cells on the
    # cells are read, the tasks analysed and the figures drawn by worker processes, as in a store of thousands
    main(["report", str(root), "report.cascade_candidates=0", "report.parallel_from=10"])
    return root / "comparison"


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cells_missing_lists_exactly_the_cells_not_reportable(store, capsys) -> None:
    root, holes = store
    code, out, _ = _cli(capsys, "cells", str(root), "--missing")
    assert code == 0
    listed = {(m, t): status for m, t, status, _ in (line.split() for line in out.splitlines()[2:])}
    assert set(listed) == {tuple(c.split("/")) for c in holes["missing"] + holes["running"]}
    assert {listed[tuple(c.split("/"))] for c in holes["missing"]} == {"missing"}
    assert {listed[tuple(c.split("/"))] for c in holes["running"]} == {"running"}
    assert out.startswith(
        f"# {root}: {MODELS} models x {TASKS} tasks, {MODELS * TASKS - 5} complete, 2 running, 3 missing"
    )
    code, out, _ = _cli(capsys, "cells", str(root))
    assert code == 0 and len(out.splitlines()) == 2 + MODELS * TASKS


def test_cells_of_a_bad_path_is_one_line(tmp_path, capsys) -> None:
    code, _, err = _cli(capsys, "cells", str(tmp_path / "nowhere"))
    assert code == 2 and err.count("\n") == 1 and err.startswith("error:")
    (tmp_path / "empty").mkdir()
    code, _, err = _cli(capsys, "cells", str(tmp_path / "empty"))
    assert code == 2 and err.count("\n") == 1 and "neither a run directory" in err


def _leaderboards(md: str) -> dict[str, list[list[str]]]:
    boards: dict[str, list[list[str]]] = {}
    for block in md.split("\n### ")[1:]:
        task = block.split(" ", 1)[0]
        rows = [line.strip("|").split(" | ") for line in block.splitlines() if re.match(r"\| \d+ \|", line)]
        boards[task] = [[c.strip() for c in row] for row in rows]
    return boards


def test_leaderboards_are_sorted_and_compare_each_model_with_the_reference_only(report) -> None:
    md = (report / "report.md").read_text()
    summary = json.loads((report / "summary.json").read_text())
    reference = summary["reference"]
    assert reference == f"m{MODELS - 1:03d}"  # the largest model
    assert "only, not every pair" in md and "## Leaderboards" in md and "## Statistics" not in md
    boards = _leaderboards(md)
    assert len(boards) == TASKS
    for task, rows in boards.items():
        scores = [float(r[3].split()[0]) for r in rows]
        assert scores == sorted(scores, reverse=True) and len(rows) == len(summary["tasks"][task]["results"])
        assert sum(r[1] == f"{reference} (reference)" for r in rows) == 1
    analysis = json.loads((report / "analysis.json").read_text())
    for task, entry in analysis["tasks"].items():
        assert set(entry["comparisons"]) == set(summary["tasks"][task]["results"]) - {reference}
    assert (report / "plots" / "pareto_front_1.png").is_file() and not (
        report / "plots" / "quality_with_ci.png"
    ).exists()


def test_the_decision_is_the_cheapest_model_within_tolerance(report) -> None:
    summary = json.loads((report / "summary.json").read_text())
    analysis = json.loads((report / "analysis.json").read_text())
    decision = json.loads((report / "decision.json").read_text())["tasks"]
    chosen = 0
    for task, d in decision.items():
        results, ref = summary["tasks"][task]["results"], summary["reference"]
        metric, tol = d["metric"], d["tolerance"]
        ref_cost = results[ref]["economics"]["cost_per_1k_usd"]
        ok = {
            name: res["economics"]["cost_per_1k_usd"]
            for name, res in results.items()
            if name != ref
            and res["economics"]["cost_per_1k_usd"] < ref_cost
            and analysis["tasks"][task]["comparisons"][name]["difference_vs_reference"][metric]["low"] > -tol
        }
        assert len(d["options"]) == len(results)  # every model alone, no cascade (cascade_candidates=0)
        if ok:
            assert d["choice"]["name"] == min(ok, key=ok.__getitem__)
            chosen += 1
        else:
            assert d["choice"] is None
    assert chosen  # the generated store has cheaper models within tolerance


def test_claim_c1_is_evaluated_over_every_model(report) -> None:
    verdicts = {v["id"]: v for v in json.loads((report / "claims.json").read_text())["verdicts"]}
    c1 = verdicts["C1"]
    assert f"over {MODELS} models" in c1["key_number"] and len(c1["numbers"]["spearman_by_task"]) == TASKS
    c9 = verdicts["C9"]  # pairs of models: each against the reference only
    assert all(v["large"] == f"m{MODELS - 1:03d}" for k, v in c9["numbers"].items() if isinstance(v, dict))


def test_samples_page_holds_the_reference_and_the_best_candidates(report) -> None:
    page = (report / "samples.html").read_text()
    data = json.loads(page.split('<script id="data" type="application/json">')[1].split("</script>")[0])
    summary = json.loads((report / "summary.json").read_text())
    for t in data["tasks"]:
        results = summary["tasks"][t["name"]]["results"]
        best = sorted(
            (n for n in results if n != summary["reference"]),
            key=lambda n: -results[n]["quality"][results[n]["primary_metric"]],
        )
        assert set(t["models"]) == {summary["reference"], *best[:3]} == set(t["shown"])
        assert set(t["left_out"]) == set(results) - set(t["shown"])
    assert "harness flips" in page


def test_summary_reads_each_cell_once_and_keeps_no_records(report, monkeypatch) -> None:
    calls: list[str] = []
    real = summary_mod.read_cell_records

    def counting(cell, manifest=None):  # type: ignore[no-untyped-def]
        calls.append(str(cell))
        return real(cell, manifest)

    monkeypatch.setattr(summary_mod, "read_cell_records", counting)
    summary, outcomes = summary_mod.summarize_with_outcomes(report)
    assert len(calls) == len(set(calls)) == MODELS * TASKS - 5  # reportable cells only, each once
    assert all(isinstance(o, CellOutcomes) for o in outcomes.values())
    assert all(o.nbytes <= 12 * 8 * RECORDS for o in outcomes.values())  # a dozen floats per item at most, no text
    pooled, pooled_outcomes = summary_mod.summarize_with_outcomes(report, workers=2)
    assert pooled.to_dict() == summary.to_dict()
    assert all(np.array_equal(pooled_outcomes[k].item_score, o.item_score) for k, o in outcomes.items())


@pytest.mark.parametrize("n", [2, 7, 30, 31])
def test_fast_bootstrap_is_scipys_to_the_last_bit(n: int) -> None:
    rng = np.random.default_rng(n)
    x, y = rng.random(n), rng.lognormal(size=n)

    def scipy_ci(data, fn, paired=False):  # type: ignore[no-untyped-def]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = sps.bootstrap(
                data,
                fn,
                paired=paired,
                n_resamples=2000,
                method="percentile",
                random_state=np.random.default_rng(0),
                vectorized=False,
            )
        return float(res.confidence_interval.low), float(res.confidence_interval.high)

    got = stats.bootstrap_ci(x)
    assert (got.low, got.high) == scipy_ci((x,), np.mean)
    for q, est in zip((50, 95), stats.percentile_cis(y, (50, 95))):
        assert (est.low, est.high) == scipy_ci((y,), lambda v, q=q: float(np.percentile(v, q)))
    got = stats.paired_difference(x, y)
    assert (got.low, got.high) == scipy_ci((x, y), lambda u, v: np.mean(u) - np.mean(v), paired=True)
    got = stats.ratio_of_statistics(y, x + 0.1, np.median)
    assert (got.low, got.high) == scipy_ci((y, x + 0.1), lambda u, v: np.median(u) / np.median(v))


def test_cells_of_a_run_directory_follow_its_plan(tmp_path, capsys) -> None:
    run = tmp_path / "run"
    shutil.copytree(ROOT / "tests" / "golden" / "three" / "input", run)
    for path in run.rglob("*.json"):
        path.write_text(path.read_text().replace("@RUN@", str(run)))
    code, out, _ = _cli(capsys, "cells", str(run), "--missing")
    assert code == 0 and out.splitlines() == [f"# {run}: 3 models x 2 tasks, 6 complete; 0 not reportable"]
    gone = next(run.rglob("manifest.json"))
    gone.unlink()  # that cell is now as if never computed
    code, out, _ = _cli(capsys, "cells", str(run), "--missing")
    rows = [line.split() for line in out.splitlines()[2:]]
    model, task = gone.parent.parent.parent.name, gone.parent.parent.name
    assert code == 0 and rows == [[model, task, "missing", "0/8"]]


def test_one_process_and_two_give_the_same_report(report, tmp_path) -> None:
    out = tmp_path / "serial"
    main(["report", str(report.parent), "--out", str(out), "report.cascade_candidates=0", "report.workers=1"])
    for name in ("analysis.json", "decision.json", "claims.json", "summary.json"):
        parallel, serial = json.loads((report / name).read_text()), json.loads((out / name).read_text())
        for d in (parallel, serial):  # where each was written, and the overrides given
            d.pop("run_dir", None), d.pop("overrides", None)
        assert parallel == serial, name
