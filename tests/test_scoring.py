"""Log-likelihood scoring and generation, checked against direct computations."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from harness.engines.hf import cut_at_stop, encode_pair, score_choices
from harness.engines.hf import generate_plain as generate
from harness.tasks.local import load_task
from harness.tasks.prompts import Prompt, build_prompt

PROMPTS = [
    Prompt("Review: the screen cracked on day one.\nSentiment:", " ", False),
    Prompt("Review: lovely, quiet and it works perfectly well every single day.\nSentiment:", " ", False),
    Prompt("Is it good?", " ", False),
]
CHOICES = ["positive", "negative", "not sure at all"]


def _direct_loglik(lm, context: str, continuation: str) -> float:
    """Unbatched, unpadded: sum of log p(continuation token | everything before)."""
    ctx, cont = encode_pair(lm.tokenizer, context, continuation)
    ids = torch.tensor([ctx + cont])
    with torch.no_grad():
        logprobs = torch.log_softmax(lm.model(ids).logits[0].float(), -1)
    return float(sum(logprobs[len(ctx) - 1 + i, t] for i, t in enumerate(cont)))


@pytest.mark.parametrize("which", ["tiny_llama", "tiny_olmoe"])
def test_batched_logliks_match_direct_computation(which, request):
    lm = request.getfixturevalue(which)
    scored = score_choices(lm, PROMPTS, CHOICES)  # one padded batch of 9 sequences
    for prompt, sc in zip(PROMPTS, scored):
        for choice, ll in zip(CHOICES, sc.logliks):
            assert ll == pytest.approx(_direct_loglik(lm, prompt.text, " " + choice), abs=1e-4)


def test_results_do_not_depend_on_batch_size_in_float32(tiny_llama):
    together = score_choices(tiny_llama, PROMPTS, CHOICES)
    alone = [score_choices(tiny_llama, [p], CHOICES)[0] for p in PROMPTS]
    for a, b in zip(together, alone):
        assert a.logliks == pytest.approx(b.logliks, abs=1e-4)
        assert max(range(3), key=a.logliks.__getitem__) == max(range(3), key=b.logliks.__getitem__)


def test_encode_pair_moves_trailing_space_like_lm_eval(tiny_llama):
    ctx, cont = encode_pair(tiny_llama.tokenizer, "Answer: ", "yes")
    ctx2, cont2 = encode_pair(tiny_llama.tokenizer, "Answer:", " yes")
    assert (ctx, cont) == (ctx2, cont2)


def test_greedy_generation_matches_manual_argmax_loop(tiny_llama):
    prompt = Prompt("Summarize: the council approved a bridge.\nSummary:", " ", False)
    out = generate(tiny_llama, [prompt], max_new_tokens=6, stops=[])[0]
    ids = tiny_llama.tokenizer(prompt.text, add_special_tokens=False, return_tensors="pt").input_ids
    eos = tiny_llama.model.generation_config.eos_token_id
    manual = []
    with torch.no_grad():
        for _ in range(6):
            nxt = int(tiny_llama.model(ids).logits[0, -1].argmax())
            manual.append(nxt)
            if nxt == eos:
                break
            ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
    expected = tiny_llama.tokenizer.decode([t for t in manual if t != eos], skip_special_tokens=True).strip()
    assert out.text == expected
    assert out.output_tokens == len(manual)
    assert out.latency_s > 0 and out.ttft_s is not None and 0 < out.ttft_s <= out.latency_s
    assert out.mean_logprob is not None and out.mean_logprob <= 0


def test_batched_generation_equals_one_by_one(tiny_llama):
    prompts = [Prompt("One two three", " ", False), Prompt("A much longer prompt about bridges and rivers", " ", False)]
    together = generate(tiny_llama, prompts, max_new_tokens=5, stops=[])
    alone = [generate(tiny_llama, [p], max_new_tokens=5, stops=[])[0] for p in prompts]
    assert [g.text for g in together] == [g.text for g in alone]


def test_cut_at_stop():
    assert cut_at_stop("A bridge.\nNext item", ["\n"]) == "A bridge."
    assert cut_at_stop("no stop here", ["\n\n"]) == "no stop here"


def test_chat_template_prompt_and_fewshot(tiny_llama):
    task = load_task(Path(__file__).resolve().parent.parent / "tasks" / "smoke" / "smoke_classify.yaml")
    sample = task.samples[0]
    chat = build_prompt(task, sample, tiny_llama.tokenizer, use_chat=True, num_fewshot=2)
    assert chat.chat and chat.target_delimiter == ""
    assert chat.text.count("<|im_start|>user") == 3 and chat.text.endswith("<|im_start|>assistant\n")
    plain = build_prompt(task, sample, tiny_llama.tokenizer, use_chat=False, num_fewshot=1)
    shot = task.fewshot[0]
    assert plain.text.startswith(f"Review: {shot.fields['text']}") and plain.text.endswith("Answer:")
    assert f"Answer: {shot.target}\n\n" in plain.text


def test_stop_on_text_stops_each_row_independently(tiny_llama):
    from harness.engines.hf import StopOnText

    tok = tiny_llama.tokenizer
    prompt = tok("Summary:", add_special_tokens=False).input_ids
    rows = [
        prompt + tok(" A bridge.\nNext", add_special_tokens=False).input_ids,
        prompt + tok(" A bridge and more", add_special_tokens=False).input_ids,
    ]
    width = max(map(len, rows))
    ids = torch.tensor([r + [tok.pad_token_id] * (width - len(r)) for r in rows])
    done = StopOnText(tok, ["\n"], len(prompt))(ids, torch.zeros(2, 5))
    assert done.tolist() == [True, False]


def test_shared_context_scoring_handles_single_token_choices(tiny_llama):
    """All choices one token long: no second pass; still equal to the direct computation."""
    choices = ["A", "B"]
    scored = score_choices(tiny_llama, PROMPTS[:2], choices)
    for prompt, sc in zip(PROMPTS[:2], scored):
        assert sc.num_tokens == [1, 1]
        for choice, ll in zip(choices, sc.logliks):
            assert ll == pytest.approx(_direct_loglik(tiny_llama, prompt.text, " " + choice), abs=1e-4)


@pytest.mark.parametrize("which", ["tiny_llama", "tiny_olmoe"])
def test_per_prompt_choices_match_direct_computation(which, request):
    """Each prompt with its own choices (BIG-bench, lm-eval): different counts and lengths in one batch."""
    lm = request.getfixturevalue(which)
    per_prompt = [["yes", "no"], ["a long answer about the screen", "B", "not sure at all", "x"], ["one"]]
    scored = score_choices(lm, PROMPTS, per_prompt)
    for prompt, choices, sc in zip(PROMPTS, per_prompt, scored):
        assert len(sc.logliks) == len(choices) == len(sc.num_tokens)
        for choice, ll in zip(choices, sc.logliks):
            assert ll == pytest.approx(_direct_loglik(lm, prompt.text, " " + choice), abs=1e-4)
    shared = score_choices(lm, PROMPTS, [CHOICES] * len(PROMPTS))  # a list per prompt == one shared list
    for a, b in zip(shared, score_choices(lm, PROMPTS, CHOICES)):
        assert a.logliks == pytest.approx(b.logliks, abs=1e-5)


def test_prompt_of_a_source_item_is_used_as_is(tiny_llama):
    """A sample with its own rendered prompt and choices (BIG-bench, lm-eval) bypasses the task template."""
    from harness.tasks.types import Sample, Task, TaskSpec, TaskType

    spec = TaskSpec(name="t", type=TaskType.classification, data="-", prompt="{input}", target_delimiter="")
    sample = Sample(
        id="1", fields={"input": "ignored"}, target="yes", line=1, prompt="\nQ: Is it?\nA: ", choices=["yes", "no"]
    )
    task = Task(spec=spec, path=Path("-"), data_path=Path("-"), samples=[sample], fewshot=[])
    plain = build_prompt(task, sample, tiny_llama.tokenizer, use_chat=False)
    assert plain.text == "\nQ: Is it?\nA: " and plain.target_delimiter == ""
    chat = build_prompt(task, sample, tiny_llama.tokenizer, use_chat=True)
    assert chat.chat and "Q: Is it?\nA:" in chat.text and "ignored" not in chat.text
