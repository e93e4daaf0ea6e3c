"""INT8 integer kernels (docs/quant-spec.md section 3). Numba, integer only.

Activations are int8 with a per-tensor zero point; weights int8 symmetric per
output channel; accumulators int32 (held in int64 here, bounded < 2^31 by the
lowering's checks); requantization by integer multiplier + RNE shift (spec 3.3).
Every kernel: batched channel-major ``[B, C, L]`` in, ``(int8 y, n_saturated)`` out.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from intsim.fixedpoint import isqrt_rne, requantize, rne_div, rne_shift, saturate
from intsim.kernels_mac import channels_last_rows, conv_rows_acc, dwconv_acc, weight_rows
from intsim.lut import EXP_FRAC_BITS

RMS_EXTRA_BITS = 8       # G, spec 3.9
RMS_INV_BITS_INT8 = 24   # Q8, spec 3.9
REVIN_EXTRA_BITS = 8     # G, spec 3.11
REVIN_INV_BITS_INT8 = 24  # Q8, spec 3.11


@njit(cache=True)
def conv_kx1_int8(x, x_zp, w, b, m0, shift, y_zp, stride):
    """Spec 3.4. x: int8[B, C_in, L] (s_x, z_x), w: int8[C_out, C_in, K] (s_w[c]),
    b: int64[C_out] (int32 at s_x*s_w[c]), m0/shift: int64[C_out]
    -> y: int8[B, C_out, (L-K)//S+1] (s_y, z_y)."""
    # zero point removed once: int16 values in [-255, 255]
    x_rows = channels_last_rows(x).astype(np.int16) - np.int16(x_zp)
    acc = conv_rows_acc(x_rows, x.shape[1], weight_rows(w), b, w.shape[2], stride)
    return _requantize_per_channel(acc, m0, shift, y_zp)


@njit(cache=True)
def conv1x1_int8(x, x_zp, w, b, m0, shift, y_zp):
    """Spec 3.4. x: int8[B, C_in, L], w: int8[C_out, C_in], b/m0/shift: int64[C_out]
    -> y: int8[B, C_out, L]. The conv_kx1 sum with K = 1, S = 1 (identical arithmetic)."""
    return conv_kx1_int8(x, x_zp, w.reshape(w.shape[0], w.shape[1], 1), b, m0, shift, y_zp, 1)


@njit(cache=True)
def dwconv_int8(x, x_zp, w, b, m0, shift, y_zp):
    """Spec 3.4 (causal depthwise). x: int8[B, C, L], w: int8[C, K], b/m0/shift: int64[C]
    -> y: int8[B, C, L]. Padding is the real zero: x - z_x = 0."""
    return _requantize_per_channel(dwconv_acc(x, x_zp, w, b), m0, shift, y_zp)


@njit(cache=True)
def _requantize_per_channel(acc, m0, shift, y_zp):
    """int64 sums [B, C, L] -> (requantize(acc, m0[c], shift[c], z_y) int8[B, C, L], saturations)."""
    n_b, c, length = acc.shape
    y = np.empty((n_b, c, length), dtype=np.int8)
    nsat = 0
    for bi in range(n_b):
        for ch in range(c):
            for t in range(length):
                v, s = requantize(acc[bi, ch, t], m0[ch], shift[ch], y_zp, 8)
                y[bi, ch, t] = v
                nsat += s
    return y, nsat


@njit(cache=True)
def rmsnorm_int8(x, x_zp, g, eps_q, m0, shift, y_zp):
    """Spec 3.9 (V2). x: int8[B, D, L] (s_x, z_x), g: int8[D] (s_g), eps_q =
    RNE(eps / s_x^2 * 2^(2G)); (m0, shift) from s_g / s_y with shift += Q8 - G
    -> y: int8[B, D, L] (s_y, z_y)."""
    n_b, d, length = x.shape
    y = np.empty((n_b, d, length), dtype=np.int8)
    one_q = np.int64(1) << RMS_INV_BITS_INT8
    nsat = 0
    for bi in range(n_b):
        for t in range(length):
            ss = np.int64(0)
            for ch in range(d):
                xc = np.int64(x[bi, ch, t]) - x_zp
                ss += xc * xc
            v = rne_div(ss << (2 * RMS_EXTRA_BITS), d) + eps_q
            if v < 1:
                v = np.int64(1)
            inv = rne_div(one_q, isqrt_rne(v))
            for ch in range(d):
                prod = (np.int64(x[bi, ch, t]) - x_zp) * np.int64(g[ch]) * inv
                val, s = requantize(prod, m0, shift, y_zp, 8)
                y[bi, ch, t] = val
                nsat += s
    return y, nsat


@njit(cache=True)
def lut_int8(x, table, clamped):
    """Spec 3.5. x: int8[B, C, L] -> y: int8[B, C, L] = table[x + 128] (exact 256-entry table);
    clamped[256] (nonzero: the entry saturated when the table was built): each read counts (spec 5)."""
    n_b, c, length = x.shape
    y = np.empty((n_b, c, length), dtype=np.int8)
    nsat = 0
    for bi in range(n_b):
        for ch in range(c):
            for t in range(length):
                k = np.int64(x[bi, ch, t]) + 128
                y[bi, ch, t] = table[k]
                nsat += clamped[k] != 0
    return y, nsat


@njit(cache=True)
def scan_int8(lam, u, u_zp, m0, shift, y_zp):
    """Spec 3.6. lam: int8[B, E, T] with the fixed format s = 1/256, z = -128;
    u: int8[B, E, T] (s_u, z_u) -> y: int8[B, E, T] (s_y, z_y). State: int32 in
    units of s_u / 256, |S| <= 255 * 256 (17 bits)."""
    n_b, e, t_len = u.shape
    y = np.empty((n_b, e, t_len), dtype=np.int8)
    nsat = 0
    for bi in range(n_b):
        for ch in range(e):
            state = np.int64(0)
            for t in range(t_len):
                lam_i = np.int64(lam[bi, ch, t]) + 128
                u_c = (np.int64(u[bi, ch, t]) - u_zp) << 8
                state = rne_shift(lam_i * state + (256 - lam_i) * u_c, 8)
                v, s = requantize(state, m0, shift, y_zp, 8)
                y[bi, ch, t] = v
                nsat += s
    return y, nsat


@njit(cache=True)
def mul_int8(a, a_zp, b, b_zp, m0, shift, y_zp):
    """Spec 3.7. y = requantize((a - z_a)(b - z_b)), all int8[B, C, L]."""
    n_b, c, length = a.shape
    y = np.empty((n_b, c, length), dtype=np.int8)
    nsat = 0
    for bi in range(n_b):
        for ch in range(c):
            for t in range(length):
                acc = (np.int64(a[bi, ch, t]) - a_zp) * (np.int64(b[bi, ch, t]) - b_zp)
                v, s = requantize(acc, m0, shift, y_zp, 8)
                y[bi, ch, t] = v
                nsat += s
    return y, nsat


@njit(cache=True)
def add_int8(a, a_zp, m_a, b, b_zp, m_b, shift, y_zp):
    """Spec 3.8. y = sat8(rne_shift((a - z_a) m_a + (b - z_b) m_b, SH) + z_y)."""
    n_b, c, length = a.shape
    y = np.empty((n_b, c, length), dtype=np.int8)
    nsat = 0
    for bi in range(n_b):
        for ch in range(c):
            for t in range(length):
                acc = (np.int64(a[bi, ch, t]) - a_zp) * m_a + (np.int64(b[bi, ch, t]) - b_zp) * m_b
                v, s = saturate(rne_shift(acc, shift) + y_zp, 8)
                y[bi, ch, t] = v
                nsat += s
    return y, nsat


@njit(cache=True)
def s6_scan_int8(delta, d_zp, x, x_zp, bm, b_zp, cm, c_zp, a, m_a, sh_a, dk, exp_table, m_h, m_k, shift, y_zp):
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
                    v, s = saturate(rne_shift(np.int64(exp_table[addr]) * h[n] + (inj << EXP_FRAC_BITS), EXP_FRAC_BITS), 32)
                    h[n] = v
                    nsat += s
                    acc_h += (np.int64(cm[bi, n, t]) - c_zp) * v
                acc = acc_h * m_h + np.int64(dk[ch]) * xc * m_k
                v, s = saturate(rne_shift(acc, shift) + y_zp, 8)
                y[bi, ch, t] = v
                nsat += s
    return y, nsat


@njit(cache=True)
def revin_stats_int8(x, x_zp, bi, ch, eps_q):
    """Spec 3.11: (mean in units of s_x, std at 2^G) of x[bi, ch, :] - z_x (int8 (s_x, z_x))."""
    length = np.int64(x.shape[2])
    s1 = np.int64(0)
    s2 = np.int64(0)
    for t in range(x.shape[2]):
        xc = np.int64(x[bi, ch, t]) - x_zp
        s1 += xc
        s2 += xc * xc
    mean = rne_div(s1, length)
    v = rne_div((length * s2 - s1 * s1) << (2 * REVIN_EXTRA_BITS), length * length) + eps_q
    if v < 1:
        v = np.int64(1)
    return mean, isqrt_rne(v)


@njit(cache=True)
def revin_norm_int8(x, x_zp, eps_q, m0, shift, y_zp):
    """Spec 3.11. x: int8[B, C, L] (s_x, z_x) -> y: int8[B, C, L] (s_y, z_y); (m0, shift) from
    1 / s_y with shift += Q8 - G: (x - mean) / std per sample and channel."""
    n_b, c, length = x.shape
    y = np.empty((n_b, c, length), dtype=np.int8)
    one_q = np.int64(1) << REVIN_INV_BITS_INT8
    nsat = 0
    for bi in range(n_b):
        for ch in range(c):
            mean, std = revin_stats_int8(x, x_zp, bi, ch, eps_q)
            inv = rne_div(one_q, std)
            for t in range(length):
                val, s = requantize((np.int64(x[bi, ch, t]) - x_zp - mean) * inv, m0, shift, y_zp, 8)
                y[bi, ch, t] = val
                nsat += s
    return y, nsat


@njit(cache=True)
def revin_denorm_int8(y, y_zp, x, x_zp, eps_q, m_a, m_b, shift, o_zp):
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
                acc = (np.int64(y[bi, r, m]) - y_zp) * std * m_a + ((mean * m_b) << REVIN_EXTRA_BITS)
                v, s = saturate(rne_shift(acc, shift) + o_zp, 8)
                o[bi, r, m] = v
                nsat += s
    return o, nsat
