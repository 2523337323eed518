"""What bench/load_vs_guidellm.py needs besides the comparison itself: a server started and stopped, guidellm's
command line and its JSON read, the harness's load.json read, all in one unit (seconds) and one estimator.

guidellm 0.8.1 reports TTFT and inter-token latency in milliseconds and request latency in seconds; everything here
is seconds. Its percentiles are nearest-rank (the first value whose cumulative share reaches q), the harness's are
numpy's linear interpolation: at 20 requests their p95s are different order statistics, so both tools' per-request
values are also summarised here with the same estimator (``same_estimator``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER = ROOT / "harness" / "assets" / "tokenizers" / "smollm2"  # SmolLM2's vocabulary, as its GGUF carries it
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
# the figures compared, per step; all in seconds but requests_per_s
METRICS = ("requests_per_s", "ttft_p50_s", "ttft_p95_s", "inter_token_mean_s", "e2e_p50_s", "e2e_p95_s")
MODES = {"constant": "constant", "concurrent": "concurrency"}  # guidellm's profile kind -> the harness's load.mode


def find_gguf() -> Optional[Path]:
    """SmolLM2-135M-Instruct's GGUF where the harness caches it (None: fetch it with a run of the harness first)."""
    cache = Path(os.environ.get("SMALL_VS_LARGE_CACHE", Path.home() / ".cache" / "small-vs-large"))
    found = sorted(cache.rglob(GGUF_NAME)) if cache.is_dir() else []
    return found[0] if found else None


def get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


@dataclass
class Server:
    """A server process on 127.0.0.1, its log in a file; ``stop`` is safe to call whatever state it is in."""

    cmd: list[str]
    port: int
    log: Path
    proc: Optional[subprocess.Popen[bytes]] = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 180.0) -> str:
        """Start it and wait until GET /v1/models lists a model (llama-server answers 503 while it loads); its id."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as fh:
            self.proc = subprocess.Popen(self.cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited ({self.proc.returncode}); its log:\n{self.tail()}")
            try:
                models = get_json(f"{self.base}/v1/models").get("data") or []
                if models:
                    return str(models[0]["id"])
            except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
                pass
            time.sleep(0.5)
        raise RuntimeError(f"the server did not answer /v1/models within {timeout_s:.0f} s; its log:\n{self.tail()}")

    def stop(self) -> None:
        """SIGTERM to its process group, SIGKILL after 15 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.is_file() else ""


def stream_completion(base: str, model: str, prompt: str, max_tokens: int, body: dict[str, Any]) -> dict[str, Any]:
    """One streamed /v1/completions request, read to its end: chunks with text, the server's usage, finish reason.

    Used to probe the server (does ``ignore_eos`` hold the output length fixed, does it send usage) and to warm it."""
    payload = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "stream": True}
    payload |= {"stream_options": {"include_usage": True}, **body}
    req = urllib.request.Request(
        f"{base}/v1/completions", json.dumps(payload).encode(), {"Content-Type": "application/json"}
    )
    chunks, usage, finish = 0, None, None
    with urllib.request.urlopen(req, timeout=120) as resp:
        for raw in resp:
            line = raw.decode().strip()
            if not line.startswith("data:") or line[5:].strip() == "[DONE]":
                continue
            data = json.loads(line[5:])
            usage = data.get("usage") or usage
            for choice in data.get("choices") or []:
                chunks += bool(choice.get("text"))
                finish = choice.get("finish_reason") or finish
    return {"chunks_with_text": chunks, "usage": usage, "finish_reason": finish}


def guidellm_cmd(
    exe: str,
    target: str,
    model: str,
    kind: str,
    values: Sequence[float],
    requests: int,
    input_tokens: int,
    output_tokens: int,
    out: Path,
    body: dict[str, Any],
    validate: bool = True,
) -> list[str]:
    """guidellm 0.8.1's ``run`` (``benchmark`` is gone): one benchmark per rate (``kind`` constant) or per number of
    streams (``concurrent``), ``requests`` each, synthetic prompts of ``input_tokens`` tokens counted by SmolLM2's
    tokenizer, ``output_tokens`` generated (guidellm sends max_tokens and ignore_eos), no warm-up of its own, JSON out.

    ``body``: fields added to every request, so that the server does the harness's work (its sampling, its
    log-probabilities); the arg-string syntax takes them as ``extras.body.NAME=VALUE``. ``validate``: guidellm's GET
    /health before it starts (llama-cpp-python's server has no such route)."""
    field = "rate" if kind == "constant" else "streams"
    listed = ",".join(f"{v:g}" for v in values)
    backend = f"kind=openai_http,target={target},model={model},request_format=/v1/completions"
    backend += "".join(f",extras.body.{k}={json.dumps(v)}" for k, v in body.items())
    backend += "" if validate else ",validate_backend=false"
    return [
        exe,
        "run",
        "--backend",
        backend,
        "--profile",
        f"kind={kind},{field}={values[0]:g}",  # no warmup key: warmup=0 drops a request (percent 0)
        "--override",
        f"profile.{field}",
        listed,
        "--constraint",
        f"kind=max_requests,count={requests}",
        "--tokenizer",
        f"kind=huggingface_auto,model={TOKENIZER}",
        "--data",
        f"kind=synthetic_text,prompt_tokens={input_tokens},output_tokens={output_tokens}",
        "--output",
        f"kind=json,path={out}",
        "--disable-console-interactive",
    ]


def _np_summary(ttft: list[float], itl: list[float], e2e: list[float]) -> dict[str, Optional[float]]:
    """Per-request values (seconds) summarised as the harness summarises them: numpy linear percentiles, plain mean."""

    def pct(v: list[float], q: float) -> Optional[float]:
        return float(np.percentile(v, q)) if v else None

    return {
        "ttft_p50_s": pct(ttft, 50),
        "ttft_p95_s": pct(ttft, 95),
        "inter_token_mean_s": float(np.mean(itl)) if itl else None,
        "e2e_p50_s": pct(e2e, 50),
        "e2e_p95_s": pct(e2e, 95),
    }


def read_guidellm(path: Path) -> dict[tuple[str, float], dict[str, Any]]:
    """guidellm's JSON, per step ((harness mode, rate or streams) -> figures in seconds).

    Field paths (``benchmarks[i]``): ``config.strategy.type_`` and ``.rate`` / ``.streams``; under ``metrics``:
    ``request_totals.successful``, ``requests_per_second.successful.mean`` (its console's requests/s: successful
    requests over the measured window), ``time_to_first_token_ms.successful.percentiles.p50|p95``,
    ``inter_token_latency_ms.successful.mean`` (weighted by each request's output tokens - 1),
    ``request_latency.successful.percentiles.p50|p95`` (seconds). ``requests.successful`` lists every request,
    warm-up ones included, with its ``info.timings`` (epoch seconds)."""
    report = json.loads(path.read_text())
    out: dict[tuple[str, float], dict[str, Any]] = {}
    for b in report["benchmarks"]:
        strat, m = b["config"]["strategy"], b["metrics"]
        kind = strat["type_"]
        value = float(strat["rate"] if kind == "constant" else strat["streams"])

        def ok(name: str) -> dict[str, Any]:
            return m[name]["successful"]

        ttft, itl, e2e, tokens = [], [], [], []
        for r in b["requests"]["successful"]:
            t = r["info"]["timings"]
            if t["request_start"] < b["start_time"] - 1e-6:  # a warm-up request: outside the measured window
                continue
            n = (r.get("output_metrics") or {}).get("text_tokens") or 0
            tokens.append(n)
            e2e.append(t["request_end"] - t["request_start"])
            if t.get("first_token_iteration") is not None:
                ttft.append(t["first_token_iteration"] - t["request_start"])
                if n > 1 and t.get("last_token_iteration") is not None:
                    itl.append((t["last_token_iteration"] - t["first_token_iteration"]) / (n - 1))
        out[(MODES.get(kind, kind), value)] = {
            "requests": m["request_totals"]["successful"],
            "errors": m["request_totals"]["errored"] + m["request_totals"]["incomplete"],
            "requests_per_s": ok("requests_per_second")["mean"],
            "ttft_p50_s": ok("time_to_first_token_ms")["percentiles"]["p50"] / 1000,
            "ttft_p95_s": ok("time_to_first_token_ms")["percentiles"]["p95"] / 1000,
            "inter_token_mean_s": ok("inter_token_latency_ms")["mean"] / 1000,
            "e2e_p50_s": ok("request_latency")["percentiles"]["p50"],
            "e2e_p95_s": ok("request_latency")["percentiles"]["p95"],
            "output_tokens_mean": float(np.mean(tokens)) if tokens else None,
            "window_s": b["duration"],
            "same_estimator": _np_summary(ttft, itl, e2e),
        }
    return out


def read_harness(run_dir: Path, model: str) -> dict[tuple[str, float], dict[str, Any]]:
    """The harness's RUN/load.json (its own figures) and RUN/load/requests.jsonl (per request), per step."""
    load = json.loads((run_dir / "load.json").read_text())
    rows = [json.loads(line) for line in (run_dir / "load" / "requests.jsonl").read_text().splitlines() if line]
    out: dict[tuple[str, float], dict[str, Any]] = {}
    for s in load["models"][model]["steps"]:
        closed = s.get("rate") is None
        key = ("concurrency", float(s["level"])) if closed else (s["mode"], float(s["rate"]))
        mine = [
            r
            for r in rows
            if r["model"] == model
            and not r.get("error")
            and (r["level"] == s["level"] if closed else r.get("rate") == s["rate"])
        ]
        out[key] = {
            "requests": s["requests"] - s.get("errors", 0),
            "errors": s.get("errors", 0),
            "requests_per_s": s["requests_per_s"],
            "ttft_p50_s": s["ttft_p50_s"],
            "ttft_p95_s": s["ttft_p95_s"],
            "inter_token_mean_s": s["inter_token_mean_s"],
            "e2e_p50_s": s["latency_p50_s"],
            "e2e_p95_s": s["latency_p95_s"],
            "output_tokens_mean": float(np.mean([r["output_tokens"] for r in mine])) if mine else None,
            "window_s": s["wall_s"],
            "lag_max_s": s.get("lag_max_s"),
            "same_estimator": _np_summary(
                [r["ttft_s"] for r in mine if r.get("ttft_s") is not None],
                [r["inter_token_s"] for r in mine if r.get("inter_token_s") is not None],
                [r["latency_s"] for r in mine],
            ),
        }
    return out


def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return a / b if a is not None and b else None


def fmt(v: Optional[float], seconds: bool) -> str:
    """Seconds as ms (3 significant figures), rates as they are; '-' for a missing value."""
    if v is None:
        return "-"
    return f"{v * 1000:.3g} ms" if seconds else f"{v:.3g}"


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table, as bench/_common.py prints them (not imported: it loads torch)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
