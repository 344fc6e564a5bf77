"""Executors run the independent jobs of a stage. Local runs them here, one after the other."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Protocol, TypeVar

J = TypeVar("J")
R = TypeVar("R")


class Executor(Protocol):
    """Runs fn over the independent jobs of a stage."""

    name: str

    def run(self, fn: Callable[[J], R], jobs: Sequence[J]) -> Iterator[tuple[J, R]]:
        """(job, fn(job)) for every job, as each completes, so the caller can store each result at once."""
        ...


class LocalExecutor:
    """In this process, in order: what a single machine does."""

    name = "local"

    def run(self, fn: Callable[[J], R], jobs: Sequence[J]) -> Iterator[tuple[J, R]]:
        """(job, fn(job)) for every job, one after the other."""
        for job in jobs:
            yield job, fn(job)
