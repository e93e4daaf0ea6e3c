"""Export a trained CMambaSlim to a model directory (docs/model-format.md).

Writes ``model.json`` + ``weights/*.npy`` (float32, little-endian, C order) into a
temporary sibling directory and renames it into place, so a failure leaves nothing
half-written (into an existing model directory, `weights/` and `model.json` are
swapped in by rename; other files there, e.g. a README, are kept). The layer list is
`intsim.synth.cmamba_layers`, shared with the random-model builder (docs/model.md).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from intsim.errors import CmambaError
from intsim.graph import FORMAT_NAME, FORMAT_VERSION
from intsim.synth import cmamba_layers

if TYPE_CHECKING:
    from model.cmamba import CMambaSlim


def _np(t) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().double().numpy().astype("<f4"))


def _stats(normalization: dict, c: int, where: str) -> dict:
    mean = [float(v) for v in normalization["mean"]]
    std = [float(v) for v in normalization["std"]]
    if len(mean) != c or len(std) != c:
        raise ValueError(f"{where}: expected {c} channels, got {len(mean)} means / {len(std)} stds")
    return {"mean": mean, "std": std}


def _swap_into(tmp: Path, out_dir: Path) -> None:
    """Replace out_dir/weights and out_dir/model.json by the complete ones in `tmp`.

    Other files in out_dir (a README, plots) are kept. Any quantization parameters in
    the old model.json are dropped: they belong to the old weights.
    """
    weights = out_dir / "weights"
    old = None
    if weights.exists():
        old = Path(tempfile.mkdtemp(prefix=".weights.old-", dir=out_dir))
        os.rmdir(old)
        os.rename(weights, old)
    try:
        os.rename(tmp / "weights", weights)
    except BaseException:
        if old is not None:
            os.rename(old, weights)
        raise
    try:
        os.replace(tmp / "model.json", out_dir / "model.json")
    except BaseException:
        shutil.rmtree(weights, ignore_errors=True)
        if old is not None:
            os.rename(old, weights)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def check_output_dir(out_dir: str | Path) -> Path:
    """Raise unless `out_dir` is absent, empty, or an existing model directory (which
    export_model would replace). Cheap: call it before training to fail early."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        if not out_dir.is_dir():
            raise CmambaError(f"{out_dir}: exists and is not a directory")
        if any(out_dir.iterdir()) and not _is_model_dir(out_dir):
            raise CmambaError(
                f"{out_dir}: refusing to write a model into a non-empty directory "
                f"that holds no model.json of format '{FORMAT_NAME}'"
            )
    return out_dir


def _is_model_dir(out_dir: Path) -> bool:
    """A model directory of this tool: its model.json parses and names our format (a file that
    is merely called model.json does not make a folder ours)."""
    try:
        raw = json.loads((out_dir / "model.json").read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(raw, dict) and raw.get("format") == FORMAT_NAME


def fold_revin_affine(module: CMambaSlim, weights: dict) -> None:
    """Fold a learned RevIN affine (model.cmamba.RevIN) into the convs around it, in float64:
    patch_embed(g x_n + b) = (W g) x_n + (bias + sum W b); (head(h) - b_c) / g_c per output row
    c*H + h. The graph then has plain revin_norm / revin_denorm and computes the same function."""
    rev = module.revin
    if rev is None or rev.weight is None:
        return
    g, b = (t.detach().double().cpu().numpy() for t in (rev.weight, rev.bias))
    pe = {k: v.astype(np.float64) for k, v in weights["patch_embed"].items()}
    weights["patch_embed"] = {
        "weight": pe["weight"] * g[None, :, None],
        "bias": pe["bias"] + np.einsum("oik,i->o", pe["weight"], b),
    }
    rows = np.repeat(np.arange(len(g)), module.hyper["horizon"])  # head row c*H + h -> channel c
    hd = {k: v.astype(np.float64) for k, v in weights["head"].items()}
    weights["head"] = {"weight": hd["weight"] / g[rows, None, None], "bias": (hd["bias"] - b[rows]) / g[rows]}


def layer_weights(module: CMambaSlim) -> dict[str, dict[str, np.ndarray]]:
    """Layer name -> {weight key: float32 array} of a CMambaSlim, by the names of
    `intsim.synth.cmamba_layers` (the one CMamba-slim layer list)."""
    e = module.hyper["d_inner"]
    out = {"patch_embed": {"weight": _np(module.patch_embed.weight), "bias": _np(module.patch_embed.bias)}}
    for n, blk in enumerate(module.blocks):
        p = f"blk{n}."
        w_in = blk.in_proj.weight[:, :, 0]
        b_in = blk.in_proj.bias
        out[p + "norm"] = {"weight": _np(blk.norm.weight)}
        out[p + "in_proj_u"] = {"weight": _np(w_in[:e]), "bias": _np(b_in[:e])}
        out[p + "in_proj_z"] = {"weight": _np(w_in[e:]), "bias": _np(b_in[e:])}
        out[p + "dwconv"] = {"weight": _np(blk.dwconv.weight[:, 0, :]), "bias": _np(blk.dwconv.bias)}
        out[p + "dt_proj"] = {"weight": _np(blk.dt_proj.weight[:, :, 0]), "bias": _np(blk.dt_proj.bias)}
        if module.hyper["block"] == "s6":
            # x_proj's R + 2N rows as three exact 1x1 convs (dt, B, C); A = -exp(A_log) as a constant
            r, n = blk.dt_rank, blk.d_state
            w_x, b_x = blk.x_proj.weight[:, :, 0], blk.x_proj.bias
            for key, rows in (
                ("x_proj_dt", slice(0, r)),
                ("x_proj_B", slice(r, r + n)),
                ("x_proj_C", slice(r + n, None)),
            ):
                out[p + key] = {"weight": _np(w_x[rows]), "bias": _np(b_x[rows])}
            out[p + "scan"] = {"A": _np(-blk.A_log.detach().double().exp()), "D": _np(blk.D)}
        out[p + "out_proj"] = {"weight": _np(blk.out_proj.weight[:, :, 0]), "bias": _np(blk.out_proj.bias)}
    out["norm_f"] = {"weight": _np(module.norm_f.weight)}
    if module.head_proj is not None:
        out["head_proj"] = {"weight": _np(module.head_proj.weight[:, :, 0]), "bias": _np(module.head_proj.bias)}
    out["head"] = {"weight": _np(module.head.weight), "bias": _np(module.head.bias)}
    fold_revin_affine(module, out)
    return out


def model_layers(module: CMambaSlim) -> list[tuple[dict, dict]]:
    """[(layer entry without 'weights', {key: float32 array})] in execution order."""
    h = module.hyper
    weights = layer_weights(module)
    entries = cmamba_layers(
        len(module.blocks),
        h["patch"],
        h["stride"],
        h["d_conv"],
        module.tokens,
        float(h["eps"]),
        h.get("revin", False),
        bool(h.get("head_dim")),
        h["block"],
    )
    return [(entry, weights.get(entry["name"], {})) for entry in entries]


def export_model(
    module: CMambaSlim,
    out_dir: str | Path,
    normalization: dict | None,
    columns: Sequence[str] | None,
    training_info: dict | None = None,
    name: str = "cmamba-slim",
    output_columns: Sequence[str] | None = None,
    check: Callable[[Path], object] | None = None,
    quant: dict | None = None,
) -> Path:
    """Write `module` (a CMambaSlim) as a model directory at `out_dir`; returns the path.

    normalization: either {"mean", "std"} (same stats for input and output channels,
    the forecasting case C_in == C_out) or {"input": {...}, "output": {...}}; None: identity.
    columns: input column names (output columns default to the same); None: unnamed.
    training_info: stored as model.json "training" (command, seed, metrics, ...).
    quant: model.json "quant" (quantization parameters that belong to these weights).
    An existing model in `out_dir` is replaced only after the new one is complete (and has
    passed `check`, see write_model_dir).
    """
    h = module.hyper
    hyper = {
        "d_model": h["d_model"],
        "d_inner": h["d_inner"],
        "n_blocks": h["n_blocks"],
        "patch": h["patch"],
        "stride": h["stride"],
        "d_conv": h["d_conv"],
        "horizon": h["horizon"],
        "eps": float(h["eps"]),
    }
    if h["block"] == "s6":
        hyper.update(block="s6", d_state=h["d_state"], dt_rank=h["dt_rank"])
    if h.get("revin"):
        hyper["revin"] = True
    if h.get("head_dim"):
        hyper["head_dim"] = h["head_dim"]
    layers = model_layers(module)
    header = model_header(
        name,
        (h["c_in"], h["length"]),
        layers[-1][0]["name"],
        (h["c_out"], h["horizon"]),
        normalization,
        columns,
        output_columns,
        hyper,
        training_info,
        quant,
        channel_independent=bool(h.get("channel_independent")),
    )
    return write_model_dir(out_dir, layers, header, check)


def model_header(
    name: str,
    input_shape: tuple[int, int],
    output_tensor: str,
    output_shape: tuple[int, int],
    normalization: dict | None = None,
    columns: Sequence[str] | None = None,
    output_columns: Sequence[str] | None = None,
    hyper: dict | None = None,
    training_info: dict | None = None,
    quant: dict | None = None,
    channel_independent: bool = False,
) -> dict:
    """model.json's keys other than the layers. input_shape (C_in, L); output_shape (C_out, H).
    channel_independent: the layers describe one series (input.channel_independent, written only when true).
    normalization: {"mean", "std"} (both sides), {"input", "output"}, or None (identity).
    columns: input names or None (unnamed); output_columns default to `columns` when C_in == C_out."""
    (c_in, length), (c_out, horizon) = input_shape, output_shape
    if output_columns is None and columns is not None and c_in == c_out:
        output_columns = columns
    inp = {"name": "input", "channels": c_in, "length": length}
    if channel_independent:
        inp["channel_independent"] = True
    out = {"tensor": output_tensor, "channels": c_out, "horizon": horizon}
    for block, cols, n, what in ((inp, columns, c_in, "input"), (out, output_columns, c_out, "output")):
        if cols is not None:
            cols = [str(c) for c in cols]
            if len(cols) != n:
                raise CmambaError(f"columns: the model has {n} {what} channel(s), got {len(cols)} {what} column names")
            block["columns"] = cols
    header = {
        "name": name,
        "input": inp,
        "output": out,
        "normalization": normalization_block(normalization, c_in, c_out),
    }
    if hyper is not None:
        header["hyper"] = hyper
    header["training"] = training_info or {}
    if quant:
        header["quant"] = quant
    return header


def normalization_block(normalization: dict | None, c_in: int, c_out: int) -> dict:
    """model.json's "normalization" from {"mean", "std"} (the same statistics for input and
    output channels), {"input": {...}, "output": {...}}, or None (identity: mean 0, std 1)."""
    if normalization is None:
        return {
            "input": {"mean": [0.0] * c_in, "std": [1.0] * c_in},
            "output": {"mean": [0.0] * c_out, "std": [1.0] * c_out},
        }
    try:
        if "input" in normalization:
            return {
                "input": _stats(normalization["input"], c_in, "input"),
                "output": _stats(normalization["output"], c_out, "output"),
            }
        return {"input": _stats(normalization, c_in, "input"), "output": _stats(normalization, c_out, "output")}
    except (KeyError, TypeError, ValueError) as exc:
        raise CmambaError(
            f"normalization: {exc if isinstance(exc, ValueError) else f'missing or malformed {exc}'}"
        ) from exc


def write_model_dir(
    out_dir: str | Path,
    layers: Iterable[tuple[dict, dict]],
    header: dict,
    check: Callable[[Path], object] | None = None,
) -> Path:
    """Write a model directory: `layers` [(entry without 'weights', {key: array})] in execution
    order, each array saved as float32 weights/<layer>.<key>.npy; `header` the other model.json
    keys (name, input, output, normalization, ...). `check(tmp_dir)`, when given, runs on the
    complete new directory before it replaces `out_dir` (raise to abandon it)."""
    out_dir = check_output_dir(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700; a model dir is shared
        (tmp / "weights").mkdir()
        entries = []
        for entry, weights in layers:
            entry = dict(entry)
            if weights:
                entry["weights"] = {}
                for key, arr in weights.items():
                    arr = np.ascontiguousarray(np.asarray(arr).astype("<f4"))
                    if not np.all(np.isfinite(arr)):
                        raise CmambaError(f"layer '{entry['name']}': {key} has non-finite values (training diverged?)")
                    rel = f"weights/{entry['name']}.{key}.npy"
                    np.save(tmp / rel, arr, allow_pickle=False)
                    entry["weights"][key] = rel
            entries.append(entry)
        head = {k: v for k, v in header.items() if k not in ("training", "quant")}
        tail = {k: header[k] for k in ("training", "quant") if k in header}
        raw = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **head, "layers": entries, **tail}
        with open(tmp / "model.json", "w") as fh:
            json.dump(raw, fh, indent=1)
            fh.write("\n")
        if check is not None:
            check(tmp)
        if not out_dir.exists():
            os.rename(tmp, out_dir)  # fresh directory: one atomic rename
            return out_dir
        _swap_into(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir
