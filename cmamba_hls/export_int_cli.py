"""`cmamba-hls export-int MODEL --precision int16|int8 --out DIR`: the integer deployment export
(codegen/deploy.py; format: docs/deploy-format.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from codegen.deploy import PRECISIONS, write_export


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model directory (calibrated: model.json with quant.int16 / quant.int8)")
    p.add_argument("--precision", choices=PRECISIONS, required=True, help="integer program to export")
    p.add_argument(
        "--out", required=True, help="export directory to write (new, empty, or an earlier export, which is replaced)"
    )


def run(args: argparse.Namespace) -> int:
    from codegen.project import as_model

    model = as_model(args.model)
    exp, written = write_export(model, args.precision, Path(args.out))
    n_arrays = sum(len(rec.arrays) for rec in exp.layers)
    n_ints = sum(a.size for rec in exp.layers for a in rec.arrays.values())
    print(f"export-int: {args.precision} program of '{args.model}' -> {args.out}")
    print(
        f"  {len(exp.layers)} layers, {n_arrays} integer arrays ({n_ints} values), "
        f"{len(exp.scalar_vector())} scalars; {len(written)} files (format: docs/deploy-format.md)"
    )
    return 0
