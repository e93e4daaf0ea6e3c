"""The op registry: every op the graph may contain, registered once.

Each entry states the op's inputs, its weights (name -> ndim), its attributes
and its shape rule. Kernels register themselves by op name in their own
modules (float_ref.FLOAT_KERNELS, int16.INT16_STEPS, codegen templates); an op
missing from a back end's table is an UnsupportedError naming the layer.

Shapes are per sample, channel-major: (channels, length).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from intsim.errors import ModelFormatError

Shape = tuple[int, int]


@dataclass(frozen=True)
class OpSpec:
    name: str
    n_inputs: int
    weights: dict[str, int] = field(default_factory=dict)   # weight name -> ndim
    int_attrs: tuple[str, ...] = ()                          # required positive ints
    float_attrs: tuple[str, ...] = ()                        # required floats
    shape_rule: Callable[..., Shape] | None = None


def _fail(layer: str, msg: str):
    raise ModelFormatError(f"layer '{layer}': {msg}")


def _conv_kx1_shape(layer, in_shapes, weights, attrs) -> Shape:
    (c_in, length), = in_shapes
    w, b = weights["weight"], weights["bias"]
    k, s = attrs["kernel"], attrs["stride"]
    if w.shape[1:] != (c_in, k):
        _fail(layer, f"weight shape {w.shape} does not match [C_out, C_in={c_in}, kernel={k}]")
    if b.shape != (w.shape[0],):
        _fail(layer, f"bias shape {b.shape} does not match [C_out={w.shape[0]}]")
    if length < k:
        _fail(layer, f"input length {length} is shorter than kernel {k}")
    return w.shape[0], (length - k) // s + 1


def _conv1x1_shape(layer, in_shapes, weights, attrs) -> Shape:
    (c_in, length), = in_shapes
    w, b = weights["weight"], weights["bias"]
    if w.shape[1] != c_in:
        _fail(layer, f"weight shape {w.shape} does not match [C_out, C_in={c_in}]")
    if b.shape != (w.shape[0],):
        _fail(layer, f"bias shape {b.shape} does not match [C_out={w.shape[0]}]")
    return w.shape[0], length


def _dwconv_shape(layer, in_shapes, weights, attrs) -> Shape:
    (c, length), = in_shapes
    w, b = weights["weight"], weights["bias"]
    if w.shape != (c, attrs["kernel"]):
        _fail(layer, f"weight shape {w.shape} does not match [C={c}, kernel={attrs['kernel']}]")
    if b.shape != (c,):
        _fail(layer, f"bias shape {b.shape} does not match [C={c}]")
    return c, length


def _rmsnorm_shape(layer, in_shapes, weights, attrs) -> Shape:
    (d, length), = in_shapes
    if weights["weight"].shape != (d,):
        _fail(layer, f"gain shape {weights['weight'].shape} does not match [D={d}]")
    if not 0.0 < attrs["eps"] <= 1.0:
        _fail(layer, f"eps must be in (0, 1], got {attrs['eps']}")
    return d, length


def _same_shape(layer, in_shapes, weights, attrs) -> Shape:
    first = in_shapes[0]
    for other in in_shapes[1:]:
        if other != first:
            _fail(layer, f"input shapes differ: {list(in_shapes)}")
    return first


OPS: dict[str, OpSpec] = {
    spec.name: spec
    for spec in (
        OpSpec("conv_kx1", 1, {"weight": 3, "bias": 1}, ("kernel", "stride"), (), _conv_kx1_shape),
        OpSpec("conv1x1", 1, {"weight": 2, "bias": 1}, (), (), _conv1x1_shape),
        OpSpec("dwconv", 1, {"weight": 2, "bias": 1}, ("kernel",), (), _dwconv_shape),
        OpSpec("rmsnorm", 1, {"weight": 1}, (), ("eps",), _rmsnorm_shape),
        OpSpec("sigmoid", 1, {}, (), (), _same_shape),
        OpSpec("silu", 1, {}, (), (), _same_shape),
        OpSpec("scan", 2, {}, (), (), _same_shape),
        OpSpec("mul", 2, {}, (), (), _same_shape),
        OpSpec("add", 2, {}, (), (), _same_shape),
    )
}

# Ops whose output is produced by a multiply-accumulate with weight + bias.
CONV_OPS = ("conv_kx1", "conv1x1", "dwconv")
