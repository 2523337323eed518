"""The openai engine against a real OpenAI-compatible server: llama-cpp-python's, serving a tiny real GGUF on
127.0.0.1 (tests/served_fixture.py), with faults injected by a loopback proxy of our own, and answers that are not
completions (an HTML page with HTTP 200, a stream cut short) from a loopback fault server of our own.

The in-process llamacpp engine on the same file is the reference: the same greedy text, the same log-likelihoods.
CI installs the ``[llamacpp]`` and ``[served]`` extras and sets HARNESS_REQUIRE_LLAMACPP=1, so these run there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.config.schema import ModelConfig, ModelSource, RuntimeConfig, ServedAPI, ServedConfig
from harness.errors import ConfigError, ModelSourceError, ServerError

if os.environ.get("HARNESS_REQUIRE_LLAMACPP") != "1":
    pytest.importorskip("llama_cpp", reason="the [llamacpp] extra is not installed")
    pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python's server extra is not installed")
    pytest.importorskip("openai", reason="the [served] extra is not installed")

from gguf_fixture import write_tiny_llama_gguf  # noqa: E402
from served_fixture import FaultServer, Proxy, Server, serving  # noqa: E402

from harness.engines import load_engine  # noqa: E402
from harness.tasks.local import load_task  # noqa: E402
from harness.tasks.prompts import Prompt, build_prompt  # noqa: E402

LOGLIK_ATOL = 1e-3  # the same float32 weights and kernels; only the batch the prompt is evaluated in differs
KEY = "sk-test-7f3a9c1e5b2d4f60"


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> Path:
    return write_tiny_llama_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


@pytest.fixture(scope="module")
def server(tiny_gguf):
    with serving(tiny_gguf) as s:
        yield s


def _served(url: str, **kw: object) -> ModelConfig:
    return ModelConfig(
        name="tiny_served", source=ModelSource.served, served=ServedConfig(base_url=url, model="tiny", **kw)
    )  # type: ignore[arg-type]


def _rt(**kw: object) -> RuntimeConfig:
    return RuntimeConfig(device="cpu", num_threads=2, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def local(tiny_gguf, tmp_path_factory):
    cfg = ModelConfig(name="tiny_gguf", source=ModelSource.local, path=str(tiny_gguf))
    engine = load_engine(cfg, _rt(engine="llamacpp"), tmp_path_factory.mktemp("cache"))
    yield engine
    engine.unload()


PROMPTS = [
    Prompt("The review says: great phone, battery lasts. Sentiment:", " ", False),
    Prompt("Q: 2+2? A:", " ", False),
]
CHOICES = [["positive", "negative"], ["4", "five"]]


def test_loglikelihood_through_the_server_matches_the_in_process_engine(server, local, tmp_path):
    engine = load_engine(_served(server.url), _rt(), tmp_path)
    probe = engine.probe_prompt_logprobs()
    assert probe["agree"], probe
    served, _ = engine.loglikelihood(PROMPTS, CHOICES)
    ref, _ = local.loglikelihood(PROMPTS, CHOICES)
    for s, r in zip(served, ref):
        assert s.logliks == pytest.approx(r.logliks, abs=LOGLIK_ATOL)
        assert s.num_tokens == r.num_tokens and s.greedy == r.greedy
        assert s.latency_s is not None and s.latency_s > 0


def test_streamed_generation_matches_the_in_process_engine(server, local, tmp_path):
    engine = load_engine(_served(server.url), _rt(), tmp_path)
    prompts = [Prompt("Once upon a time", " ", False), Prompt("The list: a, b,", " ", False)]
    served = engine.generate_until(prompts, 12, [])
    ref = local.generate_until(prompts, 12, [])
    for s, r in zip(served, ref):
        assert s.text == r.text and s.output_tokens == r.output_tokens == 12
        assert 0 < s.ttft_s <= s.latency_s and s.details["inter_token_s"] > 0
        assert s.mean_logprob == pytest.approx(r.mean_logprob, abs=LOGLIK_ATOL)
    stop = [ref[0].text.split()[1]]
    stopped, local_stopped = (
        engine.generate_until(prompts[:1], 12, stop)[0],
        local.generate_until(prompts[:1], 12, stop)[0],
    )
    # llama-cpp-python's stream holds back a token that may start a stop string and drops it whole at the stop,
    # its leading space with it: the texts agree up to white space at the cut
    assert stopped.text.rstrip() == local_stopped.text.rstrip() and stopped.output_tokens < 12


def test_the_stock_llama_cpp_python_server_is_refused_for_log_likelihoods(tiny_gguf, tmp_path):
    """llama-cpp-python's own server echoes each prompt token's log-probability one position late (no BOS): the
    probe sees it disagree with its generation and names the problem before any item runs."""
    with serving(tiny_gguf, stock=True) as stock:
        engine = load_engine(_served(stock.url), _rt(), tmp_path)
        with pytest.raises(ConfigError, match="disagree with its generation"):
            engine.probe_prompt_logprobs()
        assert engine.generate_until([PROMPTS[0]], 3, [])[0].output_tokens == 3  # generation is fine


def test_chat_api_cannot_score_classification(server, tmp_path):
    engine = load_engine(_served(server.url, api=ServedAPI.chat), _rt(), tmp_path)
    with pytest.raises(ConfigError, match="api: chat"):
        engine.loglikelihood(PROMPTS, CHOICES)


def test_concurrent_requests_give_the_same_answers(server, tmp_path):
    one = load_engine(_served(server.url), _rt(), tmp_path)
    four = load_engine(_served(server.url), _rt(concurrency=4), tmp_path)
    prompts = [Prompt(f"Item {i}: the weather is", " ", False) for i in range(6)]
    assert [g.text for g in four.generate_until(prompts, 5, [])] == [g.text for g in one.generate_until(prompts, 5, [])]


def test_429_and_slow_answers_are_retried_and_recorded(server, tmp_path):
    def plan(n: int, path: str) -> object:
        if path.endswith("/completions") and n in (2, 3):
            return "429"
        if path.endswith("/completions") and n == 4:
            return ("slow", 3.0)  # past served.timeout_s below: a timeout, retried
        return None

    with Proxy(server.port, plan) as proxy:
        engine = load_engine(_served(proxy.url, timeout_s=1.5, backoff_s=0.01), _rt(), tmp_path)
        out = engine.generate_until([Prompt("Once upon a time", " ", False)], 4, [])[0]
    assert [r.error for r in out.details["retries"]] == ["HTTP 429", "HTTP 429", "APITimeoutError"]
    assert out.output_tokens == 4


def test_unreachable_server_is_one_line_naming_the_url(tmp_path):
    from served_fixture import free_port

    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(Exception) as err:
        load_engine(_served(url), _rt(), tmp_path)
    assert url in str(err.value) and "-- fix:" in str(err.value) and "\n" not in str(err.value)


# --- answers that are not completions: a fault server of the tests' own ----------------------------------------------


def _faulty(fault: FaultServer, tmp: Path, **kw: object):
    return load_engine(_served(fault.url, max_retries=1, backoff_s=0.01, **kw), _rt(), tmp)


def _one_line(err: pytest.ExceptionInfo, fault: FaultServer) -> str:
    line = str(err.value)
    assert fault.url in line and "\n" not in line and " -- fix: " in line, line
    return line


def test_an_html_page_for_a_completion_is_retried_then_one_line(tmp_path):
    """A proxy's error page with HTTP 200: the probe (classification) and a stream (generation) each try it
    max_retries + 1 times, then stop with one line quoting the page; nothing is scored from it."""
    with FaultServer(["html"], model="tiny") as fault:
        engine = _faulty(fault, tmp_path)
        with pytest.raises(ServerError) as probe:
            engine.loglikelihood(PROMPTS, CHOICES)
        assert fault.requests == ["/v1/completions"] * 2  # max_retries=1: the request and one retry
        with pytest.raises(ServerError) as gen:
            engine.generate_until([PROMPTS[0]], 4, [])
        assert len(fault.requests) == 4
    for err in (probe, gen):
        line = _one_line(err, fault)
        assert "sent something that is not a completion, 2 times in a row: '<!DOCTYPE html>\\n<html>" in line, line
        assert "(its first 200 characters)" in line and "no record was written" in line


def test_a_model_list_that_is_an_html_page_is_one_line(tmp_path):
    with FaultServer(["ok"], model="tiny", models_html=True) as fault:
        with pytest.raises(ModelSourceError) as err:
            _faulty(fault, tmp_path)
    assert "did not answer GET /models with a model list" in _one_line(err, fault) and "<html>" in str(err.value)
    assert not fault.requests


@pytest.mark.parametrize("api", [ServedAPI.completions, ServedAPI.chat])
def test_a_stream_cut_short_is_retried_and_never_scored(api, tmp_path):
    """The first chunk, then the connection closed (no finish_reason, no [DONE]): retried, and the answer kept is the
    whole one the retry got; cut short every time, the run stops with one line quoting the chunk."""
    text = json.dumps([{"role": "user", "content": "Say hello"}]) if api is ServedAPI.chat else "Say hello"
    prompt = Prompt(text, " ", api is ServedAPI.chat)
    with FaultServer(["cut", "ok"], model="tiny") as fault:
        out = _faulty(fault, tmp_path, api=api).generate_until([prompt], 8, [])[0]
    assert out.text == "Hello" and out.details["finish_reason"] == "stop" and out.output_tokens == 2
    assert [r.error for r in out.details["retries"]] == ["stream cut short"] and len(fault.requests) == 2
    with FaultServer(["cut"], model="tiny") as fault:
        with pytest.raises(ServerError) as err:
            _faulty(fault, tmp_path, api=api).generate_until([prompt], 8, [])
        assert len(fault.requests) == 2
    line = _one_line(err, fault)
    assert "ended a stream before it finished (no finish_reason), 2 times in a row: 'data: {" in line, line
    assert '"Hel"' in line


def test_a_bad_answer_writes_no_record_and_the_next_run_computes_the_cell(tmp_path):
    """Inside a real run: the HTML page stops it before any record is written, the cell is not complete, and the
    same command, once the server answers, computes the cell instead of reusing it."""
    with FaultServer(["html"], model="tiny") as fault:
        first = _run(tmp_path, fault.url, "task.tasks=[smoke_summarize]")
        assert first.returncode == 2, first.stderr[-2000:]
        lines = [ln for ln in first.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and fault.url in lines[0], first.stderr[-2000:]
        assert "not a completion, 3 times in a row: '<!DOCTYPE html>" in lines[0]
        assert len(fault.requests) == 3  # _run's max_retries=2: the first request, then two retries, then the line
        cell = next((tmp_path / "cells").glob("tiny_served/smoke_summarize/*"))
        assert not (cell / "records.jsonl").exists() or not (cell / "records.jsonl").read_text().strip()
        manifest = cell / "manifest.json"
        assert not manifest.exists() or json.loads(manifest.read_text())["status"] != "complete"
        fault.answers = ["ok"]
        again = _run(tmp_path, fault.url, "task.tasks=[smoke_summarize]")
        assert again.returncode == 0, again.stderr[-2000:]
    refs = json.loads((tmp_path / "run" / "cells.json").read_text())["cells"]
    assert [r["status"] for r in refs if r["model"] == "tiny_served"] == ["computed"]
    records = _records(tmp_path / "cells", "tiny_served")["smoke_summarize"]
    assert records and all(r["prediction"] == "Hello" and "retries" not in r["details"] for r in records)


# --- inside real runs ---------------------------------------------------------------------------------------------------------


def _run(
    tmp: Path, url: str, *extra: str, env: dict[str, str] | None = None, key_env: str = ""
) -> subprocess.CompletedProcess:
    """``harness`` with the served tiny model (a model config of the user's, on Hydra's search path) as the pair's
    small model, against tiny_llama."""
    conf = tmp / "conf" / "model"
    conf.mkdir(parents=True, exist_ok=True)
    served = {"base_url": url, "model": "tiny", "backoff_s": 0.05, "max_retries": 2, "timeout_s": 30}
    served["extra_body"] = {"repeat_penalty": 1.0}
    if key_env:
        served["api_key_env"] = key_env
    model = {"defaults": ["model_schema", "_self_"], "name": "tiny_served", "source": "served", "served": served}
    (conf / "tiny_served.yaml").write_text(json.dumps(model))  # JSON is YAML
    args = [
        sys.executable,
        "-m",
        "harness",
        "pair=tiny",
        "model@pair.small=tiny_served",
        f"hydra.searchpath=[file://{tmp / 'conf'}]",
        "task=smoke",
        "runtime.device=cpu",
        "runtime.chat_template=false",
        "runtime.progress=false",
        "print_report=false",
        f"paths.store_dir={tmp / 'cells'}",
        f"hydra.run.dir={tmp / 'run'}",
        *extra,
    ]
    env = {**os.environ, "HARNESS_CACHE": str(tmp / "cache"), **(env or {})}
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)


def _records(store: Path, model: str) -> dict[str, list[dict]]:
    out = {}
    for rec in store.rglob("records.jsonl"):
        if f"/{model}/" in str(rec) or model in rec.parent.name:
            rows = [json.loads(line) for line in rec.read_text().splitlines()]
            if rows and rows[0]["model"] == model:
                out[rows[0]["task"]] = rows
    return out


def test_a_killed_server_leaves_the_cell_resumable(tiny_gguf, tmp_path):
    """The server dies mid-task: the run stops with one line, every record on disk is whole, and the same command,
    once the server is back, finishes after the last record with the answers of an uninterrupted run."""
    upstream = Server(tiny_gguf).start()
    completions = {"n": 0}

    def plan(n: int, path: str) -> object:
        if path.endswith("/completions"):
            completions["n"] += 1
            if completions["n"] == 14:  # the probe, the warm-up, then a few items
                return upstream.kill
        return None

    try:
        with Proxy(upstream.port, plan) as proxy:
            first = _run(tmp_path, proxy.url, "task.tasks=[smoke_classify]", "runtime.max_samples=null")
            assert first.returncode == 2, first.stderr[-2000:]
            lines = [ln for ln in first.stderr.splitlines() if ln.startswith("error:")]
            assert len(lines) == 1 and "failed" in lines[0] and "resumes after the last record" in lines[0]
            partial = _records(tmp_path / "cells", "tiny_served")["smoke_classify"]
            assert 0 < len(partial) < 6
            upstream.start()  # back, on another port: the proxy's upstream follows it
            proxy.upstream_port = upstream.port
            again = _run(tmp_path, proxy.url, "task.tasks=[smoke_classify]", "runtime.max_samples=null")
            assert again.returncode == 0, again.stderr[-2000:]
            assert "resuming after" in again.stdout + again.stderr
            clean = _run(tmp_path / "clean", proxy.url, "task.tasks=[smoke_classify]", "runtime.max_samples=null")
            assert clean.returncode == 0, clean.stderr[-2000:]
    finally:
        upstream.stop()
    resumed = _records(tmp_path / "cells", "tiny_served")["smoke_classify"]
    reference = _records(tmp_path / "clean" / "cells", "tiny_served")["smoke_classify"]
    assert sorted(r["sample_id"] for r in resumed) == sorted(r["sample_id"] for r in reference)
    by_id = {r["sample_id"]: r for r in reference}
    for r in resumed:
        assert r["prediction"] == by_id[r["sample_id"]]["prediction"]
        assert r["details"]["logliks"] == pytest.approx(by_id[r["sample_id"]]["details"]["logliks"], abs=LOGLIK_ATOL)


def test_the_api_key_is_written_nowhere(tiny_gguf, tmp_path):
    with serving(tiny_gguf, api_key=KEY) as keyed:
        key_env = "HARNESS_TEST_SERVED_KEY"
        ok = _run(tmp_path, keyed.url, env={key_env: KEY}, key_env=key_env)
        assert ok.returncode == 0, ok.stderr[-2000:]
        wrong = _run(
            tmp_path / "wrong", keyed.url, f"+pair.small.served.api_key_env={key_env}", env={key_env: KEY + "x"}
        )
    assert wrong.returncode == 2
    assert "refused the API key (HTTP 401)" in wrong.stderr and KEY not in wrong.stdout + wrong.stderr
    assert KEY not in ok.stdout + ok.stderr
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "records.jsonl" for p in written) and any(p.name == "report.html" for p in written)
    leaks = [p for p in written if KEY.encode() in p.read_bytes()]
    assert not leaks, leaks


def test_load_sweep_through_the_server_and_the_slo_in_the_decision(server, tmp_path):
    """Two levels of concurrency against the real server: every request on disk, the figures in load.json and the
    report, and an SLO no request can meet fails the served model in the decision table; a report rebuilt with a
    loose SLO prices it at its highest level instead."""
    run = _run(
        tmp_path,
        server.url,
        "task.tasks=[smoke_summarize]",
        "runtime.concurrency=2",
        "load.levels=[1,2]",
        "load.requests=4",
        "load.slo_p95_s=0.000001",
    )
    assert run.returncode == 0, run.stderr[-2000:]
    out = tmp_path / "run"
    requests = [json.loads(line) for line in (out / "load" / "requests.jsonl").read_text().splitlines()]
    assert len(requests) == 8 and {r["level"] for r in requests} == {1, 2}
    assert all(r["latency_s"] >= (r["ttft_s"] or 0) > 0 for r in requests)
    load = json.loads((out / "load.json").read_text())
    steps = load["models"]["tiny_served"]["steps"]
    assert [s["level"] for s in steps] == [1, 2] and all(s["within_slo"] is False for s in steps)
    assert load["models"]["tiny_served"]["slo_level"] is None
    decision = json.loads((out / "decision.json").read_text())["tasks"]["smoke_summarize"]
    standing = {o["name"]: o["standing"] for o in decision["options"]}
    assert standing["tiny_served"] == "fails the latency SLO" and decision["slo_p95_s"] == 0.000001
    report = (out / "report.md").read_text()
    assert "## Latency under load (load test)" in report and (out / "plots" / "load_latency.png").stat().st_size > 0
    records = _records(tmp_path / "cells", "tiny_served")["smoke_summarize"]
    assert all(r["details"]["concurrency"] == 2 and r["latency_s"] > 0 for r in records)
    again = subprocess.run(
        [sys.executable, "-m", "harness", "report", str(out), "load.slo_p95_s=1000"], capture_output=True, text=True
    )
    assert again.returncode == 0, again.stderr[-2000:]
    load = json.loads((out / "load.json").read_text())
    assert (
        load["models"]["tiny_served"]["slo_level"] == 2 and load["models"]["tiny_served"]["cost_per_1k_at_slo_usd"] > 0
    )


def test_a_client_side_chat_template_gives_the_in_process_prompts(server, local, tmp_path):
    """served.tokenizer: the bundled SmolLM2 tokenizer's chat template (the tiny GGUF carries the same one) builds the
    prompt on the client, so /v1/completions scores what the in-process engine scores."""
    engine = load_engine(_served(server.url, tokenizer="smollm2"), _rt(), tmp_path)
    task = load_task(Path(__file__).resolve().parents[1] / "tasks" / "smoke" / "smoke_classify.yaml")
    served = build_prompt(task, task.samples[0], engine.tokenizer, True)
    ref = build_prompt(task, task.samples[0], local.tokenizer, True)
    assert served.chat and served.text == ref.text and "<|im_start|>" in served.text
    labels = list(task.spec.labels.values())
    got, _ = engine.loglikelihood([served], [labels])
    want, _ = local.loglikelihood([ref], [labels])
    assert got[0].logliks == pytest.approx(want[0].logliks, abs=LOGLIK_ATOL)


def test_the_launchers_ranking_orders_as_sorted_does():
    """harness.engines.llamacpp_server ranks a row's alternatives lazily: the same pairs, in the same order, as
    ``sorted(zip(row, range(n)), reverse=True)``, ties included."""
    import numpy as np

    from harness.engines.llamacpp_server import _List, _ranked_sorted

    rng = np.random.default_rng(0)
    row = np.round(rng.standard_normal(500), 1).astype(np.float32)  # many ties
    want = sorted(zip(row.tolist(), range(len(row))), reverse=True)
    got = _List(_ranked_sorted(zip(row, range(len(row))), reverse=True))
    assert got[:5] == want[:5] and list(iter(got)) == want
    assert isinstance([], _List) and _List((1, 2)) == [1, 2]
    assert _ranked_sorted([3, 1, 2]) == [1, 2, 3]


def test_a_judge_behind_the_server_grades_the_run_it_is_part_of(server, tmp_path):
    """judge.model=<a served model> judge.engine=openai, the path a hosted judge takes: the harness's server returns
    prompt log-probabilities, so the score is G-Eval's; the judge is one of the compared models, which is said; the
    judged differences stand beside ROUGE-L in C3's numbers and the decision table."""
    run = _run(
        tmp_path,
        server.url,
        "task.tasks=[smoke_summarize]",
        "runtime.max_samples=2",
        "judge.model=tiny_served",
        "judge.engine=openai",
    )
    assert run.returncode == 0, run.stderr[-2000:]
    out = tmp_path / "run"
    summary = json.loads((out / "judge_summary.json").read_text())
    assert summary["judge"] == "tiny_served" and summary["method"] == "probabilities"
    task = summary["tasks"]["smoke_summarize"]
    assert set(task["models"]) == {"tiny_served", "tiny_llama"} and task["pairwise"]["tiny_served"]["n"] == 2
    assert any("self-preference" in w for w in summary["warnings"])
    c3 = next(v for v in json.loads((out / "claims.json").read_text())["verdicts"] if v["id"] == "C3")
    (nums,) = c3["numbers"].values()
    assert nums["judge"] == "tiny_served" and set(nums["judged"]) == {"coverage", "faithfulness", "fluency"}
    assert "judged by tiny_served (1-5): coverage" in c3["key_number"]
    decision = json.loads((out / "decision.json").read_text())["tasks"]["smoke_summarize"]
    assert decision["judge"] == "tiny_served"
    assert "judged by tiny_served" in (out / "report.md").read_text()


def test_a_judge_scores_through_the_server_as_in_process(server, local, tmp_path):
    """The same GGUF judging the same summary through /v1/completions and in process: the same probabilities over
    the scale, so a hosted judge's G-Eval score is the in-process one."""
    from harness.config.schema import judge_settings
    from harness.results.records import SampleRecord
    from harness.run.judge import Judge

    cfg = judge_settings()
    record = SampleRecord(
        "t", "m", "1", "Summarize: the cat sat.", ["A cat sat."], "A cat sat.", {}, 5, 3, 0.1, 1, 0, 0
    )
    served = Judge(load_engine(_served(server.url), _rt(), tmp_path), cfg)
    in_process = Judge(local, cfg)
    assert served.method == in_process.method == "probabilities"
    for rubric in ("faithfulness", "fluency"):
        a, b = served.rubric(cfg.rubrics[rubric], record), in_process.rubric(cfg.rubrics[rubric], record)
        assert a.probs == pytest.approx(b.probs, abs=1e-3) and a.score == pytest.approx(b.score, abs=1e-2)


def test_a_judge_on_a_server_without_prompt_log_probabilities_reads_its_answer(tiny_gguf, tmp_path):
    """llama-cpp-python's stock server (as a hosted API without prompt log-probabilities): the judge's answer is read
    for the first scale point it states; one that states none is kept as unparseable, never given a score."""
    from harness.config.schema import judge_settings
    from harness.results.records import SampleRecord
    from harness.run.judge import Judge, first_choice

    with serving(tiny_gguf, stock=True) as stock:
        judge = Judge(load_engine(_served(stock.url), _rt(), tmp_path), judge_settings())
        assert judge.method == "parsed"
        record = SampleRecord("t", "m", "1", "Summarize: the cat sat.", ["A cat"], "A cat sat.", {}, 5, 3, 0.1, 1, 0, 0)
        answer = judge.rubric(judge.cfg.rubrics["fluency"], record)
    if answer.method == "unparseable":
        assert answer.score is None and answer.probs == {}
    else:
        assert answer.method == "parsed" and first_choice(answer.answer, judge.cfg.scale) == str(int(answer.score))


def test_an_open_loop_poisson_test_through_the_server(server, tmp_path):
    """Requests sent on a seeded Poisson schedule at two rates against the real server: each request on disk with
    when it was due and when it was sent, synthetic prompts of the asked length, and per step the percentiles (p99
    said to need more requests), SLO attainment and goodput in load.json and the report."""
    run = _run(
        tmp_path,
        server.url,
        "task.tasks=[smoke_summarize]",
        "runtime.max_samples=2",
        "load.mode=poisson",
        "load.rates=[4,8]",
        "load.requests=12",
        "load.warmup=1",
        "load.prompts=synthetic",
        "load.input_tokens=24",
        "load.output_tokens=4",
        "load.slo.e2e_s=5",
        "load.slo.ttft_s=5",
    )
    assert run.returncode == 0, run.stderr[-2000:]
    out = tmp_path / "run"
    requests = [json.loads(line) for line in (out / "load" / "requests.jsonl").read_text().splitlines()]
    assert len(requests) == 24 and {r["rate"] for r in requests} == {4.0, 8.0}  # the warm-up is not counted
    assert all(r["mode"] == "poisson" and r["sent_s"] >= r["scheduled_s"] - 1e-6 for r in requests)
    assert len({r["sample_id"] for r in requests}) == 24  # synthetic prompts, each its own
    assert all(20 <= r["input_tokens"] <= 30 and r["output_tokens"] <= 4 for r in requests)
    steps = json.loads((out / "load.json").read_text())["models"]["tiny_served"]["steps"]
    assert [s["rate"] for s in steps] == [4.0, 8.0]
    for s in steps:
        assert s["percentiles"]["e2e"]["too_few"] == ["p95", "p99"] and "p90" in s["percentiles"]["e2e"]["values"]
        assert s["attainment"] == 1.0 and s["goodput_rps"] == pytest.approx(s["requests_per_s"])
        assert s["lag_max_s"] is not None
    report = (out / "report.md").read_text()
    assert "4/s poisson" in report and "too few" in report and "end to end within 5 s" in report


def test_the_search_finds_the_edge_of_a_server_with_a_fixed_capacity(tmp_path):
    """A loopback server of our own that serves two requests at a time, each taking 0.5 s, first come first served:
    up to 4 in flight a request takes at most about 1 s; at 5, about half of them 1.5 s; so an SLO of 1.3 s end to
    end for 80% of requests holds up to 4 in flight. The search (doubling from 1, then bisection) finds 4, and the
    report marks it; a listed level the search already ran is not run twice."""
    with FaultServer(["ok"], model="tiny", capacity=(2, 0.5)) as fault:
        run = _run(
            tmp_path,
            fault.url,
            "task.tasks=[smoke_summarize]",
            "runtime.max_samples=1",
            "load.search.enabled=true",
            "load.search.max_steps=8",
            "load.levels=[2,3]",  # 2 was tried by the search: not run again
            "load.requests=10",
            "load.warmup=2",
            "load.prompts=synthetic",
            "load.input_tokens=8",
            "load.output_tokens=1",
            "load.slo.e2e_s=1.3",
            "load.slo.attainment=0.8",
        )
    assert run.returncode == 0, run.stderr[-2000:]
    load = json.loads((tmp_path / "run" / "load.json").read_text())["models"]["tiny_served"]
    assert load["searched"] and load["edge"] == 4 and load["slo_level"] == 4
    assert [s["level"] for s in load["steps"]] == [1, 2, 3, 4, 5, 6, 8]
    assert all(s["requests"] == 10 for s in load["steps"])
    assert "tiny_served (edge)" in (tmp_path / "run" / "report.md").read_text()


def test_an_open_loop_keeps_its_schedule_while_a_slow_server_queues(tmp_path):
    """A server of our own answering one request at a time in 0.3 s, offered 5 requests/s: the client sends each
    request on time (a closed loop would wait for the answers), so the queue shows in the latencies (the last of 10
    waits about 1.5 s), and the step misses its SLO."""
    with FaultServer(["ok"], model="tiny", capacity=(1, 0.3)) as fault:
        run = _run(
            tmp_path,
            fault.url,
            "task.tasks=[smoke_summarize]",
            "runtime.max_samples=1",
            "load.mode=constant",
            "load.rates=[5]",
            "load.requests=10",
            "load.warmup=0",
            "load.slo.e2e_s=1",
        )
    assert run.returncode == 0, run.stderr[-2000:]
    requests = [json.loads(line) for line in (tmp_path / "run" / "load" / "requests.jsonl").read_text().splitlines()]
    assert [r["scheduled_s"] for r in requests] == pytest.approx([i / 5 for i in range(10)])
    assert all(r["sent_s"] - r["scheduled_s"] < 0.05 for r in requests)  # on time, whatever was in flight
    latencies = [r["latency_s"] for r in requests]
    assert latencies[0] < 0.5 and latencies[-1] > 1.2  # each waits for those before it: 0.3 s of service per 0.2 s
    step = json.loads((tmp_path / "run" / "load.json").read_text())["models"]["tiny_served"]["steps"][0]
    assert step["within_slo"] is False and step["rate"] == 5.0 and step["lag_max_s"] < 0.05
