"""QAT vs post-training quantization on the shipped model and data, measured in one run (issue 14).

For INT8 and INT16: the fp32 model, post-training quantization (`cmamba-hls calibrate`, train
split) with maxabs and p99 ranges (INT16: Q8.8 everywhere, where the method does not matter, and
per-tensor `--formats auto`), and QAT started from some of them (`cmamba-hls qat`, the
defaults), on the test split: MSE and MAE against the truth (original units, milli-g), MSE and MaxAE against the
**original** fp32 model's forecast (normalised units; MaxAE also in output LSB), saturations
(every clamp event, input quantization included), and the QAT wall time (and CPU time: user + system of
all threads, less disturbed by other jobs on a shared machine). QAT's "win back" is
1 - (QAT's MSE vs fp32) / (PTQ's MSE vs fp32) for the same start. Prints a markdown table.

Usage: python bench/qat_report.py [--threads 2] [--work DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cmamba_hls.cli import main as cli  # noqa: E402
from cmamba_hls.evaluate import load_eval_data  # noqa: E402
from intsim import load_model  # noqa: E402

MODES = {"int8": "quant8", "int16": "bittrue"}
# calibration label -> calibrate arguments
CALIBRATIONS = {
    "maxabs": ["--method", "maxabs"],
    "p99": ["--method", "p99"],
    "auto maxabs": ["--formats", "auto", "--method", "maxabs"],
    "auto p99": ["--formats", "auto", "--method", "p99"],
}
# precision -> [(row label, calibration, QAT from it?)]
ROWS = {
    "int8": [("maxabs", "maxabs", True), ("p99", "p99", True)],
    "int16": [("Q8.8", "maxabs", True), ("auto maxabs", "auto maxabs", False), ("auto p99", "auto p99", True)],
}


def quiet(args: list[str]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        if cli(args) != 0:
            raise SystemExit(f"failed: cmamba-hls {' '.join(args)}")
    return out.getvalue()


def row(label, res, ref, y_raw, model, seconds=None, start=None) -> dict:
    pred = model.denormalize_output(res.output)
    lsb = res.output_lsb
    err = res.output - ref
    r = {
        "model": label,
        "mse": float(np.mean((pred - y_raw) ** 2)),
        "mae": float(np.mean(np.abs(pred - y_raw))),
        "mse_fp32": float(np.mean(err**2)),
        "maxae_lsb": float(np.max(np.abs(err)) / lsb) if lsb else 0.0,
        "sats": sum(s["saturations"] for s in res.stats.values()),
        "seconds": seconds,
    }
    if start is not None:
        r["win_back"] = 1.0 - r["mse_fp32"] / start["mse_fp32"]
    return r


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="2", help="torch threads for QAT (default 2)")
    ap.add_argument("--work", help="keep the models here (default: a temporary folder)")
    args = ap.parse_args(argv)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="qat-report-"))
    base = {}
    for label, extra in CALIBRATIONS.items():
        base[label] = work / f"ptq_{label.replace(' ', '_')}"
        shutil.rmtree(base[label], ignore_errors=True)
        shutil.copytree(REPO / "examples" / "default", base[label])
        quiet(["calibrate", str(base[label]), *extra])
    fp32 = load_model(base["maxabs"])
    x_raw, y_raw = load_eval_data(fp32, None, "test")
    x = fp32.normalize_input(x_raw)
    ref_res = fp32.run(x, "fp32")
    ref = ref_res.output
    for precision, mode in MODES.items():
        rows = [row("fp32", ref_res, ref, y_raw, fp32)]
        rows[0].update(maxae_lsb=0.0, sats=0)
        for label, calibration, with_qat in ROWS[precision]:
            ptq = load_model(base[calibration])
            start = row(f"PTQ {label}", ptq.run(x, mode), ref, y_raw, ptq)
            rows.append(start)
            if not with_qat:
                continue
            out = work / f"qat_{precision}_{calibration.replace(' ', '_')}"
            shutil.rmtree(out, ignore_errors=True)
            t0, c0 = time.perf_counter(), time.process_time()
            log = quiet(
                ["qat", str(base[calibration]), "--precision", precision, "--out", str(out), "--threads", args.threads]
            )
            seconds = (time.perf_counter() - t0, time.process_time() - c0)
            epochs = sum(1 for line in log.splitlines() if line.startswith("epoch ")) - 1
            qat = load_model(out)
            rows.append(row(f"QAT from {label} ({epochs} epochs)", qat.run(x, mode), ref, y_raw, qat, seconds, start))
        print(
            f"\n{precision.upper()} ({mode}), {len(x)} test windows; MSE/MAE vs truth in milli-g^2 / milli-g; "
            f"vs fp32: the original float model (normalised units)",
            flush=True,
        )
        print(
            "| model | MSE | MAE | MSE vs fp32 | MaxAE vs fp32 (LSB) | saturations | QAT wins back | QAT time (CPU) |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            win = f"{round(100 * r['win_back'])} %" if "win_back" in r else "-"
            secs = f"{r['seconds'][0]:.0f} s ({r['seconds'][1]:.0f} s CPU)" if r["seconds"] else "-"
            print(
                f"| {r['model']} | {r['mse']:,.1f} | {r['mae']:.2f} | {r['mse_fp32']:.3e} | {r['maxae_lsb']:.1f} | "
                f"{r['sats']:,} | {win} | {secs} |",
                flush=True,
            )
    print(f"\nmodels in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
