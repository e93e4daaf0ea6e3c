"""The CMamba-slim layer list (written once: model/export.py exports a trained network
with it) and random CMamba-slim model directories (numpy only) for tests, benchmarks and
property tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from intsim.graph import FORMAT_NAME, FORMAT_VERSION, write_json_atomic

BLOCKS = ("simple", "s6")


def _block_layers(p: str, prev: str, d_conv: int, eps: float, block: str) -> list[dict]:
    """One block's layers (docs/model.md): `simple` (one decay per channel, scan) or `s6`
    (Mamba-1: x_proj split into its dt / B / C rows, dt_proj, softplus, s6_scan)."""
    head = [
        {"name": p + "norm", "op": "rmsnorm", "inputs": [prev], "attrs": {"eps": eps}},
        {"name": p + "in_proj_u", "op": "conv1x1", "inputs": [p + "norm"]},
        {"name": p + "in_proj_z", "op": "conv1x1", "inputs": [p + "norm"]},
        {"name": p + "dwconv", "op": "dwconv", "inputs": [p + "in_proj_u"], "attrs": {"kernel": d_conv}},
        {"name": p + "silu_u", "op": "silu", "inputs": [p + "dwconv"]},
    ]
    if block == "simple":
        mixer = [
            {"name": p + "dt_proj", "op": "conv1x1", "inputs": [p + "silu_u"]},
            {"name": p + "lam", "op": "sigmoid", "inputs": [p + "dt_proj"]},
            {"name": p + "scan", "op": "scan", "inputs": [p + "lam", p + "silu_u"]},
        ]
    elif block == "s6":
        mixer = [
            {"name": p + "x_proj_dt", "op": "conv1x1", "inputs": [p + "silu_u"]},
            {"name": p + "x_proj_B", "op": "conv1x1", "inputs": [p + "silu_u"]},
            {"name": p + "x_proj_C", "op": "conv1x1", "inputs": [p + "silu_u"]},
            {"name": p + "dt_proj", "op": "conv1x1", "inputs": [p + "x_proj_dt"]},
            {"name": p + "delta", "op": "softplus", "inputs": [p + "dt_proj"]},
            {
                "name": p + "scan",
                "op": "s6_scan",
                "inputs": [p + "delta", p + "silu_u", p + "x_proj_B", p + "x_proj_C"],
            },
        ]
    else:
        raise ValueError(f"unknown block '{block}' (known: {', '.join(BLOCKS)})")
    return (
        head
        + mixer
        + [
            {"name": p + "silu_z", "op": "silu", "inputs": [p + "in_proj_z"]},
            {"name": p + "gate", "op": "mul", "inputs": [p + "scan", p + "silu_z"]},
            {"name": p + "out_proj", "op": "conv1x1", "inputs": [p + "gate"]},
            {"name": p + "residual", "op": "add", "inputs": [prev, p + "out_proj"]},
        ]
    )


def cmamba_layers(
    n_blocks: int,
    patch: int,
    stride: int,
    d_conv: int,
    tokens: int,
    eps: float,
    revin: bool = False,
    head_proj: bool = False,
    block: str = "simple",
) -> list[dict]:
    """Layer list (without weight files) of CMamba-slim, docs/model.md: the one definition of
    its layer names, ops, inputs and attributes (model/export.py and make_random_model use it).
    revin: instance normalisation around the network (`revin_in` first, `revin_out` last, which
    takes the window `input` as its second input and is then the output tensor). head_proj: a 1x1
    conv `head_proj` between norm_f and the flatten head (a narrower head input)."""
    layers = [{"name": "revin_in", "op": "revin_norm", "inputs": ["input"], "attrs": {"eps": eps}}] if revin else []
    layers += [
        {
            "name": "patch_embed",
            "op": "conv_kx1",
            "inputs": [layers[0]["name"] if revin else "input"],
            "attrs": {"kernel": patch, "stride": stride},
        }
    ]
    prev = "patch_embed"
    for n in range(n_blocks):
        layers += _block_layers(f"blk{n}.", prev, d_conv, eps, block)
        prev = f"blk{n}.residual"
    layers += [{"name": "norm_f", "op": "rmsnorm", "inputs": [prev], "attrs": {"eps": eps}}]
    if head_proj:
        layers.append({"name": "head_proj", "op": "conv1x1", "inputs": ["norm_f"]})
    layers.append(
        {"name": "head", "op": "conv_kx1", "inputs": [layers[-1]["name"]], "attrs": {"kernel": tokens, "stride": 1}}
    )
    if revin:
        layers.append({"name": "revin_out", "op": "revin_denorm", "inputs": ["head", "input"], "attrs": {"eps": eps}})
    return layers


def block_weight_shapes(
    d_model: int, d_inner: int, d_conv: int, block: str = "simple", d_state: int = 16, dt_rank: int = 2
) -> dict[str, dict[str, tuple]]:
    """Weight shapes of one block's layers, by the layer-name suffix of `cmamba_layers`."""
    shapes = {
        "norm": {"weight": (d_model,)},
        "in_proj_u": {"weight": (d_inner, d_model), "bias": (d_inner,)},
        "in_proj_z": {"weight": (d_inner, d_model), "bias": (d_inner,)},
        "dwconv": {"weight": (d_inner, d_conv), "bias": (d_inner,)},
        "out_proj": {"weight": (d_model, d_inner), "bias": (d_model,)},
    }
    if block == "s6":
        shapes.update(
            {
                "x_proj_dt": {"weight": (dt_rank, d_inner), "bias": (dt_rank,)},
                "x_proj_B": {"weight": (d_state, d_inner), "bias": (d_state,)},
                "x_proj_C": {"weight": (d_state, d_inner), "bias": (d_state,)},
                "dt_proj": {"weight": (d_inner, dt_rank), "bias": (d_inner,)},
                "scan": {"A": (d_inner, d_state), "D": (d_inner,)},
            }
        )
    else:
        shapes["dt_proj"] = {"weight": (d_inner, d_inner), "bias": (d_inner,)}
    return shapes


def make_random_model(
    out_dir: str | Path,
    c_in: int = 3,
    length: int = 16,
    patch: int = 4,
    stride: int = 4,
    d_model: int = 8,
    d_inner: int = 16,
    n_blocks: int = 1,
    d_conv: int = 3,
    horizon: int = 4,
    eps: float = 1e-5,
    seed: int = 0,
    weight_scale: float = 1.0,
    revin: bool = False,
    block: str = "simple",
    d_state: int = 4,
    dt_rank: int = 2,
    channel_independent: bool = False,
) -> Path:
    """Write a random (untrained) CMamba-slim model directory and return its path.
    block: "simple" or "s6" (then d_state N and dt_rank R size the S6 mixer).
    channel_independent: the layers describe one series (input.channel_independent), run per channel."""
    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    (out_dir / "weights").mkdir(parents=True, exist_ok=True)
    tokens = (length - patch) // stride + 1
    c_out = c_in
    body = 1 if channel_independent else c_in  # the channels the layers see
    shapes = {
        "patch_embed": {"weight": (d_model, body, patch), "bias": (d_model,)},
        "norm_f": {"weight": (d_model,)},
        "head": {"weight": (body * horizon, d_model, tokens), "bias": (body * horizon,)},
    }
    per_block = block_weight_shapes(d_model, d_inner, d_conv, block, d_state, dt_rank)
    for n in range(n_blocks):
        shapes.update({f"blk{n}.{k}": v for k, v in per_block.items()})
    layers = cmamba_layers(n_blocks, patch, stride, d_conv, tokens, eps, revin, block=block)
    for layer in layers:
        if layer["name"] not in shapes:
            continue
        layer["weights"] = {}
        for key, shape in shapes[layer["name"]].items():
            if layer["op"] == "rmsnorm":
                arr = 1.0 + 0.2 * rng.standard_normal(shape)
            elif key == "A":  # Mamba's init A = -(1 .. N) per channel, perturbed
                arr = -np.arange(1, shape[1] + 1)[None, :] * np.exp(0.2 * rng.standard_normal(shape))
            elif key == "D":
                arr = 1.0 + 0.2 * rng.standard_normal(shape)
            else:
                fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
                arr = weight_scale * rng.standard_normal(shape) / np.sqrt(fan_in)
                if key == "bias":
                    arr = 0.1 * weight_scale * rng.standard_normal(shape)
            rel = f"weights/{layer['name']}.{key}.npy"
            np.save(out_dir / rel, arr.astype(np.float32))
            layer["weights"][key] = rel
    cols = [f"ch{i}" for i in range(c_in)]
    raw = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "name": f"random-seed{seed}",
        "input": {
            "name": "input",
            "channels": c_in,
            "length": length,
            "columns": cols,
            **({"channel_independent": True} if channel_independent else {}),
        },
        "output": {"tensor": layers[-1]["name"], "channels": c_out, "horizon": horizon, "columns": cols},
        "normalization": {
            "input": {"mean": [0.0] * c_in, "std": [1.0] * c_in},
            "output": {"mean": [0.0] * c_out, "std": [1.0] * c_out},
        },
        "hyper": {
            "d_model": d_model,
            "d_inner": d_inner,
            "n_blocks": n_blocks,
            "patch": patch,
            "stride": stride,
            "d_conv": d_conv,
            "horizon": horizon,
            "eps": eps,
            **({"revin": True} if revin else {}),
            **({"block": "s6", "d_state": d_state, "dt_rank": dt_rank} if block == "s6" else {}),
        },
        "layers": layers,
    }
    write_json_atomic(out_dir / "model.json", raw)
    return out_dir
