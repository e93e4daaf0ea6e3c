"""Small float CMamba modules shared by the torch tests (import only where torch is present)."""

from __future__ import annotations

import torch

from model.cmamba import CMambaSlim

# A RevIN model small enough to trace, export and run in a test: 3 channels, 16 steps, one block.
TINY_REVIN_DIMS = dict(
    c_in=3, c_out=3, length=16, patch=4, stride=4, d_model=8, d_inner=16, n_blocks=1, d_conv=3, horizon=4, revin=True
)


def tiny_revin_cmamba(seed: int, **overrides: object) -> CMambaSlim:
    """TINY_REVIN_DIMS plus overrides (head_dim, revin_affine, ...), weights from torch seed `seed`, eval mode."""
    torch.manual_seed(seed)
    return CMambaSlim(**{**TINY_REVIN_DIMS, **overrides}).eval()
