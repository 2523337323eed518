"""How a model answers a task: log-likelihood of each label, or greedy generation.

Classification follows lm-eval's multiple-choice scoring: each label's
verbalization is scored as a continuation of the prompt, and the highest
summed log-probability wins. Contexts and continuations are tokenized as
lm-eval does (trailing spaces of the context move to the continuation; the
continuation's tokens are those of context+continuation past the context's),
so results match ``lm_eval.simple_evaluate`` for the same prompt.

Sequences are left-padded with explicit position ids, so padding does not
change a result in float32; only the continuation's logits are computed.
"""
from __future__ import annotations

import inspect
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import torch

from harness.models import LoadedModel
from harness.prompts import Prompt
from harness.timing import Stopwatch, TokenClock, generation_timing


@dataclass
class ChoiceScores:
    logliks: list[float]  # summed log-probability of each choice's continuation
    greedy: list[bool]  # whether greedy decoding would produce the continuation exactly
    num_tokens: list[int]
    input_tokens: int  # tokens of the context


@dataclass
class Generation:
    text: str
    output_tokens: int
    input_tokens: int
    mean_logprob: float | None  # mean log-probability of the generated tokens (a confidence)
    latency_s: float
    ttft_s: float | None
    decode_tokens_per_s: float | None


def _encode(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def encode_pair(tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """lm-eval's HFLM._encode_pair: how a (context, continuation) pair is tokenized."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = _encode(tokenizer, context + continuation)
    ctx = _encode(tokenizer, context)
    return ctx, whole[len(ctx):]


def _supports_logits_to_keep(model: Any) -> bool:
    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def _left_pad(seqs: Sequence[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
        mask[row, width - len(seq):] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids.to(device), mask.to(device), positions.to(device)


@torch.inference_mode()
def score_choices(lm: LoadedModel, prompts: Sequence[Prompt], choices: Sequence[str]) -> list[ChoiceScores]:
    """Log-likelihood of every choice after every prompt, in one batched forward pass."""
    tok = lm.tokenizer
    max_len = getattr(lm.model.config, "max_position_embeddings", None) or 1 << 30
    rows: list[tuple[list[int], list[int]]] = []
    ctx_lens = []
    for prompt in prompts:
        for choice in choices:
            ctx, cont = encode_pair(tok, prompt.text, prompt.target_delimiter + choice)
            whole = (ctx + cont)[-(max_len + 1):]  # keep the end, as lm-eval does
            rows.append((whole[:-1], cont))
        ctx_lens.append(len(ctx))
    keep = max(len(cont) for _, cont in rows)
    ids, mask, pos = _left_pad([inp for inp, _ in rows], tok.pad_token_id, lm.device)
    kwargs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask, "position_ids": pos}
    if _supports_logits_to_keep(lm.model):
        kwargs["logits_to_keep"] = keep
    logits = lm.model(**kwargs).logits[:, -keep:, :].float()
    logprobs = torch.log_softmax(logits, dim=-1)

    results = []
    per_prompt = len(choices)
    for p in range(len(prompts)):
        logliks, greedy, ntok = [], [], []
        for c in range(per_prompt):
            r = p * per_prompt + c
            cont = rows[r][1]
            lp = logprobs[r, keep - len(cont):, :]
            target = torch.tensor(cont, device=lp.device)
            logliks.append(float(lp.gather(-1, target[:, None]).sum()))
            greedy.append(bool((lp.argmax(-1) == target).all()))
            ntok.append(len(cont))
        results.append(ChoiceScores(logliks, greedy, ntok, ctx_lens[p]))
    return results


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    cut = len(text)
    for stop in stops:
        i = text.find(stop)
        if i != -1:
            cut = min(cut, i)
    return text[:cut].strip()


@torch.inference_mode()
def generate(lm: LoadedModel, prompts: Sequence[Prompt], max_new_tokens: int, stops: Sequence[str]) -> list[Generation]:
    """Greedy generation for a batch of prompts, timed (latency, time to first token, decode speed)."""
    tok = lm.tokenizer
    encoded = [_encode(tok, p.text) for p in prompts]
    ids, mask, _ = _left_pad(encoded, tok.pad_token_id, lm.device)
    clock = TokenClock(lm.device)
    eos = lm.model.generation_config.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [tok.eos_token_id])
    kwargs: dict[str, Any] = dict(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        temperature=None,
        top_p=None,
        top_k=None,
        logits_processor=[clock],
        return_dict_in_generate=True,
        output_scores=True,
        pad_token_id=tok.pad_token_id,
    )
    if stops:  # stop early once every sequence has produced a stop string
        kwargs.update(stop_strings=list(stops), tokenizer=tok)
    with Stopwatch(lm.device) as sw:
        start = time.perf_counter()
        out = lm.model.generate(**kwargs)
    end = sw.start + sw.elapsed
    new = out.sequences[:, ids.shape[1]:]
    step_logprobs = torch.stack([torch.log_softmax(s.float(), -1) for s in out.scores], dim=1)  # [B, T, V]
    results = []
    for row in range(len(prompts)):
        tokens = new[row].tolist()
        n = len(tokens)
        for i, t in enumerate(tokens):  # the sequence ends at its first EOS
            if t in eos_ids:
                n = i + 1
                break
        kept = [t for t in tokens[:n] if t not in eos_ids]
        text = cut_at_stop(tok.decode(kept, skip_special_tokens=True), stops)
        lps = step_logprobs[row, torch.arange(n), new[row, :n]] if n else torch.empty(0)
        timing = generation_timing(start, end, clock.stamps, n)
        results.append(
            Generation(
                text=text,
                output_tokens=n,
                input_tokens=len(encoded[row]),
                mean_logprob=float(lps.mean()) if n else None,
                latency_s=timing.latency_s,
                ttft_s=timing.ttft_s,
                decode_tokens_per_s=timing.decode_tokens_per_s,
            )
        )
    return results


def batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def softmax(values: Sequence[float]) -> list[float]:
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    total = sum(exps)
    return [e / total for e in exps]
