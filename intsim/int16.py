"""INT16 lowering: calibrated graph -> integer program (docs/quant-spec.md section 2).

`lower_int16(graph)` turns every layer into an `Int16Step` whose `params` is the op's typed,
frozen parameter record (ConvParams, RmsNormParams, ...): quantized weights, int32 biases,
shifts, eps constants and LUT tables, computed once on the host. The bittrue executor packs
these steps into one table (`pack_program`) and runs the whole program in one jitted call;
codegen emits the very same integers into C++ headers. Nothing here is recomputed elsewhere.

Each op has one `Int16Row` in `INT16` (the registry table of this back end, intsim/ops.py):
`lower` (layer + formats -> params), `pack` (params -> the kernel's named columns of the
packed table) and `run` (params + inputs -> the public per-layer kernel call).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from intsim import kernels_int16 as K
from intsim.errors import QuantizationError, UnsupportedError
from intsim.fixedpoint import MAX_SHIFT, quantize_q
from intsim.formats import FRAC_MAX, FRAC_MIN, Int16Formats  # noqa: F401  (FRAC_*: re-exported)
from intsim.graph import INPUT_NAME, Graph, Layer
from intsim.kernels_mac import acc_bits, weight_cols
from intsim.lut import (
    EXP_ADDR_FRAC_BITS,
    EXP_FRAC_BITS,
    IDENTITY_ABOVE_RANGE,
    LUT_FRAC_BITS,
    exp_decay_table,
    int16_table,
    int16_table_clamped,
)
from intsim.ops import BackendTable


# ------------------------------------------------------------------ typed parameters
@dataclass(frozen=True, eq=False)
class ConvParams:
    """conv_kx1 (spec 2.2), conv1x1 (2.1: K = 1, S = 1), dwconv (2.3)."""

    weight: np.ndarray  # int16 [C_out, C_in, K] | [C_out, C_in] | [C, K] at Q(w_frac)
    bias: np.ndarray  # int64 [C_out] at the accumulator format Q(b_frac)
    w_frac: int
    b_frac: int  # f_x + f_w (Int16Formats.bias_frac)
    shift: int  # f_x + f_w - f_y >= 0
    stride: int = 1


@dataclass(frozen=True, eq=False)
class RmsNormParams:
    """Spec 2.4 (V2, fixed point)."""

    gain: np.ndarray  # int16 [D] at Q(g_frac)
    g_frac: int
    eps_q: int  # RNE(eps * 2^(2 f_x))
    shift: int  # RMS_INV_BITS + f_g - RMS_EXTRA_BITS - f_y


@dataclass(frozen=True, eq=False)
class LutParams:
    """Spec 2.5/2.6 (sigmoid, silu)."""

    table: np.ndarray  # int16 [4096] at Q(f_y)
    clamped: np.ndarray  # bool [4096]: the entry saturated when built; each read counts (spec 5)
    addr_shift: int  # f_x - LUT_FRAC_BITS
    identity_shift: int  # f_x - f_y (SiLU, softplus: identity above the table range)
    is_silu: bool  # identity above the table range (SiLU and softplus, spec 2.6, 2.11)


@dataclass(frozen=True)
class ScanParams:
    """Spec 2.7."""

    lam_frac: int  # f_lam
    u_shift: int  # f_u - f_s


@dataclass(frozen=True)
class MulParams:
    """Spec 2.8."""

    shift: int  # f_a + f_b - f_y


@dataclass(frozen=True)
class AddParams:
    """Spec 2.9."""

    a_up: int  # F - f_a
    b_up: int  # F - f_b
    shift: int  # F - f_y


@dataclass(frozen=True, eq=False)
class S6Params:
    """Spec 2.12 (the Mamba-1 selective scan)."""

    a: np.ndarray  # int16 [E, N] at Q(a_frac): A = -exp(A_log) <= 0
    d: np.ndarray  # int16 [E] at Q(d_frac): the skip D
    a_frac: int
    d_frac: int
    state_frac: int  # f_h of the int32 state
    addr_shift: int  # f_delta + f_A - 8 (signed)
    h_up: int  # state update: (dA h) << h_up, inj << p_up, >> h_shift
    p_up: int
    h_shift: int
    y_up_c: int  # output: (sum_n C h) << y_up_c, (D x) << y_up_d, >> y_shift
    y_up_d: int
    y_shift: int


@dataclass(frozen=True)
class RevinParams:
    """Spec 2.10 (revin_norm: mean_up unused, 0)."""

    eps_q: int  # RNE(eps * 2^(2 f_x)), f_x of the window
    shift: int  # norm: Q - G - f_y; denorm: f_y + f_x + G - f_o
    mean_up: int = 0  # denorm: f_y + G


@dataclass
class Int16Step:
    """One layer lowered to integers. `params`: the op's typed record (ints and int arrays only)."""

    name: str
    op: str
    inputs: tuple[str, ...]
    in_frac: tuple[int, ...]
    out_frac: int
    shape: tuple[int, int]
    params: object = None
    weight_saturations: int = 0


@dataclass
class Int16Program:
    input_frac: int
    steps: list[Int16Step]
    output_tensor: str

    @property
    def output_frac(self) -> int:
        return self.step(self.output_tensor).out_frac

    def step(self, name: str) -> Int16Step:
        for st in self.steps:
            if st.name == name:
                return st
        raise KeyError(name)

    def frac_of(self, tensor: str) -> int:
        return self.input_frac if tensor == INPUT_NAME else self.step(tensor).out_frac


def int16_formats(graph: Graph) -> Int16Formats:
    """The graph's validated INT16 formats (QuantizationError naming `calibrate` when absent)."""
    return graph.formats.int16


def _check_shift(layer: str, what: str, value: int, lo: int = 0, hi: int = MAX_SHIFT) -> int:
    if not lo <= value <= hi:
        raise QuantizationError(
            f"layer '{layer}': {what} = {value} is outside [{lo}, {hi}]; the formats chosen for this "
            f"layer are inconsistent (spec 2: the output may not need a left shift)"
        )
    return value


# ------------------------------------------------------------------ registry rows
@dataclass(frozen=True, eq=False)
class PackedStep:
    """What one step puts into the packed table: its kernel, the values of that kernel's named
    parameter columns, and its int16 weights (already in the kernel's layout) and int64 biases."""

    kernel: K.PackedKernel
    values: dict
    weights: np.ndarray | None = None
    dims: tuple[int, int, int] | None = None  # (W0, W1, W2) of the weights
    bias: np.ndarray | None = None


@dataclass(frozen=True)
class Int16Row:
    # (layer, input fracs, output frac, formats) -> (typed params, weight saturations)
    lower: Callable[[Layer, tuple[int, ...], int, Int16Formats], tuple[object, int]]
    pack: Callable[[object], PackedStep]
    # (params, int16 inputs [B, C, L]) -> (int16 output, saturations): the public per-layer kernel
    run: Callable[[object, list], tuple[np.ndarray, int]]


INT16: BackendTable[Int16Row] = BackendTable("INT16 golden model")


def _lower_conv(layer: Layer, f_in, f_y, fmt: Int16Formats):
    f_w, f_acc = fmt.weight_frac(layer.name), fmt.bias_frac(layer)
    w_q, n1 = quantize_q(layer.weights["weight"], f_w, 16, f"{layer.name}.weight")
    b_q, n2 = quantize_q(layer.weights["bias"], f_acc, 32, f"{layer.name}.bias")
    shift = _check_shift(layer.name, "output shift f_x + f_w - f_y", f_acc - f_y)
    return ConvParams(
        w_q.astype(np.int16), b_q.astype(np.int64), f_w, f_acc, shift, layer.attrs.get("stride", 1)
    ), n1 + n2


def _pack_conv(p: ConvParams) -> PackedStep:
    w = p.weight if p.weight.ndim == 3 else p.weight[:, :, None]  # 1x1: the K = 1, S = 1 case of 2.2
    # int32 accumulators when the layer's bound proves every partial sum fits (else int64)
    narrow = acc_bits(p.weight, p.bias, K.INT16_MAX_ABS) <= 32
    return PackedStep(
        K.CONV,
        {"shift": p.shift, "stride": p.stride, "narrow": int(narrow)},
        weight_cols(np.ascontiguousarray(w, np.int16)),
        w.shape,
        p.bias,
    )


INT16.register(
    "conv_kx1",
    Int16Row(_lower_conv, _pack_conv, lambda p, x: K.conv_kx1_int16(x[0], p.weight, p.bias, p.stride, p.shift)),
)
INT16.register(
    "conv1x1", Int16Row(_lower_conv, _pack_conv, lambda p, x: K.conv1x1_int16(x[0], p.weight, p.bias, p.shift))
)
INT16.register(
    "dwconv",
    Int16Row(
        _lower_conv,
        lambda p: PackedStep(K.DWCONV, {"shift": p.shift}, p.weight, (p.weight.shape[0], 1, p.weight.shape[1]), p.bias),
        lambda p, x: K.dwconv_int16(x[0], p.weight, p.bias, p.shift),
    ),
)


def _lower_rmsnorm(layer: Layer, f_in, f_y, fmt: Int16Formats):
    f_g = fmt.weight_frac(layer.name)
    g_q, n1 = quantize_q(layer.weights["weight"], f_g, 16, f"{layer.name}.weight")
    eps_q = int(np.rint(np.ldexp(layer.attrs["eps"], 2 * f_in[0])))
    shift = K.RMS_INV_BITS + f_g - K.RMS_EXTRA_BITS - f_y
    return RmsNormParams(g_q.astype(np.int16), f_g, eps_q, _check_shift(layer.name, "RMSNorm output shift", shift)), n1


INT16.register(
    "rmsnorm",
    Int16Row(
        _lower_rmsnorm,
        lambda p: PackedStep(K.RMSNORM, {"shift": p.shift, "eps_q": p.eps_q}, p.gain, (p.gain.size, 1, 1)),
        lambda p, x: K.rmsnorm_int16(x[0], p.gain, np.int64(p.eps_q), p.shift),
    ),
)


def _lut_row(func: str) -> Int16Row:
    def lower(layer: Layer, f_in, f_y, fmt: Int16Formats):
        return LutParams(
            int16_table(func, f_y),
            int16_table_clamped(func, f_y),
            f_in[0] - LUT_FRAC_BITS,
            f_in[0] - f_y,
            func in IDENTITY_ABOVE_RANGE,
        ), 0

    return Int16Row(
        lower,
        lambda p: PackedStep(
            K.LUT,
            {"addr_shift": p.addr_shift, "identity_shift": p.identity_shift, "is_silu": int(p.is_silu)},
            # the layer's result for every int16 input, then its saturation flags
            np.concatenate(K.lut_int16_map(p.table, p.addr_shift, p.is_silu, p.identity_shift, p.clamped)),
            (K.INT16_CODES, 2, 1),
        ),
        lambda p, x: K.lut_int16(x[0], p.table, p.addr_shift, p.is_silu, p.identity_shift, p.clamped),
    )


INT16.register("sigmoid", _lut_row("sigmoid"))
INT16.register("softplus", _lut_row("softplus"))
INT16.register("silu", _lut_row("silu"))
INT16.register(
    "scan",
    Int16Row(
        lambda layer, f_in, f_y, fmt: (ScanParams(f_in[0], f_in[1] - f_y), 0),
        lambda p: PackedStep(K.SCAN, {"lam_frac": p.lam_frac, "u_shift": p.u_shift}),
        lambda p, x: K.scan_int16(x[0], x[1], p.lam_frac, p.u_shift),
    ),
)
INT16.register(
    "mul",
    Int16Row(
        lambda layer, f_in, f_y, fmt: (MulParams(f_in[0] + f_in[1] - f_y), 0),
        lambda p: PackedStep(K.MUL, {"shift": p.shift}),
        lambda p, x: K.mul_int16(x[0], x[1], p.shift),
    ),
)


def _lower_add(layer: Layer, f_in, f_y, fmt: Int16Formats):
    top = max(f_in)
    return AddParams(top - f_in[0], top - f_in[1], top - f_y), 0


INT16.register(
    "add",
    Int16Row(
        _lower_add,
        lambda p: PackedStep(K.ADD, {"a_up": p.a_up, "b_up": p.b_up, "shift": p.shift}),
        lambda p, x: K.add_int16(x[0], x[1], p.a_up, p.b_up, p.shift),
    ),
)


S6_STATE_EXTRA_BITS = 8  # H: the state keeps f_y + H fractional bits where the bounds allow (spec 2.12)


def _lower_s6(layer: Layer, f_in, f_y, fmt: Int16Formats):
    f_d, f_x, f_b, f_c = f_in
    f_a, f_dk = fmt.weight_frac(layer.name, "A"), fmt.weight_frac(layer.name, "D")
    a_q, n1 = quantize_q(layer.weights["A"], f_a, 16, f"{layer.name}.A")
    d_q, n2 = quantize_q(layer.weights["D"], f_dk, 16, f"{layer.name}.D")
    f_p = f_d + f_b + f_x  # the injection Delta*B*x
    f_h = min(max(f_y + S6_STATE_EXTRA_BITS, f_p - 30), f_p + 2)
    top = max(EXP_FRAC_BITS + f_h, f_p)
    g = max(f_c + f_h, f_dk + f_x)
    y_up_c, y_up_d = g - f_c - f_h, g - f_dk - f_x
    n_states = a_q.shape[1]
    if (n_states << (46 + y_up_c)) + (1 << (30 + y_up_d)) >= 1 << 63:
        raise QuantizationError(
            f"layer '{layer.name}': the output sum of {n_states} states at Q{f_c + f_h} and D*x at "
            f"Q{f_dk + f_x} cannot be aligned in int64 (spec 2.12); choose closer formats"
        )
    return S6Params(
        a_q.astype(np.int16),
        d_q.astype(np.int16),
        f_a,
        f_dk,
        f_h,
        f_d + f_a - EXP_ADDR_FRAC_BITS,
        top - EXP_FRAC_BITS - f_h,
        top - f_p,
        top - f_h,
        y_up_c,
        y_up_d,
        _check_shift(layer.name, "output shift G - f_y", g - f_y),
    ), n1 + n2


def _pack_s6(p: S6Params) -> PackedStep:
    rows = np.concatenate([p.a, p.d[:, None]], axis=1)  # [E, N + 1]: A[e, :], D[e]
    return PackedStep(
        K.S6,
        {name: getattr(p, name) for name in K.S6.params},
        np.concatenate([rows.ravel(), exp_decay_table()]),
        rows.shape + (1,),
    )


INT16.register(
    "s6_scan",
    Int16Row(
        _lower_s6,
        _pack_s6,
        lambda p, x: K.s6_scan_int16(
            x[0],
            x[1],
            x[2],
            x[3],
            p.a,
            p.d,
            exp_decay_table(),
            p.addr_shift,
            p.h_up,
            p.p_up,
            p.h_shift,
            p.y_up_c,
            p.y_up_d,
            p.y_shift,
        ),
    ),
)


def _lower_revin_norm(layer: Layer, f_in, f_y, fmt: Int16Formats):
    eps_q = int(np.rint(np.ldexp(layer.attrs["eps"], 2 * f_in[0])))
    shift = K.REVIN_INV_BITS - K.REVIN_EXTRA_BITS - f_y
    return RevinParams(eps_q, _check_shift(layer.name, "RevIN output shift", shift)), 0


def _lower_revin_denorm(layer: Layer, f_in, f_y, fmt: Int16Formats):
    f_fc, f_x = f_in
    eps_q = int(np.rint(np.ldexp(layer.attrs["eps"], 2 * f_x)))
    shift = f_fc + f_x + K.REVIN_EXTRA_BITS - f_y
    return RevinParams(
        eps_q, _check_shift(layer.name, "RevIN output shift", shift, -MAX_SHIFT), f_fc + K.REVIN_EXTRA_BITS
    ), 0


INT16.register(
    "revin_norm",
    Int16Row(
        _lower_revin_norm,
        lambda p: PackedStep(K.REVIN_NORM, {"shift": p.shift, "eps_q": p.eps_q}),
        lambda p, x: K.revin_norm_int16(x[0], np.int64(p.eps_q), p.shift),
    ),
)
INT16.register(
    "revin_denorm",
    Int16Row(
        _lower_revin_denorm,
        lambda p: PackedStep(K.REVIN_DENORM, {"mean_up": p.mean_up, "shift": p.shift, "eps_q": p.eps_q}),
        lambda p, x: K.revin_denorm_int16(x[0], x[1], np.int64(p.eps_q), p.mean_up, p.shift),
    ),
)


# ------------------------------------------------------------------ lowering, packing
def lower_int16(graph: Graph) -> Int16Program:
    fmt = int16_formats(graph)
    frac = {INPUT_NAME: fmt.frac(INPUT_NAME)}
    steps: list[Int16Step] = []
    for layer in graph.layers:
        row = INT16.row(layer.op, layer.name)
        f_y = fmt.frac(layer.name)
        f_in = tuple(frac[s] for s in layer.inputs)
        params, n_sat = row.lower(layer, f_in, f_y, fmt)
        steps.append(Int16Step(layer.name, layer.op, layer.inputs, f_in, f_y, layer.shape, params, n_sat))
        frac[layer.name] = f_y
    return Int16Program(frac[INPUT_NAME], steps, graph.output_tensor)


def run_step16(st: Int16Step, inputs: list[np.ndarray]) -> tuple[np.ndarray, int]:
    """One lowered step through its public kernel: int16 [B, C, L] inputs -> (int16 output, saturations)."""
    return INT16.row(st.op, st.name).run(st.params, inputs)


@dataclass(frozen=True)
class PackedProgram:
    """A lowered program as flat arrays for a whole-program interpreter
    (`kernels_int16.run_program_int16`, `kernels_int8.run_program_int8`): one int64 row per step
    (kernel code, input tensor indices, weight/bias offsets and dims, the kernel's named parameter
    columns), all weights/gains/tables in one int16 array, all int64 column data (biases; INT8
    also m0 and shifts) in one int64 array, and the per-sample [C, L] of every tensor (0 = the input)."""

    steps: np.ndarray
    weights: np.ndarray
    biases: np.ndarray
    channels: np.ndarray
    lengths: np.ndarray
    names: tuple[str, ...]


@dataclass(frozen=True)
class PackedInt16(PackedProgram):
    fracs: np.ndarray = None  # int64[n + 1]: fractional bits of every tensor


def pack_steps(steps: list, table: BackendTable, input_shape: tuple[int, int]) -> PackedProgram | None:
    """Pack lowered steps (name, op, inputs, shape, params) by their rows' `pack` in `table`;
    None when a row packs nothing for its step (it has no packed kernel: run layer by layer)."""
    names = (INPUT_NAME,) + tuple(st.name for st in steps)
    index = {name: k for k, name in enumerate(names)}
    shapes = [tuple(input_shape)] + [tuple(st.shape) for st in steps]
    rows = np.zeros((len(steps), K.N_COLS), dtype=np.int64)
    w_parts, b_parts = [], []
    w_off = b_off = 0
    for i, st in enumerate(steps):
        r = rows[i]
        pack = table.row(st.op, st.name).pack
        packed = pack(st.params) if pack is not None else None
        if packed is None:
            return None
        if set(packed.values) != set(packed.kernel.params):
            raise UnsupportedError(
                f"layer '{st.name}': {table.name} row packs {sorted(packed.values)}, its "
                f"kernel reads {sorted(packed.kernel.params)}"
            )
        r[K.COL_OP] = packed.kernel.code
        r[K.COL_IN0] = index[st.inputs[0]]
        r[K.COL_IN1] = index[st.inputs[1]] if len(st.inputs) > 1 else -1
        if len(st.inputs) - 2 != len(packed.kernel.extra_inputs) and len(st.inputs) > 2:
            raise UnsupportedError(
                f"layer '{st.name}': {len(st.inputs)} inputs, its kernel reads {2 + len(packed.kernel.extra_inputs)}"
            )
        for col, tensor in zip(packed.kernel.extra_inputs, st.inputs[2:], strict=False):
            r[packed.kernel.column(col)] = index[tensor]
        for name, value in packed.values.items():
            r[packed.kernel.column(name)] = value
        if packed.weights is not None:
            w = packed.weights
            r[K.COL_W_OFF], r[K.COL_W0], r[K.COL_W1], r[K.COL_W2] = (w_off,) + tuple(packed.dims)
            w_parts.append(w.astype(np.int16).ravel())
            w_off += w.size
        if packed.bias is not None:
            r[K.COL_B_OFF] = b_off
            b_parts.append(packed.bias.astype(np.int64))
            b_off += packed.bias.size
    return PackedProgram(
        rows,
        _concat(w_parts, np.int16),
        _concat(b_parts, np.int64),
        np.array([c for c, _ in shapes], np.int64),
        np.array([n for _, n in shapes], np.int64),
        names,
    )


def pack_program(prog: Int16Program, input_shape: tuple[int, int]) -> PackedInt16:
    """Pack `prog` (shapes per sample; input_shape = (C_in, L)) into one table."""
    packed = pack_steps(prog.steps, INT16, input_shape)
    return PackedInt16(**vars(packed), fracs=np.array([prog.input_frac] + [st.out_frac for st in prog.steps], np.int64))


def _concat(parts: list[np.ndarray], dtype) -> np.ndarray:
    return np.ascontiguousarray(np.concatenate(parts) if parts else np.zeros(0), dtype)
