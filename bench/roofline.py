"""How close the offline models run to this machine's own ceilings: matmul rate and memory bandwidth.

    python bench/roofline.py [--models smollm2_135m,qwen25_coder_05b,qwen25_coder_15b] [--dtype bfloat16] [--device cpu]

Ceilings, measured here: the best matmul rate of square float32 and bfloat16 products (2n^3 flops),
and the copy bandwidth of a large tensor (bytes read + written). Then, for each model, through the
same forward calls the harness makes:
- prefill: one prompt of ``--prefill-tokens`` tokens, last position's logits only. Its matmul flops
  (2 x non-embedding weights x tokens, plus causal attention 2 x layers x tokens^2 x width) divided by
  the time, as a fraction of the matmul ceiling in the model's dtype;
- decode: batch 1, one token per step from a key/value cache. Bytes read per step (every weight
  matrix, the output head included, plus the cache) times the steps per second, as a fraction of
  the bandwidth ceiling.
Targets (issue 10), for the 1.5B model: prefill >= 40% of the matmul rate, decode >= 50% of the bandwidth bound.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import _common as C
import torch

from harness.engines.hf import cache_of, with_cache

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def matmul_rate(dtype: torch.dtype, device: str, n: int, reps: int) -> float:
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    return 2 * n**3 / C.best_of(lambda: torch.matmul(a, b), reps)


def gemv_bandwidth(dtype: torch.dtype, device: str, rows: int, cols: int, reps: int) -> float:
    """Bytes of weights per second that one-token linear layers (what decoding is made of) read at batch 1."""
    w = torch.randn(rows, cols, device=device).to(dtype)
    x = torch.randn(1, cols, device=device).to(dtype)
    return w.numel() * w.element_size() / C.best_of(lambda: torch.nn.functional.linear(x, w), reps)


def weights(model: Any) -> tuple[int, int, int]:
    """(all parameters, embedding-table parameters, bytes of every weight a decode step reads)."""
    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    total = sum(p.numel() for p in model.parameters())
    read = sum(p.numel() * p.element_size() for p in model.parameters() if p is not emb or p is head)
    return total, emb.numel(), read


@torch.inference_mode()
def profile(name: str, device: str, dtype: str, prefill_tokens: int, decode_steps: int, reps: int) -> dict[str, Any]:
    lm = C.model(name, device, dtype)
    model, cfg = lm.model, lm.model.config
    total, emb, read_bytes = weights(model)
    head = model.get_output_embeddings().weight
    tied = model.get_input_embeddings().weight is head
    body = total - emb - (0 if tied else head.numel())  # the head runs on one position in prefill: left out
    layers, width = cfg.num_hidden_layers, cfg.hidden_size
    ids = torch.randint(100, 1000, (1, prefill_tokens), device=lm.device)
    keep = {"logits_to_keep": 1}
    prefill_s = C.best_of(lambda: model(input_ids=ids, use_cache=False, **keep), reps)
    prefill_flops = 2 * body * prefill_tokens + 2 * layers * prefill_tokens**2 * width

    out = model(input_ids=ids[:, :128], use_cache=True, **keep)
    cache = cache_of(out)
    nxt = out.logits[:, -1].argmax(-1, keepdim=True)
    C.sync(lm.device)
    start = time.perf_counter()
    for _ in range(decode_steps):
        out = model(input_ids=nxt, use_cache=True, **with_cache(model, cache))
        nxt = out.logits[:, -1].argmax(-1, keepdim=True)
    C.sync(lm.device)
    step_s = (time.perf_counter() - start) / decode_steps
    kv_heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or width // cfg.num_attention_heads
    kv_bytes = 2 * layers * kv_heads * head_dim * (128 + decode_steps / 2) * torch.finfo(DTYPES[dtype]).bits // 8
    lm.unload()
    return {
        "model": name,
        "params": total,
        "dtype": dtype,
        "prefill_tokens": prefill_tokens,
        "prefill_s": prefill_s,
        "prefill_flops_per_s": prefill_flops / prefill_s,
        "decode_s_per_token": step_s,
        "decode_bytes_per_s": (read_bytes + kv_bytes) / step_s,
        "decode_bytes_per_token": read_bytes + kv_bytes,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="smollm2_135m,qwen25_coder_05b,qwen25_coder_15b")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="bfloat16", help="the models' dtype (the harness's default)")
    ap.add_argument("--matmul-n", type=int, default=2048)
    ap.add_argument("--copy-mib", type=int, default=1024)
    ap.add_argument("--prefill-tokens", type=int, default=512)
    ap.add_argument("--decode-steps", type=int, default=32)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    C.DEVICE = torch.device(args.device)
    ceilings = {
        f"matmul_{d}_flops_per_s": matmul_rate(DTYPES[d], args.device, args.matmul_n, args.reps)
        for d in ("float32", "bfloat16")
    }
    ceilings["copy_bytes_per_s"] = C.bandwidth(args.device, args.copy_mib, args.reps)
    # a 1.5B-sized MLP matrix (8960 x 1536) read at batch 1: the kernel decoding runs on, against the copy bound
    ceilings.update(
        {
            f"gemv_{d}_bytes_per_s": gemv_bandwidth(DTYPES[d], args.device, 8960, 1536, args.reps * 4)
            for d in ("float32", "bfloat16")
        }
    )
    print(
        f"ceilings: fp32 {ceilings['matmul_float32_flops_per_s'] / 1e12:.3f} TFLOP/s, bf16 {ceilings['matmul_bfloat16_flops_per_s'] / 1e12:.3f} TFLOP/s, "
        f"copy {ceilings['copy_bytes_per_s'] / 1e9:.1f} GB/s, batch-1 linear layer fp32 {ceilings['gemv_float32_bytes_per_s'] / 1e9:.1f} GB/s, "
        f"bf16 {ceilings['gemv_bfloat16_bytes_per_s'] / 1e9:.1f} GB/s",
        flush=True,
    )
    rows, results = [], []
    peak = (
        ceilings[f"matmul_{args.dtype}_flops_per_s"]
        if f"matmul_{args.dtype}_flops_per_s" in ceilings
        else ceilings["matmul_float32_flops_per_s"]
    )
    for name in args.models.split(","):
        r = profile(name, args.device, args.dtype, args.prefill_tokens, args.decode_steps, args.reps)
        r["prefill_share_of_matmul"] = r["prefill_flops_per_s"] / peak
        r["decode_share_of_bandwidth"] = r["decode_bytes_per_s"] / ceilings["copy_bytes_per_s"]
        r["decode_share_of_gemv"] = r["decode_bytes_per_s"] / ceilings.get(
            f"gemv_{args.dtype}_bytes_per_s", ceilings["gemv_float32_bytes_per_s"]
        )
        results.append(r)
        print(
            f"  {name}: prefill {r['prefill_s']:.2f} s, decode {r['decode_s_per_token'] * 1000:.0f} ms/token",
            flush=True,
        )
        rows.append(
            [
                name,
                f"{r['params'] / 1e9:.2f}B",
                args.dtype,
                f"{r['prefill_tokens'] / r['prefill_s']:.0f}",
                f"{r['prefill_flops_per_s'] / 1e12:.3f}",
                f"**{r['prefill_share_of_matmul']:.0%}**",
                f"{1 / r['decode_s_per_token']:.1f}",
                f"{r['decode_bytes_per_s'] / 1e9:.1f}",
                f"**{r['decode_share_of_bandwidth']:.0%}**",
                f"{r['decode_share_of_gemv']:.0%}",
            ]
        )
    path = C.write_result(
        "roofline",
        out_dir=args.out,
        payload={
            "device": args.device,
            "ceilings": ceilings,
            "models": results,
            "settings": vars(args) | {"out": str(args.out)},
        },
    )
    print(f"\nwrote {path}\n")
    print(
        f"ceilings on this machine: matmul fp32 {ceilings['matmul_float32_flops_per_s'] / 1e12:.3f} TFLOP/s, "
        f"bf16 {ceilings['matmul_bfloat16_flops_per_s'] / 1e12:.3f} TFLOP/s; copy bandwidth {ceilings['copy_bytes_per_s'] / 1e9:.1f} GB/s; "
        f"torch's batch-1 linear layer reads fp32 {ceilings['gemv_float32_bytes_per_s'] / 1e9:.1f} GB/s, bf16 {ceilings['gemv_bfloat16_bytes_per_s'] / 1e9:.1f} GB/s"
    )
    print(
        C.table(
            [
                "model",
                "params",
                "dtype",
                "prefill tok/s",
                "prefill TFLOP/s",
                "share of matmul rate (target >= 40%)",
                "decode tok/s",
                "decode GB/s",
                "share of bandwidth (target >= 50%)",
                "share of torch's batch-1 linear rate",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
