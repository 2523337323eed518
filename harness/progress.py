"""Progress display for a run (rich), quiet when disabled or not on a terminal."""
from __future__ import annotations

from typing import Any, Callable, Optional

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


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
            disable=not enabled,
        )

    def __enter__(self) -> "RunProgress":
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._progress.__exit__(*exc)

    def note(self, message: str) -> None:
        """A log line (shown with or without the bars: what was reused, resumed, loaded)."""
        self._progress.console.log(message, markup=False, highlight=False)

    def task(self, description: str, total: int, completed: int = 0) -> Callable[[int], None]:
        """A bar for ``total`` items, ``completed`` of them done before (a resumed cell)."""
        task_id = self._progress.add_task(description, total=total, completed=completed)
        return lambda n: self._progress.advance(task_id, n)
