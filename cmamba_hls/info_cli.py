"""`cmamba-hls info MODEL`: what a model directory holds: layers (op, inputs, output
shape, weight count, formats), totals, normalisation, the training record's metrics and
the calibration status."""

from __future__ import annotations

import argparse
from pathlib import Path

from cmamba_hls.texttable import text_table
from intsim.data import split_from_record
from intsim.formats import q_name
from intsim.graph import INPUT_NAME, Graph

MAX_METRIC_DEPTH = 4


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="model directory (model.json + weights/)")


def _table(head, rows, right_from: int) -> list[str]:
    return text_table(head, rows, left_columns=range(right_from)).split("\n")


def _formats(graph, name: str) -> tuple[str, str]:
    q16, q8 = graph.formats.int16_or_none, graph.formats.int8_or_none
    int16 = q_name(q16.tensors[name]) if q16 is not None and name in q16.tensors else "-"
    int8 = (
        f"s={q8.tensors[name].scale:.4g} z={q8.tensors[name].zero_point}"
        if q8 is not None and name in q8.tensors
        else "-"
    )
    return int16, int8


def layer_lines(graph: Graph) -> list[str]:
    rows = [
        (
            "-",
            INPUT_NAME,
            "input",
            "-",
            "[{}, {}]".format(*graph.body_input_shape),  # per series for a channel-independent graph
            0,
            *_formats(graph, INPUT_NAME),
        )
    ]
    for k, layer in enumerate(graph.layers):
        n_w = sum(w.size for w in layer.weights.values())
        rows.append(
            (
                k,
                layer.name,
                layer.op,
                ", ".join(layer.inputs),
                f"[{layer.shape[0]}, {layer.shape[1]}]",
                f"{n_w:,}",
                *_formats(graph, layer.name),
            )
        )
    return _table(("#", "name", "op", "inputs", "shape", "weights", "int16", "int8"), rows, right_from=5)


def _flatten(obj, prefix="", depth=0):
    """Numeric leaves of a nested dict as (dotted key, value)."""
    if isinstance(obj, dict) and depth < MAX_METRIC_DEPTH:
        for k, v in obj.items():
            yield from _flatten(v, f"{prefix}.{k}" if prefix else str(k), depth + 1)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield prefix, obj


def training_lines(graph: Graph) -> list[str]:
    tr = graph.raw.get("training")
    if not isinstance(tr, dict) or not tr:
        return ["training: not recorded"]
    data = tr.get("data") if isinstance(tr.get("data"), dict) else {}
    lines = [
        f"training: data {data.get('file', '?')}, split {split_from_record(data).text()}, "
        f"seed {tr.get('seed', '?')}, "
        f"epochs run {tr.get('epochs_run', '?')} (best {tr.get('best_epoch', '?')})"
    ]
    metrics = list(_flatten(tr.get("metrics") or {}))
    if metrics:
        lines += [f"  {k} = {v:.6g}" for k, v in metrics]
    else:
        lines.append("  no metrics recorded")
    return lines


def calibration_lines(graph: Graph) -> list[str]:
    where = graph.path or "MODEL"
    lines = []
    q16, q8 = graph.formats.int16_or_none, graph.formats.int8_or_none
    n = graph.formats.n_samples
    if q16 is not None:
        fr = list(q16.tensors.values())
        spread = f"frac bits {min(fr)}..{max(fr)}" if fr else "no tensors"
        windows = q16.n_samples if q16.n_samples is not None else n
        lines.append(f"calibration INT16: method {q16.method}, formats {q16.formats}, {spread}, {windows} windows")
    else:
        lines.append(f"calibration INT16: none (bittrue/quant16 need `cmamba-hls calibrate {where}`)")
    if q8 is not None:
        lines.append(f"calibration INT8:  method {q8.method}, RMSNorm {q8.rmsnorm}, {n} windows")
    else:
        lines.append(f"calibration INT8:  none (quant8 needs `cmamba-hls calibrate {where}`)")
    return lines


def normalisation_lines(graph: Graph) -> list[str]:
    rows = []
    for c, name in enumerate(graph.input_columns):
        rows.append(("input", name, f"{graph.norm_in_mean[c]:.6g}", f"{graph.norm_in_std[c]:.6g}"))
    for c, name in enumerate(graph.output_columns):
        rows.append(("output", name, f"{graph.norm_out_mean[c]:.6g}", f"{graph.norm_out_std[c]:.6g}"))
    return ["normalisation (network sees (x - mean) / std; outputs are y * std + mean):"] + [
        "  " + s for s in _table(("side", "column", "mean", "std"), rows, right_from=2)
    ]


def describe(graph: Graph) -> str:
    n_w = graph.n_weights()
    lines = [
        f"model '{graph.name}'  ({Path(graph.path) / 'model.json'}, format version {graph.raw.get('format_version')})",
        f"input  [{graph.input_shape[0]}, {graph.input_shape[1]}] (channels, look-back)",
        f"output [{graph.output_channels}, {graph.horizon}] (channels, horizon) from tensor '{graph.output_tensor}'",
    ]
    if graph.channel_independent:
        lines.append(
            f"channel-independent: the layers see one series [1, {graph.input_shape[1]}] and run once per "
            f"channel ({graph.series} series per window, the same weights)"
        )
    lines.append("")
    lines += layer_lines(graph)
    lines += [
        "",
        f"totals: {len(graph.layers)} layers, {n_w:,} weights "
        f"({2 * n_w / 1024:.1f} KiB as int16, {n_w / 1024:.1f} KiB as int8)",
        "",
    ]
    lines += normalisation_lines(graph) + [""] + training_lines(graph) + [""] + calibration_lines(graph)
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from intsim.graph import load_graph

    print(describe(load_graph(Path(args.model))))
    return 0
