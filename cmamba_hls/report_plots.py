"""The evaluation report's figures (docs/reports.md). Plots only: every number is computed
by cmamba_hls.evaluate and passed in.

matplotlib draws through its Agg canvas (`matplotlib.figure.Figure`, never pyplot), so no
display and no global backend state are involved. Each function writes one PNG of fixed
layout; an empty input still gives the figure, with a line saying why it is empty.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from intsim.errors import CmambaError

# One colour per series, the same in every figure.
COLORS = {
    "truth": "black",
    "fp32": "tab:blue",
    "quant16": "tab:orange",
    "bittrue": "tab:green",
    "quant8": "tab:red",
    "weight": "tab:gray",
    "activation": "tab:purple",
}
DPI = 100
FORECAST_SAMPLES = 3  # windows shown in forecast.png (evenly spaced)
FORECAST_CHANNELS = 3  # output channels shown (the first ones)
HIST_BINS = 101


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ModuleNotFoundError as exc:
        raise CmambaError("the report's plots need matplotlib: pip install 'cmamba-hls[plot]'") from exc


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _save(fig, path: Path) -> None:
    fig.savefig(path, format="png", metadata={"Software": None})


def _note(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def error_hist(path: Path, errors: dict) -> None:
    """errors: mode -> (err float[...] in network units = mode - fp32, output LSB or None).
    One panel per mode: histogram of the error in LSB of that mode's output format."""
    modes = list(errors)
    fig = _figure(4.2 * max(1, len(modes)), 3.4)
    axes = fig.subplots(1, max(1, len(modes)), squeeze=False)[0]
    if not modes:
        _note(axes[0], "only fp32 evaluated:\nit is the reference (error 0)")
        axes[0].set_title("error vs fp32")
    for ax, mode in zip(axes, modes, strict=False):
        err, lsb = errors[mode]
        e = np.asarray(err, dtype=np.float64).ravel() / (lsb or 1.0)
        top = float(np.max(np.abs(e))) if e.size else 0.0
        if top <= 40:  # small errors: one bin per LSB
            edges = np.arange(-math.ceil(top) - 0.5, math.ceil(top) + 1.0, 1.0)
        else:
            edges = np.linspace(-top, top, HIST_BINS)
        ax.hist(e, bins=edges, color=COLORS.get(mode, "tab:gray"))
        ax.set_yscale("log")
        unit = "LSB" if lsb else "network units"
        ax.set_xlabel(f"{mode} - fp32 ({unit})")
        ax.set_ylabel("output values")
        rmse = float(np.sqrt(np.mean(e * e))) if e.size else 0.0
        ax.set_title(f"{mode}: max |err| {top:.3g}, RMSE {rmse:.3g} {unit}", fontsize=9)
    _save(fig, path)


def saturation_bars(path: Path, tensors: list[str], counts: dict) -> None:
    """counts: mode -> saturation count per tensor (order of `tensors`). Grouped
    horizontal bars, symlog axis (zero stays visible, large counts stay readable)."""
    modes = list(counts)
    fig = _figure(7.5, 1.5 + 0.2 * len(tensors))
    ax = fig.subplots()
    pos = np.arange(len(tensors))
    height = 0.8 / max(1, len(modes))
    total = 0
    for k, mode in enumerate(modes):
        c = np.asarray(counts[mode], dtype=np.int64)
        total += int(c.sum())
        ax.barh(
            pos + (k - (len(modes) - 1) / 2) * height,
            c,
            height=height,
            color=COLORS.get(mode, "tab:gray"),
            label=f"{mode} ({int(c.sum())})",
        )
    ax.set_yticks(pos, tensors, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(left=0)
    ax.set_xlabel("saturations (clamp events)")
    ax.set_title("saturations per layer" + ("" if total else ": none"))
    ax.legend(fontsize=8, loc="lower right")
    _save(fig, path)


def format_distribution(path: Path, format_rows: list[dict]) -> None:
    """Left: how many tensors use each INT16 fractional-bit count (activations and
    weights). Right: INT8 activation scales (log2)."""
    fig = _figure(10.0, 3.6)
    ax16, ax8 = fig.subplots(1, 2)
    bits = np.arange(16)
    width = 0.4
    have16 = False
    for k, kind in enumerate(("activation", "weight")):
        f = [r["int16_frac_bits"] for r in format_rows if r["kind"] == kind and r["int16_frac_bits"] != ""]
        have16 |= bool(f)
        n = np.bincount(np.asarray(f, dtype=np.int64), minlength=16)[:16] if f else np.zeros(16)
        ax16.bar(bits + (k - 0.5) * width, n, width=width, color=COLORS[kind], label=f"{kind}s ({len(f)})")
    if have16:
        ax16.set_xticks(bits)
        ax16.set_xlabel("INT16 fractional bits f (Q(16-f).f)")
        ax16.set_ylabel("tensors")
        ax16.legend(fontsize=8)
    else:
        _note(ax16, "no INT16 formats:\nrun `cmamba-hls calibrate`")
    ax16.set_title("INT16 formats")
    scales = [r["int8_scale"] for r in format_rows if r["kind"] == "activation" and r["int8_scale"] != ""]
    if scales:
        lg = np.log2(np.asarray(scales, dtype=np.float64))
        edges = np.arange(math.floor(lg.min()) - 0.5, math.ceil(lg.max()) + 1.0, 0.5)
        ax8.hist(lg, bins=edges, color=COLORS["activation"])
        ax8.set_xlabel("log2(INT8 activation scale)")
        ax8.set_ylabel("tensors")
    else:
        _note(ax8, "no INT8 parameters:\nrun `cmamba-hls calibrate`")
    ax8.set_title(f"INT8 activation scales ({len(scales)} tensors)")
    _save(fig, path)


def forecast(
    path: Path,
    x_raw: NDArray,
    y_raw: NDArray,
    predictions: dict[str, NDArray],
    input_columns: list[str],
    output_columns: list[str],
) -> None:
    """x_raw [N, C_in, L], y_raw [N, C_out, H], predictions: mode -> [N, C_out, H], all in
    original units. Rows: the first FORECAST_CHANNELS output channels; columns:
    FORECAST_SAMPLES evenly spaced windows. History (when the output channel is also an
    input channel), truth, and every mode overlaid."""
    n, c_out, horizon = np.shape(y_raw)
    length = np.shape(x_raw)[2]
    samples = sorted(set(np.rint(np.linspace(0, n - 1, min(FORECAST_SAMPLES, n))).astype(int)))
    channels = list(range(min(FORECAST_CHANNELS, c_out)))
    fig = _figure(4.0 * len(samples), 2.6 * len(channels))
    axes = fig.subplots(len(channels), len(samples), squeeze=False)
    hist_len = min(length, 3 * horizon)
    t_hist = np.arange(-hist_len, 0)
    t_fut = np.arange(horizon)
    for i, c in enumerate(channels):
        name = output_columns[c]
        src = input_columns.index(name) if name in input_columns else None
        for j, b in enumerate(samples):
            ax = axes[i][j]
            if src is not None:
                ax.plot(t_hist, x_raw[b, src, -hist_len:], color="0.6", lw=1, label="history")
            ax.plot(t_fut, y_raw[b, c], color=COLORS["truth"], lw=1.5, label="truth")
            for mode, pred in predictions.items():
                ax.plot(
                    t_fut,
                    pred[b, c],
                    color=COLORS.get(mode, "tab:gray"),
                    lw=1,
                    ls="--" if mode == "fp32" else "-",
                    label=mode,
                )
            ax.axvline(-0.5, color="0.8", lw=0.8)
            ax.set_title(f"{name}, window {b}", fontsize=9)
            if i == len(channels) - 1:
                ax.set_xlabel("step (0 = first forecast step)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncols=len(labels), fontsize=8)
    _save(fig, path)
