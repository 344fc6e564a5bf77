"""Kernel detection on the tiny test CNNs, one-kernel modules for calibration, and the kernel-level analytical
model (fit, storage, refusal on another device, and predicting without running anything)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from netcut.backbones import from_module
from netcut.errors import NetcutError
from netcut.graph import find_cuts, trace
from netcut.latency.estimators.analytical import (
    KernelModel,
    check_belongs,
    estimate_analytical,
    sample_kernel,
)
from netcut.latency.kernels import KINDS, TOKEN_KINDS, Kernel, kernel_module, trn_kernels
from tiny_models import Chain, Concat, Residual


def kinds(kernels: list[Kernel]) -> list[str]:
    return [k.kind for k in kernels]


def test_a_chain_fuses_each_conv_with_its_norm_and_activation():
    traced = trace(from_module(Chain(), input_size=32))
    kernels = trn_kernels(traced, find_cuts(traced)[-1], num_classes=10)
    assert kinds(kernels) == ["conv", "conv", "conv", "gpool", "linear"]
    stem, down, same = kernels[:3]
    assert (stem.cin, stem.cout, stem.hin, stem.hout, stem.k, stem.stride, stem.act) == (3, 8, 32, 16, 3, 2, "relu")
    assert (down.cin, down.cout, down.hout, down.stride) == (8, 16, 8, 2)
    assert (same.cin, same.cout, same.hin, same.hout, same.stride) == (16, 16, 8, 8, 1)
    assert kernels[-1].cin == 16 and kernels[-1].cout == 10


def test_a_shallower_cut_has_fewer_kernels():
    traced = trace(from_module(Chain(), input_size=32))
    cuts = find_cuts(traced)
    counts = [len(trn_kernels(traced, c)) for c in cuts]
    assert counts == sorted(counts) and counts[0] < counts[-1]


def test_residual_blocks_give_an_add_kernel_and_keep_the_unfused_conv_alone():
    traced = trace(from_module(Residual(), input_size=32))
    kernels = trn_kernels(traced, find_cuts(traced)[-1], num_classes=4)
    assert kinds(kernels).count("eltwise") == 2 and kinds(kernels).count("conv") == 5
    conv1, conv2 = kernels[1], kernels[2]
    assert conv1.act == "relu" and conv2.act == "none"
    add = kernels[3]
    assert add.kind == "eltwise" and not add.broadcast and (add.cin, add.hin) == (8, 16)


def test_a_concat_is_one_kernel_and_a_1x1_conv_is_pointwise():
    traced = trace(from_module(Concat(), input_size=32))
    kernels = trn_kernels(traced, find_cuts(traced)[-1], num_classes=3)
    assert "concat" in kinds(kernels) and "pwconv" in kinds(kernels)
    concat = kernels[kinds(kernels).index("concat")]
    assert concat.cout == 8


class SqueezeExcite(nn.Module):
    input_size = 32

    def __init__(self) -> None:
        super().__init__()
        self.dw = nn.Conv2d(3, 3, 3, 1, 1, groups=3)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Conv2d(3, 3, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dw(x)
        return y * self.gate(self.fc(self.pool(y)))


def test_depthwise_and_squeeze_excitation_kernels():
    traced = trace(from_module(SqueezeExcite(), input_size=32))
    cut = find_cuts(traced, "layer")[-1]
    kernels = trn_kernels(traced, cut)
    assert kinds(kernels)[:4] == ["dwconv", "gpool", "pwconv", "eltwise"]
    assert kernels[2].act == "sigmoid" and kernels[2].hin == 1
    assert kernels[3].broadcast


@pytest.mark.parametrize("kind", KINDS)
def test_one_kernel_modules_produce_the_kernels_output_shape(kind):
    rng = np.random.default_rng(3)
    for _ in range(3):
        kernel = sample_kernel(kind, rng)
        if kind in TOKEN_KINDS:  # a few tokens keep the test fast
            kernel = Kernel(**{**kernel.to_json(), "hin": min(kernel.hin, 24), "hout": min(kernel.hin, 24)})
        elif kind != "linear":  # small spatial sizes keep the test fast
            kernel = Kernel(**{**kernel.to_json(), "hin": min(kernel.hin, 12), "win": min(kernel.hin, 12),
                               "hout": -(-min(kernel.hin, 12) // kernel.stride) if kind not in ("gpool",) else 1,
                               "wout": -(-min(kernel.hin, 12) // kernel.stride) if kind not in ("gpool",) else 1})
        module, x = kernel_module(kernel)
        with torch.inference_mode():
            y = module.body(x)
            assert module(x).numel() == 1  # only one element leaves the runtime
        expected = (kernel.cout,) if kind in ("linear", "gpool") else (kernel.hout, kernel.cout) \
            if kind in TOKEN_KINDS else (kernel.cout, kernel.hout, kernel.wout)
        assert tuple(y.shape[1:]) == expected, kernel


def synthetic_model(seed: int = 0) -> KernelModel:
    """Kernels whose 'measured' latency follows a known cost: 1 µs per 2k MACs plus 1 µs per 10k elements."""
    rng = np.random.default_rng(seed)
    samples = {}
    for kind in KINDS:
        rows = []
        for _ in range(60):
            k = sample_kernel(kind, rng)
            rows.append((k, 1e-3 * (k.macs() / 2e3 + k.cout * k.hout * k.wout / 1e4) + 1e-3))
        samples[kind] = rows
    return KernelModel(samples, 0.02, "key", "onnxruntime", "fp32", 1, {"cpu": "x"}).refit()


def test_the_model_learns_kernel_costs_and_survives_storage():
    model = synthetic_model()
    rng = np.random.default_rng(9)
    fresh = [sample_kernel("pwconv", rng) for _ in range(40)]
    truth = np.array([1e-3 * (k.macs() / 2e3 + k.cout * k.hout * k.wout / 1e4) + 1e-3 for k in fresh])
    error = np.abs(model.predict_kernels(fresh) / truth - 1)
    assert np.median(error) < 0.25  # a forest on 60 samples: close, not exact
    again = KernelModel.from_dict(json.loads(json.dumps(model.to_dict())))
    assert np.allclose(again.predict_kernels(fresh), model.predict_kernels(fresh))
    with pytest.raises(ValueError, match="another netcut version"):
        KernelModel.from_dict({**model.to_dict(), "version": 4})


def test_the_estimator_runs_nothing_and_orders_cuts_by_work(monkeypatch):
    model = synthetic_model()
    traced = trace(from_module(Chain(), input_size=64))
    cuts = find_cuts(traced, "layer")
    monkeypatch.setattr(torch.nn.Module, "__call__", lambda *a, **k: (_ for _ in ()).throw(AssertionError("ran")))
    run = estimate_analytical(traced, cuts, model)
    p50 = [run.estimates[c.name].p50 for c in cuts]
    assert p50[-1] > p50[0] > model.overhead_ms


class FakeSession:
    def __init__(self, name: str, precision: str = "fp32") -> None:
        self.name, self.precision = name, precision


def test_a_calibration_is_refused_on_another_runtime_precision_or_device(tmp_path):
    from netcut.latency.harness import device_key

    env = {"cpu": "x", "cores": 2, "backend": "onnxruntime", "threads": 1}
    model = synthetic_model()
    model.device_key = device_key(env)
    check_belongs(model, tmp_path, FakeSession("onnxruntime"), env)  # type: ignore[arg-type]
    with pytest.raises(NetcutError, match="calibrated for onnxruntime fp32, not openvino fp32"):
        check_belongs(model, tmp_path, FakeSession("openvino"), env)  # type: ignore[arg-type]
    with pytest.raises(NetcutError, match="not onnxruntime int8"):
        check_belongs(model, tmp_path, FakeSession("onnxruntime", "int8"), env)  # type: ignore[arg-type]
    with pytest.raises(NetcutError, match="another device or thread count"):
        check_belongs(model, tmp_path, FakeSession("onnxruntime"), {**env, "threads": 2})  # type: ignore[arg-type]


def test_synthetic_networks_stay_small_trace_and_decompose_into_kernels():
    from netcut.latency.synthetic_networks import MAX_MMACS, macs, synthetic_network

    rng = np.random.default_rng(5)
    families = set()
    for i in range(6):
        net = synthetic_network(rng)
        assert macs(net, net.input_size) <= MAX_MMACS * 1e6
        families.add(type(net.blocks[0]).__name__)
        traced = trace(from_module(net, name=f"s{i}", input_size=min(net.input_size, 96)))
        cuts = find_cuts(traced, "block")
        kernels = trn_kernels(traced, cuts[-1])
        assert len(cuts) >= 2 and kinds(kernels)[0] == "conv" and kinds(kernels)[-2:] == ["gpool", "linear"]
        convs = sum(isinstance(m, nn.Conv2d) for m in net.modules())
        assert sum(k in ("conv", "pwconv", "dwconv", "gconv") for k in kinds(kernels)) == convs
    assert len(families) >= 2


def test_a_vision_transformer_decomposes_into_token_kernels_with_its_work():
    from tiny_models import tiny_vit

    traced = trace(from_module(tiny_vit(), input_size=32))
    cut = find_cuts(traced, "block")[-1]
    kernels = trn_kernels(traced, cut)
    count = {k: kinds(kernels).count(k) for k in ("matmul", "attention", "layernorm")}
    assert count == {"matmul": 4 * 3, "attention": 3, "layernorm": 2 * 3 + 1}  # qkv, proj, fc1, fc2 per block
    linear_macs = sum(i.macs for i in traced.info.values() if i.op == "Linear" and i.shape and len(i.shape) == 2)
    assert sum(k.macs() for k in kernels if k.kind == "matmul") == linear_macs
    attention = next(k for k in kernels if k.kind == "attention")
    assert (attention.hin, attention.cin, attention.groups) == (17, 48, 2)  # 16 patches + the class token
    assert attention.macs() == 2 * 17 * 17 * 48


def test_calibration_samples_stems_at_full_input_size():
    # real networks' first convolution reads the whole image (224 px and more): sampling only smaller ones made the
    # regressor extrapolate and over-predict every TRN's stem
    rng = np.random.default_rng(0)
    stems = [k for k in (sample_kernel("conv", rng) for _ in range(400)) if k.cin == 3]
    assert max(k.hin for k in stems) >= 224 and any(k.k == 7 and k.stride == 2 for k in stems)


def test_features_tell_channel_counts_that_fill_a_runtime_block_from_those_that_do_not():
    aligned, ragged = Kernel("pool", 64, 64, 56, 56, 28, 28, 3, 2), Kernel("pool", 72, 72, 56, 56, 28, 28, 3, 2)
    assert aligned.features()[-2:] == [6.0, 6.0] and ragged.features()[-2:] == [3.0, 3.0]
