"""Stage: every candidate's latency and model size, before anything is trained, per backbone × backend × precision
(a table from the target, the store, or an estimator run in the backend's worker)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from netcut.errors import NetcutError
from netcut.latency.estimators import EstimatorRun, run_estimator
from netcut.latency.table import LatencyTable
from netcut.search.context import Network, RunContext
from netcut.search.keys import latency_key
from netcut.search.results import Candidate, LatencyRecord
from netcut.types import CandidateId, CutPoint, Percentiles

BYTES_PER_WEIGHT = {"fp32": 4, "int8": 1}
# a multi (Head2Toe) head also pools the activations of the cuts before its own: about 2.5 G elements/s, memory
# bound (the winner's real latency is measured before it is reported)
POOL_MS_PER_ELEMENT = 0.4e-6


def candidate_id(ctx: RunContext, network: Network, cut: str, backend: str, precision: str, head: str = "linear"
                 ) -> CandidateId:
    """The identity of a candidate of this exploration (on this run's device)."""
    return CandidateId(network.name, cut, backend, precision, ctx.device, head)


def estimated_size(cut: CutPoint, precision: str) -> int:
    """A model file's size from its parameter count, where no conversion measured it."""
    return cut.params * BYTES_PER_WEIGHT.get(precision, 4)


TableKey = tuple[str, str, str]  # fingerprint, backend, precision


def load_tables(ctx: RunContext) -> dict[TableKey, tuple[LatencyTable, str]]:
    """Latency tables by (fingerprint, backend, precision); each must belong to one of the models and match the run."""
    tables: dict[TableKey, tuple[LatencyTable, str]] = {}
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
        tables[(table.fingerprint, table.backend, table.precision)] = (table, path)
    return tables


@dataclass(frozen=True)
class LatencyJob:
    """Estimate every cut of one backbone on one backend at one precision: one independent unit of work."""

    network: str
    backend: str
    precision: str


def run_latency_job(ctx: RunContext, job: LatencyJob) -> EstimatorRun:
    """The estimates (and model sizes) of one backbone's cuts."""
    net = ctx.networks[job.network]
    settings = ctx.config.profile_settings(ctx.dataset.num_classes, job.backend, job.precision)
    ctx.reporter.note(f"estimating latencies of {len(net.cuts)} candidates of {net.name} "
                      f"({settings.estimator}, {job.backend}, {job.precision})")
    session = ctx.session(net, job.backend, job.precision)
    return run_estimator(net.traced, net.cuts, session, settings, ctx.reporter)


def _key(ctx: RunContext, net: Network, candidate: CandidateId, estimator: str) -> str:
    return latency_key(candidate, net.traced.fingerprint(), estimator, ctx.device_keys[candidate.backend],
                       ctx.config.batch, ctx.dataset.num_classes)


Found = tuple[dict[str, Percentiles], dict[str, int], str]  # estimates, sizes, source


def estimate_latencies(ctx: RunContext) -> list[Candidate]:
    """Every candidate with its latency estimate and size, in network, backend, precision and cut order."""
    tables = load_tables(ctx)
    estimator = ctx.config.estimator
    found: dict[LatencyJob, Found] = {}
    jobs = []
    for net in ctx.networks.values():
        for backend in ctx.config.backends:
            for precision in ctx.config.precisions:
                job = LatencyJob(net.name, backend, precision)
                table_key = (net.traced.fingerprint(), backend, precision)
                if table_key in tables:
                    table, path = tables[table_key]
                    rows = {c.name: table.row(c.name) for c in net.cuts}
                    found[job] = ({n: r.best() for n, r in rows.items()},
                                  {n: r.size_bytes for n, r in rows.items()}, f"table:{path}")
                    continue
                stored = {c.name: ctx.store.get_latency(
                    _key(ctx, net, candidate_id(ctx, net, c.name, backend, precision), estimator)) for c in net.cuts}
                if all(stored.values()):
                    found[job] = ({n: r.latency for n, r in stored.items() if r is not None},
                                  {n: r.size_bytes for n, r in stored.items() if r is not None}, estimator)
                else:
                    jobs.append(job)
    for job, run in ctx.executor.run(partial(run_latency_job, ctx), jobs):
        net = ctx.networks[job.network]
        env = ctx.environment(job.backend)
        ids = {c.name: candidate_id(ctx, net, c.name, job.backend, job.precision) for c in net.cuts}
        sizes = {c.name: run.sizes.get(c.name) or estimated_size(c, job.precision) for c in net.cuts}
        ctx.store.put_latencies([LatencyRecord(_key(ctx, net, ids[c.name], estimator), ids[c.name],
                                               net.traced.fingerprint(), estimator, run.estimates[c.name], env,
                                               sizes[c.name]) for c in net.cuts])
        found[job] = (run.estimates, sizes, estimator)
    candidates = []
    for net in ctx.networks.values():
        for backend in ctx.config.backends:
            for precision in ctx.config.precisions:
                estimates, sizes, source = found[LatencyJob(net.name, backend, precision)]
                for head in ctx.config.heads:
                    spec = ctx.config.head_spec(head)
                    for c in net.cuts:
                        estimate, size = estimates[c.name], sizes.get(c.name) or estimated_size(c, precision)
                        if head == "multi":
                            estimate = with_pooling(estimate, net, c)
                        candidates.append(Candidate(candidate_id(ctx, net, c.name, backend, precision, spec.label()), c,
                                                    estimate, source, size))
    return candidates


def with_pooling(estimate: Percentiles, net: Network, cut: CutPoint) -> Percentiles:
    """A multi head's TRN: the plain TRN, plus pooling every cut before its own (at most what it will read)."""
    elements = sum(c.shape[0] * c.shape[1] * c.shape[2] for c in net.cuts if c.index < cut.index)
    extra = elements * POOL_MS_PER_ELEMENT
    return Percentiles(estimate.p50 + extra, estimate.p90 + extra, estimate.p99 + extra)
