"""Peak memory: the graph's activation peak and weights, the runtime model fitted to measurements, the probe that
measures a real model in a fresh runtime process, and memory as a budget in the decision."""

from __future__ import annotations

import sqlite3

import pytest
import torch
from torch import nn

from netcut.backbones import from_module
from netcut.graph import example_input, find_cuts, trace
from netcut.latency.backends import converted, get_backend
from netcut.latency.memory import (
    GraphMemory,
    RamModel,
    activation_peak,
    anchor_cuts,
    estimate_ram,
    fit_ram_model,
    graph_memory,
)
from netcut.latency.table import CutLatency, LatencyTable, along_depth
from netcut.model import build_trn
from netcut.results import Deadline, LatencyRecord
from netcut.search.decide import decide
from netcut.search.keys import latency_key
from netcut.store import ResultStore
from netcut.types import CandidateId, Percentiles
from netcut_agent.memory import MemoryRecord
from netcut_agent.worker import WorkerProcess
from synthetic import candidate, probe
from tiny_models import Chain


class Residual(nn.Module):
    """x -> a = conv(x) -> b = conv(a) -> a + b: the skip keeps `a` alive while `b` and the sum are written."""

    def __init__(self) -> None:
        super().__init__()
        self.one = nn.Conv2d(3, 8, 3, padding=1)
        self.two = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.one(x)
        return a + self.two(a)


class Straight(nn.Module):
    """x -> conv -> conv -> conv: each output dies as soon as the next is written."""

    def __init__(self) -> None:
        super().__init__()
        self.one = nn.Conv2d(3, 8, 3, padding=1)
        self.two = nn.Conv2d(8, 8, 3, padding=1)
        self.three = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.three(self.two(self.one(x)))


MAP = 8 * 8 * 8 * 4  # one 8-channel 8×8 float32 map


def _output_node(traced):
    return next(n for n in traced.nodes if n.op == "output").all_input_nodes[0]


def test_a_skip_connection_keeps_its_tensor_alive_and_a_chain_does_not():
    straight = trace(from_module(Straight(), input_size=8), 8)
    residual = trace(from_module(Residual(), input_size=8), 8)
    assert activation_peak(straight, _output_node(straight), 4) == 2 * MAP  # input and output of one conv
    assert activation_peak(residual, _output_node(residual), 4) == 3 * MAP  # a, two(a) and the sum
    assert activation_peak(residual, _output_node(residual), 1) == 3 * MAP // 4  # int8: a byte per element
    assert activation_peak(residual, _output_node(residual), 4, batch=2) == 6 * MAP


def test_graph_memory_counts_the_prefix_weights_at_the_precision_and_the_head():
    traced = trace(from_module(Chain(), input_size=32), 32)
    cut = find_cuts(traced, "block")[-1]
    fp32, int8 = graph_memory(traced, cut, "fp32", 10), graph_memory(traced, cut, "int8", 10)
    head = (cut.channels + 1) * 10 * 4
    assert fp32.weights == cut.params * 4 + head and int8.weights == cut.params + head
    assert fp32.activations == 4 * int8.activations > 0


def test_the_runtime_model_is_recovered_from_three_measured_trns_and_stays_non_negative():
    truth = RamModel(5e6, 2.0, 1.5)
    points = [(g, truth.predict(g)) for g in (GraphMemory(10**5, 4 * 10**6), GraphMemory(4 * 10**6, 10**6),
                                              GraphMemory(2 * 10**7, 5 * 10**5))]
    fitted = fit_ram_model(points)
    assert fitted.fitted_on == 3
    assert fitted.overhead == pytest.approx(5e6, rel=1e-3) and fitted.weight_factor == pytest.approx(2.0, rel=1e-3)
    assert fitted.activation_factor == pytest.approx(1.5, rel=1e-3)
    # a measurement below the graph's own bytes cannot make a factor negative
    shrunk = fit_ram_model([(GraphMemory(10**6, 10**6), 10**6), (GraphMemory(10**7, 10**6), 2 * 10**6),
                            (GraphMemory(10**5, 10**7), 3 * 10**6)])
    assert min(shrunk.overhead, shrunk.weight_factor, shrunk.activation_factor) >= 0
    one = fit_ram_model([(GraphMemory(10**6, 10**6), 9 * 10**6)])
    assert (one.overhead, one.weight_factor, one.activation_factor) == (7e6, 1.0, 1.0)
    assert fit_ram_model([]) == RamModel()


def test_anchors_span_the_depth_and_measured_cuts_keep_their_measurement():
    traced = trace(from_module(Chain(), input_size=32), 32)
    cuts = find_cuts(traced, "layer")
    anchors = anchor_cuts(cuts)
    assert anchors[0] == cuts[0] and anchors[-1] == cuts[-1] and len(anchors) == 3
    asked: list[str] = []

    def measure(name: str) -> MemoryRecord:
        asked.append(name)
        return MemoryRecord(10**6 * (1 + len(asked)), 10**6, 1.0, 1.0, "VmHWM")

    ram = estimate_ram(traced, cuts, "fp32", 10, measure)
    assert asked == [c.name for c in anchors] and set(ram.measured) == set(asked)
    assert all(ram.bytes[n] == ram.measured[n].peak_bytes for n in asked)
    assert {ram.source(c.name) for c in cuts} == {"measured", "estimated"}


@pytest.mark.runtime
def test_the_probe_measures_a_real_model_in_a_fresh_runtime_process():
    """More weights, more memory: a TRN's peak memory over the idle runtime, measured by the worker (ONNX Runtime's
    own arena report beside it), its load and first-inference times."""
    traced = trace(from_module(Chain(), input_size=32), 32)
    cuts = find_cuts(traced, "block")
    x = example_input(32, 1)
    small = converted(get_backend("onnxruntime"), build_trn(traced, cuts[0], 10, own_weights=False), x, "fp32",
                      None)
    wide = nn.Sequential(nn.Conv2d(3, 512, 3, padding=1), nn.Conv2d(512, 512, 3, padding=1))  # 9.5 MB of weights
    large = converted(get_backend("onnxruntime"), wide.eval(), x, "fp32", None)
    worker = WorkerProcess("onnxruntime", 1)
    try:
        little, big = worker.memory(small, tuple(x.shape)), worker.memory(large, tuple(x.shape))
    finally:
        worker.close()
    assert little.method == "VmHWM" and little.load_ms > 0 and little.first_ms > 0
    assert big.peak_bytes > little.peak_bytes + 9 * 10**6  # at least its weights more
    assert big.peak_bytes >= big.resident_bytes > 0
    assert big.reported.get("arena_peak_bytes", 0) > 0  # ONNX Runtime's profiler says what its arena held


def test_a_memory_budget_filters_estimates_and_rejects_a_winner_measured_over_it():
    small = candidate("a", 1, 2.0)
    big = candidate("a", 3, 4.0)
    small, big = (type(small)(c.id, c.cut, c.estimate, c.latency_source, c.size_bytes, ram_bytes=r,
                              ram_source="estimated") for c, r in ((small, 20 * 10**6), (big, 60 * 10**6)))
    budget = Deadline(10.0, margin=0.0, max_ram_mb=50)
    assert budget.fits(small) and not budget.fits(big) and not budget.admits(big)
    # the estimate said it fits; the measurement says it does not: rejected, and the next one is measured
    close = type(big)(big.id, big.cut, big.estimate, "empirical", big.size_bytes, ram_bytes=45 * 10**6)
    records = [probe(close, 0.9), probe(small, 0.8)]
    over = MemoryRecord(55 * 10**6, 50 * 10**6, 10.0, 2.0, "VmHWM")
    step = decide(budget, [close, small], [close, small], records, {close.id: Percentiles(4, 4, 4)}, True,
                  {close.id: over})
    assert step.pending == small.id and step.rejected[0].ram_bytes == over.peak_bytes
    under = MemoryRecord(21 * 10**6, 20 * 10**6, 5.0, 1.0, "VmHWM")
    final = decide(budget, [close, small], [close, small], records,
                   {close.id: Percentiles(4, 4, 4), small.id: Percentiles(2, 2, 2)}, True,
                   {close.id: over, small.id: under})
    assert final.chosen is not None and final.chosen.candidate == small and final.chosen.memory == under
    nothing = decide(budget, [close], [close], records[:1], {close.id: Percentiles(4, 4, 4)}, True, {close.id: over})
    assert nothing.chosen is None and "memory budget" in (nothing.reason or "")


def test_tables_carry_memory_and_a_table_without_it_still_loads(tmp_path):
    record = MemoryRecord(30 * 10**6, 25 * 10**6, 12.0, 3.0, "VmHWM", {"arena_peak_bytes": 10**6})
    rows = [CutLatency("a", Percentiles(1, 1, 1), macs=10, params=5, ram_bytes=10**7),
            CutLatency("b", Percentiles(3, 3, 3), macs=30, params=9, ram_bytes=record.peak_bytes, memory=record)]
    table = LatencyTable("m", "fp", 32, "block", "onnxruntime", "fp32", "empirical", 1, 10, {}, rows)
    again = LatencyTable.load(table.save(tmp_path / "t.json"))
    assert again.cuts == rows
    old = table.to_json()
    for row in old["cuts"]:
        del row["ram_bytes"], row["memory"]
    (tmp_path / "old.json").write_text(__import__("json").dumps(old))
    assert all(r.ram_bytes is None and r.memory is None for r in LatencyTable.load(tmp_path / "old.json").cuts)
    depth = along_depth(again)
    assert [d.block_ms for d in depth] == [1.0, 2.0] and [d.share_pct for d in depth] == [pytest.approx(100 / 3),
                                                                                          pytest.approx(200 / 3)]
    assert [d.macs for d in depth] == [10, 20] and [d.ram_measured for d in depth] == [False, True]


def test_a_store_of_the_previous_schema_gains_memory_columns(tmp_path):
    ResultStore(tmp_path).close()
    db = sqlite3.connect(tmp_path / "netcut.sqlite")  # what schema 4 had: latencies without memory
    db.execute("ALTER TABLE latencies DROP COLUMN memory")
    db.execute("ALTER TABLE latencies DROP COLUMN ram_bytes")
    db.execute("UPDATE meta SET value='4' WHERE key='schema'")
    db.commit()
    db.close()
    candidate_id = CandidateId("lite0", "blocks.1", "onnxruntime")
    key = latency_key(candidate_id, "fp", "verified", "dev", 1, 10)
    memory = MemoryRecord(10**7, 9 * 10**6, 4.0, 1.5, "VmHWM")
    with ResultStore(tmp_path) as store:
        store.put_latencies([LatencyRecord(key, candidate_id, "fp", "verified", Percentiles(1, 1, 1), {}, 100,
                                           memory.peak_bytes, memory)])
        got = store.get_latency(key)
    assert got is not None and got.ram_bytes == memory.peak_bytes and got.memory == memory
