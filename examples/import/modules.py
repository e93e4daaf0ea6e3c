"""Example PyTorch modules for the front end (docs/import.md):

    cmamba-hls import-module examples/import/modules.py:mamba_style --out models/mamba_style

Each factory returns `(module, example_input)`; the example input [B, C_in, L] only sets the
shapes the tracer propagates. `mamba_style` is written the way Mamba code usually is: tokens
time-major [B, L, D], `nn.Linear` projections, a fused `in_proj` cut with `chunk`, a depthwise
`Conv1d(padding=K-1)` whose first L outputs are kept, `nn.RMSNorm`, a flattened `nn.Linear` head,
and its last block has no residual connection. `with_layernorm` / `with_gelu` use ops the
registry lacks: importing them fails with the node named.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.cmamba import CMambaSlim, scan


class MambaStyleBlock(nn.Module):
    """[B, L, D] -> [B, L, D]; `residual=False` returns the block's update alone."""

    def __init__(self, d_model: int, d_inner: int, d_conv: int, residual: bool = True):
        super().__init__()
        self.residual = residual
        self.norm = nn.RMSNorm(d_model, eps=1e-5)
        self.in_proj = nn.Linear(d_model, 2 * d_inner)
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1)
        self.dt_proj = nn.Linear(d_inner, d_inner)
        self.out_proj = nn.Linear(d_inner, d_model)
        self.act = nn.SiLU()

    def forward(self, x):
        length = x.shape[1]
        u, z = self.in_proj(self.norm(x)).chunk(2, dim=-1)  # [B, L, E] each
        u = self.act(self.conv1d(u.transpose(1, 2))[..., :length])  # causal: [B, E, L]
        lam = torch.sigmoid(self.dt_proj(u.transpose(1, 2))).transpose(1, 2)
        y = scan(lam, u).transpose(1, 2) * F.silu(z)  # [B, L, E]
        out = self.out_proj(y)
        return x + out if self.residual else out


class MambaStyle(nn.Module):
    """x [B, C, L] -> forecast [B, C, H]."""

    def __init__(
        self,
        c: int = 9,
        length: int = 64,
        patch: int = 8,
        stride: int = 4,
        d_model: int = 12,
        d_inner: int = 20,
        d_conv: int = 3,
        horizon: int = 8,
        residual=(True, False),
    ):
        super().__init__()
        self.c, self.horizon = c, horizon
        tokens = (length - patch) // stride + 1
        self.embed = nn.Conv1d(c, d_model, patch, stride=stride)
        self.layers = nn.ModuleList(MambaStyleBlock(d_model, d_inner, d_conv, r) for r in residual)
        self.norm_f = nn.RMSNorm(d_model)
        self.head = nn.Linear(tokens * d_model, c * horizon)

    def forward(self, x):
        h = self.embed(x).transpose(1, 2)  # [B, T, D]
        for layer in self.layers:
            h = layer(h)
        y = self.head(self.norm_f(h).flatten(1))  # [B, C*H]
        return y.view(-1, self.c, self.horizon)


def _randomised(module: nn.Module, seed: int) -> nn.Module:
    """Non-trivial gains and biases (fresh modules start at 1 and small values)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim == 1:
                base = 1.0 if "norm" in name else 0.0
                p.copy_(base + 0.3 * torch.randn(p.shape, generator=g))
    return module.eval()


def mamba_style():
    """Untrained (random weights), sized for the shipped data: C=9, L=64, H=8."""
    torch.manual_seed(0)
    return _randomised(MambaStyle(), 1), torch.randn(2, 9, 64)


def cmamba_wide():
    """CMamba-slim with other widths and depth: C=4, L=32, P=4, S=2, D=16, E=24, N=3, K=3, H=5."""
    torch.manual_seed(0)
    module = CMambaSlim(
        c_in=4, c_out=4, length=32, patch=4, stride=2, d_model=16, d_inner=24, n_blocks=3, d_conv=3, horizon=5
    )
    return _randomised(module, 2), torch.randn(2, 4, 32)


class _Swapped(nn.Module):
    def __init__(self, act: nn.Module):
        super().__init__()
        self.embed = nn.Conv1d(3, 8, 4, stride=4)
        self.act = act
        self.head = nn.Conv1d(8, 6, 4)

    def forward(self, x):
        return self.head(self.act(self.embed(x))).reshape(-1, 3, 2)


def with_layernorm():
    class WithLayerNorm(_Swapped):
        def forward(self, x):
            h = self.embed(x).transpose(1, 2)
            h = self.act(h).transpose(1, 2)
            return self.head(h).reshape(-1, 3, 2)

    return WithLayerNorm(nn.LayerNorm(8)), torch.randn(1, 3, 16)


def with_gelu():
    return _Swapped(nn.GELU()), torch.randn(1, 3, 16)
