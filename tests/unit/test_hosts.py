"""side_by_side: the latency sessions of devices on different hosts overlap, those of one host never do."""

from __future__ import annotations

import threading

import pytest

from netcut.latency.hosts import side_by_side


def test_groups_run_side_by_side_and_a_groups_jobs_one_after_another():
    b_started = threading.Event()
    running: dict[str, int] = {"a": 0, "b": 0}
    most: dict[str, int] = {"a": 0, "b": 0}
    lock = threading.Lock()

    def job(j: tuple[str, int]) -> str:
        group, i = j
        with lock:
            running[group] += 1
            most[group] = max(most[group], running[group])
        if group == "b":
            b_started.set()
        # a's first job can only finish once b's job has started: they overlap, or this waits out its timeout
        overlapped = b_started.wait(timeout=10) if j == ("a", 0) else True
        with lock:
            running[group] -= 1
        return f"{group}{i}:{overlapped}"

    jobs = [("a", 0), ("a", 1), ("a", 2), ("b", 0)]
    results = dict(side_by_side(job, jobs, lambda j: j[0]))
    assert results == {("a", 0): "a0:True", ("a", 1): "a1:True", ("a", 2): "a2:True", ("b", 0): "b0:True"}
    assert most == {"a": 1, "b": 1}


def test_one_group_runs_in_order_in_the_callers_thread():
    seen = []
    out = list(side_by_side(lambda j: seen.append((j, threading.current_thread())) or j * 2, [3, 1, 2], lambda j: "h"))
    assert out == [(3, 6), (1, 2), (2, 4)]
    assert {t for _, t in seen} == {threading.current_thread()}


def test_an_error_in_one_group_is_raised():
    def job(j: tuple[str, int]) -> int:
        if j == ("b", 0):
            raise ValueError("device b failed")
        return j[1]

    with pytest.raises(ValueError, match="device b failed"):
        list(side_by_side(job, [("b", 0), *[("a", i) for i in range(3)]], lambda j: j[0]))
