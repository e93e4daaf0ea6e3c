"""INT16 integer kernels (docs/quant-spec.md section 2). Numba, integer only.

Every kernel takes batched channel-major int16 arrays ``[B, C, L]`` and returns
``(y int16[B, C_out, L_out], n_saturated int64)``. Shifts, tables and biases
are precomputed on the host (intsim/int16.py) from the calibrated formats; no
float is touched here. Loops are plain so they read beside the spec.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from intsim.arrays import F64Array, I16Array, I32Array, I64Array, IntArray
from intsim.fixedpoint import (
    check_rne_shift,
    isqrt_rne_fast,
    rne_div,
    rne_shift,
    rne_shift_core,
    saturate,
    shift_parts,
    shift_round,
    shift_round_core,
)
from intsim.kernels_mac import (
    INT32_LIMIT,
    PROD32,
    acc_bound,
    conv_requant,
    conv_scratch_size,
    dwconv_requant,
    dwconv_scratch_size,
    scratch,
    weight_cols,
)
from intsim.lut import EXP_SIZE, LUT_FRAC_BITS, LUT_OFFSET, LUT_SIZE  # noqa: F401  (LUT_FRAC_BITS: spec 2.5)

LUT_LAST = LUT_SIZE - 1
RMS_EXTRA_BITS = 8  # G, spec 2.4
RMS_INV_BITS = 40  # Q, spec 2.4
INT16_MAX_ABS = 1 << 15  # |x| of any int16 input (-32768 included): the accumulator bound's input range
REVIN_EXTRA_BITS = 8  # G, spec 2.10
REVIN_INV_BITS = 40  # Q, spec 2.10


ONE = np.ones(1, dtype=np.int64)  # the INT16 narrowing as a requantization: m0 = 1 for every channel


@njit(cache=True)
def conv_kx1_int16(x: I16Array, w: I16Array, b: I64Array, stride: int, shift: int) -> tuple[I16Array, int]:
    """Spec 2.2. x: int16[B, C_in, L] Q(f_x), w: int16[C_out, C_in, K] Q(f_w),
    b: int64[C_out] Q(f_x+f_w) -> y: int16[B, C_out, (L-K)//S+1] Q(f_x+f_w-shift)."""
    w_cols = weight_cols(w)
    narrow = acc_bound(w_cols.T, b, INT16_MAX_ABS) <= INT32_LIMIT
    return conv_kx1_cols_int16(x, w_cols, b, w.shape[2], stride, shift, narrow)


@njit(cache=True)
def conv_kx1_cols_int16(
    x: I16Array, w_cols: I16Array, b: I64Array, k_size: int, stride: int, shift: int, narrow: bool
) -> tuple[I16Array, int]:
    """Spec 2.2 with the weights as `kernels_mac.weight_cols(w)` (int16[K*C_in, C_out]);
    narrow: int32 accumulators (the caller proved every partial sum fits, `acc_bound`)."""
    x = np.ascontiguousarray(x)
    n_b, c_in, length = x.shape
    y = np.empty((n_b, w_cols.shape[1], (length - k_size) // stride + 1), dtype=np.int16)
    work, part32, part64, _ = scratch(conv_scratch_size(n_b, c_in, length, y.shape[1], k_size, y.shape[2]), 0)
    return y, conv_requant(
        x, 0, w_cols, b, k_size, stride, ONE, np.full(1, shift), 0, 16, narrow, PROD32, work, part32, part64, y
    )


@njit(cache=True)
def conv1x1_int16(x: I16Array, w: I16Array, b: I64Array, shift: int) -> tuple[I16Array, int]:
    """Spec 2.1. x: int16[B, C_in, L] Q(f_x), w: int16[C_out, C_in] Q(f_w),
    b: int64[C_out] Q(f_x+f_w) -> y: int16[B, C_out, L] Q(f_x+f_w-shift).
    The same sum as spec 2.2 with K = 1, S = 1 (identical arithmetic, one loop nest)."""
    return conv_kx1_int16(x, w.reshape(w.shape[0], w.shape[1], 1), b, 1, shift)


@njit(cache=True)
def dwconv_int16(x: I16Array, w: I16Array, b: I64Array, shift: int) -> tuple[I16Array, int]:
    """Spec 2.3 (causal). x: int16[B, C, L] Q(f_x), w: int16[C, K] Q(f_w),
    b: int64[C] Q(f_x+f_w) -> y: int16[B, C, L] Q(f_x+f_w-shift)."""
    x = np.ascontiguousarray(x)
    y = np.empty(x.shape, dtype=np.int16)
    row = np.empty(dwconv_scratch_size(x.shape[1], x.shape[2], w.shape[1]), np.int64)
    return y, dwconv_requant(x, 0, w, b, ONE, np.full(1, shift), 0, 16, row, y)


@njit(cache=True)
def rmsnorm_int16(x: I16Array, g: I16Array, eps_q: int, out_shift: int) -> tuple[I16Array, int]:
    """Spec 2.4 (V2). x: int16[B, D, L] Q(f_x), g: int16[D] Q(f_g), eps_q = RNE(eps*2^(2f_x))
    -> y: int16[B, D, L] Q(f_y), out_shift = Q + f_g - G - f_y."""
    x = np.ascontiguousarray(x)
    y = np.empty(x.shape, dtype=np.int16)
    row = np.empty(rmsnorm_scratch_size(x.shape[1], x.shape[2]), np.int64)
    return y, rmsnorm_int16_into(x, g, eps_q, out_shift, y, row)


@njit(cache=True)
def rmsnorm_scratch_size(d: int, length: int) -> int:
    """int64 values of the `row` scratch an RMSNorm of [D, L] needs (`rmsnorm_int16_into`,
    `rmsnorm_int8_into`)."""
    return 2 * length + 2 * d * length


@njit(cache=True)
def rmsnorm_int16_into(x: I16Array, g: I16Array, eps_q: int, out_shift: int, y: I16Array, row: I64Array) -> int:
    """`rmsnorm_int16` into y (int16[B, D, L]) -> saturations; row: int64[>= rmsnorm_scratch_size]
    scratch. Per sample: the sums of squares of every position channel by channel, the inverse
    square roots, then the outputs as one flat loop over the sample's D*L values (the gain spread
    over the channel's positions once per call, the inverse root over the channels once per sample:
    a long contiguous loop, vectorised; x * (g * inv) is x * g * inv bit for bit, int64 products
    wrapping alike). The shift checked once."""
    n_b, d, length = x.shape
    n = d * length
    check_rne_shift(out_shift)
    nsat = 0
    one_q = np.int64(1) << RMS_INV_BITS
    ss, inv = row[:length], row[length : 2 * length]
    gain, scale = row[2 * length : 2 * length + n], row[2 * length + n : 2 * length + 2 * n]
    for ch in range(d):
        gain[ch * length : (ch + 1) * length] = g[ch]
    for bi in range(n_b):
        ss[:] = 0
        for ch in range(d):
            xs = x[bi, ch]
            for t in range(length):
                xv = np.int64(xs[t])
                ss[t] += xv * xv
        for t in range(length):
            v = rne_div(ss[t], d) + eps_q
            if v < 1:
                v = np.int64(1)
            inv[t] = rne_div(one_q, isqrt_rne_fast(v << (2 * RMS_EXTRA_BITS)))
        for ch in range(d):
            scale[ch * length : (ch + 1) * length] = inv
        xs, ys = x[bi].reshape(n), y[bi].reshape(n)
        for i in range(n):
            val, s = saturate(rne_shift_core(np.int64(xs[i]) * (gain[i] * scale[i]), out_shift), 16)
            ys[i] = val
            nsat += s
    return nsat


@njit(cache=True)
def lut_int16(
    x: I16Array, table: I16Array, addr_shift: int, is_silu: bool, identity_shift: int, clamped: IntArray
) -> tuple[I16Array, int]:
    """Spec 2.5/2.6. x: int16[B, C, L] Q(f_x) -> y: int16[B, C, L] Q(f_y) by table[4096].
    addr_shift = f_x - 8; identity_shift = f_x - f_y (SiLU above the range); clamped[4096]
    (nonzero: the entry saturated when the table was built): each read of one counts (spec 5)."""
    x = np.ascontiguousarray(x)
    y = np.empty(x.shape, dtype=np.int16)
    return y, lut_int16_into(x, table, addr_shift, is_silu, identity_shift, clamped, y)


@njit(cache=True)
def lut_int16_into(
    x: I16Array, table: I16Array, addr_shift: int, is_silu: bool, identity_shift: int, clamped: IntArray, y: I16Array
) -> int:
    """`lut_int16` into y; x, y contiguous (element-wise: one flat loop) -> saturations."""
    xf = x.reshape(x.size)
    yf = y.reshape(y.size)
    a_up, a_down = shift_parts(addr_shift)
    i_up, i_down = shift_parts(identity_shift)
    nsat = 0
    for i in range(xf.shape[0]):
        v, s = lut_int16_value(np.int64(xf[i]), table, a_up, a_down, is_silu, i_up, i_down, clamped)
        yf[i] = v
        nsat += s
    return nsat


@njit(cache=True, inline="always")
def lut_int16_value(
    xv: int, table: I16Array, a_up: int, a_down: int, is_silu: bool, i_up: int, i_down: int, clamped: IntArray
) -> tuple[int, bool]:
    """Spec 2.5/2.6 for one input: (y, saturated); shifts as `shift_parts(addr_shift)` and
    `shift_parts(identity_shift)`."""
    a = shift_round_core(xv, a_up, a_down) + LUT_OFFSET
    if a > LUT_LAST:
        if is_silu:
            return saturate(shift_round_core(xv, i_up, i_down), 16)
        a = LUT_LAST
    elif a < 0:
        a = 0
    return table[a], clamped[a] != 0


INT16_CODES = 1 << 16  # every int16 input: the whole-input map of an INT16 LUT layer


@njit(cache=True)
def lut_int16_map(
    table: I16Array, addr_shift: int, is_silu: bool, identity_shift: int, clamped: IntArray
) -> tuple[I16Array, I16Array]:
    """The LUT layer's result for every int16 input, by `lut_int16_value` itself (the same integers):
    (y int16[65536], saturated int16[65536] 0/1), index x + 32768. The whole-program interpreter
    reads these (`lut_int16_mapped`): one load per value instead of the address arithmetic."""
    y = np.empty(INT16_CODES, np.int16)
    sat = np.empty(INT16_CODES, np.int16)
    a_up, a_down = shift_parts(addr_shift)
    i_up, i_down = shift_parts(identity_shift)
    for k in range(INT16_CODES):
        y[k], sat[k] = lut_int16_value(np.int64(k - INT16_MAX_ABS), table, a_up, a_down, is_silu, i_up, i_down, clamped)
    return y, sat


@njit(cache=True)
def lut_int16_mapped(x: I16Array, y_map: I16Array, sat_map: I16Array, y: I16Array) -> int:
    """`lut_int16_into` through `lut_int16_map`'s arrays; x, y contiguous -> saturations."""
    xf = x.reshape(x.size)
    yf = y.reshape(y.size)
    nsat = 0
    for i in range(xf.shape[0]):
        k = np.int64(xf[i]) + INT16_MAX_ABS
        yf[i] = y_map[k]
        nsat += sat_map[k]
    return nsat


@njit(cache=True)
def scan_int16(lam: I16Array, u: I16Array, lam_frac: int, u_shift: int) -> tuple[I16Array, int]:
    """Spec 2.7. lam: int16[B, E, T] Q(f_l) in [0, 2^f_l], u: int16[B, E, T] Q(f_u)
    -> s: int16[B, E, T] Q(f_s); u_shift = f_u - f_s. One rounding per step."""
    y = np.empty(u.shape, dtype=np.int16)
    row = np.empty(scan_scratch_size(u.shape[1], u.shape[2]), np.int64)
    return y, scan_int16_into(lam, u, lam_frac, u_shift, y, row)


@njit(cache=True)
def scan_scratch_size(e: int, t_len: int) -> int:
    """int64 values of the `row` scratch a scan of [E, T] needs (`scan_int16_into`, `scan_int8_into`)."""
    return 3 * e * t_len + e


@njit(cache=True)
def scan_views(row: I64Array, e: int, t_len: int) -> tuple[I64Array, I64Array, I64Array, I64Array]:
    """A scan's scratch (`scan_scratch_size` values of row) as (lam [T, E], u [T, E], out [T, E],
    state [E]); the state is its own array (a view of out would alias it: no vectorising)."""
    n = e * t_len
    lam_t, u_t = row[:n].reshape((t_len, e)), row[n : 2 * n].reshape((t_len, e))
    return lam_t, u_t, row[2 * n : 3 * n].reshape((t_len, e)), row[3 * n : 3 * n + e]


@njit(cache=True)
def scan_sample_in(lam: IntArray, u: IntArray, lam_t: I64Array, u_t: I64Array, state: I64Array) -> None:
    """One sample's scan inputs lam, u int[E, T] time-major into lam_t, u_t ([T, E]); the state zeroed."""
    transpose_into(lam, lam_t)
    transpose_into(u, u_t)
    state[:] = 0


@njit(cache=True)
def transpose_into(src: IntArray, dst: IntArray) -> None:
    """dst[i, j] = src[j, i], written row by row (dst contiguous innermost): a scan's inputs int[C, T]
    into time-major int64[T, C] (channels contiguous per step) and its result back into int[C, T]."""
    for i in range(dst.shape[0]):
        row = dst[i]
        for j in range(dst.shape[1]):
            row[j] = src[j, i]


@njit(cache=True)
def scan_int16_into(lam: I16Array, u: I16Array, lam_frac: int, u_shift: int, y: I16Array, row: I64Array) -> int:
    """`scan_int16` into y (int16[B, E, T]) -> saturations; row: int64[>= scan_scratch_size] scratch.
    Per sample lam and u are read time-major ([T, E]), so each step updates every channel in one
    contiguous loop (independent recurrences side by side: vectorised), then written back."""
    n_b, e, t_len = u.shape
    check_rne_shift(lam_frac)
    up, down = shift_parts(u_shift)
    lam_t, u_t, s_t, prev = scan_views(row, e, t_len)
    one = np.int64(1) << lam_frac
    nsat = 0
    for bi in range(n_b):
        scan_sample_in(lam[bi], u[bi], lam_t, u_t, prev)
        for t in range(t_len):
            lt, ut, st = lam_t[t], u_t[t], s_t[t]
            for c in range(e):
                acc = lt[c] * prev[c] + (one - lt[c]) * shift_round_core(ut[c], up, down)
                v, s = saturate(rne_shift_core(acc, lam_frac), 16)
                prev[c] = v
                st[c] = v
                nsat += s
        transpose_into(s_t, y[bi])
    return nsat


@njit(cache=True)
def mul_int16(a: I16Array, b: I16Array, shift: int) -> tuple[I16Array, int]:
    """Spec 2.8. a: int16 Q(f_a), b: int16 Q(f_b) -> y: int16 Q(f_a+f_b-shift), [B, C, L]."""
    a = np.ascontiguousarray(a)
    y = np.empty(a.shape, dtype=np.int16)
    return y, mul_int16_into(a, np.ascontiguousarray(b), shift, y)


@njit(cache=True)
def mul_int16_into(a: I16Array, b: I16Array, shift: int, y: I16Array) -> int:
    """`mul_int16` into y; a, b, y contiguous (one flat loop) -> saturations."""
    af, bf, yf = a.reshape(a.size), b.reshape(b.size), y.reshape(y.size)
    up, down = shift_parts(shift)
    nsat = 0
    for i in range(af.shape[0]):
        v, s = saturate(shift_round_core(np.int64(af[i]) * np.int64(bf[i]), up, down), 16)
        yf[i] = v
        nsat += s
    return nsat


@njit(cache=True)
def add_int16(a: I16Array, b: I16Array, a_up: int, b_up: int, shift: int) -> tuple[I16Array, int]:
    """Spec 2.9. a: Q(f_a), b: Q(f_b) -> y: Q(F - shift); a_up = F - f_a, b_up = F - f_b."""
    a = np.ascontiguousarray(a)
    y = np.empty(a.shape, dtype=np.int16)
    return y, add_int16_into(a, np.ascontiguousarray(b), a_up, b_up, shift, y)


@njit(cache=True)
def add_int16_into(a: I16Array, b: I16Array, a_up: int, b_up: int, shift: int, y: I16Array) -> int:
    """`add_int16` into y; a, b, y contiguous (one flat loop) -> saturations."""
    af, bf, yf = a.reshape(a.size), b.reshape(b.size), y.reshape(y.size)
    up, down = shift_parts(shift)
    nsat = 0
    for i in range(af.shape[0]):
        acc = (np.int64(af[i]) << a_up) + (np.int64(bf[i]) << b_up)
        v, s = saturate(shift_round_core(acc, up, down), 16)
        yf[i] = v
        nsat += s
    return nsat


@njit(cache=True)
def s6_scan_int16(
    delta: I16Array,
    x: I16Array,
    bm: I16Array,
    cm: I16Array,
    a: I16Array,
    d: I16Array,
    exp_table: I16Array,
    addr_shift: int,
    h_up: int,
    p_up: int,
    h_shift: int,
    y_up_c: int,
    y_up_d: int,
    y_shift: int,
) -> tuple[I16Array, int]:
    """Spec 2.12, the Mamba-1 selective scan. delta: int16[B, E, T] Q(f_d), x: int16[B, E, T] Q(f_x),
    bm: int16[B, N, T] Q(f_B), cm: int16[B, N, T] Q(f_C), a: int16[E, N] Q(f_A) (A <= 0),
    d: int16[E] Q(f_D), exp_table: int16[EXP_SIZE] Q1.14 -> y: int16[B, E, T] Q(f_y).
    State h: int32[E, N] Q(f_h) per sample. Shifts from the host (int16.py): addr_shift = f_d + f_A - 8,
    h_up, p_up, h_shift (state update), y_up_c, y_up_d, y_shift (output). Saturations: every
    clamped state value (sat32) and output value (sat16)."""
    y = np.empty(x.shape, dtype=np.int16)
    return y, s6_scan_int16_into(
        delta, x, bm, cm, a, d, exp_table, addr_shift, h_up, p_up, h_shift, y_up_c, y_up_d, y_shift, y
    )


@njit(cache=True)
def s6_scan_int16_into(
    delta: I16Array,
    x: I16Array,
    bm: I16Array,
    cm: I16Array,
    a: I16Array,
    d: I16Array,
    exp_table: I16Array,
    addr_shift: int,
    h_up: int,
    p_up: int,
    h_shift: int,
    y_up_c: int,
    y_up_d: int,
    y_shift: int,
    y: I16Array,
) -> int:
    """`s6_scan_int16` into y (int16[B, E, T]) -> saturations."""
    n_b, e, t_len = x.shape
    n_st = a.shape[1]
    last = exp_table.shape[0] - 1
    h = np.zeros(n_st, dtype=np.int64)
    nsat = 0
    for bi in range(n_b):
        for ch in range(e):
            h[:] = 0
            for t in range(t_len):
                dv = np.int64(delta[bi, ch, t])
                xv = np.int64(x[bi, ch, t])
                u = dv * xv
                acc_c = np.int64(0)
                for n in range(n_st):
                    addr = shift_round(-(dv * np.int64(a[ch, n])), addr_shift)
                    addr = min(max(addr, 0), last)
                    d_a = np.int64(exp_table[addr])
                    acc = ((d_a * h[n]) << h_up) + ((u * np.int64(bm[bi, n, t])) << p_up)
                    v, s = saturate(rne_shift(acc, h_shift), 32)
                    h[n] = v
                    nsat += s
                    acc_c += np.int64(cm[bi, n, t]) * v
                acc_y = (acc_c << y_up_c) + ((np.int64(d[ch]) * xv) << y_up_d)
                v, s = saturate(rne_shift(acc_y, y_shift), 16)
                y[bi, ch, t] = v
                nsat += s
    return nsat


@njit(cache=True)
def revin_stats_int16(x: I16Array, bi: int, ch: int, eps_q: int) -> tuple[int, int]:
    """Spec 2.10: (mean_q at Q(f_x), std_q at Q(f_x + G)) of x[bi, ch, :] (int16 Q(f_x))."""
    length = np.int64(x.shape[2])
    s1 = np.int64(0)
    s2 = np.int64(0)
    for t in range(x.shape[2]):
        xv = np.int64(x[bi, ch, t])
        s1 += xv
        s2 += xv * xv
    mean_q = rne_div(s1, length)
    v = rne_div(length * s2 - s1 * s1, length * length) + eps_q
    if v < 1:
        v = np.int64(1)
    return mean_q, isqrt_rne_fast(v << (2 * REVIN_EXTRA_BITS))


@njit(cache=True)
def revin_norm_int16(x: I16Array, eps_q: int, shift: int) -> tuple[I16Array, int]:
    """Spec 2.10. x: int16[B, C, L] Q(f_x), eps_q = RNE(eps 2^(2 f_x))
    -> y: int16[B, C, L] Q(f_y), shift = Q - G - f_y: (x - mean) / std per sample and channel."""
    y = np.empty(x.shape, dtype=np.int16)
    return y, revin_norm_int16_into(x, eps_q, shift, y)


@njit(cache=True)
def revin_norm_int16_into(x: I16Array, eps_q: int, shift: int, y: I16Array) -> int:
    """`revin_norm_int16` into y (int16[B, C, L]) -> saturations."""
    n_b, c, length = x.shape
    one_q = np.int64(1) << REVIN_INV_BITS
    nsat = 0
    for bi in range(n_b):
        for ch in range(c):
            mean_q, std_q = revin_stats_int16(x, bi, ch, eps_q)
            inv = rne_div(one_q, std_q)
            for t in range(length):
                v, s = saturate(rne_shift((np.int64(x[bi, ch, t]) - mean_q) * inv, shift), 16)
                y[bi, ch, t] = v
                nsat += s
    return nsat


@njit(cache=True)
def revin_denorm_int16(y: I16Array, x: I16Array, eps_q: int, mean_up: int, shift: int) -> tuple[I16Array, int]:
    """Spec 2.10. y: int16[B, R, M] Q(f_y) (R*M = C*n, row-major chunks of n per channel),
    x: int16[B, C, L] Q(f_x) the window -> o: int16[B, R, M] Q(f_o); mean_up = f_y + G,
    shift = f_y + f_x + G - f_o: y * std + mean per sample and channel."""
    o = np.empty(y.shape, dtype=np.int16)
    return o, revin_denorm_int16_into(y, x, eps_q, mean_up, shift, o)


@njit(cache=True)
def revin_denorm_int16_into(y: I16Array, x: I16Array, eps_q: int, mean_up: int, shift: int, o: I16Array) -> int:
    """`revin_denorm_int16` into o (int16[B, R, M]) -> saturations."""
    n_b, rows, cols = y.shape
    c = x.shape[1]
    n = rows * cols // c
    nsat = 0
    for bi in range(n_b):
        for ch in range(c):
            mean_q, std_q = revin_stats_int16(x, bi, ch, eps_q)
            for i in range(ch * n, (ch + 1) * n):
                r, m = i // cols, i % cols
                acc = np.int64(y[bi, r, m]) * std_q + (mean_q << mean_up)
                v, s = saturate(shift_round(acc, shift), 16)
                o[bi, r, m] = v
                nsat += s
    return nsat


# ---------------------------------------------------------------- whole program
# A lowered program (intsim/int16.py `pack_program`) as one table row per step, so the whole
# network runs in a single jitted call (no Python dispatch per layer). Fixed columns: kernel
# code, input tensors, weight/bias offsets and dims; then each kernel's own parameters in the
# columns its PackedKernel names (the INT16 registry row of an op packs them by name).
(COL_OP, COL_IN0, COL_IN1, COL_W_OFF, COL_W0, COL_W1, COL_W2, COL_B_OFF, COL_PARAMS) = range(9)
N_PARAM_COLS = 9  # the most any kernel names (S6: 2 extra inputs + 7)
N_COLS = COL_PARAMS + N_PARAM_COLS


@dataclass(frozen=True)
class PackedKernel:
    """One kernel of the whole-program interpreter: its code and its named parameter columns.
    `extra_inputs`: columns (first in the parameter block) holding the tensor indices of the
    inputs after the second; `pack_program` fills them from the step's inputs."""

    code: int
    params: tuple[str, ...]
    extra_inputs: tuple[str, ...] = ()

    def column(self, name: str) -> int:
        return COL_PARAMS + (self.extra_inputs + self.params).index(name)


CONV = PackedKernel(0, ("shift", "stride", "narrow"))  # weights as kernels_mac.weight_cols: [K*C_in, C_out]
DWCONV = PackedKernel(1, ("shift",))  # weights [C, K] (dims C, 1, K)
RMSNORM = PackedKernel(2, ("shift", "eps_q"))  # gain [D] (dims D, 1, 1)
LUT = PackedKernel(3, ("addr_shift", "identity_shift", "is_silu"))  # lut_int16_map: y [65536], flags [65536]
SCAN = PackedKernel(4, ("lam_frac", "u_shift"))  # second input: u
MUL = PackedKernel(5, ("shift",))
ADD = PackedKernel(6, ("a_up", "b_up", "shift"))
REVIN_NORM = PackedKernel(7, ("shift", "eps_q"))
REVIN_DENORM = PackedKernel(8, ("mean_up", "shift", "eps_q"))  # second input: the window x
# inputs delta (IN0), x (IN1), B and C (tensor indices in_b, in_c); weights rows [A[e, :], D[e]]
# (dims E, N + 1, 1) followed by the EXP_SIZE decay table
S6 = PackedKernel(9, ("addr_shift", "h_up", "p_up", "h_shift", "y_up_c", "y_up_d", "y_shift"), ("in_b", "in_c"))
KERNELS = (CONV, DWCONV, RMSNORM, LUT, SCAN, MUL, ADD, REVIN_NORM, REVIN_DENORM, S6)
# the same as compile-time integers for the jitted interpreter
CONV_SHIFT, CONV_STRIDE, CONV_NARROW = (CONV.column(n) for n in CONV.params)
DWCONV_SHIFT = DWCONV.column("shift")
RMSNORM_SHIFT, RMSNORM_EPS_Q = RMSNORM.column("shift"), RMSNORM.column("eps_q")
LUT_ADDR_SHIFT, LUT_IDENTITY_SHIFT, LUT_IS_SILU = (LUT.column(n) for n in LUT.params)
SCAN_LAM_FRAC, SCAN_U_SHIFT = SCAN.column("lam_frac"), SCAN.column("u_shift")
MUL_SHIFT = MUL.column("shift")
ADD_A_UP, ADD_B_UP, ADD_SHIFT = (ADD.column(n) for n in ADD.params)
K_S6 = S6.code
N_S6_COLS = len(S6.extra_inputs) + len(S6.params)
REVIN_NORM_SHIFT, REVIN_NORM_EPS_Q = REVIN_NORM.column("shift"), REVIN_NORM.column("eps_q")
REVIN_DENORM_MEAN_UP, REVIN_DENORM_SHIFT, REVIN_DENORM_EPS_Q = (REVIN_DENORM.column(n) for n in REVIN_DENORM.params)
K_CONV, K_DWCONV, K_RMSNORM, K_LUT, K_SCAN, K_MUL, K_ADD, K_REVIN_NORM = (k.code for k in KERNELS[:8])


SUB_BATCH = 64  # samples per pass of a whole program over its steps: the pass's tensors stay in cache


@njit(cache=True)
def _tensor(buf, offsets, channels, lengths, k, s0, s1):
    """Samples s0:s1 of tensor k of a program buffer as [s1 - s0, C, L]."""
    size = channels[k] * lengths[k]
    start = offsets[k] + s0 * size
    return buf[start : start + (s1 - s0) * size].reshape((s1 - s0, channels[k], lengths[k]))


@njit(cache=True)
def program_buffer(x: IntArray, channels: I64Array, lengths: I64Array) -> tuple[IntArray, I64Array, I64Array]:
    """The one flat buffer of every tensor of a packed program (dtype of x), the input copied
    in: -> (buf, offsets int64[n + 2], saturations int64[n + 1] zeroed); tensor k is
    buf[offsets[k]:offsets[k+1]]."""
    n_b = x.shape[0]
    n_t = channels.shape[0]
    offsets = np.zeros(n_t + 1, dtype=np.int64)
    for k in range(n_t):
        offsets[k + 1] = offsets[k] + n_b * channels[k] * lengths[k]
    buf = np.empty(offsets[n_t], dtype=x.dtype)
    buf[: offsets[1]] = x.ravel()
    return buf, offsets, np.zeros(n_t, dtype=np.int64)


@njit(cache=True)
def step_operands(
    r: I64Array,
    buf: IntArray,
    offsets: I64Array,
    channels: I64Array,
    lengths: I64Array,
    weights: IntArray,
    s0: int,
    s1: int,
) -> tuple[int, IntArray, IntArray]:
    """(kernel code, first input [s1 - s0, C, L] (samples s0:s1), the step's slice of the weights)
    of table row r."""
    w = weights[r[COL_W_OFF] : r[COL_W_OFF] + r[COL_W0] * r[COL_W1] * r[COL_W2]]
    return r[COL_OP], _tensor(buf, offsets, channels, lengths, r[COL_IN0], s0, s1), w


@njit(cache=True)
def tensor_ranges(buf: IntArray, offsets: I64Array) -> tuple[I64Array, I64Array]:
    """(minimum int64[n], maximum int64[n]) of every tensor of a program buffer (each non-empty): one
    pass per tensor in its own width (both reductions in one vectorised loop)."""
    n_t = offsets.shape[0] - 1
    minimum = np.empty(n_t, dtype=np.int64)
    maximum = np.empty(n_t, dtype=np.int64)
    for k in range(n_t):
        part = buf[offsets[k] : offsets[k + 1]]
        lo = hi = part[0]
        for i in range(part.shape[0]):
            lo = min(lo, part[i])
            hi = max(hi, part[i])
        minimum[k], maximum[k] = lo, hi
    return minimum, maximum


@njit(cache=True)
def program_scratch(
    x: IntArray, steps: I64Array, channels: I64Array, lengths: I64Array
) -> tuple[I16Array, I32Array, I64Array, I64Array]:
    """The scratch every layer of a packed program reuses (kernels_mac.scratch), sized for the
    largest conv (`conv_scratch_size`, which `conv_requant` checks; code 0 in both precisions) of a
    batch of x.shape[0] samples, the largest dwconv (`dwconv_scratch_size`; code 1 in both) scan
    (`scan_scratch_size`; code 4 in both) and RMSNorm (`rmsnorm_scratch_size`; code 2 in both)."""
    n_b = x.shape[0]
    need = 0
    n_row = 0
    for i in range(steps.shape[0]):
        r = steps[i]
        if r[COL_OP] == K_CONV:
            k_in = r[COL_IN0]
            need = max(
                need, conv_scratch_size(n_b, channels[k_in], lengths[k_in], r[COL_W0], r[COL_W2], lengths[i + 1])
            )
        elif r[COL_OP] == K_DWCONV:
            n_row = max(n_row, dwconv_scratch_size(r[COL_W0], lengths[i + 1], r[COL_W2]))
        elif r[COL_OP] == K_SCAN:
            n_row = max(n_row, scan_scratch_size(channels[i + 1], lengths[i + 1]))
        elif r[COL_OP] == K_RMSNORM:
            n_row = max(n_row, rmsnorm_scratch_size(channels[i + 1], lengths[i + 1]))
    return scratch(need, n_row)


@njit(cache=True)
def quantize_input(xf: F64Array, mul: float, div: float, zp: int, lo: int, hi: int, out: IntArray) -> int:
    """Host-side input quantization in one pass (intsim/fixedpoint.quantize_q: mul = 2^f, div = 1,
    zp = 0; intsim/int8.quantize_act: mul = 1, div = s, zp = z): out = clamp(RNE(xf * mul / div) + zp,
    lo, hi), the same float operations, so the same codes -> saturations (values outside [lo, hi]).
    xf: finite float64 [B, C, L]; out: int16/int8 of the same shape."""
    xs, ys = xf.reshape(xf.size), out.reshape(out.size)
    nsat = 0
    for i in range(xs.shape[0]):
        v = np.rint(xs[i] * mul / div) + zp
        if v > hi:
            v = hi
            nsat += 1
        elif v < lo:
            v = lo
            nsat += 1
        ys[i] = np.int64(v)
    return nsat


@njit(cache=True)
def run_program_int16(
    x: I16Array, steps: I64Array, weights: I16Array, biases: I64Array, channels: I64Array, lengths: I64Array
) -> tuple[I16Array, I64Array, I64Array, I64Array, I64Array]:
    """Every step of a packed program in order. x: int16[B, C_in, L] at the input format;
    steps: int64[n, N_COLS]; weights: int16[...] (weights, gains, tables, flat);
    biases: int64[...]; channels/lengths: int64[n + 1] per-sample shape of tensor k
    (k = 0 the input, k = i + 1 the output of step i).
    -> (buf int16[all tensors, flat], offsets int64[n + 2], saturations int64[n + 1],
        minimum int64[n + 1], maximum int64[n + 1]); tensor k is
    buf[offsets[k]:offsets[k+1]] as [B, channels[k], lengths[k]].
    Every kernel writes its output straight into its slice of buf; the conv scratch is allocated
    once per call (no allocation per layer). The batch runs SUB_BATCH samples at a time through
    every step (every kernel is batch-invariant bit for bit; saturations summed), so a large
    batch's working set stays the size of one sub-batch's tensors."""
    n_b = x.shape[0]
    buf, offsets, nsat = program_buffer(x, channels, lengths)
    work, part32, part64, row = program_scratch(x[:SUB_BATCH], steps, channels, lengths)
    shift1 = np.empty(1, dtype=np.int64)
    for s0 in range(0, n_b, SUB_BATCH):  # the whole program per SUB_BATCH samples (cache-sized)
        s1 = min(n_b, s0 + SUB_BATCH)
        for i in range(steps.shape[0]):
            r = steps[i]
            kernel, a, w = step_operands(r, buf, offsets, channels, lengths, weights, s0, s1)
            b = biases[r[COL_B_OFF] : r[COL_B_OFF] + r[COL_W0]]
            y = _tensor(buf, offsets, channels, lengths, i + 1, s0, s1)
            if kernel == K_CONV:
                shift1[0] = r[CONV_SHIFT]
                s = conv_requant(
                    a,
                    0,
                    w.reshape((r[COL_W1] * r[COL_W2], r[COL_W0])),
                    b,
                    r[COL_W2],
                    r[CONV_STRIDE],
                    ONE,
                    shift1,
                    0,
                    16,
                    r[CONV_NARROW] != 0,
                    PROD32,
                    work,
                    part32,
                    part64,
                    y,
                )
            elif kernel == K_DWCONV:
                shift1[0] = r[DWCONV_SHIFT]
                s = dwconv_requant(a, 0, w.reshape((r[COL_W0], r[COL_W2])), b, ONE, shift1, 0, 16, row, y)
            elif kernel == K_RMSNORM:
                s = rmsnorm_int16_into(a, w, r[RMSNORM_EPS_Q], r[RMSNORM_SHIFT], y, row)
            elif kernel == K_LUT:
                # weights: the layer's map of every int16 input, then its saturation flags (lut_int16_map)
                s = lut_int16_mapped(a, w[: r[COL_W0]], w[r[COL_W0] :], y)
            elif kernel == K_S6:
                n_rows, width = r[COL_W0], r[COL_W1]  # E, N + 1
                blob = weights[r[COL_W_OFF] : r[COL_W_OFF] + n_rows * width + EXP_SIZE]
                ad = blob[: n_rows * width].reshape((n_rows, width))
                p = r[COL_PARAMS : COL_PARAMS + N_S6_COLS]
                s = s6_scan_int16_into(
                    a,
                    _tensor(buf, offsets, channels, lengths, r[COL_IN1], s0, s1),
                    _tensor(buf, offsets, channels, lengths, p[0], s0, s1),
                    _tensor(buf, offsets, channels, lengths, p[1], s0, s1),
                    ad[:, : width - 1],
                    ad[:, width - 1],
                    blob[n_rows * width :],
                    p[2],
                    p[3],
                    p[4],
                    p[5],
                    p[6],
                    p[7],
                    p[8],
                    y,
                )
            elif kernel == K_REVIN_NORM:
                s = revin_norm_int16_into(a, r[REVIN_NORM_EPS_Q], r[REVIN_NORM_SHIFT], y)
            else:
                c = _tensor(buf, offsets, channels, lengths, r[COL_IN1], s0, s1)
                if kernel == K_SCAN:
                    s = scan_int16_into(a, c, r[SCAN_LAM_FRAC], r[SCAN_U_SHIFT], y, row)
                elif kernel == K_MUL:
                    s = mul_int16_into(a, c, r[MUL_SHIFT], y)
                elif kernel == K_ADD:
                    s = add_int16_into(a, c, r[ADD_A_UP], r[ADD_B_UP], r[ADD_SHIFT], y)
                else:
                    s = revin_denorm_int16_into(
                        a, c, r[REVIN_DENORM_EPS_Q], r[REVIN_DENORM_MEAN_UP], r[REVIN_DENORM_SHIFT], y
                    )
            nsat[i + 1] += s
    minimum, maximum = tensor_ranges(buf, offsets)
    return buf, offsets, nsat, minimum, maximum
