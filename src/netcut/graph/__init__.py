"""Graph analysis (tracing, legal cut points) and transformation (prefixes)."""

from netcut.graph.cuts import ancestors, find_cuts, node_layout, resolve_cut
from netcut.graph.prefix import DualModePrefix, build_extractor, build_prefix, build_segment, build_training_prefix
from netcut.graph.trace import NodeInfo, TracedNetwork, example_input, trace

__all__ = ["DualModePrefix", "NodeInfo", "TracedNetwork", "ancestors", "build_extractor", "build_prefix",
           "build_segment", "build_training_prefix", "example_input", "find_cuts", "node_layout", "resolve_cut",
           "trace"]
