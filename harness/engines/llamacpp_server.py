"""Serve a GGUF with llama-cpp-python's OpenAI-compatible server, with two of its faults set right.

    python -m harness.engines.llamacpp_server --model m.gguf --host 127.0.0.1 --port 8000 --logits_all true

takes every option of ``python -m llama_cpp.server`` (which it runs) and:

- turns llama.cpp's weight repacking off on CPUs with AMX, where llama-cpp-python
  builds crash at the first generation step with it (``harness.engines.llamacpp.repack_default``;
  ``HARNESS_LLAMACPP_REPACK=1`` forces it on);
- queues concurrent requests instead of cutting the stream being served short
  (its ``--interrupt_requests`` defaults to true: a load sweep would measure
  truncated answers); pass ``--interrupt_requests true`` to keep that;
- returns prompt log-probabilities (``echo`` + ``logprobs``) at the right position.
  llama-cpp-python 0.3 pairs prompt token i with the logits computed *at* i (which
  predict token i+1) unless the prompt starts with the BOS token (which it then
  leaves out of the echo), so every echoed log-probability belongs to the next token. Here the logits are shifted one
  position before they are paired. ``tests/test_served.py`` checks the stock
  server is refused by the openai engine's probe and this one scores as the
  in-process llamacpp engine does.

- ranks each echoed position's alternatives with numpy instead of sorting the
  whole vocabulary in Python (``sorted`` over 49,152 pairs per prompt token took
  8.7 of 11.5 s for one 169-token SmolLM2 prompt; only the top ``logprobs`` are
  ever kept).

Patching a library's internals is a stopgap, written down as one: the patch
touches ``Llama._create_completion``, ``Llama.logits_to_logprobs`` and the
``sorted`` and ``list`` that ``llama_cpp.llama`` sees, and the version is pinned in constraints.txt.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any, overload

import numpy as np

from harness.engines.llamacpp import model_params, repack_default

_state = threading.local()


class _Ranked(Sequence[tuple[float, int]]):
    """A row's (log-probability, token id) pairs, best first, as ``sorted(zip(row, ids), reverse=True)`` orders them,
    computed for the leading slice asked for only (``[:k]``, how llama-cpp-python reads them)."""

    def __init__(self, row: np.ndarray) -> None:
        self.row = row

    def __len__(self) -> int:
        return len(self.row)

    def _top(self, k: int) -> list[tuple[float, int]]:
        row = self.row
        k = max(0, min(k, len(row)))
        idx = np.argpartition(-row, k - 1)[:k] if 0 < k < len(row) else np.arange(len(row))[:k]
        idx = idx[np.lexsort((-idx, -row[idx]))]  # value descending, then the higher id first (tuple order)
        return [(float(row[i]), int(i)) for i in idx]

    @overload
    def __getitem__(self, item: int) -> tuple[float, int]: ...

    @overload
    def __getitem__(self, item: slice) -> list[tuple[float, int]]: ...

    def __getitem__(self, item: int | slice) -> Any:
        if isinstance(item, slice) and item.start in (None, 0) and item.step in (None, 1):
            return self._top(len(self.row) if item.stop is None else item.stop)
        return self._top(len(self.row))[item]

    def __iter__(self) -> Iterator[tuple[float, int]]:  # list(...) of it: one full ranking, not one per item
        return iter(self._top(len(self.row)))


def _ranked_sorted(iterable: Any, *, key: Any = None, reverse: bool = False) -> Any:
    """``sorted`` for ``llama_cpp.llama``: ``zip(row, range(n))`` in reverse is ranked lazily; anything else as usual."""
    if isinstance(iterable, zip) and key is None and reverse:
        parts: Any = iterable.__reduce__()[1]
        if len(parts) == 2 and type(parts[1]).__name__ == "range_iterator":
            reduced: Any = parts[0].__reduce__()
            source = reduced[1][0] if len(reduced) >= 3 and reduced[2] == 0 and reduced[1] else None
            if source is not None and len(source) > 64:
                return _Ranked(np.asarray(source, dtype=np.float64))
    return sorted(iterable, key=key, reverse=reverse)


class _ListMeta(type):
    def __instancecheck__(cls, obj: Any) -> bool:  # isinstance(x, list) in the module keeps its meaning
        return isinstance(obj, list)


class _List(metaclass=_ListMeta):
    """``list`` for ``llama_cpp.llama``: it wraps the ranking in ``list(sorted(...))``; a ``_Ranked`` stays lazy."""

    def __new__(cls, iterable: Any = ()) -> Any:
        return iterable if isinstance(iterable, _Ranked) else list(iterable)

    def __class_getitem__(cls, item: Any) -> Any:
        return list[item]


def patch_echo_logprobs() -> None:
    """Make llama-cpp-python's echoed prompt log-probabilities score each token with the logits that predict it."""
    from llama_cpp import Llama

    if getattr(Llama, "_harness_echo_patch", False):
        return
    create, to_logprobs = Llama._create_completion, Llama.logits_to_logprobs

    def _create_completion(self: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        # llama-cpp-python drops the first prompt token from the echo when it is the BOS token (added, or the
        # prompt's own, as a chat prompt's <|im_start|> can be) and then pairs rows right; otherwise one row late
        prompt = kwargs.get("prompt", args[0] if args else "")
        bos = self.token_bos()
        if self._model.add_bos_token() and bos != -1:
            first = bos
        elif isinstance(prompt, str):
            first = (self.tokenize(prompt.encode("utf-8"), add_bos=False, special=True) or [None])[0]
        else:
            first = prompt[0] if prompt else None
        _state.shift = bool(kwargs.get("echo")) and kwargs.get("logprobs") is not None and first != bos
        try:
            yield from create(self, *args, **kwargs)
        finally:
            _state.shift = False

    def logits_to_logprobs(logits: Any, axis: int = -1) -> Any:
        out = to_logprobs(logits, axis=axis)
        if getattr(_state, "shift", False) and np.ndim(out) == 2:  # the echo path: one row per evaluated token
            out = np.concatenate([np.zeros_like(out[:1]), out[:-1]])  # row i: the logits that predicted token i
        return out

    import llama_cpp.llama as module

    module.sorted = _ranked_sorted  # type: ignore[attr-defined]  # module globals shadow the builtins
    module.list = _List  # type: ignore[attr-defined]
    Llama._create_completion = _create_completion  # type: ignore[method-assign]
    Llama.logits_to_logprobs = staticmethod(logits_to_logprobs)  # type: ignore[method-assign]
    Llama._harness_echo_patch = True  # type: ignore[attr-defined]


def main() -> None:
    from llama_cpp.server.__main__ import main as serve

    if "--interrupt_requests" not in sys.argv:
        sys.argv += ["--interrupt_requests", "false"]
    forced = os.environ.get("HARNESS_LLAMACPP_REPACK")
    patch_echo_logprobs()
    with model_params(repack_default() if forced is None else forced == "1"):
        serve()  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    main()
