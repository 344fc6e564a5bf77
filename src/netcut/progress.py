"""Progress (rich bars on a terminal, plain lines otherwise, always on stderr) and short notes.

quiet=True silences progress so that stdout stays machine-readable; warnings are always shown.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

Advance = Callable[..., None]  # advance(n=1)
_LIVE = threading.Lock()  # held while a rich bar is shown


@dataclass(frozen=True)
class Reporter:
    """Where long steps report progress. quiet=True prints nothing but warnings."""

    quiet: bool = False

    @contextmanager
    def bar(self, description: str, total: int) -> Iterator[Advance]:
        """A progress bar with ETA (a terminal) or a start line, quarter lines and a done line (logs); yields
        advance(n=1)."""
        if self.quiet or total <= 0:
            yield lambda n=1: None
            return
        # one live bar at a time (rich refuses two): steps running side by side (devices timed in threads) get lines
        if not sys.stderr.isatty() or not _LIVE.acquire(blocking=False):
            with self._plain(description, total) as advance:
                yield advance
            return
        try:
            with self._live(description, total) as advance:
                yield advance
        finally:
            _LIVE.release()

    @contextmanager
    def _live(self, description: str, total: int) -> Iterator[Advance]:
        """A rich progress bar on the terminal."""
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("ETA"), TimeRemainingColumn())
        with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
            task = progress.add_task(description, total=total)
            yield lambda n=1: progress.advance(task, n)

    @contextmanager
    def _plain(self, description: str, total: int) -> Iterator[Advance]:
        """Readable lines for logs and pipes: no cursor tricks, no partial lines."""
        start = time.perf_counter()
        done = [0, 0]  # steps done, quarters reported

        def advance(n: int = 1) -> None:
            done[0] += n
            quarter = 4 * done[0] // total
            if quarter > done[1] and done[0] < total:
                done[1] = quarter
                elapsed = time.perf_counter() - start
                eta = elapsed * (total - done[0]) / done[0]
                self.note(f"{description}: {done[0]}/{total} after {elapsed:.1f} s, about {eta:.0f} s left")

        self.note(f"{description}: {total} steps")
        yield advance
        self.note(f"{description}: done in {time.perf_counter() - start:.1f} s")

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
