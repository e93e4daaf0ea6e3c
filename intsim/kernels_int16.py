"""INT16 integer kernels (docs/quant-spec.md section 2). Numba, integer only.

Every kernel takes batched channel-major int16 arrays ``[B, C, L]`` and returns
``(y int16[B, C_out, L_out], n_saturated int64)``. Shifts, tables and biases
are precomputed on the host (intsim/int16.py) from the calibrated formats; no
float is touched here. Loops are plain so they read beside the spec.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from intsim.fixedpoint import isqrt_rne, rne_div, rne_shift, saturate, shift_round

LUT_FRAC_BITS = 8
LUT_OFFSET = 2048
LUT_LAST = 4095
RMS_EXTRA_BITS = 8       # G, spec 2.4
RMS_INV_BITS = 40        # Q, spec 2.4


@njit(cache=True)
def conv_kx1_int16(x, w, b, stride, shift):
    """Spec 2.2. x: int16[B, C_in, L] Q(f_x), w: int16[C_out, C_in, K] Q(f_w),
    b: int64[C_out] Q(f_x+f_w) -> y: int16[B, C_out, (L-K)//S+1] Q(f_x+f_w-shift).

    Layout only (not arithmetic): the input is read channels-last, so the window
    of output t, x[:, t*S : t*S+K], is one contiguous run of K*C_in values and
    the exact int64 sum vectorises."""
    n_b, c_in, length = x.shape
    c_out, _, k_size = w.shape
    t_out = (length - k_size) // stride + 1
    # [B, L*C_in] and [C_out, K*C_in]: channels-last rows, flattened
    xf = np.ascontiguousarray(x.transpose(0, 2, 1)).reshape(n_b, length * c_in)
    wf = np.ascontiguousarray(w.transpose(0, 2, 1)).reshape(c_out, k_size * c_in)
    n_win = k_size * c_in
    y = np.empty((n_b, c_out, t_out), dtype=np.int16)
    nsat = 0
    for bi in range(n_b):
        for t in range(t_out):
            window = xf[bi, t * stride * c_in:t * stride * c_in + n_win]
            for o in range(c_out):
                w_row = wf[o]
                acc = np.int64(b[o])
                for j in range(n_win):   # range indices: no negative-index checks, vectorises
                    acc += np.int64(w_row[j]) * np.int64(window[j])
                v, s = saturate(rne_shift(acc, shift), 16)
                y[bi, o, t] = v
                nsat += s
    return y, nsat


@njit(cache=True)
def conv1x1_int16(x, w, b, shift):
    """Spec 2.1. x: int16[B, C_in, L] Q(f_x), w: int16[C_out, C_in] Q(f_w),
    b: int64[C_out] Q(f_x+f_w) -> y: int16[B, C_out, L] Q(f_x+f_w-shift).
    The same sum as spec 2.2 with K = 1, S = 1 (identical arithmetic, one loop nest)."""
    return conv_kx1_int16(x, w.reshape(w.shape[0], w.shape[1], 1), b, 1, shift)


@njit(cache=True)
def dwconv_int16(x, w, b, shift):
    """Spec 2.3 (causal). x: int16[B, C, L] Q(f_x), w: int16[C, K] Q(f_w),
    b: int64[C] Q(f_x+f_w) -> y: int16[B, C, L] Q(f_x+f_w-shift)."""
    n_b, c, length = x.shape
    k_size = w.shape[1]
    y = np.empty((n_b, c, length), dtype=np.int16)
    nsat = 0
    for bi in range(n_b):
        for ch in range(c):
            for t in range(length):
                acc = np.int64(b[ch])
                for k in range(k_size):
                    src = t - (k_size - 1) + k
                    if src >= 0:
                        acc += np.int64(w[ch, k]) * np.int64(x[bi, ch, src])
                v, s = saturate(rne_shift(acc, shift), 16)
                y[bi, ch, t] = v
                nsat += s
    return y, nsat


@njit(cache=True)
def rmsnorm_int16(x, g, eps_q, out_shift):
    """Spec 2.4 (V2). x: int16[B, D, L] Q(f_x), g: int16[D] Q(f_g), eps_q = RNE(eps*2^(2f_x))
    -> y: int16[B, D, L] Q(f_y), out_shift = Q + f_g - G - f_y."""
    n_b, d, length = x.shape
    y = np.empty((n_b, d, length), dtype=np.int16)
    nsat = 0
    one_q = np.int64(1) << RMS_INV_BITS
    for bi in range(n_b):
        for t in range(length):
            ss = np.int64(0)
            for ch in range(d):
                xv = np.int64(x[bi, ch, t])
                ss += xv * xv
            v = rne_div(ss, d) + eps_q
            if v < 1:
                v = np.int64(1)
            rms_q = isqrt_rne(v << (2 * RMS_EXTRA_BITS))
            inv = rne_div(one_q, rms_q)
            for ch in range(d):
                prod = np.int64(x[bi, ch, t]) * np.int64(g[ch]) * inv
                val, s = saturate(rne_shift(prod, out_shift), 16)
                y[bi, ch, t] = val
                nsat += s
    return y, nsat


@njit(cache=True)
def lut_int16(x, table, addr_shift, is_silu, identity_shift):
    """Spec 2.5/2.6. x: int16[B, C, L] Q(f_x) -> y: int16[B, C, L] Q(f_y) by table[4096].
    addr_shift = f_x - 8; identity_shift = f_x - f_y (SiLU above the range)."""
    n_b, c, length = x.shape
    y = np.empty((n_b, c, length), dtype=np.int16)
    nsat = 0
    for bi in range(n_b):
        for ch in range(c):
            for t in range(length):
                xv = np.int64(x[bi, ch, t])
                a = shift_round(xv, addr_shift) + LUT_OFFSET
                if a > LUT_LAST:
                    if is_silu:
                        v, s = saturate(shift_round(xv, identity_shift), 16)
                        y[bi, ch, t] = v
                        nsat += s
                        continue
                    a = LUT_LAST
                elif a < 0:
                    a = 0
                y[bi, ch, t] = table[a]
    return y, nsat


@njit(cache=True)
def scan_int16(lam, u, lam_frac, u_shift):
    """Spec 2.7. lam: int16[B, E, T] Q(f_l) in [0, 2^f_l], u: int16[B, E, T] Q(f_u)
    -> s: int16[B, E, T] Q(f_s); u_shift = f_u - f_s. One rounding per step."""
    n_b, e, t_len = u.shape
    y = np.empty((n_b, e, t_len), dtype=np.int16)
    one = np.int64(1) << lam_frac
    nsat = 0
    for bi in range(n_b):
        for ch in range(e):
            state = np.int64(0)
            for t in range(t_len):
                lam_q = np.int64(lam[bi, ch, t])
                u_al = shift_round(np.int64(u[bi, ch, t]), u_shift)
                acc = lam_q * state + (one - lam_q) * u_al
                v, s = saturate(rne_shift(acc, lam_frac), 16)
                state = v
                y[bi, ch, t] = v
                nsat += s
    return y, nsat


@njit(cache=True)
def mul_int16(a, b, shift):
    """Spec 2.8. a: int16 Q(f_a), b: int16 Q(f_b) -> y: int16 Q(f_a+f_b-shift), [B, C, L]."""
    n_b, c, length = a.shape
    y = np.empty((n_b, c, length), dtype=np.int16)
    nsat = 0
    for bi in range(n_b):
        for ch in range(c):
            for t in range(length):
                prod = np.int64(a[bi, ch, t]) * np.int64(b[bi, ch, t])
                v, s = saturate(shift_round(prod, shift), 16)
                y[bi, ch, t] = v
                nsat += s
    return y, nsat


@njit(cache=True)
def add_int16(a, b, a_up, b_up, shift):
    """Spec 2.9. a: Q(f_a), b: Q(f_b) -> y: Q(F - shift); a_up = F - f_a, b_up = F - f_b."""
    n_b, c, length = a.shape
    y = np.empty((n_b, c, length), dtype=np.int16)
    nsat = 0
    for bi in range(n_b):
        for ch in range(c):
            for t in range(length):
                acc = (np.int64(a[bi, ch, t]) << a_up) + (np.int64(b[bi, ch, t]) << b_up)
                v, s = saturate(shift_round(acc, shift), 16)
                y[bi, ch, t] = v
                nsat += s
    return y, nsat
