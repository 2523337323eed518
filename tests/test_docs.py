"""The documentation stays true: every relative link resolves, every `harness` flag and every
runtime/paths/hardware setting it names exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from harness.cli import build_parser
from harness.config.schema import compose

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
HYDRA_FLAGS = {"-m", "--multirun", "--cfg", "--hydra-help", "--info", "--resolve", "--package", "--config-dir",
               "--config-name", "--config-path", "-h", "--help"}  # fmt: skip
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CODE = re.compile(r"```.*?```|`[^`\n]+`", re.S)
SETTING = re.compile(r"(?<![\w/.])((?:runtime|paths|hardware)(?:\.[a-z_0-9]+)+)")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    return {_slug(m) for m in re.findall(r"^#+ (.+)$", CODE.sub("", page.read_text()), re.M)}


def test_the_readme_points_to_the_docs_and_is_short() -> None:
    words = len(CODE.sub("", (ROOT / "README.md").read_text()).split())  # prose, without the printed output
    assert words <= 1100, f"README prose is {words} words: move detail to docs/"
    assert all(f"docs/{p.name}" in (ROOT / "README.md").read_text() for p in PAGES[1:]), (
        "a docs page the README does not link"
    )


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in LINK.findall(CODE.sub("", page.read_text())):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.name}")
    assert not broken, f"{page.name}: " + "; ".join(broken)


def _known_flags() -> set[str]:
    parser = build_parser()
    flags = set(HYDRA_FLAGS)
    for action in parser._actions:
        flags |= set(action.option_strings)
        for sub in getattr(action, "choices", None) or {}:
            flags |= {f for a in action.choices[sub]._actions for f in a.option_strings}
    return flags


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_harness_flag_named_exists(page: Path) -> None:
    known = _known_flags()
    unknown = []
    for code in CODE.findall(page.read_text()):
        for line in code.strip("`").splitlines():
            command = re.match(r"\s*(?:\$ )?(?:\S*/)?(?:python -m )?harness (.*)", line)  # a line that runs harness
            if command:
                unknown += [
                    f
                    for f in re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", command.group(1).split(" #")[0])
                    if f not in known
                ]
    assert not unknown, f"{page.name} names flags harness does not have: {sorted(set(unknown))}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_setting_named_exists(page: Path) -> None:
    cfg = compose([])
    missing = sorted(
        {s for s in SETTING.findall(page.read_text()) if OmegaConf.select(cfg, s, default="<absent>") == "<absent>"}
    )
    assert not missing, f"{page.name} names settings the configuration does not have: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_source_file_named_exists(page: Path) -> None:
    """Code paths the docs point to (examples of files a user creates, under configs/ and tasks/, are not checked)."""
    named = set(re.findall(r"(?<![\w/])((?:harness|bench|tests)/[\w/.-]+\.py)", page.read_text()))
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert not missing, f"{page.name} names files that do not exist: {missing}"
