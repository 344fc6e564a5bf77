"""Latency sessions on several hosts at once: one thread per host, the sessions of one host one after another (two
on one host would compete for its cores)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

J = TypeVar("J")
R = TypeVar("R")


def side_by_side(fn: Callable[[J], R], jobs: Sequence[J], group_of: Callable[[J], str]) -> Iterator[tuple[J, R]]:
    """(job, fn(job)) as each completes: the jobs of one group one after another, the groups side by side (a thread
    each). Latency sessions on different hosts overlap; two on one host would compete for its cores. The caller
    (the driver's thread) keeps the store: fn must not touch it. The first error stops every group after its
    current job and is raised."""
    groups: dict[str, list[J]] = {}
    for job in jobs:
        groups.setdefault(group_of(job), []).append(job)
    if len(groups) <= 1:
        for job in jobs:
            yield job, fn(job)
        return
    results: queue.Queue[tuple[J, R] | BaseException] = queue.Queue()
    stop = threading.Event()

    def work(group: list[J]) -> None:
        for job in group:
            if stop.is_set():
                return
            try:
                results.put((job, fn(job)))
            except BaseException as e:  # noqa: BLE001 - handed to the driver's thread, which raises it
                results.put(e)
                return

    threads = [threading.Thread(target=work, args=(g,), daemon=True) for g in groups.values()]
    for t in threads:
        t.start()
    try:
        for _ in range(len(jobs)):
            item = results.get()
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:  # on an error or Ctrl-C the other groups stop after their current job, without holding the caller up
        stop.set()
