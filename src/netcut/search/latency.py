"""Stage: every candidate's latency and model size, before anything is trained, per backbone × backend × precision
(a table from the target, the store, or an estimator run in the backend's worker)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

from netcut.errors import NetcutError
from netcut.latency.estimators import EstimatorRun, run_estimator
from netcut.latency.hosts import side_by_side
from netcut.latency.memory import estimate_ram, session_ram
from netcut.latency.table import LatencyTable
from netcut.results import Candidate, LatencyRecord
from netcut.search.context import Network, RunContext, Target
from netcut.search.keys import latency_key
from netcut.types import CandidateId, CutPoint, Percentiles, slowest
from netcut_agent.memory import MemoryRecord

BYTES_PER_WEIGHT = {"fp32": 4, "int8": 1}
# a multi (Head2Toe) head also pools the activations of the cuts before its own: about 2.5 G elements/s, memory
# bound (the winner's real latency is measured before it is reported)
POOL_MS_PER_ELEMENT = 0.4e-6


def candidate_id(target: Target, network: Network, cut: str, backend: str, precision: str, head: str = "linear"
                 ) -> CandidateId:
    """The identity of a candidate of this exploration on one latency target."""
    return CandidateId(network.name, cut, backend, precision, target.name, head)


def estimated_size(cut: CutPoint, precision: str) -> int:
    """A model file's size from its parameter count, where no conversion measured it."""
    return cut.params * BYTES_PER_WEIGHT.get(precision, 4)


TableKey = tuple[str, str, str]  # fingerprint, backend, precision


def load_tables(ctx: RunContext) -> dict[TableKey, list[tuple[LatencyTable, str]]]:
    """Latency tables by (fingerprint, backend, precision); each must belong to one of the models and match the run."""
    tables: dict[TableKey, list[tuple[LatencyTable, str]]] = {}
    by_fingerprint = {n.traced.fingerprint(): n for n in ctx.networks.values()}
    for path in ctx.config.latency_tables:
        table = LatencyTable.load(path)
        if table.fingerprint not in by_fingerprint:
            models = ", ".join(f"{n.name} @ {n.traced.input_size}px" for n in ctx.networks.values())
            raise NetcutError(f"latency table {path!r} was made for {table.model} at {table.input_size}px, which "
                              f"is none of the models explored ({models})",
                              "pass tables profiled for these models at the same --input-size")
        net = by_fingerprint[table.fingerprint]
        if table.backend not in ctx.config.backends:
            table.check_matches(net.traced.fingerprint(), net.name, ctx.config.backends[0], path)
        if table.precision not in ctx.config.precisions:
            table.check_matches(net.traced.fingerprint(), net.name, table.backend, path, ctx.config.precisions[0])
        if table.granularity != ctx.config.granularity:
            raise NetcutError(f"latency table {path!r} has {table.granularity} cuts, the exploration uses "
                              f"{ctx.config.granularity}", f"pass --granularity {table.granularity}")
        missing = [c.name for c in net.cuts if c.name not in {r.name for r in table.cuts}]
        if missing:
            raise NetcutError(f"latency table {path!r} lacks cut {missing[0]!r}", "re-profile the model")
        tables.setdefault((table.fingerprint, table.backend, table.precision), []).append((table, path))
    return tables


def table_for(ctx: RunContext, target: Target, given: list[tuple[LatencyTable, str]]
              ) -> tuple[LatencyTable, str] | None:
    """The table measured on this target's device. Exploring here for one device, any one table counts (it says
    which device the run is for); with devices given, a table counts for the device it was measured on alone, and one
    measured on none of them is refused: a table from one board is never taken for another's."""
    if not given:
        return None
    if target.name == "local":
        if len({t.device for t, _ in given}) > 1:
            raise NetcutError(f"latency tables {', '.join(repr(p) for _, p in given)} were measured on different "
                              f"devices ({', '.join(sorted({t.device for t, _ in given}))}) for the same model, "
                              "runtime and precision", "pass one device's table, or explore with --device for each")
        return given[0]
    mine = [(t, p) for t, p in given if t.device == target.machine_info.get("cpu")]
    devices = {str(t.machine_info.get("cpu")) for t in ctx.targets}
    for table, path in given:
        if table.device not in devices:
            raise NetcutError(f"latency table {path!r} was measured on {table.device or 'an unnamed device'}, which "
                              f"is none of the devices explored ({', '.join(sorted(devices))})",
                              "profile the model on each device (netcut profile --device URL --out T.json) and pass "
                              "those tables")
    return mine[0] if mine else None


@dataclass(frozen=True)
class LatencyJob:
    """Estimate every cut of one backbone on one backend at one precision on one target: one unit of work."""

    network: str
    backend: str
    precision: str
    target: str = "local"


def run_latency_job(ctx: RunContext, job: LatencyJob) -> EstimatorRun:
    """The estimates (model sizes and peak memory too) of one backbone's cuts."""
    net = ctx.networks[job.network]
    target = next(t for t in ctx.targets if t.name == job.target)
    settings = ctx.config.profile_settings(ctx.dataset.num_classes, job.backend, job.precision)
    where = "" if target.name == "local" else f" on {target.name}"
    ctx.reporter.note(f"estimating latencies of {len(net.cuts)} candidates of {net.name} "
                      f"({settings.estimator}, {job.backend}, {job.precision}){where}")
    session = ctx.session(net, job.backend, job.precision, target)
    run = run_estimator(net.traced, net.cuts, session, settings, ctx.reporter)
    run.ram = session_ram(net.traced, net.cuts, session, ctx.dataset.num_classes, ctx.config.batch, run.memory,
                          every=settings.estimator == "measured", reporter=ctx.reporter)
    if session.memory_refused:
        ctx.reporter.warn(f"peak memory{where} is estimated from the graph alone: {session.memory_refused}")
    return run


def _key(ctx: RunContext, target: Target, net: Network, candidate: CandidateId, estimator: str) -> str:
    return latency_key(candidate, net.traced.fingerprint(), estimator, target.device_keys[candidate.backend],
                       ctx.config.batch, ctx.dataset.num_classes)


Ram = dict[str, tuple[int | None, MemoryRecord | None]]  # cut -> peak memory (bytes) and its measurement, if any
Found = tuple[dict[str, Percentiles], dict[str, int], str, Ram]  # estimates, sizes, source, memory


def estimate_latencies(ctx: RunContext) -> list[Candidate]:
    """Every candidate with its latency estimate and size, in network, backend, precision and cut order. With
    several devices a candidate's estimate is the slowest device's (a network must meet the deadline on each), and
    every device's estimate is kept with it."""
    tables = load_tables(ctx)
    estimator = ctx.config.estimator
    found: dict[LatencyJob, Found] = {}
    jobs = []
    for target in ctx.targets:
        for net in ctx.networks.values():
            for backend in ctx.config.backends:
                for precision in ctx.config.precisions:
                    job = LatencyJob(net.name, backend, precision, target.name)
                    picked = table_for(ctx, target, tables.get((net.traced.fingerprint(), backend, precision), []))
                    if picked is not None:
                        table, path = picked
                        rows = {c.name: table.row(c.name) for c in net.cuts}
                        found[job] = ({n: r.best() for n, r in rows.items()},
                                      {n: r.size_bytes for n, r in rows.items()}, f"table:{path}",
                                      table_ram(ctx, net, table, path, precision))
                        continue
                    stored = {c.name: ctx.store.get_latency(_key(ctx, target, net, candidate_id(
                        target, net, c.name, backend, precision), estimator)) for c in net.cuts}
                    if all(r is not None and r.ram_bytes is not None for r in stored.values()):
                        found[job] = ({n: r.latency for n, r in stored.items() if r is not None},
                                      {n: r.size_bytes for n, r in stored.items() if r is not None}, estimator,
                                      {n: (r.ram_bytes, r.memory) for n, r in stored.items() if r is not None})
                    else:
                        jobs.append(job)
    # latency sessions are the driver's whatever the executor: it converts models and times them in this machine's
    # runtime workers, or on each device (its agent, or its Ray node's actor): one session per device at a time,
    # devices on different hosts side by side
    host = {t.name: t.host for t in ctx.targets}
    for job, run in side_by_side(partial(run_latency_job, ctx), jobs, lambda j: host[j.target]):
        net = ctx.networks[job.network]
        target = next(t for t in ctx.targets if t.name == job.target)
        env = target.environment(job.backend)
        ids = {c.name: candidate_id(target, net, c.name, job.backend, job.precision) for c in net.cuts}
        sizes = {c.name: run.sizes.get(c.name) or estimated_size(c, job.precision) for c in net.cuts}
        ram: Ram = {c.name: (run.ram.bytes[c.name], run.ram.measured.get(c.name)) if run.ram else (None, None)
                    for c in net.cuts}
        ctx.store.put_latencies([LatencyRecord(_key(ctx, target, net, ids[c.name], estimator), ids[c.name],
                                               net.traced.fingerprint(), estimator, run.estimates[c.name], env,
                                               sizes[c.name], *ram[c.name]) for c in net.cuts])
        found[job] = (run.estimates, sizes, estimator, ram)
    candidates = []
    device = "+".join(t.name for t in ctx.targets)
    for net in ctx.networks.values():
        for backend in ctx.config.backends:
            for precision in ctx.config.precisions:
                per_target = {t.name: found[LatencyJob(net.name, backend, precision, t.name)] for t in ctx.targets}
                source = next(iter(per_target.values()))[2]
                for head in ctx.config.heads:
                    spec = ctx.config.head_spec(head)
                    for c in net.cuts:
                        each = {name: f[0][c.name] for name, f in per_target.items()}
                        if head == "multi":
                            each = {name: with_pooling(e, net, c) for name, e in each.items()}
                        size = next(iter(per_target.values()))[1].get(c.name) or estimated_size(c, precision)
                        rams = [f[3].get(c.name, (None, None)) for f in per_target.values()]
                        known = [r[0] for r in rams if r[0] is not None]
                        largest = max(known) if len(known) == len(rams) else None
                        measured = all(r[1] is not None for r in rams)
                        candidates.append(Candidate(
                            CandidateId(net.name, c.name, backend, precision, device, spec.label()), c,
                            slowest(list(each.values())), source, size, each if len(each) > 1 else {}, largest,
                            ("measured" if measured else "estimated") if largest is not None else ""))
    return candidates


def table_ram(ctx: RunContext, net: Network, table: LatencyTable, path: str, precision: str) -> Ram:
    """Peak memory from a latency table: its measurements where it has them (the rest estimated from them), else the
    graph's bytes alone (said once: without the runtime's own memory they are a lower bound)."""
    measured = {row.name: row.memory for row in table.cuts if row.memory is not None}
    if not measured:
        ctx.reporter.warn(f"latency table {path} has no memory measurements: peak memory is estimated from the "
                          "graph alone (weights and activations, without the runtime's own)")
    estimates = estimate_ram(net.traced, net.cuts, precision, ctx.dataset.num_classes, measured.get,
                             ctx.config.batch, every=True)
    return {c.name: (estimates.bytes[c.name], measured.get(c.name)) for c in net.cuts}


def with_pooling(estimate: Percentiles, net: Network, cut: CutPoint) -> Percentiles:
    """A multi head's TRN: the plain TRN, plus pooling every cut before its own (at most what it will read)."""
    elements = sum(math.prod(c.shape) for c in net.cuts if c.index < cut.index)
    extra = elements * POOL_MS_PER_ELEMENT
    return Percentiles(estimate.p50 + extra, estimate.p90 + extra, estimate.p99 + extra)
