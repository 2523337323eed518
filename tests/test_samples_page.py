"""samples.html and harness flips, on the golden default run's cells (tiny real models, 8 items per task).

Three of tiny_olmoe's classification items are made right (prediction = gold) in a copy of the cells, so the
two models disagree on known items; the report is then rebuilt from those records as a user would
(``harness report``). The outcome counts of the page, of ``harness flips`` and of McNemar in analysis.json
must be the same numbers. The browser tests drive a real headless Chromium with Playwright (Debian's
``chromium``; ``.ci/run`` installs it and sets HARNESS_REQUIRE_BROWSER=1 so they run there).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.analysis.flips import A_RIGHT_B_WRONG, BOTH_WRONG, compare_records
from harness.report.build import build_report
from harness.results.summary import cell_records, summarize_with_outcomes

GOLDEN = Path(__file__).parent / "golden" / "default" / "input"
MADE_RIGHT = 3


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("samples") / "run"
    shutil.copytree(GOLDEN, run)
    for path in run.rglob("*.json"):
        path.write_text(path.read_text().replace("@RUN@", str(run)))
    records = next(p for p in run.rglob("records.jsonl") if "tiny_olmoe/seed_claims" in str(p))
    rows = [json.loads(line) for line in records.read_text().splitlines()]
    wrong = [r for r in rows if r["scores"]["correct"] == 0.0][:MADE_RIGHT]
    for r in wrong:
        r["prediction"], r["scores"]["correct"] = r["gold"], 1.0
    records.write_text("".join(json.dumps(r) + "\n" for r in rows))
    build_report(run)
    return run


def _counts(run: Path, task: str) -> dict[str, int]:
    summary, _ = summarize_with_outcomes(run)
    a, b = cell_records(summary, task, "tiny_olmoe"), cell_records(summary, task, "tiny_llama")
    counts, _ = compare_records(summary.tasks[task].type, a, b)
    return dict(counts)


def test_the_page_is_written_beside_the_report_and_linked(run):
    page = (run / "samples.html").read_text()
    assert (
        "samples.html" in (run / "report.html").read_text()
        and "samples.html#task=seed_claims" in (run / "report.html").read_text()
    )
    assert "samples.html" in (run / "report.md").read_text()
    assert "http://" not in page and "https://" not in page  # nothing fetched: no CDN, no font, no image
    assert "</script>" not in page.split('<script id="data" type="application/json">')[1].split("</script>")[0]


def test_flips_counts_match_mcnemar_and_the_cli(run):
    counts = _counts(run, "seed_claims")
    analysis = json.loads((run / "analysis.json").read_text())
    mc = analysis["tasks"]["seed_claims"]["comparisons"]["tiny_olmoe"]["mcnemar"]
    assert counts.get(A_RIGHT_B_WRONG, 0) == mc["small_only"] == MADE_RIGHT
    assert counts.get("a wrong, b right", 0) == mc["large_only"]
    out = subprocess.run(
        [sys.executable, "-m", "harness", "flips", str(run), "--task", "seed_claims", "--format", "json"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)["tasks"]["seed_claims"]
    assert data["counts"] == counts and sum(f["outcome"] == A_RIGHT_B_WRONG for f in data["flips"]) == MADE_RIGHT
    md = subprocess.run([sys.executable, "-m", "harness", "flips", str(run)], capture_output=True, text=True)
    assert md.returncode == 0 and "| item | outcome | gold | a | b |" in md.stdout and A_RIGHT_B_WRONG in md.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "harness", "flips", str(run), "--models", "x,y"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and bad.stderr.startswith("error: model 'x' is not in") and "-- fix:" in bad.stderr


def test_flips_across_two_runs_of_the_same_model(run, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(GOLDEN, other)
    for path in other.rglob("*.json"):
        path.write_text(path.read_text().replace("@RUN@", str(other)))
    out = subprocess.run(
        [sys.executable, "-m", "harness", "flips", str(other), str(run), "--models", "tiny_olmoe", "--format", "json"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    flips = json.loads(out.stdout)["tasks"]["seed_claims"]["flips"]
    assert len(flips) == MADE_RIGHT and all(f["outcome"] == "a wrong, b right" for f in flips)


# --- in a real browser ----------------------------------------------------------------------------------------------

BROWSER = os.environ.get("HARNESS_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def _browser_or_skip() -> str:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        reason = "playwright is not installed (pip install -e '.[test]')"
    else:
        if BROWSER:
            return BROWSER
        reason = "no Chromium here (apt-get install chromium, or set HARNESS_CHROMIUM to its path)"
    if os.environ.get("HARNESS_REQUIRE_BROWSER") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    """One Chromium for the module (Playwright's sync API allows one running instance per thread)."""
    browser_path = _browser_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def page(run, browser):
    pg = browser.new_page(viewport={"width": 1400, "height": 900})
    requests, errors = [], []
    pg.on("request", lambda r: requests.append(r.url))
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto((run / "samples.html").as_uri())
    pg.wait_for_selector(".row")
    yield pg, requests, errors
    pg.close()


def test_the_page_opens_offline_and_counts_outcomes_as_the_statistics_do(page, run):
    pg, requests, errors = page
    assert not errors
    assert [u for u in requests if not u.startswith("file://")] == []
    row = pg.locator("#counts tr[data-task='seed_claims']")
    got = {el.get_attribute("data-kind"): int(el.inner_text()) for el in row.locator(".count").all()}
    want = _counts(run, "seed_claims")
    assert {k: v for k, v in got.items() if v} == want
    mc = json.loads((run / "analysis.json").read_text())["tasks"]["seed_claims"]["comparisons"]["tiny_olmoe"]["mcnemar"]
    assert row.locator("td").nth(3).inner_text() == f"{mc['large_only']} / {mc['small_only']}"


def test_filters_search_and_an_open_item(page, run):
    pg, _, _ = page
    pg.select_option("#task", "0")  # seed_claims
    pg.select_option("#outcome", A_RIGHT_B_WRONG)
    assert pg.locator(".row").count() == MADE_RIGHT
    assert pg.locator("#shown").inner_text() == f"{MADE_RIGHT} of 8 items shown"
    pg.select_option("#outcome", BOTH_WRONG)
    assert pg.locator(".row").count() == _counts(run, "seed_claims")[BOTH_WRONG]
    pg.select_option("#outcome", "")
    summary, _ = summarize_with_outcomes(run)
    records = {(t, m): cell_records(summary, t, m) for t in summary.tasks for m in summary.order}
    first = records[("seed_claims", "tiny_olmoe")][0]
    word = max(first.prompt.split(), key=len).lower()
    hits = sum(
        any(word in text.lower() for text in (r.prompt, str(r.gold), r.prediction, rb.prediction))
        for r, rb in zip(records[("seed_claims", "tiny_olmoe")], records[("seed_claims", "tiny_llama")])
    )
    from playwright.sync_api import expect  # (the page's CSP forbids eval, so no wait_for_function)

    pg.fill("#q", word)
    expect(pg.locator("#shown")).to_have_text(f"{hits} of 8 items shown")
    assert pg.locator(".row").count() == hits
    pg.fill("#q", "")
    expect(pg.locator("#shown")).to_have_text("8 of 8 items shown")
    pg.select_option("#task", "1")  # seed_summary_paragraph: generation, words the reference lacks highlighted
    pg.locator(".row").first.click()
    detail = pg.locator("#detail")
    assert "seed_summary_paragraph / " in detail.locator("h2").inner_text()
    assert detail.locator("mark").count() > 0 and detail.locator("details summary").inner_text().startswith("prompt")


def test_a_partial_cell_and_a_single_model_are_said_not_broken(tmp_path, browser):
    """Two items missing from the reference's generation cell (a run killed mid-task): the page counts what both
    models have and names what is missing; with one model selected twice it says outcomes need two."""
    run = tmp_path / "run"
    shutil.copytree(GOLDEN, run)
    for path in run.rglob("*.json"):
        path.write_text(path.read_text().replace("@RUN@", str(run)))
    records = next(p for p in run.rglob("records.jsonl") if "tiny_llama/seed_summary_paragraph" in str(p))
    records.write_text("".join(records.read_text().splitlines(keepends=True)[:-2]))
    build_report(run)
    pg = browser.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto((run / "samples.html").as_uri())
    pg.wait_for_selector(".row")
    row = pg.locator("#counts tr[data-task='seed_summary_paragraph']")
    assert row.locator("td").nth(1).inner_text() == "6" and "tiny_llama: 2 missing" in row.inner_text()
    pg.select_option("#task", "1")
    pg.select_option("#flag", "missing")
    assert pg.locator(".row").count() == 2 and "(no record)" in pg.locator(".row").first.inner_text()
    pg.select_option("#mb", "tiny_olmoe")
    assert "the same model" in pg.locator("#counts").inner_text()
    pg.close()
    assert not errors
