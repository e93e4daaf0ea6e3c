"""`cmamba-hls eval MODEL`: accuracy of fp32 / quant16 / bittrue / quant8 on one data
split against the ground truth and the fp32 model, saturations per layer, formats;
prints a compact table and writes the report directory (docs/reports.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from cmamba_hls.cli_args import add_data_arguments, split_arguments
from cmamba_hls.texttable import text_table
from intsim.errors import CmambaError
from intsim.modes import MODE_NAMES, REFERENCE

DEFAULT_OUT = Path("reports") / "eval"
MODE_CHOICES = MODE_NAMES + ("all",)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="model directory (model.json + weights/)")
    add_data_arguments(p, "test", "evaluate on, as in training")
    p.add_argument(
        "--mode",
        default="all",
        metavar="|".join(MODE_CHOICES),
        help="mode(s) to report, comma-separated or 'all' (default all); fp32 always runs as the reference",
    )
    p.add_argument("--out", metavar="DIR", help="report directory (default reports/eval/<model directory name>)")
    p.add_argument(
        "--max-windows", type=int, metavar="N", help="evaluate N windows evenly spaced over the split (default: all)"
    )
    p.add_argument("--batch", type=int, default=256, metavar="N", help="windows per model call (default 256)")


def format_table(summary: list[dict]) -> str:
    head = ("mode", "MSE", "MAE", "MSE(norm)", "MAE(norm)", "MaxAE vs fp32", "(LSB)", "saturations", "samples/s")
    lines = [head]
    for r in summary:
        lsb = "-" if r["mode"] == REFERENCE.name else f"{r['maxae_vs_fp32_lsb']:.1f}"
        lines.append(
            (
                r["mode"],
                f"{r['mse']:.6g}",
                f"{r['mae']:.6g}",
                f"{r['mse_norm']:.4f}",
                f"{r['mae_norm']:.4f}",
                f"{r['maxae_vs_fp32']:.4g}",
                lsb,
                str(r["saturations"]),
                f"{r['samples_per_second']:.0f}",
            )
        )
    return text_table(head, lines[1:])


def run(args: argparse.Namespace) -> int:
    from cmamba_hls.evaluate import REPORT_FILES, evaluate, load_eval_data, parse_modes, resolve_data_path
    from intsim.executor import load_model

    modes = parse_modes(args.mode)
    for name in ("max_windows", "batch"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise CmambaError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    part, sizes = split_arguments(args.split, "test")
    model_dir = Path(args.model)
    model = load_model(model_dir)
    out = Path(args.out) if args.out else DEFAULT_OUT / model_dir.resolve().name
    data = resolve_data_path(model, args.data)
    x, y = load_eval_data(model, data, part, args.max_windows, sizes)
    report = evaluate(model, x, y, modes=modes, out_dir=out, batch=args.batch)
    print(
        f"model '{model.graph.name}' ({model_dir}), {report.n_samples} {part} windows of {data}; "
        f"MSE/MAE vs truth in original units, MaxAE vs fp32 in network units"
    )
    print(format_table(report.summary))
    print(f"report: {out}  ({', '.join(REPORT_FILES)})")
    return 0
