"""A third-party package adds an engine, a task source, a model source and a claim check through entry points, without
editing this one.

The plugin is a real package (a pyproject.toml with entry points), built and installed by pip into a folder of its own
that the harness's process sees on its path; the harness then runs with the plugin's engine, a task of the plugin's
source and a claim decided by the plugin's check.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PYPROJECT = """\
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "harness-plugin-example"
version = "0.1.0"

[tool.setuptools]
py-modules = ["harness_plugin_example"]

[project.entry-points."small_vs_large.engines"]
hf_counted = "harness_plugin_example:CountedEngine"

[project.entry-points."small_vs_large.task_sources"]
shipped = "harness_plugin_example:SOURCE"

[project.entry-points."small_vs_large.model_sources"]
tiny_seeded = "harness_plugin_example:TINY_SEEDED"

[project.entry-points."small_vs_large.claim_checks"]
min_items_per_cell = "harness_plugin_example:min_items_per_cell"
"""

MODULE = '''\
"""An engine that counts its calls, a task source of the harness's shipped tasks, a model source wrapping random
weights, a check on items per cell."""
from dataclasses import replace

from harness.config.resources import tasks_dir
from harness.engines.hf import HFEngine
from harness.models.sources import MODEL_SOURCES, WeightSource
from harness.tasks.local import find_task, load_task
from harness.tasks.sources import TaskSource
from harness.verdicts.claims import INCONCLUSIVE, SUPPORTED, Verdict


class CountedEngine(HFEngine):
    name = "hf_counted"
    calls = 0

    def loglikelihood(self, prompts, choices):
        CountedEngine.calls += 1
        scores, seconds = super().loglikelihood(prompts, choices)
        for score in scores:  # into each record's details: the plugin's engine scored it
            score.details["plugin_call"] = CountedEngine.calls
        return scores, seconds

    def describe(self):
        return replace(super().describe(), engine=self.name)


def _load(ref, cache_dir, include):
    task = load_task(find_task(ref.ref, tasks_dir()), cache_dir)
    return replace(task, spec=replace(task.spec, name=ref.task_name), source={"source": ref.source, "ref": ref.ref})


SOURCE = TaskSource(_load, {}, "shipped:smoke_classify")


def _identity(cfg, cache_dir):
    return {**MODEL_SOURCES.get("random").identify(cfg, cache_dir), "source": "tiny_seeded"}


def _weights(cfg, dtype, device, cache_dir):
    weights = MODEL_SOURCES.get("random").load_weights(cfg, dtype, device, cache_dir)
    return replace(weights, origin="plugin:" + weights.origin)


TINY_SEEDED = WeightSource(_identity, _weights)


def min_items_per_cell(run, thresholds):
    least = min((r.n for info in run.summary.tasks.values() for r in info.results.values()), default=0)
    ok = least >= thresholds["min_items"]
    return Verdict("", SUPPORTED if ok else INCONCLUSIVE, f"least items in a cell: {least}", "every cell ran enough items")
'''


CLAIMS = """\
defaults: [seed_articles, _self_]
P1:
  check: min_items_per_cell
  who: the plugin's author
  source: tests/test_plugins.py
  quote: every cell runs enough items
  hypothesis: every cell ran at least 4 items
  thresholds: {min_items: 4}
"""


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("plugin")
    src = tmp / "src"
    src.mkdir()
    (src / "pyproject.toml").write_text(PYPROJECT)
    (src / "harness_plugin_example.py").write_text(textwrap.dedent(MODULE))
    site = tmp / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "-q"]
        + ["--target", str(site), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (site / "harness_plugin_example-0.1.0.dist-info" / "entry_points.txt").is_file()
    # a claims YAML of the user's: the shipped claims and one decided by the plugin's check
    (tmp / "configs" / "claims").mkdir(parents=True)
    (tmp / "configs" / "claims" / "plugged.yaml").write_text(CLAIMS)
    return site


def _harness(cwd: Path, site: Path | None, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HARNESS_CACHE": str(cwd / "cache")}
    if site is not None:  # the plugin's install folder, seen as an installed package is (its entry points included)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "harness", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=600
    )


def test_an_installed_plugin_adds_an_engine_a_task_source_a_model_source_and_a_claim_check(
    plugin_site: Path, tmp_path: Path
) -> None:
    proc = _harness(
        tmp_path,
        plugin_site,
        "pair=tiny",
        "task.name=plugged",
        "task.tasks=[shipped:smoke_classify]",
        "runtime.engine=hf_counted",
        "pair.small.source=tiny_seeded",
        "runtime.max_samples=4",
        "runtime.progress=false",
        "print_report=false",
        "claims=plugged",
        f"hydra.searchpath=[{plugin_site.parent.joinpath('configs').as_uri()}]",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "run"
    cells = json.loads((run / "cells.json").read_text())
    tasks = {c["task"] for c in cells["cells"]}
    assert tasks == {"shipped-smoke_classify"}
    models = json.loads((run / "summary.json").read_text())["models"]
    assert {m["engine"] for m in models.values()} == {"hf_counted"}
    small = next(m for m in models.values() if m["role"] == "small")  # loaded by the plugin's model source
    assert small["source"] == "tiny_seeded" and small["origin"].startswith("plugin:random:")
    for cell in cells["cells"]:  # every item was scored by the plugin's engine
        records = [json.loads(line) for line in (Path(cell["path"]) / "records.jsonl").read_text().splitlines()]
        assert len(records) == 4 and all(r["details"]["plugin_call"] >= 1 for r in records)
    verdicts = {v["id"]: v for v in json.loads((run / "claims.json").read_text())["verdicts"]}
    assert verdicts["P1"]["verdict"] == "supported" and verdicts["P1"]["key_number"] == "least items in a cell: 4"


def test_without_the_plugin_its_names_are_unknown_in_one_line(tmp_path: Path) -> None:
    proc = _harness(tmp_path, None, "pair=tiny", "task=smoke", "runtime.engine=hf_counted")
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and "unknown engine 'hf_counted'" in line
    assert "small_vs_large.engines" in line and "-- fix:" in line


def test_an_unknown_model_source_is_named_in_one_line(tmp_path: Path) -> None:
    proc = _harness(tmp_path, None, "pair=tiny", "task=smoke", "pair.small.source=tiny_seeded")
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and "unknown model source 'tiny_seeded'" in line
    assert "small_vs_large.model_sources" in line and "-- fix:" in line


def test_a_claim_added_on_the_command_line_is_sent_to_a_claims_yaml(tmp_path: Path) -> None:
    proc = _harness(tmp_path, None, "pair=tiny", "task=smoke", "+claims.P1.check=min_items_per_cell")
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and "claim 'P1' cannot be built from the command line" in line
    assert "claims=<name>" in line
