"""A real OpenAI-compatible server for the tests (llama-cpp-python's, on 127.0.0.1), and a loopback proxy of our own
that injects faults in front of it (429, 5xx, slow answers, a server killed mid-task).

Bounded: each server lives for one test module or test, each proxy answers only the requests the test makes, and
both listen on 127.0.0.1 alone.
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
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional

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


class Proxy:
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

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> Proxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
