"""INT8 lowering: calibrated graph -> integer program (docs/quant-spec.md section 3).

`lower_int8(graph)` computes, once on the host, every integer constant of the
INT8 path: int8 weights (per-output-channel symmetric), int32 biases, integer
multipliers and shifts, zero points, exact 256-entry LUTs and RMSNorm constants,
as one typed, frozen parameter record per step (ConvParams8, RmsNormParams8, ...).
The quant8 executor runs them with the Numba kernels; codegen emits them.

Each op has one `Int8Row` in `INT8` (this back end's registry table, intsim/ops.py):
`lower` (layer + (scale, zero point) of inputs and output -> params) and `run` (the kernel call).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from intsim import kernels_int8 as K8
from intsim.arrays import F64Array, I8Array
from intsim.errors import QuantizationError
from intsim.fixedpoint import MAX_SHIFT, quantize_multiplier
from intsim.formats import RMSNORM_MODES, Int8Params, QParams  # noqa: F401  (RMSNORM_MODES: re-exported)
from intsim.graph import INPUT_NAME, Graph, Layer
from intsim.int16 import PackedProgram, PackedStep, pack_steps
from intsim.kernels_mac import acc_bits, weight_cols
from intsim.lut import EXP_ADDR_FRAC_BITS, exp_decay_table, int8_table, int8_table_clamped
from intsim.ops import BackendTable

# The sigmoid output that feeds a scan has this fixed format (spec 3.5).
LAM_SCALE, LAM_ZERO_POINT = 1.0 / 256.0, -128
ACC_LIMIT = (1 << 31) - 1  # spec 3.1: 255 * sum|w_q[c]| + |b_q[c]| <= ACC_LIMIT per output channel
RMS_MAX_D = 1 << 16  # spec 3.9: RMSNorm over D <= 65536 channels keeps |prod| < 2^31
EPS_Q_LIMIT = 1 << 61  # spec 3.9: eps_q <= 2^61 keeps the isqrt argument below 2^62
MIN_RANGE = 1e-3  # a (near-)constant tensor still gets a usable scale (spec 3.1)
MIN_MULTIPLIER = 2.0**-30  # floor of s_x * s_w[c] / s_y for (near-)zero weight channels
BIAS_LIMIT = float(1 << 30)  # |b_q| <= 2^30: the int32 accumulator keeps 2^30 for the sum
LAM_QP = QParams(LAM_SCALE, LAM_ZERO_POINT)


# ------------------------------------------------------------------ typed parameters
@dataclass(frozen=True, eq=False)
class ConvParams8:
    """conv_kx1, conv1x1, dwconv (spec 3.4)."""

    weight: np.ndarray  # int8 [C_out, C_in, K] | [C_out, C_in] | [C, K], per-output-channel symmetric
    bias: np.ndarray  # int64 [C_out]: int32 at s_x * s_w[c]
    x_zp: int
    y_zp: int
    m0: np.ndarray  # int64 [C_out]: s_x s_w[c] / s_y = m0 2^-shift
    shift: np.ndarray  # int64 [C_out]
    stride: int = 1


@dataclass(frozen=True, eq=False)
class RmsNormParams8:
    """Spec 3.9 V2 (integer); V1 (float inside) also keeps the float gain and eps."""

    gain: np.ndarray  # int8 [D], per-tensor symmetric
    x_zp: int
    y_zp: int
    m0: int
    shift: int
    eps_q: int  # RNE(eps / s_x^2 * 2^(2G)), int64
    gain_float: np.ndarray | None = None  # V1 only
    eps: float | None = None  # V1 only


@dataclass(frozen=True, eq=False)
class LutParams8:
    """Spec 3.5: the exact 256-entry table."""

    table: np.ndarray  # int8 [256]
    clamped: np.ndarray  # bool [256]: the entry saturated when built; each read counts (spec 5)


@dataclass(frozen=True)
class ScanParams8:
    """Spec 3.6 (lam has the fixed format LAM_QP)."""

    u_zp: int
    y_zp: int
    m0: int
    shift: int


@dataclass(frozen=True)
class MulParams8:
    """Spec 3.7."""

    a_zp: int
    b_zp: int
    y_zp: int
    m0: int
    shift: int


@dataclass(frozen=True)
class AddParams8:
    """Spec 3.8."""

    a_zp: int
    b_zp: int
    y_zp: int
    shift: int
    m_a: int
    m_b: int


@dataclass(frozen=True, eq=False)
class S6Params8:
    """Spec 3.13 (the Mamba-1 selective scan)."""

    a: np.ndarray  # int8 [E, N], per-row symmetric (s_A[e])
    m_a: np.ndarray  # int64 [E]: quantize_multiplier((s_d * s_A[e]) * 2^8)
    sh_a: np.ndarray  # int64 [E]
    d: np.ndarray  # int8 [E]: the skip D, per-tensor symmetric (s_D)
    zps: tuple  # (z_d, z_x, z_B, z_C, z_y)
    m_h: int  # 15-bit multiplier of the state sum: s_C s_d s_B s_x / s_y = m_h 2^-shift
    m_k: int  # the skip's multiplier at the same shift: RNE((s_Dk s_x / s_y) 2^shift)
    shift: int


@dataclass(frozen=True)
class RevinNormParams8:
    """Spec 3.11 revin_norm."""

    x_zp: int
    y_zp: int
    eps_q: int  # RNE((eps / s_x^2) * 2^16)
    m0: int  # 1 / s_y = m0 2^-(shift - Q8)
    shift: int


@dataclass(frozen=True)
class RevinDenormParams8:
    """Spec 3.11 revin_denorm."""

    y_zp: int  # of the forecast input
    x_zp: int  # of the window input
    o_zp: int
    eps_q: int
    m_a: int
    m_b: int
    shift: int  # SH + G


@dataclass
class Int8Step:
    """One layer lowered to INT8 integers. `params`: the op's typed record."""

    name: str
    op: str
    inputs: tuple[str, ...]
    in_qp: tuple[QParams, ...]  # (scale, zero_point) of each input
    out_qp: QParams
    shape: tuple[int, int]
    params: object = None
    weight_saturations: int = 0
    mixed_precision: bool = False  # RMSNorm V1: float inside (spec 3.9)


@dataclass
class Int8Program:
    input_qp: QParams
    steps: list[Int8Step]
    output_tensor: str

    def step(self, name: str) -> Int8Step:
        for st in self.steps:
            if st.name == name:
                return st
        raise KeyError(name)

    @property
    def output_qp(self) -> QParams:
        return self.step(self.output_tensor).out_qp


def asymmetric_params(lo: float, hi: float) -> tuple[float, int]:
    """Spec 3.1: widen [lo, hi] to contain 0 (and to span >= MIN_RANGE);
    s = (hi - lo)/255, z = RNE(-128 - lo/s)."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if hi - lo < MIN_RANGE:
        hi = lo + MIN_RANGE
    scale = (hi - lo) / 255.0
    zero_point = int(np.clip(np.rint(-128.0 - lo / scale), -128, 127))
    return scale, zero_point


def quantize_act(x: ArrayLike, scale: float, zero_point: int, name: str = "tensor") -> tuple[I8Array, int]:
    """Host side: float -> int8 asymmetric: sat8(RNE(x / s) + z). Returns (int8, n_sat)."""
    arr = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise QuantizationError(f"{name}: NaN/Inf cannot be quantized")
    q = np.rint(arr / scale) + zero_point
    n_sat = int(np.count_nonzero((q > 127) | (q < -128)))
    return np.clip(q, -128, 127).astype(np.int8), n_sat


def dequantize_act(q: ArrayLike, scale: float, zero_point: int) -> F64Array:
    return scale * (np.asarray(q, dtype=np.float64) - zero_point)


def quantize_weight_per_channel(w: np.ndarray, min_scale: float | np.ndarray = 0.0) -> tuple[I8Array, F64Array]:
    """Spec 3.1: per output channel (axis 0) symmetric, codes in [-127, 127];
    scales are at least `min_scale` (scalar or per channel; 1.0 for an all-zero channel)."""
    flat = w.reshape(w.shape[0], -1)
    maxabs = np.max(np.abs(flat), axis=1)
    scales = np.where(maxabs > 0, np.maximum(maxabs / 127.0, min_scale), 1.0)
    q = np.clip(np.rint(flat / scales[:, None]), -127, 127).astype(np.int8)
    return q.reshape(w.shape), scales


def _multiplier(layer: str, what: str, real: float, bits: int = 31):
    try:
        return quantize_multiplier(real, bits)
    except ValueError as exc:
        raise QuantizationError(f"layer '{layer}': {what} multiplier {real!r} cannot be represented ({exc})") from exc


def int8_params(graph: Graph) -> Int8Params:
    """The graph's validated INT8 parameters (QuantizationError naming `calibrate` when absent)."""
    return graph.formats.int8


# ------------------------------------------------------------------ registry rows
@dataclass(frozen=True)
class Int8Row:
    # (layer, input qparams, output qparams, RMSNorm mode) -> (typed params, weight saturations, mixed precision)
    lower: Callable[[Layer, tuple, QParams, str], tuple[object, int, bool]]
    # (step, int8 inputs [B, C, L]) -> (int8 output, saturations)
    run: Callable[[Int8Step, list], tuple[np.ndarray, int]]
    fixed_output: QParams | None = None  # an output format fixed by the spec (calibration keeps it)
    # params -> the kernel's named columns of the packed table (kernels_int8.run_program_int8), or
    # None: this step has no packed kernel and the program runs layer by layer (RMSNorm V1)
    pack: Callable[[object], PackedStep | None] | None = None


INT8: BackendTable[Int8Row] = BackendTable("INT8 integer path")


def _lower_conv(layer: Layer, in_qp, out_qp: QParams, rms_mode: str):
    (s_x, z_x), (s_y, z_y) = in_qp[0], out_qp
    bias = layer.weights["bias"]
    # spec 3.1 floors: multiplier >= 2^-30, and |b_q| <= 2^30 so the int32 sum cannot overflow
    floor = np.maximum(MIN_MULTIPLIER * s_y / s_x, np.abs(bias) / (s_x * BIAS_LIMIT))
    w_q, s_w = quantize_weight_per_channel(layer.weights["weight"], floor)
    b_real = np.rint(bias / (s_x * s_w))
    b_q = np.clip(b_real, -(1 << 31), ACC_LIMIT).astype(np.int64)
    n_sat = int(np.count_nonzero(b_q != b_real))
    bound = np.abs(w_q.reshape(w_q.shape[0], -1).astype(np.int64)).sum(axis=1) * 255 + np.abs(b_q)
    if np.any(bound > ACC_LIMIT):
        c = int(np.argmax(bound))
        raise QuantizationError(
            f"layer '{layer.name}': output channel {c}: 255 * sum|w_q| + |b_q| = {int(bound[c])} exceeds "
            f"2^31 - 1, the int32 accumulator could overflow (spec 3.1)"
        )
    mults = [_multiplier(layer.name, "output", s_x * sw / s_y) for sw in s_w]
    return (
        ConvParams8(
            w_q,
            b_q,
            z_x,
            z_y,
            np.array([m for m, _ in mults], np.int64),
            np.array([sh for _, sh in mults], np.int64),
            layer.attrs.get("stride", 1),
        ),
        n_sat,
        False,
    )


def _pack_conv(p: ConvParams8) -> PackedStep:
    w = p.weight if p.weight.ndim == 3 else p.weight[:, :, None]  # 1x1: the K = 1, S = 1 case
    narrow = acc_bits(w, p.bias, K8.CENTERED_MAX_ABS) <= 32  # spec 3.1: always, once lowered
    return PackedStep(
        K8.CONV8,
        {"x_zp": p.x_zp, "y_zp": p.y_zp, "stride": p.stride, "narrow": int(narrow)},
        weight_cols(np.ascontiguousarray(w)),
        w.shape,
        _columns(p),
    )


def _columns(p: ConvParams8) -> np.ndarray:
    """A convolution's int64 column data: bias, m0, shift (C_out each)."""
    return np.concatenate([p.bias, p.m0, p.shift]).astype(np.int64)


INT8.register(
    "conv_kx1",
    Int8Row(
        _lower_conv,
        lambda st, x: K8.conv_kx1_int8(
            x[0],
            st.params.x_zp,
            st.params.weight,
            st.params.bias,
            st.params.m0,
            st.params.shift,
            st.params.y_zp,
            st.params.stride,
        ),
        pack=_pack_conv,
    ),
)
INT8.register(
    "conv1x1",
    Int8Row(
        _lower_conv,
        lambda st, x: K8.conv1x1_int8(
            x[0], st.params.x_zp, st.params.weight, st.params.bias, st.params.m0, st.params.shift, st.params.y_zp
        ),
        pack=_pack_conv,
    ),
)
INT8.register(
    "dwconv",
    Int8Row(
        _lower_conv,
        lambda st, x: K8.dwconv_int8(
            x[0], st.params.x_zp, st.params.weight, st.params.bias, st.params.m0, st.params.shift, st.params.y_zp
        ),
        pack=lambda p: PackedStep(
            K8.DWCONV8,
            {"x_zp": p.x_zp, "y_zp": p.y_zp},
            p.weight,
            (p.weight.shape[0], 1, p.weight.shape[1]),
            _columns(p),
        ),
    ),
)


def _lower_rmsnorm(layer: Layer, in_qp, out_qp: QParams, rms_mode: str):
    (s_x, z_x), (s_y, z_y) = in_qp[0], out_qp
    g = layer.weights["weight"]
    if g.size > RMS_MAX_D:
        raise QuantizationError(
            f"layer '{layer.name}': INT8 RMSNorm over D = {g.size} channels; "
            f"at most {RMS_MAX_D} keep the product below 2^31 (spec 3.9)"
        )
    s_g = float(np.max(np.abs(g))) / 127.0 or 1.0
    g_q = np.clip(np.rint(g / s_g), -127, 127).astype(np.int8)
    eps = layer.attrs["eps"]
    m0, sh = _multiplier(layer.name, "RMSNorm", s_g / s_y)
    shift = sh + K8.RMS_INV_BITS_INT8 - K8.RMS_EXTRA_BITS
    if shift > MAX_SHIFT:
        raise QuantizationError(
            f"layer '{layer.name}': RMSNorm shift {shift} exceeds {MAX_SHIFT} "
            f"(gain step / output step = {s_g / s_y!r} is below ~2^-16, spec 3.9)"
        )
    sq = s_x * s_x
    eps_f = eps / sq * 2.0 ** (2 * K8.RMS_EXTRA_BITS) if sq > 0.0 else np.inf
    if not eps_f <= EPS_Q_LIMIT:
        raise QuantizationError(
            f"layer '{layer.name}': RMSNorm eps_q = eps / s_x^2 * 2^16 exceeds 2^61 "
            f"(input scale {s_x!r} too small for eps = {eps!r}, spec 3.9)"
        )
    eps_q = int(np.rint(eps_f))
    v1 = rms_mode == "v1"  # V1: float inside (not bit-true-able in C++)
    return RmsNormParams8(g_q, z_x, z_y, m0, shift, eps_q, g if v1 else None, eps if v1 else None), 0, v1


def _run_rmsnorm(st: Int8Step, x):
    p = st.params
    if st.mixed_precision:
        return _rmsnorm_v1(x[0], st)
    return K8.rmsnorm_int8(x[0], p.x_zp, p.gain, np.int64(p.eps_q), p.m0, p.shift, p.y_zp)


def _pack_rmsnorm(p: RmsNormParams8) -> PackedStep | None:
    if p.gain_float is not None:  # V1: float inside, no integer kernel
        return None
    return PackedStep(
        K8.RMSNORM8,
        {"x_zp": p.x_zp, "y_zp": p.y_zp, "m0": p.m0, "shift": p.shift, "eps_q": p.eps_q},
        p.gain,
        (p.gain.size, 1, 1),
    )


INT8.register("rmsnorm", Int8Row(_lower_rmsnorm, _run_rmsnorm, pack=_pack_rmsnorm))


def _lut_row(func: str, fixed_output: QParams | None = None) -> Int8Row:
    def lower(layer: Layer, in_qp, out_qp: QParams, rms_mode: str):
        return LutParams8(int8_table(func, *in_qp[0], *out_qp), int8_table_clamped(func, *in_qp[0], *out_qp)), 0, False

    return Int8Row(
        lower,
        lambda st, x: K8.lut_int8(x[0], st.params.table, st.params.clamped),
        fixed_output,
        lambda p: PackedStep(K8.LUT8, {}, np.concatenate([p.table, p.clamped.astype(np.int8)]), (p.table.size, 2, 1)),
    )  # flags after the table


# The sigmoid output (lam, feeding a scan) has the fixed format s = 1/256, z = -128 (spec 3.5).
INT8.register("sigmoid", _lut_row("sigmoid", LAM_QP))
INT8.register("silu", _lut_row("silu"))
INT8.register("softplus", _lut_row("softplus"))


def _lower_scan(layer: Layer, in_qp, out_qp: QParams, rms_mode: str):
    if in_qp[0] != LAM_QP:
        raise QuantizationError(
            f"layer '{layer.name}': the scan's lam input must have the fixed format "
            f"s = 1/256, z = -128 (spec 3.5), got s = {in_qp[0].scale}, z = {in_qp[0].zero_point}"
        )
    s_u, z_u = in_qp[1]
    m0, sh = _multiplier(layer.name, "scan output", s_u / (256.0 * out_qp.scale))
    return ScanParams8(z_u, out_qp.zero_point, m0, sh), 0, False


INT8.register(
    "scan",
    Int8Row(
        _lower_scan,
        lambda st, x: K8.scan_int8(x[0], x[1], st.params.u_zp, st.params.m0, st.params.shift, st.params.y_zp),
        pack=lambda p: PackedStep(K8.SCAN8, {"u_zp": p.u_zp, "y_zp": p.y_zp, "m0": p.m0, "shift": p.shift}),
    ),
)


S6_MULT_BITS = 15  # spec 3.13: a 15-bit state-sum multiplier keeps (sum_n C h) * m_h below 2^62


def _lower_s6(layer: Layer, in_qp, out_qp: QParams, rms_mode: str):
    (s_d, z_d), (s_x, z_x), (s_b, z_b), (s_c, z_c) = in_qp
    s_y, z_y = out_qp
    a_q, s_a = quantize_weight_per_channel(layer.weights["A"])  # per row e
    d_q, s_dk = quantize_weight_per_channel(layer.weights["D"].reshape(1, -1))  # per tensor
    mults = [_multiplier(layer.name, "decay address", (s_d * sa) * float(1 << EXP_ADDR_FRAC_BITS)) for sa in s_a]
    m_h, shift = _multiplier(layer.name, "state sum", (((s_c * s_d) * s_b) * s_x) / s_y, S6_MULT_BITS)
    m_k = int(np.rint(np.ldexp((float(s_dk[0]) * s_x) / s_y, shift)))
    n_states = a_q.shape[1]
    if n_states * 255 * (1 << 31) * ((1 << S6_MULT_BITS) - 1) + 127 * 255 * m_k >= 1 << 63:
        raise QuantizationError(
            f"layer '{layer.name}': N = {n_states} states with skip multiplier {m_k} (at shift {shift}) "
            f"overflow the int64 output sum (spec 3.13)"
        )
    return (
        S6Params8(
            a_q,
            np.array([m for m, _ in mults], np.int64),
            np.array([sh for _, sh in mults], np.int64),
            d_q.reshape(-1),
            (z_d, z_x, z_b, z_c, z_y),
            m_h,
            m_k,
            shift,
        ),
        0,
        False,
    )


def _run_s6(st: Int8Step, x):
    p = st.params
    z_d, z_x, z_b, z_c, z_y = p.zps
    return K8.s6_scan_int8(
        x[0],
        z_d,
        x[1],
        z_x,
        x[2],
        z_b,
        x[3],
        z_c,
        p.a,
        p.m_a,
        p.sh_a,
        p.d,
        exp_decay_table(),
        p.m_h,
        p.m_k,
        p.shift,
        z_y,
    )


INT8.register("s6_scan", Int8Row(_lower_s6, _run_s6))


def _lower_mul(layer: Layer, in_qp, out_qp: QParams, rms_mode: str):
    (s_a, z_a), (s_b, z_b) = in_qp
    m0, sh = _multiplier(layer.name, "product", s_a * s_b / out_qp.scale)
    return MulParams8(z_a, z_b, out_qp.zero_point, m0, sh), 0, False


INT8.register(
    "mul",
    Int8Row(
        _lower_mul,
        lambda st, x: K8.mul_int8(
            x[0], st.params.a_zp, x[1], st.params.b_zp, st.params.m0, st.params.shift, st.params.y_zp
        ),
        pack=lambda p: PackedStep(K8.MUL8, vars(p).copy()),
    ),
)


def _lower_add(layer: Layer, in_qp, out_qp: QParams, rms_mode: str):
    (s_a, z_a), (s_b, z_b) = in_qp
    m_a, m_b = s_a / out_qp.scale, s_b / out_qp.scale
    _, sh = _multiplier(layer.name, "sum", max(m_a, m_b))
    return (
        AddParams8(z_a, z_b, out_qp.zero_point, sh, int(np.rint(np.ldexp(m_a, sh))), int(np.rint(np.ldexp(m_b, sh)))),
        0,
        False,
    )


INT8.register(
    "add",
    Int8Row(
        _lower_add,
        lambda st, x: K8.add_int8(
            x[0], st.params.a_zp, st.params.m_a, x[1], st.params.b_zp, st.params.m_b, st.params.shift, st.params.y_zp
        ),
        pack=lambda p: PackedStep(K8.ADD8, vars(p).copy()),
    ),
)


REVIN_EPS_Q_LIMIT = 1 << 32  # spec 3.11: keeps std < 2^17 and the denorm sum below 2^57


def _revin_eps_q(layer: Layer, s_x: float) -> int:
    eps = layer.attrs["eps"]
    sq = s_x * s_x
    eps_f = eps / sq * 2.0 ** (2 * K8.REVIN_EXTRA_BITS) if sq > 0.0 else np.inf
    if not eps_f <= REVIN_EPS_Q_LIMIT:
        raise QuantizationError(
            f"layer '{layer.name}': RevIN eps_q = eps / s_x^2 * 2^16 exceeds 2^32 "
            f"(window scale {s_x!r} too small for eps = {eps!r}, spec 3.11)"
        )
    return int(np.rint(eps_f))


def _check_total_shift(layer: Layer, shift: int) -> int:
    if shift > MAX_SHIFT:
        raise QuantizationError(f"layer '{layer.name}': RevIN shift {shift} exceeds {MAX_SHIFT} (spec 3.11)")
    return shift


REVIN_MAX_L_INT8 = 1 << 11  # spec 3.11: keeps |((xc << G) - mean) inv| below 2^31


def _lower_revin_norm(layer: Layer, in_qp, out_qp: QParams, rms_mode: str):
    (s_x, z_x), (s_y, z_y) = in_qp[0], out_qp
    if layer.shape[1] > REVIN_MAX_L_INT8:
        raise QuantizationError(
            f"layer '{layer.name}': INT8 RevIN over {layer.shape[1]} samples; at most {REVIN_MAX_L_INT8} (spec 3.11)"
        )
    m0, sh = _multiplier(layer.name, "RevIN output", 1.0 / s_y)
    shift = _check_total_shift(layer, sh + K8.REVIN_INV_BITS_INT8)
    return RevinNormParams8(z_x, z_y, _revin_eps_q(layer, s_x), m0, shift), 0, False


def _lower_revin_denorm(layer: Layer, in_qp, out_qp: QParams, rms_mode: str):
    (s_y, z_y), (s_x, z_x), (s_o, z_o) = in_qp[0], in_qp[1], out_qp
    m_a, m_b = (s_y * s_x) / s_o, s_x / s_o
    _, sh = _multiplier(layer.name, "RevIN output", max(m_a, m_b))
    shift = _check_total_shift(layer, sh + K8.REVIN_EXTRA_BITS)
    return (
        RevinDenormParams8(
            z_y,
            z_x,
            z_o,
            _revin_eps_q(layer, s_x),
            int(np.rint(np.ldexp(m_a, sh))),
            int(np.rint(np.ldexp(m_b, sh))),
            shift,
        ),
        0,
        False,
    )


INT8.register(
    "revin_norm",
    Int8Row(
        _lower_revin_norm,
        lambda st, x: K8.revin_norm_int8(
            x[0], st.params.x_zp, np.int64(st.params.eps_q), st.params.m0, st.params.shift, st.params.y_zp
        ),
    ),
)
INT8.register(
    "revin_denorm",
    Int8Row(
        _lower_revin_denorm,
        lambda st, x: K8.revin_denorm_int8(
            x[0],
            st.params.y_zp,
            x[1],
            st.params.x_zp,
            np.int64(st.params.eps_q),
            st.params.m_a,
            st.params.m_b,
            st.params.shift,
            st.params.o_zp,
        ),
    ),
)


# ------------------------------------------------------------------ lowering, running
def lower_int8(graph: Graph) -> Int8Program:
    q = int8_params(graph)
    qp = {INPUT_NAME: q.qp(INPUT_NAME)}
    steps: list[Int8Step] = []
    for layer in graph.layers:
        row = INT8.row(layer.op, layer.name)
        out_qp = q.qp(layer.name)
        in_qp = tuple(qp[s] for s in layer.inputs)
        params, n_sat, mixed = row.lower(layer, in_qp, out_qp, q.rmsnorm)
        steps.append(Int8Step(layer.name, layer.op, layer.inputs, in_qp, out_qp, layer.shape, params, n_sat, mixed))
        qp[layer.name] = out_qp
    return Int8Program(qp[INPUT_NAME], steps, graph.output_tensor)


def _rmsnorm_v1(x, st: Int8Step):
    """Spec 3.9 V1, mixed precision: dequantize, float RMSNorm, requantize."""
    (s_x, z_x), (s_y, z_y) = st.in_qp[0], st.out_qp
    xf = dequantize_act(x, s_x, z_x)
    yf = xf / np.sqrt(np.mean(xf * xf, axis=1, keepdims=True) + st.params.eps) * st.params.gain_float[None, :, None]
    return quantize_act(yf, s_y, z_y, st.name)


@dataclass(frozen=True)
class PackedInt8(PackedProgram):
    quads: np.ndarray = None  # int32: the convs' quad tile weights (kernels_int8.pack_conv_quads)
    quads_at: np.ndarray = None  # int64[n]: each step's offset in quads, -1 for none


def pack_program8(prog: Int8Program, input_shape: tuple[int, int]) -> PackedInt8 | None:
    """Pack `prog` for `kernels_int8.run_program_int8` (one jitted call for the whole program; the
    convs' quad tile weights packed once here); None when a step has no packed kernel (RMSNorm V1,
    float inside): run it layer by layer."""
    packed = pack_steps(prog.steps, INT8, input_shape)
    if packed is None:
        return None
    quads, quads_at = K8.pack_conv_quads(packed.steps, packed.weights, packed.biases)
    return PackedInt8(**vars(packed), quads=quads, quads_at=quads_at)


def run_step8(st: Int8Step, inputs: list[np.ndarray]) -> tuple[I8Array, int]:
    """Run one lowered INT8 step on int8 [B, C, L] inputs -> (int8 output, saturations)."""
    return INT8.row(st.op, st.name).run(st, inputs)
