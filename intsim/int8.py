"""INT8 lowering: calibrated graph -> integer program (docs/quant-spec.md section 3).

`lower_int8(graph)` computes, once on the host, every integer constant of the
INT8 path: int8 weights (per-output-channel symmetric), int32 biases, integer
multipliers and shifts, zero points, exact 256-entry LUTs and RMSNorm constants.
The quant8 executor runs them with the Numba kernels; codegen emits them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from intsim import kernels_int8 as K8
from intsim.errors import QuantizationError, UnsupportedError
from intsim.fixedpoint import MAX_SHIFT, quantize_multiplier
from intsim.graph import INPUT_NAME, Graph
from intsim.lut import int8_table, int8_table_clamped

# The sigmoid output that feeds a scan has this fixed format (spec 3.5).
LAM_SCALE, LAM_ZERO_POINT = 1.0 / 256.0, -128
ACC_LIMIT = (1 << 31) - 1    # spec 3.1: 255 * sum|w_q[c]| + |b_q[c]| <= ACC_LIMIT per output channel
RMS_MAX_D = 1 << 16          # spec 3.9: RMSNorm over D <= 65536 channels keeps |prod| < 2^31
EPS_Q_LIMIT = 1 << 61        # spec 3.9: eps_q <= 2^61 keeps the isqrt argument below 2^62
MIN_RANGE = 1e-3     # a (near-)constant tensor still gets a usable scale (spec 3.1)
MIN_MULTIPLIER = 2.0 ** -30   # floor of s_x * s_w[c] / s_y for (near-)zero weight channels
BIAS_LIMIT = float(1 << 30)   # |b_q| <= 2^30: the int32 accumulator keeps 2^30 for the sum
RMSNORM_MODES = ("v2", "v1")


@dataclass
class Int8Step:
    """One layer lowered to INT8 integers. `params` holds ints and int arrays only."""
    name: str
    op: str
    inputs: tuple[str, ...]
    in_qp: tuple[tuple[float, int], ...]     # (scale, zero_point) of each input
    out_qp: tuple[float, int]
    shape: tuple[int, int]
    params: dict = field(default_factory=dict)
    weight_saturations: int = 0
    mixed_precision: bool = False            # RMSNorm V1: float inside (spec 3.9)


@dataclass
class Int8Program:
    input_qp: tuple[float, int]
    steps: list[Int8Step]
    output_tensor: str

    def step(self, name: str) -> Int8Step:
        for st in self.steps:
            if st.name == name:
                return st
        raise KeyError(name)

    @property
    def output_qp(self) -> tuple[float, int]:
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


def quantize_act(x, scale: float, zero_point: int, name: str = "tensor"):
    """Host side: float -> int8 asymmetric: sat8(RNE(x / s) + z). Returns (int8, n_sat)."""
    arr = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise QuantizationError(f"{name}: NaN/Inf cannot be quantized")
    q = np.rint(arr / scale) + zero_point
    n_sat = int(np.count_nonzero((q > 127) | (q < -128)))
    return np.clip(q, -128, 127).astype(np.int8), n_sat


def dequantize_act(q, scale: float, zero_point: int):
    return scale * (np.asarray(q, dtype=np.float64) - zero_point)


def quantize_weight_per_channel(w: np.ndarray, min_scale=0.0):
    """Spec 3.1: per output channel (axis 0) symmetric, codes in [-127, 127];
    scales are at least `min_scale` (scalar or per channel; 1.0 for an all-zero channel)."""
    flat = w.reshape(w.shape[0], -1)
    maxabs = np.max(np.abs(flat), axis=1)
    scales = np.where(maxabs > 0, np.maximum(maxabs / 127.0, min_scale), 1.0)
    q = np.clip(np.rint(flat / scales[:, None]), -127, 127).astype(np.int8)
    return q.reshape(w.shape), scales


def _multiplier(layer: str, what: str, real: float):
    try:
        return quantize_multiplier(real)
    except ValueError as exc:
        raise QuantizationError(f"layer '{layer}': {what} multiplier {real!r} cannot be represented ({exc})") from exc


def int8_params(graph: Graph) -> dict:
    q = graph.quant.get("int8")
    if not q or "tensors" not in q:
        raise QuantizationError(
            f"model '{graph.name}' has no INT8 parameters (quant.int8): run "
            f"`cmamba-hls calibrate {graph.path or 'MODEL_DIR'}` first")
    return q


def _qp(tensors: dict, name: str) -> tuple[float, int]:
    entry = tensors.get(name)
    if not isinstance(entry, dict) or "scale" not in entry or "zero_point" not in entry:
        raise QuantizationError(f"quant.int8: no scale/zero_point for tensor '{name}' (re-run calibrate)")
    scale, zp = float(entry["scale"]), entry["zero_point"]
    if not (np.isfinite(scale) and scale > 0) or not isinstance(zp, int) or not -128 <= zp <= 127:
        raise QuantizationError(f"quant.int8: tensor '{name}' needs scale > 0 and an int zero_point in [-128, 127]")
    return scale, zp


def lower_int8(graph: Graph) -> Int8Program:
    q = int8_params(graph)
    tensors = q["tensors"]
    rms_mode = q.get("rmsnorm", "v2")
    if rms_mode not in RMSNORM_MODES:
        raise QuantizationError(f"quant.int8.rmsnorm must be one of {RMSNORM_MODES}, got {rms_mode!r}")
    qp = {INPUT_NAME: _qp(tensors, INPUT_NAME)}
    steps: list[Int8Step] = []
    for layer in graph.layers:
        out_qp = _qp(tensors, layer.name)
        in_qp = tuple(qp[s] for s in layer.inputs)
        st = Int8Step(layer.name, layer.op, layer.inputs, in_qp, out_qp, layer.shape)
        p = st.params
        (s_x, z_x), (s_y, z_y) = in_qp[0], out_qp
        if layer.op in ("conv_kx1", "conv1x1", "dwconv"):
            bias = layer.weights["bias"]
            # spec 3.1 floors: multiplier >= 2^-30, and |b_q| <= 2^30 so the int32 sum cannot overflow
            floor = np.maximum(MIN_MULTIPLIER * s_y / s_x, np.abs(bias) / (s_x * BIAS_LIMIT))
            w_q, s_w = quantize_weight_per_channel(layer.weights["weight"], floor)
            b_real = np.rint(bias / (s_x * s_w))
            b_q = np.clip(b_real, -(1 << 31), ACC_LIMIT).astype(np.int64)
            st.weight_saturations = int(np.count_nonzero(b_q != b_real))
            bound = np.abs(w_q.reshape(w_q.shape[0], -1).astype(np.int64)).sum(axis=1) * 255 + np.abs(b_q)
            if np.any(bound > ACC_LIMIT):
                c = int(np.argmax(bound))
                raise QuantizationError(
                    f"layer '{layer.name}': output channel {c}: 255 * sum|w_q| + |b_q| = {int(bound[c])} exceeds "
                    f"2^31 - 1, the int32 accumulator could overflow (spec 3.1)")
            mults = [_multiplier(layer.name, "output", s_x * sw / s_y) for sw in s_w]
            p.update(weight=w_q, bias=b_q, x_zp=z_x, y_zp=z_y,
                     m0=np.array([m for m, _ in mults], np.int64),
                     shift=np.array([sh for _, sh in mults], np.int64))
            if layer.op == "conv_kx1":
                p["stride"] = layer.attrs["stride"]
        elif layer.op == "rmsnorm":
            g = layer.weights["weight"]
            if g.size > RMS_MAX_D:
                raise QuantizationError(f"layer '{layer.name}': INT8 RMSNorm over D = {g.size} channels; "
                                        f"at most {RMS_MAX_D} keep the product below 2^31 (spec 3.9)")
            s_g = float(np.max(np.abs(g))) / 127.0 or 1.0
            g_q = np.clip(np.rint(g / s_g), -127, 127).astype(np.int8)
            eps = layer.attrs["eps"]
            m0, sh = _multiplier(layer.name, "RMSNorm", s_g / s_y)
            shift = sh + K8.RMS_INV_BITS_INT8 - K8.RMS_EXTRA_BITS
            if shift > MAX_SHIFT:
                raise QuantizationError(f"layer '{layer.name}': RMSNorm shift {shift} exceeds {MAX_SHIFT} "
                                        f"(gain step / output step = {s_g / s_y!r} is below ~2^-16, spec 3.9)")
            sq = s_x * s_x
            eps_f = eps / sq * 2.0 ** (2 * K8.RMS_EXTRA_BITS) if sq > 0.0 else np.inf
            if not eps_f <= EPS_Q_LIMIT:
                raise QuantizationError(f"layer '{layer.name}': RMSNorm eps_q = eps / s_x^2 * 2^16 exceeds 2^61 "
                                        f"(input scale {s_x!r} too small for eps = {eps!r}, spec 3.9)")
            eps_q = int(np.rint(eps_f))
            p.update(gain=g_q, x_zp=z_x, y_zp=z_y, m0=m0, shift=shift, eps_q=eps_q)
            if rms_mode == "v1":
                st.mixed_precision = True
                p.update(gain_float=g, eps=eps)      # V1: float inside (not bit-true-able in C++)
        elif layer.op in ("sigmoid", "silu"):
            p["table"] = int8_table(layer.op, s_x, z_x, s_y, z_y)
            p["clamped"] = int8_table_clamped(layer.op, s_x, z_x, s_y, z_y)
        elif layer.op == "scan":
            if in_qp[0] != (LAM_SCALE, LAM_ZERO_POINT):
                raise QuantizationError(
                    f"layer '{layer.name}': the scan's lam input must have the fixed format "
                    f"s = 1/256, z = -128 (spec 3.5), got {in_qp[0]}")
            s_u, z_u = in_qp[1]
            m0, sh = _multiplier(layer.name, "scan output", s_u / (256.0 * s_y))
            p.update(u_zp=z_u, y_zp=z_y, m0=m0, shift=sh)
        elif layer.op == "mul":
            (s_a, z_a), (s_b, z_b) = in_qp
            m0, sh = _multiplier(layer.name, "product", s_a * s_b / s_y)
            p.update(a_zp=z_a, b_zp=z_b, y_zp=z_y, m0=m0, shift=sh)
        elif layer.op == "add":
            (s_a, z_a), (s_b, z_b) = in_qp
            m_a, m_b = s_a / s_y, s_b / s_y
            _, sh = _multiplier(layer.name, "sum", max(m_a, m_b))
            p.update(a_zp=z_a, b_zp=z_b, y_zp=z_y, shift=sh,
                     m_a=int(np.rint(np.ldexp(m_a, sh))), m_b=int(np.rint(np.ldexp(m_b, sh))))
        else:
            raise UnsupportedError(f"layer '{layer.name}': op '{layer.op}' has no INT8 lowering")
        qp[layer.name] = out_qp
        steps.append(st)
    return Int8Program(qp[INPUT_NAME], steps, graph.output_tensor)


def _rmsnorm_v1(x, st: Int8Step):
    """Spec 3.9 V1, mixed precision: dequantize, float RMSNorm, requantize."""
    (s_x, z_x), (s_y, z_y) = st.in_qp[0], st.out_qp
    xf = dequantize_act(x, s_x, z_x)
    yf = xf / np.sqrt(np.mean(xf * xf, axis=1, keepdims=True) + st.params["eps"]) \
        * st.params["gain_float"][None, :, None]
    return quantize_act(yf, s_y, z_y, st.name)


def run_step8(st: Int8Step, inputs: list[np.ndarray]):
    """Run one lowered INT8 step on int8 [B, C, L] inputs -> (int8 output, saturations)."""
    p = st.params
    if st.op == "conv_kx1":
        return K8.conv_kx1_int8(inputs[0], p["x_zp"], p["weight"], p["bias"], p["m0"], p["shift"],
                                p["y_zp"], p["stride"])
    if st.op == "conv1x1":
        return K8.conv1x1_int8(inputs[0], p["x_zp"], p["weight"], p["bias"], p["m0"], p["shift"], p["y_zp"])
    if st.op == "dwconv":
        return K8.dwconv_int8(inputs[0], p["x_zp"], p["weight"], p["bias"], p["m0"], p["shift"], p["y_zp"])
    if st.op == "rmsnorm":
        if st.mixed_precision:
            return _rmsnorm_v1(inputs[0], st)
        return K8.rmsnorm_int8(inputs[0], p["x_zp"], p["gain"], np.int64(p["eps_q"]), p["m0"], p["shift"], p["y_zp"])
    if st.op in ("sigmoid", "silu"):
        return K8.lut_int8(inputs[0], p["table"], p["clamped"])
    if st.op == "scan":
        return K8.scan_int8(inputs[0], inputs[1], p["u_zp"], p["m0"], p["shift"], p["y_zp"])
    if st.op == "mul":
        return K8.mul_int8(inputs[0], p["a_zp"], inputs[1], p["b_zp"], p["m0"], p["shift"], p["y_zp"])
    if st.op == "add":
        return K8.add_int8(inputs[0], p["a_zp"], p["m_a"], inputs[1], p["b_zp"], p["m_b"], p["shift"], p["y_zp"])
    raise UnsupportedError(f"layer '{st.name}': op '{st.op}' has no INT8 kernel")
