"""INT8 bit-true kernels on torch tensors (docs/quant-spec.md section 3; needs the 'train' extra).

One `TorchRow` per op in `TORCH8` (this back end's registry table, intsim/ops.py), each
consuming the typed lowered parameters of `intsim.int8.lower_int8` (ConvParams8,
RmsNormParams8, LutParams8, ScanParams8, MulParams8, AddParams8): int8 weight codes, int32
biases, multipliers, shifts, zero points and tables, exactly as the Numba kernels and the C++
read them. Kernels take int32 tensors **[B, L, C]** (channels-last) holding int8 codes and
return (int32 [B, L_out, C_out] holding int8 codes, saturation count). Accumulators are int32 by
the lowering's check (spec 3.1; summed exactly in float, model/torch_mac.py), requantization
products int64 (< 2^62).
RMSNorm V1 (float inside, spec 3.9) is mixed precision, not integer: refused, naming the layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from intsim.errors import UnsupportedError
from intsim.kernels_int8 import REVIN_EXTRA_BITS, REVIN_INV_BITS_INT8, RMS_EXTRA_BITS, RMS_INV_BITS_INT8
from intsim.lut import EXP_FRAC_BITS, exp_decay_table
from intsim.ops import BackendTable
from model.torch_fixedpoint import (
    ACC_BOUND,
    FLOAT_REQUANT_MAX_SHIFT,
    const64,
    exact_float_shift,
    float_multipliers,
    isqrt_rne,
    magic_round_fits,
    min_max,
    no_ties,
    requantize,
    requantize_float,
    rne_div,
    rne_shift,
    saturate,
    zero_count,
)
from model.torch_mac import INT8_CODE_MAX_ABS, DenseSum, DepthwiseSum, Int8DenseSum, int8_gemm_is_exact
from model.torch_rows import TorchRow, as_long, channel_chunks, from_channel_chunks, lookup, s6_recurrence

CENTERED_MAX_ABS = 255  # |x_q - z_x| <= 255 for int8 codes and zero points (spec 3.1)
ADD_ACC_BOUND = 2 * CENTERED_MAX_ABS << 31  # |(a - z_a) m_a + (b - z_b) m_b| < 2 255 2^31 (spec 3.8)

TORCH8: BackendTable[TorchRow] = BackendTable("INT8 torch bit-true")


@dataclass
class _Conv8:
    mac: DenseSum | DepthwiseSum | Int8DenseSum
    x_zp: int
    y_zp: int
    m0: torch.Tensor  # int64 [C_out]
    shift: torch.Tensor  # int64 [C_out]
    mult: torch.Tensor | None  # float64 [C_out] m0 2^-shift when every shift allows the float path
    mult_max: float  # max |mult| (0 without the float path)
    ties: bool  # some channel's acc m0 can be a tie (else the zero point joins the rounding constant)


def _prepare_conv(st, device) -> _Conv8:
    p = st.params
    x_zp = p.x_zp
    if st.op == "dwconv":
        mac = DepthwiseSum.build(p.weight, p.bias, CENTERED_MAX_ABS, device)
    else:
        rows = np.asarray(p.weight, dtype=np.int64).reshape(p.weight.shape[0], -1)
        folded_bias = p.bias - x_zp * rows.sum(axis=1)  # b - z_x sum w: the sum reads the codes as they are
        int8 = Int8DenseSum.build(p.weight, folded_bias, p.stride, device) if int8_gemm_is_exact(device) else None
        if int8 is not None:  # int8 x int8 -> int32 GEMM, every partial sum within int32
            mac, x_zp = int8, 0
        else:
            mac = DenseSum.build(p.weight, p.bias, p.stride, CENTERED_MAX_ABS, device)
            folded = DenseSum.build(p.weight, folded_bias, p.stride, INT8_CODE_MAX_ABS, device) if x_zp else None
            if folded is not None and folded.bias.dtype == torch.float32:  # every partial sum within 2^24: exact
                mac, x_zp = folded, 0
    mult = float_multipliers(p.m0, p.shift)
    return _Conv8(
        mac,
        x_zp,
        p.y_zp,
        as_long(p.m0, device),
        as_long(p.shift, device),
        None if mult is None else torch.as_tensor(mult, device=device),
        0.0 if mult is None or not mult.size else float(np.abs(mult).max()),
        not all(no_ties(ACC_BOUND, int(m), int(s)) for m, s in zip(p.m0, p.shift, strict=True)),
    )


def _conv(c: _Conv8, x: list[torch.Tensor]):
    """Spec 3.4: acc = b + sum w (x - z_x) (int32), y = requantize(acc, m0[c], shift[c], z_y)."""
    dtype = c.mac.acc_dtype  # centre the codes in the sum's own type (float32 for most layers: |x - z| <= 255)
    if not c.x_zp:  # zero point folded into the bias (or zero): the sum converts the codes itself
        acc = c.mac(x[0])
    else:
        acc = c.mac(x[0].to(dtype).sub_(c.x_zp) if dtype.is_floating_point else x[0] - c.x_zp)
    if c.mult is not None:
        return requantize_float(acc, c.mult, c.y_zp, mult_max=c.mult_max, ties=c.ties)
    return requantize(acc, c.m0, c.shift, c.y_zp)


for _op in ("conv_kx1", "conv1x1", "dwconv"):
    TORCH8.register(_op, TorchRow(_prepare_conv, _conv))


@dataclass
class _RmsNorm8:
    gain: torch.Tensor  # int32 [D] (int8 values)
    x_zp: int
    y_zp: int
    m0: int
    shift: int
    eps_q: int
    float_stats: bool  # the per-row statistics in float64 (`_rms_inverse`: exact within its bounds)


RMS_FLOAT_MAX_D = 1 << 20  # float64 RNE(ss 2^2G / D) is exact up to this D (see _rms_inverse)
RMS_FLOAT_MAX_EPS = 1 << 48  # ... and round(sqrt(v)) up to this |eps_q| (v < 2^49)
RMS_INT32_SUM_MAX_D = ((1 << 31) - 1) // (CENTERED_MAX_ABS * CENTERED_MAX_ABS)  # sum of D xc^2 <= D 255^2 < 2^31


def _prepare_rmsnorm(st, device) -> _RmsNorm8:
    if st.mixed_precision:
        raise UnsupportedError(
            f"layer '{st.name}': RMSNorm V1 (float inside, spec 3.9) is mixed precision, not "
            f"integer; the torch bit-true back end runs V2 (calibrate --int8-rmsnorm v2)"
        )
    p = st.params
    float_stats = len(p.gain) <= RMS_FLOAT_MAX_D and abs(p.eps_q) < RMS_FLOAT_MAX_EPS
    return _RmsNorm8(as_long(p.gain, device).to(torch.int32), p.x_zp, p.y_zp, p.m0, p.shift, p.eps_q, float_stats)


def _rms_inverse(ss: torch.Tensor, d: int, eps_q: int, in_float: bool) -> torch.Tensor:
    """inv = rne_div(2^Q8, isqrt_rne(max(rne_div(ss 2^2G, d) + eps_q, 1))) (spec 3.9) per row, from the integer
    sums of squares ss <= d 255^2 (int32 / int64 [.., 1]): int64, or with in_float (d <= 2^20, |eps_q| < 2^48:
    `_RmsNorm8.float_stats`) float64 holding the same integers, each rounding exact: round(fl(a / n)) = RNE(a / n)
    for integers a, n > 0 when a / n 2^-53 < 1 / (2n) (a tie k + 1/2 is a float64; any other quotient lies
    >= 1 / (2n) from a half-integer, more than fl's error): here a / d <= 255^2 2^16 < 2^32 (error < 2^-21 <=
    1 / (2d)) and 2^24 / r (error < 2^-29 < 1 / (2r), r < 2^25); round(fl(sqrt(v))) is the nearest integer to
    sqrt(v) for v < 2^49 (no ties: sqrt(v) lies >= 1 / (8 sqrt(v) + 4) from k + 1/2, fl's error is <= sqrt(v)
    2^-53). Divisions by d 2^-2G and of 2^Q8 are the divisions of ss 2^2G by d and 2^Q8 by r (power-of-two
    scalings are exact): one pass each."""
    if in_float:
        v = ss.to(torch.float64).div_(d * 2.0 ** (-2 * RMS_EXTRA_BITS)).round_().add_(eps_q).clamp_(min=1.0)
        return torch.div(const64(float(1 << RMS_INV_BITS_INT8), ss.device), v.sqrt_().round_()).round_()
    v = torch.clamp(rne_div(ss.to(torch.int64) << (2 * RMS_EXTRA_BITS), d) + eps_q, min=1)
    return rne_div(torch.full_like(v, 1 << RMS_INV_BITS_INT8), isqrt_rne(v))


def _rmsnorm(p: _RmsNorm8, x: list[torch.Tensor]):
    """Spec 3.9 V2: xc = x - z_x; v = max(rne_div(sum xc^2 << 2G, D) + eps_q, 1);
    inv = rne_div(2^Q8, isqrt_rne(v)); y = requantize(xc g inv, m0, shift, z_y)."""
    xc = x[0] - p.x_zp  # int32: xc^2, xc g <= 2^16 * 2^7
    xg = xc * p.gain
    sum_dtype = torch.int32 if xc.shape[2] <= RMS_INT32_SUM_MAX_D else torch.int64  # sum xc^2 <= D 255^2
    inv = _rms_inverse(xc.mul_(xc).sum(dim=2, keepdim=True, dtype=sum_dtype), xc.shape[2], p.eps_q, p.float_stats)
    if p.shift > FLOAT_REQUANT_MAX_SHIFT:  # |xc g inv| < 2^31 (spec 3.9): an int32 product, then int64 (< 2^62)
        return requantize(xg.mul_(inv.to(torch.int32)), p.m0, p.shift, p.y_zp)
    acc_bound = CENTERED_MAX_ABS * 128 << RMS_INV_BITS_INT8  # |xc| <= 255, |g| <= 128, inv <= 2^Q8
    acc = xg.to(torch.float64).mul_(inv.to(torch.float64))  # (xc g) inv < 2^39: exact, the same P, one rounding
    return requantize(acc, p.m0, p.shift, p.y_zp, acc_bound=acc_bound)


TORCH8.register("rmsnorm", TorchRow(_prepare_rmsnorm, _rmsnorm))


@dataclass
class _Lut8:
    table: torch.Tensor  # int32 [256]
    clamped: torch.Tensor | None  # int32 [256] (1: the entry clamped) unless `ends` covers them, or none clamped
    ends: tuple[int, int] | None  # (lo, hi): the clamped entries are exactly the codes < lo and >= hi


def _lut(p: _Lut8, x: list[torch.Tensor]):
    """Spec 3.5: y = T[x + 128] (a gather); each read of a clamped entry counts. Clamped entries at the
    table's ends (codes < lo, >= hi: saturated activations) are counted without a gather: x clamped
    to a side's limit differs from that limit exactly where x lies beyond it (one pass per side the
    input reaches, by its min/max: the producing layer's own, `min_max`)."""
    idx = x[0] + 128
    y = lookup(p.table, idx)
    if p.ends is None:
        return y, zero_count(idx.device) if p.clamped is None else lookup(p.clamped, idx).sum()
    lo, hi = p.ends
    x_min, x_max = (int(v) for v in min_max(x[0]))
    n = zero_count(idx.device)
    if x_min < lo:  # codes < lo: clamp(x, max=lo) - lo != 0
        n = n + torch.count_nonzero(torch.clamp(x[0], max=lo).sub_(lo))
    if x_max >= hi:  # codes >= hi: clamp(x, min=hi - 1) - (hi - 1) != 0
        n = n + torch.count_nonzero(torch.clamp(x[0], min=hi - 1).sub_(hi - 1))
    return y, n


def _prepare_lut(st, device) -> _Lut8:
    p = st.params
    table = as_long(p.table, device).to(torch.int32)
    flags = np.asarray(p.clamped) != 0
    if not flags.any():
        return _Lut8(table, None, None)
    low = int(np.argmin(flags)) if not flags.all() else 256  # entries clamped from index 0 on
    high = 256 - int(np.argmin(flags[::-1])) if not flags.all() else 256
    if not flags[low:high].any():  # exactly a prefix and / or a suffix of the table
        return _Lut8(table, None, (low - 128, high - 128))
    return _Lut8(table, as_long(p.clamped, device).to(torch.int32), None)


for _op in ("sigmoid", "silu", "softplus"):
    TORCH8.register(_op, TorchRow(_prepare_lut, _lut))


SCAN_STATE_MAX_ABS = CENTERED_MAX_ABS << 8  # |S| <= 255 * 2^8 (spec 3.6: a convex mix of S and u_c << 8)


def _scan(p, x: list[torch.Tensor]):
    """Spec 3.6: lam_i = lam + 128, u_c = u - z_u; S = rne_shift(lam_i S + (256 - lam_i)(u_c << 8), 8),
    S_{-1} = 0 (never saturates); y = requantize(S, m0, shift, z_y). In float32 on exact values:
    S_t = round(a S_{t-1} + b) with a = lam_i / 256, b = (256 - lam_i) u_c = (128 - lam) u_c (int32).
    Exact: |S| <= 255 * 256 by induction (lam_i S + (256 - lam_i)(u_c << 8) <= 256 * 255 * 256 before
    the shift), so lam_i |S| <= 255 * 65280 < 2^24 and the sum, a multiple of 1/256 of magnitude
    <= 65280.5, is a float32 (256 * 65280.5 < 2^24): every product and sum is exact, fused or not.
    A loop over time only, in place: b [B, L, C] becomes the states, step t on the strided [B, C] views
    (`unbind`: one call for every view). a = 1/2 + lam / 256 in one pass from float32 codes (each value an
    exact float32); b = (128 - lam)(u - z_u) = U - a U with U = 256 (u - z_u): U from float32 codes in one pass,
    b in one more (a U = (lam + 128)(u - z_u) and U - a U are integers below 2^17: exact)."""
    lam = x[0]
    device = lam.device
    a = torch.add(const64(0.5, device), lam.to(torch.float32), alpha=1.0 / 256.0)  # float32 (a 0-d float64 adds)
    states = torch.add(const64(-256.0 * p.u_zp, device), x[1].to(torch.float32), alpha=256.0)  # U
    states.addcmul_(a, states, value=-1.0)  # b, then S in place
    prev = None
    for a_t, s_t in zip(a.unbind(1), states.unbind(1), strict=True):
        if prev is not None:  # S_0 = round(b_0) = b_0 (an integer)
            s_t.addcmul_(a_t, prev)
        prev = s_t.round_()
    return requantize(states, p.m0, p.shift, p.y_zp, acc_bound=SCAN_STATE_MAX_ABS)


@dataclass
class _S68:
    a: torch.Tensor  # int64 [E, N] per-row symmetric int8 codes
    m_a: torch.Tensor  # int64 [E, 1] decay-address multipliers
    sh_a: torch.Tensor  # int64 [E, 1] and their shifts
    d: torch.Tensor  # int64 [E] skip codes
    exp_table: torch.Tensor  # int64 [EXP_SIZE] Q1.14
    p: object  # S6Params8: zero points, output multipliers and shift


def _prepare_s6(st, device) -> _S68:
    p = st.params
    return _S68(
        as_long(p.a, device),
        as_long(p.m_a, device)[:, None],
        as_long(p.sh_a, device)[:, None],
        as_long(p.d, device),
        as_long(exp_decay_table(), device),
        p,
    )


def _s6_scan(s: _S68, x: list[torch.Tensor]):
    """Spec 3.13, in int64 (the spec's widths: address product < 2^46, state terms < 2^62 after the
    lowering's check): delta, x [B, T, E], B, C [B, T, N] (int8 codes) -> y [B, T, E]. Vectorised over
    batch, channels and states ([B, E, N] per step), a loop over time."""
    p = s.p
    last = s.exp_table.shape[0] - 1

    def step(d_t, x_t, b_t, c_t, h):
        addr = torch.clamp(rne_shift(-(d_t * s.a) * s.m_a, s.sh_a), 0, last)  # [B, E, N]
        inj = (d_t * x_t[:, :, None]) * b_t  # |inj| < 2^24
        acc = lookup(s.exp_table, addr).mul_(h).add_(inj << EXP_FRAC_BITS)
        h, n_h = saturate(rne_shift(acc, EXP_FRAC_BITS), 32)
        acc_y = (c_t * h).sum(dim=2).mul_(p.m_h).add_(s.d * x_t * p.m_k)
        y_t, n_y = saturate(rne_shift(acc_y, p.shift).add_(p.zps[4]), 8)
        return h, y_t, n_h + n_y

    centred = [t.to(torch.int64) - z for t, z in zip(x, p.zps[:4], strict=True)]  # z_d, z_x, z_B, z_C
    return s6_recurrence(*centred, s.a.shape[1], step)


TORCH8.register("s6_scan", TorchRow(_prepare_s6, _s6_scan))
TORCH8.register("scan", TorchRow(lambda st, device: st.params, _scan))


def _mul(p, x: list[torch.Tensor]):
    """Spec 3.7: y = requantize((a - z_a)(b - z_b), m0, shift, z_y); the product (< 2^17) in int32. Where the
    requantization runs in float64 (shift <= 44) the int32 product is stored straight as float64 (exact), the
    pass `requantize` would spend converting it saved."""
    a, b = x[0] - p.a_zp, x[1] - p.b_zp
    if p.shift <= FLOAT_REQUANT_MAX_SHIFT:
        acc = torch.mul(a, b, out=torch.empty(0, dtype=torch.float64, device=a.device))  # int32 product, stored
    else:
        acc = a.mul_(b)
    return requantize(acc, p.m0, p.shift, p.y_zp)


TORCH8.register("mul", TorchRow(lambda st, device: st.params, _mul))


def _add(p, x: list[torch.Tensor]):
    """Spec 3.8: sat8(rne_shift((a - z_a) m_a + (b - z_b) m_b, SH) + z_y), one rounding; float64
    on exact integers: acc = (-z_a m_a - z_b m_b) + a m_a + b m_b, every term and partial sum below
    2^41 (|z m|, |a m| <= 128 * 2^31), so exact in any order."""
    offset = const64(float(-p.a_zp * p.m_a - p.b_zp * p.m_b), x[0].device)
    acc = torch.add(offset, x[0].to(torch.float64), alpha=float(p.m_a)).add_(x[1], alpha=float(p.m_b))
    if 0 <= p.shift <= FLOAT_REQUANT_MAX_SHIFT and magic_round_fits(ADD_ACC_BOUND, 2.0**-p.shift):
        return requantize_float(acc, 2.0**-p.shift, p.y_zp, acc_bound=ADD_ACC_BOUND, mult_max=2.0**-p.shift)
    y, n = saturate(exact_float_shift(acc, p.shift, out_of_place=False).add_(p.y_zp), 8)
    return y.to(torch.int32), n


TORCH8.register("add", TorchRow(lambda st, device: st.params, _add))


def _revin_stats8(xc: torch.Tensor, eps_q: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Spec 3.11, int64, per sample and channel of xc = x - z_x [B, L, C]: mean = rne_div(s1 << G, L),
    v = max(rne_div((L s2 - s1^2) << 2G, L^2) + eps_q, 1), std = isqrt_rne(v). -> ([B, C], [B, C])."""
    length = xc.shape[1]
    s1, s2 = xc.sum(dim=1), (xc * xc).sum(dim=1)
    v = rne_div((length * s2 - s1 * s1) << (2 * REVIN_EXTRA_BITS), length * length) + eps_q
    return rne_div(s1 << REVIN_EXTRA_BITS, length), isqrt_rne(torch.clamp(v, min=1))


def _revin_norm8(p, x: list[torch.Tensor]):
    """Spec 3.11: y = requantize((((x - z_x) << G) - mean) inv, m0, shift, z_y), inv = rne_div(2^Q8, std)."""
    xc = x[0].to(torch.int64) - p.x_zp
    mean, std = _revin_stats8(xc, p.eps_q)
    inv = rne_div(torch.full_like(std, 1 << REVIN_INV_BITS_INT8), std)
    acc = ((xc << REVIN_EXTRA_BITS) - mean[:, None, :]) * inv[:, None, :]
    acc_bound = (
        2 * CENTERED_MAX_ABS << REVIN_EXTRA_BITS
    ) << REVIN_INV_BITS_INT8  # |xc - mean| <= 2 255 2^G, inv <= 2^Q8
    return requantize(acc, p.m0, p.shift, p.y_zp, acc_bound=acc_bound)


def _revin_denorm8(p, x: list[torch.Tensor]):
    """Spec 3.11: o = sat8(rne_shift((y - z_y) std m_a + mean m_b, shift) + z_o) per chunk."""
    xc = x[1].to(torch.int64) - p.x_zp
    mean, std = _revin_stats8(xc, p.eps_q)
    chunks = channel_chunks(x[0].to(torch.int64) - p.y_zp, xc.shape[2])
    acc = chunks * std[:, :, None] * p.m_a + (mean * p.m_b)[:, :, None]
    y, n = saturate(rne_shift(acc, p.shift) + p.o_zp, 8)
    return from_channel_chunks(y.to(torch.int32), x[0]), n


TORCH8.register("revin_norm", TorchRow(lambda st, device: st.params, _revin_norm8))
TORCH8.register("revin_denorm", TorchRow(lambda st, device: st.params, _revin_denorm8))
