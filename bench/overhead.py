"""The harness's own cost: its wall time for a task against a bare loop of the same forward passes on the same batches.

    python bench/overhead.py [--model smollm2_135m] [--dtype float32] [--limit 64] [--batch-size 8] [--reps 5] [--compile]

Harness: ``evaluate_task`` as a run calls it (prompts, tokenization, length-sorted batching,
log-softmax and choice scoring, metrics, confidences, one flushed JSON line per item).
Bare loop: the same batches, tokenized and padded beforehand (untimed), then only the model's
forward calls the harness makes -- for classification, the context pass and the choices' pass
from its key/value cache; for generation, the prefill and one call per decoding step at the same
lengths, picking the argmax. Alternated, ``--reps`` times each; overhead = harness / bare - 1 on
the medians. Target (issue 10): under 3%.

``--compile`` adds a third row: the harness with ``runtime.compile=true`` (torch.compile of the
model's forward), its first (compiling) pass reported apart.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import _common as C
import torch

from harness.engines.hf import HFEngine, cache_of, choice_forward, prepare_choices, with_cache
from harness.run.evaluate import _choices, batch_order
from harness.tasks.prompts import build_prompt
from harness.tasks.types import TaskType


def bare_batches(engine: HFEngine, t: Any, samples: list, rt: Any) -> list[Any]:
    """The harness's batches (same order, same padding), ready to run."""
    prompts = [build_prompt(t, s, engine.tokenizer, rt.chat_template, rt.num_fewshot) for s in samples]
    order = batch_order(engine, prompts, rt, t.type)
    prompts, samples = [prompts[i] for i in order], [samples[i] for i in order]
    out = []
    for i in range(0, len(samples), rt.batch_size):
        batch_p, batch_s = prompts[i : i + rt.batch_size], samples[i : i + rt.batch_size]
        if t.type is TaskType.classification:
            out.append(prepare_choices(engine.lm, batch_p, [_choices(t, s)[1] for s in batch_s]))
        else:
            ids = [engine.lm.tokenizer(p.text, add_special_tokens=False)["input_ids"] for p in batch_p]
            width = max(len(x) for x in ids)
            pad = engine.lm.tokenizer.pad_token_id
            tensor = torch.tensor([[pad] * (width - len(x)) + x for x in ids], device=engine.device)
            mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=engine.device)
            out.append((tensor, mask))
    return out


@torch.inference_mode()
def bare_loop(model: Any, batches: list[Any], new_tokens: int) -> None:
    for b in batches:
        if not isinstance(b, tuple):
            choice_forward(model, b)
            continue
        ids, mask = b
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1)
        cache, nxt, next_pos = cache_of(out), out.logits[:, -1].argmax(-1), pos[:, -1:] + 1
        for _ in range(new_tokens - 1):
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            out = model(
                input_ids=nxt[:, None],
                attention_mask=mask,
                position_ids=next_pos,
                use_cache=True,
                **with_cache(model, cache),
            )
            nxt, next_pos = out.logits[:, -1].argmax(-1), next_pos + 1
    C.sync(C.DEVICE)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2_135m")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--limit", type=int, default=64)
    ap.add_argument("--gen-limit", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--compile", action="store_true", help="also time runtime.compile=true")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    C.DEVICE = torch.device(args.device)
    lm = C.model(args.model, args.device, args.dtype)
    engine = HFEngine(lm)
    results, rows = [], []
    # generation at a fixed length (min = max new tokens): the bare loop makes exactly the same calls
    for name, limit, fixed in (("seed_claims", args.limit, False), ("seed_summary_paragraph", args.gen_limit, True)):
        t, samples = C.task(name, limit)
        rt = C.runtime(args.device, args.dtype, args.batch_size, fixed_generation_length=fixed)
        batches = bare_batches(engine, t, samples, rt)
        new_tokens = t.spec.max_new_tokens
        h_times, b_times = [], []
        C.harness_pass(engine, t, samples, rt)  # warm both paths
        bare_loop(lm.model, batches, new_tokens)
        for rep in range(args.reps):
            h_times.append(C.harness_pass(engine, t, samples, rt)[0])
            b_times.append(C.timed(lambda: bare_loop(lm.model, batches, new_tokens))[0])
            print(f"  {name} rep {rep + 1}: harness {h_times[-1]:.3f} s, bare {b_times[-1]:.3f} s", flush=True)
        h, b = C.spread(h_times), C.spread(b_times)
        r = {
            "task": name,
            "items": len(samples),
            "batch_size": args.batch_size,
            "harness_s": h,
            "bare_s": b,
            "overhead": h["median"] / b["median"] - 1,
            "harness_runs_s": h_times,
            "bare_runs_s": b_times,
        }
        if args.compile and name == "seed_claims":
            compiled = HFEngine(C.model(args.model, args.device, args.dtype), compile=True)
            first = C.harness_pass(compiled, t, samples, rt)[0]
            c_times = [C.harness_pass(compiled, t, samples, rt)[0] for _ in range(args.reps)]
            r["compiled"] = {
                "first_pass_s": first,
                "runs": C.spread(c_times),
                "vs_eager": C.spread(c_times)["median"] / h["median"],
            }
        results.append(r)
        rows.append(
            [
                name,
                len(samples),
                args.batch_size,
                f"{h['median']:.3f} [{h['min']:.3f}-{h['max']:.3f}]",
                f"{b['median']:.3f} [{b['min']:.3f}-{b['max']:.3f}]",
                f"**{r['overhead']:+.1%}**",
                "met" if r["overhead"] < 0.03 else "NOT met",
            ]
        )
    path = C.write_result(
        "overhead",
        out_dir=args.out,
        payload={"model": args.model, "dtype": args.dtype, "device": args.device, "results": results},
    )
    print(f"\nwrote {path}\n")
    print(
        f"harness vs bare forward loop, {args.model} {args.dtype} on {args.device}, batch {args.batch_size}, {args.reps} reps (wall s: median [min-max])"
    )
    print(C.table(["task", "items", "batch", "harness s", "bare loop s", "overhead", "target < 3%"], rows))
    for r in results:
        if "compiled" in r:
            c = r["compiled"]
            print(
                f"\ntorch.compile ({r['task']}): first pass {c['first_pass_s']:.1f} s (compiling), then {c['runs']['median']:.3f} s median: "
                f"{c['vs_eager']:.2f}x the eager harness time"
            )


if __name__ == "__main__":
    main()
