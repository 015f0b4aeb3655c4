"""Progress display: rich bars (epoch/iteration, throughput, ETA, losses) on a TTY; plain,
parseable lines otherwise or with ``--quiet``. Only rank 0 writes.

The command line creates the :class:`Progress` (quiet is its ``plain`` parameter) and hands
it to library functions, which report through it and never print themselves.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import TextIO


@dataclass
class _Task:
    name: str
    total: int
    completed: int
    unit: str
    per_step: int
    started: float = field(default_factory=time.perf_counter)
    start_completed: int = 0
    last_print: float = 0.0
    rich_id: object = None


class Progress:
    """``enabled=False``: silent. ``plain``: plain lines (``--quiet``); None: bars on a TTY only.
    ``stream``: where plain lines go (default stderr)."""

    def __init__(self, enabled: bool = True, plain: bool | None = None, stream: TextIO | None = None):
        from hcbench.engine import distributed as D

        self.enabled = enabled and D.is_main()
        self.stream = stream
        self.plain = plain if plain is not None else not self._out().isatty()
        self._rich = None
        if self.enabled and not self.plain:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress
            from rich.table import Column

            console = Console(file=stream, force_terminal=True) if stream is not None else None
            # the losses column takes what is left and is cut with "…"; the name, bar, counts and
            # times keep their width however long the loss text grows
            self._rich = RichProgress(
                TextColumn("{task.description}", table_column=Column(no_wrap=True)),
                BarColumn(bar_width=24), MofNCompleteColumn(table_column=Column(no_wrap=True)),
                TextColumn("{task.fields[rate]}", table_column=Column(no_wrap=True)),
                TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                TextColumn("{task.fields[info]}", table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1)),
                transient=False, console=console, expand=True)
            self._rich.start()

    def _out(self) -> TextIO:
        return self.stream if self.stream is not None else sys.stderr  # looked up late: pytest swaps it

    def _line(self, text: str) -> None:
        out = self._out()
        out.write(text + "\n")
        out.flush()

    def log(self, msg: str) -> None:
        if not self.enabled:
            return
        if self._rich is not None:
            self._rich.console.print(msg, markup=False, highlight=False)
        else:
            self._line(msg)

    def task(self, name: str, total: int, completed: int = 0, unit: str = "it", per_step: int = 1) -> _Task:
        t = _Task(name, total, completed, unit, per_step, start_completed=completed)
        if self._rich is not None:
            t.rich_id = self._rich.add_task(name, total=total, completed=completed, rate="", info="")
        return t

    def advance(self, t: _Task, n: int = 1, losses: dict | None = None, lr: float | None = None) -> None:
        t.completed += n
        if not self.enabled:
            return
        elapsed = max(time.perf_counter() - t.started, 1e-9)
        rate = (t.completed - t.start_completed) * t.per_step / elapsed
        info = " ".join(f"{k}={v:.4g}" for k, v in (losses or {}).items())
        if lr is not None:
            info = f"lr={lr:.3g} {info}"  # first: the loss terms are what may be cut
        if self._rich is not None:
            self._rich.update(t.rich_id, completed=t.completed, rate=f"{rate:.1f} {t.unit}/s", info=info)
        elif time.perf_counter() - t.last_print > 10 or t.completed >= t.total:
            t.last_print = time.perf_counter()
            eta = (t.total - t.completed) * elapsed / max(t.completed - t.start_completed, 1)
            self._line(f"{t.name}: {t.completed}/{t.total} {rate:.1f} {t.unit}/s eta {eta:.0f}s {info}".rstrip())

    def finish(self, t: _Task) -> None:
        if self._rich is not None:
            self._rich.update(t.rich_id, completed=t.total)

    def close(self) -> None:
        if self._rich is not None:
            self._rich.stop()
            self._rich = None
