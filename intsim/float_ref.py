"""Float reference kernels (numpy, float64; no torch).

Every kernel takes batched channel-major arrays ``[B, C, L]`` and returns
``[B, C_out, L_out]`` float64. The same kernels serve `fp32` (float weights)
and `quant16` (weights and activations snapped to their formats by the
executor; arithmetic here stays float). "fp32" names the float model; it is
computed in float64 so that differences to it are the integer path's alone.

Batch-invariant: a sample's result does not depend on the batch it is run in
(bit for bit, any batch size). Every contraction is one `np.matmul` per sample
(a stacked matmul calls BLAS once per [C_out, C_in*K] @ [C_in*K, L] slice, so
BLAS blocking never sees the batch size) and the depthwise convolution is a
fixed-order sum over its K taps. A single batched GEMM (einsum over the batch)
would let BLAS choose its blocking from B and change the last bits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from intsim.ops import BackendTable

if TYPE_CHECKING:
    from intsim.graph import Layer


def sigmoid(x: np.ndarray) -> np.ndarray:
    # Split by sign so exp never overflows.
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


def silu(x: np.ndarray) -> np.ndarray:
    return x * sigmoid(x)


def conv_kx1(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, kernel: int, stride: int) -> np.ndarray:
    """x: [B, C_in, L] -> [B, C_out, (L-K)//S+1]; weight [C_out, C_in, K]."""
    win = sliding_window_view(x, kernel, axis=2)[:, :, ::stride, :]  # [B, C_in, T, K]
    n_b, c_in, n_t, _ = win.shape
    cols = win.transpose(0, 1, 3, 2).reshape(n_b, c_in * kernel, n_t)  # [B, C_in*K, T]
    return np.matmul(weight.reshape(weight.shape[0], c_in * kernel), cols) + bias[None, :, None]


def conv1x1(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """x: [B, C_in, L] -> [B, C_out, L]; weight [C_out, C_in]."""
    return np.matmul(weight, x) + bias[None, :, None]


def dwconv(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, kernel: int) -> np.ndarray:
    """Causal depthwise: x [B, C, L] -> [B, C, L]; weight [C, K]; K-1 zeros on the left."""
    length = x.shape[2]
    padded = np.concatenate([np.zeros(x.shape[:2] + (kernel - 1,)), x], axis=2)
    out = padded[:, :, :length] * weight[None, :, 0, None]
    for k in range(1, kernel):  # taps in order k = 0..K-1
        out += padded[:, :, k : k + length] * weight[None, :, k, None]
    return out + bias[None, :, None]


def rmsnorm(x: np.ndarray, gain: np.ndarray, eps: float) -> np.ndarray:
    """Over channels: y = x / sqrt(mean_c(x^2) + eps) * g."""
    ms = np.mean(x * x, axis=1, keepdims=True)
    return x / np.sqrt(ms + eps) * gain[None, :, None]


def scan(lam: np.ndarray, u: np.ndarray) -> np.ndarray:
    """s_t = lam_t * s_{t-1} + (1 - lam_t) * u_t, s_{-1} = 0. [B, E, T]."""
    out = np.empty_like(u)
    state = np.zeros(u.shape[:2])
    for t in range(u.shape[2]):
        state = lam[:, :, t] * state + (1.0 - lam[:, :, t]) * u[:, :, t]
        out[:, :, t] = state
    return out


def softplus(x: np.ndarray) -> np.ndarray:
    """ln(1 + exp(x)), overflow-free: max(x, 0) + log1p(exp(-|x|))."""
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


def s6_scan(delta: np.ndarray, x: np.ndarray, b: np.ndarray, c: np.ndarray, a: np.ndarray, d: np.ndarray) -> np.ndarray:
    """The Mamba-1 selective scan (spec 2.12). delta, x [B, E, T]; b, c [B, N, T]; a [E, N]; d [E].
    h[e,n,t] = exp(delta[e,t] a[e,n]) h[e,n,t-1] + delta[e,t] b[n,t] x[e,t], h[., ., -1] = 0;
    y[e,t] = sum_n c[n,t] h[e,n,t] + d[e] x[e,t]."""
    n_b, e, length = x.shape
    h = np.zeros((n_b, e, a.shape[1]))
    out = np.empty_like(x)
    for t in range(length):
        dt = delta[:, :, t, None]  # [B, E, 1]
        h = np.exp(dt * a[None]) * h + (dt * x[:, :, t, None]) * b[:, None, :, t]
        out[:, :, t] = np.einsum("ben,bn->be", h, c[:, :, t]) + d[None, :] * x[:, :, t]
    return out


def revin_stats(x: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Per sample and channel of x [B, C, L]: (mean, sqrt(population variance + eps)), [B, C, 1]."""
    mean = np.mean(x, axis=2, keepdims=True)
    return mean, np.sqrt(np.mean((x - mean) ** 2, axis=2, keepdims=True) + eps)


def revin_norm(x: np.ndarray, eps: float) -> np.ndarray:
    """RevIN in: (x - mean_t) / std_t per sample and channel. [B, C, L]."""
    mean, std = revin_stats(x, eps)
    return (x - mean) / std


def revin_denorm(y: np.ndarray, x: np.ndarray, eps: float) -> np.ndarray:
    """RevIN out: y * std + mean with the statistics of the window x [B, C, L]; y [B, R, M] is read
    as C row-major chunks (channel c = chunk c)."""
    mean, std = revin_stats(x, eps)
    n_b, c = x.shape[:2]
    return (y.reshape(n_b, c, -1) * std + mean).reshape(y.shape)


# ------------------------------------------------------------------ registry rows
# One row per op: (inputs [B, C, L] list, weights name -> array, attrs) -> [B, C_out, L_out].
FLOAT: BackendTable[Callable[[list, dict, dict], np.ndarray]] = BackendTable("float reference")
FLOAT.register("conv_kx1", lambda x, w, a: conv_kx1(x[0], w["weight"], w["bias"], a["kernel"], a["stride"]))
FLOAT.register("conv1x1", lambda x, w, a: conv1x1(x[0], w["weight"], w["bias"]))
FLOAT.register("dwconv", lambda x, w, a: dwconv(x[0], w["weight"], w["bias"], a["kernel"]))
FLOAT.register("rmsnorm", lambda x, w, a: rmsnorm(x[0], w["weight"], a["eps"]))
FLOAT.register("sigmoid", lambda x, w, a: sigmoid(x[0]))
FLOAT.register("silu", lambda x, w, a: silu(x[0]))
FLOAT.register("scan", lambda x, w, a: scan(x[0], x[1]))
FLOAT.register("mul", lambda x, w, a: x[0] * x[1])
FLOAT.register("add", lambda x, w, a: x[0] + x[1])
FLOAT.register("softplus", lambda x, w, a: softplus(x[0]))
FLOAT.register("s6_scan", lambda x, w, a: s6_scan(x[0], x[1], x[2], x[3], w["A"], w["D"]))
FLOAT.register("revin_norm", lambda x, w, a: revin_norm(x[0], a["eps"]))
FLOAT.register("revin_denorm", lambda x, w, a: revin_denorm(x[0], x[1], a["eps"]))


def run_layer(layer: Layer, inputs: list[np.ndarray], weights: dict[str, np.ndarray]) -> np.ndarray:
    """Apply one layer in float. inputs: list of [B, C, L]; weights: dict name -> array."""
    return FLOAT.row(layer.op, layer.name)(inputs, weights, layer.attrs)
