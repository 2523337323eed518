"""The vLLM engine against the hf engine, on a tiny random-weight Llama saved with save_pretrained (float32 both sides).

The comparison needs a CUDA GPU and vLLM (``make test-gpu`` on a machine with ``pip install vllm``); without either
it skips, saying which is missing. The refusal to load without CUDA runs everywhere CUDA is absent.

The tiny Llama here has 64-dimensional attention heads (the shared ``tiny_llama`` has 24), a head size every vLLM
attention backend takes; its weights are random, so the texts mean nothing, but the token ids, log-likelihoods and
greedy choices must be the hf engine's.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from harness.config.schema import ModelConfig, ModelSource, RandomInitConfig, RuntimeConfig
from harness.engines.vllm import VllmEngine, VllmSettings
from harness.errors import ConfigError
from harness.tasks.prompts import Prompt

HAS_CUDA = torch.cuda.is_available()
HAS_VLLM = importlib.util.find_spec("vllm") is not None

# vLLM and transformers both compute in float32 here, with different kernels and summation orders; the tiny model's
# log-likelihoods are about -10.8 per token, so 1e-2 is a relative error near 1e-3.
LOGLIK_ATOL = 1e-2


def gpu(test):
    """A GPU test: selected by ``make test-gpu`` (``-m gpu``), skipped without CUDA or without vLLM."""
    test = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU (engine vllm)")(test)
    return pytest.mark.gpu(pytest.mark.skipif(not HAS_VLLM, reason="vLLM is not installed (pip install vllm)")(test))


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama (head size 64) and the SmolLM2 tokenizer, written as a user's local model directory."""
    from harness.models.random_init import build_random

    sizes = {
        "vocab_size": 49152,
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "max_position_embeddings": 2048,
        "tie_word_embeddings": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 2,
    }
    model, tokenizer = build_random(RandomInitConfig(config_class="LlamaConfig", config=sizes), torch.float32)
    path = tmp_path_factory.mktemp("tiny_llama64")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def engines(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    from harness.engines.hf import HFEngine

    cfg = ModelConfig(name="tiny_llama64", source=ModelSource.local, path=str(tiny_dir))
    cache = tmp_path_factory.mktemp("cache")
    runtime = RuntimeConfig(device="cuda", dtype="float32", engine="vllm", warmup_steps=0, progress=False)
    # a small share of the GPU (the hf engine shares it) and no CUDA graphs (a faster start for a test)
    runtime.vllm = VllmSettings(gpu_memory_utilization=0.3, enforce_eager=True)  # runtime.vllm.* in a config
    vllm_engine = VllmEngine.load(cfg, runtime, cache)  # first: vLLM's start-up memory check sees an idle GPU
    hf = HFEngine.load(cfg, RuntimeConfig(device="cuda", dtype="float32", warmup_steps=0, progress=False), cache)
    yield vllm_engine, hf
    vllm_engine.unload()
    hf.unload()


@gpu
def test_loglikelihoods_match_the_hf_engine(engines):
    """Single- and multi-token choices, the same token ids, log-likelihoods and greedy flags as transformers."""
    vllm_engine, hf = engines
    prompts = [
        Prompt("The claim is supported by the article. Answer:", " ", False),
        Prompt("Le modèle est-il plus rapide ? Réponse :", " ", False),
    ]
    choices = [["true", "false", "not enough information"], ["oui", "non", "peut-être pas du tout"]]
    got, seconds = vllm_engine.loglikelihood(prompts, choices)
    want, _ = hf.loglikelihood(prompts, choices)
    assert seconds > 0
    for g, w in zip(got, want):
        assert g.num_tokens == w.num_tokens and g.input_tokens == w.input_tokens and g.tokens_dropped == 0
        assert max(g.num_tokens) > 1  # multi-token continuations are exercised
        assert g.logliks == pytest.approx(w.logliks, abs=LOGLIK_ATOL)
        assert g.greedy == w.greedy


@gpu
def test_greedy_generations_match_the_hf_engine(engines):
    vllm_engine, hf = engines
    prompts = [
        Prompt("Summarize: small models are cheaper to run than large ones.", " ", False),
        Prompt("Write a list of words:", " ", False),
    ]
    got = vllm_engine.generate_until(prompts, max_new_tokens=8, stops=[])
    want = hf.generate_until(prompts, max_new_tokens=8, stops=[])
    for g, w in zip(got, want):
        assert g.text == w.text and g.output_tokens == w.output_tokens and g.input_tokens == w.input_tokens
        assert g.mean_logprob == pytest.approx(w.mean_logprob, abs=LOGLIK_ATOL)
        assert g.min_logprob == pytest.approx(w.min_logprob, abs=LOGLIK_ATOL)
        assert g.latency_s > 0
    described = vllm_engine.describe()
    assert described.device == "cuda" and described.dtype == "float32"
    assert described.params.total == hf.describe().params.total


@pytest.mark.skipif(HAS_CUDA, reason="CUDA is available here: the refusal without it cannot happen")
def test_without_cuda_loading_is_a_one_line_config_error(tmp_path: Path):
    cfg = ModelConfig(name="any", source=ModelSource.local, path=str(tmp_path))
    with pytest.raises(ConfigError, match="CUDA") as err:
        VllmEngine.load(cfg, RuntimeConfig(engine="vllm"), tmp_path)
    message = str(err.value)
    assert "\n" not in message and "pip install vllm" in message and "runtime.engine=hf" in message
