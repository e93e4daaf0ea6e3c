"""In-memory graphs of one or a few layers, with chosen quantization parameters.

The conformance kit (`intsim/spec_vectors.py`) and the spec-rule tests lower single operators
exactly as the network's layers are lowered (`lower_int16`, `lower_int8`): the same code turns
the same float weights and scales into the same integers. Nothing is written to disk.

    g = small_graph((4, 8), [{"name": "y", "op": "silu", "inputs": ["input"]}],
                    int8={"input": (0.05, 3), "y": (0.02, -100)})
    lower_int8(g).step("y").params["table"]
"""

from __future__ import annotations

import numpy as np

from intsim.graph import INPUT_NAME, Graph, Layer
from intsim.ops import OPS


def small_graph(
    input_shape: tuple[int, int],
    layers: list[dict],
    int16: dict | None = None,
    int8: dict | None = None,
    int8_rmsnorm: str = "v2",
) -> Graph:
    """A validated in-memory Graph.

    input_shape: (C_in, L). layers: dicts with "name", "op", "inputs" and optional "weights"
    (name -> float array) and "attrs", in execution order; the last one is the output.
    int16: {"tensors": {name: frac_bits}, "weights": {"<layer>.weight": frac_bits}} (INT16 formats).
    int8: {tensor name: (scale, zero_point)}. Shapes are checked by the op registry's rules."""
    shapes = {INPUT_NAME: tuple(input_shape)}
    built = []
    for entry in layers:
        spec = OPS[entry["op"]]
        weights = {k: np.asarray(v, dtype=np.float64) for k, v in (entry.get("weights") or {}).items()}
        attrs = dict(entry.get("attrs") or {})
        layer = Layer(entry["name"], entry["op"], tuple(entry["inputs"]), attrs, weights, {})
        layer.shape = spec.shape_rule(layer.name, [shapes[s] for s in layer.inputs], weights, attrs)
        shapes[layer.name] = layer.shape
        built.append(layer)
    quant: dict = {}
    if int16 is not None:
        quant["int16"] = {
            "tensors": {k: {"frac_bits": int(f)} for k, f in int16["tensors"].items()},
            "weights": {k: {"frac_bits": int(f)} for k, f in int16.get("weights", {}).items()},
        }
    if int8 is not None:
        quant["int8"] = {
            "rmsnorm": int8_rmsnorm,
            "tensors": {k: {"scale": float(s), "zero_point": int(z)} for k, (s, z) in int8.items()},
        }
    out = built[-1]
    c_in = input_shape[0]
    zeros_in, ones_in = np.zeros(c_in), np.ones(c_in)
    graph = Graph(
        name="small",
        input_shape=tuple(input_shape),
        output_tensor=out.name,
        output_channels=out.shape[0],
        horizon=out.shape[1],
        input_columns=[f"ch{i}" for i in range(c_in)],
        output_columns=[f"ch{i}" for i in range(out.shape[0])],
        norm_in_mean=zeros_in,
        norm_in_std=ones_in,
        norm_out_mean=np.zeros(out.shape[0]),
        norm_out_std=np.ones(out.shape[0]),
        layers=built,
        raw={},
    )
    graph.quant = quant  # validated into graph.formats
    return graph
