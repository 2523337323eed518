"""The transformers engine (``engine: hf``): log-likelihood of each label, or greedy generation.

Classification follows lm-eval's multiple-choice scoring: each label's
verbalization is scored as a continuation of the prompt, and the highest
summed log-probability wins. Contexts and continuations are tokenized as
lm-eval does (trailing spaces of the context move to the continuation; the
continuation's tokens are those of context+continuation past the context's),
so results match ``lm_eval.simple_evaluate`` for the same prompt.

Contexts are left-padded with explicit position ids, so padding does not
change a result in float32; only the continuations' logits are computed.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, TypedDict

import torch
from transformers import Cache, StoppingCriteria, StoppingCriteriaList

from harness.config.schema import ModelConfig, RuntimeConfig
from harness.engines.base import ChoiceScores, Engine, Generation, ModelFacts
from harness.engines.tokens import (
    choices_per_prompt,
    cut_at_stop,
    encode,
    encode_pair,
    fit_to_window,
    generation,
    reached_stop,
)
from harness.measure.timing import Stopwatch, TokenClock, generation_timing, synchronize
from harness.models import LoadedModel, load_model
from harness.tasks.prompts import Prompt


def _supports_logits_to_keep(model: Any) -> bool:
    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


@functools.cache
def _cache_arg(model_class: Any) -> str:
    """The forward argument that takes the key/value cache: ``cache`` since transformers 5.24, ``past_key_values`` before
    (the old name warns on every call there and is removed in 5.40). Per class, once: it is asked at every decode step."""
    try:  # the class's forward: an instance's may be wrapped (torch.compile, a test's counter) and hide its signature
        return "cache" if "cache" in inspect.signature(model_class.forward).parameters else "past_key_values"
    except (TypeError, ValueError, AttributeError):
        return "past_key_values"


class CacheArg(TypedDict, total=False):
    """A forward call's key/value cache, under the one name the model's forward takes (``with_cache``)."""

    cache: Cache
    past_key_values: Cache


class LogitsToKeep(TypedDict, total=False):
    logits_to_keep: int  # 1: the output head on the last position only


class ForwardKwargs(CacheArg, LogitsToKeep, total=False):
    """The arguments of a causal LM's forward call as the choice passes make it."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    use_cache: bool


class _GenerateKwargs(TypedDict):
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    max_new_tokens: int
    min_new_tokens: Optional[int]
    do_sample: bool
    temperature: None  # None clears the model's sampling defaults: greedy
    top_p: None
    top_k: None
    logits_processor: list[TokenClock]
    return_dict_in_generate: bool
    output_scores: bool
    pad_token_id: Optional[int]


class GenerateKwargs(_GenerateKwargs, total=False):
    """The arguments of ``generate`` for greedy generation (``generate_plain``)."""

    stopping_criteria: StoppingCriteriaList


def with_cache(model: Any, cache: Cache) -> CacheArg:
    """``{<the model's cache argument>: cache}`` for a forward call."""
    if _cache_arg(type(model)) == "cache":  # type: ignore[arg-type]  # a class is hashable
        return {"cache": cache}
    return {"past_key_values": cache}


def cache_of(out: Any) -> Any:
    """A forward output's key/value cache under its current name (``cache``), else the old one."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def _last_logits_only(model: Any) -> LogitsToKeep:
    """The forward argument that computes the output head on the last position only, where the model takes it."""
    return {"logits_to_keep": 1} if _supports_logits_to_keep(model) else {}


def _left_pad(
    seqs: Sequence[list[int]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
        mask[row, width - len(seq) :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids.to(device), mask.to(device), positions.to(device)


def _choice_logprobs(logprobs: torch.Tensor, targets: list[int]) -> tuple[float, bool]:
    """Summed log-probability of ``targets`` and whether each was the argmax."""
    target = torch.tensor(targets, device=logprobs.device)
    return float(logprobs.gather(-1, target[:, None]).sum()), bool((logprobs.argmax(-1) == target).all())


@dataclass
class ChoiceBatch:
    """A batch of prompts and their choices, tokenized and padded: the tensors of the forward passes.

    Optional prefix pass: prompts of the batch that start alike (the same passage
    or instructions: ``shared_prefixes``) run their common start once, and its
    key/value cache is copied to each of them (``groups``: the prefix row of each
    prompt). Context pass: each prompt's context (or the rest of it after its
    prefix), left-padded with explicit positions, keeping only the last position's
    logits: each choice's first token. Choice pass: every choice's remaining tokens
    from its prompt's cache, copied once per choice (``rows``: the prompt of each
    choice row).
    """

    ids: torch.Tensor
    mask: torch.Tensor
    positions: torch.Tensor
    conts: list[list[list[int]]]  # per prompt, per choice: continuation token ids
    input_tokens: list[int]
    dropped: list[int]
    pre_ids: Optional[torch.Tensor] = None  # prefix pass (None: no shared prefix in this batch)
    pre_mask: Optional[torch.Tensor] = None
    pre_positions: Optional[torch.Tensor] = None
    groups: Optional[torch.Tensor] = None
    rows: Optional[torch.Tensor] = None  # choice pass (None when every choice is one token)
    rest_ids: Optional[torch.Tensor] = None
    rest_mask: Optional[torch.Tensor] = None
    rest_positions: Optional[torch.Tensor] = None


MIN_SHARED_TOKENS = 8  # a shorter common start is not worth a pass of its own


def _common_length(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def prefix_split(
    contexts: Sequence[list[int]], min_shared: int = MIN_SHARED_TOKENS
) -> Optional[tuple[list[int], list[int]]]:
    """(group of each prompt, tokens of each prompt run in the prefix pass), or None when no two neighbours share a start.

    Neighbouring prompts sharing at least ``min_shared`` tokens form a group that
    runs its common start once. A prompt alone in its group runs all but its last
    ``suffix`` tokens in the prefix pass, ``suffix`` being the longest rest of a
    shared group, so the context pass pads little. Every prompt keeps at least one
    token for the context pass, whose last position gives its first choice logits.
    """
    groups, cuts, shared = [0], [], [[0]]
    for i in range(1, len(contexts)):
        common = _common_length(contexts[i - 1], contexts[i])
        if common >= min_shared:
            groups.append(groups[-1])
            shared[-1].append(i)
        else:
            groups.append(groups[-1] + 1)
            shared.append([i])
    multi = [g for g in shared if len(g) > 1]
    if not multi:
        return None
    cut_of: dict[int, int] = {}
    for g in multi:
        cut = min(min(_common_length(contexts[g[0]], contexts[i]) for i in g[1:]), min(len(contexts[i]) - 1 for i in g))
        for i in g:
            cut_of[i] = cut
    suffix = max(len(contexts[i]) - cut_of[i] for i in cut_of)
    for i in range(len(contexts)):
        cuts.append(cut_of[i] if i in cut_of else max(1, min(len(contexts[i]) - 1, len(contexts[i]) - suffix)))
    return groups, cuts


def prepare_choices(
    lm: LoadedModel,
    prompts: Sequence[Prompt],
    choices: Sequence[str] | Sequence[Sequence[str]],
    share_prefixes: bool = True,
) -> ChoiceBatch:
    """Tokenize and pad a batch for ``score_choices`` (no model call)."""
    tok, device = lm.tokenizer, lm.device
    max_len = getattr(lm.model.config, "max_position_embeddings", None) or 1 << 30
    per_prompt = choices_per_prompt(prompts, choices)
    contexts: list[list[int]] = []
    conts: list[list[list[int]]] = []
    dropped: list[int] = []
    for prompt, options in zip(prompts, per_prompt):
        pairs = [encode_pair(tok, prompt.text, prompt.target_delimiter + choice) for choice in options]
        longest = max(len(cont) for _, cont in pairs)
        full = pairs[0][0]
        contexts.append(full[-(max_len - longest) :])  # keep the end (the question is last), as lm-eval does
        dropped.append(len(full) - len(contexts[-1]))
        conts.append([cont for _, cont in pairs])
    split = prefix_split(contexts) if share_prefixes and len(contexts) > 1 else None
    if split is None:
        ids, mask, pos = _left_pad(contexts, tok.pad_token_id, device)
        batch = ChoiceBatch(ids, mask, pos, conts, [len(c) for c in contexts], dropped)
        full_mask = mask
    else:
        groups, cuts = split
        firsts = {g: i for i, g in reversed(list(enumerate(groups)))}  # a group's prefix: its first member's start
        prefixes = [contexts[firsts[g]][: cuts[firsts[g]]] for g in sorted(firsts)]
        pre_ids, pre_mask, pre_pos = _left_pad(prefixes, tok.pad_token_id, device)
        ids, mask, pos = _left_pad([c[cut:] for c, cut in zip(contexts, cuts)], tok.pad_token_id, device)
        group_rows = torch.tensor(groups, device=device)
        pos = pos + torch.tensor(cuts, device=device)[:, None]  # the rest of a prompt continues after its prefix
        batch = ChoiceBatch(
            ids, mask, pos, conts, [len(c) for c in contexts], dropped, pre_ids, pre_mask, pre_pos, group_rows
        )
        full_mask = torch.cat([pre_mask[group_rows], mask], dim=1)
    flat = [c for per in conts for c in per]  # every (prompt, choice), prompt by prompt
    rest_len = max(len(c) for c in flat) - 1
    if rest_len > 0:
        rows = torch.repeat_interleave(torch.arange(len(conts)), torch.tensor([len(per) for per in conts]))
        rest_ids = torch.full((len(flat), rest_len), tok.pad_token_id, dtype=torch.long)
        rest_mask = torch.zeros((len(flat), rest_len), dtype=torch.long)
        for row, cont in enumerate(flat):
            rest_ids[row, : len(cont) - 1] = torch.tensor(cont[:-1], dtype=torch.long)
            rest_mask[row, : len(cont) - 1] = 1
        ctx_mask = full_mask[rows.to(device)]
        ctx_len = ctx_mask.sum(-1)[:, None].cpu()
        batch.rows = rows.to(device)
        batch.rest_ids = rest_ids.to(device)
        batch.rest_mask = torch.cat([ctx_mask, rest_mask.to(device)], dim=1)
        batch.rest_positions = (ctx_len + torch.arange(rest_len)[None, :]).to(device)
    return batch


def choice_forward(model: Any, batch: ChoiceBatch) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """The forward passes: (first-token logits [prompts, V], remaining-token logits [choices, rest, V] or None)."""
    keep = _last_logits_only(model)
    kwargs: ForwardKwargs = {
        "input_ids": batch.ids,
        "attention_mask": batch.mask,
        "position_ids": batch.positions,
        "use_cache": True,
        **keep,
    }
    if batch.pre_ids is not None:
        assert batch.groups is not None and batch.pre_mask is not None
        pre = model(
            input_ids=batch.pre_ids,
            attention_mask=batch.pre_mask,
            position_ids=batch.pre_positions,
            use_cache=True,
            **keep,
        )
        cache = cache_of(pre)
        cache.reorder_cache(batch.groups)  # one copy of a shared prefix's cache per prompt
        kwargs.update(with_cache(model, cache))
        kwargs["attention_mask"] = torch.cat([batch.pre_mask[batch.groups], batch.mask], dim=1)
    out = model(**kwargs)
    if batch.rows is None:
        return out.logits[:, -1, :], None
    cache = cache_of(out)
    cache.reorder_cache(batch.rows)  # one copy of a context's cache per choice
    out2 = model(
        input_ids=batch.rest_ids,
        attention_mask=batch.rest_mask,
        position_ids=batch.rest_positions,
        use_cache=True,
        **with_cache(model, cache),
    )
    return out.logits[:, -1, :], out2.logits


@torch.inference_mode()
def score_choices(
    lm: LoadedModel,
    prompts: Sequence[Prompt],
    choices: Sequence[str] | Sequence[Sequence[str]],
    share_prefixes: bool = True,
) -> list[ChoiceScores]:
    """Log-likelihood of every choice after every prompt.

    ``choices`` is one list shared by every prompt (a task's labels) or one
    list per prompt (sources whose choices vary per item, e.g. BIG-bench).
    The context is run once per prompt and its key/value cache is shared by all
    of its choices (choices are a few tokens; contexts are hundreds), which makes
    scoring about ``len(choices)`` times cheaper than one pass per choice and
    gives the same numbers (see tests/test_scoring.py).
    """
    batch = prepare_choices(lm, prompts, choices, share_prefixes)
    first_logits, rest_logits = choice_forward(lm.model, batch)
    first = torch.log_softmax(first_logits.float(), dim=-1)  # [B, V]: each choice's first token
    rest_logprobs = torch.log_softmax(rest_logits.float(), dim=-1) if rest_logits is not None else None
    results = []
    offset = 0
    for p, per in enumerate(batch.conts):
        logliks, greedy, ntok = [], [], []
        for c, cont in enumerate(per):
            steps = first[p : p + 1]
            if len(cont) > 1:
                assert rest_logprobs is not None
                steps = torch.cat([steps, rest_logprobs[offset + c, : len(cont) - 1]], dim=0)
            ll, is_greedy = _choice_logprobs(steps, cont)
            logliks.append(ll)
            greedy.append(is_greedy)
            ntok.append(len(cont))
        offset += len(per)
        results.append(ChoiceScores(logliks, greedy, ntok, batch.input_tokens[p], batch.dropped[p]))
    return results


class StopOnText(StoppingCriteria):
    """Stop a sequence once its generated text contains a stop string.

    transformers' own ``stop_strings`` preprocesses the whole vocabulary on
    every ``generate`` call (0.8 s per call for a 151k-token vocabulary on a
    CPU, measured here), which would be charged to every request's latency;
    decoding the few new tokens is cheap.
    """

    def __init__(self, tokenizer: Any, stops: list[str], prompt_len: int) -> None:
        self.tokenizer = tokenizer
        self.stops = stops
        self.prompt_len = prompt_len

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_len :], skip_special_tokens=True)
        done = [any(stop in text for stop in self.stops) for text in texts]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)  # type: ignore[return-value]


def _fit_prompts(
    lm: LoadedModel, prompts: Sequence[Prompt], max_new_tokens: int
) -> tuple[list[list[int]], list[list[int]]]:
    """(full token ids, ids that fit): prompt and answer must fit the context window, so the prompt's start is dropped (its question is at the end)."""
    full = [encode(lm.tokenizer, p.text) for p in prompts]
    window = getattr(lm.model.config, "max_position_embeddings", None) or 1 << 30
    return full, [fit_to_window(e, window, max_new_tokens) for e in full]


def _eos_ids(lm: LoadedModel) -> set[int]:
    eos = lm.model.generation_config.eos_token_id
    return set(eos if isinstance(eos, list) else [eos] if eos is not None else [lm.tokenizer.eos_token_id])


def _stop_length(tok: Any, tokens: list[int], stops: Sequence[str]) -> int:
    """The number of tokens up to and including the one whose text completes a stop string (all if none does)."""
    return next((n for n in range(1, len(tokens) + 1) if reached_stop(tok, tokens[:n], stops)), len(tokens))


def _result(
    tok: Any,
    tokens: list[int],
    logprobs: list[float],
    eos_ids: set[int],
    stops: Sequence[str],
    full: list[int],
    kept_prompt: list[int],
    timing: Any,
) -> Generation:
    text = cut_at_stop(tok.decode([t for t in tokens if t not in eos_ids], skip_special_tokens=True), stops)
    return generation(text, logprobs, timing, len(tokens), len(kept_prompt), len(full) - len(kept_prompt))


def lookup_draft(seq: Sequence[int], k: int, max_ngram: int = 3) -> list[int]:
    """Prompt-lookup drafting: the tokens that followed the latest earlier occurrence of the sequence's last n-gram.

    Summaries copy spans of their source and models repeat themselves, so
    the continuation of a matching n-gram is often what the model says next;
    the model still checks every drafted token (``greedy_decode``), so the
    output is the greedy one whatever the draft. (transformers' own
    ``prompt_lookup_num_tokens`` runs inside ``generate``, batch size 1 only,
    with its per-step overhead; this is the same idea in our loop.)
    """
    n_seq = len(seq)
    for n in range(min(max_ngram, n_seq - 1), 0, -1):
        tail = list(seq[n_seq - n :])
        for start in range(n_seq - n - 1, -1, -1):  # latest match first, excluding the tail itself
            if list(seq[start : start + n]) == tail:
                follow = list(seq[start + n : start + n + k])
                if follow:
                    return follow
    return []


@dataclass(frozen=True)
class _Stopping:
    """When a sequence stops: at EOS (not before ``min_new_tokens``), at a stop string or after ``max_new_tokens``."""

    eos_ids: set[int]
    eos_list: torch.Tensor
    stops: Sequence[str]
    max_new_tokens: int
    min_new_tokens: int


@dataclass
class _Decoded:
    """Per sequence: the tokens chosen, their log-probabilities, when each came and when the sequence ended."""

    tokens: list[list[int]]
    logprobs: list[list[float]]
    stamps: list[list[float]]
    ends: list[float]

    @classmethod
    def empty(cls, n: int) -> _Decoded:
        """Nothing decoded yet for ``n`` sequences (an end of 0.0: at the end of the clock)."""
        return cls([[] for _ in range(n)], [[] for _ in range(n)], [[] for _ in range(n)], [0.0] * n)


def _stopping(lm: LoadedModel, stops: Sequence[str], max_new_tokens: int, min_new_tokens: int) -> _Stopping:
    """The stopping rule of one request, built before its clock starts."""
    eos_ids = _eos_ids(lm)
    eos_list = torch.tensor(sorted(eos_ids), device=lm.device)
    return _Stopping(eos_ids, eos_list, stops, max_new_tokens, min_new_tokens)


def _decode_with_drafts(
    lm: LoadedModel, prompt: Prompt, seq: list[int], rule: _Stopping, draft_tokens: int, made: _Decoded, sw: Stopwatch
) -> Optional[Generation]:
    """Decode one prompt on the clock into ``made``; the plain generation instead where the cache cannot be cropped."""
    tok, model, device = lm.tokenizer, lm.model, lm.device
    keep_logits = _last_logits_only(model)
    eos_ids, eos_list, stops = rule.eos_ids, rule.eos_list, rule.stops
    max_new_tokens, min_new_tokens = rule.max_new_tokens, rule.min_new_tokens
    tokens, logprobs, stamps = made.tokens[0], made.logprobs[0], made.stamps[0]
    with sw:
        ids = torch.tensor([seq], device=device)
        out = model(input_ids=ids, use_cache=True, **keep_logits)
        cache = cache_of(out)
        if not hasattr(cache, "crop"):
            return generate_plain(lm, [prompt], max_new_tokens, stops, min_new_tokens)[0]
        pending = out.logits[
            0, -1:, :
        ]  # logits for the next token(s): row j predicts the token after j accepted drafts
        draft: list[int] = []
        done = False
        while not done:
            scores = pending.float()
            step0 = len(tokens)
            for j in range(scores.shape[0]):
                if step0 + j < min_new_tokens:
                    scores[j, eos_list] = -float("inf")
            lp = torch.log_softmax(scores, dim=-1)
            choice = scores.argmax(-1).tolist()
            synchronize(device)
            now = time.perf_counter()
            accepted = 0
            for j, t in enumerate(choice):  # row j: the model's token after the first j drafted ones
                tokens.append(t)
                logprobs.append(float(lp[j, t]))
                stamps.append(now)
                done = t in eos_ids or len(tokens) >= max_new_tokens or reached_stop(tok, tokens, stops)
                if done or j >= len(draft) or draft[j] != t:
                    break
                accepted += 1
            if done:
                break
            if len(draft) > accepted:  # the cache holds every drafted token: drop the rejected ones
                cache.crop(-(len(draft) - accepted))
            seq_all = seq + tokens
            draft = lookup_draft(seq_all, min(draft_tokens, max_new_tokens - len(tokens) - 1))
            feed = torch.tensor([[tokens[-1], *draft]], device=device)
            pos = len(seq_all) - 1
            out = model(
                input_ids=feed,
                position_ids=torch.arange(pos, pos + feed.shape[1], device=device)[None, :],
                use_cache=True,
                **with_cache(model, cache),
            )
            pending = out.logits[0]
    return None


@torch.inference_mode()
def lookup_decode(
    lm: LoadedModel,
    prompt: Prompt,
    max_new_tokens: int,
    stops: Sequence[str],
    min_new_tokens: int = 0,
    draft_tokens: int = 10,
) -> Generation:
    """Greedy generation of one prompt with prompt-lookup drafts checked in one forward pass (latency mode's fast path).

    Each step feeds the last chosen token plus up to ``draft_tokens`` drafted
    ones; drafted tokens are kept while they equal the model's own greedy
    choice, the first disagreement is replaced by the model's token, and the
    key/value cache is cropped to what was kept. The tokens are those of
    one-token-at-a-time greedy decoding (tests/test_fast_paths.py); memory-bound
    decoding checks several tokens for about the price of one.
    """
    full, encoded = _fit_prompts(lm, [prompt], max_new_tokens)
    rule = _stopping(lm, stops, max_new_tokens, min_new_tokens)
    made, sw = _Decoded.empty(1), Stopwatch(lm.device)
    plain = _decode_with_drafts(lm, prompt, list(encoded[0]), rule, draft_tokens, made, sw)
    if plain is not None:
        return plain
    tokens = made.tokens[0]
    timing = generation_timing(sw.start, sw.start + sw.elapsed, made.stamps[0], len(tokens))
    return _result(lm.tokenizer, tokens, made.logprobs[0], rule.eos_ids, stops, full[0], encoded[0], timing)


def _decode_batch(
    lm: LoadedModel, prompts: Sequence[Prompt], encoded: list[list[int]], rule: _Stopping, made: _Decoded, sw: Stopwatch
) -> Optional[list[Generation]]:
    """Decode the batch on the clock into ``made``; the plain generation instead where the cache cannot drop rows."""
    tok, model, device = lm.tokenizer, lm.model, lm.device
    ids, mask, pos = _left_pad(encoded, tok.pad_token_id, device)
    keep_logits = _last_logits_only(model)
    eos_ids, eos_list, stops = rule.eos_ids, rule.eos_list, rule.stops
    max_new_tokens, min_new_tokens = rule.max_new_tokens, rule.min_new_tokens
    tokens, logprobs, stamps, ends = made.tokens, made.logprobs, made.stamps, made.ends
    alive = list(range(len(prompts)))  # prompt index of each row still in the batch
    with sw:
        out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, **keep_logits)
        cache = cache_of(out)
        if not hasattr(cache, "batch_select_indices"):  # a cache that cannot drop rows (some hybrid architectures)
            return generate_plain(lm, prompts, max_new_tokens, stops, min_new_tokens)
        next_pos = pos[:, -1:] + 1
        for step in range(max_new_tokens):
            scores = out.logits[:, -1, :].float()
            if step < min_new_tokens:
                scores[:, eos_list] = -float("inf")
            lp = torch.log_softmax(scores, dim=-1)
            nxt = scores.argmax(-1)
            chosen = lp.gather(-1, nxt[:, None])[:, 0]
            synchronize(device)
            now = time.perf_counter()
            finished = []
            for row, (i, t, l) in enumerate(zip(alive, nxt.tolist(), chosen.tolist())):
                tokens[i].append(t)
                logprobs[i].append(l)
                stamps[i].append(now)
                if t in eos_ids or step == max_new_tokens - 1 or reached_stop(tok, tokens[i], stops):
                    ends[i] = now
                    finished.append(row)
            if len(finished) == len(alive):
                break
            if finished:  # finished sequences leave the batch
                rows = [r for r in range(len(alive)) if r not in finished]
                keep = torch.tensor(rows, device=device)
                cache.batch_select_indices(keep)
                nxt, mask, next_pos = nxt[keep], mask[keep], next_pos[keep]
                alive = [alive[r] for r in rows]
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            out = model(
                input_ids=nxt[:, None],
                attention_mask=mask,
                position_ids=next_pos,
                use_cache=True,
                **with_cache(model, cache),
            )
            next_pos = next_pos + 1
    return None


@torch.inference_mode()
def greedy_decode(
    lm: LoadedModel, prompts: Sequence[Prompt], max_new_tokens: int, stops: Sequence[str], min_new_tokens: int = 0
) -> list[Generation]:
    """Batched greedy generation in a loop of our own (``runtime.decode_loop=harness``, the default).

    Same tokens as ``generate_plain`` (tests/test_fast_paths.py), with less work:
    a sequence that reaches EOS or a stop string leaves the batch (its rows of the
    key/value cache are dropped), so a batch costs its sequences' own lengths, not
    ``batch x longest``; only the last position's logits are computed; no per-step
    logits processors. Each sequence's ``latency_s`` ends at its own last token.
    ``min_new_tokens`` suppresses EOS until then, as transformers does.
    """
    full, encoded = _fit_prompts(lm, prompts, max_new_tokens)
    rule = _stopping(lm, stops, max_new_tokens, min_new_tokens)
    made, sw = _Decoded.empty(len(prompts)), Stopwatch(lm.device)
    plain = _decode_batch(lm, prompts, encoded, rule, made, sw)
    if plain is not None:
        return plain
    results = []
    for i in range(len(prompts)):
        timing = generation_timing(sw.start, made.ends[i] or sw.start + sw.elapsed, made.stamps[i], len(made.tokens[i]))
        results.append(
            _result(lm.tokenizer, made.tokens[i], made.logprobs[i], rule.eos_ids, stops, full[i], encoded[i], timing)
        )
    return results


@torch.inference_mode()
def generate_plain(
    lm: LoadedModel, prompts: Sequence[Prompt], max_new_tokens: int, stops: Sequence[str], min_new_tokens: int = 0
) -> list[Generation]:
    """Greedy generation with transformers' ``generate`` (``runtime.decode_loop=generate``): the reference path.

    ``min_new_tokens == max_new_tokens`` (with no stops) times every model on the same number of
    tokens, as optimum-benchmark does: end-of-sequence is suppressed until then.
    """
    tok = lm.tokenizer
    full, encoded = _fit_prompts(lm, prompts, max_new_tokens)
    ids, mask, _ = _left_pad(encoded, tok.pad_token_id, lm.device)
    clock = TokenClock(lm.device)
    eos_ids = _eos_ids(lm)
    kwargs = GenerateKwargs(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=max_new_tokens,
        min_new_tokens=min_new_tokens or None,
        do_sample=False,
        temperature=None,
        top_p=None,
        top_k=None,
        logits_processor=[clock],
        return_dict_in_generate=True,
        output_scores=True,
        pad_token_id=tok.pad_token_id,
    )
    if stops:
        kwargs["stopping_criteria"] = StoppingCriteriaList([StopOnText(tok, list(stops), ids.shape[1])])
    with Stopwatch(lm.device) as sw:
        out = lm.model.generate(**kwargs)
    start, end = sw.start, sw.start + sw.elapsed
    new = out.sequences[:, ids.shape[1] :]
    step_logprobs = torch.stack([torch.log_softmax(s.float(), -1) for s in out.scores], dim=1)  # [B, T, V]
    results = []
    for row in range(len(prompts)):
        tokens = new[row].tolist()
        n = len(tokens)
        for i, t in enumerate(
            tokens
        ):  # the sequence ends at its first EOS (or stop string: finished rows are padded after it)
            if t in eos_ids:
                n = i + 1
                break
        if stops:
            n = min(n, _stop_length(tok, tokens[:n], stops))
        lps = step_logprobs[row, torch.arange(n), new[row, :n]].tolist() if n else []
        results.append(
            _result(
                tok,
                tokens[:n],
                lps,
                eos_ids,
                stops,
                full[row],
                encoded[row],
                generation_timing(start, end, clock.stamps, n),
            )
        )
    return results


DECODE_LOOPS = {"harness": greedy_decode, "generate": generate_plain}


class HFEngine(Engine):
    """A transformers causal LM from any model source (hub, local, GGUF wheel, random)."""

    name = "hf"

    def __init__(
        self,
        lm: LoadedModel,
        decode_loop: str = "harness",
        compile: bool = False,
        prompt_lookup_tokens: int = 0,
        share_prefixes: bool = True,
    ) -> None:
        if decode_loop not in DECODE_LOOPS:
            raise ValueError(f"unknown decode loop {decode_loop!r}")
        self.lm = lm
        self.decode = DECODE_LOOPS[decode_loop]
        self.decode_loop = decode_loop
        self.compiled = compile
        self.lookup = prompt_lookup_tokens if decode_loop == "harness" else 0
        self.share_prefixes = share_prefixes
        if compile:  # shapes vary with every batch: dynamic, so it is not recompiled per shape
            lm.model.forward = torch.compile(lm.model.forward, dynamic=True)

    @classmethod
    def load(cls, cfg: ModelConfig, runtime: RuntimeConfig, cache_dir: Path) -> HFEngine:
        return cls(
            load_model(cfg, runtime, cache_dir),
            getattr(runtime.decode_loop, "value", runtime.decode_loop),
            runtime.compile,
            runtime.prompt_lookup_tokens,
            runtime.share_prefixes,
        )

    @property
    def model_name(self) -> str:
        return self.lm.name

    @property
    def device(self) -> torch.device:
        return self.lm.device

    @property
    def tokenizer(self) -> Any:
        return self.lm.tokenizer

    def loglikelihood(
        self, prompts: Sequence[Prompt], choices: Sequence[Sequence[str]]
    ) -> tuple[list[ChoiceScores], float]:
        with Stopwatch(self.lm.device) as sw:
            scored = score_choices(self.lm, prompts, choices, self.share_prefixes)
        return scored, sw.elapsed

    def generate_until(
        self, prompts: Sequence[Prompt], max_new_tokens: int, stops: Sequence[str], min_new_tokens: int = 0
    ) -> list[Generation]:
        if self.lookup and len(prompts) == 1:
            return [lookup_decode(self.lm, prompts[0], max_new_tokens, stops, min_new_tokens, self.lookup)]
        return self.decode(self.lm, prompts, max_new_tokens, stops, min_new_tokens)

    def prompt_length(self, prompt: Prompt) -> int:
        return len(encode(self.lm.tokenizer, prompt.text))

    def describe(self) -> ModelFacts:
        lm = self.lm
        return ModelFacts(
            name=lm.name,
            engine=self.name,
            source=lm.source,
            origin=lm.origin,
            device=str(lm.device),
            dtype=str(lm.dtype).replace("torch.", ""),
            dtype_reason=lm.extra.get("dtype_reason", ""),
            load_time_s=lm.load_time_s,
            prepare_s=lm.extra.get("prepare_s", 0.0),
            params=lm.params,
            chat_template=lm.has_chat_template,
            architecture=type(lm.model).__name__,
            extra={
                "threads": torch.get_num_threads(),
                "attention": getattr(lm.model.config, "_attn_implementation", None),
                "decode_loop": self.decode_loop,
                "prompt_lookup_tokens": self.lookup,
                "share_prefixes": self.share_prefixes,
                "compiled": self.compiled,
            },
        )

    def unload(self) -> None:
        self.lm.unload()
