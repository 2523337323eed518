"""The llamacpp engine on a tiny but real GGUF (llama architecture, float32 weights, the SmolLM2 tokenizer).

The reference is the hf engine on the same file (transformers dequantizes it;
float32 both sides): the same token ids, chat prompt and choice log-likelihoods
within a stated tolerance, the same greedy tokens; then stop strings, fixed-length
generation, and the engine inside real runs (cell reuse, resume after a kill).

CI installs the ``[llamacpp]`` extra and sets HARNESS_REQUIRE_LLAMACPP=1, so a
failed build fails these tests there instead of skipping them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.config.schema import ModelConfig, ModelSource, RuntimeConfig

if os.environ.get("HARNESS_REQUIRE_LLAMACPP") != "1":
    pytest.importorskip("llama_cpp", reason="the [llamacpp] extra is not installed")

from gguf_fixture import write_tiny_llama_gguf  # noqa: E402

from harness.engines import choose_engine, load_engine  # noqa: E402
from harness.tasks.prompts import Prompt  # noqa: E402

# llama.cpp and transformers both compute in float32 here, with different summation orders: log-likelihoods of the
# tiny model (about -10.8 per token) agree to about 1e-5 measured; 1e-3 leaves room for other CPUs' kernels.
LOGLIK_ATOL = 1e-3

TEXTS = [
    "Sam Altman a déclaré « 100 fois »",
    " leading space",
    "trailing space ",
    "<|im_start|>user\nHi<|im_end|>\n",
    "numbers 12345 and 3.14",
    "日本語のテキスト",
    "tabs\tand\nnewlines",
]


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> Path:
    return write_tiny_llama_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def _cfg(path: Path) -> ModelConfig:
    return ModelConfig(name="tiny_gguf", source=ModelSource.local, path=str(path))


@pytest.fixture(scope="module")
def engines(tiny_gguf, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    llama = load_engine(_cfg(tiny_gguf), RuntimeConfig(device="cpu", engine="llamacpp", num_threads=2), cache)
    hf = load_engine(_cfg(tiny_gguf), RuntimeConfig(device="cpu", engine="hf", dtype="float32"), cache)
    yield llama, hf
    llama.unload()
    hf.unload()


def test_same_token_ids_as_hf(engines):
    """No BOS added, special tokens written in the text parsed: the hf engine's rule (encode_pair relies on it)."""
    from harness.engines.hf import encode_pair

    llama, hf = engines
    for text in TEXTS:
        assert llama.tokenizer.encode(text) == hf.tokenizer(text, add_special_tokens=False)["input_ids"], text
    assert encode_pair(llama.tokenizer, "Question: true or false? ", "true") == encode_pair(
        hf.tokenizer, "Question: true or false? ", "true"
    )


def test_chat_template_from_the_gguf_renders_as_transformers(engines):
    llama, hf = engines
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Is it true?"},
        {"role": "assistant", "content": "yes"},
        {"role": "user", "content": "And this?"},
    ]
    assert llama.tokenizer.chat_template
    assert llama.tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True
    ) == hf.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def test_loglikelihoods_match_the_hf_engine(engines):
    """Single- and multi-token choices, scored from the context's cache, against transformers in float32."""
    llama, hf = engines
    prompts = [
        Prompt("The claim is supported by the article. Answer:", " ", False),
        Prompt("Le modèle est-il plus rapide ? Réponse :", " ", False),
    ]
    choices = [["true", "false", "not enough information"], ["oui", "non", "peut-être pas du tout"]]
    got, seconds = llama.loglikelihood(prompts, choices)
    want, _ = hf.loglikelihood(prompts, choices)
    assert seconds > 0
    for g, w in zip(got, want):
        assert g.num_tokens == w.num_tokens and g.input_tokens == w.input_tokens
        assert max(g.num_tokens) > 1  # the multi-token path is exercised
        assert g.logliks == pytest.approx(w.logliks, abs=LOGLIK_ATOL)
        assert g.greedy == w.greedy
    # the cache is cut back after each choice: scoring again in another order gives the same numbers
    again, _ = llama.loglikelihood(prompts[::-1], choices[::-1])
    assert again[1].logliks == pytest.approx(got[0].logliks, abs=1e-6)


def test_greedy_tokens_and_logprobs_match_the_hf_engine(engines):
    llama, hf = engines
    prompt = [Prompt("Summarize: small models are cheaper to run than large ones.", " ", False)]
    got = llama.generate_until(prompt, max_new_tokens=8, stops=[])[0]
    want = hf.generate_until(prompt, max_new_tokens=8, stops=[])[0]
    assert got.text == want.text and got.output_tokens == want.output_tokens
    assert got.mean_logprob == pytest.approx(want.mean_logprob, abs=LOGLIK_ATOL)
    assert got.min_logprob == pytest.approx(want.min_logprob, abs=LOGLIK_ATOL)
    assert got.ttft_s is not None and 0 < got.ttft_s <= got.latency_s
    assert got.decode_tokens_per_s and got.decode_tokens_per_s > 0


def test_stop_strings_and_fixed_length(engines):
    llama, _ = engines
    prompt = [Prompt("Write a list of words:", " ", False)]
    free = llama.generate_until(prompt, max_new_tokens=12, stops=[])[0]
    words = free.text.split()
    assert len(words) >= 3
    stop = words[2]
    cut = llama.generate_until(prompt, max_new_tokens=12, stops=[stop])[0]
    assert stop not in cut.text and free.text.startswith(cut.text)
    assert cut.output_tokens < free.output_tokens
    fixed = llama.generate_until(prompt, max_new_tokens=6, stops=[], min_new_tokens=6)[0]
    assert fixed.output_tokens == 6


def test_describe_names_the_gguf(engines, tiny_gguf):
    llama, _ = engines
    facts = llama.describe()
    assert facts.params.total > 0
    d = facts.to_dict()  # as the manifest holds it
    assert d["engine"] == "llamacpp" and d["dtype"] == "ALL_F32"
    assert d["gguf_bytes"] == tiny_gguf.stat().st_size and 0 < d["model_bytes"] <= d["gguf_bytes"]
    assert "on disk" in d["dtype_reason"] and d["threads"] == 2
    assert d["params"]["total"] > 0


def test_auto_engine_choice():
    gguf = ModelConfig(name="m", source=ModelSource.local, path="/x/m.gguf")
    rand = ModelConfig(name="r", source=ModelSource.random)
    rt = RuntimeConfig()
    assert choose_engine(gguf, rt, "cpu").name == "llamacpp"
    assert choose_engine(gguf, rt, "cuda").name == "hf"
    assert choose_engine(rand, rt, "cpu").name == "hf"
    assert "hf engine setting" in choose_engine(gguf, RuntimeConfig(dtype="float32"), "cpu").reason
    assert choose_engine(gguf, RuntimeConfig(batch_size=8), "cpu").name == "hf"


# --- inside real runs ---------------------------------------------------------------------------------------------------------


def _run(tmp: Path, gguf: Path, *extra: str) -> subprocess.CompletedProcess:
    args = [
        sys.executable,
        "-m",
        "harness",
        "pair=tiny",
        f"pair.small.path={gguf}",
        "pair.small.source=local",
        "pair.small.random=null",
        "pair.small.name=tiny_gguf",
        "runtime.engine=auto",
        "task=smoke",
        "runtime.device=cpu",
        "runtime.progress=false",
        "print_report=false",
        f"paths.store_dir={tmp / 'cells'}",
        f"hydra.run.dir={tmp / 'run'}",
        *extra,
    ]
    env = {**os.environ, "HARNESS_CACHE": str(tmp / "cache")}
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)


def test_cells_on_llamacpp_are_reused(tiny_gguf, tmp_path):
    first = _run(tmp_path, tiny_gguf)
    assert first.returncode == 0, first.stderr[-3000:]
    manifests = [json.loads(p.read_text()) for p in (tmp_path / "cells").rglob("manifest.json")]
    engines = {m["model_record"]["name"]: m["model_record"]["engine"] for m in manifests}
    assert engines == {"tiny_gguf": "llamacpp", "tiny_llama": "hf"}
    second = _run(tmp_path, tiny_gguf)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "tiny_gguf / " in second.stdout + second.stderr and "reused" in second.stdout + second.stderr


def test_killed_llamacpp_cell_resumes(tiny_gguf, tmp_path):
    """SIGKILL once a record is flushed; the rerun continues after the last record and ends with every item once."""
    args = [
        sys.executable,
        "-m",
        "harness",
        "pair=tiny",
        f"pair.small.path={tiny_gguf}",
        "pair.small.source=local",
        "pair.small.random=null",
        "pair.small.name=tiny_gguf",
        "task=smoke",
        "runtime.device=cpu",
        "runtime.progress=false",
        "print_report=false",
        "runtime.max_samples=null",
        f"paths.store_dir={tmp_path / 'cells'}",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    env = {**os.environ, "HARNESS_CACHE": str(tmp_path / "cache")}
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            recs = (
                [p for p in (tmp_path / "cells").rglob("records.jsonl") if "tiny_gguf" in str(p)]
                if (tmp_path / "cells").exists()
                else []
            )
            if recs and sum(1 for _ in recs[0].open()) >= 2:
                break
            if proc.poll() is not None:
                pytest.fail("the run ended before a record was flushed")
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    # the tiny model answers 6 items in a few milliseconds: the kill may land mid-cell or after the last record
    # of a cell before it closed; either way that cell is open and the rerun resumes it, never skips or redoes it
    left_open = [
        p.parent.name
        for p in (tmp_path / "cells" / "tiny_gguf").rglob("manifest.json")
        if json.loads(p.read_text())["status"] != "complete"
    ]
    rerun = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert not left_open or "resuming after" in rerun.stdout + rerun.stderr
    for rec in (tmp_path / "cells").rglob("records.jsonl"):
        ids = [json.loads(line)["sample_id"] for line in rec.open()]
        assert len(ids) == len(set(ids))
    statuses = [json.loads(p.read_text())["status"] for p in (tmp_path / "cells").rglob("manifest.json")]
    assert statuses == ["complete"] * 4


def test_auto_falls_back_to_hf_with_a_notice(tiny_gguf, tmp_path):
    """Where llama-cpp-python does not import, engine auto runs the GGUF on the hf engine and says why, in one line."""
    shadow = tmp_path / "shadow" / "llama_cpp"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('libllama.so: cannot open shared object file')\n")
    env_path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(shadow.parent)
    try:
        proc = _run(tmp_path, tiny_gguf, "runtime.max_samples=1")
    finally:
        if env_path is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = env_path
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    notices = [line for line in out.splitlines() if "notice:" in line]
    assert len(notices) == 1 and "llama-cpp-python does not import" in notices[0] and "[llamacpp]" in notices[0], (
        notices
    )
    assert "Traceback" not in out
    manifests = [json.loads(p.read_text()) for p in (tmp_path / "cells").rglob("manifest.json")]
    assert {m["model_record"]["engine"] for m in manifests} == {"hf"}


def test_gguf_wheel_runs_as_stored_without_conversion(tiny_gguf, tmp_path):
    """A GGUF inside a wheel: fetched and verified once, run as it is (no converted copy), its type checked against gguf.quant."""
    import zipfile

    from harness.config.schema import GGUFWheelConfig
    from harness.errors import ConfigError
    from harness.models.wheels import sha256_of

    cache = tmp_path / "cache"
    (cache / "wheels").mkdir(parents=True)
    with zipfile.ZipFile(cache / "wheels" / "tiny_gguf-1.0-py3-none-any.whl", "w") as zf:
        zf.write(tiny_gguf, "tiny_gguf/tiny.gguf")
    wheel = GGUFWheelConfig(
        package="tiny-gguf==1.0",
        member="tiny_gguf/tiny.gguf",
        filename="tiny.gguf",
        sha256=sha256_of(tiny_gguf),
        quant="ALL_F32",
    )
    cfg = ModelConfig(name="tiny_wheel", source=ModelSource.gguf_wheel, gguf=wheel)
    rt = RuntimeConfig(device="cpu", engine="llamacpp")
    engine = load_engine(cfg, rt, cache)
    assert engine.describe().origin.startswith("tiny-gguf==1.0 (tiny.gguf")
    assert not (cache / "converted").exists()
    engine.unload()
    wheel.quant = "Q4_K_M"
    with pytest.raises(ConfigError, match="gguf.quant is Q4_K_M but tiny.gguf is ALL_F32"):
        load_engine(cfg, rt, cache)


def test_long_prompts_are_cut_as_the_hf_engine_cuts_them(engines):
    """Past the model's trained window (256 positions for the tiny GGUF) both engines keep the same last tokens."""
    llama, hf = engines
    prompt = [Prompt("word " * 400 + "Answer:", " ", False)]
    got, _ = llama.loglikelihood(prompt, [["yes", "no"]])
    want, _ = hf.loglikelihood(prompt, [["yes", "no"]])
    assert got[0].tokens_dropped == want[0].tokens_dropped > 0 and got[0].input_tokens == want[0].input_tokens
    assert got[0].logliks == pytest.approx(want[0].logliks, abs=LOGLIK_ATOL)
    gen = llama.generate_until(prompt, max_new_tokens=4, stops=[])[0]
    ref = hf.generate_until(prompt, max_new_tokens=4, stops=[])[0]
    assert (gen.tokens_dropped, gen.input_tokens) == (ref.tokens_dropped, ref.input_tokens)
