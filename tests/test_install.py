"""A regular (non-editable) install works on its own: ``pip install .``, then ``harness ...`` from anywhere.

The wheel is built offline from a copy of the source tree (``--no-build-isolation``
uses this venv's setuptools; building from a copy keeps ``build/`` and the
egg-info out of the checkout) and installed with ``--no-deps`` into a fresh
virtual environment. That venv reaches the already-installed dependencies
(torch, transformers, hydra, ...) through a ``.pth`` line naming this venv's
site-packages: a plain path line, so the ``.pth`` files *there* (among them the
editable install's import hook for the source tree) are not run and the source
tree's ``harness`` cannot be imported by accident. Everything runs from a
temporary working directory, never the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT

# files `harness pair=tiny task=smoke` needs: each must be in the wheel and found through harness.config.resources
REQUIRED_CONFIGS = ["config.yaml", "pair/tiny.yaml", "model/tiny_olmoe.yaml"]
REQUIRED_TASKS = ["smoke/smoke_classify.yaml"]
_NOT_SOURCE = {".git", ".venv", "results", "build", "dist", ".pytest_cache"}  # at the top of the checkout only


def _source_only(directory: str, names: list[str]) -> set[str]:
    top = Path(directory) == PROJECT_ROOT
    return {n for n in names if n == "__pycache__" or n.endswith((".pyc", ".egg-info")) or (top and n in _NOT_SOURCE)}


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: no PYTHONPATH into the checkout, offline hub, private cache."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")}
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONNOUSERSITE="1",
    )
    env.update(extra)
    return env


def _run(cmd: list[str], cwd: Path, timeout: int, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, env=_clean_env(**env), timeout=timeout
    )


def _check(proc: subprocess.CompletedProcess, what: str) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, (
        f"{what} failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    )
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(PROJECT_ROOT, src, ignore=_source_only)
    out = tmp / "dist"
    _check(
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--no-build-isolation",
                "--no-index",
                "-q",
                "-w",
                out,
                src,
            ],
            tmp,
            timeout=180,
        ),
        "building the wheel",
    )
    wheels = list(out.glob("small_vs_large-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A fresh venv with the wheel installed; returns its python, bin dir, site-packages and a neutral cwd."""
    tmp = tmp_path_factory.mktemp("install")
    venv = tmp / "venv"
    _check(_run([sys.executable, "-m", "venv", "--without-pip", venv], tmp, timeout=120), "creating the venv")
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / ("python.exe" if os.name == "nt" else "python")
    site = Path(
        _check(
            _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp, timeout=60),
            "locating site-packages",
        ).stdout.strip()
    )
    # the dependencies already installed here, without the editable hook of the checkout (see the module docstring)
    (site / "zz_outer_site_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # pip from the outer site-packages, running in the new venv, installs into the new venv;
    # --ignore-installed: never look at (let alone uninstall) the editable small-vs-large it can also see
    _check(
        _run(
            [python, "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", "-q", wheel],
            tmp,
            timeout=180,
        ),
        "installing the wheel",
    )
    cwd = tmp / "elsewhere"
    cwd.mkdir()
    return {"python": python, "bin": bindir, "site": site, "cwd": cwd, "tmp": tmp}


def test_source_checkout_uses_top_level_folders() -> None:
    from harness.config.resources import config_dir, tasks_dir

    assert config_dir() == PROJECT_ROOT / "configs"
    assert tasks_dir() == PROJECT_ROOT / "tasks"


def test_wheel_has_every_module_and_shipped_file(wheel: Path) -> None:
    """Nothing of harness/, configs/ or tasks/ is left out (a new sub-package must be listed in pyproject.toml)."""
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = [
        p.relative_to(PROJECT_ROOT).as_posix()
        for p in (PROJECT_ROOT / "harness").rglob("*.py")
        if "__pycache__" not in p.parts
    ]
    for folder, packaged in (("configs", "harness/_configs"), ("tasks", "harness/_tasks")):
        root = PROJECT_ROOT / folder
        expected += [
            f"{packaged}/{p.relative_to(root).as_posix()}"
            for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and not p.name.startswith(".")
        ]
    missing = sorted(set(expected) - names)
    assert not missing, f"not in the wheel (pyproject.toml [tool.setuptools] packages / package-data): {missing}"
    assert any(n.startswith("harness/assets/tokenizers/smollm2/") for n in names)
    assert not any(n.startswith(("configs/", "tasks/", "tests/")) for n in names), (
        "no top-level data folders in site-packages"
    )


def test_installed_copy_is_what_runs(installed: dict[str, Path]) -> None:
    probe = (
        "import harness, harness.config.resources as r; "
        "print(harness.__file__); print(r.config_dir()); print(r.tasks_dir())"
    )
    out = _check(
        _run([installed["python"], "-c", probe], installed["cwd"], timeout=60), "importing harness"
    ).stdout.split("\n")
    module, configs, tasks = (Path(line) for line in out[:3])
    site = installed["site"].resolve()
    assert module.resolve().is_relative_to(site), f"imported {module}, not the installed copy in {site}"
    assert configs == site / "harness" / "_configs" and tasks == site / "harness" / "_tasks"
    for name in REQUIRED_CONFIGS:
        assert (configs / name).is_file(), name
    for name in REQUIRED_TASKS:
        assert (tasks / name).is_file(), name
    assert list((tasks / "seed" / "data").glob("*.jsonl")), "tasks/seed/data/*.jsonl"
    assert not PROJECT_ROOT.resolve().is_relative_to(site)


def test_user_config_dir_via_hydra_searchpath(installed: dict[str, Path]) -> None:
    """Your own configs live in your own folder; Hydra's searchpath adds it to the shipped ones."""
    mine = installed["tmp"] / "my_configs"
    (mine / "model").mkdir(parents=True)
    shipped = installed["site"] / "harness" / "_configs" / "model" / "tiny_olmoe.yaml"
    (mine / "model" / "my_model.yaml").write_text(shipped.read_text().replace("name: tiny_olmoe", "name: my_model"))
    proc = _check(
        _run(
            [
                installed["python"],
                "-m",
                "harness",
                "pair=tiny",
                "model@pair.small=my_model",
                f"hydra.searchpath=[{mine.as_uri()}]",
                "--cfg",
                "job",
            ],
            installed["cwd"],
            timeout=120,
        ),
        "composing with a user config dir",
    )
    assert "name: my_model" in proc.stdout, proc.stdout[-3000:]
    assert "name: tiny_llama" in proc.stdout  # the pair's large model is still the shipped one


def test_models_list_finds_a_user_config_from_an_installed_wheel(installed: dict[str, Path]) -> None:
    """``models=[my_tiny,...]`` (the README's served examples) finds a model config in the user's own folder, from
    any directory, with only the installed package; an unknown name says where it looked."""
    tmp = installed["tmp"]
    mine = tmp / "my_list_configs"
    (mine / "model").mkdir(parents=True)
    shipped = installed["site"] / "harness" / "_configs" / "model" / "tiny_llama.yaml"
    (mine / "model" / "my_tiny.yaml").write_text(shipped.read_text().replace("name: tiny_llama", "name: my_tiny"))
    common = [
        f"hydra.searchpath=[{mine.as_uri()}]",
        "task=smoke",
        "task.tasks=[smoke_classify]",
        "runtime.max_samples=2",
        "runtime.progress=false",
        "print_report=false",
    ]
    out = tmp / "out_models_list"
    proc = _run(
        [installed["bin"] / "harness", "models=[my_tiny,tiny_olmoe]", *common, f"hydra.run.dir={out}"],
        installed["cwd"],
        timeout=420,
        HARNESS_CACHE=str(tmp / "cache"),
    )
    _check(proc, "harness models=[my_tiny,tiny_olmoe] with a user config dir (installed)")
    assert json.loads((out / "plan.json").read_text())["models"] == ["my_tiny", "tiny_olmoe"]
    bad = _run(
        [installed["bin"] / "harness", "models=[my_tny,tiny_olmoe]", *common, f"hydra.run.dir={tmp / 'out_bad'}"],
        installed["cwd"],
        timeout=120,
        HARNESS_CACHE=str(tmp / "cache"),
    )
    lines = [ln for ln in bad.stderr.splitlines() if ln.strip()]
    assert bad.returncode == 2 and len(lines) == 1, bad.stderr[-2000:]
    assert "unknown model 'my_tny'" in lines[0] and f"{mine.as_uri()}/model" in lines[0], lines[0]


def test_cli_runs_from_installed_copy(installed: dict[str, Path]) -> None:
    """The goal itself: `harness pair=tiny task=smoke` with only the installed package (its console script)."""
    tmp = installed["tmp"]
    out = tmp / "out"
    proc = _run(
        [
            installed["bin"] / "harness",
            "pair=tiny",
            "task=smoke",
            "runtime.max_samples=2",
            "runtime.progress=false",
            f"hydra.run.dir={out}",
        ],
        installed["cwd"],
        timeout=420,
        HARNESS_CACHE=str(tmp / "cache"),
    )
    _check(proc, "harness pair=tiny task=smoke (installed)")
    assert (out / "report.md").is_file()
