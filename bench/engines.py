"""The engines side by side on this CPU: same models, same items, same evaluation loop.

    python bench/engines.py [--models smollm2_135m,qwen25_coder_15b] [--engines hf,llamacpp] [--claims 20] [--summaries 5]

Each (model, engine) runs in a fresh process of its own, one after the other (its peak RSS is its
own; nothing else is timed beside it), through the harness's own loop (``evaluate_task``, chat
template on, batch 1: latency mode), the hf engine in the dtype ``runtime.dtype=auto`` picks here:
- classification: ``seed_claims`` items per second;
- generation: ``seed_summary_paragraph`` p50 latency, p50 time to first token, median decode tokens/s;
- peak RSS of the process;
- decode bytes per token: the weights every decoded token reads (all tensors but the input
  embedding table, of which one row is read), in the engine's own format (GGUF tensors as stored
  for llamacpp; parameters x dtype size for hf), times decode tokens/s, as a share of this
  machine's copy bandwidth (a 256 MiB tensor copy, bytes read + written, best of 5).
Targets (issue 17): llamacpp decodes the 1.5B model >= 3x faster than hf in its auto dtype, at >= 60%
of the bandwidth bound, with a time to first token no worse than hf's.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import _common as C
import torch


def weight_bytes_read_per_token(engine: Any) -> int:
    """Bytes of weights a decoded token reads: every tensor but the input embedding table."""
    if engine.name == "llamacpp":
        from gguf import GGUFReader

        reader = GGUFReader(str(engine.path))
        return int(sum(int(t.n_bytes) for t in reader.tensors if t.name != "token_embd.weight"))
    model = engine.lm.model
    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    total = sum(p.numel() * p.element_size() for p in model.parameters())  # a tied weight is listed once
    return total if head is not None and head.weight is emb else total - emb.numel() * emb.element_size()


def one(model: str, engine_name: str, dtype: str, claims: int, summaries: int, threads: int) -> dict[str, Any]:
    """One (model, engine) in this process: the figures, as JSON on stdout."""
    from harness.config.schema import load_model_config
    from harness.engines import load_engine
    from harness.models.loader import default_cache_dir

    torch.set_num_threads(threads)
    rt = C.runtime("cpu", dtype, engine=engine_name, chat_template=True, num_threads=threads)
    engine = load_engine(load_model_config(model), rt, default_cache_dir())
    described = engine.describe().to_dict()
    t, samples = C.task("seed_claims", claims)
    C.harness_pass(engine, t, samples[:2], rt)  # warm-up: first calls allocate
    cls_wall, _ = C.harness_pass(engine, t, samples, rt)
    g, gsamples = C.task("seed_summary_paragraph", summaries)
    gen_wall, recs = C.harness_pass(engine, g, gsamples, rt)
    lat = [r["latency_s"] for r in recs]
    ttft = [r["ttft_s"] for r in recs if r.get("ttft_s") is not None]
    tps = [r["decode_tokens_per_s"] for r in recs if r.get("decode_tokens_per_s")]
    out = {
        "model": model,
        "engine": engine_name,
        "dtype": described["dtype"],
        "dtype_reason": described.get("dtype_reason"),
        "threads": threads,
        "load_time_s": described["load_time_s"],
        "claims_items": len(samples),
        "claims_wall_s": cls_wall,
        "claims_items_per_s": len(samples) / cls_wall,
        "summaries_items": len(gsamples),
        "summaries_wall_s": gen_wall,
        "p50_latency_s": statistics.median(lat),
        "p50_ttft_s": statistics.median(ttft) if ttft else None,
        "decode_tokens_per_s": statistics.median(tps) if tps else None,
        "output_tokens": [r["output_tokens"] for r in recs],
        "input_tokens": [r["input_tokens"] for r in recs],
        "decode_bytes_per_token": weight_bytes_read_per_token(engine),
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }
    engine.unload()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="smollm2_135m,qwen25_coder_15b")
    ap.add_argument("--engines", default="hf,llamacpp")
    ap.add_argument("--dtype", default="auto", help="the hf engine's runtime.dtype (llamacpp runs the GGUF as stored)")
    ap.add_argument("--claims", type=int, default=20)
    ap.add_argument("--summaries", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="0: the cores this process may use")
    ap.add_argument("--one", nargs=2, metavar=("MODEL", "ENGINE"), help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    from harness.models.precision import usable_cores

    threads = args.threads or usable_cores()
    if args.one:
        print(
            "RESULT "
            + json.dumps(
                one(
                    args.one[0],
                    args.one[1],
                    "auto" if args.one[1] == "llamacpp" else args.dtype,
                    args.claims,
                    args.summaries,
                    threads,
                )
            )
        )
        return
    bw = C.bandwidth("cpu", 256, 5)
    results = []
    for model in args.models.split(","):
        for engine in args.engines.split(","):
            cmd = [
                sys.executable,
                __file__,
                "--one",
                model,
                engine,
                "--dtype",
                args.dtype,
                "--claims",
                str(args.claims),
                "--summaries",
                str(args.summaries),
                "--threads",
                str(threads),
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
            if proc.returncode != 0 or line is None:
                raise SystemExit(f"{model} on {engine} failed:\n{proc.stderr[-3000:]}")
            r = json.loads(line[len("RESULT ") :])
            if r["decode_tokens_per_s"]:
                r["bandwidth_share"] = r["decode_bytes_per_token"] * r["decode_tokens_per_s"] / bw
            results.append(r)
            print(
                f"{model} / {engine}: {r['claims_items_per_s']:.2f} items/s, decode {r['decode_tokens_per_s'] or 0:.1f} tok/s",
                file=sys.stderr,
            )
    by = {(r["model"], r["engine"]): r for r in results}
    ratios = {}
    for model in args.models.split(","):
        hf, ll = by.get((model, "hf")), by.get((model, "llamacpp"))
        if hf and ll and hf["decode_tokens_per_s"] and ll["decode_tokens_per_s"]:
            ratios[model] = {
                "decode_speedup": ll["decode_tokens_per_s"] / hf["decode_tokens_per_s"],
                "classification_speedup": ll["claims_items_per_s"] / hf["claims_items_per_s"],
                "ttft_ratio": (ll["p50_ttft_s"] / hf["p50_ttft_s"]) if hf["p50_ttft_s"] and ll["p50_ttft_s"] else None,
            }
    from harness.models.precision import cpu_capability, cpu_flags

    vector = sorted(cpu_flags() & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_int8"})
    path = C.write_result(
        "engines",
        {
            "settings": vars(args) | {"out": str(args.out) if args.out else None},
            "copy_bandwidth_bytes_per_s": bw,
            "cpu_capability": cpu_capability(),
            "cpu_flags": vector,
            "results": results,
            "ratios": ratios,
        },
        args.out,
    )
    header = [
        "model",
        "engine",
        "precision",
        "claims items/s",
        "summary p50 latency",
        "p50 TTFT",
        "decode tok/s",
        "peak RSS",
        "decode GB/token",
        "share of copy bandwidth",
    ]
    rows = [
        [
            r["model"],
            r["engine"],
            r["dtype"],
            f"{r['claims_items_per_s']:.2f}",
            f"{r['p50_latency_s']:.2f} s",
            f"{r['p50_ttft_s']:.2f} s" if r["p50_ttft_s"] else "-",
            f"{r['decode_tokens_per_s'] or 0:.1f}",
            f"{r['peak_rss_bytes'] / 2**30:.2f} GiB",
            f"{r['decode_bytes_per_token'] / 1e9:.3f}",
            f"{r.get('bandwidth_share', 0):.0%}",
        ]
        for r in results
    ]
    print(
        f"\nCPU: {cpu_capability()} ({', '.join(vector)}), {threads} threads, copy bandwidth {bw / 1e9:.1f} GB/s; written to {path}"
    )
    print(C.table(header, rows))
    for model, r in ratios.items():
        ttft = f"{r['ttft_ratio']:.2f}x" if r["ttft_ratio"] else "-"
        print(
            f"{model}: llamacpp/hf decode {r['decode_speedup']:.1f}x, classification {r['classification_speedup']:.1f}x, TTFT {ttft}"
        )


if __name__ == "__main__":
    main()
