"""The exploration's stages through the Python API: verification rejects a slow winner, and export rebuilds a
network from the stored typed record (also for a module passed to the API)."""

from __future__ import annotations

import numpy as np
import pytest

from netcut.backbones import from_module
from netcut.data.datasets import SplitConfig, from_torch_dataset
from netcut.errors import NetcutError
from netcut.search import explore as explore_module
from netcut.search.config import ExploreConfig
from netcut.search.explore import Explorer
from netcut.types import Percentiles
from tiny_models import Chain, Stripes

pytestmark = [pytest.mark.slow, pytest.mark.runtime]


@pytest.fixture
def stripes():
    return from_torch_dataset(Stripes(), ["rows", "columns"], SplitConfig(val_fraction=0.25, test_fraction=0.25))


def _explorer(tmp_path, dataset, **options) -> Explorer:
    settings = {"deadlines": (1000.0,), "input_size": 32, "run_dir": str(tmp_path), "repeats": 3, "warmup": 1,
                "threads": 1, "strategy": "exhaustive", **options}
    config = ExploreConfig(models=("chain",), data="stripes", **settings)
    return Explorer(config, backbones=[from_module(Chain(), name="chain", input_size=32)], dataset=dataset)


def test_a_winner_that_misses_the_deadline_when_measured_is_rejected(tmp_path, stripes, monkeypatch):
    real = explore_module.measure_candidate
    calls = []

    def slow_first(ctx, candidate):
        calls.append(candidate.label)
        if len(calls) == 1:
            return Percentiles(5000.0, 5000.0, 5000.0), None  # far beyond the 1000 ms deadline
        return real(ctx, candidate)

    monkeypatch.setattr(explore_module, "measure_candidate", slow_first)
    result = _explorer(tmp_path, stripes).run()
    decision = result.decision()
    assert len(calls) == 2 and [r.candidate.label for r in decision.rejected] == [calls[0]]
    assert decision.chosen is not None and decision.chosen.candidate.label == calls[1] != calls[0]
    assert decision.rejected[0].measured_ms == 5000.0


def test_export_rebuilds_the_stored_network_given_the_module_again(tmp_path, stripes):
    from netcut.export.exporter import export

    chain = Chain()
    config = ExploreConfig(models=("chain",), data="stripes", deadlines=(1000.0,), input_size=32,
                           run_dir=str(tmp_path), repeats=3, warmup=1, threads=1)
    backbone = from_module(chain, name="chain", input_size=32)
    result = Explorer(config, backbones=[backbone], dataset=stripes).run()
    with pytest.raises(NetcutError, match="passed to the Python API as a module"):
        export(tmp_path, tmp_path / "x.onnx")
    manifest = export(tmp_path, tmp_path / "chain.onnx", backbones={"chain": backbone})
    assert manifest["cut"] == result.chosen().cut and manifest["agreement_with_pytorch_fp32"]["max_abs_diff"] < 1e-4
    import onnxruntime

    session = onnxruntime.InferenceSession(str(tmp_path / "chain.onnx"), providers=["CPUExecutionProvider"])
    # The file holds the trained network: its test accuracy is the one stored for the choice.
    test = stripes.splits["test"]
    x = stripes.loader(test, 32, backbone.mean, backbone.std).numpy()
    logits = np.concatenate([session.run(None, {session.get_inputs()[0].name: x[i:i + 1]})[0] for i in range(len(x))])
    assert logits.shape == (len(test), 2)
    assert (logits.argmax(1) == stripes.targets[test]).mean() == pytest.approx(result.chosen().accuracy)


def test_a_deadline_between_cuts_is_met_on_a_runtime_whose_speed_the_test_sets(tmp_path, stripes, paced,
                                                                                 monkeypatch):
    """The latency, proposal, training, decision and verification stages in this process, on the paced runtime
    (1 ms a call plus 20 ms per MFLOP, whatever the host): a deadline the full network misses by far is met by a
    TRN, estimated and verified under it; the full network is neither feasible nor chosen."""
    monkeypatch.setenv("PACED_MS_PER_MFLOP", "20")
    backend, _ = paced
    explorer = _explorer(tmp_path, stripes, backends=(backend.name,), strategy="netcut")
    candidates = explorer.candidates()
    full = next(c for c in candidates if c.is_full)
    shallow = min(candidates, key=lambda c: c.estimate.p50)
    assert full.estimate.p50 > 2 * shallow.estimate.p50  # the cost model, as set: deeper cuts cost more
    deadline = (full.estimate.p50 + shallow.estimate.p50) / 2
    result = _explorer(tmp_path, stripes, backends=(backend.name,), strategy="netcut",
                       deadlines=(deadline,)).run()
    decision = result.decision()
    assert decision.chosen is not None and not decision.chosen.candidate.is_full
    assert full.id not in decision.feasible and decision.chosen.candidate.id in decision.feasible
    assert decision.chosen.candidate.estimate.p50 * 1.05 <= deadline
    assert decision.chosen.latency_ms is not None and decision.chosen.latency_ms <= deadline
