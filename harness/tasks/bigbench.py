"""Source ``bigbench:<path>``: any BIG-bench JSON task, read from the BIG-bench 1.0.0 sdist.

The sdist on PyPI (358 MB) holds every task as
``bigbench-1.0.0/bigbench/benchmark_tasks/<path>/task.json``. It is fetched once
as a file from the package index (never installed: that is 1.9 GB and
TensorFlow; never built: see ``sdist``), checked against its pinned sha256 and kept in
``<cache>/bigbench/``; only the task.json (and README.md) of the tasks asked for
are extracted, in one streaming pass, to ``<cache>/bigbench/tasks/<path>/``.
The licences of several of these data sets forbid redistribution: they live in
the user's cache, never in the repository. An sdist placed in
``<cache>/bigbench/`` by hand is used as it is (machines without PyPI).

A task is turned into prompts the way BIG-bench's ``json_task.py`` does it,
zero-shot: ``task_prefix + example_input_prefix + input [+ choices] +
example_output_prefix`` (defaults ``"\\nQ: "``, ``"\\nA: "``, choices appended
as ``choice_prefix`` lines in BIG-bench's seeded order unless
``append_choices_to_input`` is false). Examples with ``target_scores`` become
classification over that example's own choices (the gold answer is the first
choice with the highest score, as BIG-bench picks it); examples with ``target``
become generation scored with ROUGE against every target. Two settings are the
harness's own, for CPU budgets, and are recorded in plan.json: an example's
input is cut to ``max_input_chars`` (4000) characters, and generation stops at
a newline (or the task's ``stop_string``) or after ``max_new_tokens`` (64).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import sys
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

from harness.errors import TaskFileError
from harness.tasks.sources import SourceRef
from harness.tasks.types import Sample, Task, TaskSpec, TaskType

REQUIREMENT = "bigbench==1.0.0"
SDIST = "bigbench-1.0.0.tar.gz"
SDIST_SHA256 = "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2"  # PyPI, bigbench 1.0.0
MEMBER_ROOT = "bigbench-1.0.0/bigbench/benchmark_tasks/"
README_MAX_BYTES = 64 * 1024
SEED = 42  # json_task.py's default random_seed: fixes the order choices are listed in
MAX_INPUT_CHARS = 4000
MAX_NEW_TOKENS = 64
_PATH = re.compile(r"^[A-Za-z0-9_\-]+(/[A-Za-z0-9_\-]+)*$")


def root(cache: Path) -> Path:
    return cache / "bigbench"


def task_file(cache: Path, path: str) -> Path:
    return root(cache) / "tasks" / path / "task.json"


def _index_file(cache: Path) -> Path:
    return root(cache) / "index.json"  # every task directory in the sdist: "json" or "py"


def _check_path(path: str) -> None:
    if not _PATH.match(path):
        raise TaskFileError(
            f"bigbench:{path} is not a BIG-bench task path",
            "use the task's directory under benchmark_tasks/, e.g. bigbench:gem/xsum or bigbench:multiemo/all_text_fr",
        )


def index_url() -> str:
    """The package index (PEP 503/691 simple API) the sdist is fetched from: pip's own setting, else PyPI."""
    return (os.environ.get("HARNESS_INDEX_URL") or os.environ.get("PIP_INDEX_URL") or "https://pypi.org/simple").rstrip(
        "/"
    )


def _sdist_url(index: str) -> str:
    """The sdist's URL from the index's project page (JSON when the index speaks PEP 691, else the HTML links)."""
    import urllib.parse
    import urllib.request

    page = f"{index}/bigbench/"
    req = urllib.request.Request(page, headers={"Accept": "application/vnd.pypi.simple.v1+json, text/html;q=0.5"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        kind = resp.headers.get("Content-Type", "")
        body = resp.read().decode("utf-8", errors="replace")
    if "json" in kind:
        hits = [f["url"] for f in json.loads(body).get("files", []) if f.get("filename") == SDIST]
    else:
        hits = [h for h in re.findall(r'href="([^"]+)"', body) if h.split("#")[0].rsplit("/", 1)[-1] == SDIST]
    if not hits:
        raise TaskFileError(
            f"the package index {index} lists no {SDIST}",
            f"set PIP_INDEX_URL to an index that has it, or put {SDIST} in the cache",
        )
    return urllib.parse.urljoin(page, hits[0].split("#")[0])


def _download(url: str, dest: Path) -> str:
    """Stream ``url`` into ``dest``; returns its sha256."""
    import urllib.request

    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=120) as resp, open(dest, "wb") as out:
        while chunk := resp.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def sdist(cache: Path) -> Path:
    """The BIG-bench sdist in the cache, downloaded (and verified) the first time.

    The archive is fetched as a file from the package index's simple API, not
    with ``pip download``: pip prepares an sdist's metadata before it keeps it,
    and bigbench 1.0.0 declares a direct-URL dependency that pip 24+ refuses
    ("Distributions from PyPI cannot declare direct URL dependencies"), so pip
    can no longer download it at all. Nothing of the package is built or run.
    """
    target = root(cache) / SDIST
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    index = index_url()
    print(
        f"fetching BIG-bench 1.0.0 ({SDIST}, 358 MB, once) from {index} into {target.parent}",
        file=sys.stderr,
        flush=True,
    )
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        got = Path(tmp) / SDIST
        try:
            digest = _download(_sdist_url(index), got)
        except OSError as exc:  # URLError, HTTPError, timeouts: all OSError
            raise TaskFileError(
                f"downloading {SDIST} from {index} failed: {exc}",
                f"check the access to the package index, or put {SDIST} in {target.parent}",
            ) from exc
        if digest != SDIST_SHA256:
            raise TaskFileError(
                f"checksum mismatch for {SDIST}: expected sha256 {SDIST_SHA256}, got {digest}",
                "the package index served another file; nothing was kept",
            )
        os.replace(got, target)
    return target


def _write(path: Path, data: bytes) -> None:
    """Atomic, and safe when two runs extract the same task at once (each writes its own temp file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def fetch(paths: list[str], cache: Path) -> None:
    """Extract the task.json of every path not yet in the cache, in one pass over the sdist.

    The pass also writes the list of every task in the sdist, for the error
    that names close matches when a path does not exist.
    """
    for path in paths:
        _check_path(path)
    wanted = {p for p in paths if not task_file(cache, p).is_file()}
    known = _known_tasks(cache)
    if known:  # the sdist was listed before: a path it does not have fails at once, without another pass
        wanted &= set(known)
    if not wanted:
        return
    archive = sdist(cache)
    index: dict[str, str] = {}
    try:
        with tarfile.open(archive, mode="r|gz") as tar:  # streaming: one sequential read of 358 MB
            for member in tar:
                if not member.isfile() or not member.name.startswith(MEMBER_ROOT):
                    continue
                rel = member.name[len(MEMBER_ROOT) :]
                directory, _, filename = rel.rpartition("/")
                if filename == "task.json" and directory:
                    index[directory] = "json"
                elif filename == "task.py" and directory:
                    index.setdefault(directory, "py")
                if directory in wanted and (
                    filename == "task.json" or (filename == "README.md" and member.size <= README_MAX_BYTES)
                ):
                    src = tar.extractfile(member)
                    if src is not None:  # the bytes only: no path from the archive is used to write
                        _write(root(cache) / "tasks" / directory / filename, src.read())
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise TaskFileError(
            f"{archive} is not a readable BIG-bench sdist ({exc})", "delete it and run again to download it anew"
        ) from exc
    _write(_index_file(cache), json.dumps(index, indent=0, sort_keys=True).encode())


def _known_tasks(cache: Path) -> dict[str, str]:
    try:
        return json.loads(_index_file(cache).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _missing_task_error(path: str, cache: Path) -> TaskFileError:
    known = _known_tasks(cache)
    if known.get(path) == "py":
        return TaskFileError(
            f"BIG-bench task {path} is a programmatic task (task.py), not a JSON task",
            "only JSON tasks (task.json) can run; pick another task",
        )
    subtasks = sorted(p for p, kind in known.items() if p.startswith(path + "/") and kind == "json")
    if subtasks:
        return TaskFileError(
            f"BIG-bench task {path} is a group of subtasks",
            "name one: " + ", ".join(f"bigbench:{p}" for p in subtasks[:12]) + (" ..." if len(subtasks) > 12 else ""),
        )
    close = difflib.get_close_matches(path, [p for p, kind in known.items() if kind == "json"], n=5, cutoff=0.6)
    hint = (
        "close matches: " + ", ".join(f"bigbench:{p}" for p in close)
        if close
        else "see the task directories under benchmark_tasks/ in BIG-bench 1.0.0"
    )
    return TaskFileError(f"unknown BIG-bench task {path!r} (not in {SDIST})", hint)


def _example_lines(text: str, examples: list[Any]) -> Optional[list[int]]:
    """The line each example starts on, when the ``examples`` array can be found again in the text."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r'"examples"\s*:\s*\[', text):
        pos, lines = match.end(), []
        line, counted = text.count("\n", 0, pos) + 1, pos
        for example in examples:
            while pos < len(text) and text[pos] in " \t\r\n,":
                pos += 1
            try:
                value, end = decoder.raw_decode(text, pos)
            except ValueError:
                break
            if value != example:
                break
            line += text.count("\n", counted, pos)
            counted = pos
            lines.append(line)
            pos = end
        else:
            return lines
    return None


def _cut(text: str, limit: int) -> str:
    """At most ``limit`` characters, cut at a space where there is one near the end."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    space = head.rfind(" ", int(limit * 0.8))
    return (head[:space] if space > 0 else head) + " ..."


@lru_cache(maxsize=1024)
def _choice_order(choices: tuple[str, ...]) -> list[str]:
    """The order BIG-bench lists choices in the input: a permutation of the sorted choices, seed 42 per example."""
    import numpy as np

    return [str(c) for c in np.random.RandomState(seed=SEED).permutation(sorted(choices))]


def _read(file: Path, path: str, cache: Path) -> tuple[dict[str, Any], list[Any], list[int]]:
    """The task.json's object, its checked examples, and each example's line in the file."""
    if not file.is_file():
        raise _missing_task_error(path, cache)
    try:
        text = file.read_text(encoding="utf-8")
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TaskFileError(
            f"{file}:{exc.lineno}: not valid JSON ({exc.msg}, column {exc.colno})",
            "fix the file, or delete it to extract it again",
        ) from exc
    except UnicodeDecodeError as exc:
        raise TaskFileError(
            f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})",
            "fix the file, or delete it to extract it again",
        ) from exc
    if not isinstance(data, dict):
        raise TaskFileError(f"{file}:1: a BIG-bench task.json must be a JSON object", "fix the file")
    examples = data.get("examples")
    if examples is None:
        if any(p.startswith(path + "/") for p in _known_tasks(cache)):
            raise _missing_task_error(path, cache)  # a parent task: names its subtasks
        raise TaskFileError(
            f"{file}: no examples", "a BIG-bench JSON task needs examples: [{input, target | target_scores}]"
        )
    if not isinstance(examples, list) or not examples:
        raise TaskFileError(f"{file}: examples must be a non-empty list", "fix the file")
    return data, examples, _example_lines(text, examples) or []


def _kind(data: dict[str, Any], examples: list[Any], where: Callable[[int], str]) -> TaskType:
    """Multiple choice (target_scores) or generation (target), after checking every example has an input and an answer."""
    for i, ex in enumerate(examples):
        if not isinstance(ex, dict) or not isinstance(ex.get("input"), str):
            raise TaskFileError(
                f"{where(i)}: needs an 'input' string",
                'each example is {"input": ..., "target": ... or "target_scores": {...}}',
            )
        if "target" not in ex and "target_scores" not in ex:
            raise TaskFileError(f"{where(i)}: has neither 'target' nor 'target_scores'", "add one of them")
    metrics = data.get("metrics") or []
    all_scores = all("target_scores" in ex for ex in examples)
    all_targets = all("target" in ex for ex in examples)
    if all_scores and ("multiple_choice_grade" in metrics or not all_targets):
        return TaskType.classification
    if all_targets:
        return TaskType.summarization
    first = next(i for i, ex in enumerate(examples) if "target" not in ex)
    raise TaskFileError(
        f"{where(first)}: has no 'target' while other examples have no 'target_scores'",
        "give every example the same kind of answer",
    )


def _choice_sample(
    i: int,
    ex: dict[str, Any],
    fields: dict[str, Any],
    line: int,
    prompt_in: str,
    output_prefix: str,
    choice_prefix: Optional[str],
    where: Callable[[int], str],
) -> Sample:
    """A multiple-choice example: its choices (listed in the prompt unless ``choice_prefix`` is None), the best one gold."""
    scores = ex["target_scores"]
    if (
        not isinstance(scores, dict)
        or not scores
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in scores.values())
    ):
        raise TaskFileError(f"{where(i)}: target_scores must map each choice to a number", "fix that example")
    best = max(scores.values())
    if (len(scores) == 1 and best == 0) or (len(scores) > 1 and best <= min(scores.values())):
        raise TaskFileError(
            f"{where(i)}: no choice scores higher than the others", "give the correct choice the highest score"
        )
    choices = [str(c) for c in scores]
    listed = choice_prefix + choice_prefix.join(_choice_order(tuple(choices))) if choice_prefix is not None else ""
    gold = next(c for c, v in scores.items() if v == best)
    return Sample(
        id=str(i + 1),
        fields=fields,
        target=str(gold),
        line=line,
        prompt=prompt_in + listed + output_prefix,
        choices=choices,
    )


def _generation_sample(
    i: int, ex: dict[str, Any], fields: dict[str, Any], line: int, prompt: str, where: Callable[[int], str]
) -> Sample:
    """A generative example: its reference(s)."""
    target = ex["target"]
    refs = [target] if isinstance(target, str) else target
    if not isinstance(refs, list) or not refs or not all(isinstance(r, str) for r in refs):
        raise TaskFileError(f"{where(i)}: target must be a string or a list of strings", "fix that example")
    return Sample(id=str(i + 1), fields=fields, target=[r for r in refs if r.strip()] or refs, line=line, prompt=prompt)


@dataclass(frozen=True)
class _Format:
    """How an example becomes a prompt, as BIG-bench's json_task.py renders it, and the harness's own limits."""

    task_prefix: str
    input_prefix: str
    output_prefix: str
    choice_prefix: Optional[str]  # None: the choices are not listed in the prompt
    max_chars: int
    max_new: int
    stops: list[str]


def _format(data: dict[str, Any], ref: SourceRef) -> _Format:
    """The task's prompt format, and the input cut and stopping rule this run uses."""
    max_chars = ref.options.get("max_input_chars", MAX_INPUT_CHARS)
    max_new = ref.options.get("max_new_tokens", MAX_NEW_TOKENS)
    choice_prefix = str(data.get("choice_prefix", "\n  choice: "))
    append_choices = bool(data.get("append_choices_to_input", True))
    stop_string = data.get("stop_string")
    return _Format(
        task_prefix=str(data.get("task_prefix", "")),
        input_prefix=str(data.get("example_input_prefix", "\nQ: ")),
        output_prefix=str(data.get("example_output_prefix", "\nA: ")),
        choice_prefix=choice_prefix if append_choices else None,
        max_chars=max_chars,
        max_new=max_new,
        stops=["\n"] + ([stop_string] if stop_string and stop_string != "\n" else []),
    )


def _samples(
    examples: list[Any], lines: list[int], kind: TaskType, fmt: _Format, where: Callable[[int], str]
) -> list[Sample]:
    """Every distinct example as a sample, its input cut to the limit and its prompt rendered."""
    samples, seen = [], set()
    for i, ex in enumerate(examples):
        key = json.dumps(ex, sort_keys=True)
        if key in seen:  # BIG-bench drops exact duplicates
            continue
        seen.add(key)
        text_in = _cut(ex["input"], fmt.max_chars)
        fields = {"input": text_in, "input_chars": len(ex["input"]), "truncated": len(text_in) != len(ex["input"])}
        line = lines[i] if i < len(lines) else i + 1
        prompt_in = fmt.task_prefix + fmt.input_prefix + text_in
        if kind is TaskType.classification:
            sample = _choice_sample(i, ex, fields, line, prompt_in, fmt.output_prefix, fmt.choice_prefix, where)
        else:
            sample = _generation_sample(i, ex, fields, line, prompt_in + fmt.output_prefix, where)
        samples.append(sample)
    return samples


def _task(
    ref: SourceRef, file: Path, data: dict[str, Any], kind: TaskType, fmt: _Format, samples: list[Sample]
) -> Task:
    """The harness task over the samples, with the harness's own settings recorded as its source."""
    spec = TaskSpec(
        name=ref.task_name,
        type=kind,
        data=str(file),
        prompt="{input}",  # each sample carries its rendered prompt
        description=str(data.get("description", "")),
        split_field=None,
        target_delimiter="",  # BIG-bench scores the answer right after the output prefix
        metadata_fields=["input_chars", "truncated"],
        max_new_tokens=fmt.max_new,
        stop=fmt.stops,
        reference_fields=["target"],
    )
    source = {
        "source": "bigbench",
        "path": ref.ref,
        "package": REQUIREMENT,
        "max_input_chars": fmt.max_chars,
        "truncated_items": sum(s.fields["truncated"] for s in samples),
        **({"max_new_tokens": fmt.max_new, "stop": fmt.stops} if kind is TaskType.summarization else {}),
        "prompt_format": "zero-shot, BIG-bench json_task format",
    }
    return Task(spec=spec, path=file, data_path=file, samples=samples, fewshot=[], source=source)


def load(ref: SourceRef, cache: Path, include: Sequence[Path] = ()) -> Task:
    """Parse and check a BIG-bench task.json (fetched into the cache if needed) as a harness task."""
    path = ref.ref
    fetch([path], cache)
    file = task_file(cache, path)
    data, examples, lines = _read(file, path, cache)

    def where(i: int) -> str:
        return f"{file}:{lines[i]}: example {i + 1}" if i < len(lines) else f"{file}: example {i + 1}"

    kind = _kind(data, examples, where)
    fmt = _format(data, ref)
    return _task(ref, file, data, kind, fmt, _samples(examples, lines, kind, fmt, where))
