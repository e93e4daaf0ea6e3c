"""CMamba-slim in PyTorch (needs the 'train' extra). Architecture: docs/model.md.

Every op here has an exact counterpart in the exported graph (docs/model-format.md)
and in `intsim.float_ref`; `model/export.py` writes the layers in that order.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

DEFAULTS = dict(
    c_in=9,
    c_out=9,
    length=64,
    patch=8,
    stride=4,
    d_model=32,
    d_inner=64,
    n_blocks=2,
    d_conv=4,
    horizon=16,
    eps=1e-5,
    block="simple",
    d_state=16,
    dt_rank=None,
    channel_independent=False,
)
BLOCKS = ("simple", "s6")


def default_dt_rank(d_model: int) -> int:
    """Mamba's default dt_rank: ceil(d_model / 16)."""
    return math.ceil(d_model / 16)


class RMSNorm(nn.Module):
    """Over the channel axis of [B, D, T]: y = x / sqrt(mean_D(x^2) + eps) * g."""

    def __init__(self, d: int, eps: float = 1e-5):
        super().__init__()
        self.eps = float(eps)
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ms = x.pow(2).mean(dim=1, keepdim=True)
        return x * torch.rsqrt(ms + self.eps) * self.weight[None, :, None]


def revin_stats(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample and channel over time: (mean, sqrt(population variance + eps)), each [B, C, 1]."""
    mean = x.mean(dim=2, keepdim=True)
    return mean, torch.sqrt((x - mean).pow(2).mean(dim=2, keepdim=True) + eps)


def revin_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    """Graph op `revin_norm` (docs/quant-spec.md 2.10): (x - mean_t) / sqrt(var_t + eps) per
    sample and channel. A function of its own so that model/frontend.py traces it as one call."""
    mean, std = revin_stats(x, eps)
    return (x - mean) / std


def revin_denorm(y: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Graph op `revin_denorm`: the forecast y [B, C, H] times the window x's std plus its mean."""
    mean, std = revin_stats(x, eps)
    return y * std + mean


class RevIN(nn.Module):
    """Instance normalisation per sample and channel over time (docs/quant-spec.md 2.10, 3.11):
    `norm(x) = (x - mean_t) / sqrt(var_t + eps)` (population variance), `denorm(y, x)` multiplies
    the forecast back by the window's std and adds its mean (graph ops revin_norm, revin_denorm;
    the float reference is intsim.float_ref.revin_*).

    `affine` (optional): a learned per-channel `g * x_n + b` after norm and `(y - b) / g` before
    denorm. It has no op of its own: export folds it into patch_embed and the head
    (`fold_revin_affine`), which are linear in their input and output."""

    def __init__(self, eps: float = 1e-5, channels: int = 0, affine: bool = False):
        super().__init__()
        self.eps = float(eps)
        self.weight = nn.Parameter(torch.ones(channels)) if affine else None
        self.bias = nn.Parameter(torch.zeros(channels)) if affine else None

    def norm(self, x: torch.Tensor) -> torch.Tensor:
        x = revin_norm(x, self.eps)
        return x if self.weight is None else x * self.weight[None, :, None] + self.bias[None, :, None]

    def denorm(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.weight is not None:
            y = (y - self.bias[None, :, None]) / self.weight[None, :, None]
        return revin_denorm(y, x, self.eps)


def scan(lam: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """s_t = lam_t * s_{t-1} + (1 - lam_t) * u_t, s_{-1} = 0; lam, u [B, E, T].

    Vectorised over batch and channels; a Python loop over the T tokens only.
    """
    state = torch.zeros_like(u[:, :, 0])
    out = []
    for t in range(u.shape[2]):
        lt = lam[:, :, t]
        state = lt * state + (1.0 - lt) * u[:, :, t]
        out.append(state)
    return torch.stack(out, dim=2)


def s6_scan(
    delta: torch.Tensor, x: torch.Tensor, b: torch.Tensor, c: torch.Tensor, a: torch.Tensor, d: torch.Tensor
) -> torch.Tensor:
    """The Mamba-1 selective scan (docs/quant-spec.md 2.12): delta, x [B, E, T]; b, c [B, N, T];
    a [E, N] (= -exp(A_log)); d [E]. h_t = exp(delta_t a) h_{t-1} + delta_t b_t x_t, h_{-1} = 0;
    y_t = sum_n c_t h_t + d x_t. A Python loop over the T tokens only."""
    h = torch.zeros(x.shape[0], x.shape[1], a.shape[1], dtype=x.dtype, device=x.device)
    out = []
    for t in range(x.shape[2]):
        dt = delta[:, :, t, None]  # [B, E, 1]
        h = torch.exp(dt * a[None]) * h + (dt * x[:, :, t, None]) * b[:, None, :, t]
        out.append(torch.einsum("ben,bn->be", h, c[:, :, t]) + d[None, :] * x[:, :, t])
    return torch.stack(out, dim=2)


class CMambaBlock(nn.Module):
    def __init__(self, d_model: int, d_inner: int, d_conv: int, eps: float = 1e-5, dropout: float = 0.0):
        super().__init__()
        self.d_inner = d_inner
        self.drop = nn.Dropout(dropout)  # training only: identity in eval / export
        self.d_conv = d_conv
        self.norm = RMSNorm(d_model, eps)
        self.in_proj = nn.Conv1d(d_model, 2 * d_inner, 1, bias=True)
        # Depthwise; causal padding applied by hand in forward (left K-1, right 0).
        self.dwconv = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, bias=True)
        self.dt_proj = nn.Conv1d(d_inner, d_inner, 1, bias=True)
        self.out_proj = nn.Conv1d(d_inner, d_model, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.in_proj(self.norm(x))
        u, z = h[:, : self.d_inner], h[:, self.d_inner :]
        u = F.silu(self.dwconv(F.pad(u, (self.d_conv - 1, 0))))
        lam = torch.sigmoid(self.dt_proj(u))
        y = scan(lam, u) * F.silu(z)
        return x + self.drop(self.out_proj(y))


class S6Block(CMambaBlock):
    """A Mamba-1 block (docs/model.md): norm -> in_proj (u, z) -> causal dwconv -> SiLU ->
    x_proj (R + 2N rows: dt, B, C) -> dt_proj -> softplus = Delta -> selective scan with
    A = -exp(A_log) [E, N] and the skip D [E] -> gate with SiLU(z) -> out_proj -> residual.
    Initialisation as Mamba: A_log = log(1..N), D = 1, softplus(dt_proj.bias) log-uniform in
    [1e-3, 1e-1]."""

    def __init__(
        self,
        d_model: int,
        d_inner: int,
        d_conv: int,
        eps: float = 1e-5,
        dropout: float = 0.0,
        d_state: int = 16,
        dt_rank: int = 2,
    ):
        super().__init__(d_model, d_inner, d_conv, eps, dropout)
        self.d_state, self.dt_rank = d_state, dt_rank
        self.dt_proj = nn.Conv1d(dt_rank, d_inner, 1, bias=True)
        self.x_proj = nn.Conv1d(d_inner, dt_rank + 2 * d_state, 1, bias=True)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(d_inner, 1))
        self.D = nn.Parameter(torch.ones(d_inner))
        with torch.no_grad():
            nn.init.uniform_(self.dt_proj.weight, -(dt_rank**-0.5), dt_rank**-0.5)
            dt = torch.exp(torch.rand(d_inner) * (math.log(1e-1) - math.log(1e-3)) + math.log(1e-3))
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus^-1(dt)
            self.x_proj.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.in_proj(self.norm(x))
        u, z = h[:, : self.d_inner], h[:, self.d_inner :]
        u = F.silu(self.dwconv(F.pad(u, (self.d_conv - 1, 0))))
        xp = self.x_proj(u)
        r, n = self.dt_rank, self.d_state
        delta = F.softplus(self.dt_proj(xp[:, :r]))
        y = s6_scan(delta, u, xp[:, r : r + n], xp[:, r + n :], -torch.exp(self.A_log), self.D) * F.silu(z)
        return x + self.drop(self.out_proj(y))


class CMambaSlim(nn.Module):
    """x: float [B, C_in, L] (normalised) -> [B, C_out, H].

    patch_embed (Conv1d C_in->D, kernel P, stride S) -> N x CMambaBlock -> norm_f ->
    [head_proj (1x1 Conv1d D -> head_dim) when head_dim > 0] ->
    head (Conv1d D (or head_dim) -> C_out*H, kernel T) whose [B, C_out*H, 1] output is read as
    [B, C_out, H] (row c*H + h).

    `channel_independent` (`train --channels independent`): every channel is a series of its own
    through the same weights, y[:, c] = body(x[:, c:c+1]) (channels folded into the batch; the
    body's C_in = C_out = 1, RevIN per series); the exported graph describes one series
    (docs/model-format.md, "Channel-independent graphs").

    `dropout` (training regulariser) drops block outputs before the residual add and
    the head's input; it is the identity in eval mode, so the exported graph has no
    dropout layer and computes exactly `module.eval()(x)`.
    """

    def __init__(
        self,
        c_in: int = 9,
        c_out: int = 9,
        length: int = 64,
        patch: int = 8,
        stride: int = 4,
        d_model: int = 32,
        d_inner: int = 64,
        n_blocks: int = 2,
        d_conv: int = 4,
        horizon: int = 16,
        eps: float = 1e-5,
        dropout: float = 0.0,
        revin: bool = False,
        head_dim: int = 0,
        revin_affine: bool = False,
        block: str = "simple",
        d_state: int = 16,
        dt_rank: int | None = None,
        channel_independent: bool = False,
    ):
        super().__init__()
        if length < patch:
            raise ValueError(f"lookback {length} is shorter than the patch {patch}")
        if block not in BLOCKS:
            raise ValueError(f"unknown block '{block}' (known: {', '.join(BLOCKS)})")
        if channel_independent and c_in != c_out:
            raise ValueError(f"channel-independent needs as many output channels as input channels ({c_in} != {c_out})")
        self.hyper = dict(
            c_in=c_in,
            c_out=c_out,
            length=length,
            patch=patch,
            stride=stride,
            d_model=d_model,
            d_inner=d_inner,
            n_blocks=n_blocks,
            d_conv=d_conv,
            horizon=horizon,
            eps=float(eps),
            revin=bool(revin),
            head_dim=int(head_dim),
            block=block,
        )
        if channel_independent:
            self.hyper["channel_independent"] = True
        # the channels the layers see: one series (channel-independent) or the whole window
        body_in, body_out = (1, 1) if channel_independent else (c_in, c_out)
        self.body_channels = (body_in, body_out)
        if revin_affine and (not revin or c_in != c_out):
            raise ValueError("--revin-affine needs --revin and as many output channels as input channels")
        self.revin = RevIN(eps, body_in, revin_affine) if revin else None
        self.tokens = (length - patch) // stride + 1
        self.patch_embed = nn.Conv1d(body_in, d_model, patch, stride=stride, bias=True)
        if block == "s6":
            dt_rank = dt_rank or default_dt_rank(d_model)
            self.hyper.update(d_state=d_state, dt_rank=dt_rank)
            self.blocks = nn.ModuleList(
                S6Block(d_model, d_inner, d_conv, eps, dropout, d_state, dt_rank) for _ in range(n_blocks)
            )
        else:
            self.blocks = nn.ModuleList(CMambaBlock(d_model, d_inner, d_conv, eps, dropout) for _ in range(n_blocks))
        self.norm_f = RMSNorm(d_model, eps)
        self.drop = nn.Dropout(dropout)
        # head_proj narrows the flatten head's input (the head holds C_out*H*width*T weights)
        self.head_proj = nn.Conv1d(d_model, head_dim, 1, bias=True) if head_dim else None
        self.head = nn.Conv1d(head_dim or d_model, body_out * horizon, self.tokens, stride=1, bias=True)

    def fold(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, L] -> the series the layers see: [B*C, 1, L] channel-independent, else unchanged."""
        return x.reshape(-1, self.body_channels[0], x.shape[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(self.fold(x))  # [B*C, 1, H] channel-independent: series b*C + c is window b, channel c
        return y.reshape(x.shape[0], self.hyper["c_out"], self.hyper["horizon"])

    def body(self, x: torch.Tensor) -> torch.Tensor:
        """The layers of the graph on x [N, C_body, L] -> [N, C_body_out, H]."""
        h = self.patch_embed(self.revin.norm(x) if self.revin is not None else x)
        for blk in self.blocks:
            h = blk(h)
        h = self.drop(self.norm_f(h))
        if self.head_proj is not None:
            h = self.head_proj(h)
        y = self.head(h)  # [B, C_out*H, 1]
        y = y.reshape(x.shape[0], self.body_channels[1], self.hyper["horizon"])
        return self.revin.denorm(y, x) if self.revin is not None else y

    @torch.no_grad()
    def block_gains(self, x: torch.Tensor) -> list[float]:
        """Per block: RMS(block output - block input) / RMS(block input) on batch x (eval).

        A value near 0 means the block has died (its weights decayed to nothing)."""
        was = self.training
        self.eval()
        x = self.fold(x)
        h = self.patch_embed(self.revin.norm(x) if self.revin is not None else x)
        gains = []
        for blk in self.blocks:
            out = blk(h)
            gains.append(float((out - h).pow(2).mean().sqrt() / h.pow(2).mean().sqrt().clamp_min(1e-30)))
            h = out
        self.train(was)
        return gains

    def n_weights(self) -> int:
        return sum(p.numel() for p in self.parameters())
