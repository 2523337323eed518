"""Progress display for a run: rich bars on a terminal, plain lines elsewhere (CI logs, nohup, files)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Optional

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class RunProgress:
    def __init__(self, enabled: bool = True, console: Optional[Console] = None) -> None:
        self.console = console or Console(stderr=True)
        self.enabled = enabled
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            disable=not enabled or not self.console.is_terminal,
        )

    def __enter__(self) -> RunProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._progress.__exit__(*exc)

    def note(self, message: str) -> None:
        """A log line (shown with or without the bars: what was reused, resumed, loaded)."""
        self._progress.console.log(message, markup=False, highlight=False)

    def notice(self, message: str) -> None:
        """A line the user should act on (e.g. a faster engine to install): printed whole, never wrapped, so it stays one line."""
        self._progress.console.print(message, markup=False, highlight=False, soft_wrap=True)

    def task(self, description: str, total: int, completed: int = 0) -> Callable[[int], None]:
        """A bar for ``total`` items, ``completed`` of them done before (a resumed cell).

        Not on a terminal the bars are not drawn, so a plain line reports the
        items done and the elapsed time at each quarter of the task.
        """
        if self.enabled and not self.console.is_terminal:
            return self._lines(description, total, completed)
        task_id = self._progress.add_task(description, total=total, completed=completed)
        return lambda n: self._progress.advance(task_id, n)

    def _lines(self, description: str, total: int, completed: int) -> Callable[[int], None]:
        state = {"done": completed, "next": 1, "start": time.perf_counter()}

        def advance(n: int) -> None:
            state["done"] += n
            while state["next"] <= 4 and state["done"] >= total * state["next"] / 4:
                state["next"] += 1
                if state["done"] < total or state["next"] == 5:
                    self.console.print(
                        f"{description}: {state['done']}/{total} items, {time.perf_counter() - state['start']:.1f}s elapsed",
                        markup=False,
                        highlight=False,
                    )

        return advance
