"""Stage: measure a proposal's latency on the backend before it is reported (stored, so reruns decide alike)."""

from __future__ import annotations

from netcut.graph import example_input
from netcut.latency.backends import bind, get_backend
from netcut.latency.harness import environment, measure_interleaved
from netcut.model import build_trn
from netcut.search.context import RunContext
from netcut.search.keys import latency_key
from netcut.search.results import Candidate, LatencyRecord
from netcut.types import Percentiles


def measure_candidate(ctx: RunContext, candidate: Candidate) -> Percentiles:
    """The candidate's TRN timed with the harness (with the dataset's head), or its stored measurement."""
    net = ctx.networks[candidate.model]
    key = latency_key(candidate.id, net.traced.fingerprint(), "verified", ctx.device_key, ctx.config.batch,
                      ctx.dataset.num_classes)
    stored = ctx.store.get_latency(key)
    if stored is not None:
        return stored.latency
    backend = get_backend(ctx.config.backend, ctx.threads)
    model = build_trn(net.traced, candidate.cut, ctx.dataset.num_classes, own_weights=False)
    x = example_input(net.traced.input_size, ctx.config.batch)
    stats = measure_interleaved({"trn": bind(backend, model, x)}, ctx.config.harness(), sync=backend.sync())["trn"]
    ctx.store.put_latencies([LatencyRecord(key, candidate.id, net.traced.fingerprint(), "verified", stats.only(),
                                           environment(backend.name, ctx.threads))])
    return stats.only()
