"""samples.html at scale: 5,000 items x 3 models, opened and filtered in a real headless Chromium.

    python bench/samples_page.py [--items 5000] [--models 3] [--repeats 3] [--out /tmp/samples_bench]

Generates SampleRecords of a classification task (prompts of about 900 characters, as the seed tasks'
few-shot prompts are; one model in three wrong on a seeded share of items) and writes the page with the
harness's own ``render_samples``; then, in Chromium (Debian's package, driven by Playwright), times:

- open: from navigation to the first rows drawn (the data parsed, the counts computed, the rows in view rendered);
- filter: choosing an outcome until the shown-items line changes;
- search: typing a word until the list is filtered (includes the page's 120 ms typing debounce).

Prints the page's size and the median of each over ``--repeats`` fresh page loads, and writes
results/bench/samples_page.json. Not a unit test: it takes about a minute.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import time
from pathlib import Path
from types import SimpleNamespace

from _common import write_result

from harness.report.samples import render_samples
from harness.results.records import SampleRecord

WORDS = "invoice refund charged twice account ticket delayed shipment customer angry happy billing renewal".split()


def make_records(n: int, models: list[str], seed: int = 0) -> dict[tuple[str, str], list[SampleRecord]]:
    rng = random.Random(seed)
    labels = ["high", "low", "medium"]
    prompts = [" ".join(rng.choice(WORDS) for _ in range(130)) + f" Ticket {i}. Priority:" for i in range(n)]
    gold = [rng.choice(labels) for _ in range(n)]
    out = {}
    for k, m in enumerate(models):
        rows = []
        for i in range(n):
            right = rng.random() < 0.55 + 0.15 * k
            pred = gold[i] if right else rng.choice([x for x in labels if x != gold[i]])
            rows.append(
                SampleRecord(
                    task="tickets",
                    model=m,
                    sample_id=f"t{i:05d}",
                    prompt=prompts[i],
                    gold=gold[i],
                    prediction=pred,
                    scores={"correct": float(right)},
                    input_tokens=220,
                    output_tokens=0,
                    latency_s=rng.uniform(0.05, 0.4) * (k + 1),
                    batch_size=1,
                    item_s=0.1,
                    batch_s=0.1,
                    details={"margin": rng.random()},
                )
            )
        out[("tickets", m)] = rows
    return out


def summary_of(models: list[str], n: int) -> SimpleNamespace:
    """What the page reads of a RunSummary (names, order, reference, each task's item ids and cells)."""
    cell = SimpleNamespace(failed_ids=[], stopped=None)
    task = SimpleNamespace(
        type="classification",
        info={"sample_ids": [f"t{i:05d}" for i in range(n)]},
        results={m: SimpleNamespace(cell=cell) for m in models},
    )
    return SimpleNamespace(
        name="bench", task_group="tickets", order=models, reference=models[-1], tasks={"tickets": task}
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=5000)
    ap.add_argument("--models", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("/tmp/samples_bench"))
    args = ap.parse_args()
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        raise SystemExit("no Chromium here: apt-get install chromium")
    from playwright.sync_api import expect, sync_playwright

    models = [f"model_{k}" for k in range(args.models)]
    records = make_records(args.items, models)
    args.out.mkdir(parents=True, exist_ok=True)
    page_path = args.out / "samples.html"
    t0 = time.perf_counter()
    page_path.write_text(render_samples(summary_of(models, args.items), records), encoding="utf-8")  # type: ignore[arg-type]
    write_s = time.perf_counter() - t0
    size = page_path.stat().st_size
    opens, filters, searches = [], [], []
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=browser, args=["--no-sandbox"])
        for _ in range(args.repeats):
            pg = b.new_page(viewport={"width": 1400, "height": 900})
            start = time.perf_counter()
            pg.goto(page_path.as_uri())
            pg.wait_for_selector(".row")
            opens.append(time.perf_counter() - start)
            start = time.perf_counter()
            pg.select_option("#outcome", "a wrong, b right")
            expect(pg.locator("#shown")).not_to_have_text(f"{args.items} of {args.items} items shown")
            filters.append(time.perf_counter() - start)
            shown = pg.locator("#shown").inner_text()
            pg.select_option("#outcome", "")
            start = time.perf_counter()
            pg.fill("#q", "ticket 4999.")
            expect(pg.locator("#shown")).to_have_text(f"1 of {args.items} items shown")
            searches.append(time.perf_counter() - start)
            pg.close()
        b.close()
    result = {
        "items": args.items,
        "models": args.models,
        "page_bytes": size,
        "write_s": write_s,
        "open_s": opens,
        "filter_s": filters,
        "search_s": searches,
        "filtered": shown,
    }
    path = write_result("samples_page", result)
    print(f"{args.items} items x {args.models} models: page {size / 1e6:.1f} MB, written in {write_s:.2f} s")
    print(
        f"open (to first rows drawn) median {statistics.median(opens):.2f} s; outcome filter {statistics.median(filters):.2f} s "
        f"({shown}); search {statistics.median(searches):.2f} s (120 ms of it the typing debounce); {args.repeats} loads"
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
