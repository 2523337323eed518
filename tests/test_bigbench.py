"""BIG-bench tasks by path, from a small fake sdist placed in the cache (no network)."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest
from conftest import run_records

from harness.errors import TaskFileError
from harness.tasks import bigbench
from harness.tasks.resolve import resolve_task, resolve_tasks
from harness.tasks.sources import parse
from harness.tasks.types import TaskType

TASKS_DIR = Path(__file__).resolve().parent.parent / "tasks"

MC = {
    "name": "toy_mc",
    "description": "Pick the letter",
    "metrics": ["multiple_choice_grade"],
    "examples": [
        {"input": "First letter?", "target_scores": {"a": 1, "b": 0, "c": 0, "d": 0}},
        {"input": "Last letter?", "target_scores": {"d": 1, "c": 0, "b": 0, "a": 0}},
        {
            "input": "First letter?",
            "target_scores": {"a": 1, "b": 0, "c": 0, "d": 0},
        },  # a duplicate: dropped, as BIG-bench does
        {"input": "Is it true?", "target_scores": {"yes": 1, "no": 0}},
    ],
}
GEN = {
    "name": "toy_gen",
    "description": "Summarize",
    "metrics": ["rouge"],
    "task_prefix": "Summarize the text.\n",
    "example_input_prefix": "\ntext: ",
    "example_output_prefix": "\nsummary: ",
    "stop_string": ".",
    "examples": [
        {"input": "The council approved the new bridge on Tuesday.", "target": "Bridge approved."},
        {"input": "word " * 100, "target": ["Many words.", "Words."]},
    ],
}
NO_CHOICE_LIST = {  # a real task format: choices not appended, custom prefixes (like fact_checker/fever)
    "name": "toy_fever",
    "metrics": ["multiple_choice_grade"],
    "example_input_prefix": "",
    "append_choices_to_input": False,
    "examples": [{"input": "Claim: the sky is green.\nQ: true or false?", "target_scores": {"true": 0, "false": 1}}],
}


def make_sdist(cache: Path, files: dict[str, str | dict]) -> Path:
    """A tar.gz shaped like bigbench-1.0.0.tar.gz, with ``files`` under benchmark_tasks/."""
    path = cache / "bigbench" / bigbench.SDIST
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        members = {
            "bigbench-1.0.0/setup.py": "print('never run')\n",
            **{bigbench.MEMBER_ROOT + k: v for k, v in files.items()},
        }
        for name, content in members.items():
            data = (json.dumps(content, indent=2) if isinstance(content, dict) else content).encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    cache = tmp_path / "cache"
    make_sdist(
        cache,
        {
            "toy/mc/task.json": MC,
            "toy/mc/README.md": "# toy mc\n",
            "toy/gen/task.json": GEN,
            "toy/fever/task.json": NO_CHOICE_LIST,
            "toy/task.json": {"name": "toy", "description": "a parent task"},
            "toy_py/task.py": "raise SystemExit\n",
            "broken/task.json": '{"name": "broken",\n "examples": [\n  {"input": "x", "target": "y"},\n  {"input": "x" "target": "y"}\n ]\n}\n',
            "no_target/task.json": '{"name": "no_target",\n "examples": [\n  {"input": "x", "target": "y"},\n  {"input": "z"}\n ]\n}\n',
            "no_gold/task.json": {"name": "no_gold", "examples": [{"input": "x", "target_scores": {"a": 0, "b": 0}}]},
        },
    )
    return cache


def load(name: str, cache: Path):
    return resolve_task(name, TASKS_DIR, cache)


def test_multiple_choice_task_is_prompted_as_bigbench_does(cache):
    task = load("bigbench:toy/mc", cache)
    assert task.name == "bigbench-toy-mc" and task.type is TaskType.classification
    assert [s.id for s in task.samples] == ["1", "2", "4"]  # the duplicate example 3 is dropped
    first, _, yes_no = task.samples
    # default prefixes "\nQ: " / "\nA: ", choices appended in BIG-bench's seeded order (seed 42)
    assert first.prompt == "\nQ: First letter?\n  choice: b\n  choice: d\n  choice: a\n  choice: c\nA: "
    assert yes_no.prompt == "\nQ: Is it true?\n  choice: yes\n  choice: no\nA: "
    assert first.choices == ["a", "b", "c", "d"] and first.target == "a"
    assert yes_no.choices == ["yes", "no"] and yes_no.target == "yes"
    assert task.spec.target_delimiter == ""  # the answer follows the output prefix directly
    text = bigbench.task_file(cache, "toy/mc").read_text()
    assert text.splitlines()[first.line - 1].strip() == "{" and '"First letter?"' in text.splitlines()[first.line]
    assert task.source["source"] == "bigbench" and task.source["path"] == "toy/mc"


def test_custom_prefixes_and_no_appended_choices(cache):
    (sample,) = load("bigbench:toy/fever", cache).samples
    assert sample.prompt == "Claim: the sky is green.\nQ: true or false?\nA: "
    assert sample.choices == ["true", "false"] and sample.target == "false"


def test_generative_task_becomes_summarization_with_references(cache):
    task = load("bigbench:toy/gen?max_input_chars=60&max_new_tokens=12", cache)
    assert task.type is TaskType.summarization
    short, long = task.samples
    assert short.prompt == "Summarize the text.\n\ntext: The council approved the new bridge on Tuesday.\nsummary: "
    assert short.target == ["Bridge approved."] and long.target == ["Many words.", "Words."]
    assert task.spec.max_new_tokens == 12 and task.spec.stop == ["\n", "."]
    assert long.fields["truncated"] and long.fields["input_chars"] == 500 and len(long.fields["input"]) <= 64
    assert long.prompt.endswith(" ...\nsummary: ")
    assert task.source["truncated_items"] == 1 and task.source["max_input_chars"] == 60
    assert task.spec.metadata_fields == ["input_chars", "truncated"]


def test_only_requested_tasks_are_extracted_and_then_cached(cache):
    resolve_tasks(["bigbench:toy/mc", "bigbench:toy/gen"], TASKS_DIR, cache)
    extracted = sorted(
        str(p.relative_to(cache / "bigbench" / "tasks"))
        for p in (cache / "bigbench" / "tasks").rglob("*")
        if p.is_file()
    )
    assert extracted == ["toy/gen/task.json", "toy/mc/README.md", "toy/mc/task.json"]
    (cache / "bigbench" / bigbench.SDIST).unlink()  # later runs read the extracted files only
    assert len(load("bigbench:toy/mc", cache).samples) == 3


def test_unknown_path_lists_close_matches(cache):
    with pytest.raises(TaskFileError, match=r"unknown BIG-bench task 'toy/mcq'.*close matches: bigbench:toy/mc"):
        load("bigbench:toy/mcq", cache)
    (cache / "bigbench" / bigbench.SDIST).unlink()  # the listing kept from that pass answers without the archive
    with pytest.raises(TaskFileError, match=r"unknown BIG-bench task 'toy/mcq'.*close matches: bigbench:toy/mc"):
        load("bigbench:toy/mcq", cache)


def test_programmatic_and_parent_tasks_are_explained(cache):
    with pytest.raises(TaskFileError, match=r"toy_py is a programmatic task \(task\.py\)"):
        load("bigbench:toy_py", cache)
    with pytest.raises(
        TaskFileError, match=r"toy is a group of subtasks.*bigbench:toy/fever, bigbench:toy/gen, bigbench:toy/mc"
    ):
        load("bigbench:toy", cache)


@pytest.mark.parametrize("bad", ["bigbench:../../etc", "bigbench:/abs", "bigbench:a b"])
def test_path_outside_benchmark_tasks_is_refused(cache, bad):
    with pytest.raises(TaskFileError, match="is not a BIG-bench task path"):
        load(bad, cache)


def test_malformed_task_json_names_file_and_line(cache):
    with pytest.raises(TaskFileError, match=r"broken/task\.json:4: not valid JSON"):
        load("bigbench:broken", cache)


def test_bad_example_names_file_line_and_example(cache):
    with pytest.raises(
        TaskFileError, match=r"no_target/task\.json:4: example 2: has neither 'target' nor 'target_scores'"
    ):
        load("bigbench:no_target", cache)
    with pytest.raises(TaskFileError, match=r"no_gold/task\.json:\d+: example 1: no choice scores higher"):
        load("bigbench:no_gold", cache)


@pytest.mark.parametrize(
    "name, message",
    [
        ("bigbench:toy/mc?max_tokens=3", "unknown option 'max_tokens'"),
        ("bigbench:toy/mc?max_new_tokens=0", "needs a positive integer"),
        ("bigbench:", "names no bigbench task"),
    ],
)
def test_bad_options(cache, name, message):
    with pytest.raises(TaskFileError, match=message):
        load(name, cache)


def test_options_parse():
    ref = parse("bigbench:gem/xsum?max_new_tokens=32&max_input_chars=2000")
    assert ref is not None and (ref.source, ref.ref, ref.options) == (
        "bigbench",
        "gem/xsum",
        {"max_new_tokens": 32, "max_input_chars": 2000},
    )
    assert ref.task_name == "bigbench-gem-xsum"
    assert parse("seed_claims") is None and parse("other:thing") is None


class _Index:
    """A real HTTP package index on loopback (PEP 503 HTML or PEP 691 JSON) serving one sdist, or nothing."""

    def __init__(self, content: bytes | None, json_api: bool = False) -> None:
        import http.server
        import threading

        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                outer.paths.append(self.path)
                if self.path == "/simple/bigbench/" and outer.content is not None:
                    if json_api:
                        body = json.dumps(
                            {"files": [{"filename": bigbench.SDIST, "url": f"../../files/{bigbench.SDIST}"}]}
                        ).encode()
                        kind = "application/vnd.pypi.simple.v1+json"
                    else:
                        body = f'<a href="../../files/{bigbench.SDIST}#sha256=0">{bigbench.SDIST}</a>'.encode()
                        kind = "text/html"
                elif self.path == f"/files/{bigbench.SDIST}" and outer.content is not None:
                    body, kind = outer.content, "application/octet-stream"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.content = content
        self.paths: list[str] = []
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/simple"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def test_download_failure_is_one_clear_error(tmp_path, monkeypatch):
    index = _Index(None)
    monkeypatch.setenv("HARNESS_INDEX_URL", index.url)
    try:
        with pytest.raises(
            TaskFileError,
            match=r"downloading bigbench-1\.0\.0\.tar\.gz from http://127\.0\.0\.1:\d+/simple failed: HTTP Error 404.*put bigbench-1\.0\.0\.tar\.gz in",
        ):
            load("bigbench:gem/xsum", tmp_path / "cache")
    finally:
        index.close()
    assert index.paths == ["/simple/bigbench/"]


def test_the_fetch_does_not_use_pip():
    """pip 24+ refuses bigbench 1.0.0 (a direct-URL dependency in its metadata): the sdist is fetched as a file."""
    import inspect

    assert "pip" not in inspect.getsource(bigbench.sdist).split('"""')[-1]


@pytest.mark.parametrize("json_api", [False, True])
def test_downloaded_sdist_is_checked_and_a_bad_one_is_not_kept(json_api, tmp_path, monkeypatch):
    fake_sdist = make_sdist(tmp_path / "elsewhere", {"toy/mc/task.json": MC}).read_bytes()
    index = _Index(fake_sdist, json_api=json_api)
    monkeypatch.setenv("HARNESS_INDEX_URL", index.url)
    cache = tmp_path / "cache"
    try:
        with pytest.raises(TaskFileError, match="checksum mismatch for bigbench-1.0.0.tar.gz"):
            load("bigbench:toy/mc", cache)
        assert not any(p.is_file() for p in (cache / "bigbench").rglob("*"))
        import hashlib

        monkeypatch.setattr(bigbench, "SDIST_SHA256", hashlib.sha256(fake_sdist).hexdigest())
        assert load("bigbench:toy/mc", cache).samples and (cache / "bigbench" / bigbench.SDIST).is_file()
    finally:
        index.close()
    assert index.paths[-1] == f"/files/{bigbench.SDIST}"


@pytest.mark.slow
def test_real_sdist_from_pypi(tmp_path):
    """The real 358 MB download with the project's own code path (run with --runslow)."""
    archive = bigbench.sdist(tmp_path / "cache")
    assert archive.stat().st_size > 300e6


def test_full_run_on_bigbench_tasks(cache, tmp_path):
    """Both models, both task kinds, choices that differ per item: records, summary and report."""
    from harness.config.schema import compose
    from harness.run.runner import run_experiment

    cfg = compose(
        [
            "pair=tiny",
            "task.name=bb",
            "task.tasks=[bigbench:toy/mc,bigbench:toy/gen]",
            f"paths.cache_dir={cache}",
            "runtime.device=cpu",
            "runtime.dtype=float32",
            "runtime.batch_size=2",
            "runtime.progress=false",
            "runtime.warmup_steps=1",
            "+task.limits.bigbench-toy-gen=1",
            "print_report=false",
            f"paths.store_dir={tmp_path / 'cells'}",
        ]
    )
    run_dir = tmp_path / "run"
    run_experiment(cfg, run_dir)
    plan = json.loads((run_dir / "plan.json").read_text())
    assert plan["tasks"]["bigbench-toy-mc"]["source"]["path"] == "toy/mc"
    assert (
        plan["tasks"]["bigbench-toy-gen"]["n_selected"] == 1 and plan["tasks"]["bigbench-toy-gen"]["n_available"] == 2
    )
    for model in ("tiny_olmoe", "tiny_llama"):
        recs = run_records(run_dir, model, "bigbench-toy-mc")
        assert [r["details"]["choices"] for r in recs] == [["a", "b", "c", "d"], ["d", "c", "b", "a"], ["yes", "no"]]
        for r in recs:
            assert r["prediction"] in r["details"]["choices"] and len(r["details"]["logliks"]) == len(
                r["details"]["choices"]
            )
            assert r["scores"]["correct"] == float(r["prediction"] == r["gold"])
    summary = json.loads((run_dir / "summary.json").read_text())
    small = summary["tasks"]["bigbench-toy-mc"]["results"]["tiny_olmoe"]["quality"]
    assert 0.0 <= small["accuracy"] <= 1.0 and small["macro_f1"] == small["macro_f1"]  # not NaN
    assert "rougeL" in summary["tasks"]["bigbench-toy-gen"]["results"]["tiny_llama"]["quality"]
    assert "bigbench-toy-mc" in (run_dir / "report.md").read_text()


def test_cli_error_is_one_line_before_any_model_loads(cache):
    import os
    import sys

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HARNESS_CACHE": str(cache)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "pair=tiny",
            "task=bigbench",
            "task.name=toy/mcq",
            f"hydra.run.dir={cache.parent / 'run'}",
        ],
        cwd=TASKS_DIR.parent,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith("error: unknown BIG-bench task 'toy/mcq'") and "bigbench:toy/mc" in lines[0]
