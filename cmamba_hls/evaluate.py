"""Evaluation: run a model in one or more modes on windows of data, compare with the
ground truth and with the fp32 reference, and write the report (docs/reports.md).

Shapes and units
- ``x_raw float64[N, C_in, L]``, ``y_raw float64[N, C_out, H]``: original units.
- Predictions are kept in the network's normalised units ``[N, C_out, H]``.
- Metrics vs ground truth: original units (``mse``, ``mae``) and normalised units
  (``mse_norm``, ``mae_norm``). Metrics vs fp32: normalised (network) units, the units of
  the integer output formats, so ``maxae_vs_fp32_lsb = maxae_vs_fp32 / output LSB``
  (INT16: ``2**-f`` of the output tensor; INT8: its scale).

Library API (used by ``cmamba-hls eval`` and ``cmamba-hls demo``):
``load_eval_data(model, data=None, split="test", max_windows=None) -> (x_raw, y_raw)`` and
``evaluate(model, x_raw, y_raw, modes=..., out_dir=None, progress=True, batch=256) -> EvalReport``.
"""

from __future__ import annotations

import csv
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray
from tqdm import tqdm

from intsim.chunks import merge_stats
from intsim.data import SPLITS, Split, find_training_data, load_splits, open_text, split_from_record
from intsim.errors import CmambaError, DataError, UnsupportedError
from intsim.executor import Model
from intsim.formats import lsb, q_name
from intsim.graph import INPUT_NAME
from intsim.manifest import DirKind, owned_files, publish, staged
from intsim.modes import MODE_NAMES, REFERENCE, get_mode

DEFAULT_MODES = MODE_NAMES  # report order of `--mode all`: intsim.modes.MODES
REFERENCE_MODE = REFERENCE.name

METRICS_FILE, LAYERS_FILE, FORMATS_FILE = "metrics.csv", "layers.csv", "formats.csv"
PLOT_FILES = ("error_hist.png", "saturation.png", "formats.png", "forecast.png")
REPORT_FILES = (METRICS_FILE, LAYERS_FILE, FORMATS_FILE) + PLOT_FILES
# The report directory's manifest (report.json, intsim/manifest.py): a non-empty --out without it is refused.
REPORT_DIR = DirKind("report.json", "cmamba-hls eval report", 1, "the report", "eval")

METRICS_COLUMNS = ("mode", "metric", "channel", "value")
LAYERS_COLUMNS = (
    "mode",
    "layer",
    "op",
    "saturations",
    "elements",
    "rate",
    "min",
    "max",
    "format",
    "weight_saturations",
)
FORMATS_COLUMNS = (
    "kind",
    "tensor",
    "op",
    "int16_frac_bits",
    "int16_format",
    "int16_lsb",
    "int8_scale",
    "int8_zero_point",
    "int8_min",
    "int8_max",
    "calib_min",
    "calib_max",
    "calib_absmax",
)
# Per-channel metrics (one row per output channel plus channel "all"), in file order.
CHANNEL_METRICS = (
    "mse",
    "mae",
    "mse_norm",
    "mae_norm",
    "mse_vs_fp32",
    "mae_vs_fp32",
    "rmse_vs_fp32",
    "maxae_vs_fp32",
    "maxae_vs_fp32_lsb",
)
# Whole-run metrics (channel "all" only).
RUN_METRICS = ("saturations", "saturation_rate", "samples", "samples_per_second")
ALL_CHANNELS = "all"
# Keys of every EvalReport.summary row, first and in this order (cmamba-hls demo reads them).
SUMMARY_KEYS = (
    "mode",
    "mse",
    "mae",
    "mse_norm",
    "mae_norm",
    "maxae_vs_fp32",
    "maxae_vs_fp32_lsb",
    "rmse_vs_fp32",
    "saturations",
    "samples_per_second",
)


@dataclass
class ModeRun:
    """One mode over all windows: outputs in network units, stats summed over batches."""

    mode: str
    output: np.ndarray  # float64 [N, C_out, H], normalised
    stats: dict  # tensor -> {"saturations", "size" (elements), "min", "max"}
    seconds: float
    output_lsb: float | None  # one output LSB in network units (None: fp32)
    weight_saturations: dict = field(default_factory=dict)  # layer -> count at lowering


@dataclass
class EvalReport:
    summary: list[dict]  # one dict per reported mode (keys: SUMMARY_KEYS and more)
    metrics: list[dict]  # rows of metrics.csv
    layers: list[dict]  # rows of layers.csv
    formats: list[dict]  # rows of formats.csv
    predictions: dict  # mode -> float64 [N, C_out, H], normalised units
    n_samples: int
    out_dir: Path | None = None
    files: list[Path] = field(default_factory=list)


# ---------------------------------------------------------------------- data
def resolve_data_path(model: Model, data: str | Path | None = None) -> Path:
    """`data` if given; else the CSV named by the model's training record
    (`training.data.file`) found under the repository's `data/`, in the model directory
    or beside it. Anything else is a DataError asking for --data."""
    if data is not None:
        path = Path(data)
        if not path.is_file():
            raise DataError(f"{path}: data file not found")
        return path
    path, why = find_training_data(model.graph)
    if path is None:
        raise DataError(why)
    return path


def _header(path: Path) -> list[str]:
    try:
        with open_text(path) as fh:
            row = next(csv.reader(fh), None)
    except (OSError, UnicodeDecodeError, EOFError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read CSV: {exc}") from exc
    if row is None:
        raise DataError(f"{path}: file is empty (expected a header row)")
    return [h.strip() for h in row]


def load_eval_data(
    model: Model,
    data: str | Path | None = None,
    split: str = "test",
    max_windows: int | None = None,
    sizes: Split | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Windows of one chronological split, in original units: ``(x_raw [N, C_in, L],
    y_raw [N, C_out, H])``. Columns are the model's input columns (by name); the split
    sizes (`intsim.data.Split`) default to the ones the model was trained with (its
    training record; else 0.7/0.1/0.2). `max_windows` keeps that many windows, evenly
    spaced over the split (first and last included)."""
    if split not in SPLITS:
        raise DataError(f"unknown split '{split}' (known: {', '.join(SPLITS)})")
    if max_windows is not None and (int(max_windows) != max_windows or max_windows < 1):
        raise DataError(f"max_windows must be a positive integer, got {max_windows}")
    path = resolve_data_path(model, data)
    graph = model.graph
    c_in, length = graph.input_shape
    header = _header(path)
    named = bool((graph.raw.get("input") or {}).get("columns"))
    if named:
        missing = [c for c in graph.input_columns if c not in header]
        if missing:
            raise DataError(
                f"{path}: has no column(s) {', '.join(repr(c) for c in missing)}; model "
                f"'{graph.name}' reads {c_in} channel(s): {', '.join(graph.input_columns)}"
            )
        columns = list(graph.input_columns)
    else:
        columns = None  # the model does not name its channels: every numeric column
    if sizes is None:
        sizes = split_from_record((graph.raw.get("training") or {}).get("data"))
    splits = load_splits(path, columns, lookback=length, horizon=graph.horizon, fractions=sizes)
    x, y = splits[split]
    names = splits["columns"]
    if x.shape[1] != c_in:
        raise DataError(
            f"{path}: {x.shape[1]} numeric channel(s) ({', '.join(names)}); model '{graph.name}' expects {c_in}"
        )
    if set(graph.output_columns) <= set(names):
        y = y[:, [names.index(c) for c in graph.output_columns]]
    elif graph.output_channels != c_in:
        raise DataError(
            f"{path}: cannot find the model's output columns {', '.join(graph.output_columns)} in {', '.join(names)}"
        )
    if max_windows is not None and max_windows < len(x):
        idx = np.unique(np.rint(np.linspace(0, len(x) - 1, int(max_windows))).astype(np.int64))
        x, y = x[idx], y[idx]
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


# ----------------------------------------------------------------- running
def parse_modes(modes: str | Iterable[str]) -> tuple[str, ...]:
    """Modes in the order given, duplicates dropped; "all" expands to DEFAULT_MODES."""
    if isinstance(modes, str):
        modes = [m.strip() for m in modes.split(",") if m.strip()]
    out: list[str] = []
    for m in modes:
        expanded = DEFAULT_MODES if m == "all" else (m,)
        for e in expanded:
            if e not in MODE_NAMES:
                raise UnsupportedError(f"unknown mode '{e}' (known: {', '.join(DEFAULT_MODES)}, all)")
            if e not in out:
                out.append(e)
    if not out:
        raise UnsupportedError("no mode to evaluate")
    return tuple(out)


def check_ready(model: Model, modes: Iterable[str]) -> None:
    """Fail before any work when a mode lacks its quantization parameters (the error
    names `cmamba-hls calibrate`) or cannot be lowered."""
    for m in modes:
        model.program_of(m)


def _weight_saturations(model: Model, mode: str) -> dict:
    prog = model.program_of(mode)
    return {st.name: int(st.weight_saturations) for st in prog.steps} if prog is not None else {}


def run_mode(model: Model, x_norm: np.ndarray, mode: str, batch: int = 256, progress: bool = True) -> ModeRun:
    """Run `mode` over x_norm [N, C_in, L] in batches; time it after one untimed warm-up
    sample (JIT load); sum saturations and elements, keep min/max, per tensor."""
    model.run(x_norm[:1], mode)  # warm-up: kernels compiled/loaded
    outputs = []
    stats: dict[str, dict] = {}
    seconds = 0.0
    with tqdm(
        total=len(x_norm),
        desc=f"eval {mode}",
        unit="win",
        file=sys.stderr,
        disable=None if progress else True,
        leave=False,
    ) as bar:
        for start in range(0, len(x_norm), batch):
            xb = x_norm[start : start + batch]
            t0 = time.perf_counter()
            res = model.run(xb, mode)
            seconds += time.perf_counter() - t0
            outputs.append(res.output)
            merge_stats(stats, res.stats)
            bar.update(len(xb))
    return ModeRun(
        mode, np.concatenate(outputs), stats, seconds, model.output_lsb(mode), _weight_saturations(model, mode)
    )


# ----------------------------------------------------------------- metrics
def _per_channel(err: np.ndarray, fn) -> list[float]:
    """err [N, C, H] -> [fn over channel 0, ..., fn over channel C-1, fn over all]."""
    return [float(fn(err[:, c])) for c in range(err.shape[1])] + [float(fn(err))]


def mode_metrics(model: Model, run: ModeRun, reference: ModeRun, y_raw: np.ndarray) -> dict:
    """metric -> list of values per output channel, then overall (CHANNEL_METRICS), plus
    the whole-run scalars (RUN_METRICS)."""
    g = model.graph
    y_norm = (y_raw - g.norm_out_mean[:, None]) / g.norm_out_std[:, None]
    err_raw = model.denormalize_output(run.output) - y_raw
    err_norm = run.output - y_norm
    err_ref = run.output - reference.output
    sq = np.square
    out = {
        "mse": _per_channel(err_raw, lambda e: np.mean(sq(e))),
        "mae": _per_channel(err_raw, lambda e: np.mean(np.abs(e))),
        "mse_norm": _per_channel(err_norm, lambda e: np.mean(sq(e))),
        "mae_norm": _per_channel(err_norm, lambda e: np.mean(np.abs(e))),
        "mse_vs_fp32": _per_channel(err_ref, lambda e: np.mean(sq(e))),
        "mae_vs_fp32": _per_channel(err_ref, lambda e: np.mean(np.abs(e))),
        "rmse_vs_fp32": _per_channel(err_ref, lambda e: np.sqrt(np.mean(sq(e)))),
        "maxae_vs_fp32": _per_channel(err_ref, lambda e: np.max(np.abs(e))),
    }
    lsb = run.output_lsb
    out["maxae_vs_fp32_lsb"] = [v / lsb if lsb else 0.0 for v in out["maxae_vs_fp32"]]
    sats = sum(s["saturations"] for s in run.stats.values())
    elements = sum(s["size"] for s in run.stats.values())
    n = len(run.output)
    out["saturations"] = int(sats)
    out["saturation_rate"] = sats / elements if elements else 0.0
    out["samples"] = n
    out["samples_per_second"] = n / max(run.seconds, 1e-12)
    return out


def _format_name(model: Model, mode: str, tensor: str) -> str:
    precision = get_mode(mode).precision
    if precision == "int16":
        return q_name(model.graph.formats.int16.frac(tensor))
    if precision == "int8":
        s, z = model.graph.formats.int8.qp(tensor)
        return f"int8 s={s:.6g} z={z}"
    return "float64"


def _op(model: Model, tensor: str) -> str:
    return "input" if tensor == INPUT_NAME else model.graph.layer(tensor).op


def layer_rows(model: Model, run: ModeRun) -> list[dict]:
    rows = []
    for name in model.graph.tensor_names:
        st = run.stats[name]
        rows.append(
            {
                "mode": run.mode,
                "layer": name,
                "op": _op(model, name),
                "saturations": st["saturations"],
                "elements": st["size"],
                "rate": st["saturations"] / st["size"] if st["size"] else 0.0,
                "min": st["min"],
                "max": st["max"],
                "format": _format_name(model, run.mode, name),
                "weight_saturations": run.weight_saturations.get(name, 0),
            }
        )
    return rows


def format_rows(model: Model) -> list[dict]:
    """The model's formats: one row per activation tensor, then one per weight/gain.
    Empty cells where the model has no such parameters (not calibrated)."""
    g = model.graph
    q16, q8 = g.formats.int16_or_none, g.formats.int8_or_none
    stats = g.formats.stats
    rows = []
    for name in g.tensor_names:
        row = dict.fromkeys(FORMATS_COLUMNS, "")
        row.update(kind="activation", tensor=name, op=_op(model, name))
        if q16 is not None and name in q16.tensors:
            row.update(_int16_cells(q16.tensors[name]))
        if q8 is not None and name in q8.tensors:
            qp = q8.tensors[name]
            lo, hi = qp.range
            row.update(int8_scale=qp.scale, int8_zero_point=qp.zero_point, int8_min=lo, int8_max=hi)
        st = stats.get(name) or {}
        if st:
            row.update(calib_min=st.get("min", ""), calib_max=st.get("max", ""), calib_absmax=st.get("absmax", ""))
        rows.append(row)
    for layer in g.layers:
        for key, w in layer.weights.items():
            if key == "bias":  # biases follow from their layer (spec 2, 3.1)
                continue
            name = f"{layer.name}.{key}"
            row = dict.fromkeys(FORMATS_COLUMNS, "")
            row.update(
                kind="weight",
                tensor=name,
                op=layer.op,
                calib_min=float(w.min()),
                calib_max=float(w.max()),
                calib_absmax=float(np.abs(w).max()),
            )
            if q16 is not None and name in q16.weights:
                row.update(_int16_cells(q16.weights[name]))
            rows.append(row)
    return rows


def _int16_cells(f: int) -> dict:
    return {"int16_frac_bits": f, "int16_format": q_name(f), "int16_lsb": lsb(f)}


# ------------------------------------------------------------------- report
def _check_data(model: Model, x_raw, y_raw) -> tuple[np.ndarray, np.ndarray]:
    g = model.graph
    x = np.asarray(x_raw, dtype=np.float64)
    y = np.asarray(y_raw, dtype=np.float64)
    c_in, length = g.input_shape
    if x.ndim != 3 or x.shape[1:] != (c_in, length) or len(x) == 0:
        raise DataError(f"x_raw: expected shape [N >= 1, {c_in}, {length}], got {x.shape}")
    if y.shape != (len(x), g.output_channels, g.horizon):
        raise DataError(f"y_raw: expected shape [{len(x)}, {g.output_channels}, {g.horizon}], got {y.shape}")
    for what, arr in (("x_raw", x), ("y_raw", y)):
        if not np.all(np.isfinite(arr)):
            raise DataError(f"{what}: {int(np.count_nonzero(~np.isfinite(arr)))} NaN/Inf value(s)")
    return x, y


def _fmt(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return str(int(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    return str(v)


def _write_csv(path: Path, columns, rows) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(columns)
        for row in rows:
            w.writerow([_fmt(row[c]) for c in columns])


def evaluate(
    model: Model,
    x_raw: ArrayLike,
    y_raw: ArrayLike,
    modes: str | Iterable[str] = DEFAULT_MODES,
    out_dir: str | Path | None = None,
    progress: bool = True,
    batch: int = 256,
) -> EvalReport:
    """Evaluate `modes` (fp32 always runs: it is the reference) on windows in original
    units. With `out_dir`, writes the report (REPORT_FILES + report.json, docs/reports.md) all
    at once: every file is built in a temporary folder and moved in only when all succeeded."""
    modes = parse_modes(modes)
    if int(batch) != batch or batch < 1:
        raise CmambaError(f"batch must be a positive integer, got {batch}")
    x, y = _check_data(model, x_raw, y_raw)
    check_ready(model, modes)
    if out_dir is not None:
        from cmamba_hls import report_plots

        report_plots.require_matplotlib()
        owned_files(Path(out_dir), REPORT_DIR)  # someone else's directory: refused before running
    x_norm = model.normalize_input(x)
    runs: dict[str, ModeRun] = {}
    for mode in (REFERENCE_MODE,) + tuple(m for m in modes if m != REFERENCE_MODE):
        runs[mode] = run_mode(model, x_norm, mode, int(batch), progress)
    ref = runs[REFERENCE_MODE]

    summary, metric_rows, layers = [], [], []
    channels = list(model.graph.output_columns) + [ALL_CHANNELS]
    for mode in modes:
        m = mode_metrics(model, runs[mode], ref, y)
        for name in CHANNEL_METRICS:
            metric_rows += [
                {"mode": mode, "metric": name, "channel": ch, "value": v}
                for ch, v in zip(channels, m[name], strict=True)
            ]
        metric_rows += [
            {"mode": mode, "metric": name, "channel": ALL_CHANNELS, "value": m[name]} for name in RUN_METRICS
        ]
        row = {"mode": mode} | {k: m[k][-1] for k in CHANNEL_METRICS} | {k: m[k] for k in RUN_METRICS}
        summary.append({k: row[k] for k in SUMMARY_KEYS} | row)  # demo keys first
        layers += layer_rows(model, runs[mode])
    report = EvalReport(summary, metric_rows, layers, format_rows(model), {m: runs[m].output for m in runs}, len(x))
    if out_dir is not None:
        write_report(model, report, runs, modes, x, y, Path(out_dir))
    return report


def write_report(
    model: Model,
    report: EvalReport,
    runs: dict[str, ModeRun],
    modes: Sequence[str],
    x_raw: NDArray,
    y_raw: NDArray,
    out_dir: Path,
) -> None:
    from cmamba_hls import report_plots

    with staged(out_dir, REPORT_DIR) as tmp:
        _write_csv(tmp / METRICS_FILE, METRICS_COLUMNS, report.metrics)
        _write_csv(tmp / LAYERS_FILE, LAYERS_COLUMNS, report.layers)
        _write_csv(tmp / FORMATS_FILE, FORMATS_COLUMNS, report.formats)
        ref = runs[REFERENCE_MODE].output
        compared = [m for m in modes if m != REFERENCE_MODE]
        report_plots.error_hist(
            tmp / "error_hist.png", {m: (runs[m].output - ref, runs[m].output_lsb) for m in compared}
        )
        report_plots.saturation_bars(
            tmp / "saturation.png",
            model.graph.tensor_names,
            {m: [runs[m].stats[t]["saturations"] for t in model.graph.tensor_names] for m in modes},
        )
        report_plots.format_distribution(tmp / "formats.png", report.formats)
        shown = (REFERENCE_MODE,) + tuple(compared)
        report_plots.forecast(
            tmp / "forecast.png",
            x_raw,
            y_raw,
            {m: model.denormalize_output(runs[m].output) for m in shown},
            list(model.graph.input_columns),
            list(model.graph.output_columns),
        )
        publish(tmp, out_dir, REPORT_DIR, {"model": model.graph.name, "modes": list(modes)})
    report.out_dir = out_dir
    report.files = [out_dir / name for name in REPORT_FILES]
