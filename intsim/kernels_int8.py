"""INT8 integer kernels (docs/quant-spec.md section 3). Numba, integer only.

Activations are int8 with a per-tensor zero point; weights int8 symmetric per
output channel; accumulators int32 (held in int64 here, bounded < 2^31 by the
lowering's checks); requantization by integer multiplier + RNE shift (spec 3.3).
Every kernel: batched channel-major ``[B, C, L]`` in, ``(int8 y, n_saturated)`` out.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from intsim.arrays import I8Array, I16Array, I32Array, I64Array, IntArray
from intsim.fixedpoint import (
    check_rne_shift,
    isqrt_rne_fast,
    requantize,
    requantize_core,
    rne_div,
    rne_shift,
    rne_shift_core,
    saturate,
)
from intsim.kernels_int16 import (
    COL_B_OFF,
    COL_IN1,
    COL_OP,
    COL_W0,
    COL_W1,
    COL_W2,
    COL_W_OFF,
    SUB_BATCH,
    PackedKernel,
    _tensor,
    program_buffer,
    program_scratch,
    rmsnorm_scratch_size,
    scan_sample_in,
    scan_scratch_size,
    scan_views,
    step_operands,
    transpose_into,
)
from intsim.kernels_mac import (
    HAS_AVX512VNNI,
    INT32_LIMIT,
    PROD16,
    acc_bound,
    channel_requant,
    conv_quads_packed,
    conv_quads_requant,
    conv_requant,
    conv_scratch_size,
    dwconv_requant,
    dwconv_scratch_size,
    quad_weights,
    requant8_fits,
    scratch,
    tile_lanes,
    weight_cols,
)
from intsim.lut import EXP_FRAC_BITS

RMS_EXTRA_BITS = 8  # G, spec 3.9
RMS_INV_BITS_INT8 = 24  # Q8, spec 3.9
CENTERED_MAX_ABS = 255  # |x - z_x| of any int8 code: the accumulator bound's input range (spec 3.1)


REVIN_EXTRA_BITS = 8  # G, spec 3.11
REVIN_INV_BITS_INT8 = 24  # Q8, spec 3.11


@njit(cache=True)
def conv_kx1_int8(
    x: I8Array, x_zp: int, w: I8Array, b: I64Array, m0: I64Array, shift: I64Array, y_zp: int, stride: int
) -> tuple[I8Array, int]:
    """Spec 3.4. x: int8[B, C_in, L] (s_x, z_x), w: int8[C_out, C_in, K] (s_w[c]),
    b: int64[C_out] (int32 at s_x*s_w[c]), m0/shift: int64[C_out]
    -> y: int8[B, C_out, (L-K)//S+1] (s_y, z_y)."""
    w_cols = weight_cols(w)
    narrow = acc_bound(w_cols.T, b, CENTERED_MAX_ABS) <= INT32_LIMIT  # always, for lowered weights
    return conv_kx1_cols_int8(x, x_zp, w_cols, b, m0, shift, y_zp, w.shape[2], stride, narrow)


@njit(cache=True)
def conv_kx1_cols_int8(
    x: I8Array,
    x_zp: int,
    w_cols: I8Array,
    b: I64Array,
    m0: I64Array,
    shift: I64Array,
    y_zp: int,
    k_size: int,
    stride: int,
    narrow: bool,
) -> tuple[I8Array, int]:
    """Spec 3.4 with the weights as `kernels_mac.weight_cols(w)` (int8[K*C_in, C_out]); narrow:
    int32 accumulators (the lowering proves 255 * sum|w_q[c]| + |b_q[c]| <= 2^31 - 1, spec 3.1).
    The zero point is removed once as the input is read (int16 values in [-255, 255])."""
    x = np.ascontiguousarray(x)
    n_b, c_in, length = x.shape
    y = np.empty((n_b, w_cols.shape[1], (length - k_size) // stride + 1), dtype=np.int8)
    work, part32, part64, _ = scratch(conv_scratch_size(n_b, c_in, length, y.shape[1], k_size, y.shape[2]), 0)
    n_pos, c_out = n_b * y.shape[2], y.shape[1]
    small = small_scratch(n_pos * max(w_cols.shape[0], c_out) if runs_small(n_pos) else 0)
    return y, conv_int8_into(
        x, x_zp, w_cols, b, k_size, stride, m0, shift, y_zp, narrow, work, part32, part64, small, y
    )


@njit(cache=True)
def conv1x1_int8(
    x: I8Array, x_zp: int, w: I8Array, b: I64Array, m0: I64Array, shift: I64Array, y_zp: int
) -> tuple[I8Array, int]:
    """Spec 3.4. x: int8[B, C_in, L], w: int8[C_out, C_in], b/m0/shift: int64[C_out]
    -> y: int8[B, C_out, L]. The conv_kx1 sum with K = 1, S = 1 (identical arithmetic)."""
    return conv_kx1_int8(x, x_zp, w.reshape(w.shape[0], w.shape[1], 1), b, m0, shift, y_zp, 1)


@njit(cache=True)
def dwconv_int8(
    x: I8Array, x_zp: int, w: I8Array, b: I64Array, m0: I64Array, shift: I64Array, y_zp: int
) -> tuple[I8Array, int]:
    """Spec 3.4 (causal depthwise). x: int8[B, C, L], w: int8[C, K], b/m0/shift: int64[C]
    -> y: int8[B, C, L]. Padding is the real zero: x - z_x = 0."""
    x = np.ascontiguousarray(x)
    y = np.empty(x.shape, dtype=np.int8)
    row = np.empty(dwconv_scratch_size(x.shape[1], x.shape[2], w.shape[1]), np.int64)
    return y, dwconv_requant(x, x_zp, w, b, m0, shift, y_zp, 8, row, y)


@njit(cache=True)
def rmsnorm_int8(x: I8Array, x_zp: int, g: I8Array, eps_q: int, m0: int, shift: int, y_zp: int) -> tuple[I8Array, int]:
    """Spec 3.9 (V2). x: int8[B, D, L] (s_x, z_x), g: int8[D] (s_g), eps_q =
    RNE(eps / s_x^2 * 2^(2G)); (m0, shift) from s_g / s_y with shift += Q8 - G
    -> y: int8[B, D, L] (s_y, z_y)."""
    x = np.ascontiguousarray(x)
    y = np.empty(x.shape, dtype=np.int8)
    row = np.empty(rmsnorm_scratch_size(x.shape[1], x.shape[2]), np.int64)
    return y, rmsnorm_int8_into(x, x_zp, g, eps_q, m0, shift, y_zp, y, row)


@njit(cache=True)
def rmsnorm_int8_into(
    x: I8Array, x_zp: int, g: I8Array, eps_q: int, m0: int, shift: int, y_zp: int, y: I8Array, row: I64Array
) -> int:
    """`rmsnorm_int8` into y (int8[B, D, L]) -> saturations; row: int64[>= rmsnorm_scratch_size(D, L)]
    scratch. Per sample: the sums of squares of every position channel by channel, the inverse square
    roots, then the outputs as one flat loop over the sample's D*L values (as `rmsnorm_int16_into`: the
    gain spread over the channel's positions once per call, inv m0 over the channels once per sample;
    (x - z) (g inv m0) is (x - z) g inv m0 bit for bit: |g| <= 2^7, inv <= 2^Q8 = 2^24, m0 < 2^31, so
    every partial product is below 2^62). The shift checked once."""
    n_b, d, length = x.shape
    n = d * length
    check_rne_shift(shift)
    one_q = np.int64(1) << RMS_INV_BITS_INT8
    ss, inv = row[:length], row[length : 2 * length]
    gain, scale = row[2 * length : 2 * length + n], row[2 * length + n : 2 * length + 2 * n]
    for ch in range(d):
        gain[ch * length : (ch + 1) * length] = g[ch]
    nsat = 0
    for bi in range(n_b):
        ss[:] = 0
        for ch in range(d):
            xs = x[bi, ch]
            for t in range(length):
                xc = np.int64(xs[t]) - x_zp
                ss[t] += xc * xc
        for t in range(length):
            v = rne_div(ss[t] << (2 * RMS_EXTRA_BITS), d) + eps_q
            if v < 1:
                v = np.int64(1)
            inv[t] = rne_div(one_q, isqrt_rne_fast(v)) * m0
        for ch in range(d):
            scale[ch * length : (ch + 1) * length] = inv
        xs, ys = x[bi].reshape(n), y[bi].reshape(n)
        for i in range(n):
            val, s = requantize_core((np.int64(xs[i]) - x_zp) * (gain[i] * scale[i]), 1, shift, y_zp, 8)
            ys[i] = val
            nsat += s
    return nsat


@njit(cache=True)
def lut_int8(x: I8Array, table: I8Array, clamped: IntArray) -> tuple[I8Array, int]:
    """Spec 3.5. x: int8[B, C, L] -> y: int8[B, C, L] = table[x + 128] (exact 256-entry table);
    clamped[256] (nonzero: the entry saturated when the table was built): each read counts (spec 5)."""
    x = np.ascontiguousarray(x)
    y = np.empty(x.shape, dtype=np.int8)
    return y, lut_int8_into(x, table, clamped, y)


@njit(cache=True)
def lut_int8_into(x: I8Array, table: I8Array, clamped: IntArray, y: I8Array) -> int:
    """`lut_int8` into y; x, y contiguous (one flat loop) -> saturations."""
    xf, yf = x.reshape(x.size), y.reshape(y.size)
    nsat = 0
    if not np.any(clamped):  # no saturated entry (e.g. sigmoid's, lam's): one gather per value, nothing to count
        for i in range(xf.shape[0]):
            yf[i] = table[np.int64(xf[i]) + 128]
        return nsat
    for i in range(xf.shape[0]):
        k = np.int64(xf[i]) + 128
        yf[i] = table[k]
        nsat += clamped[k] != 0
    return nsat


@njit(cache=True)
def scan_int8(lam: I8Array, u: I8Array, u_zp: int, m0: int, shift: int, y_zp: int) -> tuple[I8Array, int]:
    """Spec 3.6. lam: int8[B, E, T] with the fixed format s = 1/256, z = -128;
    u: int8[B, E, T] (s_u, z_u) -> y: int8[B, E, T] (s_y, z_y). State: int32 in
    units of s_u / 256, |S| <= 255 * 256 (17 bits)."""
    y = np.empty(u.shape, dtype=np.int8)
    return y, scan_int8_into(
        lam, u, u_zp, m0, shift, y_zp, y, np.empty(scan_scratch_size(u.shape[1], u.shape[2]), np.int64)
    )


@njit(cache=True)
def scan_int8_into(
    lam: I8Array, u: I8Array, u_zp: int, m0: int, shift: int, y_zp: int, y: I8Array, row: I64Array
) -> int:
    """`scan_int8` into y (int8[B, E, T]) -> saturations; row: int64[>= scan_scratch_size] scratch.
    Time-major per sample like `kernels_int16.scan_int16_into` (every channel's step in one
    contiguous, vectorised loop)."""
    n_b, e, t_len = u.shape
    check_rne_shift(shift)
    lam_t, u_t, y_t, state = scan_views(row, e, t_len)
    nsat = 0
    for bi in range(n_b):
        scan_sample_in(lam[bi], u[bi], lam_t, u_t, state)
        for t in range(t_len):
            lt, ut, yt = lam_t[t], u_t[t], y_t[t]
            for c in range(e):
                lam_i = lt[c] + 128
                u_c = (ut[c] - u_zp) << 8
                v = rne_shift_core(lam_i * state[c] + (256 - lam_i) * u_c, 8)
                state[c] = v
                q, s = requantize_core(v, m0, shift, y_zp, 8)
                yt[c] = q
                nsat += s
        transpose_into(y_t, y[bi])
    return nsat


@njit(cache=True)
def mul_int8(a: I8Array, a_zp: int, b: I8Array, b_zp: int, m0: int, shift: int, y_zp: int) -> tuple[I8Array, int]:
    """Spec 3.7. y = requantize((a - z_a)(b - z_b)), all int8[B, C, L]."""
    a = np.ascontiguousarray(a)
    y = np.empty(a.shape, dtype=np.int8)
    return y, mul_int8_into(a, a_zp, np.ascontiguousarray(b), b_zp, m0, shift, y_zp, y)


@njit(cache=True)
def mul_int8_into(a: I8Array, a_zp: int, b: I8Array, b_zp: int, m0: int, shift: int, y_zp: int, y: I8Array) -> int:
    """`mul_int8` into y; a, b, y contiguous (one flat loop) -> saturations."""
    af, bf, yf = a.reshape(a.size), b.reshape(b.size), y.reshape(y.size)
    check_rne_shift(shift)
    nsat = 0
    for i in range(af.shape[0]):
        v, s = requantize_core((np.int64(af[i]) - a_zp) * (np.int64(bf[i]) - b_zp), m0, shift, y_zp, 8)
        yf[i] = v
        nsat += s
    return nsat


@njit(cache=True)
def add_int8(
    a: I8Array, a_zp: int, m_a: int, b: I8Array, b_zp: int, m_b: int, shift: int, y_zp: int
) -> tuple[I8Array, int]:
    """Spec 3.8. y = sat8(rne_shift((a - z_a) m_a + (b - z_b) m_b, SH) + z_y)."""
    a = np.ascontiguousarray(a)
    y = np.empty(a.shape, dtype=np.int8)
    return y, add_int8_into(a, a_zp, m_a, np.ascontiguousarray(b), b_zp, m_b, shift, y_zp, y)


@njit(cache=True)
def add_int8_into(
    a: I8Array, a_zp: int, m_a: int, b: I8Array, b_zp: int, m_b: int, shift: int, y_zp: int, y: I8Array
) -> int:
    """`add_int8` into y; a, b, y contiguous (one flat loop) -> saturations."""
    af, bf, yf = a.reshape(a.size), b.reshape(b.size), y.reshape(y.size)
    check_rne_shift(shift)
    nsat = 0
    for i in range(af.shape[0]):
        acc = (np.int64(af[i]) - a_zp) * m_a + (np.int64(bf[i]) - b_zp) * m_b
        v, s = saturate(rne_shift_core(acc, shift) + y_zp, 8)
        yf[i] = v
        nsat += s
    return nsat


# ---------------------------------------------------------------- small convolutions
SMALL_CONV_POSITIONS = 64  # a conv of fewer output positions (B * T_out: batch 1) runs as `conv_small_int8`
# (from 64 positions the tiles of kernels_mac are faster: the quads on AVX512-VNNI, else the pairs; a packed
# program's convs take the quads at every batch, their weights packed once: `pack_conv_quads`)
SMALL_POS_BLOCK = 4  # positions summed together: each weight column is read once for four


@njit(cache=True, inline="always")
def runs_small(n_pos: int) -> bool:
    """Whether a conv of n_pos output positions (B * T_out) runs as `conv_small_int8`."""
    return n_pos < SMALL_CONV_POSITIONS


@njit(cache=True)
def small_conv_scratch(steps: I64Array, lengths: I64Array, n_b: int) -> int:
    """Scratch values (`small_scratch`) `conv_small_int8` needs for the convs (code 0) of a packed INT8
    program run on n_b samples, SUB_BATCH at a time (sub-batches of min(n_b, SUB_BATCH) and the
    remainder n_b % SUB_BATCH samples): 0 when no conv is small."""
    need = 0
    for n_sub in (min(n_b, SUB_BATCH), n_b % SUB_BATCH):
        for i in range(steps.shape[0]):
            r = steps[i]
            n_pos = n_sub * lengths[i + 1]
            if r[COL_OP] == K8_CONV and runs_small(n_pos):
                need = max(need, n_pos * max(r[COL_W1] * r[COL_W2], r[COL_W0]))
    return need


@njit(cache=True, inline="always")
def mac4(acc: IntArray, o: int, wa: int, wb: int, wc: int, wd: int, v: I16Array, j: int) -> None:
    """acc[o] += wa v[j] + wb v[j+1] + wc v[j+2] + wd v[j+3]: int16 weights and window values whose
    products are exact in int16 (|w| <= 128, |x - z_x| <= 255), summed in acc's dtype."""
    cast = acc.dtype.type
    acc[o] += (
        cast(np.int16(wa * v[j]))
        + cast(np.int16(wb * v[j + 1]))
        + cast(np.int16(wc * v[j + 2]))
        + cast(np.int16(wd * v[j + 3]))
    )


@njit(cache=True, inline="always")
def mac1(acc: IntArray, o: int, w: int, v: I16Array, j: int) -> None:
    """acc[o] += w v[j] (`mac4` with one product)."""
    acc[o] += acc.dtype.type(np.int16(w * v[j]))


@njit(cache=True)
def conv_small_int8(
    x: I8Array,
    x_zp: int,
    w_cols: IntArray,
    b: I64Array,
    k_size: int,
    stride: int,
    m0: I64Array,
    sh: I64Array,
    y_zp: int,
    wins: I16Array,
    acc: I32Array,
    out: I8Array,
    y: I8Array,
) -> int:
    """Spec 3.4 for few output positions (`runs_small`; n = B * T_out), the sums of
    `kernels_mac.conv_requant` (every product exact in int16, |w| * |x - z_x| <= 128 * 255; summed
    in int32: only for layers whose bound the lowering proved, so exactly) requantized over
    the output channels (contiguous per-channel multipliers and shifts, checked once: the
    requantization vectorises). x: int8[B, C_in, L], w_cols: [K*C_in, C_out] (`weight_cols`),
    b/m0/sh: int64[C_out]; y: int8[B, C_out, T_out] -> saturations. Scratch of at least n * max(K*C_in,
    C_out) values each: wins (every position's window, zero point removed), acc, out (int8 [n, C_out])."""
    n_b, c_in, _ = x.shape
    n_win, c_out = w_cols.shape
    t_out = y.shape[2]
    n_pos = n_b * t_out
    for o in range(c_out):
        check_rne_shift(sh[o])
    for p in range(n_pos):  # window p as one contiguous row, in w_cols' row order (k * C_in + c)
        bq, tq = divmod(p, t_out)
        wp = wins[p * n_win : (p + 1) * n_win]
        for k in range(k_size):
            xk = x[bq, :, tq * stride + k]
            for c in range(c_in):
                wp[k * c_in + c] = np.int16(xk[c] - x_zp)
    n_full = n_pos - n_pos % SMALL_POS_BLOCK
    n_quad = n_win - n_win % 4  # window values four at a time: each accumulator loaded once per four products
    for p in range(n_pos):
        ap = acc[p * c_out : (p + 1) * c_out]
        for o in range(c_out):
            ap[o] = b[o]
    for p0 in range(0, n_full, SMALL_POS_BLOCK):
        a0, a1 = acc[p0 * c_out : (p0 + 1) * c_out], acc[(p0 + 1) * c_out : (p0 + 2) * c_out]
        a2, a3 = acc[(p0 + 2) * c_out : (p0 + 3) * c_out], acc[(p0 + 3) * c_out : (p0 + 4) * c_out]
        v0, v1 = wins[p0 * n_win : (p0 + 1) * n_win], wins[(p0 + 1) * n_win : (p0 + 2) * n_win]
        v2, v3 = wins[(p0 + 2) * n_win : (p0 + 3) * n_win], wins[(p0 + 3) * n_win : (p0 + 4) * n_win]
        for j in range(0, n_quad, 4):
            w_a, w_b, w_c, w_d = w_cols[j], w_cols[j + 1], w_cols[j + 2], w_cols[j + 3]
            for o in range(c_out):
                wa, wb, wc, wd = np.int16(w_a[o]), np.int16(w_b[o]), np.int16(w_c[o]), np.int16(w_d[o])
                mac4(a0, o, wa, wb, wc, wd, v0, j)
                mac4(a1, o, wa, wb, wc, wd, v1, j)
                mac4(a2, o, wa, wb, wc, wd, v2, j)
                mac4(a3, o, wa, wb, wc, wd, v3, j)
        for j in range(n_quad, n_win):
            w_j = w_cols[j]
            for o in range(c_out):
                wv = np.int16(w_j[o])
                mac1(a0, o, wv, v0, j)
                mac1(a1, o, wv, v1, j)
                mac1(a2, o, wv, v2, j)
                mac1(a3, o, wv, v3, j)
    for p in range(n_full, n_pos):  # the last positions one at a time
        ap, vp = acc[p * c_out : (p + 1) * c_out], wins[p * n_win : (p + 1) * n_win]
        for j in range(0, n_quad, 4):
            w_a, w_b, w_c, w_d = w_cols[j], w_cols[j + 1], w_cols[j + 2], w_cols[j + 3]
            for o in range(c_out):
                mac4(ap, o, np.int16(w_a[o]), np.int16(w_b[o]), np.int16(w_c[o]), np.int16(w_d[o]), vp, j)
        for j in range(n_quad, n_win):
            w_j = w_cols[j]
            for o in range(c_out):
                mac1(ap, o, np.int16(w_j[o]), vp, j)
    nsat = 0
    for p in range(n_pos):
        ap, op = acc[p * c_out : (p + 1) * c_out], out[p * c_out : (p + 1) * c_out]
        for o in range(c_out):
            v, s = requantize_core(ap[o], m0[o], sh[o], y_zp, 8)
            op[o] = v
            nsat += s
    for p in range(n_pos):
        bq, tq = divmod(p, t_out)
        op, yq = out[p * c_out : (p + 1) * c_out], y[bq]
        for o in range(c_out):
            yq[o, tq] = op[o]
    return nsat


@njit(cache=True)
def small_scratch(n: int) -> tuple[I16Array, I32Array, I8Array]:
    """`conv_small_int8`'s scratch of n values each: (wins int16, acc int32, out int8)."""
    return np.empty(n, np.int16), np.empty(n, np.int32), np.empty(n, np.int8)


@njit(cache=True)
def conv_int8_into(
    x: I8Array,
    x_zp: int,
    w_cols: IntArray,
    b: I64Array,
    k_size: int,
    stride: int,
    m0: I64Array,
    sh: I64Array,
    y_zp: int,
    narrow: bool,
    work: I16Array,
    part32: I32Array,
    part64: I64Array,
    small: tuple[I16Array, I32Array, I8Array],
    y: I8Array,
) -> int:
    """Spec 3.4 into y (int8[B, C_out, T_out]) -> saturations: with int32 sums (`narrow`: the
    lowering's proof, every lowered layer) few output positions (`runs_small`) as
    `conv_small_int8` (scratch `small`, from `small_scratch`), more as u8 x s8 quads
    (`kernels_mac.conv_quads_requant`, scratch part32) where Numba targets AVX512-VNNI and its
    requantization takes the channels' multipliers and shifts (elsewhere its loop tiles would be slower
    than the pair tiles); else `kernels_mac.conv_requant` (scratch work/part32/part64; int32 sums
    when `narrow`, else int64)."""
    if narrow and runs_small(y.shape[0] * y.shape[2]):
        wins, acc, out = small
        return conv_small_int8(x, x_zp, w_cols, b, k_size, stride, m0, sh, y_zp, wins, acc, out, y)
    if narrow and HAS_AVX512VNNI and requant8_fits(*channel_requant(m0, sh, w_cols.shape[1]), y_zp):
        return conv_quads_requant(x, x_zp, w_cols, b, k_size, stride, m0, sh, y_zp, part32, y)
    return conv_requant(x, x_zp, w_cols, b, k_size, stride, m0, sh, y_zp, 8, narrow, PROD16, work, part32, part64, y)


# ---------------------------------------------------------------- whole program
# The INT8 program packed like the INT16 one (kernels_int16: the same table columns, buffer and
# ranges; intsim/int8.py `pack_program8`), so quant8 runs in a single jitted call too. Weights,
# gains and tables are stored as int16 (the int8 codes, exact); a convolution's int64 column
# data is its bias, then m0, then shift, C_out values each.
CONV8 = PackedKernel(0, ("x_zp", "y_zp", "stride", "narrow"))  # weights as kernels_mac.weight_cols
DWCONV8 = PackedKernel(1, ("x_zp", "y_zp"))  # weights [C, K] (dims C, 1, K)
RMSNORM8 = PackedKernel(2, ("x_zp", "y_zp", "m0", "shift", "eps_q"))  # gain [D]
LUT8 = PackedKernel(3, ())  # table [256], clamped flags [256]
SCAN8 = PackedKernel(4, ("u_zp", "y_zp", "m0", "shift"))  # inputs lam, u
MUL8 = PackedKernel(5, ("a_zp", "b_zp", "y_zp", "m0", "shift"))
ADD8 = PackedKernel(6, ("a_zp", "b_zp", "y_zp", "shift", "m_a", "m_b"))
KERNELS8 = (CONV8, DWCONV8, RMSNORM8, LUT8, SCAN8, MUL8, ADD8)
C8_X_ZP, C8_Y_ZP, C8_STRIDE, C8_NARROW = (CONV8.column(n) for n in CONV8.params)
D8_X_ZP, D8_Y_ZP = (DWCONV8.column(n) for n in DWCONV8.params)
R8_X_ZP, R8_Y_ZP, R8_M0, R8_SHIFT, R8_EPS_Q = (RMSNORM8.column(n) for n in RMSNORM8.params)
S8_U_ZP, S8_Y_ZP, S8_M0, S8_SHIFT = (SCAN8.column(n) for n in SCAN8.params)
M8_A_ZP, M8_B_ZP, M8_Y_ZP, M8_M0, M8_SHIFT = (MUL8.column(n) for n in MUL8.params)
A8_A_ZP, A8_B_ZP, A8_Y_ZP, A8_SHIFT, A8_M_A, A8_M_B = (ADD8.column(n) for n in ADD8.params)
K8_CONV, K8_DWCONV, K8_RMSNORM, K8_LUT, K8_SCAN, K8_MUL = (k.code for k in KERNELS8[:6])


@njit(cache=True)
def pack_conv_quads(steps: I64Array, weights: I16Array, biases: I64Array) -> tuple[I32Array, I64Array]:
    """The quad tiles' weights of a packed INT8 program's convolutions, packed once per model: (quads
    int32[...], at int64[n_steps]); conv step i's `kernels_mac.quad_weights` at quads[at[i]:]
    (`quad_views`); at[i] = -1 for every other step and for convs the quad tiles do not take (not
    `narrow`, channels outside `requant8_fits`, or a CPU without AVX512-VNNI, where the pair tiles are
    faster): those run as `conv_int8_into`."""
    n = steps.shape[0]
    at = np.full(n, -1, np.int64)
    size = 0
    for i in range(n):
        r = steps[i]
        if r[COL_OP] != K8_CONV or r[C8_NARROW] == 0 or not HAS_AVX512VNNI:
            continue
        c_out = r[COL_W0]
        m0 = biases[r[COL_B_OFF] + c_out : r[COL_B_OFF] + 2 * c_out]
        sh = biases[r[COL_B_OFF] + 2 * c_out : r[COL_B_OFF] + 3 * c_out]
        if requant8_fits(*channel_requant(m0, sh, c_out), r[C8_Y_ZP]):
            at[i] = size
            size += tile_lanes(c_out) * (1 + (r[COL_W1] * r[COL_W2] + 3) // 4)
    quads = np.zeros(size, np.int32)
    for i in range(n):
        if at[i] >= 0:
            r = steps[i]
            c_out, n_win = r[COL_W0], r[COL_W1] * r[COL_W2]
            w_cols = weights[r[COL_W_OFF] : r[COL_W_OFF] + n_win * c_out].reshape((n_win, c_out))
            wq, bias = quad_weights(w_cols, biases[r[COL_B_OFF] : r[COL_B_OFF] + c_out], r[C8_X_ZP])
            bias_at, wq_at = quad_views(quads, at[i], c_out, n_win)
            bias_at[:] = bias
            wq_at[:] = wq
    return quads, at


@njit(cache=True)
def quad_views(quads: I32Array, at: int, c_out: int, n_win: int) -> tuple[I32Array, I32Array]:
    """(bias int32[O_pad], wq int32[ceil(n_win / 4) * O_pad]) of one conv in `pack_conv_quads`' array,
    from quads[at]: the bias first, then the weights (O_pad = `kernels_mac.tile_lanes(c_out)`)."""
    o_pad = tile_lanes(c_out)
    return quads[at : at + o_pad], quads[at + o_pad : at + o_pad * (1 + (n_win + 3) // 4)]


@njit(cache=True)
def run_program_int8(
    x: I8Array,
    steps: I64Array,
    weights: I8Array,
    biases: I64Array,
    channels: I64Array,
    lengths: I64Array,
    quads: I32Array,
    quads_at: I64Array,
) -> tuple[I8Array, I64Array, I64Array, I64Array, I64Array]:
    """Every step of a packed INT8 program in order; x: int8[B, C_in, L] at the input's
    (scale, zero point); quads, quads_at: `pack_conv_quads` of the program (the convs it packed run as
    `kernels_mac.conv_quads_packed` at any batch); the rest as `kernels_int16.run_program_int16`
    -> (buf int8[all tensors, flat], offsets, saturations, minimum, maximum)."""
    n_b = x.shape[0]
    buf, offsets, nsat = program_buffer(x, channels, lengths)
    work, part32, part64, row = program_scratch(x[:SUB_BATCH], steps, channels, lengths)
    small = small_scratch(small_conv_scratch(steps, lengths, n_b))
    for s0 in range(0, n_b, SUB_BATCH):  # the whole program per SUB_BATCH samples (cache-sized)
        s1 = min(n_b, s0 + SUB_BATCH)
        for i in range(steps.shape[0]):
            r = steps[i]
            kernel, a, w = step_operands(r, buf, offsets, channels, lengths, weights, s0, s1)
            y = _tensor(buf, offsets, channels, lengths, i + 1, s0, s1)
            c_out = r[COL_W0]
            b = biases[r[COL_B_OFF] : r[COL_B_OFF] + c_out]
            m0 = biases[r[COL_B_OFF] + c_out : r[COL_B_OFF] + 2 * c_out]
            sh = biases[r[COL_B_OFF] + 2 * c_out : r[COL_B_OFF] + 3 * c_out]
            if kernel == K8_CONV and quads_at[i] >= 0:
                bias_q, wq = quad_views(quads, quads_at[i], c_out, r[COL_W1] * r[COL_W2])
                mul, shift = channel_requant(m0, sh, c_out)
                s = conv_quads_packed(a, wq, bias_q, r[COL_W2], r[C8_STRIDE], mul, shift, r[C8_Y_ZP], part32, y)
            elif kernel == K8_CONV:
                cols = w.reshape((r[COL_W1] * r[COL_W2], c_out))
                s = conv_int8_into(
                    a,
                    r[C8_X_ZP],
                    cols,
                    b,
                    r[COL_W2],
                    r[C8_STRIDE],
                    m0,
                    sh,
                    r[C8_Y_ZP],
                    r[C8_NARROW] != 0,
                    work,
                    part32,
                    part64,
                    small,
                    y,
                )
            elif kernel == K8_DWCONV:
                s = dwconv_requant(a, r[D8_X_ZP], w.reshape((c_out, r[COL_W2])), b, m0, sh, r[D8_Y_ZP], 8, row, y)
            elif kernel == K8_RMSNORM:
                s = rmsnorm_int8_into(a, r[R8_X_ZP], w, r[R8_EPS_Q], r[R8_M0], r[R8_SHIFT], r[R8_Y_ZP], y, row)
            elif kernel == K8_LUT:
                s = lut_int8_into(a, w[:c_out], w[c_out:], y)  # the table, then its clamped flags
            else:
                c = _tensor(buf, offsets, channels, lengths, r[COL_IN1], s0, s1)
                if kernel == K8_SCAN:
                    s = scan_int8_into(a, c, r[S8_U_ZP], r[S8_M0], r[S8_SHIFT], r[S8_Y_ZP], y, row)
                elif kernel == K8_MUL:
                    s = mul_int8_into(a, r[M8_A_ZP], c, r[M8_B_ZP], r[M8_M0], r[M8_SHIFT], r[M8_Y_ZP], y)
                else:
                    s = add_int8_into(a, r[A8_A_ZP], r[A8_M_A], c, r[A8_B_ZP], r[A8_M_B], r[A8_SHIFT], r[A8_Y_ZP], y)
            nsat[i + 1] += s
    minimum, maximum = value_ranges(buf, offsets)
    return buf, offsets, nsat, minimum, maximum


@njit(cache=True)
def value_ranges(buf: IntArray, offsets: I64Array) -> tuple[I64Array, I64Array]:
    """(minimum int64[n], maximum int64[n]) of every tensor of a program buffer, as
    `kernels_int16.tensor_ranges`, both in one pass per tensor (a min/max reduction LLVM vectorises;
    array.min() and .max() are two scalar passes: 6.5 -> 1.4 us for the default model at batch 1)."""
    n_t = offsets.shape[0] - 1
    minimum = np.empty(n_t, dtype=np.int64)
    maximum = np.empty(n_t, dtype=np.int64)
    for k in range(n_t):
        part = buf[offsets[k] : offsets[k + 1]]
        if part.shape[0] == 0:  # as array.min()
            raise ValueError("zero-size array to reduction operation minimum which has no identity")
        lo, hi = part[0], part[0]
        for i in range(part.shape[0]):
            lo = min(lo, part[i])
            hi = max(hi, part[i])
        minimum[k], maximum[k] = lo, hi
    return minimum, maximum


@njit(cache=True)
def s6_scan_int8(
    delta: I8Array,
    d_zp: int,
    x: I8Array,
    x_zp: int,
    bm: I8Array,
    b_zp: int,
    cm: I8Array,
    c_zp: int,
    a: I8Array,
    m_a: I64Array,
    sh_a: I64Array,
    dk: I8Array,
    exp_table: I16Array,
    m_h: int,
    m_k: int,
    shift: int,
    y_zp: int,
) -> tuple[I8Array, int]:
    """Spec 3.13, the Mamba-1 selective scan. delta: int8[B, E, T] (s_d, z_d), x: int8[B, E, T]
    (s_x, z_x), bm: int8[B, N, T] (s_B, z_B), cm: int8[B, N, T] (s_C, z_C); a: int8[E, N] per-row
    symmetric (s_A[e]); m_a/sh_a: int64[E] the decay-address multiplier of (s_d s_A[e]) 2^8;
    dk: int8[E] (the skip D, per-tensor symmetric s_D); exp_table: int16[EXP_SIZE] Q1.14;
    m_h: the 15-bit output multiplier of the state sum, m_k the skip's at the same `shift`
    -> y: int8[B, E, T] (s_y, z_y). State: int32[E, N] in units of s_d s_B s_x per sample.
    Saturations: every clamped state value (sat32) and output value (sat8)."""
    n_b, e, t_len = x.shape
    n_st = a.shape[1]
    last = exp_table.shape[0] - 1
    y = np.empty((n_b, e, t_len), dtype=np.int8)
    h = np.zeros(n_st, dtype=np.int64)
    nsat = 0
    for bi in range(n_b):
        for ch in range(e):
            h[:] = 0
            for t in range(t_len):
                dc = np.int64(delta[bi, ch, t]) - d_zp
                xc = np.int64(x[bi, ch, t]) - x_zp
                u = dc * xc
                acc_h = np.int64(0)
                for n in range(n_st):
                    addr = rne_shift(-(dc * np.int64(a[ch, n])) * m_a[ch], sh_a[ch])
                    addr = min(max(addr, 0), last)
                    inj = u * (np.int64(bm[bi, n, t]) - b_zp)
                    v, s = saturate(
                        rne_shift(np.int64(exp_table[addr]) * h[n] + (inj << EXP_FRAC_BITS), EXP_FRAC_BITS), 32
                    )
                    h[n] = v
                    nsat += s
                    acc_h += (np.int64(cm[bi, n, t]) - c_zp) * v
                acc = acc_h * m_h + np.int64(dk[ch]) * xc * m_k
                v, s = saturate(rne_shift(acc, shift) + y_zp, 8)
                y[bi, ch, t] = v
                nsat += s
    return y, nsat


@njit(cache=True)
def revin_stats_int8(x: I8Array, x_zp: int, bi: int, ch: int, eps_q: int) -> tuple[int, int]:
    """Spec 3.11: (mean at 2^G, std at 2^G, both in units of s_x) of x[bi, ch, :] - z_x (int8 (s_x, z_x))."""
    length = np.int64(x.shape[2])
    s1 = np.int64(0)
    s2 = np.int64(0)
    for t in range(x.shape[2]):
        xc = np.int64(x[bi, ch, t]) - x_zp
        s1 += xc
        s2 += xc * xc
    mean = rne_div(s1 << REVIN_EXTRA_BITS, length)
    v = rne_div((length * s2 - s1 * s1) << (2 * REVIN_EXTRA_BITS), length * length) + eps_q
    if v < 1:
        v = np.int64(1)
    return mean, isqrt_rne_fast(v)


@njit(cache=True)
def revin_norm_int8(x: I8Array, x_zp: int, eps_q: int, m0: int, shift: int, y_zp: int) -> tuple[I8Array, int]:
    """Spec 3.11. x: int8[B, C, L] (s_x, z_x) -> y: int8[B, C, L] (s_y, z_y); (m0, shift) from
    1 / s_y with shift += Q8: (x - mean) / std per sample and channel."""
    n_b, c, length = x.shape
    y = np.empty((n_b, c, length), dtype=np.int8)
    one_q = np.int64(1) << REVIN_INV_BITS_INT8
    nsat = 0
    for bi in range(n_b):
        for ch in range(c):
            mean, std = revin_stats_int8(x, x_zp, bi, ch, eps_q)
            inv = rne_div(one_q, std)
            for t in range(length):
                xg = (np.int64(x[bi, ch, t]) - x_zp) << REVIN_EXTRA_BITS
                val, s = requantize((xg - mean) * inv, m0, shift, y_zp, 8)
                y[bi, ch, t] = val
                nsat += s
    return y, nsat


@njit(cache=True)
def revin_denorm_int8(
    y: I8Array, y_zp: int, x: I8Array, x_zp: int, eps_q: int, m_a: int, m_b: int, shift: int, o_zp: int
) -> tuple[I8Array, int]:
    """Spec 3.11. y: int8[B, R, M] (s_y, z_y) (row-major chunks of R*M/C per channel), x: int8[B, C, L]
    (s_x, z_x) the window -> o: int8[B, R, M] (s_o, z_o); shift = SH + G: y * std + mean."""
    n_b, rows, cols = y.shape
    c = x.shape[1]
    n = rows * cols // c
    o = np.empty((n_b, rows, cols), dtype=np.int8)
    nsat = 0
    for bi in range(n_b):
        for ch in range(c):
            mean, std = revin_stats_int8(x, x_zp, bi, ch, eps_q)
            for i in range(ch * n, (ch + 1) * n):
                r, m = i // cols, i % cols
                acc = (np.int64(y[bi, r, m]) - y_zp) * std * m_a + mean * m_b
                v, s = saturate(rne_shift(acc, shift) + o_zp, 8)
                o[bi, r, m] = v
                nsat += s
    return o, nsat
