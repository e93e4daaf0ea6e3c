"""One sweep point, run wherever the runner sends it (this process or a Dask worker).

`evaluate_point(task) -> dict` calibrates the in-memory model with the point's knobs (never
saving: the model directory is not touched), evaluates the point's integer mode (bittrue for
int16, quant8 for int8) on the test split (or `Context.split`) against the truth and the fp32 model
(cmamba_hls.evaluate.run_mode / mode_metrics), and estimates cycles and resources
(codegen.estimate.estimate). It returns the measured columns (`METRIC_COLUMNS`) plus "seconds";
a point that fails returns status "error" and the error's first line instead of raising.

Each process keeps a cache (`_CACHE`, one entry per `Context`: model directory, data file, eval
windows and split): the model, the evaluated windows, their fp32 reference outputs and the calibration statistics
per calibration window count are loaded or computed once per process (once per Dask worker), not
per point. Points of one context share its model, so they run one at a time per process (a lock):
every point's numbers depend only on the point, whichever process runs it and whatever ran before.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cmamba_hls.sweep_space import KNOB_NAMES, NOT_USED, frac_offsets, reuse_spec

MODE_OF = {"int16": "bittrue", "int8": "quant8"}
# Measured per point, in CSV order (docs/sweep.md); "seconds" (run time) is kept apart: it varies run to run.
METRIC_COLUMNS = (
    "status",
    "windows",
    "mse",
    "mae",
    "mse_norm",
    "mae_norm",
    "mse_vs_fp32",
    "mae_vs_fp32",
    "maxae_vs_fp32",
    "maxae_vs_fp32_lsb",
    "saturations",
    "weight_saturations",
    "cycles",
    "interval_us",
    "latency_cycles",
    "latency_us",
    "dsp",
    "bram18",
    "luts_memory",
    "fits_part",
    "error",
)
TIMING_COLUMNS = ("seconds",)


@dataclass(frozen=True)
class Context:
    """What the points of one (model, data) pair share; the worker cache's key."""

    model: str  # model directory (absolute: workers may run elsewhere)
    data: str  # CSV file (absolute)
    max_windows: int | None  # windows evaluated (None: all)
    split: str = "test"  # the part evaluated (calibration: always the training part)


@dataclass(frozen=True)
class Task:
    context: Context
    values: tuple[str, ...]  # canonical knob values, KNOB_NAMES order


@dataclass
class _Loaded:
    model: object  # intsim.executor.Model
    x_test_norm: np.ndarray
    y_test: np.ndarray
    reference: object  # cmamba_hls.evaluate.ModeRun of fp32
    calibration: dict = field(default_factory=dict)  # calib windows -> (x_norm, stats)
    lock: threading.Lock = field(default_factory=threading.Lock)


_CACHE: dict[Context, _Loaded] = {}
_CACHE_LOCK = threading.Lock()
LOADS: dict[Context, int] = {}  # how many times this process loaded each context (tests read it)


def _load(ctx: Context) -> _Loaded:
    from cmamba_hls.evaluate import load_eval_data, run_mode
    from intsim.executor import load_model

    model = load_model(Path(ctx.model))
    x_raw, y = load_eval_data(model, Path(ctx.data), ctx.split, ctx.max_windows)
    x_norm = model.normalize_input(x_raw)
    LOADS[ctx] = LOADS.get(ctx, 0) + 1
    return _Loaded(model, x_norm, y, run_mode(model, x_norm, "fp32", progress=False))


def loaded(ctx: Context) -> _Loaded:
    """The cached entry of `ctx`, loaded on first use in this process."""
    with _CACHE_LOCK:
        if ctx not in _CACHE:
            _CACHE[ctx] = _load(ctx)
        return _CACHE[ctx]


def cache_loads() -> dict[tuple[str, str], int]:
    """(model, data) -> loads in this process (client.run(cache_loads) asks every worker)."""
    return {(c.model, c.data): n for c, n in LOADS.items()}


def _calibration(entry: _Loaded, ctx: Context, windows: int) -> tuple[np.ndarray, dict]:
    from cmamba_hls.evaluate import load_eval_data
    from intsim.calibrate import collect_stats

    if windows not in entry.calibration:
        x_raw, _ = load_eval_data(entry.model, Path(ctx.data), "train", windows)
        x_norm = entry.model.normalize_input(x_raw)
        entry.calibration[windows] = (x_norm, collect_stats(entry.model, x_norm))
    return entry.calibration[windows]


def _measure(entry: _Loaded, ctx: Context, v: dict[str, str]) -> dict:
    from cmamba_hls.evaluate import mode_metrics, run_mode
    from codegen.estimate import estimate
    from intsim.calibrate import calibrate

    model = entry.model
    x_cal, stats = _calibration(entry, ctx, int(v["calib_windows"]))
    int16 = v["precision"] == "int16"
    calibrate(
        model,
        x_cal,
        method=v["method"] if v["method"] != NOT_USED else "maxabs",
        formats=v["formats"] if int16 else "q88",
        save=False,
        int8_method=None if int16 else v["int8_method"],
        int8_rmsnorm="v2" if int16 else v["int8_rmsnorm"],
        stats=stats,
        frac_offsets=frac_offsets(model.graph, v["frac_offset"], v["frac_offset_layer"]),
    )
    run = run_mode(model, entry.x_test_norm, MODE_OF[v["precision"]], progress=False)
    m = mode_metrics(model, run, entry.reference, entry.y_test)
    est = estimate(
        model.graph,
        v["precision"],
        v["interface"],
        reuse_spec(v["reuse"], v["reuse_layer"]),
        float(v["clock_mhz"]),
        v["part"],
    )
    luts = sum(s.rom_luts + s.memory_luts for s in est.stages)
    p = est.part
    out = {
        k: m[k][-1]
        for k in (
            "mse",
            "mae",
            "mse_norm",
            "mae_norm",
            "mse_vs_fp32",
            "mae_vs_fp32",
            "maxae_vs_fp32",
            "maxae_vs_fp32_lsb",
        )
    }
    return out | {
        "windows": m["samples"],
        "saturations": m["saturations"],
        "weight_saturations": sum(run.weight_saturations.values()),
        "cycles": est.interval_cycles,
        "interval_us": est.interval_us,
        "latency_cycles": est.latency_cycles,
        "latency_us": est.latency_us,
        "dsp": est.dsp,
        "bram18": est.bram18,
        "luts_memory": luts,
        "fits_part": int(est.dsp <= p.dsp and est.bram18 <= p.bram18 and luts <= p.luts),
    }


def error_line(exc: BaseException) -> str:
    """'Type: first line of the message' (a CSV cell)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def evaluate_point(task: Task) -> dict:
    """The point's METRIC_COLUMNS and TIMING_COLUMNS (see the module docstring)."""
    t0 = time.perf_counter()
    try:
        entry = loaded(task.context)
        with entry.lock:
            values = dict(zip(KNOB_NAMES, task.values, strict=True))
            row = {"status": "ok", "error": ""} | _measure(entry, task.context, values)
    except Exception as exc:  # a failing point is recorded, the sweep goes on
        row = {"status": "error", "error": error_line(exc)}
    return row | {"seconds": time.perf_counter() - t0}
