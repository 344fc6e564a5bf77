"""Stage: every candidate's latency, before anything is trained (a table from the target, the store, or an
estimator run per backbone)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from netcut.errors import NetcutError
from netcut.latency.backends import get_backend
from netcut.latency.estimators import run_estimator
from netcut.latency.harness import environment
from netcut.latency.settings import ProfileSettings
from netcut.latency.table import LatencyTable
from netcut.search.context import Network, RunContext
from netcut.search.keys import latency_key
from netcut.search.results import Candidate, LatencyRecord
from netcut.types import CandidateId, Percentiles


def candidate_id(ctx: RunContext, network: Network, cut: str) -> CandidateId:
    """The identity of a candidate of this exploration."""
    return CandidateId(network.name, cut, ctx.config.backend)


def load_tables(ctx: RunContext) -> dict[str, tuple[LatencyTable, str]]:
    """Latency tables by fingerprint; each given table must belong to one of the models and match the run."""
    tables: dict[str, tuple[LatencyTable, str]] = {}
    by_fingerprint = {n.traced.fingerprint(): n for n in ctx.networks.values()}
    for path in ctx.config.latency_tables:
        table = LatencyTable.load(path)
        if table.fingerprint not in by_fingerprint:
            models = ", ".join(f"{n.name} @ {n.traced.input_size}px" for n in ctx.networks.values())
            raise NetcutError(f"latency table {path!r} was made for {table.model} at {table.input_size}px, which "
                              f"is none of the models explored ({models})",
                              "pass tables profiled for these models at the same --input-size")
        net = by_fingerprint[table.fingerprint]
        table.check_matches(net.traced.fingerprint(), net.name, ctx.config.backend, path)
        if table.granularity != ctx.config.granularity:
            raise NetcutError(f"latency table {path!r} has {table.granularity} cuts, the exploration uses "
                              f"{ctx.config.granularity}", f"pass --granularity {table.granularity}")
        missing = [c.name for c in net.cuts if c.name not in {r.name for r in table.cuts}]
        if missing:
            raise NetcutError(f"latency table {path!r} lacks cut {missing[0]!r}", "re-profile the model")
        tables[table.fingerprint] = (table, path)
    return tables


@dataclass(frozen=True)
class LatencyJob:
    """Estimate every cut of one backbone: one independent unit of work."""

    network: str
    settings: ProfileSettings


def run_latency_job(ctx: RunContext, job: LatencyJob) -> dict[str, Percentiles]:
    """The estimates of one backbone's cuts, by cut name."""
    net = ctx.networks[job.network]
    ctx.reporter.note(f"estimating latencies of {len(net.cuts)} candidates of {net.name} "
                      f"({job.settings.estimator}, {job.settings.backend})")
    backend = get_backend(job.settings.backend, ctx.threads)
    return run_estimator(net.traced, net.cuts, backend, job.settings, ctx.reporter).estimates


def _key(ctx: RunContext, net: Network, candidate: CandidateId, estimator: str) -> str:
    return latency_key(candidate, net.traced.fingerprint(), estimator, ctx.device_key, ctx.config.batch,
                       ctx.dataset.num_classes)


def estimate_latencies(ctx: RunContext) -> list[Candidate]:
    """Every candidate with its latency estimate, in network and cut order; new estimates are stored."""
    tables = load_tables(ctx)
    estimator = ctx.config.estimator
    settings = ctx.config.profile_settings(ctx.dataset.num_classes)
    found: dict[str, tuple[dict[str, Percentiles], str]] = {}
    jobs = []
    for net in ctx.networks.values():
        if net.traced.fingerprint() in tables:
            table, path = tables[net.traced.fingerprint()]
            found[net.name] = ({c.name: table.row(c.name).best() for c in net.cuts}, f"table:{path}")
            continue
        stored = {c.name: ctx.store.get_latency(_key(ctx, net, candidate_id(ctx, net, c.name), estimator))
                  for c in net.cuts}
        if all(stored.values()):
            found[net.name] = ({n: r.latency for n, r in stored.items() if r is not None}, estimator)
        else:
            jobs.append(LatencyJob(net.name, settings))
    backend_env = environment(ctx.config.backend, ctx.threads)
    for job, estimates in ctx.executor.run(partial(run_latency_job, ctx), jobs):
        net = ctx.networks[job.network]
        ids = {c.name: candidate_id(ctx, net, c.name) for c in net.cuts}
        ctx.store.put_latencies([LatencyRecord(_key(ctx, net, ids[c.name], estimator), ids[c.name],
                                               net.traced.fingerprint(), estimator, estimates[c.name], backend_env)
                                 for c in net.cuts])
        found[net.name] = (estimates, estimator)
    candidates = []
    for net in ctx.networks.values():
        estimates, source = found[net.name]
        candidates += [Candidate(candidate_id(ctx, net, c.name), c, estimates[c.name], source) for c in net.cuts]
    return candidates
