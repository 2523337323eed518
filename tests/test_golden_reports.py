"""The reports rebuilt from stored cells are byte-identical to the golden ones (tests/golden/).

A refactor must not change one byte of the markdown, HTML, plots, JSON files or terminal tables
of the default run and of a three-model run. If a report is meant to change, regenerate the
fixtures with ``python tests/golden/make_golden.py`` and review the diff.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from golden_check import render_all

GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize("name", ["default", "three"])
def test_report_is_byte_identical_to_golden(name: str, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(GOLDEN / name / "input", run)
    for path in run.rglob("*.json"):
        path.write_text(path.read_text().replace("@RUN@", str(run)))
    expected = json.loads((GOLDEN / name / "expected.json").read_text())
    got = render_all(run)
    assert sorted(got) == sorted(expected)
    for file, text in expected.items():
        assert got[file] == text, f"{name}/{file} differs from the golden report"
