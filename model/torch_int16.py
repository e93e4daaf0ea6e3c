"""INT16 bit-true kernels on torch tensors (docs/quant-spec.md section 2; needs the 'train' extra).

One `TorchRow` per op in `TORCH16` (this back end's registry table, intsim/ops.py), each
consuming the op's typed lowered parameters from `intsim.int16.lower_int16` (ConvParams,
RmsNormParams, LutParams, ScanParams, MulParams, AddParams): the very integers the Numba
kernels and the C++ read. Every kernel takes int32 tensors **[B, L, C]** (channels-last) holding
int16 values, any batch size, CPU or CUDA (the only Python loop is the scan's loop over time),
and returns (int32 [B, L_out, C_out] holding int16 values, saturation count).

Widths (spec 2): int16 x int16 products are int32; sums and shifts exact. Where the spec's
bounds keep every value below 2^53 the arithmetic runs in float64 on exact integers (GEMM sums,
scan, mul, add: each kernel states its bound), where rounding by `torch.round` of a
power-of-two scaling is exactly RNE; the RMSNorm product (< 2^63) is int64.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from intsim.kernels_int16 import LUT_LAST, REVIN_EXTRA_BITS, REVIN_INV_BITS, RMS_EXTRA_BITS, RMS_INV_BITS
from intsim.lut import LUT_OFFSET, exp_decay_table
from intsim.ops import BackendTable
from model.torch_fixedpoint import (
    batch_major,
    exact_float_shift,
    isqrt_rne,
    narrow,
    rne_div,
    rne_shift_,
    saturate,
    scan_steps,
    shift_round,
    time_major,
    zero_count,
)
from model.torch_mac import DenseSum, DepthwiseSum
from model.torch_rows import TorchRow, as_long, channel_chunks, from_channel_chunks, lookup, s6_recurrence

INT16_MAX_ABS = 1 << 15  # |x_q| <= 2^15 for every int16 activation

TORCH16: BackendTable[TorchRow] = BackendTable("INT16 torch bit-true")


@dataclass
class _Conv:
    mac: DenseSum | DepthwiseSum
    shift: int


def _prepare_conv(st, device) -> _Conv:
    p = st.params
    if st.op == "dwconv":
        return _Conv(DepthwiseSum.build(p.weight, p.bias, INT16_MAX_ABS, device), p.shift)
    return _Conv(DenseSum.build(p.weight, p.bias, p.stride, INT16_MAX_ABS, device), p.shift)


for _op in ("conv_kx1", "conv1x1", "dwconv"):  # spec 2.2, 2.1 (K = 1, S = 1), 2.3: exact sums, one rounding
    TORCH16.register(_op, TorchRow(_prepare_conv, lambda c, x: narrow(c.mac(x[0]), c.shift, 16)))


@dataclass
class _RmsNorm:
    gain: torch.Tensor  # int32 [D] (int16 values)
    eps_q: int
    shift: int


def _rmsnorm(p: _RmsNorm, x: list[torch.Tensor]):
    """Spec 2.4: per token ss, ms = rne_div(ss, D), v = max(ms + eps_q, 1),
    rms_q = isqrt_rne(v << 2G), inv = rne_div(2^Q, rms_q); y = sat16(rne_shift(x g inv, shift)).
    x^2 and x g in int32 (int16 x int16 <= 2^30), the sum and the product with inv in int64 (<= 2^62)."""
    xv = x[0]
    ms = rne_div((xv * xv).sum(dim=2, keepdim=True, dtype=torch.int64), xv.shape[2])
    v = torch.clamp(ms + p.eps_q, min=1)
    inv = rne_div(torch.full_like(v, 1 << RMS_INV_BITS), isqrt_rne(v << (2 * RMS_EXTRA_BITS)))
    return narrow((xv * p.gain).to(torch.int64).mul_(inv), p.shift, 16)


TORCH16.register(
    "rmsnorm",
    TorchRow(
        lambda st, device: _RmsNorm(as_long(st.params.gain, device).to(torch.int32), st.params.eps_q, st.params.shift),
        _rmsnorm,
    ),
)


@dataclass
class _Lut:
    table: torch.Tensor  # int32 [4096]
    clamped: torch.Tensor | None  # int32 [4096]: 1 where the entry saturated when built (None: no such entry)
    addr_shift: int
    identity_shift: int
    is_silu: bool


def _lut(p: _Lut, x: list[torch.Tensor]):
    """Spec 2.5/2.6 (int32: |x << 15| <= 2^30): a = shift_round(x, f_x - 8) + 2048; SiLU above
    the table is the identity sat16(shift_round(x, f_x - f_y)); otherwise table[clamp(a, 0, 4095)]
    (a gather); each read of a clamped entry counts as a saturation."""
    xv = x[0]
    addr = shift_round(xv, p.addr_shift) + LUT_OFFSET
    idx = torch.clamp(addr, 0, LUT_LAST)
    y = lookup(p.table, idx)
    above = addr > LUT_LAST if p.is_silu else None
    if above is not None and not torch.any(above):
        above = None  # no input beyond the table: no identity path
    sats = zero_count(xv.device)
    if p.clamped is not None:
        reads = lookup(p.clamped, idx)
        sats = (reads if above is None else reads.masked_fill(above, 0)).sum()
    if above is None:
        return y, sats
    ident, n_ident = saturate(torch.where(above, shift_round(xv, p.identity_shift), 0), 16)
    return torch.where(above, ident, y), sats + n_ident


def _prepare_lut(st, device) -> _Lut:
    p = st.params
    clamped = as_long(p.clamped, device).to(torch.int32) if p.clamped.any() else None
    return _Lut(as_long(p.table, device).to(torch.int32), clamped, p.addr_shift, p.identity_shift, p.is_silu)


for _op in ("sigmoid", "silu", "softplus"):  # softplus: identity above the table as SiLU (spec 2.11)
    TORCH16.register(_op, TorchRow(_prepare_lut, _lut))


@dataclass
class _S6:
    a: torch.Tensor  # int64 [E, N] Q(f_A)
    d: torch.Tensor  # int64 [E] Q(f_Dk)
    exp_table: torch.Tensor  # int64 [EXP_SIZE] Q1.14
    p: object  # S6Params: the shifts


def _prepare_s6(st, device) -> _S6:
    p = st.params
    return _S6(as_long(p.a, device), as_long(p.d, device), as_long(exp_decay_table(), device), p)


def _s6_scan(s: _S6, x: list[torch.Tensor]):
    """Spec 2.12, in int64 (every product and sum below 2^63 by the spec's widths and the lowering's
    check): delta, x [B, T, E], B, C [B, T, N] -> y [B, T, E]. Vectorised over batch, channels and
    states ([B, E, N] per step), a loop over time; one saturation count for states and outputs."""
    p = s.p
    last = s.exp_table.shape[0] - 1

    def step(d_t, x_t, b_t, c_t, h):
        addr = torch.clamp(shift_round(-(d_t * s.a), p.addr_shift), 0, last)  # [B, E, N]
        inj = (d_t * x_t[:, :, None]) * b_t  # |inj| <= 2^45
        acc = (lookup(s.exp_table, addr).mul_(h) << p.h_up).add_(inj << p.p_up)
        h, n_h = saturate(rne_shift_(acc, p.h_shift), 32)
        acc_y = ((c_t * h).sum(dim=2) << p.y_up_c).add_((s.d * x_t) << p.y_up_d)
        y_t, n_y = saturate(rne_shift_(acc_y, p.y_shift), 16)
        return h, y_t, n_h + n_y

    return s6_recurrence(*(t.to(torch.int64) for t in x), s.a.shape[1], step)


TORCH16.register("s6_scan", TorchRow(_prepare_s6, _s6_scan))


def _scan(p, x: list[torch.Tensor]):
    """Spec 2.7: s_t = sat16(rne_shift(lam s_{t-1} + (2^f_l - lam) u_al, f_l)), s_{-1} = 0,
    u_al = shift_round(u, f_u - f_s). float64 on exact integers scaled by 2^-f_l: a = lam 2^-f_l,
    b = (2^f_l - lam) u_al 2^-f_l, s_t = clamp(round(a s_{t-1} + b)); every product and sum is exact
    (|acc| < 2^47, spec 2.7, any int16 lam). Vectorised over batch and channels, a loop over time
    (`scan_steps`, time-major)."""
    lam_frac, u_shift = p
    scale = 2.0**-lam_frac
    a = time_major(x[0], torch.float64)
    b = exact_float_shift(time_major(x[1], torch.float64), u_shift, out_of_place=False)
    b.mul_(torch.sub(float(1 << lam_frac), a)).mul_(scale)
    states, n_sat = scan_steps(a.mul_(scale), b, 16)
    return batch_major(states.to(torch.int32)), n_sat


TORCH16.register("scan", TorchRow(lambda st, device: (st.params.lam_frac, st.params.u_shift), _scan))
INT32_HEADROOM = 1 << 30  # |acc| <= 2^30 and a right shift <= 30: `narrow` rounds in int32 without overflow


def _mul(shift: int, x: list[torch.Tensor]):
    """Spec 2.8: sat16(shift_round(a b, f_a + f_b - f_y)). |a b| <= 2^30: int32 for right shifts up to
    30 (`narrow`'s int32 condition), float64 otherwise (exact below 2^53, any left shift <= 22)."""
    if 0 <= shift <= 30:
        return narrow(x[0] * x[1], shift, 16)
    return narrow(x[0].to(torch.float64).mul_(x[1]), shift, 16)


def _add(p, x: list[torch.Tensor]):
    """Spec 2.9: align up to F, add, round once: a 2^a_up + b 2^b_up, |sum| <= 2^15 (2^a_up + 2^b_up)
    < 2^47. int32 when that bound is <= 2^30 and the shift right <= 30, else float64 (exact)."""
    if 2**15 * ((1 << p.a_up) + (1 << p.b_up)) <= INT32_HEADROOM and 0 <= p.shift <= 30:
        return narrow((x[0] << p.a_up).add_(x[1] << p.b_up), p.shift, 16)
    acc = x[0].to(torch.float64).mul_(float(1 << p.a_up))
    return narrow(acc.add_(x[1], alpha=float(1 << p.b_up)), p.shift, 16)


TORCH16.register("mul", TorchRow(lambda st, device: st.params.shift, _mul))
TORCH16.register("add", TorchRow(lambda st, device: st.params, _add))


def _revin_stats(x: torch.Tensor, eps_q: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Spec 2.10, int64, per sample and channel of x [B, L, C] (Q(f_x)): mean_q = rne_div(s1, L),
    v = max(rne_div(L s2 - s1^2, L^2) + eps_q, 1), std_q = isqrt_rne(v << 2G). -> ([B, C], [B, C])."""
    length = x.shape[1]
    s1, s2 = x.sum(dim=1), (x * x).sum(dim=1)
    v = torch.clamp(rne_div(length * s2 - s1 * s1, length * length) + eps_q, min=1)
    return rne_div(s1, length), isqrt_rne(v << (2 * REVIN_EXTRA_BITS))


def _revin_norm(p, x: list[torch.Tensor]):
    """Spec 2.10: y = sat16(rne_shift((x - mean_q) inv, shift)), inv = rne_div(2^Q, std_q)."""
    xv = x[0].to(torch.int64)
    mean_q, std_q = _revin_stats(xv, p.eps_q)
    inv = rne_div(torch.full_like(std_q, 1 << REVIN_INV_BITS), std_q)
    return narrow((xv - mean_q[:, None, :]) * inv[:, None, :], p.shift, 16)


def _revin_denorm(p, x: list[torch.Tensor]):
    """Spec 2.10: o = sat16(shift_round(y std_q + (mean_q << mean_up), shift)) per window channel's chunk."""
    window = x[1].to(torch.int64)
    mean_q, std_q = _revin_stats(window, p.eps_q)
    chunks = channel_chunks(x[0].to(torch.int64), window.shape[2])
    y, n = narrow(chunks * std_q[:, :, None] + (mean_q << p.mean_up)[:, :, None], p.shift, 16)
    return from_channel_chunks(y, x[0]), n


TORCH16.register("revin_norm", TorchRow(lambda st, device: st.params, _revin_norm))
TORCH16.register("revin_denorm", TorchRow(lambda st, device: st.params, _revin_denorm))
