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

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def sigmoid(x):
    # Split by sign so exp never overflows.
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


def silu(x):
    return x * sigmoid(x)


def conv_kx1(x, weight, bias, kernel, stride):
    """x: [B, C_in, L] -> [B, C_out, (L-K)//S+1]; weight [C_out, C_in, K]."""
    win = sliding_window_view(x, kernel, axis=2)[:, :, ::stride, :]   # [B, C_in, T, K]
    n_b, c_in, n_t, _ = win.shape
    cols = win.transpose(0, 1, 3, 2).reshape(n_b, c_in * kernel, n_t)  # [B, C_in*K, T]
    return np.matmul(weight.reshape(weight.shape[0], c_in * kernel), cols) + bias[None, :, None]


def conv1x1(x, weight, bias):
    """x: [B, C_in, L] -> [B, C_out, L]; weight [C_out, C_in]."""
    return np.matmul(weight, x) + bias[None, :, None]


def dwconv(x, weight, bias, kernel):
    """Causal depthwise: x [B, C, L] -> [B, C, L]; weight [C, K]; K-1 zeros on the left."""
    length = x.shape[2]
    padded = np.concatenate([np.zeros(x.shape[:2] + (kernel - 1,)), x], axis=2)
    out = padded[:, :, :length] * weight[None, :, 0, None]
    for k in range(1, kernel):                                         # taps in order k = 0..K-1
        out += padded[:, :, k:k + length] * weight[None, :, k, None]
    return out + bias[None, :, None]


def rmsnorm(x, gain, eps):
    """Over channels: y = x / sqrt(mean_c(x^2) + eps) * g."""
    ms = np.mean(x * x, axis=1, keepdims=True)
    return x / np.sqrt(ms + eps) * gain[None, :, None]


def scan(lam, u):
    """s_t = lam_t * s_{t-1} + (1 - lam_t) * u_t, s_{-1} = 0. [B, E, T]."""
    out = np.empty_like(u)
    state = np.zeros(u.shape[:2])
    for t in range(u.shape[2]):
        state = lam[:, :, t] * state + (1.0 - lam[:, :, t]) * u[:, :, t]
        out[:, :, t] = state
    return out


def run_layer(layer, inputs, weights):
    """Apply one layer in float. inputs: list of [B, C, L]; weights: dict name -> array."""
    op, a = layer.op, layer.attrs
    if op == "conv_kx1":
        return conv_kx1(inputs[0], weights["weight"], weights["bias"], a["kernel"], a["stride"])
    if op == "conv1x1":
        return conv1x1(inputs[0], weights["weight"], weights["bias"])
    if op == "dwconv":
        return dwconv(inputs[0], weights["weight"], weights["bias"], a["kernel"])
    if op == "rmsnorm":
        return rmsnorm(inputs[0], weights["weight"], a["eps"])
    if op == "sigmoid":
        return sigmoid(inputs[0])
    if op == "silu":
        return silu(inputs[0])
    if op == "scan":
        return scan(inputs[0], inputs[1])
    if op == "mul":
        return inputs[0] * inputs[1]
    if op == "add":
        return inputs[0] + inputs[1]
    raise KeyError(op)


FLOAT_OPS = frozenset(("conv_kx1", "conv1x1", "dwconv", "rmsnorm", "sigmoid", "silu", "scan", "mul", "add"))
