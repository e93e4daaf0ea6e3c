"""The op registry: every op the graph may contain, registered once.

`OPS` holds one `OpSpec` row per op: its spec sections, inputs, weights (name -> ndim),
attributes, shape rule and the facts calibration needs. Every back end keeps a
`BackendTable` of per-op rows beside its kernels and registers one row per op (or an
explicit `unsupported` row):

  float reference   intsim/float_ref.py    FLOAT     (fp32 and quant16)
  INT16             intsim/int16.py        INT16     (lower -> typed params, pack, kernel)
  INT8              intsim/int8.py         INT8      (lower -> typed params, kernel)
  C++ INT16 / INT8  codegen/emit_int16.py  EMIT16, codegen/emit_int8.py EMIT8 (template + config)
  estimator         codegen/estimate.py    ESTIMATE  (reuse knob, pipelined loops, multipliers, ROMs)
  torch INT16 / INT8 model/torch_int16.py  TORCH16, model/torch_int8.py TORCH8 (bit-true, 'train' extra)

No back end switches on the op name: it asks its table for the layer's row, and an op
without a row is an UnsupportedError naming the layer. tests/test_registry.py fails when a
registered op lacks a row in any back end. docs/adding-an-op.md is the recipe.

Shapes are per sample, channel-major: (channels, length).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from intsim.errors import ModelFormatError, UnsupportedError

Shape = tuple[int, int]
Row = TypeVar("Row")


@dataclass(frozen=True)
class OpSpec:
    name: str
    n_inputs: int
    weights: dict[str, int] = field(default_factory=dict)  # weight name -> ndim
    int_attrs: tuple[str, ...] = ()  # required positive ints
    float_attrs: tuple[str, ...] = ()  # required floats
    shape_rule: Callable[..., Shape] | None = None
    spec: str = ""  # docs/quant-spec.md sections (INT16, INT8)
    # A multiply-accumulate with weight + bias: the bias is stored at the accumulator format
    # f_x + f_w, and the output may not need a left shift (f_y <= f_x + f_w, spec 2).
    accumulates: bool = False
    # Known bound of |output| used by calibration instead of the measured range (None: measure).
    output_bound: float | None = None


@dataclass(frozen=True)
class Unsupported:
    """An explicit "this back end cannot do this op" row; looking it up raises."""

    reason: str


class BackendTable(Generic[Row]):
    """One back end's rows, by op name. `register(op)` decorates (or takes) the row;
    `unsupported(op, reason)` records an explicit refusal; `row(op, layer)` looks a row
    up and raises UnsupportedError naming the layer when there is none."""

    def __init__(self, name: str):
        self.name = name
        self._rows: dict[str, Row | Unsupported] = {}

    def register(self, op: str, row: Row | None = None) -> Row | Callable[[Row], Row]:
        if op not in OPS:
            raise KeyError(f"{self.name}: op '{op}' is not in the registry (intsim/ops.py OPS)")
        if op in self._rows:
            raise KeyError(f"{self.name}: op '{op}' is registered twice")
        if row is not None:
            self._rows[op] = row
            return row

        def decorate(value: Row) -> Row:
            self._rows[op] = value
            return value

        return decorate

    def unsupported(self, op: str, reason: str) -> None:
        self.register(op, Unsupported(reason))

    def row(self, op: str, layer: str) -> Row:
        row = self._rows.get(op)
        if row is None:
            raise UnsupportedError(f"layer '{layer}': op '{op}' has no {self.name} row")
        if isinstance(row, Unsupported):
            raise UnsupportedError(f"layer '{layer}': op '{op}' is not supported by {self.name}: {row.reason}")
        return row

    def missing(self) -> list[str]:
        """Registered ops with neither a row nor an explicit unsupported row here."""
        return [op for op in OPS if op not in self._rows]

    def supported(self) -> list[str]:
        """Ops with a real row, in registry order."""
        return [op for op in OPS if op in self._rows and not isinstance(self._rows[op], Unsupported)]

    def rows(self) -> list[tuple[str, Row]]:
        """(op, row) of every supported op, in registry order."""
        return [(op, self._rows[op]) for op in self.supported()]


def _fail(layer: str, msg: str):
    raise ModelFormatError(f"layer '{layer}': {msg}")


def _conv_kx1_shape(layer, in_shapes, weights, attrs) -> Shape:
    ((c_in, length),) = in_shapes
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
    ((c_in, length),) = in_shapes
    w, b = weights["weight"], weights["bias"]
    if w.shape[1] != c_in:
        _fail(layer, f"weight shape {w.shape} does not match [C_out, C_in={c_in}]")
    if b.shape != (w.shape[0],):
        _fail(layer, f"bias shape {b.shape} does not match [C_out={w.shape[0]}]")
    return w.shape[0], length


def _dwconv_shape(layer, in_shapes, weights, attrs) -> Shape:
    ((c, length),) = in_shapes
    w, b = weights["weight"], weights["bias"]
    if w.shape != (c, attrs["kernel"]):
        _fail(layer, f"weight shape {w.shape} does not match [C={c}, kernel={attrs['kernel']}]")
    if b.shape != (c,):
        _fail(layer, f"bias shape {b.shape} does not match [C={c}]")
    return c, length


def _rmsnorm_shape(layer, in_shapes, weights, attrs) -> Shape:
    ((d, length),) = in_shapes
    if weights["weight"].shape != (d,):
        _fail(layer, f"gain shape {weights['weight'].shape} does not match [D={d}]")
    _check_eps(layer, attrs)
    return d, length


def _check_eps(layer, attrs) -> None:
    if not 0.0 < attrs["eps"] <= 1.0:
        _fail(layer, f"eps must be in (0, 1], got {attrs['eps']}")


REVIN_MAX_L = 1 << 15  # spec 2.10 / 3.11: the integer variance numerator stays below 2^62


def _check_window(layer, attrs, window: Shape) -> None:
    _check_eps(layer, attrs)
    if window[1] > REVIN_MAX_L:
        _fail(layer, f"RevIN over {window[1]} samples; at most {REVIN_MAX_L} (spec 2.10)")


def _revin_norm_shape(layer, in_shapes, weights, attrs) -> Shape:
    _check_window(layer, attrs, in_shapes[0])
    return in_shapes[0]


def _revin_denorm_shape(layer, in_shapes, weights, attrs) -> Shape:
    """inputs: the forecast [R, M] and the window [C, L] whose statistics it restores;
    R * M must split into C equal row-major chunks (one per channel)."""
    _check_window(layer, attrs, in_shapes[1])
    (rows, cols), (c, _) = in_shapes
    if (rows * cols) % c:
        _fail(layer, f"forecast shape {[rows, cols]} does not split into the window's {c} channels")
    return rows, cols


def _same_shape(layer, in_shapes, weights, attrs) -> Shape:
    first = in_shapes[0]
    for other in in_shapes[1:]:
        if other != first:
            _fail(layer, f"input shapes differ: {list(in_shapes)}")
    return first


def _s6_scan_shape(layer, in_shapes, weights, attrs) -> Shape:
    (e, length), x_shape, (n, lb), c_shape = in_shapes
    if x_shape != (e, length):
        _fail(layer, f"x shape {x_shape} does not match delta's {(e, length)}")
    if lb != length or c_shape != (n, length):
        _fail(layer, f"B {(n, lb)} and C {c_shape} must both be [N, T = {length}]")
    if weights["A"].shape != (e, n):
        _fail(layer, f"A shape {weights['A'].shape} does not match [E={e}, N={n}]")
    if weights["D"].shape != (e,):
        _fail(layer, f"D shape {weights['D'].shape} does not match [E={e}]")
    return e, length


OPS: dict[str, OpSpec] = {
    spec.name: spec
    for spec in (
        OpSpec(
            "conv_kx1",
            1,
            {"weight": 3, "bias": 1},
            ("kernel", "stride"),
            (),
            _conv_kx1_shape,
            spec="2.2, 3.4",
            accumulates=True,
        ),
        OpSpec("conv1x1", 1, {"weight": 2, "bias": 1}, (), (), _conv1x1_shape, spec="2.1, 3.4", accumulates=True),
        OpSpec(
            "dwconv", 1, {"weight": 2, "bias": 1}, ("kernel",), (), _dwconv_shape, spec="2.3, 3.4", accumulates=True
        ),
        OpSpec("rmsnorm", 1, {"weight": 1}, (), ("eps",), _rmsnorm_shape, spec="2.4, 3.9"),
        # A sigmoid's range is known: [0, 1]. Using 1 keeps lam = 1.0 representable (spec 2.7).
        OpSpec("sigmoid", 1, {}, (), (), _same_shape, spec="2.5-2.6, 3.5", output_bound=1.0),
        OpSpec("silu", 1, {}, (), (), _same_shape, spec="2.5-2.6, 3.5"),
        OpSpec("scan", 2, {}, (), (), _same_shape, spec="2.7, 3.6"),
        OpSpec("mul", 2, {}, (), (), _same_shape, spec="2.8, 3.7"),
        OpSpec("add", 2, {}, (), (), _same_shape, spec="2.9, 3.8"),
        # Mamba-1 (S6): softplus of dt_proj gives the step Delta; the selective scan over N states
        # per channel, inputs (delta [E, T], x [E, T], B [N, T], C [N, T]), A = -exp(A_log) [E, N]
        # and the skip D [E] held as constants.
        OpSpec("softplus", 1, {}, (), (), _same_shape, spec="2.11, 3.12"),
        OpSpec("s6_scan", 4, {"A": 2, "D": 1}, (), (), _s6_scan_shape, spec="2.12, 3.13"),
        # Instance normalisation (RevIN): per sample and channel over time; the denorm op takes the
        # window as its second input and recomputes the same statistics (spec 2.10, 3.11).
        OpSpec("revin_norm", 1, {}, (), ("eps",), _revin_norm_shape, spec="2.10, 3.11"),
        OpSpec("revin_denorm", 2, {}, (), ("eps",), _revin_denorm_shape, spec="2.10, 3.11"),
    )
}
