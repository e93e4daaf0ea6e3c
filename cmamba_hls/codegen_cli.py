"""`cmamba-hls codegen MODEL --out DIR`: generate the HLS C++ project (codegen/project.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from cmamba_hls.estimate_cli import add_reuse_arguments, reuse_spec
from codegen.project import INTERFACES, PRECISIONS, TYPES, WEIGHTS, data_line, generate_project


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model directory (calibrated: model.json with quant.int16 / quant.int8)")
    p.add_argument("--out", required=True, help="project directory to write (replaced if it is a generated project)")
    p.add_argument("--precision", choices=PRECISIONS, default="int16", help="integer back end (default int16)")
    p.add_argument(
        "--types",
        choices=TYPES,
        default="stdint",
        help="C++ integer types: stdint (int16_t/int64_t + explicit RNE/saturation helpers) or ap "
        "(Vitis ap_int/ap_fixed; building needs CMAMBA_HLS_AP_INCLUDE or make AP_INCLUDE=...)",
    )
    p.add_argument(
        "--interface",
        default="memory",
        metavar="|".join(INTERFACES),
        help="top function: memory (cmamba_top on ap_memory arrays, the layers one after another; "
        "default) or stream (hls::stream AXI-Stream ports, #pragma HLS DATAFLOW with one process "
        "per layer; building needs hls_stream.h: CMAMBA_HLS_AP_INCLUDE or make AP_INCLUDE=...)",
    )
    add_reuse_arguments(p)
    p.add_argument(
        "--weights",
        choices=WEIGHTS,
        default="embedded",
        help="embedded (default): constant tables compiled in as ROMs; external: loaded at start-up "
        "from an integer export (DIR/export/, or tb --weights DIR from cmamba-hls export-int): "
        "new weights of the same architecture and formats run without regeneration",
    )
    p.add_argument("--vectors", type=int, default=1000, help="golden test vectors (default 1000)")
    p.add_argument(
        "--data",
        default=None,
        help="CSV for real-data vectors (default: the file named by the model's training record, "
        "looked up in the repository's data/, the model directory and beside it, as calibrate "
        "and eval do)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random vectors (default 0)")
    p.add_argument(
        "--layers",
        action="store_true",
        help="also write every intermediate tensor (tb_data/layers/): the testbench checks each layer",
    )


def run(args: argparse.Namespace) -> int:
    from codegen.reuse import resolve_reuse, rounded
    from intsim.graph import load_graph

    spec = reuse_spec(args)
    res = generate_project(
        args.model,
        Path(args.out),
        precision=args.precision,
        types=args.types,
        n_vectors=args.vectors,
        data=args.data,
        seed=args.seed,
        layers=args.layers,
        weights=args.weights,
        interface=args.interface,
        reuse=spec,
    )
    mix = ", ".join(f"{v} {k}" for k, v in res.vector_counts.items())
    print(
        f"codegen: {args.precision} ({args.types}, {args.weights} weights, {args.interface} interface) project for "
        f"'{args.model}' -> {res.out_dir}"
    )
    print(
        f"  {len(res.files)} files, {res.n_vectors} golden vectors ({mix})"
        + (", per-layer golden tensors" if res.layers else "")
    )
    print(f"  {data_line(res.data_file, res.data_note, res.vector_counts.get('real', 0))}")
    changed = rounded(resolve_reuse(load_graph(Path(args.model)), spec), spec)
    if changed:
        print(f"  --reuse {spec.default} is not valid for every layer; the largest valid factor below it: {changed}")
    print(f"  generated in {res.seconds:.2f} s; build and check: make -C {res.out_dir} test")
    return 0
