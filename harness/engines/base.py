"""The execution interface every engine implements: requests in, results plus timings out.

In the spirit of lm-eval's ``LM`` (``loglikelihood``, ``generate_until``) and
optimum-benchmark's ``Backend``: the evaluation loop (``harness.run.evaluate``)
and the runner only see this class, so a serving engine (vLLM, TGI, llama.cpp)
is one more subclass named in ``harness.engines.ENGINES`` (or an entry point). Timings are
taken inside the engine, where the device can be synchronized before a clock
is read; memory and energy trackers wrap engine calls from outside and only
need ``device``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional, TypedDict

import torch

from harness.config.schema import ModelConfig, RuntimeConfig
from harness.models.params import ParamCounts
from harness.serialize import Serializable
from harness.tasks.prompts import Prompt


@dataclass
class Retry(Serializable):
    """One failed attempt at a request that was tried again (a served engine's record of faults)."""

    attempt: int  # 1 for the first retry
    error: str  # why it failed: "HTTP 429", "APITimeoutError", "stream cut short" ...
    wait_s: float  # the backoff slept before the next attempt


class ChoiceDetails(TypedDict, total=False):
    """A prompt's scoring facts for its record, where the engine has any (set keys only)."""

    retries: list[Retry]  # every choice's retried requests, in order


class GenerationDetails(TypedDict, total=False):
    """A generation's facts for its record, where the engine has any (a served engine sets them; set keys only)."""

    usage: str  # where the token counts come from: "server" (its usage) or "chunks" (the streamed tokens)
    finish_reason: str
    inter_token_s: Optional[float]  # mean time between streamed tokens (None: a single chunk)
    retries: list[Retry]


@dataclass
class ChoiceScores:
    """One prompt's scored choices."""

    logliks: list[float]  # summed log-probability of each choice's continuation
    greedy: list[bool]  # whether greedy decoding would produce the continuation exactly
    num_tokens: list[int]
    input_tokens: int  # tokens of the context
    tokens_dropped: int = 0  # from the context's start, to fit the model's context window
    latency_s: float | None = None  # this prompt's own time, where requests run concurrently (served engines)
    details: ChoiceDetails = field(default_factory=ChoiceDetails)  # engine facts for the record (retries)


@dataclass
class Generation:
    """One prompt's greedy generation and its timings."""

    text: str
    output_tokens: int
    input_tokens: int
    mean_logprob: float | None  # mean log-probability of the generated tokens (a confidence)
    latency_s: (
        float  # from the batch's start to this sequence's last token (at batch 1, the request's end-to-end latency)
    )
    ttft_s: float | None
    decode_tokens_per_s: float | None
    tokens_dropped: int = 0  # from the prompt's start, so that prompt + max_new_tokens fit the context window
    min_logprob: float | None = None  # the least likely generated token's log-probability (a confidence)
    details: GenerationDetails = field(
        default_factory=GenerationDetails
    )  # engine facts for the record (retries, inter-token latency ...)


@dataclass
class ModelFacts:
    """What an engine says of the model it loaded: the manifest's model record (``results.schema.ModelRecord`` reads
    it back). The facts every engine has are fields; an engine's own (threads, GGUF size, vLLM settings) are in
    ``extra``. An optional fact left None is not written (a served model has no architecture of its own to tell)."""

    name: str
    engine: str
    source: str
    origin: str
    device: str
    dtype: str
    params: ParamCounts
    load_time_s: float
    dtype_reason: Optional[str] = None
    prepare_s: Optional[float] = None  # fetching and converting weights before loading
    chat_template: Optional[bool] = None
    architecture: Optional[str] = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("params", "extra")}
        return {k: v for k, v in d.items() if v is not None} | {"params": self.params.to_dict(), **self.extra}


class Engine(ABC):
    """A loaded model behind one small interface (docs/engines.md: writing an engine)."""

    name: str = ""  # the engine's registry name (runtime.engine / model.engine)
    # prompts handed to one call: served engines keep this many requests in flight (runtime.concurrency)
    concurrency: int = 1
    # whether the model's memory is this process's (in-process engines) or a server's the client cannot see
    memory_in_process: bool = True

    @classmethod
    @abstractmethod
    def load(cls, cfg: ModelConfig, runtime: RuntimeConfig, cache_dir: Path) -> Engine:
        """Load ``cfg`` (a model config) under ``runtime``'s settings; ``cache_dir`` holds fetched weights."""

    def check_task(self, task_type: Any) -> None:
        """Raise a one-line error, before any item runs, when the engine cannot score this kind of task."""
        _ = task_type  # in-process engines score every kind

    @property
    @abstractmethod
    def model_name(self) -> str: ...

    @property
    @abstractmethod
    def device(self) -> torch.device: ...

    @property
    @abstractmethod
    def tokenizer(self) -> Any:
        """What prompts are built with (its chat template, if any)."""

    @abstractmethod
    def loglikelihood(
        self, prompts: Sequence[Prompt], choices: Sequence[Sequence[str]]
    ) -> tuple[list[ChoiceScores], float]:
        """Every choice's log-likelihood after its prompt, and the seconds the batch took (synchronized)."""

    @abstractmethod
    def generate_until(
        self, prompts: Sequence[Prompt], max_new_tokens: int, stops: Sequence[str], min_new_tokens: int = 0
    ) -> list[Generation]:
        """Greedy generation for a batch of prompts, each with its own timings (at least ``min_new_tokens`` each)."""

    def prompt_length(self, prompt: Prompt) -> int:
        """A prompt's length in the engine's units (tokens where it can count them): batches are formed by it."""
        return len(prompt.text)

    @abstractmethod
    def describe(self) -> ModelFacts:
        """The loaded model's facts for the records: parameters, dtype, device, load time, origin."""

    @abstractmethod
    def unload(self) -> None:
        """Free the weights (the next model gets the memory)."""
