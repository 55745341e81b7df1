"""Console output, styled in one place: errors, warnings, notes, tables and progress.

Messages go to stderr (tables of results to stdout), are printed without rich markup (so ``[default: x]`` or
``forkctl[vllm]`` stay as written), and progress falls back to plain periodic lines when stderr is not a terminal
(a log file then still shows that a long run moves).
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console

_err = Console(stderr=True, highlight=False, soft_wrap=True)
PLAIN_PROGRESS_EVERY_S = 30.0


def stdout() -> Console:
    """The console for results (tables): a fresh one, so tests capturing sys.stdout see the output."""
    return Console(highlight=False)


def one_line(message: str) -> str:
    return " ".join(str(message).split())


def error(message: str) -> None:
    _err.print("error: " + one_line(message), style="bold red", markup=False)


def warn(message: str) -> None:
    _err.print("WARNING: " + one_line(message), style="yellow", markup=False)


def note(message: str) -> None:
    _err.print(message, markup=False)


def compact_table(title: str | None, width: int) -> Any:
    """An empty rich table in the house style (a rule under the header, no borders), for a console ``width``
    wide: at least as wide as its title, so a narrow table does not wrap its own title."""
    from rich import box
    from rich.table import Table

    return Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False,
                 collapse_padding=True, min_width=min(len(title), width) if title else None)


def table(title: str | None, columns: list[str], rows: list[list[Any]], right: tuple[int, ...] = ()) -> Any:
    """A rich table in the house style; columns never truncate their cells (they wrap), so 80 columns stay
    readable."""
    t = compact_table(title, stdout().width)
    for i, name in enumerate(columns):
        t.add_column(name, justify="right" if i in right else "left", overflow="fold")
    for row in rows:
        t.add_row(*[str(c) for c in row])
    return t


def show(*renderables: Any) -> None:
    console = stdout()
    for r in renderables:
        console.print(r)


class Progress:
    """A counter with a rich bar on a terminal, or a plain line every ``PLAIN_PROGRESS_EVERY_S`` otherwise.

    ``advance(n, status)`` moves it; the closing line always states the true final count."""

    def __init__(self, label: str, total: int, enabled: bool = True) -> None:
        self.label, self.total, self.enabled = label, total, enabled
        self.done, self.status = 0, ""
        self._bar: Any = None
        self._last_line = time.monotonic()

    def __enter__(self) -> Progress:
        if not self.enabled:
            return self
        if _err.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, \
                TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(TextColumn(self.label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                     TimeRemainingColumn(), TextColumn("{task.fields[status]}"), console=_err)
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total, status="")
        return self

    def advance(self, n: int = 1, status: str | None = None) -> None:
        self.done += n
        if status is not None:
            self.status = status
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(self._task, advance=n, status=self.status)
        elif time.monotonic() - self._last_line >= PLAIN_PROGRESS_EVERY_S:
            self._last_line = time.monotonic()
            note(self._line())

    def _line(self) -> str:
        return f"{self.label}: {self.done}/{self.total}" + (f" ({self.status})" if self.status else "")

    def __exit__(self, *exc: object) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, status=self.status)
            self._bar.stop()
        else:
            note(self._line())


def progress(label: str, total: int, enabled: bool = True) -> Progress:
    """``with console.progress("generating", n) as bar: bar.advance(k)``."""
    return Progress(label, total, enabled)

