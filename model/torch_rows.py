"""The row type of the torch bit-true back ends (model/torch_int16.py TORCH16, model/torch_int8.py
TORCH8): one row per op of the registry (intsim/ops.py), beside its torch kernel.

A row consumes the op's typed lowered parameters (intsim/int16.py, intsim/int8.py: the same
records the Numba kernels and codegen read; no constant is derived again here):
`prepare(step, device)` turns them into device tensors once per program, and
`run(prepared, inputs)` maps int64 input tensors [B, C, L] to (int64 output [B, C_out, L_out]
holding int16 / int8 values, saturation count as a 0-d int64 tensor).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from model.torch_fixedpoint import isqrt_rne, rne_div


@dataclass(frozen=True)
class TorchRow:
    prepare: Callable[[Any, torch.device], Any]                               # (lowered step, device) -> prepared
    run: Callable[[Any, list[torch.Tensor]], tuple[torch.Tensor, torch.Tensor]]  # (prepared, inputs) -> (y, sats)


def as_long(values, device) -> torch.Tensor:
    """An int64 tensor on `device` from a numpy integer array (or int)."""
    return torch.as_tensor(np.asarray(values, dtype=np.int64), device=device)


def revin_stats(x: torch.Tensor, zero_point: int, eps_q: int, var_up: int, std_up: int):
    """Spec 2.10 / 3.11 per sample and channel of a window x (int tensor [B, L, C], channels-last):
    xc = x - zero_point, S1, S2 over time, mean = rne_div(S1, L),
    std = isqrt_rne(max(rne_div((L S2 - S1^2) << var_up, L^2) + eps_q, 1) << std_up); int64 [B, 1, C].
    INT16: var_up = 0, std_up = 2G; INT8: var_up = 2G, std_up = 0."""
    xc = x.to(torch.int64) - zero_point
    n = xc.shape[1]
    s1, s2 = xc.sum(dim=1, keepdim=True), (xc * xc).sum(dim=1, keepdim=True)
    v = torch.clamp(rne_div((n * s2 - s1 * s1) << var_up, n * n) + eps_q, min=1)
    return rne_div(s1, n), isqrt_rne(v << std_up)


def per_forecast_value(stat: torch.Tensor, forecast: torch.Tensor) -> torch.Tensor:
    """A per-channel statistic [B, 1, C] spread over a channels-last forecast [B, M, R] whose
    channel-first [R, M] values split row-major into C chunks (chunk c = channel c, spec 2.10)."""
    cols, rows = forecast.shape[1], forecast.shape[2]
    per = rows * cols // stat.shape[2]
    index = (torch.arange(rows, device=forecast.device)[None, :] * cols
             + torch.arange(cols, device=forecast.device)[:, None]) // per          # [M, R]
    return stat[:, 0, :][:, index]
