"""`cmamba-hls calibrate MODEL`: run the float model on calibration windows, choose the
INT16 formats and the INT8 scales/zero points (docs/quant-spec.md section 4.2) and save
them into MODEL/model.json (`quant`). The new parameters are lowered for both integer
back ends before anything is written; the write itself is atomic."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from cmamba_hls.cli_args import add_data_arguments, check_choice, split_arguments
from cmamba_hls.texttable import text_table
from intsim.errors import CmambaError

if TYPE_CHECKING:
    from intsim.executor import Model

DEFAULT_MAX_WINDOWS = 1024


def add_arguments(p: argparse.ArgumentParser) -> None:
    from intsim.calibrate import FORMAT_CHOICES, INT8_METHODS, METHODS
    from intsim.formats import RMSNORM_MODES

    p.add_argument("model", metavar="MODEL", help="model directory (model.json + weights/); updated in place")
    add_data_arguments(p, "train", "calibrate on")
    p.add_argument(
        "--method",
        default="maxabs",
        metavar="|".join(METHODS),
        help="range per tensor: max |x| or 99th percentile of |x| (default maxabs); it chooses the "
        "INT16 formats with --formats auto (Q8.8 ignores ranges) and the INT8 ranges unless "
        "--int8-method is given",
    )
    p.add_argument(
        "--formats",
        default="q88",
        metavar="|".join(FORMAT_CHOICES),
        help="q88: Q8.8 everywhere; auto: per-tensor fractional bits from the range (default q88)",
    )
    p.add_argument(
        "--int8-method",
        metavar="|".join(INT8_METHODS),
        help="INT8 activation range: min/max, signed percentiles, or mse (per tensor the range of "
        "least INT8 quantization error on the calibration data) (default: --method)",
    )
    p.add_argument(
        "--int8-rmsnorm",
        default="v2",
        metavar="|".join(RMSNORM_MODES),
        help="INT8 RMSNorm: v2 integer (bit-true in C++) or v1 float inside (default v2)",
    )
    p.add_argument(
        "--max-windows",
        type=int,
        default=DEFAULT_MAX_WINDOWS,
        metavar="N",
        help=f"calibrate on N windows evenly spaced over the split (default {DEFAULT_MAX_WINDOWS})",
    )


def format_table(model: Model) -> str:
    """tensor, op, calibrated min/max, INT16 format, INT8 scale and zero point (the model's
    validated formats: graph.formats)."""
    from intsim.formats import q_name
    from intsim.graph import INPUT_NAME

    fmt = model.graph.formats
    stats, q16, q8 = fmt.stats, fmt.int16, fmt.int8
    head = ("tensor", "op", "min", "max", "int16", "int8 scale", "zp")
    lines = [head]
    for name in model.graph.tensor_names:
        op = "input" if name == INPUT_NAME else model.graph.layer(name).op
        qp = q8.qp(name)
        lines.append(
            (
                name,
                op,
                f"{stats[name]['min']:.4g}",
                f"{stats[name]['max']:.4g}",
                q_name(q16.frac(name)),
                f"{qp.scale:.5g}",
                str(qp.zero_point),
            )
        )
    return text_table(head, lines[1:], left_columns=(0, 1))


def run(args: argparse.Namespace) -> int:
    from cmamba_hls.evaluate import load_eval_data, resolve_data_path
    from intsim.calibrate import FORMAT_CHOICES, INT8_METHODS, METHODS, calibrate
    from intsim.executor import load_model
    from intsim.formats import RMSNORM_MODES
    from intsim.graph import save_quant

    part, sizes = split_arguments(args.split, "train")
    check_choice("--method", args.method, METHODS)
    check_choice("--formats", args.formats, FORMAT_CHOICES)
    check_choice("--int8-method", args.int8_method, INT8_METHODS)
    check_choice("--int8-rmsnorm", args.int8_rmsnorm, RMSNORM_MODES)
    if args.formats == "q88" and args.method != "maxabs":
        print(
            f"cmamba-hls calibrate: note: --method {args.method} does not change the INT16 formats with "
            f"--formats q88 (Q8.8 everywhere, whatever the range); it sets the INT8 ranges"
            f"{' only' if args.int8_method is None else ' only, and --int8-method overrides even that'}. "
            f"For {args.method} INT16 formats use --formats auto.",
            file=sys.stderr,
        )
    if args.max_windows < 1:
        raise CmambaError(f"--max-windows must be >= 1, got {args.max_windows}")
    model_dir = Path(args.model)
    model = load_model(model_dir)
    data = resolve_data_path(model, args.data)
    x_raw, _ = load_eval_data(model, data, part, args.max_windows, sizes)
    calibrate(
        model,
        model.normalize_input(x_raw),
        method=args.method,
        formats=args.formats,
        save=False,
        int8_method=args.int8_method,
        int8_rmsnorm=args.int8_rmsnorm,
    )
    _ = model.program, model.program8  # both back ends lower the new parameters, or nothing is saved
    try:
        save_quant(model.graph)
    except OSError as exc:
        raise CmambaError(f"cannot write {model_dir / 'model.json'}: {exc}") from exc
    q16, q8 = model.graph.formats.int16, model.graph.formats.int8
    print(f"calibrated '{model.graph.name}' on {len(x_raw)} {part} windows of {data}")
    print(format_table(model))
    print(f"INT16: method {q16.method}, formats {q16.formats}; INT8: method {q8.method}, RMSNorm {q8.rmsnorm}")
    print(f"wrote {model_dir / 'model.json'} (quant.int16, quant.int8, quant.stats)")
    return 0
