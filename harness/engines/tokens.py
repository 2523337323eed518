"""What every engine shares about prompts and tokens, so that each engine keeps only what differs.

lm-eval's (context, continuation) split and tokenization, fitting a prompt to the context window, one list of
choices per prompt, stop strings, and a generation's result built from its tokens' log-probabilities. An engine that
runs a model config's token ids subclasses ``TokenEngine`` (llama.cpp, vLLM: lm-eval's ``TemplateLM`` is the model);
the hf engine, which owns a loaded transformers model, and the openai engine, whose server tokenizes, use the
functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

from harness.config.schema import ModelConfig, source_name
from harness.engines.base import Engine, Generation, GenerationDetails, ModelFacts
from harness.measure.timing import GenerationTiming
from harness.models.params import ParamCounts
from harness.tasks.prompts import Prompt


def split_pair(context: str, continuation: str) -> tuple[str, str]:
    """lm-eval's rule: the context's trailing white space belongs to the continuation."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        return context[:-n_spaces], context[-n_spaces:] + continuation
    return context, continuation


def encode(tokenizer: Any, text: str) -> list[int]:
    """A Hugging Face tokenizer's ids for ``text``, no special tokens (the chat template, if any, is in the text)."""
    ids: list[int] = tokenizer(text, add_special_tokens=False)["input_ids"]
    return ids


def encode_pair(tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """lm-eval's HFLM._encode_pair: the continuation's tokens are those of context + continuation past the context's."""
    context, continuation = split_pair(context, continuation)
    whole = encode(tokenizer, context + continuation)
    ctx = encode(tokenizer, context)
    return ctx, whole[len(ctx) :]


def fit_to_window(tokens: list[int], window: int, room_after: int) -> list[int]:
    """The end of ``tokens`` that leaves ``room_after`` positions in a ``window``-token context (the question is last)."""
    return tokens[-max(1, window - room_after) :]


def choices_per_prompt(prompts: Sequence[Prompt], choices: Sequence[str] | Sequence[Sequence[str]]) -> list[list[str]]:
    """One list of choices per prompt: the same list for all (a label set) or each prompt's own."""
    if choices and all(isinstance(c, str) for c in choices):
        return [list(choices)] * len(prompts)  # type: ignore[arg-type]
    if len(choices) != len(prompts):
        raise ValueError(f"{len(choices)} choice lists for {len(prompts)} prompts")
    return [list(c) for c in choices]


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    """``text`` up to the first stop string, stripped."""
    cut = len(text)
    for stop in stops:
        i = text.find(stop)
        if i != -1:
            cut = min(cut, i)
    return text[:cut].strip()


def reached_stop(tok: Any, tokens: list[int], stops: Sequence[str]) -> bool:
    """Whether the text of the generated tokens contains a stop string."""
    return bool(stops) and any(stop in tok.decode(tokens, skip_special_tokens=True) for stop in stops)


def generation(
    text: str,
    logprobs: Sequence[float],
    timing: GenerationTiming,
    output_tokens: int,
    input_tokens: int,
    tokens_dropped: int = 0,
    details: Optional[GenerationDetails] = None,
) -> Generation:
    """A generation's result; its confidences are the mean and the minimum of its tokens' log-probabilities."""
    return Generation(
        text=text,
        output_tokens=output_tokens,
        input_tokens=input_tokens,
        tokens_dropped=tokens_dropped,
        mean_logprob=sum(logprobs) / len(logprobs) if logprobs else None,
        min_logprob=min(logprobs) if logprobs else None,
        latency_s=timing.latency_s,
        ttft_s=timing.ttft_s,
        decode_tokens_per_s=timing.decode_tokens_per_s,
        details=details or {},
    )


class TokenEngine(Engine):
    """An engine on a model config's token ids: it names the model, holds its tokenizer and context window, encodes
    each choice by lm-eval's rule and fits prompts to the window; a subclass adds how its runtime scores and
    generates those tokens (``load``, ``device``, ``loglikelihood``, ``generate_until``, ``describe``)."""

    def __init__(self, cfg: ModelConfig, tokenizer: Any, window: int) -> None:
        self.cfg, self._tok, self.window = cfg, tokenizer, window

    @property
    def model_name(self) -> str:
        return self.cfg.name

    @property
    def tokenizer(self) -> Any:
        return self._tok

    def encode(self, text: str) -> list[int]:
        """The prompt's token ids, no special tokens (the chat template, if any, is in the text)."""
        return encode(self._tok, text)

    def prompt_length(self, prompt: Prompt) -> int:
        return len(self.encode(prompt.text))

    def choice_pairs(self, prompt: Prompt, options: Sequence[str]) -> list[tuple[list[int], list[int]]]:
        """Each choice's (context, continuation) token ids after the prompt, by lm-eval's rule."""
        return [encode_pair(self._tok, prompt.text, prompt.target_delimiter + choice) for choice in options]

    def fit(self, tokens: list[int], room_after: int) -> list[int]:
        """The end of a prompt's tokens that leaves ``room_after`` positions in the window."""
        return fit_to_window(tokens, self.window, room_after)

    def facts(
        self, origin: str, device: str, dtype: str, params: ParamCounts, load_time_s: float, **more: Any
    ) -> ModelFacts:
        """``describe()``'s record: the model's name, engine, source and chat template, with the subclass's facts."""
        chat = bool(getattr(self._tok, "chat_template", None))
        return ModelFacts(
            self.cfg.name,
            self.name,
            source_name(self.cfg),
            origin,
            device,
            dtype,
            params,
            load_time_s,
            chat_template=chat,
            **more,
        )
