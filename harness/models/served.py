"""Models behind an OpenAI-compatible server (``source: served``): the client, the key, and what the server says it is.

The API key is read from the environment variable the config names, at run
time, and goes nowhere else: not into records, manifests, logs, reports, nor
error messages (``scrub`` takes it out of any text a server sends back).
The identity of a served model is what the server reports (``GET /v1/models``)
plus the user's ``revision`` label: a server can swap the weights behind a
name, so reports say the identity is the server's word.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any
from urllib.parse import urlsplit

from harness.config.schema import ModelConfig, ServedConfig
from harness.errors import ConfigError, ModelSourceError
from harness.models.sources import ModelIdentity

INSTALL_HINT = "pip install 'small-vs-large[served]' (the openai client)"
NO_KEY = "not-needed"  # local servers take any key; the openai client insists on one
SENT_CHARS = 200  # what an error quotes of a server's bad answer


def served_config(cfg: ModelConfig) -> ServedConfig:
    if cfg.served is None:
        raise ConfigError(f"model {cfg.name} has source=served but no served: section", "add served: {base_url, model}")
    return cfg.served


def api_key(served: ServedConfig, model: str) -> str:
    """The key from ``served.api_key_env`` (a missing variable is an error: a hosted API would answer 401 anyway)."""
    if not served.api_key_env:
        return NO_KEY
    key = os.environ.get(served.api_key_env)
    if not key:
        raise ConfigError(
            f"model {model}: environment variable {served.api_key_env} (served.api_key_env) is not set",
            f"export {served.api_key_env}=<your key>, or drop served.api_key_env for a server without keys",
        )
    return key


def scrub(text: str, served: ServedConfig) -> str:
    """``text`` with the API key (if any) replaced: server errors may quote the key they refused."""
    if served.api_key_env:
        key = os.environ.get(served.api_key_env)
        if key:
            text = text.replace(key, "***")
    return text


def quoted(sent: str, served: ServedConfig) -> str:
    """What a server sent, for a one-line error: the key taken out, its first characters quoted (new lines escaped)."""
    sent = scrub(sent, served)
    if not sent.strip():
        return "nothing"
    if len(sent) <= SENT_CHARS:
        return repr(sent)
    return f"{sent[:SENT_CHARS]!r} (its first {SENT_CHARS} characters)"


def client(served: ServedConfig, model: str) -> Any:
    """An ``openai.OpenAI`` client for the server; retries are the engine's (each one is recorded), not the client's."""
    try:
        import openai
    except ImportError as exc:
        raise ConfigError(f"model {model} is served, but the openai client is not installed", INSTALL_HINT) from exc
    for name in (
        "httpx",
        "httpx2",
        "openai",
    ):  # a line per request at INFO under Hydra's logging: the progress bar says it
        logging.getLogger(name).setLevel(logging.WARNING)
    return openai.OpenAI(
        base_url=served.base_url, api_key=api_key(served, model), timeout=served.timeout_s, max_retries=0
    )


def unreachable(served: ServedConfig, model: str, exc: BaseException) -> ModelSourceError:
    """The one-line error for a server that cannot be reached or refuses us."""
    status = getattr(exc, "status_code", None)
    if status in (401, 403):
        return ModelSourceError(
            f"model {model}: {served.base_url} refused the API key (HTTP {status})",
            f"check the key in {served.api_key_env or 'served.api_key_env'}",
        )
    first = scrub(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, served)
    return ModelSourceError(
        f"model {model}: cannot reach {served.base_url} ({first})",
        "start the server, or correct served.base_url (it ends in /v1)",
    )


def listed_models(served: ServedConfig, model: str) -> list[dict[str, Any]]:
    """The server's ``GET /v1/models`` entries; the first request of a run, so a dead server is named at once."""
    import openai

    try:
        raw = client(served, model).models.with_raw_response.list()
    except (openai.APIConnectionError, openai.APIStatusError) as exc:
        raise unreachable(served, model, exc) from exc
    try:
        body = json.loads(raw.text)
    except ValueError:  # a proxy's HTML page with HTTP 200: the client would hand it back as text
        body = None
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list) or not all(isinstance(m, dict) for m in data):
        raise ModelSourceError(
            f"model {model}: {served.base_url} did not answer GET /models with a model list: it sent "
            f"{quoted(raw.text, served)}",
            "check the server or the proxy in front of it, and served.base_url (it ends in /v1)",
        )
    return [m.model_dump() for m in raw.parse().data]


def served_identity(cfg: ModelConfig) -> ModelIdentity:
    """What determines a served model's outputs, as far as the client can know: the server, the id it reports, a label.

    The host (not the whole URL: the same server reached through another path is
    the same model), the served id as the server lists it, and ``revision``.
    """
    served = served_config(cfg)
    listed = listed_models(served, cfg.name)
    ids = [str(m.get("id")) for m in listed]
    if served.model not in ids:
        raise ConfigError(
            f"model {cfg.name}: {served.base_url} serves {', '.join(ids) or 'no model'}, not {served.model!r}",
            f"set served.model to one of: {', '.join(ids)}",
        )
    entry = listed[ids.index(served.model)]
    return {
        "source": "served",
        "host": host_of(served.base_url),
        "served_model": served.model,
        "owned_by": entry.get("owned_by"),
        "revision": cfg.revision,
        "identity_from": "the server's model list (a server can change the weights behind a name)",
    }


def host_of(base_url: str) -> str:
    parts = urlsplit(base_url)
    return parts.netloc or base_url
