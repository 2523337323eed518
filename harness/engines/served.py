"""The ``openai`` engine: any OpenAI-compatible server (vLLM, llama.cpp's servers, Ollama, a hosted API).

Through the ``openai`` client (the ``[served]`` extra), as lm-eval's
``local-completions`` and inspect_ai's OpenAI provider do; what is measured is
what the deployment gives a client on this machine.

- Generation is streamed: every chunk is time-stamped on the client, so a record
  has its request's end-to-end latency, time to first token and inter-token
  latency; token counts come from the server's ``usage`` where it sends one
  (``details.usage``: ``server``), else from the streamed tokens (``chunks``).
  Greedy (``temperature=0``) with the run's seed, stop strings sent and applied.
- Log-likelihood (classification) goes through ``/v1/completions`` with
  ``echo`` and ``logprobs``: the continuation's tokens are the echoed prompt's
  last ones, found from the end of the text (so special tokens at its start
  cannot shift them). Before the first item, a probe checks the server returns
  prompt log-probabilities at all, and that they agree with its own generation
  (llama-cpp-python 0.3's server returns them one position late: the harness
  refuses such a server rather than score with them; ``harness.engines.llamacpp_server``
  serves a GGUF with them in place).
- Faults: timeouts, 429 and 5xx are retried with exponential backoff and jitter
  (``Retry-After`` honoured); every retry is recorded on its sample. So are answers
  that are not a completion (an HTML page a proxy sends with HTTP 200, JSON without
  choices) and streams that end before the server says it finished (no
  ``finish_reason``): an answer the server did not finish is never scored. When the
  retries are spent the run stops with a one-line ``ServerError`` naming the server
  and quoting what it sent; no record is written for the request, and records are
  written one whole line at a time, so the same command resumes after the last.
- ``runtime.concurrency`` requests are kept in flight (a thread pool: requests
  are I/O); each record keeps its own request's latency under that load.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, TypedDict, TypeVar

import torch
from transformers import AutoTokenizer

from harness.config.schema import ModelConfig, RuntimeConfig, ServedAPI, ServedConfig
from harness.engines.base import ChoiceDetails, ChoiceScores, Engine, Generation, GenerationDetails, ModelFacts, Retry
from harness.engines.tokens import choices_per_prompt, cut_at_stop, generation, split_pair
from harness.errors import ConfigError, ServerError
from harness.measure.timing import generation_timing
from harness.models.params import ParamCounts
from harness.models.random_init import tokenizer_path
from harness.models.served import SENT_CHARS, client, listed_models, quoted, scrub, served_config
from harness.tasks.prompts import Prompt
from harness.tasks.types import TaskType

T = TypeVar("T")


PROBE_TEXT = "The capital of France is"
PROBE_TOLERANCE = 0.1  # nats between a token's log-probability echoed and generated (quantized kernels differ a little)
NOT_COMPLETION = "sent something that is not a completion"


@dataclass
class _ChoiceScore:
    """One choice scored by one echo request."""

    loglik: float
    greedy: bool
    num_tokens: int
    context_tokens: int
    seconds: float
    retries: list[Retry]


CUT_SHORT = "ended a stream before it finished (no finish_reason)"


class BadResponse(Exception):
    """An answer that is not a finished completion, with what the server sent (``sent``).

    An HTML page with HTTP 200 (what a proxy or gateway sends on an error), JSON without choices, a stream of no
    events or one that ends without a ``finish_reason``: retried like a 5xx (the same gateways send both), and never
    scored (it would be a record with an answer the server did not give).
    """

    def __init__(self, what: str, sent: str) -> None:
        self.what, self.sent = what, sent
        super().__init__(f"{what}: {sent[:SENT_CHARS]!r}")

    @property
    def why(self) -> str:
        """Short, for a record's list of retries."""
        return "stream cut short" if self.what == CUT_SHORT else "not a completion"


@dataclass
class Echo:
    """A prompt echoed by ``/v1/completions``: per token, its text, log-probability, top alternatives, offset."""

    tokens: list[str]
    logprobs: list[Optional[float]]
    tops: list[Any]
    prompt_tokens: int  # as the server counted them (usage)
    generated: str  # the text of the one token generated after it (echo puts the prompt before it)


class PromptLogprobsProbe(TypedDict):
    """What the probe of a server's prompt log-probabilities saw (the model record's ``prompt_logprobs_probe``)."""

    token: str  # the token the server generated after the probe text
    generated: Optional[float]  # its log-probability as generated
    echoed: Optional[float]  # and as echoed after the probe (None: the server re-tokenized it)
    agree: bool


class RequestOptions(TypedDict, total=False):
    """Fields of every request beyond the call's own."""

    extra_body: dict[str, Any]  # served.extra_body (and min_tokens): JSON for the server, whatever it accepts


class StreamRequest(RequestOptions, total=False):
    """The arguments of one streamed request, but for the prompt (``prompt`` or ``messages``) and ``logprobs``."""

    model: str
    max_tokens: int
    temperature: float
    seed: int
    stream: bool
    stream_options: dict[str, bool]
    stop: list[str]


@dataclass
class _Streamed:
    """One streamed answer as the client saw it: clock readings, text, per-token log-probabilities."""

    start: float
    end: float
    text: str
    stamps: list[float]  # the clock when each token (or each chunk without log-probabilities) arrived
    logprobs: list[float]
    usage: Any  # the server's usage object (openai's CompletionUsage), None when it sent none
    finish: str


class ServerChat:
    """What prompts are built with for ``api: chat``: the messages themselves, kept as JSON (the server templates them)."""

    chat_template = "the server's"

    def apply_chat_template(
        self, messages: list[dict[str, str]], tokenize: bool = False, add_generation_prompt: bool = True
    ) -> str:
        return json.dumps(messages, ensure_ascii=False)


class PlainText:
    """``api: completions``: the prompt is sent as text, with no template (the server adds none either)."""

    chat_template = None


def _status(exc: BaseException) -> Optional[int]:
    return getattr(exc, "status_code", None)


def retryable(exc: BaseException) -> bool:
    """Timeouts, dropped connections, bad answers, 429 and 5xx: worth another try. 4xx other than 429: the request is
    wrong."""
    import openai

    if isinstance(exc, (openai.APITimeoutError, openai.APIConnectionError, BadResponse)):
        return True
    status = _status(exc)
    return status is not None and (status == 429 or status >= 500)


def _retry_after(exc: BaseException) -> Optional[float]:
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _why(exc: BaseException) -> str:
    if isinstance(exc, BadResponse):
        return exc.why
    status = _status(exc)
    return f"HTTP {status}" if status is not None else type(exc).__name__


class ServedEngine(Engine):
    """A model behind an OpenAI-compatible server."""

    name = "openai"
    memory_in_process = False

    def __init__(
        self, cfg: ModelConfig, served: ServedConfig, api: Any, runtime: RuntimeConfig, listed: list[dict[str, Any]]
    ) -> None:
        self.cfg, self.served, self.api, self.listed = cfg, served, api, listed
        self.seed = runtime.seed
        self.concurrency = max(1, runtime.concurrency)
        self._tok: Any = ServerChat() if ServedAPI(served.api) is ServedAPI.chat else PlainText()
        if served.tokenizer and ServedAPI(served.api) is ServedAPI.completions:
            # the chat template is applied here, so /v1/completions sees the text an in-process engine would
            self._tok = AutoTokenizer.from_pretrained(_tokenizer_source(served.tokenizer))
        self._probed: Optional[PromptLogprobsProbe] = None
        self._lock = threading.Lock()
        self.retries_total = 0

    @classmethod
    def load(cls, cfg: ModelConfig, runtime: RuntimeConfig, cache_dir: Path) -> ServedEngine:
        served = served_config(cfg)
        return cls(cfg, served, client(served, cfg.name), runtime, listed_models(served, cfg.name))

    # --- the Engine interface ---------------------------------------------------------------

    @property
    def model_name(self) -> str:
        return self.cfg.name

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")  # the client's: memory and energy trackers see this process, not the server

    @property
    def tokenizer(self) -> Any:
        return self._tok

    def check_task(self, task_type: Any) -> None:
        if task_type is TaskType.classification:
            self.probe_prompt_logprobs()

    # --- requests, retried ------------------------------------------------------------------

    def _call(self, request: Callable[[], T], retries: list[Retry]) -> T:
        """``request()``, retried on timeouts, bad answers, 429 and 5xx with backoff and jitter; each retry appended to
        ``retries``."""
        import openai

        attempt = 0
        while True:
            try:
                return request()
            except (openai.APIError, openai.APIConnectionError, BadResponse) as exc:
                if not retryable(exc):
                    raise ServerError(
                        f"model {self.cfg.name}: {self.served.base_url} refused a request ({_why(exc)}: "
                        f"{scrub(str(exc).splitlines()[0] if str(exc) else '', self.served)})",
                        "check the served model's settings (context length, API style); records so far are kept",
                    ) from exc
                if attempt >= self.served.max_retries and isinstance(exc, BadResponse):
                    raise ServerError(
                        f"model {self.cfg.name}: {self.served.base_url} {exc.what}, {attempt + 1} times in a row: "
                        f"{quoted(exc.sent, self.served)}; no record was written for it",
                        "check the server or the proxy in front of it (served.base_url), then run the same command "
                        "again: it resumes after the last record",
                    ) from exc
                if attempt >= self.served.max_retries:
                    raise ServerError(
                        f"model {self.cfg.name}: {self.served.base_url} failed {attempt + 1} times in a row "
                        f"({_why(exc)}); the records written so far are kept",
                        "restart the server (or raise served.max_retries / served.timeout_s), then run the same "
                        "command again: it resumes after the last record",
                    ) from exc
                wait = self.served.backoff_s * 2**attempt * random.uniform(0.5, 1.5)
                hinted = _retry_after(exc)
                if hinted is not None:
                    wait = max(wait, min(hinted, 60.0))
                retries.append(Retry(attempt=attempt + 1, error=_why(exc), wait_s=round(wait, 3)))
                with self._lock:
                    self.retries_total += 1
                time.sleep(wait)
                attempt += 1

    def _extra(self) -> RequestOptions:
        return {"extra_body": dict(self.served.extra_body)} if self.served.extra_body else {}

    def _completion(self, **kwargs: Any) -> Any:
        """``/v1/completions``, not streamed: a completion with choices and their text, else ``BadResponse``."""
        from openai.types import Completion

        try:
            response = self.api.completions.create(**kwargs)
        except json.JSONDecodeError as exc:  # a body labelled JSON that is not
            raise BadResponse(NOT_COMPLETION, exc.doc) from exc
        # a body that is not JSON comes back as its text (an HTML page); JSON of another shape lacks choices
        choices = getattr(response, "choices", None) if isinstance(response, Completion) else None
        if not choices or not all(isinstance(getattr(c, "text", None), str) for c in choices):
            raise BadResponse(NOT_COMPLETION, _sent(response))
        return response

    def _map(self, fn: Callable[[Any], T], items: Sequence[Any]) -> list[T]:
        """``fn`` over ``items`` with ``concurrency`` requests in flight, results in order."""
        if self.concurrency == 1 or len(items) == 1:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(items))) as pool:
            return list(pool.map(fn, items))

    # --- log-likelihood through /v1/completions with echo -----------------------------------

    def _echo(self, text: str, retries: list[Retry]) -> Echo:
        """The prompt echoed with its log-probabilities (``max_tokens=1``: some servers refuse 0)."""
        response = self._call(
            lambda: self._completion(
                model=self.served.model,
                prompt=text,
                max_tokens=1,
                echo=True,
                logprobs=1,
                temperature=0,
                **self._extra(),
            ),
            retries,
        )
        lp = response.choices[0].logprobs
        if lp is None or not lp.token_logprobs:
            raise self._no_prompt_logprobs("it returned no log-probabilities for the prompt (echo + logprobs)")
        n = len(lp.tokens)
        return Echo(
            tokens=list(lp.tokens),
            logprobs=list(lp.token_logprobs),
            tops=list(lp.top_logprobs or [None] * n),
            prompt_tokens=int(response.usage.prompt_tokens) if response.usage and response.usage.prompt_tokens else n,
            generated=(response.choices[0].text or "")[len(text) :]
            if (response.choices[0].text or "").startswith(text)
            else "",
        )

    @staticmethod
    def _ending(echo: Echo, chars: int, tail: str) -> list[int]:
        """The indices of the echoed prompt's last tokens covering its last ``chars`` characters (``tail``).

        Servers differ in whether the generated token is listed after the prompt's (vLLM: always; llama-cpp-python:
        when the prompt starts with its BOS token, which it then leaves out) and in how they name special tokens, so
        the prompt's end is found from its text: when the listed tokens end with ``tail`` + the generated text rather
        than with ``tail``, the generated token is dropped. Trailing tokens without text (an end-of-sequence) go too.
        """
        tokens = list(echo.tokens)
        joined = "".join(tokens)
        if echo.generated and joined.endswith(tail + echo.generated) and not joined.endswith(tail):
            dropped = 0
            while tokens and dropped < len(echo.generated):
                dropped += len(tokens.pop())
        while tokens and not tokens[-1]:
            tokens.pop()
        return _tail(tokens, chars)

    def _no_prompt_logprobs(self, why: str) -> ConfigError:
        return ConfigError(
            f"model {self.cfg.name}: {self.served.base_url} cannot score classification tasks: {why}",
            "run generation tasks with it, or serve the model with a server that returns prompt log-probabilities "
            "(vLLM; python -m harness.engines.llamacpp_server for a GGUF)",
        )

    def probe_prompt_logprobs(self) -> PromptLogprobsProbe:
        """Check once that the server scores prompts, and scores them where its own generation does.

        The token the server generates after the probe is scored twice, as generated and echoed after the probe; a
        server whose two figures disagree is refused.
        """
        if ServedAPI(self.served.api) is ServedAPI.chat:
            raise ConfigError(
                f"model {self.cfg.name} is asked through api: chat, which has no prompt log-probabilities, "
                "so it cannot score classification tasks",
                "use served.api: completions for it, or run generation tasks only",
            )
        if self._probed is not None:
            return self._probed
        import openai

        retries: list[Retry] = []
        try:
            gen = self._call(
                lambda: self._completion(
                    model=self.served.model, prompt=PROBE_TEXT, max_tokens=1, logprobs=1, temperature=0, **self._extra()
                ),
                retries,
            )
            token = gen.choices[0].text
            after = self._echo(PROBE_TEXT + token, retries)
        except ServerError as exc:
            if isinstance(exc.__cause__, openai.APIStatusError) and _status(exc.__cause__) in (400, 422):
                raise self._no_prompt_logprobs(f"it rejected echo + logprobs ({_why(exc.__cause__)})") from exc
            raise
        choice = gen.choices[0]
        generated = choice.logprobs.token_logprobs[0] if choice.logprobs else None
        last = self._ending(after, len(token), token)
        echoed = (
            after.logprobs[last[0]] if len(last) == 1 and after.tokens[last[0]] == token else None
        )  # None: re-tokenized
        if generated is not None and echoed is not None and abs(generated - echoed) > PROBE_TOLERANCE:
            raise self._no_prompt_logprobs(
                f"its prompt log-probabilities disagree with its generation ({token!r} after {PROBE_TEXT!r}: "
                f"{echoed:.3f} echoed, {generated:.3f} generated; llama-cpp-python's server shifts them one token)"
            )
        self._probed = {"token": token, "generated": generated, "echoed": echoed, "agree": echoed is not None}
        return self._probed

    def _score(self, args: tuple[Prompt, str]) -> _ChoiceScore:
        prompt, choice = args
        context, continuation = split_pair(prompt.text, prompt.target_delimiter + choice)  # the server tokenizes
        retries: list[Retry] = []
        start = time.perf_counter()
        echo = self._echo(context + continuation, retries)
        seconds = time.perf_counter() - start
        span = self._ending(echo, len(continuation), continuation)
        loglik = float(sum(echo.logprobs[i] or 0.0 for i in span))
        tops = echo.tops
        greedy = all(not tops[i] or max(tops[i], key=tops[i].get) == echo.tokens[i] for i in span)
        return _ChoiceScore(loglik, greedy, len(span), echo.prompt_tokens - len(span), seconds, retries)

    def loglikelihood(
        self, prompts: Sequence[Prompt], choices: Sequence[Sequence[str]]
    ) -> tuple[list[ChoiceScores], float]:
        self.probe_prompt_logprobs()
        options = choices_per_prompt(prompts, choices)
        pairs = [(p, c) for p, opts in zip(prompts, options) for c in opts]
        start = time.perf_counter()
        scored = iter(self._map(self._score, pairs))
        wall = time.perf_counter() - start
        results = []
        for opts in options:
            parts = [next(scored) for _ in opts]
            results.append(
                ChoiceScores(
                    logliks=[p.loglik for p in parts],
                    greedy=[p.greedy for p in parts],
                    num_tokens=[p.num_tokens for p in parts],
                    input_tokens=max(p.context_tokens for p in parts),
                    latency_s=sum(p.seconds for p in parts),  # one request per choice, the item's own
                    details=_choice_details([r for p in parts for r in p.retries]),
                )
            )
        return results, wall

    # --- streamed generation ----------------------------------------------------------------

    def _stream(self, prompt: Prompt, max_new_tokens: int, stops: Sequence[str], min_new_tokens: int) -> _Streamed:
        """One streamed request, time-stamped per chunk (a retry starts the clock again)."""
        extra = {**dict(self.served.extra_body), **({"min_tokens": min_new_tokens} if min_new_tokens else {})}
        common: StreamRequest = {
            "model": self.served.model,
            "max_tokens": max_new_tokens,
            "temperature": 0,
            "seed": self.seed,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if stops:
            common["stop"] = list(stops)[:4]  # the API takes at most 4; all are applied below
        if extra:
            common["extra_body"] = extra
        chat = ServedAPI(self.served.api) is ServedAPI.chat
        start = time.perf_counter()
        if chat:
            stream = self.api.chat.completions.create(messages=json.loads(prompt.text), logprobs=True, **common)
        else:
            stream = self.api.completions.create(prompt=prompt.text, logprobs=1, **common)
        sent = _Sent(stream)
        text: list[str] = []
        stamps: list[float] = []
        logprobs: list[float] = []
        usage, finish, chunks = None, None, 0
        try:
            for chunk in stream:
                now = time.perf_counter()
                chunks += 1
                if getattr(chunk, "usage", None):
                    usage = chunk.usage
                for choice in getattr(chunk, "choices", None) or []:
                    delta = getattr(choice, "delta", None)
                    piece = (getattr(delta, "content", None) if chat else getattr(choice, "text", None)) or ""
                    finish = getattr(choice, "finish_reason", None) or finish
                    lps = _chunk_logprobs(choice, chat)
                    if piece or lps:
                        text.append(piece)
                        stamps.extend([now] * max(1, len(lps)))
                        logprobs.extend(lp for lp in lps if lp is not None)
        except ValueError as exc:  # an event whose data is not JSON, or not a chunk
            raise BadResponse(NOT_COMPLETION, sent.text()) from exc
        end = time.perf_counter()
        if finish is None:
            # a stream of no events (an HTML page) is no completion; one cut short would be scored as if finished
            raise BadResponse(CUT_SHORT if chunks else NOT_COMPLETION, sent.text())
        return _Streamed(start, end, "".join(text), stamps, logprobs, usage, finish)

    def _generate_one(self, args: tuple[Prompt, int, Sequence[str], int]) -> Generation:
        prompt, max_new_tokens, stops, min_new_tokens = args
        retries: list[Retry] = []
        out = self._call(lambda: self._stream(prompt, max_new_tokens, stops, min_new_tokens), retries)
        usage = out.usage
        n_out = int(usage.completion_tokens) if usage else len(out.stamps)
        timing = generation_timing(out.start, out.end, out.stamps, n_out)
        stamps, logprobs = out.stamps, out.logprobs
        gaps = [b - a for a, b in zip(stamps, stamps[1:])]
        details: GenerationDetails = {
            "usage": "server" if usage else "chunks",
            "finish_reason": out.finish,
            "inter_token_s": sum(gaps) / len(gaps) if gaps else None,
        }
        if retries:  # last, as the record has always listed them
            details["retries"] = retries
        text = cut_at_stop(out.text, stops)
        return generation(text, logprobs, timing, n_out, int(usage.prompt_tokens) if usage else 0, details=details)

    def generate_until(
        self, prompts: Sequence[Prompt], max_new_tokens: int, stops: Sequence[str], min_new_tokens: int = 0
    ) -> list[Generation]:
        return self._map(self._generate_one, [(p, max_new_tokens, stops, min_new_tokens) for p in prompts])

    def describe(self) -> ModelFacts:
        import openai

        entry = next((m for m in self.listed if m.get("id") == self.served.model), {})
        return ModelFacts(
            name=self.cfg.name,
            engine=self.name,
            source="served",
            origin=f"{self.served.base_url} ({self.served.model})",
            device="server",
            dtype="as served",
            dtype_reason="set by the server",
            load_time_s=0.0,
            params=ParamCounts.counted(self.cfg.published_params or 0),
            extra={
                "served_model": self.served.model,
                "served_owned_by": entry.get("owned_by"),
                "identity_note": "as the server reported it: the weights behind a served name can change",
                "revision": self.cfg.revision,
                "api": ServedAPI(self.served.api).value,
                "client_tokenizer": self.served.tokenizer,
                "concurrency": self.concurrency,
                "usd_per_million_input": self.served.usd_per_million_input,
                "usd_per_million_output": self.served.usd_per_million_output,
                "prompt_logprobs_probe": self._probed,
                "openai_client": openai.__version__,
            },
        )

    def unload(self) -> None:
        self.api.close()


def _tokenizer_source(name: str) -> str:
    """A bundled tokenizer or a directory; anything else is taken for a hub id (untested here: no hub)."""
    try:
        return str(tokenizer_path(name))
    except ConfigError:
        return name


class _Sent:
    """The first bytes of a streamed body, kept as the client reads them: what an error about the stream quotes.

    The openai client reads a stream's body through its response's ``iter_bytes`` and keeps none of it; this wraps
    that method on the one response (where a client reads it otherwise, nothing is kept and the error quotes nothing).
    """

    def __init__(self, stream: Any) -> None:
        self.data = bytearray()
        response: Any = getattr(stream, "response", None)
        read = getattr(response, "iter_bytes", None)
        if read is None:
            return

        def iter_bytes(*args: Any, **kwargs: Any) -> Any:
            for piece in read(*args, **kwargs):
                room = SENT_CHARS * 4 - len(self.data)  # UTF-8: at most 4 bytes a character
                if room > 0:
                    self.data.extend(piece[:room])
                yield piece

        response.iter_bytes = iter_bytes

    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


def _sent(response: Any) -> str:
    """What a non-streamed answer was, as text: the body itself when it was not JSON, else the JSON it parsed to."""
    if isinstance(response, str):
        return response
    to_json = getattr(response, "to_json", None)
    try:
        return str(to_json(indent=None)) if to_json else repr(response)
    except Exception:  # an object the client could not serialize back: its repr says enough
        return repr(response)


def _chunk_logprobs(choice: Any, chat: bool) -> list[Optional[float]]:
    lp = getattr(choice, "logprobs", None)
    if lp is None:
        return []
    if chat:
        return [c.logprob for c in (lp.content or [])]
    return list(lp.token_logprobs or [])


def _choice_details(retries: list[Retry]) -> ChoiceDetails:
    return {"retries": retries} if retries else {}


def _tail(tokens: Sequence[str], chars: int) -> list[int]:
    """The indices of the last tokens whose text covers the last ``chars`` characters (at least one token)."""
    covered, i = 0, len(tokens)
    while i > 0 and covered < chars:
        i -= 1
        covered += len(tokens[i])
    return list(range(i, len(tokens)))
