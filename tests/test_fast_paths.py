"""Every fast path gives the plain path's results, on tiny real-architecture models in float32.

- classification: length-sorted batches of 8 and 32 (shared context, continuation logits only)
  against one item at a time in task order: same predictions, log-likelihoods within 1e-4;
- generation: the harness's greedy loop (finished sequences leave the batch) against transformers'
  ``generate`` and against batch size 1: same tokens and texts, with stop strings, EOS and a fixed length;
- timing modes: batch size 1 records each request's latency; larger batches record none, only each
  item's share of its batch.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT

from harness.config.schema import DecodeLoop, RuntimeConfig
from harness.engines.hf import HFEngine, generate_plain, greedy_decode
from harness.results.records import RecordWriter, read_records
from harness.run.evaluate import batch_order, evaluate_task
from harness.tasks.local import find_task, load_task
from harness.tasks.prompts import Prompt
from harness.tasks.types import select_samples

RT = RuntimeConfig(device="cpu", dtype="float32", warmup_steps=0, chat_template=False, progress=False)


def _evaluate(engine, task, samples, tmp_path: Path, **runtime) -> list:
    """Run the real evaluation loop into a cell-like directory and read it back in task order."""
    rt = dataclasses.replace(RT, **runtime)
    cell = tmp_path / f"cell_{task.name}_{'_'.join(f'{k}{v}' for k, v in runtime.items())}"
    cell.mkdir()
    with RecordWriter(cell / "records.jsonl") as writer:
        evaluate_task(engine, task, samples, rt, writer)
    order = {s.id: i for i, s in enumerate(samples)}  # the task's order, as a report reads a cell
    return sorted(read_records(cell / "records.jsonl"), key=lambda r: order[r.sample_id])


@pytest.fixture(scope="module")
def claims():
    task = load_task(find_task("seed_claims", PROJECT_ROOT / "tasks"))
    return task, select_samples(task, 40, 1234)


def test_sorted_batches_score_like_one_item_at_a_time(tiny_llama, claims, tmp_path):
    task, samples = claims
    engine = HFEngine(tiny_llama)
    plain = _evaluate(engine, task, samples, tmp_path, batch_size=1)
    assert len({len(r.prompt) for r in plain}) > 10  # lengths vary: sorting really reorders
    for size in (8, 32):
        fast = _evaluate(engine, task, samples, tmp_path, batch_size=size)
        assert [r.sample_id for r in fast] == [s.id for s in samples]
        assert [r.prediction for r in fast] == [r.prediction for r in plain]
        for a, b in zip(fast, plain):
            assert a.details["logliks"] == pytest.approx(b.details["logliks"], abs=1e-4)
            assert a.details["choice_tokens"] == b.details["choice_tokens"]


def test_length_sorting_orders_longest_first_and_only_when_batching(tiny_llama, claims):
    task, samples = claims
    engine = HFEngine(tiny_llama)
    prompts = [Prompt(text="a " * n, target_delimiter=" ", chat=False) for n in (3, 9, 1, 5)]
    assert engine.prompt_length(prompts[1]) > engine.prompt_length(prompts[0])
    assert batch_order(engine, prompts, dataclasses.replace(RT, batch_size=2)) == [1, 3, 0, 2]
    assert batch_order(engine, prompts, dataclasses.replace(RT, batch_size=1)) == [0, 1, 2, 3]
    assert batch_order(engine, prompts, dataclasses.replace(RT, batch_size=2, sort_by_length=False)) == [0, 1, 2, 3]


PROMPTS = [
    Prompt(text=t, target_delimiter=" ", chat=False)
    for t in (
        "Summarize: the cat sat on the mat.",
        "Summarize in one sentence: small language models are cheaper to run than large ones, and the articles say so many times over.",
        "Hi",
        "Résumez : les petits modèles consomment moins d'énergie que les grands modèles de langue.",
        "要約してください：小さなモデルは安い。",
        "Summarize: mixture-of-experts models activate only a few experts per token.",
    )
]


def _tokens(gens):
    return [(g.text, g.output_tokens, g.input_tokens) for g in gens]


@pytest.mark.parametrize("model", ["tiny_llama", "tiny_olmoe"])
@pytest.mark.parametrize("stops,min_new", [([], 0), (["e"], 0), (["e", "a"], 0), ([], 12)])
def test_greedy_loop_equals_generate_and_batch_size_one(model, stops, min_new, request):
    lm = request.getfixturevalue(model)
    ours = greedy_decode(lm, PROMPTS, max_new_tokens=12, stops=stops, min_new_tokens=min_new)
    theirs = generate_plain(lm, PROMPTS, max_new_tokens=12, stops=stops, min_new_tokens=min_new)
    alone = [greedy_decode(lm, [p], max_new_tokens=12, stops=stops, min_new_tokens=min_new)[0] for p in PROMPTS]
    assert _tokens(ours) == _tokens(theirs) == _tokens(alone)
    for a, b in zip(ours, alone):
        assert a.mean_logprob == pytest.approx(b.mean_logprob, abs=1e-4)
    if stops:  # sequences stopped at different steps: the loop really dropped rows from the batch
        assert len({g.output_tokens for g in ours}) > 1
        assert all(g.latency_s <= max(o.latency_s for o in ours) for g in ours)
    if min_new:
        assert all(g.output_tokens == 12 for g in ours)


def test_greedy_loop_stops_at_eos(tiny_llama):
    """A sequence ends at its first EOS (counted, not in the text), as transformers ends it."""
    lm = tiny_llama
    ids = lm.tokenizer(PROMPTS[0].text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    second = int(lm.model.generate(ids, max_new_tokens=2, do_sample=False)[0, -1])
    eos_before = lm.model.generation_config.eos_token_id
    lm.model.generation_config.eos_token_id = second  # the second generated token is now EOS
    try:
        ours = greedy_decode(lm, PROMPTS[:1], max_new_tokens=4, stops=[])[0]
        theirs = generate_plain(lm, PROMPTS[:1], max_new_tokens=4, stops=[])[0]
    finally:
        lm.model.generation_config.eos_token_id = eos_before
    assert ours.output_tokens == theirs.output_tokens == 2 and ours.text == theirs.text


def test_decode_loop_is_chosen_by_the_runtime(tiny_llama):
    assert HFEngine(tiny_llama).describe().extra["decode_loop"] == "harness"
    assert HFEngine(tiny_llama, DecodeLoop.generate.value).describe().extra["decode_loop"] == "generate"
    with pytest.raises(ValueError):
        HFEngine(tiny_llama, "beam")


def test_summaries_batched_equal_batch_size_one(tiny_llama, tmp_path):
    task = load_task(find_task("seed_summary_paragraph", PROJECT_ROOT / "tasks"))
    samples = select_samples(task, 6, 1234)
    engine = HFEngine(tiny_llama)
    plain = _evaluate(engine, task, samples, tmp_path, batch_size=1, decode_loop=DecodeLoop.generate)
    fast = _evaluate(engine, task, samples, tmp_path, batch_size=4)
    assert [(r.sample_id, r.prediction, r.output_tokens) for r in fast] == [
        (r.sample_id, r.prediction, r.output_tokens) for r in plain
    ]


def test_latency_mode_records_latency_throughput_mode_does_not(tiny_llama, tmp_path):
    task = load_task(find_task("smoke_classify", PROJECT_ROOT / "tasks"))
    engine = HFEngine(tiny_llama)
    one = _evaluate(engine, task, task.samples, tmp_path, batch_size=1)
    assert all(r.latency_s is not None and r.latency_s == r.item_s == r.batch_s for r in one)
    many = _evaluate(engine, task, task.samples, tmp_path, batch_size=4)
    assert all(r.latency_s is None for r in many)
    assert all(r.item_s == pytest.approx(r.batch_s / r.batch_size) for r in many)
    assert sorted(r.batch_size for r in many) == [2, 2, 4, 4, 4, 4]  # 6 items: a batch of 4, then 2
    summary_task = load_task(find_task("smoke_summarize", PROJECT_ROOT / "tasks"))
    gens = _evaluate(engine, summary_task, summary_task.samples, tmp_path, batch_size=3)
    assert all(r.latency_s is None and r.ttft_s is None and r.decode_tokens_per_s is None for r in gens)
    gens1 = _evaluate(engine, summary_task, summary_task.samples, tmp_path, batch_size=1)
    assert all(r.ttft_s is not None and r.ttft_s <= r.latency_s for r in gens1)


def test_lookup_draft_continues_the_latest_matching_ngram():
    from harness.engines.hf import lookup_draft

    assert lookup_draft([5, 6, 7, 8, 9, 5, 6, 7], k=3) == [8, 9, 5]  # "5 6 7" seen before: what followed it
    assert lookup_draft([1, 2, 3, 4], k=3) == []  # nothing repeats
    assert lookup_draft([1, 2, 1, 3, 1], k=2) == [3, 1]  # the latest earlier "1"


@pytest.mark.parametrize("model", ["tiny_llama", "tiny_olmoe"])
@pytest.mark.parametrize("stops,min_new", [([], 0), (["e"], 0), ([], 16)])
def test_prompt_lookup_keeps_the_greedy_output(model, stops, min_new, request):
    """Drafted tokens checked by the model in one pass: the same tokens as one-at-a-time greedy decoding.

    A repetitive prompt makes drafts match, so tokens are really accepted and the cache really cropped.
    """
    from harness.engines.hf import lookup_decode

    lm = request.getfixturevalue(model)
    calls = {"n": 0}
    forward = lm.model.forward

    def counting(*args, **kwargs):
        calls["n"] += 1
        return forward(*args, **kwargs)

    prompts = PROMPTS + [Prompt(text="one two three four " * 12, target_delimiter=" ", chat=False)]
    tokens = 0
    for prompt in prompts:
        plain = greedy_decode(lm, [prompt], max_new_tokens=16, stops=stops, min_new_tokens=min_new)[0]
        lm.model.forward = counting
        try:
            fast = lookup_decode(lm, prompt, max_new_tokens=16, stops=stops, min_new_tokens=min_new, draft_tokens=4)
        finally:
            lm.model.forward = forward
        assert (fast.text, fast.output_tokens) == (plain.text, plain.output_tokens)
        assert fast.mean_logprob == pytest.approx(plain.mean_logprob, abs=1e-4)
        tokens += fast.output_tokens
    if not stops:  # without drafts every token costs a forward pass (the prefill gives the first)
        assert calls["n"] < tokens, "no drafted token was ever accepted: the test does not exercise the fast path"
    engine = HFEngine(lm, prompt_lookup_tokens=4)
    assert engine.describe().extra["prompt_lookup_tokens"] == 4
    assert _tokens(engine.generate_until(PROMPTS[:1], 8, [])) == _tokens(greedy_decode(lm, PROMPTS[:1], 8, []))


def test_shared_prefixes_score_like_separate_prompts(tiny_llama, tiny_olmoe, claims):
    """Prompts that start alike run their start once; every log-likelihood is the one of the whole prompt."""
    from harness.engines.hf import prefix_split, score_choices

    task, samples = claims
    by_passage: dict[str, list] = {}
    for s in task.samples:
        by_passage.setdefault(s.fields["evidence"], []).append(s)
    group = next(g for g in by_passage.values() if len(g) >= 3)[:3]
    alone = next(g for g in by_passage.values() if len(g) == 1)[0]
    prompts = [
        Prompt(
            text=f"Passage: {s.fields['evidence']}\nClaim: {s.fields['claim']}\nAnswer:",
            target_delimiter=" ",
            chat=False,
        )
        for s in [*group, alone]
    ]
    prompts.append(
        Prompt(text="Passage: short.\nClaim: x\nAnswer:", target_delimiter=" ", chat=False)
    )  # shares "Passage:" only
    labels = ["supported", "contradicted", "not mentioned"]
    for lm in (tiny_llama, tiny_olmoe):
        contexts = [lm.tokenizer(p.text, add_special_tokens=False)["input_ids"] for p in prompts]
        groups, cuts = prefix_split(contexts)
        assert (
            groups[:3] == [0, 0, 0] and len(set(groups)) == 3 and cuts[0] > 20
        )  # the passage is run once for three prompts
        shared = score_choices(lm, prompts, labels, share_prefixes=True)
        plain = [score_choices(lm, [p], labels, share_prefixes=False)[0] for p in prompts]
        for a, b in zip(shared, plain):
            assert a.logliks == pytest.approx(b.logliks, abs=1e-4) and a.input_tokens == b.input_tokens


def test_batches_keep_prompts_with_the_same_start_together(tiny_llama, claims):
    task, samples = claims
    engine = HFEngine(tiny_llama)
    rt = dataclasses.replace(RT, batch_size=8)
    from harness.tasks.prompts import build_prompt

    prompts = [build_prompt(task, s, engine.tokenizer, False) for s in task.samples]
    order = batch_order(engine, prompts, rt, task.type)
    assert sorted(order) == list(range(len(prompts)))
    passages = [task.samples[i].fields["evidence"] for i in order]
    runs = sum(1 for a, b in zip(passages, passages[1:]) if a != b) + 1
    assert runs == len(set(passages))  # each passage's items are consecutive
