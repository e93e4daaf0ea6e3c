"""Import an exported model directory back into PyTorch (needs the 'train' extra).

The inverse of model/export.py: `load_torch_model(MODEL_DIR)` builds a
`CMambaSlim` from model.json's hyper-parameters and copies every weight from
the validated graph, so `module.eval()(x)` equals the fp32 reference.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from intsim.errors import ModelFormatError
from intsim.graph import Graph, load_graph
from model.cmamba import CMambaSlim


def sizes_from_weights(graph: Graph) -> dict:
    """The CMamba-slim hyper-parameters the layers' weights imply (no allocation)."""
    try:
        embed, inner = graph.layer("patch_embed"), graph.layer("blk0.in_proj_u")
        n_blocks = sum(1 for layer in graph.layers if layer.name.endswith(".norm") and layer.name.startswith("blk"))
        sizes = {
            "d_model": embed.weights["weight"].shape[0],
            "d_inner": inner.weights["weight"].shape[0],
            "n_blocks": n_blocks,
            "patch": embed.attrs["kernel"],
            "stride": embed.attrs["stride"],
            "d_conv": graph.layer("blk0.dwconv").attrs["kernel"],
            "horizon": graph.horizon,
            **(
                {"head_dim": graph.layer("head_proj").weights["weight"].shape[0]}
                if any(layer.name == "head_proj" for layer in graph.layers)
                else {}
            ),
        }
        if graph.layer("blk0.scan").op == "s6_scan":
            sizes.update(
                block="s6",
                d_state=graph.layer("blk0.x_proj_B").weights["weight"].shape[0],
                dt_rank=graph.layer("blk0.x_proj_dt").weights["weight"].shape[0],
            )
        return sizes
    except KeyError as exc:
        raise ModelFormatError(
            f"{graph.path}: not a CMamba-slim graph (no layer {exc}): cannot rebuild it in torch"
        ) from None


def load_torch_model(model_dir: str | Path) -> CMambaSlim:
    graph = load_graph(model_dir)
    hyper = graph.raw.get("hyper") or {}
    sizes = sizes_from_weights(graph)
    for key, value in sizes.items():  # before any allocation: absurd sizes never reach torch
        if key not in hyper:
            raise ModelFormatError(f"{model_dir}: model.json 'hyper' lacks '{key}' (needed to rebuild the torch model)")
        if hyper[key] != value:
            raise ModelFormatError(
                f"{model_dir}: model.json hyper.{key} = {hyper[key]} does not match the layer weights ({value})"
            )
    module = CMambaSlim(
        c_in=graph.input_shape[0],
        c_out=graph.output_channels,
        length=graph.input_shape[1],
        horizon=graph.horizon,
        eps=hyper.get("eps", 1e-5),
        revin=any(layer.op == "revin_norm" for layer in graph.layers),
        channel_independent=graph.channel_independent,
        **{k: v for k, v in sizes.items() if k != "horizon"},
    )

    def put(param, array):
        value = torch.from_numpy(np.asarray(array, dtype=np.float32)).reshape(param.shape)
        with torch.no_grad():
            param.copy_(value)

    w = {layer.name: layer.weights for layer in graph.layers}
    put(module.patch_embed.weight, w["patch_embed"]["weight"])
    put(module.patch_embed.bias, w["patch_embed"]["bias"])
    for n, blk in enumerate(module.blocks):
        p = f"blk{n}."
        put(blk.norm.weight, w[p + "norm"]["weight"])
        put(blk.in_proj.weight, np.concatenate([w[p + "in_proj_u"]["weight"], w[p + "in_proj_z"]["weight"]]))
        put(blk.in_proj.bias, np.concatenate([w[p + "in_proj_u"]["bias"], w[p + "in_proj_z"]["bias"]]))
        put(blk.dwconv.weight, w[p + "dwconv"]["weight"])
        put(blk.dwconv.bias, w[p + "dwconv"]["bias"])
        for key in ("dt_proj", "out_proj"):
            put(getattr(blk, key).weight, w[p + key]["weight"])
            put(getattr(blk, key).bias, w[p + key]["bias"])
        if sizes.get("block") == "s6":
            parts = [w[p + k] for k in ("x_proj_dt", "x_proj_B", "x_proj_C")]
            put(blk.x_proj.weight, np.concatenate([q["weight"] for q in parts]))
            put(blk.x_proj.bias, np.concatenate([q["bias"] for q in parts]))
            put(blk.A_log, np.log(-w[p + "scan"]["A"]))
            put(blk.D, w[p + "scan"]["D"])
    put(module.norm_f.weight, w["norm_f"]["weight"])
    if module.head_proj is not None:
        put(module.head_proj.weight, w["head_proj"]["weight"])
        put(module.head_proj.bias, w["head_proj"]["bias"])
    put(module.head.weight, w["head"]["weight"])
    put(module.head.bias, w["head"]["bias"])
    return module.eval()
