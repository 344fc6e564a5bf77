"""Stage: measure a proposal's latency in its backend's worker before it is reported (stored, so reruns decide
alike)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from netcut.graph import example_input
from netcut.latency.calibration import as_batches
from netcut.latency.hosts import side_by_side
from netcut.model import TrimmedNetwork, build_trn
from netcut.results import Candidate, LatencyRecord
from netcut.search.context import RunContext, Target
from netcut.search.keys import latency_key
from netcut.search.training import head_of, record_key, trained_classifier
from netcut.types import Percentiles, slowest
from netcut_agent.memory import MemoryRecord


def timed_network(ctx: RunContext, candidate: Candidate) -> TrimmedNetwork:
    """What runs on the device: the TRN with the dataset's head (a Head2Toe head as trained: it decides which cuts
    are read; weights do not change latency otherwise)."""
    net = ctx.networks[candidate.model]
    if candidate.id.multi:
        record = ctx.store.get_record(record_key(ctx, candidate))
        if record is not None:
            head = trained_classifier(ctx, record, candidate.cut.channels)
            return build_trn(net.traced, candidate.cut, ctx.dataset.num_classes, head_of(ctx, candidate), head,
                             own_weights=False)
    return build_trn(net.traced, candidate.cut, ctx.dataset.num_classes, head_of(ctx, candidate), own_weights=False,
                     reads=[c for c in net.cuts if c.index <= candidate.cut.index])


Measured = tuple[Percentiles, MemoryRecord | None]


def measure_candidate(ctx: RunContext, candidate: Candidate) -> Measured:
    """The candidate's TRN (the dataset's head) converted, timed and its peak memory measured in its runtime on every
    latency target (the slowest and the largest count; devices on different hosts side by side), or its stored
    measurements."""
    net = ctx.networks[candidate.model]
    keys = {t.name: latency_key(replace(candidate.id, device=t.name), net.traced.fingerprint(), "verified",
                                t.device_keys[candidate.id.backend], ctx.config.batch, ctx.dataset.num_classes)
            for t in ctx.targets}
    measured: dict[str, Measured] = {}
    missing = []
    for target in ctx.targets:
        stored = ctx.store.get_latency(keys[target.name])
        if stored is not None:
            measured[target.name] = (stored.latency, stored.memory)
        else:
            missing.append(target)
    if missing:
        network = timed_network(ctx, candidate)  # read from the store here: the sessions' threads do not touch it
        timed = side_by_side(lambda t: _time_on(ctx, t, candidate, network), missing, lambda t: t.host)
        for target, (stats, env, size, memory) in timed:
            ctx.store.put_latencies([LatencyRecord(keys[target.name], replace(candidate.id, device=target.name),
                                                   net.traced.fingerprint(), "verified", stats, env, size,
                                                   memory.peak_bytes if memory else None, memory)])
            measured[target.name] = (stats, memory)
    records = [m for _, m in measured.values() if m is not None]
    largest = max(records, key=lambda m: m.peak_bytes) if len(records) == len(measured) else None
    return slowest([measured[t.name][0] for t in ctx.targets]), largest


def _time_on(ctx: RunContext, target: Target, candidate: Candidate, network: TrimmedNetwork
             ) -> tuple[Percentiles, dict[str, Any], int, MemoryRecord | None]:
    """The TRN timed on one target: its percentiles, the environment they were taken in, the model file's size, its
    peak memory (None where the target cannot measure it)."""
    net = ctx.networks[candidate.model]
    session = ctx.session(net, candidate.id.backend, candidate.id.precision, target)
    x = example_input(net.traced.input_size, ctx.config.batch)
    calibration = as_batches(session.images, ctx.config.batch) if session.images is not None else None
    size = session.add("verify", network, x, calibration)
    stats = session.time(["verify"], ctx.config.harness()).stats["verify"]
    memory = session.memory("verify")
    session.clear()
    return stats.only(), target.environment(candidate.id.backend, session.versions()), size, memory
