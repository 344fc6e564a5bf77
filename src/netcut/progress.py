"""Progress bars (rich, on stderr) and short notes; silent when quiet so stdout stays machine-readable."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator


@dataclass
class Reporter:
    """Where long steps report progress. quiet=True prints nothing."""

    quiet: bool = False

    @contextmanager
    def bar(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        """A progress bar with ETA; yields advance(n=1)."""
        if self.quiet or total <= 0:
            yield lambda n=1: None
            return
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("ETA"), TimeRemainingColumn())
        with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
            task = progress.add_task(description, total=total)
            yield lambda n=1: progress.advance(task, n)

    def warn(self, message: str) -> None:
        """A warning on stderr, shown even when quiet (quiet silences progress, not problems)."""
        sys.stderr.write(f"netcut: warning: {message.rstrip()}\n")
        sys.stderr.flush()

    def note(self, message: str) -> None:
        """A one-line note on stderr."""
        if not self.quiet:
            sys.stderr.write(message.rstrip() + "\n")
            sys.stderr.flush()


QUIET = Reporter(quiet=True)
