"""Exact integer multiply-accumulate cores shared by the INT16 and INT8 convolutions.

Only the sums live here (docs/quant-spec.md 2.2/2.3 and 3.4 share them): every
product and the bias are added exactly: in int32 accumulators where the caller proved the
layer's bound (`acc_bound`, from the weights and the input range: no partial sum can leave
int32, so the sums are the spec's int64 sums bit for bit), else in int64. What happens to the sum next
(INT16: RNE shift + saturation; INT8: multiplier + shift requantization) stays
in each precision's kernel module. Numba, integer only.
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def weight_rows(w):
    """int[C_out, C_in, K] -> int[C_out, K*C_in]: row o lists w[o, :, k] for k = 0.. in turn
    (the order of a channels-last input window)."""
    c_out, c_in, k_size = w.shape
    return np.ascontiguousarray(w.transpose(0, 2, 1)).reshape(c_out, k_size * c_in)


@njit(cache=True)
def channels_last_rows(x):
    """int[B, C, L] -> int[B, L*C]: the input read channels-last (layout only), so the
    window of a Kx1 conv output is one contiguous run of K*C values."""
    n_b, c, length = x.shape
    return np.ascontiguousarray(x.transpose(0, 2, 1)).reshape(n_b, length * c)


INT32_LIMIT = (1 << 31) - 1
POS_BLOCK = 4     # output positions accumulated together: each weight row is loaded once for four


def acc_bits(weight: np.ndarray, bias: np.ndarray, x_max_abs: int = 1 << 15) -> int:
    """Host side: the signed width that holds every partial sum of b[o] + sum_j w[o, j] x[j]
    for |x| <= x_max_abs (INT16: 2^15, -32768 included; INT8: 255 = |x - z_x|), any order."""
    w = np.ascontiguousarray(weight, np.int64).reshape(weight.shape[0], -1)
    return int(acc_bound(w, np.ascontiguousarray(bias, np.int64), x_max_abs)).bit_length() + 1


@njit(cache=True)
def acc_bound(w_rows, b, x_max_abs):
    """max_o |b[o]| + x_max_abs * sum_j |w_rows[o, j]|: bounds every partial sum of output o's
    accumulation in any order (each term and the bias at most their absolute values)."""
    worst = np.int64(0)
    for o in range(w_rows.shape[0]):
        total = abs(np.int64(b[o]))
        for j in range(w_rows.shape[1]):
            total += abs(np.int64(w_rows[o, j])) * x_max_abs
        worst = max(worst, total)
    return worst


@njit(cache=True)
def weight_cols(w):
    """int[C_out, C_in, K] -> int[K*C_in, C_out]: `weight_rows` transposed, so the output
    channels are the contiguous (vectorised) axis of the MAC loop."""
    return np.ascontiguousarray(weight_rows(w).T)


@njit(cache=True)
def conv_rows_acc(x_rows, c_in, w_cols, b, k_size, stride, narrow):
    """Dense Kx1 conv sums. x_rows: int[B, L*C_in] (`channels_last_rows`),
    w_cols: int[K*C_in, C_out] (`weight_cols`), b: int64[C_out]; narrow: the caller proved
    `acc_bound(...) <= 2^31 - 1` (every partial sum fits int32), so int32 accumulators give
    the exact int64 sums; else int64 accumulators
    -> acc: int64[B, C_out, (L-K)//S+1], acc[b, o, t] = b[o] + sum_{c,k} w[o,c,k] x[b,c,t*S+k]."""
    if narrow:
        return _conv_rows_acc(x_rows, c_in, w_cols, b, k_size, stride, np.empty((POS_BLOCK, w_cols.shape[1]), np.int32))
    return _conv_rows_acc(x_rows, c_in, w_cols, b, k_size, stride, np.empty((POS_BLOCK, w_cols.shape[1]), np.int64))


@njit(cache=True)
def _conv_rows_acc(x_rows, c_in, w_cols, b, k_size, stride, part):
    """conv_rows_acc with the accumulators `part` [POS_BLOCK, C_out] (int32 or int64): for a
    block of output positions, acc[p, :] += w_cols[j, :] * window_p[j], the output channels
    innermost (contiguous, vectorised; each product exact in the accumulator's width)."""
    n_b = x_rows.shape[0]
    length = x_rows.shape[1] // c_in
    n_win, c_out = w_cols.shape
    t_out = (length - k_size) // stride + 1
    acc = np.empty((n_b, c_out, t_out), dtype=np.int64)
    n_pos = n_b * t_out
    for p0 in range(0, n_pos - POS_BLOCK + 1, POS_BLOCK):
        for q in range(POS_BLOCK):
            for o in range(c_out):
                part[q, o] = b[o]
        b0, t0 = divmod(p0, t_out)
        b1, t1 = divmod(p0 + 1, t_out)
        b2, t2 = divmod(p0 + 2, t_out)
        b3, t3 = divmod(p0 + 3, t_out)
        s0, s1, s2, s3 = t0 * stride * c_in, t1 * stride * c_in, t2 * stride * c_in, t3 * stride * c_in
        a0, a1, a2, a3 = part[0], part[1], part[2], part[3]
        for j in range(n_win):
            x0 = x_rows[b0, s0 + j]
            x1 = x_rows[b1, s1 + j]
            x2 = x_rows[b2, s2 + j]
            x3 = x_rows[b3, s3 + j]
            w_col = w_cols[j]
            for o in range(c_out):     # range indices: no negative-index checks, vectorises
                wv = w_col[o]
                a0[o] += wv * x0
                a1[o] += wv * x1
                a2[o] += wv * x2
                a3[o] += wv * x3
        for q in range(POS_BLOCK):
            bq, tq = divmod(p0 + q, t_out)
            for o in range(c_out):
                acc[bq, o, tq] = part[q, o]
    for p in range(n_pos - n_pos % POS_BLOCK, n_pos):
        bq, tq = divmod(p, t_out)
        start = tq * stride * c_in
        a0 = part[0]
        for o in range(c_out):
            a0[o] = b[o]
        for j in range(n_win):
            xv = x_rows[bq, start + j]
            w_col = w_cols[j]
            for o in range(c_out):
                a0[o] += w_col[o] * xv
        for o in range(c_out):
            acc[bq, o, tq] = a0[o]
    return acc


@njit(cache=True)
def dwconv_acc(x, x_zp, w, b):
    """Causal depthwise sums. x: int[B, C, L], x_zp: the input's zero point (0 for INT16),
    w: int[C, K], b: int64[C] -> acc: int64[B, C, L],
    acc[b, c, t] = b[c] + sum_k w[c, k] (x[b, c, t-K+1+k] - x_zp), terms before t = 0 omitted
    (the padding is the real zero). Tap by tap, time innermost (vectorised, no branch)."""
    n_b, c, length = x.shape
    k_size = w.shape[1]
    acc = np.empty((n_b, c, length), dtype=np.int64)
    for bi in range(n_b):
        for ch in range(c):
            row = acc[bi, ch]
            xs = x[bi, ch]
            for t in range(length):
                row[t] = b[ch]
            for k in range(k_size):
                wk = np.int64(w[ch, k])
                lag = k_size - 1 - k              # tap k reads x[t - lag]
                for t in range(lag, length):
                    row[t] += wk * (np.int64(xs[t - lag]) - x_zp)
    return acc
