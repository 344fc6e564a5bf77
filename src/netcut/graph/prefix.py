"""Build prefixes (the backbone up to a cut) by output rewrite plus dead-code elimination."""

from __future__ import annotations

from typing import Any

import torch
from torch import fx, nn

from netcut.graph.trace import TracedNetwork


def _optional_argument(node: fx.Node, nodes: list[fx.Node]) -> bool:
    """A placeholder after the image (an attention mask a transformer's forward takes, left at its default)."""
    return node.op == "placeholder" and node is not nodes[0]


def _default(node: fx.Node) -> object:
    return node.args[0] if node.args else None


def _copy_until(nodes: list[fx.Node], targets: list[fx.Node]) -> tuple[fx.Graph, dict[fx.Node, fx.Node]]:
    position = {n: i for i, n in enumerate(nodes)}
    last = max(position[t] for t in targets)
    graph = fx.Graph()
    env: dict[fx.Node, Any] = {}
    for node in nodes[: last + 1]:
        env[node] = _default(node) if _optional_argument(node, nodes) else graph.node_copy(node, lambda n: env[n])
    return graph, env


def build_prefix(traced: TracedNetwork, cut_name: str) -> fx.GraphModule:
    """The backbone up to `cut_name` as it runs in eval mode; it keeps only the modules and parameters that node
    needs.

    The prefix shares parameters with the backbone (cheap); deep-copy it before changing weights.
    """
    target = traced.node(cut_name)
    graph, env = _copy_until(traced.nodes, [target])
    graph.output(env[target])
    return _finish(traced.graph_module, graph, "Prefix")


class DualModePrefix(nn.Module):
    """A prefix traced twice over the same modules and parameters: in training it runs the training-mode graph
    (dropout, stochastic depth), in eval the eval-mode one. It holds the eval graph's own children, parameters and
    buffers under their names, so its state dict is a plain prefix's (a fine-tuned TRN loads into either); both
    graphs are plain attributes that call those same modules."""

    def __init__(self, eval_graph: fx.GraphModule, train_graph: fx.GraphModule) -> None:
        super().__init__()
        for name, module in eval_graph.named_children():
            self.add_module(name, module)
        for name, parameter in eval_graph.named_parameters(recurse=False):
            self.register_parameter(name, parameter)
        for name, buffer in eval_graph.named_buffers(recurse=False):
            self.register_buffer(name, buffer)
        object.__setattr__(self, "graphs", {True: train_graph, False: eval_graph})  # not children: shared modules

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The activation at the cut."""
        graphs: dict[bool, fx.GraphModule] = self.graphs  # type: ignore[assignment]
        return graphs[self.training](x)


def build_training_prefix(traced: TracedNetwork, cut_name: str) -> nn.Module:
    """The prefix to fine-tune: a DualModePrefix where the backbone behaves differently while training, else the
    plain prefix."""
    prefix = build_prefix(traced, cut_name)
    training = traced.training_graph()
    if training is None or cut_name not in training.by_name:
        return prefix
    target = training.by_name[cut_name]
    graph, env = _copy_until(training.nodes, [target])
    graph.output(env[target])
    return DualModePrefix(prefix, _finish(training.graph_module, graph, "TrainingPrefix"))


def build_extractor(traced: TracedNetwork, cut_names: list[str]) -> fx.GraphModule:
    """One module whose forward returns the activations at all `cut_names` (a tuple, same order) in one pass."""
    targets = [traced.node(name) for name in cut_names]
    graph, env = _copy_until(traced.nodes, targets)
    outputs = []
    for target in targets:
        value = env[target]
        if any(_in_place(user, traced) for user in target.users):
            # a later in-place op (ReLU(inplace=True), add_) would overwrite the returned activation
            with graph.inserting_after(value):
                value = graph.call_method("clone", (value,))
        outputs.append(value)
    graph.output(tuple(outputs))
    return _finish(traced.graph_module, graph, "MultiCutExtractor")


def build_segment(traced: TracedNetwork, start_name: str | None, end_name: str) -> fx.GraphModule:
    """The backbone from the activation at `start_name` (None: the image) to the one at `end_name`.

    Legal cuts carry everything downstream needs, so consecutive segments compose to the prefix exactly.
    """
    if start_name is None:
        return build_prefix(traced, end_name)
    start, end = traced.node(start_name), traced.node(end_name)
    position = {n: i for i, n in enumerate(traced.nodes)}
    if position[start] >= position[end]:
        raise ValueError(f"segment start {start_name!r} is not before end {end_name!r}")
    graph = fx.Graph()
    env: dict[fx.Node, Any] = {start: graph.placeholder("activation")}
    for node in traced.nodes[: position[end] + 1]:
        if node is start:
            continue
        if position[node] < position[start]:
            if node.op == "get_attr":  # parameters used downstream; dead ones are dropped below
                env[node] = graph.node_copy(node, lambda n: env[n])
            elif _optional_argument(node, traced.nodes):
                env[node] = _default(node)
            continue
        env[node] = graph.node_copy(node, lambda n: env[n])
    graph.output(env[end])
    return _finish(traced.graph_module, graph, "Segment")


def _in_place(node: fx.Node, traced: TracedNetwork) -> bool:
    """Whether a node overwrites one of its inputs."""
    if node.op == "call_module":
        return bool(getattr(traced.graph_module.get_submodule(str(node.target)), "inplace", False))
    if node.op == "call_method":
        return str(node.target).endswith("_") and not str(node.target).startswith("_")
    if node.op == "call_function":
        return bool(node.kwargs.get("inplace")) or getattr(node.target, "__name__", "").endswith("_")
    return False


def _finish(root: fx.GraphModule, graph: fx.Graph, class_name: str) -> fx.GraphModule:
    """Drop dead nodes, then every submodule and parameter no remaining node uses."""
    gm = fx.GraphModule(root, graph, class_name)
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.graph.lint()
    gm.recompile()
    return gm
