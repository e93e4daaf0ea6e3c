"""Exact integer multiply-accumulate cores shared by the INT16 and INT8 convolutions.

Only the sums live here (docs/quant-spec.md 2.2/2.3 and 3.4 share them): every
product and the bias are added exactly in int64. What happens to the sum next
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


@njit(cache=True)
def conv_rows_acc(x_rows, c_in, w_rows, b, k_size, stride):
    """Dense Kx1 conv sums. x_rows: int[B, L*C_in] (`channels_last_rows`),
    w_rows: int[C_out, K*C_in] (`weight_rows`), b: int64[C_out]
    -> acc: int64[B, C_out, (L-K)//S+1], acc[b, o, t] = b[o] + sum_{c,k} w[o,c,k] x[b,c,t*S+k]."""
    n_b = x_rows.shape[0]
    length = x_rows.shape[1] // c_in
    c_out = w_rows.shape[0]
    t_out = (length - k_size) // stride + 1
    n_win = k_size * c_in
    acc = np.empty((n_b, c_out, t_out), dtype=np.int64)
    for bi in range(n_b):
        for t in range(t_out):
            window = x_rows[bi, t * stride * c_in:t * stride * c_in + n_win]
            for o in range(c_out):
                w_row = w_rows[o]
                total = np.int64(b[o])
                for j in range(n_win):   # range indices: no negative-index checks, vectorises
                    total += np.int64(w_row[j]) * np.int64(window[j])
                acc[bi, o, t] = total
    return acc


@njit(cache=True)
def dwconv_acc(x, x_zp, w, b):
    """Causal depthwise sums. x: int[B, C, L], x_zp: the input's zero point (0 for INT16),
    w: int[C, K], b: int64[C] -> acc: int64[B, C, L],
    acc[b, c, t] = b[c] + sum_k w[c, k] (x[b, c, t-K+1+k] - x_zp), terms before t = 0 omitted
    (the padding is the real zero)."""
    n_b, c, length = x.shape
    k_size = w.shape[1]
    acc = np.empty((n_b, c, length), dtype=np.int64)
    for bi in range(n_b):
        for ch in range(c):
            for t in range(length):
                total = np.int64(b[ch])
                for k in range(k_size):
                    src = t - (k_size - 1) + k
                    if src >= 0:
                        total += np.int64(w[ch, k]) * (np.int64(x[bi, ch, src]) - x_zp)
                acc[bi, ch, t] = total
    return acc
