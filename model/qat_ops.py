"""The backward half of quantization-aware training (docs/qat.md): straight-through estimators
and the float surrogate of every op (needs the 'train' extra).

QAT's forward is the integer program itself (model/qat.py, `IntegerOp`). Its backward
differentiates a float *surrogate* of each op instead, evaluated at the same dequantized
inputs: the op's float arithmetic (`SURROGATE`, one row per registry op, channels-last
tensors [B, L, C]) on fake-quantized weights, followed by a fake quantizer of the output.
Rounding is the identity for gradients (straight-through), clamping is not (zero gradient where
the integer path saturates), and the learned step sizes get the LSQ gradient:

    fake(v; s, z) = s * (clamp(round(v / s) + round(z), lo, hi) - round(z))
    d fake / d v  = 1 inside [lo, hi], 0 outside          (STE with clipping)
    d fake / d s  = round(v/s) - v/s inside, q - z outside  (LSQ, Esser et al. 2020)
    d fake / d z  = 0 inside, -s outside                   (a learned offset, as LSQ+)

INT16 formats are powers of two fixed by calibration: `fixed_point_fake(v, f)` has only the
STE-with-clipping gradient.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from intsim.ops import BackendTable
from model.cmamba import scan as float_scan
from model.torch_rows import channel_chunks, from_channel_chunks


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """round(x) (half to even) in value, the identity in gradient."""
    return x + (torch.round(x) - x).detach()


def lsq_fake(v: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor | float, lo: int, hi: int) -> torch.Tensor:
    """LSQ fake quantization with a learned zero point (gradients in the module docstring).
    scale, zero: tensors broadcastable to v (per tensor or per channel) or constants."""
    z = round_ste(zero) if isinstance(zero, torch.Tensor) else float(round(zero))
    return scale * (torch.clamp(round_ste(v / scale) + z, lo, hi) - z)


def fixed_point_fake(v: torch.Tensor, frac: int, bits: int = 16) -> torch.Tensor:
    """Fake quantization to a signed fixed-point format Q(bits - frac).frac."""
    lim = 1 << (bits - 1)
    return torch.clamp(round_ste(v * 2.0**frac), -lim, lim - 1) * 2.0**-frac


# ------------------------------------------------------------------ float surrogates
def _conv_kx1(x, w, b, stride):
    """Channels-last dense Kx1 conv: x [B, L, C_in], w [C_out, C_in, K] -> [B, T, C_out]."""
    return F.conv1d(x.transpose(1, 2), w, b, stride=stride).transpose(1, 2)


def _dwconv(x, w, b):
    """Channels-last causal depthwise conv: x [B, L, C], w [C, K] -> [B, L, C]."""
    k = w.shape[1]
    return F.conv1d(F.pad(x.transpose(1, 2), (k - 1, 0)), w[:, None, :], b, groups=w.shape[0]).transpose(1, 2)


def _rmsnorm(x, g, eps):
    return x * torch.rsqrt(x.pow(2).mean(dim=2, keepdim=True) + eps) * g


def _revin_stats(x, eps):
    """Per sample and channel of a channels-last window x [B, L, C]: mean and sqrt(var + eps), [B, 1, C]."""
    mean = x.mean(dim=1, keepdim=True)
    return mean, torch.sqrt((x - mean).pow(2).mean(dim=1, keepdim=True) + eps)


def _revin_norm(x, eps):
    mean, std = _revin_stats(x, eps)
    return (x - mean) / std


def _revin_denorm(y, x, eps):
    """y [B, M, R] (channels-last of [R, M]) read as C row-major chunks: chunk c * std_c + mean_c."""
    mean, std = _revin_stats(x, eps)
    chunks = channel_chunks(y, x.shape[2])
    return from_channel_chunks(chunks * std.transpose(1, 2) + mean.transpose(1, 2), y)


# One row per op: (float inputs [B, L, C], fake-quantized weights by name, attrs) -> float output.
SURROGATE: BackendTable[Callable[[list, dict, dict], torch.Tensor]] = BackendTable("QAT float surrogate")
SURROGATE.register("conv_kx1", lambda x, w, a: _conv_kx1(x[0], w["weight"], w["bias"], a["stride"]))
SURROGATE.register("conv1x1", lambda x, w, a: x[0] @ w["weight"].T + w["bias"])
SURROGATE.register("dwconv", lambda x, w, a: _dwconv(x[0], w["weight"], w["bias"]))
SURROGATE.register("rmsnorm", lambda x, w, a: _rmsnorm(x[0], w["weight"], a["eps"]))
SURROGATE.register("sigmoid", lambda x, w, a: torch.sigmoid(x[0]))
SURROGATE.register("silu", lambda x, w, a: F.silu(x[0]))
SURROGATE.register("scan", lambda x, w, a: float_scan(x[0].transpose(1, 2), x[1].transpose(1, 2)).transpose(1, 2))
SURROGATE.register("mul", lambda x, w, a: x[0] * x[1])
SURROGATE.register("add", lambda x, w, a: x[0] + x[1])
SURROGATE.register("revin_norm", lambda x, w, a: _revin_norm(x[0], a["eps"]))
SURROGATE.register("revin_denorm", lambda x, w, a: _revin_denorm(x[0], x[1], a["eps"]))
SURROGATE.register("softplus", lambda x, w, a: F.softplus(x[0]))
# The torch bit-true back end runs s6_scan (int64); its float surrogate (the gradient of the selective scan
# through A, D and four inputs) is not written yet.
SURROGATE.unsupported(
    "s6_scan",
    "QAT has no straight-through surrogate (backward) for s6_scan yet; the forward runs on the torch bit-true back end",
)
