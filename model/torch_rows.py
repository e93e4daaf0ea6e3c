"""The row type of the torch bit-true back ends (model/torch_int16.py TORCH16, model/torch_int8.py
TORCH8): one row per op of the registry (intsim/ops.py), beside its torch kernel.

A row consumes the op's typed lowered parameters (intsim/int16.py, intsim/int8.py: the same
records the Numba kernels and codegen read; no constant is derived again here):
`prepare(step, device)` turns them into device tensors once per program, and
`run(prepared, inputs)` maps integer input tensors [B, L, C] (channels-last) to (int32 output [B, L_out, C_out]
holding int16 / int8 values, saturation count as a 0-d int64 tensor).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike


@dataclass(frozen=True)
class TorchRow:
    prepare: Callable[[Any, torch.device], Any]  # (lowered step, device) -> prepared
    run: Callable[[Any, list[torch.Tensor]], tuple[torch.Tensor, torch.Tensor]]  # (prepared, inputs) -> (y, sats)


def as_long(values: ArrayLike, device: str | torch.device | None) -> torch.Tensor:
    """An int64 tensor on `device` from a numpy integer array (or int)."""
    return torch.as_tensor(np.asarray(values, dtype=np.int64), device=device)


def lookup(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """table[index] for a 1-D table and an integer index tensor of any shape (a gather; the
    fastest of torch's gathers on CPU)."""
    return torch.index_select(table, 0, index.reshape(-1)).reshape(index.shape)


def channel_chunks(forecast: torch.Tensor, channels: int) -> torch.Tensor:
    """A forecast [B, M, R] (channels-last view of per-sample [R, M]) as [B, C, n]: the row-major
    chunks of n = R*M/C values that belong to each window channel (spec 2.10, 3.11)."""
    return forecast.permute(0, 2, 1).reshape(forecast.shape[0], channels, -1)


def from_channel_chunks(chunks: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The inverse of `channel_chunks`: [B, C, n] back to the layout of `like` ([B, M, R])."""
    return chunks.reshape(like.shape[0], like.shape[2], like.shape[1]).permute(0, 2, 1)


def s6_recurrence(
    delta: torch.Tensor,
    xv: torch.Tensor,
    bm: torch.Tensor,
    cm: torch.Tensor,
    n_state: int,
    step: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """The S6 scan's loop over time, shared by both precisions (spec 2.12, 3.13): delta, xv int64
    [B, T, E], bm, cm int64 [B, T, N]; state h int64 [B, E, N], zero at t = 0. Each step is
    `step(d_t [B, E, 1], x_t [B, E], b_t [B, 1, N], c_t [B, 1, N], h) -> (new h, y_t [B, E], saturations)`.
    -> (y int32 [B, T, E], total saturations)."""
    h = torch.zeros(delta.shape[0], delta.shape[2], n_state, dtype=torch.int64, device=delta.device)
    y = torch.empty_like(delta)
    n_sat = torch.zeros((), dtype=torch.int64, device=delta.device)
    for t in range(delta.shape[1]):
        h, y[:, t], n = step(delta[:, t, :, None], xv[:, t], bm[:, t, None, :], cm[:, t, None, :], h)
        n_sat = n_sat + n
    return y.to(torch.int32), n_sat
