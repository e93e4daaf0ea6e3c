"""`cmamba-hls`: one console script, one subcommand per job.

Each subcommand lives in its own module of this package exposing ``add_arguments(parser)``
and ``run(args) -> int``. Command modules import heavy or optional dependencies (torch,
matplotlib, a compiler) only inside ``run``, so `cmamba-hls --help` works without them.
"""

from __future__ import annotations

import argparse
import sys

from cmamba_hls import (
    calibrate_cli,
    codegen_cli,
    compare_cli,
    demo,
    estimate_cli,
    eval_cli,
    export_int_cli,
    fetch_data,
    import_cli,
    import_module_cli,
    info_cli,
    qat_cli,
    sweep_cli,
    train_cli,
)
from intsim.errors import CmambaError

# name -> (module, one-line help). Order is the order shown by --help.
COMMANDS = {
    "train": (train_cli, "train CMamba-slim on a CSV and export a model directory (needs the 'train' extra)"),
    "import-module": (
        import_module_cli,
        "trace a PyTorch module (torch.fx) into a model directory (needs the 'train' extra)",
    ),
    "import": (
        import_cli,
        "import a foreign checkpoint (.pt/.pth/.safetensors) into a model directory (needs the 'train' extra)",
    ),
    "info": (info_cli, "show a model directory: layers, shapes, formats"),
    "calibrate": (calibrate_cli, "collect activation statistics and choose INT16/INT8 formats"),
    "qat": (
        qat_cli,
        "quantization-aware fine-tuning through the int8/int16 integer program; exports a calibrated "
        "model directory (needs the 'train' extra)",
    ),
    "eval": (eval_cli, "evaluate fp32 | quant16 | bittrue | quant8: metrics, CSV and plots"),
    "codegen": (codegen_cli, "generate the Vitis-HLS C++ project (firmware, testbench, golden vectors)"),
    "export-int": (export_int_cli, "write the integer deployment export: manifest + NPY of every layer's integers"),
    "compare": (compare_cli, "run golden model and compiled C++ on the same inputs; difference histogram"),
    "estimate": (estimate_cli, "cycles per window, DSPs, BRAM, buffers of the generated C++ on an FPGA part, on paper"),
    "sweep": (
        sweep_cli,
        "design-space sweep: calibrate, evaluate and estimate every point of a space, on Dask; "
        "CSV, Pareto plot (needs the 'sweep' extra)",
    ),
    "fetch-data": (fetch_data, "download and prepare a second public data set (epf) into data/ (not committed)"),
    "demo": (demo, "end to end on the shipped model and data: calibrate, eval, codegen, g++ testbench"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cmamba-hls",
        description="Take a CMamba time-series model from float to bit-true integer hardware.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_run=module.run)
        module.add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except CmambaError as exc:
        print(f"cmamba-hls: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cmamba-hls: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
