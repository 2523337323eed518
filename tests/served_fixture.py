"""A real OpenAI-compatible server for the tests (llama-cpp-python's, on 127.0.0.1), a loopback proxy of our own
that injects faults in front of it (429, 5xx, slow answers, a server killed mid-task), and a fault server of our own
that answers badly with HTTP 200 (an HTML page, a stream cut short).

Bounded: each server lives for one test module or test, each proxy answers only the requests the test makes, and
all listen on 127.0.0.1 alone.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional, TypeVar

START_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``python -m harness.engines.llamacpp_server`` (or the stock ``llama_cpp.server``) serving one GGUF."""

    def __init__(self, gguf: Path, alias: str = "tiny", stock: bool = False, api_key: Optional[str] = None) -> None:
        self.gguf, self.alias, self.stock, self.api_key = gguf, alias, stock, api_key
        self.port = 0
        self.proc: Optional[subprocess.Popen[bytes]] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, port: Optional[int] = None) -> Server:
        self.port = port or free_port()
        module = "llama_cpp.server" if self.stock else "harness.engines.llamacpp_server"
        args = [
            sys.executable,
            "-m",
            module,
            "--model",
            str(self.gguf),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        args += ["--n_ctx", "512", "--logits_all", "true", "--model_alias", self.alias, "--verbose", "false"]
        args += ["--n_threads", "2"] + (["--api_key", self.api_key] if self.api_key else [])
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited: {self.proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            try:
                req = urllib.request.Request(f"{self.url}/models")
                if self.api_key:
                    req.add_header("Authorization", f"Bearer {self.api_key}")
                with urllib.request.urlopen(req, timeout=2):
                    return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the server did not answer within {START_TIMEOUT_S} s")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


@contextlib.contextmanager
def serving(gguf: Path, **kwargs: object) -> Iterator[Server]:
    server = Server(gguf, **kwargs).start()  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()


# An action for the n-th request (from 1) to a path: None forwards it; "429" / "503" answer that status at once;
# ("slow", s) waits s seconds before forwarding; a callable runs, then the request is forwarded.
Plan = Callable[[int, str], object]


L = TypeVar("L", bound="_Loopback")


class _Loopback:
    """An HTTP server of the tests' own on 127.0.0.1 (a free port), served by a daemon thread while in a ``with``."""

    def _listen(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self: L) -> L:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Proxy(_Loopback):
    """A loopback HTTP proxy in front of ``upstream_port`` that follows ``plan`` (streams are forwarded whole)."""

    def __init__(self, upstream_port: int, plan: Plan) -> None:
        self.upstream_port, self.plan = upstream_port, plan
        self.count = 0
        self.log: list[tuple[int, str, int]] = []  # (n, path, status answered)
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up first (a timeout under test)
                    self.close_connection = True

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with proxy._lock:
                    proxy.count += 1
                    n = proxy.count
                action = proxy.plan(n, self.path)
                if action in ("429", "503"):
                    error = json.dumps({"error": {"message": f"injected {action}", "type": "injected"}}).encode()
                    proxy.log.append((n, self.path, int(str(action))))
                    return self._answer(
                        int(str(action)), error, {"Content-Type": "application/json", "Retry-After": "0"}
                    )
                if isinstance(action, tuple) and action[0] == "slow":
                    time.sleep(float(action[1]))
                elif callable(action):
                    action()
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=120)
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                    conn.request(self.command, self.path, body=body or None, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    keep = {
                        k: v
                        for k, v in resp.getheaders()
                        if k.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server")
                    }
                    proxy.log.append((n, self.path, resp.status))
                    self._answer(resp.status, data, keep)
                except OSError:
                    proxy.log.append((n, self.path, 502))
                    self._answer(502, b'{"error": {"message": "upstream down"}}', {"Content-Type": "application/json"})

            do_GET = _handle
            do_POST = _handle

        self._listen(Handler)


GATEWAY_PAGE = (
    "<!DOCTYPE html>\n<html>\n<head><title>502 Bad Gateway</title></head>\n<body>\n<center><h1>502 Bad Gateway</h1>"
    "</center>\n<p>The upstream server did not answer; this page comes from the proxy in front of it.</p>\n"
    + "<!-- padding so the page is longer than what an error quotes -->\n" * 4
    + "</body>\n</html>\n"
)


class FaultServer(_Loopback):
    """A loopback OpenAI-compatible server of the tests' own that answers badly, with HTTP 200.

    ``GET /v1/models`` lists ``model`` (or, with ``models_html``, is the gateway's HTML page). Each request to
    ``/v1/completions`` or ``/v1/chat/completions`` gets the next of ``answers`` (the last one repeated):

    - ``"html"``: a proxy's HTML error page with HTTP 200 (streamed or not);
    - ``"cut"``: streamed, the first chunk of an answer (``"Hel"``), then the connection is closed (no
      ``finish_reason``, no ``[DONE]``); not streamed, the first half of a JSON body, then closed;
    - ``"ok"``: the whole answer ``"Hello"`` (streamed: two chunks, the finish reason, usage, ``[DONE]``).

    ``requests`` lists the completion requests' paths as they came. Nothing else is answered (404).

    ``capacity=(slots, seconds)``: a server of fixed capacity, each completion holding one of ``slots`` for
    ``seconds``, first come first served (the others queue): its latency under load is known in advance.
    """

    def __init__(
        self,
        answers: Sequence[str],
        model: str = "m",
        models_html: bool = False,
        capacity: Optional[tuple[int, float]] = None,
    ) -> None:
        self.answers, self.model, self.models_html = list(answers), model, models_html
        self.requests: list[str] = []
        self._lock = threading.Lock()
        self.capacity = capacity
        self._free_at = [0.0] * (capacity[0] if capacity else 0)  # when each slot is next free
        fault = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _whole(self, body: bytes, content_type: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _until_close(self, body: bytes, content_type: str) -> None:
                """``body`` with neither a length nor chunks: it ends where the connection is closed."""
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()
                self.close_connection = True

            def do_GET(self) -> None:
                if self.path.rstrip("/") != "/v1/models":
                    return self.send_error(404)
                if fault.models_html:
                    return self._whole(GATEWAY_PAGE.encode(), "text/html; charset=utf-8")
                listed = {"object": "list", "data": [{"id": fault.model, "object": "model", "owned_by": "tests"}]}
                self._whole(json.dumps(listed).encode(), "application/json")

            def do_POST(self) -> None:
                request = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                if self.path not in ("/v1/completions", "/v1/chat/completions"):
                    return self.send_error(404)
                with fault._lock:
                    fault.requests.append(self.path)
                    action = fault.answers[min(len(fault.requests), len(fault.answers)) - 1]
                chat, streamed = self.path.endswith("chat/completions"), bool(request.get("stream"))
                fault.serve()
                if action == "html":
                    return self._whole(GATEWAY_PAGE.encode(), "text/html; charset=utf-8")
                if not streamed:
                    text = "Hello"
                    choice = {"index": 0, "finish_reason": "stop", "logprobs": None}
                    choice.update({"message": {"role": "assistant", "content": text}} if chat else {"text": text})
                    body = json.dumps(
                        {
                            "id": "x",
                            "object": "text_completion",
                            "created": 0,
                            "model": fault.model,
                            "choices": [choice],
                            "usage": _usage(2),
                        }
                    ).encode()
                    if action == "cut":
                        return self._until_close(body[: len(body) // 2], "application/json")
                    return self._whole(body, "application/json")
                pieces = ["Hel"] if action == "cut" else ["Hel", "lo", None]
                events = [_chunk(fault.model, p, chat) for p in pieces]
                if action == "cut":
                    return self._until_close(b"".join(events), "text/event-stream")
                kind = "chat.completion.chunk" if chat else "text_completion"
                usage = {
                    "id": "x",
                    "object": kind,
                    "created": 0,
                    "model": fault.model,
                    "choices": [],
                    "usage": _usage(2),
                }
                events.append(b"data: " + json.dumps(usage).encode() + b"\n\n")
                self._until_close(b"".join(events) + b"data: [DONE]\n\n", "text/event-stream")

        self._listen(Handler)

    def serve(self) -> None:
        """Hold a slot for the service time, after the requests that came before (with ``capacity``)."""
        if self.capacity is None:
            return
        with self._lock:
            now = time.monotonic()
            slot = min(range(len(self._free_at)), key=lambda k: self._free_at[k])
            done = max(now, self._free_at[slot]) + self.capacity[1]
            self._free_at[slot] = done
        time.sleep(done - now)


def _usage(completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": 3, "completion_tokens": completion_tokens, "total_tokens": 3 + completion_tokens}


def _chunk(model: str, piece: Optional[str], chat: bool) -> bytes:
    """One server-sent event of a streamed answer: ``piece`` of text, or (None) the finish reason."""
    done = piece is None
    if chat:
        delta = {} if done else {"role": "assistant", "content": piece}
        choice: dict[str, object] = {"index": 0, "delta": delta, "logprobs": None}
        kind = "chat.completion.chunk"
    else:
        choice, kind = {"index": 0, "text": "" if done else piece, "logprobs": None}, "text_completion"
    choice["finish_reason"] = "stop" if done else None
    data = {"id": "x", "object": kind, "created": 0, "model": model, "choices": [choice]}
    return b"data: " + json.dumps(data).encode() + b"\n\n"
