"""The vLLM engine (``engine: vllm``): a model served in-process by vLLM on CUDA GPUs, as it is deployed at scale.

Through ``vllm.LLM`` (offline inference, no server). vLLM is not a dependency of
the harness and is imported only when this engine loads: this module imports
without it, and on a machine without CUDA or without vLLM loading is a one-line
``ConfigError``. UNTESTED HERE: the development machines have neither a GPU nor
vLLM; tests/test_vllm.py compares this engine with the hf engine on a CUDA
machine with vLLM installed (``make test-gpu``), and only the refusal without
CUDA runs everywhere.

- ``loglikelihood``: contexts and continuations are tokenized by lm-eval's rule
  (``harness.engines.tokens.encode_pair``, no BOS added: the hf engine's token ids)
  and sent as token ids, so vLLM's tokenizer adds nothing. Every (prompt, choice)
  is one request of a single ``generate`` call that asks for the prompt tokens'
  log-probabilities (``prompt_logprobs=1``, which returns each prompt token's own
  log-probability and rank); a choice's log-likelihood is the sum over its
  continuation tokens, and it is greedy when each of them is the rank-1 token.
  vLLM's automatic prefix caching runs a context shared by several choices once.
- ``generate_until``: greedy sampling (temperature 0) with vLLM's own stop strings
  and ``min_tokens``, prompts sent as token ids cut as the hf engine cuts them.
  Per-request timings come from vLLM's request metrics (time to first token,
  decode tokens/s); when this vLLM build gives none, a request's latency is the
  batch's wall time and its time to first token is unknown.

Memory: vLLM allocates ``gpu_memory_utilization`` of the GPU up front (weights plus
a key/value cache that fills the rest), and its V1 engine runs the model in a
separate process. torch's allocator counters in this process do not see it; NVML's
device-wide numbers do, and they show the reservation, not what the model needs.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from harness.config.schema import ModelConfig, ModelSource, RuntimeConfig, builtin_source, source_name
from harness.engines.base import ChoiceScores, Generation, ModelFacts
from harness.engines.tokens import TokenEngine, choices_per_prompt, cut_at_stop, generation
from harness.errors import ConfigError, ModelSourceError
from harness.measure.timing import GenerationTiming, generation_timing
from harness.models.local import check_weights_format
from harness.models.params import ParamCounts, count_params
from harness.tasks.prompts import Prompt

INSTALL_FIX = "pip install vllm on a CUDA machine, or use runtime.engine=hf"


@dataclass(frozen=True)
class VllmSettings:
    """The engine's knobs (``vllm:`` in the runtime config); the defaults are vLLM's own."""

    tensor_parallel_size: int = 1  # GPUs the model is split over
    gpu_memory_utilization: float = 0.9  # share of each GPU's memory vLLM reserves (weights + key/value cache)
    max_model_len: Optional[int] = None  # context window in tokens; None: the model config's
    enforce_eager: bool = False  # no CUDA graphs: faster start, slower decoding


def vllm_settings(runtime: RuntimeConfig) -> VllmSettings:
    """``runtime.vllm`` where the configuration has one, field by field, else vLLM's defaults."""
    knobs = getattr(runtime, "vllm", None)
    default = VllmSettings()
    if knobs is None:
        return default
    max_len = getattr(knobs, "max_model_len", default.max_model_len)
    return VllmSettings(
        tensor_parallel_size=int(getattr(knobs, "tensor_parallel_size", default.tensor_parallel_size)),
        gpu_memory_utilization=float(getattr(knobs, "gpu_memory_utilization", default.gpu_memory_utilization)),
        max_model_len=int(max_len) if max_len is not None else None,
        enforce_eager=bool(getattr(knobs, "enforce_eager", default.enforce_eager)),
    )


def vllm_available() -> Optional[str]:
    """None when vLLM imports, else why not (one line)."""
    try:
        import vllm  # noqa: F401
    except Exception as exc:  # ImportError, or an error from a build for another CUDA/torch
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
    return None


def model_location(cfg: ModelConfig) -> tuple[str, Optional[str], str]:
    """(what ``vllm.LLM`` loads: a hub id or a directory, the hub revision, where it came from for the records)."""
    source = builtin_source(cfg)
    if source is ModelSource.hub:
        if not cfg.hub_id:
            raise ConfigError(f"model {cfg.name} has source=hub but no hub_id", "set hub_id: org/name")
        return cfg.hub_id, cfg.revision, cfg.hub_id + (f"@{cfg.revision}" if cfg.revision else "")
    if source is ModelSource.local:
        if not cfg.path:
            raise ConfigError(f"model {cfg.name} has source=local but no path", "set path: /dir/with/config.json")
        path = Path(cfg.path).expanduser()
        if path.suffix == ".gguf":
            raise ConfigError(
                f"model {cfg.name}: engine vllm runs a save_pretrained directory, not the GGUF file {path.name}",
                "use engine llamacpp (or hf) for a .gguf file, or point path: at a directory with config.json",
            )
        if not (path / "config.json").is_file():
            raise ModelSourceError(
                f"model directory {path} has no config.json",
                "point path: at a directory written by save_pretrained (config.json, *.safetensors, tokenizer files)",
            )
        check_weights_format(path, cfg.allow_pickle)
        return str(path), None, str(cfg.path)
    raise ConfigError(
        f"engine vllm loads models of source hub or local, not {source_name(cfg)} (model {cfg.name})",
        "use engine hf for it (model engine: hf), or save it with save_pretrained and use source local",
    )


def config_params(hf_config: Any, trust_remote_code: bool) -> ParamCounts:
    """Parameter counts from the model's transformers config: the model built on the meta device (no memory, no
    weights read) and counted as the hf engine counts; zeros when transformers cannot build it from the config."""
    if hf_config is None:
        return ParamCounts.counted(0)
    try:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(  # type: ignore[no-untyped-call]
                hf_config, trust_remote_code=trust_remote_code
            )
        return count_params(model)
    except Exception:  # an architecture transformers lacks, a multimodal config: the counts are unknown
        return ParamCounts.counted(0)


def continuation_score(
    prompt_logprobs: Sequence[Optional[dict[int, Any]]], token_ids: Sequence[int], start: int
) -> tuple[float, bool]:
    """(summed log-probability of ``token_ids[start:]``, whether each was the most likely token at its position).

    ``prompt_logprobs[i]`` maps token ids to vLLM ``Logprob``s for position ``i`` of the prompt and always holds the
    prompt's own token there (its ``rank`` counts the tokens at least as likely, 1 = the argmax); position 0 is None.
    """
    total, greedy = 0.0, True
    for i in range(start, len(token_ids)):
        entry = prompt_logprobs[i]
        if entry is None:
            raise ValueError(f"vLLM returned no log-probability for prompt position {i}")
        lp = entry[token_ids[i]]
        total += float(lp.logprob)
        greedy = greedy and lp.rank == 1
    return total, greedy


def sampled_logprobs(steps: Optional[Sequence[Optional[dict[int, Any]]]], token_ids: Sequence[int]) -> list[float]:
    """The log-probability of each generated token (``logprobs=1`` returns the sampled token's at every step)."""
    if not steps:
        return []
    return [float(step[t].logprob) for step, t in zip(steps, token_ids) if step is not None and t in step]


def request_timing(metrics: Any, new_tokens: int, start: float, end: float) -> GenerationTiming:
    """A request's latency, time to first token and decode speed from vLLM's request metrics.

    vLLM's V0 engine gives ``RequestMetrics`` (``arrival_time``, ``first_token_time``, ``last_token_time``, one wall
    clock); V1 gives ``RequestStateStats`` (``first_token_latency`` in seconds, ``first_token_ts``/``last_token_ts`` on
    the engine's monotonic clock, not comparable with its wall-clock ``arrival_time``). Without metrics: the batch's
    wall time ``end - start`` and no time to first token.
    """
    fallback = generation_timing(start, end, [], new_tokens)
    if metrics is None:
        return fallback
    arrival = getattr(metrics, "arrival_time", None)
    first = getattr(metrics, "first_token_time", None)
    last = getattr(metrics, "last_token_time", None)
    if arrival is not None and first is not None and last is not None:
        ttft, decode_s = first - arrival, last - first
    else:
        ttft = getattr(metrics, "first_token_latency", None)
        first_ts, last_ts = getattr(metrics, "first_token_ts", None), getattr(metrics, "last_token_ts", None)
        if not ttft or not first_ts or last_ts is None or last_ts < first_ts:  # 0.0: not recorded
            return fallback
        decode_s = last_ts - first_ts
    if ttft < 0 or decode_s < 0:
        return fallback
    decode_tps = (new_tokens - 1) / decode_s if new_tokens > 1 and decode_s > 0 else None
    return GenerationTiming(ttft + decode_s, ttft, decode_tps)


def _model_config(llm: Any) -> Any:
    """vLLM's ``ModelConfig`` of the loaded model (``llm.llm_engine.model_config`` in V0 and V1), or None."""
    return getattr(getattr(llm, "llm_engine", None), "model_config", None)


def _check_vllm_runs(runtime: RuntimeConfig) -> None:
    """Refuse a machine or a device setting vLLM cannot run on, before anything loads."""
    if not torch.cuda.is_available():
        raise ConfigError(
            f"engine vllm needs a CUDA GPU, and none is visible to torch (torch {torch.__version__}, "
            f"CUDA build: {torch.version.cuda is not None})",
            INSTALL_FIX,
        )
    if runtime.device == "cpu":
        raise ConfigError(
            "engine vllm runs on CUDA GPUs, but runtime.device=cpu",
            "use runtime.device=auto (or cuda) with engine vllm, or runtime.engine=hf on the CPU",
        )
    missing = vllm_available()
    if missing is not None:
        raise ConfigError(f"engine vllm needs vLLM, which does not import here ({missing})", INSTALL_FIX)


def _start_llm(
    cfg: ModelConfig,
    runtime: RuntimeConfig,
    model: str,
    revision: Optional[str],
    origin: str,
    settings: VllmSettings,
    dtype: str,
) -> tuple[Any, float]:
    """(vLLM's ``LLM`` on the model, its load time in seconds); what vLLM refuses becomes a harness error."""
    import vllm

    start = time.perf_counter()
    try:
        llm = vllm.LLM(
            model=model,
            revision=revision,
            tokenizer_revision=revision,
            dtype=dtype,
            seed=runtime.seed,
            trust_remote_code=cfg.trust_remote_code,
            tensor_parallel_size=settings.tensor_parallel_size,
            gpu_memory_utilization=settings.gpu_memory_utilization,
            max_model_len=settings.max_model_len,
            enforce_eager=settings.enforce_eager,
            # pickle checkpoints can run code when loaded: refused unless the model config opts in, as with hf
            load_format="auto" if cfg.allow_pickle else "safetensors",
            disable_log_stats=False,  # per-request metrics (time to first token); LLM turns them off by default
        )
    except OSError as exc:
        raise ModelSourceError(
            f"vLLM cannot load {origin}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
            "check hub_id/revision or path, run where the hub is reachable (or the model is in the HF cache); "
            "a repository without safetensors weights needs allow_pickle: true",
        ) from exc
    except ValueError as exc:  # settings vLLM refuses: a max_model_len above the model's, a dtype, a memory share
        raise ConfigError(
            f"vLLM refused model {cfg.name}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
            "adjust runtime.vllm (max_model_len, gpu_memory_utilization, tensor_parallel_size) or the dtype, "
            "or use runtime.engine=hf",
        ) from exc
    return llm, time.perf_counter() - start


def _hf_config(llm: Any, model: str, revision: Optional[str], trust_remote_code: bool) -> Any:
    """The model's transformers config, for its parameter counts: vLLM's, else read again (None: unknown)."""
    hf_config = getattr(_model_config(llm), "hf_config", None)
    if hf_config is None:
        try:
            hf_config = AutoConfig.from_pretrained(model, revision=revision, trust_remote_code=trust_remote_code)
        except Exception:  # counted as unknown below
            hf_config = None
    return hf_config


class VllmEngine(TokenEngine):
    """A transformers-format model (hub or local directory) run by vLLM on CUDA GPUs."""

    name = "vllm"
    # vLLM's V1 engine runs the model in a child process and reserves gpu_memory_utilization of the GPU up front:
    # this process's torch allocator peak (the headline of an in-process engine) would read near zero
    memory_in_process = False

    def __init__(
        self,
        cfg: ModelConfig,
        llm: Any,
        settings: VllmSettings,
        origin: str,
        load_time_s: float,
        seed: int,
        params: ParamCounts,
        dtype_reason: str,
    ) -> None:
        model_config = _model_config(llm)
        # prompts are cut to the window vLLM resolved (max_model_len, else the model config's), as hf cuts to its own
        window = int(getattr(model_config, "max_model_len", None) or settings.max_model_len or 1 << 30)
        super().__init__(cfg, llm.get_tokenizer(), window)
        self.llm, self.settings, self.origin = llm, settings, origin
        self.load_time_s, self.seed, self.params, self.dtype_reason = load_time_s, seed, params, dtype_reason
        dtype = getattr(model_config, "dtype", None)
        self.dtype = str(dtype).replace("torch.", "") if dtype is not None else "unknown"
        hf_config = getattr(model_config, "hf_config", None)
        self.architecture = next(iter(getattr(hf_config, "architectures", None) or []), "-")

    @classmethod
    def load(cls, cfg: ModelConfig, runtime: RuntimeConfig, cache_dir: Path) -> VllmEngine:
        """vLLM's ``LLM`` on the model; ``cache_dir`` is unused (vLLM fetches hub models into the HF cache itself)."""
        _check_vllm_runs(runtime)
        model, revision, origin = model_location(cfg)
        settings = vllm_settings(runtime)
        # "auto" is passed through: vLLM's choice from the model config (a float32 checkpoint runs in 16 bits)
        dtype = cfg.dtype or runtime.dtype
        llm, load_time_s = _start_llm(cfg, runtime, model, revision, origin, settings, dtype)
        hf_config = _hf_config(llm, model, revision, cfg.trust_remote_code)
        params = config_params(hf_config, cfg.trust_remote_code)  # zeros when there is no config
        reason = f"{'dtype' if cfg.dtype else 'runtime.dtype'}={dtype}" + (
            ": vLLM's choice from the model config" if dtype == "auto" else ""
        )
        return cls(cfg, llm, settings, origin, load_time_s, runtime.seed, params, reason)

    # --- the Engine interface ---------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return torch.device("cuda")

    def loglikelihood(
        self, prompts: Sequence[Prompt], choices: Sequence[Sequence[str]]
    ) -> tuple[list[ChoiceScores], float]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        requests: list[list[int]] = []  # context + continuation, one per (prompt, choice), prompt by prompt
        # per prompt: its context's tokens, the tokens cut from its start, its continuations' lengths
        shapes: list[tuple[int, int, list[int]]] = []
        for prompt, options in zip(prompts, choices_per_prompt(prompts, choices)):
            pairs = self.choice_pairs(prompt, options)
            full = pairs[0][0]
            # vLLM refuses a prompt that fills the window (it must sample one token after it): one position more
            context = self.fit(full, max(len(cont) for _, cont in pairs) + 1)
            if not context:
                raise ValueError("a prompt with no tokens cannot be scored (its first choice token has no context)")
            requests += [context + cont for _, cont in pairs]
            shapes.append((len(context), len(full) - len(context), [len(cont) for _, cont in pairs]))
        params = SamplingParams(max_tokens=1, temperature=0, prompt_logprobs=1, detokenize=False)
        torch.cuda.synchronize()
        start = time.perf_counter()
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=ids) for ids in requests], params, use_tqdm=False)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        results, row = [], 0
        for n_context, dropped, lengths in shapes:
            logliks, greedy = [], []
            for _ in lengths:
                loglik, is_greedy = continuation_score(outputs[row].prompt_logprobs, requests[row], n_context)
                logliks.append(loglik)
                greedy.append(is_greedy)
                row += 1
            results.append(ChoiceScores(logliks, greedy, lengths, input_tokens=n_context, tokens_dropped=dropped))
        return results, seconds

    def generate_until(
        self, prompts: Sequence[Prompt], max_new_tokens: int, stops: Sequence[str], min_new_tokens: int = 0
    ) -> list[Generation]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        full = [self.encode(p.text) for p in prompts]
        kept = [self.fit(ids, max_new_tokens) for ids in full]  # prompt and answer fit the window, as with hf
        params = SamplingParams(
            temperature=0,
            max_tokens=max_new_tokens,
            min_tokens=min_new_tokens,
            stop=list(stops),
            logprobs=1,
            seed=self.seed,
        )
        torch.cuda.synchronize()
        start = time.perf_counter()
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=ids) for ids in kept], params, use_tqdm=False)
        torch.cuda.synchronize()
        end = time.perf_counter()
        results = []
        for out, ids, prompt_ids in zip(outputs, full, kept):
            completion = out.outputs[0]
            tokens = list(completion.token_ids)
            logprobs = sampled_logprobs(completion.logprobs, tokens)
            timing = request_timing(getattr(out, "metrics", None), len(tokens), start, end)
            text = cut_at_stop(completion.text, stops)
            results.append(generation(text, logprobs, timing, len(tokens), len(prompt_ids), len(ids) - len(prompt_ids)))
        return results

    def describe(self) -> ModelFacts:
        import vllm

        return self.facts(
            self.origin,
            "cuda",
            self.dtype,
            self.params,
            self.load_time_s,
            dtype_reason=self.dtype_reason,
            prepare_s=0.0,  # vLLM downloads and loads in one step, timed as loading
            architecture=self.architecture,
            extra={
                "tensor_parallel_size": self.settings.tensor_parallel_size,
                "gpu_memory_utilization": self.settings.gpu_memory_utilization,
                "max_model_len": self.window,
                "enforce_eager": self.settings.enforce_eager,
                "vllm": getattr(vllm, "__version__", "?"),
            },
        )

    def unload(self) -> None:
        """Free the GPU for the next model: the engine (and its V1 engine-core process) shut down, the model-parallel
        groups vLLM set up in this process destroyed, so a second ``vllm.LLM`` can start here."""
        llm, self.llm = self.llm, None
        try:
            engine_core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
            if engine_core is not None and hasattr(engine_core, "shutdown"):
                engine_core.shutdown()
        except Exception:  # already down; the process exits with it anyway
            pass
        del llm
        gc.collect()
        try:
            from vllm.distributed.parallel_state import destroy_model_parallel

            destroy_model_parallel()
        except Exception:  # a vLLM without it, or nothing was set up in this process (V1 runs the model elsewhere)
            pass
        torch.cuda.empty_cache()
