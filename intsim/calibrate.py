"""Calibration: run the float model on data, record per-tensor statistics, choose
formats (docs/quant-spec.md section 4.2) and store them in model.json.

Statistics are recorded for every tensor in graph order (input first, then each
layer), so INT16 (frac bits) and INT8 (scale/zero point) are chosen from one run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from intsim.errors import CmambaError
from intsim.executor import Model
from intsim.formats import FRAC_MAX, FRAC_MIN, RMSNORM_MODES
from intsim.graph import INPUT_NAME, save_quant
from intsim.int8 import INT8, asymmetric_params, dequantize_act, quantize_act
from intsim.ops import OPS

METHODS = ("maxabs", "p99")
INT8_METHODS = ("maxabs", "p99", "p99.9", "mse")
# INT8 activation range [lo, hi] per method (signed percentiles recorded below; "mse": the range
# of least INT8 quantization error, mse_range).
INT8_RANGE_KEYS = {
    "maxabs": ("min", "max"),
    "p99": ("p1", "p99"),
    "p99.9": ("p0.1", "p99.9"),
    "mse": ("mse_lo", "mse_hi"),
}
# mse_range: the fraction of values each candidate range leaves out below / above it (each side on its own)
MSE_TAILS = (0.0, 1e-5, 1e-4, 1e-3, 3e-3, 1e-2)
MSE_SAMPLE = 1 << 18  # values the quantization error of each candidate is measured on (evenly strided)
FORMAT_CHOICES = ("q88", "auto")
DEFAULT_FRAC = 8
# Percentiles recorded per tensor: signed (for INT8 ranges) and of |x| (for INT16).
SIGNED_PCTS = (0.1, 1.0, 99.0, 99.9)


def collect_stats(model: Model, x_norm: np.ndarray, batch: int = 256) -> dict:
    """x_norm: float [N, C_in, L] normalised. Returns tensor -> statistics (floats)."""
    chunks: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(x_norm), batch):
        res = model.run(x_norm[start : start + batch], "fp32", capture=True)
        for name, arr in res.tensors.items():
            chunks.setdefault(name, []).append(arr.ravel())
    stats = {}
    for name in model.graph.tensor_names:
        v = np.concatenate(chunks[name])
        a = np.abs(v)
        entry = {
            "min": float(v.min()),
            "max": float(v.max()),
            "absmax": float(a.max()),
            "abs_p99": float(np.percentile(a, 99.0)),
            "abs_p999": float(np.percentile(a, 99.9)),
        }
        for p, val in zip(SIGNED_PCTS, np.percentile(v, SIGNED_PCTS), strict=True):
            entry[f"p{p:g}"] = float(val)
        entry["mse_lo"], entry["mse_hi"] = mse_range(v)
        stats[name] = entry
    return stats


def mse_range(v: np.ndarray) -> tuple[float, float]:
    """The INT8 range [lo, hi] (spec 3.1) of least mean squared quantization error of the values v:
    lo and hi are the quantiles leaving out a fraction `MSE_TAILS` of v below / above (each side on
    its own; 0: min / max), the error is measured on MSE_SAMPLE evenly strided values of v (all of
    them when fewer). Ties keep the widest range."""
    quantiles = np.quantile(v, [*MSE_TAILS, *(1.0 - t for t in MSE_TAILS)])
    los, his = quantiles[: len(MSE_TAILS)], quantiles[len(MSE_TAILS) :]
    sample = v[:: max(1, len(v) // MSE_SAMPLE)]
    best = (math.inf, float(los[0]), float(his[0]))
    for lo in los:
        for hi in his:
            scale, zp = asymmetric_params(lo, hi)
            q, _ = quantize_act(sample, scale, zp)
            err = float(np.mean((sample - dequantize_act(q, scale, zp)) ** 2))
            if err < best[0]:
                best = (err, float(lo), float(hi))
    return best[1], best[2]


def frac_bits_for_range(r: float) -> int:
    """Largest f in [0, 15] such that r fits int16 Q(15-f).f (spec 4.2)."""
    if not math.isfinite(r):
        raise CmambaError(f"calibration range {r!r} is not finite")
    if r <= 0.0:
        return 15
    return int(min(15, max(0, 15 - math.ceil(math.log2(r * 1.0001)))))


def choose_int16_formats(
    model: Model,
    stats: dict,
    method: str = "maxabs",
    formats: str = "q88",
    frac_offsets: Mapping[str, int] | None = None,
) -> dict:
    """INT16 fractional bits of every tensor and weight (spec 4.2). `frac_offsets` (tensor -> k, for
    design-space sweeps) adds k bits to a tensor's chosen format before the accumulator rule, kept in
    [0, 15] and, for an op with a known output bound (sigmoid), within what keeps that bound representable."""
    offsets = frac_offsets or {}
    if method not in METHODS:
        raise CmambaError(f"unknown calibration method '{method}' (known: {', '.join(METHODS)})")
    if formats not in FORMAT_CHOICES:
        raise CmambaError(f"unknown --formats '{formats}' (known: {', '.join(FORMAT_CHOICES)})")
    graph = model.graph
    key = "absmax" if method == "maxabs" else "abs_p99"
    tensors: dict[str, dict] = {}
    weights: dict[str, dict] = {}

    def pick(r, tensor=None):
        f = DEFAULT_FRAC if formats == "q88" else frac_bits_for_range(r)
        return f if tensor is None else min(FRAC_MAX, max(FRAC_MIN, f + int(offsets.get(tensor, 0))))

    tensors[INPUT_NAME] = {"frac_bits": pick(stats[INPUT_NAME][key], INPUT_NAME)}
    for layer in graph.layers:
        for wkey, w in layer.weights.items():
            if wkey != "bias":
                weights[f"{layer.name}.{wkey}"] = {"frac_bits": pick(float(np.max(np.abs(w))))}
        spec = OPS[layer.op]
        # An op with a known output bound (sigmoid: 1, which keeps lam = 1.0 representable, spec 2.7)
        f_y = pick(spec.output_bound if spec.output_bound is not None else stats[layer.name][key], layer.name)
        if spec.output_bound is not None:
            f_y = min(f_y, frac_bits_for_range(spec.output_bound))
        if spec.accumulates:  # spec 2: no left shift at the output, f_y <= f_x + f_w
            f_acc = tensors[layer.inputs[0]]["frac_bits"] + weights[f"{layer.name}.weight"]["frac_bits"]
            f_y = min(f_y, f_acc)
        tensors[layer.name] = {"frac_bits": f_y}
    return {"method": method, "formats": formats, "tensors": tensors, "weights": weights}


def choose_int8_params(model: Model, stats: dict, method: str = "maxabs", rmsnorm: str = "v2") -> dict:
    """Spec 3.1: per-tensor asymmetric (scale, zero point) from the calibrated range.
    Sigmoid outputs get the fixed lam format (spec 3.5). Weights are quantized per
    output channel at lowering time (their scales follow from the weights alone)."""
    if method not in INT8_METHODS:
        raise CmambaError(f"unknown INT8 calibration method '{method}' (known: {', '.join(INT8_METHODS)})")
    if rmsnorm not in RMSNORM_MODES:
        raise CmambaError(f"unknown INT8 RMSNorm mode '{rmsnorm}' (known: {', '.join(RMSNORM_MODES)})")
    lo_key, hi_key = INT8_RANGE_KEYS[method]
    tensors = {}
    fixed = {layer.name: INT8.row(layer.op, layer.name).fixed_output for layer in model.graph.layers}
    for name in model.graph.tensor_names:
        if fixed.get(name) is not None:  # a format the spec fixes (sigmoid -> lam, spec 3.5)
            scale, zp = fixed[name]
        else:
            scale, zp = asymmetric_params(stats[name][lo_key], stats[name][hi_key])
        tensors[name] = {"scale": scale, "zero_point": zp}
    return {"method": method, "rmsnorm": rmsnorm, "tensors": tensors}


def calibrate(
    model: Model,
    x_norm: np.ndarray,
    method: str = "maxabs",
    formats: str = "q88",
    save: bool = True,
    int8_method: str | None = None,
    int8_rmsnorm: str = "v2",
    stats: dict | None = None,
    frac_offsets: Mapping[str, int] | None = None,
) -> dict:
    """Collect statistics once; choose INT16 formats and INT8 scales/zero points from them;
    store all of it in the model (and model.json). int8_method defaults to `method`.
    `stats`: what collect_stats(model, x_norm) returned before (a sweep reuses it across points);
    `frac_offsets`: see choose_int16_formats."""
    if len(x_norm) == 0:
        raise CmambaError("calibration needs at least one window of data")
    stats = collect_stats(model, x_norm) if stats is None else stats
    q16 = choose_int16_formats(model, stats, method, formats, frac_offsets)
    q16["n_samples"] = int(len(x_norm))
    quant = dict(model.graph.quant)
    quant["stats"] = {"n_samples": int(len(x_norm)), "tensors": stats}
    quant["int16"] = q16
    quant["int8"] = choose_int8_params(model, stats, int8_method or method, int8_rmsnorm)
    model.graph.quant = quant
    model.invalidate()  # formats changed: lower again on the next integer run
    if save:
        save_quant(model.graph)
    return quant
