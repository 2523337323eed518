"""The harness against lm-eval's HFLM: same loaded model, same items, same prompts, alternated in one process.

    python bench/vs_lmeval.py [--model smollm2_135m] [--dtype float32] [--limit 64] [--gen-limit 16] [--reps 3]

Three cases: multi-token labels (seed_claims), single-token labels (BIG-bench FEVER, " true"/" false")
and generation (seed_summary_paragraph: greedy, stop at a newline, at most 60 tokens, with the model's
chat template on both sides -- without it the instruct model ends every summary at its first token,
which would time prompts only). Each task is
exported with ``harness export-lmeval``'s code and run by ``lm_eval.simple_evaluate`` on an ``HFLM``
wrapping the very model object the harness scores with.

Round 0 runs both at batch sizes 1, 8 and 32 and keeps each one's fastest; then ``--reps`` rounds
alternate the two at those sizes. Printed: medians and ranges of the wall times, the ratio of the
medians (lm-eval / harness: above 1 means the harness is faster), and how often the two agree
(predicted label, log-likelihoods, generated text). Timed: the evaluation call itself -- the
harness's evaluate_task (prompts, scoring, metrics, records written to disk) and lm-eval's
simple_evaluate (its task building, requests, metrics); lm-eval's TaskManager index is built once,
outside the timing, and neither side warms up inside the timing (round 0 warms both).
Targets (issue 10): >= 4x with multi-token labels, >= 1.5x with single-token labels, >= 1.5x on generation,
identical predictions in float32.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path
from typing import Any

import _common as C

from harness.engines.hf import HFEngine
from harness.tasks.export_lmeval import export_tasks

CASES = [
    ("multi-token labels", "seed_claims", 4.0),
    ("single-token labels", "bigbench:fact_checker/fever", 1.5),
    ("generation", "seed_summary_paragraph", 1.5),
]


def lmeval_pass(
    lm: Any, task_name: str, tm: Any, batch_size: int, chat: bool = False
) -> tuple[float, list[dict[str, Any]]]:
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    hflm = HFLM(pretrained=lm.model, tokenizer=lm.tokenizer, batch_size=batch_size)
    wall, out = C.timed(
        lambda: simple_evaluate(
            model=hflm,
            tasks=[task_name],
            task_manager=tm,
            log_samples=True,
            bootstrap_iters=0,
            apply_chat_template=chat,
            verbosity="ERROR",
        )
    )
    return wall, sorted(out["samples"][task_name], key=lambda s: s["doc_id"])


def agreement(kind: str, ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> dict[str, Any]:
    """Item by item: same label (and log-likelihood gap), or same generated text."""
    assert len(ours) == len(theirs), (len(ours), len(theirs))
    if kind == "generation":
        same = sum(o["prediction"].strip() == str(t["filtered_resps"][0]).strip() for o, t in zip(ours, theirs))
        return {"same": same, "n": len(ours)}
    same, gap = 0, 0.0
    for o, t in zip(ours, theirs):
        mine = o["details"]["logliks"]
        other = [float(r[0]) for r in t["filtered_resps"]]
        same += max(range(len(mine)), key=mine.__getitem__) == max(range(len(other)), key=other.__getitem__)
        gap = max(gap, max(abs(a - b) for a, b in zip(mine, other)))
    return {"same": same, "n": len(ours), "max_abs_loglik_diff": gap}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2_135m")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--limit", type=int, default=64, help="items per classification task (null: all)")
    ap.add_argument("--gen-limit", type=int, default=16, help="paragraphs for the generation case")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--batch-sizes", default="1,8,32")
    ap.add_argument("--cases", default="all", help="comma-separated: multi,single,generation")
    ap.add_argument("--out", type=Path, default=None, help="directory for the JSON (default results/bench)")
    args = ap.parse_args()
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    from lm_eval.tasks import TaskManager

    sizes = [int(b) for b in args.batch_sizes.split(",")]
    wanted = (
        {c.split("-")[0] for c in args.cases.split(",")} if args.cases != "all" else {"multi", "single", "generation"}
    )
    lm = C.model(args.model, args.device, args.dtype)
    engine = HFEngine(lm)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        cases = []
        for kind, name, target in CASES:
            if kind.split("-")[0] not in wanted:
                continue
            t, samples = C.task(name, args.gen_limit if kind == "generation" else args.limit)
            export_tasks([t], Path(tmp) / "lmeval")
            cases.append((kind, t, samples, target))
        tm = TaskManager(
            include_path=str(Path(tmp) / "lmeval")
        )  # indexing lm-eval's own tasks takes seconds: outside the timing
        for kind, t, samples, target in cases:
            print(f"[{kind}] {t.name}: {len(samples)} items, {args.model} {args.dtype} on {args.device}", flush=True)
            # generation with the chat template where the model has one (an instruct model answers, then stops
            # by itself at its own length), on both sides; classification without (lm-eval's default)
            chat = kind == "generation" and lm.has_chat_template
            calib: dict[str, dict[int, float]] = {"harness": {}, "lm-eval": {}}
            for b in sizes:  # round 0: each side at every batch size, alternated
                calib["harness"][b], ours = C.harness_pass(
                    engine, t, samples, C.runtime(args.device, args.dtype, b, chat_template=chat)
                )
                calib["lm-eval"][b], theirs = lmeval_pass(lm, t.name, tm, b, chat)
                print(
                    f"  batch {b:>2}: harness {calib['harness'][b]:7.2f} s, lm-eval {calib['lm-eval'][b]:7.2f} s",
                    flush=True,
                )
            hb, lb = min(calib["harness"], key=calib["harness"].get), min(calib["lm-eval"], key=calib["lm-eval"].get)
            h_times, l_times = [], []
            for rep in range(args.reps):
                wall, ours = C.harness_pass(
                    engine, t, samples, C.runtime(args.device, args.dtype, hb, chat_template=chat)
                )
                h_times.append(wall)
                wall, theirs = lmeval_pass(lm, t.name, tm, lb, chat)
                l_times.append(wall)
                print(
                    f"  rep {rep + 1}: harness {h_times[-1]:7.2f} s (batch {hb}), lm-eval {l_times[-1]:7.2f} s (batch {lb})",
                    flush=True,
                )
            agree = agreement(kind, ours, theirs)
            h, l_ = C.spread(h_times), C.spread(l_times)
            results.append(
                {
                    "case": kind,
                    "task": t.name,
                    "items": len(samples),
                    "chat_template": chat,
                    "output_tokens": sum(r["output_tokens"] for r in ours),
                    "calibration_s": calib,
                    "harness_batch": hb,
                    "lmeval_batch": lb,
                    "harness_s": h,
                    "lmeval_s": l_,
                    "speedup": l_["median"] / h["median"],
                    "target": target,
                    "agreement": agree,
                    "harness_runs_s": h_times,
                    "lmeval_runs_s": l_times,
                }
            )
    path = C.write_result(
        "vs_lmeval",
        out_dir=args.out,
        payload={"model": args.model, "dtype": args.dtype, "device": args.device, "reps": args.reps, "cases": results},
    )
    rows = []
    for r in results:
        a = r["agreement"]
        agree = f"{a['same']}/{a['n']} same " + (
            "text" if r["case"] == "generation" else f"label, max abs loglik diff {a['max_abs_loglik_diff']:.1e}"
        )
        rows.append(
            [
                r["case"],
                r["task"],
                r["items"],
                f"{r['harness_s']['median']:.2f} [{r['harness_s']['min']:.2f}-{r['harness_s']['max']:.2f}] (batch {r['harness_batch']})",
                f"{r['lmeval_s']['median']:.2f} [{r['lmeval_s']['min']:.2f}-{r['lmeval_s']['max']:.2f}] (batch {r['lmeval_batch']})",
                f"**{r['speedup']:.2f}x**",
                f">= {r['target']:g}x {'met' if r['speedup'] >= r['target'] else 'NOT met'}",
                agree,
            ]
        )
    print(f"\nwrote {path}\n")
    print(
        f"harness vs lm-eval {C.lmeval_version()} HFLM, {args.model} {args.dtype} on {args.device}, {args.reps} reps (wall s: median [min-max])"
    )
    print(
        C.table(
            ["case", "task", "items", "harness s", "lm-eval s (its best batch)", "speed-up", "target", "agreement"],
            rows,
        )
    )


if __name__ == "__main__":
    main()
