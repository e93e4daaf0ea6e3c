"""cmamba-hls golden model: fixed point, LUTs, kernels, graph executor, calibration."""

from intsim.executor import MODES, Model, RunResult, load_model
from intsim.graph import Graph, load_graph

__all__ = ["MODES", "Model", "RunResult", "load_model", "Graph", "load_graph"]
