"""What every engine shares about prompts and tokens, so that each engine keeps only what differs.

lm-eval's (context, continuation) split and tokenization, fitting a prompt to the context window, one list of
choices per prompt, stop strings, and a generation's result built from its tokens' log-probabilities. An engine that
works on token ids (hf, llama.cpp, vLLM) uses all of it; one behind a server (openai) uses the text-level parts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

from harness.engines.base import Generation, GenerationDetails
from harness.measure.timing import GenerationTiming
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
