"""A judge model grades a run's summaries: the G-Eval score against a hand computation, answers read from text (and
counted when they state nothing), both orders of a pairwise comparison, and the judgments as resumable cells of the
store, run end to end on the tiny random pair (a judge of random weights: its grades mean nothing, its plumbing is
what is tested)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.config.schema import judge_settings
from harness.errors import ConfigError
from harness.run.judge import choice_probs, expected_score, first_choice

HARNESS = [sys.executable, "-m", "harness"]


def test_the_score_is_the_scale_weighted_by_the_judges_probabilities() -> None:
    scale = ["1", "2", "3", "4", "5"]
    wanted = [0.1, 0.2, 0.3, 0.2, 0.2]
    # log-likelihoods of any common offset: only their differences matter once normalised over the scale
    probs = choice_probs([math.log(p) - 7.0 for p in wanted], scale)
    assert [probs[s] for s in scale] == pytest.approx(wanted)
    assert expected_score(probs, scale) == pytest.approx(1 * 0.1 + 2 * 0.2 + 3 * 0.3 + 4 * 0.2 + 5 * 0.2)  # 3.2
    # a judge sure of one point scores that point; one split between 2 and 4 scores 3, not a sampled 2 or 4
    assert expected_score(choice_probs([0.0, -50, -50, -50, -50], scale), scale) == pytest.approx(1.0)
    assert expected_score(choice_probs([-50, 0.0, -50, 0.0, -50], scale), scale) == pytest.approx(3.0)


@pytest.mark.parametrize(
    ("answer", "stated"), [(" 4", "4"), ("Score: 5/5", "5"), ("B.", "B"), ("I cannot tell", None), ("", None)]
)
def test_an_answer_is_read_for_the_first_choice_it_states(answer: str, stated: str | None) -> None:
    choices = ["A", "B"] if stated in ("A", "B") else ["1", "2", "3", "4", "5"]
    assert first_choice(answer, choices) == stated


def test_a_rubric_file_with_a_field_the_judge_does_not_fill_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "rubrics.yaml"
    bad.write_text("rubrics:\n  faithfulness: 'Source {source} Summary {summmary} Score:'\npairwise: '{a} {b}'\n")
    with pytest.raises(ConfigError, match=r"uses \{summmary\}.*-- fix: use only"):
        judge_settings(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        judge_settings(tmp_path / "missing.yaml")
    assert set(judge_settings().rubrics) == {"faithfulness", "coverage", "fluency"}


def _env(tmp: Path) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HARNESS_CACHE": str(tmp / "cache")}


def _args(tmp: Path, run: Path, *extra: str, items: int = 3) -> list[str]:
    args = ["pair=tiny", "task.name=s", "task.tasks=[smoke_summarize]", f"runtime.max_samples={items}", *extra]
    return args + [
        "runtime.progress=false",
        "print_report=false",
        f"paths.store_dir={tmp / 'store'}",
        f"hydra.run.dir={run}",
    ]


@pytest.fixture(scope="module")
def judged(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """The tiny pair on the smoke summarization task, judged inside the run by one of them (tiny_llama)."""
    tmp = tmp_path_factory.mktemp("judge")
    run = tmp / "run"
    args = _args(tmp, run, "judge.model=tiny_llama", "judge.engine=hf")
    proc = subprocess.run(HARNESS + args, cwd=tmp, capture_output=True, text=True, env=_env(tmp), timeout=600)
    return run, proc


def test_a_judged_run_writes_scores_agreement_and_both_orders(judged: tuple[Path, subprocess.CompletedProcess]) -> None:
    run, proc = judged
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((run / "judge_summary.json").read_text())
    assert summary["method"] == "probabilities"  # hf gives log-probabilities: G-Eval's score
    assert summary["seconds"] > 0 and summary["cost_usd"] > 0  # the judge's own, priced apart from the candidates
    task = summary["tasks"]["smoke_summarize"]
    for model in ("tiny_olmoe", "tiny_llama"):
        stats = task["models"][model]
        assert stats["n"] == 3 and set(stats["rubrics"]) == {"coverage", "faithfulness", "fluency"}
        assert all(1.0 <= iv["value"] <= 5.0 for iv in stats["rubrics"].values())
    (candidate,) = task["comparisons"]  # the small model against the reference (the large one)
    assert set(task["comparisons"][candidate]["differences"]) >= {"faithfulness", "rougeL"}
    pair = task["pairwise"][candidate]
    assert pair["n"] == 3 and pair["orders_agree"] + pair["position_flips"] + pair["unparseable"] == 3
    assert {c["metric"] for c in task["agreement"]["faithfulness"]} >= {"rougeL"}
    # the judge is one of the compared models: said, never silently trusted
    assert any("self-preference" in w for w in summary["warnings"])
    text = (run / "judge.md").read_text()
    for heading in ("## Scores", "## Each model against the reference", "## How far to trust the judge", "## Pairwise"):
        assert heading in text
    assert "**Warning.**" in text and "not counted in any candidate's cost" in text


def test_judgments_are_cells_reused_by_the_next_judge_run(judged: tuple[Path, subprocess.CompletedProcess]) -> None:
    run, first = judged
    assert first.returncode == 0, first.stderr[-2000:]
    before = json.loads((run / "judge_summary.json").read_text())
    cells = json.loads((run / "judge.json").read_text())
    for per_model in [*cells["rubric_cells"].values(), *cells["pairwise_cells"].values()]:
        for cell in per_model.values():
            manifest = json.loads((Path(cell) / "manifest.json").read_text())
            assert manifest["status"] == "complete" and manifest["parts"]["judge"]["source"] == "random"
    again = subprocess.run(
        HARNESS + ["judge", str(run), "--model", "tiny_llama", "--engine", "hf"],
        cwd=run.parent,
        capture_output=True,
        text=True,
        env=_env(run.parent),
        timeout=600,
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert "judged smoke" not in again.stdout and "report: " in again.stdout  # nothing judged twice
    after = json.loads((run / "judge_summary.json").read_text())
    assert after == before  # read from the cells, not judged again


def test_a_judge_that_states_no_score_is_counted_not_dropped(tiny_llama) -> None:
    from harness.config.schema import judge_settings as settings
    from harness.engines.hf import HFEngine
    from harness.results.records import SampleRecord
    from harness.run.judge import Judge

    judge = Judge(HFEngine(tiny_llama), settings())
    judge.method = "parsed"  # as on a server without log-probabilities: the answer is read, not the probabilities
    record = SampleRecord(
        "t", "m", "1", "Summarize: the cat sat.", ["A cat sat."], "A cat sat.", {}, 5, 3, 0.1, 1, 0.1, 0.1
    )
    answer = judge.rubric(judge.cfg.rubrics["faithfulness"], record)
    if answer.method == "unparseable":  # kept with the answer it gave; the record's score is NaN, counted in the table
        assert answer.score is None and answer.probs == {}
    else:
        assert answer.method == "parsed" and answer.score in (1.0, 2.0, 3.0, 4.0, 5.0)
        assert first_choice(answer.answer, judge.cfg.scale) == str(int(answer.score))


def test_the_judged_differences_stand_beside_rouge_in_the_claims_and_the_decision(
    judged: tuple[Path, subprocess.CompletedProcess],
) -> None:
    run, proc = judged
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((run / "judge_summary.json").read_text())
    (candidate,) = summary["tasks"]["smoke_summarize"]["comparisons"]
    differences = summary["tasks"]["smoke_summarize"]["comparisons"][candidate]["differences"]
    verdicts = {v["id"]: v for v in json.loads((run / "claims.json").read_text())["verdicts"]}
    for cid in ("C2", "C3"):  # the claims decided by a paired quality difference
        (nums,) = verdicts[cid]["numbers"].values()
        assert nums["judge"] == "tiny_llama"
        assert {r: d["value"] for r, d in nums["judged"].items()} == {
            r: d["value"] for r, d in differences.items() if r != "rougeL"
        }
        assert "judged by tiny_llama (1-5): coverage" in verdicts[cid]["key_number"]
    decision = json.loads((run / "decision.json").read_text())["tasks"]["smoke_summarize"]
    option = next(o for o in decision["options"] if o["name"] == candidate)
    assert decision["judge"] == "tiny_llama" and option["judged"]["differences"] == differences
    report = (run / "report.md").read_text()
    assert "judged by tiny_llama" in report and "the decision rests on ROUGE-L" in report


def test_judgments_of_outputs_the_run_no_longer_uses_are_left_out_and_said(
    judged: tuple[Path, subprocess.CompletedProcess], tmp_path: Path
) -> None:
    """The run directory computed again with other settings (new cells): the old judgments graded other outputs, so
    the report leaves them out with a warning instead of putting them beside the new ROUGE-L."""
    import shutil

    run, first = judged
    assert first.returncode == 0
    again = tmp_path / "run"
    shutil.copytree(run, again)
    args = _args(run.parent, again, items=2)
    proc = subprocess.run(
        HARNESS + args, cwd=tmp_path, capture_output=True, text=True, env=_env(run.parent), timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((again / "judge_summary.json").read_text())
    assert summary["tasks"] == {} and any("no longer uses" in w for w in summary["warnings"])
    assert "judged by" not in (again / "claims.json").read_text()
