"""Where does INT8 lose? Per-tensor error attribution of a calibrated model (issue 15).

For each tensor (the input and every layer's output) the float model is run with only that tensor
snapped to its INT8 grid (`s (clamp(RNE(x / s) + z) - z)`, spec 3.1), and its MSE against the
truth is compared with fp32's; the same for each layer's per-channel INT8 weights alone. Then all
tensors at once (float arithmetic on INT8 grids) and the real integer program (`quant8`): the
difference between those two is what the integer arithmetic itself (requantization, tables,
RevIN statistics, the scan state) adds. Prints one table, largest cost first.

Usage: python bench/int8_attribution.py MODEL [--split val|test] [--top 12]
MODEL must be calibrated (`cmamba-hls calibrate MODEL`); its training data is looked up as eval does.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cmamba_hls.evaluate import load_eval_data  # noqa: E402
from intsim import float_ref  # noqa: E402
from intsim.executor import Model, load_model  # noqa: E402
from intsim.graph import INPUT_NAME  # noqa: E402
from intsim.int8 import dequantize_act, quantize_act, quantize_weight_per_channel  # noqa: E402


def run_snapped(model: Model, x: np.ndarray, tensors: set[str], weights: set[str]) -> np.ndarray:
    """fp32 forward with the named tensors snapped to their INT8 grids and the named layers' weights
    to their per-output-channel INT8 codes; returns the output tensor [B, C_out*H, 1]."""
    q8 = model.graph.formats.int8

    def snap(name: str, v: np.ndarray) -> np.ndarray:
        if name not in tensors:
            return v
        scale, zp = q8.qp(name)
        return dequantize_act(quantize_act(v, scale, zp, name)[0], scale, zp)

    env = {INPUT_NAME: snap(INPUT_NAME, x)}
    for layer in model.graph.layers:
        w = dict(layer.weights)
        if layer.name in weights and "weight" in w:
            codes, scales = quantize_weight_per_channel(w["weight"])
            w["weight"] = codes * scales.reshape((-1,) + (1,) * (codes.ndim - 1))
        env[layer.name] = snap(layer.name, float_ref.run_layer(layer, [env[s] for s in layer.inputs], w))
    return env[model.graph.output_tensor]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--split", default="val", help="the part to measure on (default val: tune there)")
    p.add_argument("--top", type=int, default=12, help="rows per table (default 12)")
    args = p.parse_args(argv)
    model = load_model(args.model)
    g = model.graph
    x_raw, y_raw = load_eval_data(model, split=args.split)
    x = model.normalize_input(x_raw)
    y = ((y_raw - g.norm_out_mean[:, None]) / g.norm_out_std[:, None]).reshape(len(x), -1, 1)

    def rel(out: np.ndarray) -> float:
        return 100.0 * (float(np.mean((out - y) ** 2)) / base - 1.0)

    base = float(np.mean((run_snapped(model, x, set(), set()) - y) ** 2))
    q8 = model.run(x, "quant8").output.reshape(y.shape)
    print(
        f"{args.model}, {len(x)} {args.split} windows: fp32 MSE (normalised) {base:.5f}; "
        f"quant8 {rel(q8):+.3f} %; every tensor on its INT8 grid (float arithmetic) "
        f"{rel(run_snapped(model, x, set(g.tensor_names), set())):+.3f} %; every weight "
        f"{rel(run_snapped(model, x, set(), {layer.name for layer in g.layers})):+.3f} %"
    )
    rows = [(rel(run_snapped(model, x, {t}, set())), "tensor", t) for t in g.tensor_names]
    rows += [
        (rel(run_snapped(model, x, set(), {layer.name})), "weights", layer.name)
        for layer in g.layers
        if "weight" in layer.weights
    ]
    print("| snapped alone | what | MSE vs fp32's |\n|---|---|---:|")
    for cost, what, name in sorted(rows, reverse=True)[: args.top]:
        print(f"| `{name}` | {what} | {cost:+.3f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
