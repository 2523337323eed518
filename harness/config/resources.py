"""Where the shipped Hydra configs and task files are: ``config_dir()``, ``tasks_dir()``.

Why this module exists: the source tree keeps ``configs/`` and ``tasks/`` as
top-level folders next to ``harness/`` (the layout users edit and the README
documents), but an installed wheel has no project root, only
``site-packages/harness/``. ``pyproject.toml`` therefore maps the two folders
into the wheel as package data, ``harness/_configs/`` and ``harness/_tasks/``
(``harness.tasks`` is already a module, hence the underscore names). Code that
needs either folder asks here instead of computing ``PROJECT_ROOT / "configs"``,
which only exists in a checkout:

- in a source checkout or an editable install (``pip install -e .``), the
  top-level folders themselves, so an edit to ``configs/`` takes effect at once
  and there is exactly one copy to keep up to date;
- in a regular install (``pip install .``, a wheel), the packaged copies.

A checkout is recognised by ``pyproject.toml`` and the folder next to the
``harness`` package, never by the current directory, so a run started from
anywhere finds the same files. The packaged copies must be real files: Hydra
reads a config directory from the file system, so a zip import (zipapp, egg)
is refused with an explanation rather than silently half-working.

Only the standard library is imported: this is a leaf module that the config
and CLI modules can import at start-up without side effects.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["config_dir", "tasks_dir"]

_PACKAGE_DIR = Path(__file__).resolve().parents[1]  # .../harness
_SOURCE_ROOT = _PACKAGE_DIR.parent  # the checkout's root in a source tree; site-packages when installed

# top-level folder in the source tree -> its name inside the installed package (pyproject [tool.setuptools.package-dir])
_PACKAGED_NAMES = {"configs": "_configs", "tasks": "_tasks"}


def _shipped(folder: str) -> Path:
    """The shipped ``folder`` ("configs" or "tasks"): the checkout's own, else the wheel's copy."""
    in_checkout = _SOURCE_ROOT / folder
    if in_checkout.is_dir() and (_SOURCE_ROOT / "pyproject.toml").is_file():
        return in_checkout
    packaged = resources.files("harness").joinpath(_PACKAGED_NAMES[folder])
    if not isinstance(packaged, Path):
        raise RuntimeError(
            f"harness is imported from a non-file-system location ({packaged!r}); the shipped {folder}/ "
            "must be a real directory for Hydra -- install the package normally (pip install .)"
        )
    if not packaged.is_dir():
        raise RuntimeError(
            f"the shipped {folder}/ is missing: neither {in_checkout} (source checkout) nor {packaged} "
            "(installed package) exists -- reinstall the package (pip install .)"
        )
    return packaged


def config_dir() -> Path:
    """The shipped Hydra config directory (``config.yaml``, ``model/``, ``pair/``, ``task/``, ...).

    Source checkout / editable install: the top-level ``configs/``; installed wheel:
    ``harness/_configs/``. Users add their own configs with Hydra's
    ``hydra.searchpath=[file:///their/dir]`` rather than editing this folder.
    """
    return _shipped("configs")


def tasks_dir() -> Path:
    """The shipped task folder (task YAMLs and their ``data/``).

    Source checkout / editable install: the top-level ``tasks/``; installed wheel:
    ``harness/_tasks/``.
    """
    return _shipped("tasks")
