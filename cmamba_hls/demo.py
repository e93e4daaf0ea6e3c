"""`cmamba-hls demo`: the whole flow on the shipped model and data, one summary table.

Steps (each timed, each printed as it starts):
  1. copy the shipped model (`examples/default`) into the report directory (the shipped
     copy is never modified) and calibrate it on the training split (Q8.8, maxabs; INT8
     maxabs, RMSNorm V2) unless `--no-calibrate` and the copy is already calibrated;
  2. evaluate fp32 / quant16 / bittrue / quant8 on the test split -> `eval/` (CSV + PNG);
  3. generate the HLS C++ project per precision (`hls_int16/`, `hls_int8/`), compile it
     with g++ and run its bit-exact testbench;
  4. print one table: mode, MSE, MAE (original units), vs-fp32 MaxAE, saturations,
     bit-exact C++ result, timings.

Everything lands in one directory (default `reports/demo/`), the same layout on every run.
It is an owned directory (intsim/manifest.py, manifest `demo.json`; `eval/` and `hls_*/` carry
their own): a non-empty `--out` without it is refused, and a re-run replaces only the files the
demo wrote.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from cmamba_hls.texttable import text_table
from intsim.errors import CmambaError
from intsim.manifest import DirKind, claim, publish, staged
from intsim.modes import MODE_NAMES, MODES as ALL_MODES, REFERENCE

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = REPO / "examples" / "default"
DEFAULT_DATA = REPO / "data" / "daphnet_S06R02E0.csv.gz"
DEFAULT_OUT = Path("reports") / "demo"
# C++ back end per integer mode (quant16 is float fake-quant: no hardware of its own).
HLS_PRECISION = {m.name: m.hls_precision for m in ALL_MODES if m.hls_precision}
MODES = MODE_NAMES
DEMO_DIR = DirKind("demo.json", "cmamba-hls demo", 1, "the demo", "demo")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model", default=str(DEFAULT_MODEL), help="model directory to demo (default: the shipped examples/default)"
    )
    p.add_argument(
        "--data",
        default=str(DEFAULT_DATA),
        help="CSV with the model's columns (default: the shipped Daphnet recording)",
    )
    p.add_argument("--out", default=str(DEFAULT_OUT), help="report directory (default reports/demo)")
    p.add_argument("--vectors", type=int, default=1000, help="golden test vectors per C++ testbench (default 1000)")
    p.add_argument(
        "--types",
        choices=("stdint", "ap"),
        default="stdint",
        help="C++ integer types of the generated project (default stdint; ap needs CMAMBA_HLS_AP_INCLUDE)",
    )
    p.add_argument("--skip-hls", action="store_true", help="skip C++ generation and the g++ testbench")


class _Steps:
    """Prints each step as it starts and records how long it took."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.t0 = time.perf_counter()

    def run(self, title: str, fn, *args, **kwargs):
        print(f"[{time.perf_counter() - self.t0:6.1f} s] {title} ...", flush=True)
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        self.seconds[title] = time.perf_counter() - start
        return result


def _prepare_model(src: Path, out: Path) -> Path:
    """Copy the model directory to out/model (files the demo wrote before are replaced)."""
    if not (src / "model.json").is_file():
        raise CmambaError(f"model directory '{src}' has no model.json")
    with staged(out, DEMO_DIR) as tmp:
        shutil.copytree(src, tmp / "model")
        publish(tmp, out, DEMO_DIR)
    return out / "model"


def _calibrate(model, data: Path):
    from cmamba_hls.calibrate_cli import DEFAULT_MAX_WINDOWS
    from cmamba_hls.evaluate import load_eval_data
    from intsim.calibrate import calibrate

    # exactly what `cmamba-hls calibrate MODEL` does by default: Q8.8 maxabs; INT8 maxabs, RMSNorm V2
    x_cal, _ = load_eval_data(model, data=data, split="train", max_windows=DEFAULT_MAX_WINDOWS)
    calibrate(model, model.normalize_input(x_cal))
    return len(x_cal)


def _hls(model, out: Path, precision: str, types: str, vectors: int, data: Path):
    from codegen.build import build_and_run
    from codegen.project import generate_project

    gen = generate_project(model, out, precision=precision, types=types, n_vectors=vectors, data=data)
    tb = build_and_run(gen.out_dir)
    return gen, tb


def _format_table(rows: list[dict], hls: dict) -> str:
    head = ("mode", "MSE", "MAE", "MaxAE vs fp32", "(LSB)", "saturations", "C++ testbench", "eval s", "C++ s")
    lines = [head]
    for r in rows:
        tb = hls.get(r["mode"])
        if tb is None:
            cpp, cpp_s = "-", "-"
        elif isinstance(tb, str):
            cpp, cpp_s = tb, "-"
        else:
            cpp = f"{tb['passed']}/{tb['passed'] + tb['failed']} bit-exact"
            cpp_s = f"{tb['seconds']:.1f}"
        lsb = "-" if r["mode"] == REFERENCE.name else f"{r['maxae_vs_fp32_lsb']:.0f}"
        lines.append(
            (
                r["mode"],
                f"{r['mse']:.1f}",
                f"{r['mae']:.2f}",
                f"{r['maxae_vs_fp32']:.4f}",
                lsb,
                str(r["saturations"]),
                cpp,
                f"{r['eval_seconds']:.1f}",
                cpp_s,
            )
        )
    return text_table(head, lines[1:])


def run(args: argparse.Namespace) -> int:
    from cmamba_hls.evaluate import evaluate, load_eval_data
    from intsim.executor import load_model

    if args.vectors < 1:
        raise CmambaError(f"--vectors must be >= 1, got {args.vectors}")
    out = Path(args.out)
    data = Path(args.data)
    if not data.is_file():
        raise CmambaError(f"data file '{data}' not found")
    claim(out, DEMO_DIR)
    steps = _Steps()

    model_dir = steps.run("copy model", _prepare_model, Path(args.model), out)
    model = load_model(model_dir)
    n_cal = steps.run("calibrate (train split, Q8.8 + INT8, maxabs)", _calibrate, model, data)

    x_test, y_test = load_eval_data(model, data=data, split="test")
    t_eval = time.perf_counter()
    report = steps.run(
        f"evaluate {', '.join(MODES)} on {len(x_test)} test windows",
        evaluate,
        model,
        x_test,
        y_test,
        modes=MODES,
        out_dir=out / "eval",
    )
    eval_total = time.perf_counter() - t_eval
    rows = []
    for r in report.summary:
        r = dict(r)
        sps = r.get("samples_per_second") or 0.0
        r["eval_seconds"] = len(x_test) / sps if sps > 0 else eval_total / len(MODES)
        rows.append(r)

    hls: dict = {}
    if args.skip_hls:
        hls = {m: "skipped" for m in HLS_PRECISION}
    else:
        for mode, precision in HLS_PRECISION.items():
            gen, tb = steps.run(
                f"HLS C++ {precision} ({args.types}): generate, g++, testbench",
                _hls,
                model,
                out / f"hls_{precision}",
                precision,
                args.types,
                args.vectors,
                data,
            )
            hls[mode] = {
                "passed": tb.passed,
                "failed": tb.failed,
                "dir": gen.out_dir,
                "seconds": tb.compile_seconds + tb.run_seconds + gen.seconds,
            }

    total = time.perf_counter() - steps.t0
    print()
    print(
        f"CMamba demo: model '{model.graph.name}', {len(x_test)} test windows of {data.name} "
        f"(MSE/MAE in original units; calibration on {n_cal} train windows)"
    )
    print(_format_table(rows, hls))
    print()
    failed = [m for m, tb in hls.items() if isinstance(tb, dict) and tb["failed"]]
    for mode, tb in hls.items():
        if isinstance(tb, dict):
            print(f"HLS project ({HLS_PRECISION[mode]}): {tb['dir']}  (make -C {tb['dir']} test)")
    print(f"report: {out}/eval  (metrics.csv, layers.csv, formats.csv, *.png)")
    print(f"total {total:.1f} s")
    if failed:
        print(f"C++ testbench mismatches in: {', '.join(failed)}")
        return 1
    return 0
