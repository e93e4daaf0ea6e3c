"""`cmamba-hls`: one console script, one subcommand per job.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``; modules are imported only when their subcommand runs, so
`cmamba-hls --help` works without torch or a compiler.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from intsim.errors import CmambaError

# name -> (module, one-line help). Order is the order shown by --help.
COMMANDS = {
    "train": ("cmamba_hls.train_cli", "train CMamba-slim on a CSV and export a model directory (needs the 'train' extra)"),
    "import-module": ("cmamba_hls.import_module_cli", "trace a PyTorch module (torch.fx) into a model directory (needs the 'train' extra)"),
    "import": ("cmamba_hls.import_cli", "import a foreign checkpoint (.pt/.pth/.safetensors) into a model directory (needs the 'train' extra)"),
    "info": ("cmamba_hls.info_cli", "show a model directory: layers, shapes, formats"),
    "calibrate": ("cmamba_hls.calibrate_cli", "collect activation statistics and choose INT16/INT8 formats"),
    "eval": ("cmamba_hls.eval_cli", "evaluate fp32 | quant8 | quant16 | bittrue: metrics, CSV and plots"),
    "codegen": ("cmamba_hls.codegen_cli", "generate the Vitis-HLS C++ project (firmware, testbench, golden vectors)"),
    "compare": ("cmamba_hls.compare_cli", "run golden model and compiled C++ on the same inputs; difference histogram"),
    "demo": ("cmamba_hls.demo", "end to end on the shipped model and data: calibrate, eval, codegen, g++ testbench"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cmamba-hls",
        description="Take a CMamba time-series model from float to bit-true integer hardware.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module_name)
        module = _import_command(module_name, name, quiet=True)
        if module is not None:
            module.add_arguments(p)
    return parser


def _import_command(module_name: str, command: str, quiet: bool = False):
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if quiet:
            return None
        raise CmambaError(f"subcommand '{command}' is unavailable: {exc}") from exc


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        module = _import_command(args._module, args.command)
        return int(module.run(args) or 0)
    except CmambaError as exc:
        print(f"cmamba-hls: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cmamba-hls: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
