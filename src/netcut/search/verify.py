"""Stage: measure a proposal's latency in its backend's worker before it is reported (stored, so reruns decide
alike)."""

from __future__ import annotations

from dataclasses import replace

from netcut.graph import example_input
from netcut.latency.calibration import as_batches
from netcut.model import TrimmedNetwork, build_trn
from netcut.search.context import RunContext, Target
from netcut.search.keys import latency_key
from netcut.search.latency import slowest
from netcut.search.results import Candidate, LatencyRecord
from netcut.search.training import head_of, record_key, trained_classifier
from netcut.types import Percentiles


def timed_network(ctx: RunContext, candidate: Candidate) -> TrimmedNetwork:
    """What runs on the device: the TRN with the dataset's head (a Head2Toe head as trained: it decides which cuts
    are read; weights do not change latency otherwise)."""
    net = ctx.networks[candidate.model]
    if candidate.id.multi:
        record = ctx.store.get_record(record_key(ctx, candidate))
        if record is not None:
            head = trained_classifier(ctx, record, candidate.cut.shape[0])
            return build_trn(net.traced, candidate.cut, ctx.dataset.num_classes, head_of(ctx, candidate), head,
                             own_weights=False)
    return build_trn(net.traced, candidate.cut, ctx.dataset.num_classes, head_of(ctx, candidate), own_weights=False,
                     reads=[c for c in net.cuts if c.index <= candidate.cut.index])


def measure_candidate(ctx: RunContext, candidate: Candidate) -> Percentiles:
    """The candidate's TRN (the dataset's head) converted and timed in its runtime on every latency target (the
    slowest counts), or its stored measurements."""
    return slowest([_measure_on(ctx, target, candidate) for target in ctx.targets])


def _measure_on(ctx: RunContext, target: Target, candidate: Candidate) -> Percentiles:
    net = ctx.networks[candidate.model]
    c = replace(candidate.id, device=target.name)
    key = latency_key(c, net.traced.fingerprint(), "verified", target.device_keys[c.backend], ctx.config.batch,
                      ctx.dataset.num_classes)
    stored = ctx.store.get_latency(key)
    if stored is not None:
        return stored.latency
    session = ctx.session(net, c.backend, c.precision, target)
    x = example_input(net.traced.input_size, ctx.config.batch)
    calibration = as_batches(session.images, ctx.config.batch) if session.images is not None else None
    size = session.add("verify", timed_network(ctx, candidate), x, calibration)
    stats = session.time(["verify"], ctx.config.harness()).stats["verify"]
    session.clear()
    ctx.store.put_latencies([LatencyRecord(key, c, net.traced.fingerprint(), "verified", stats.only(),
                                           target.environment(c.backend, session.versions()), size)])
    return stats.only()
