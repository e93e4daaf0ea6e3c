"""`cmamba-hls compare MODEL`: golden model and compiled C++ on the same inputs, layer by layer.

Generates the project (or reuses OUT/project when it was generated from the same model with
the same options), builds it with g++, runs its testbench with `--dump` (the C++ value of
every layer, as NPY), runs the golden model on the very same `tb_data/input.npy`, and for
every layer counts mismatching elements and histograms the differences `C++ - golden` in
LSB of that layer's format. Prints a per-layer table, the first mismatch (layer in graph
order, vector, channel, step), writes OUT/compare.csv (layer, diff_lsb, count),
OUT/compare_hist.png and OUT/cpp_layers/*.npy. On a correct build the histogram is one bar
at 0. Exit status 1 when any element differs. OUT is an owned directory (intsim/manifest.py,
manifest OUT/compare.json): a non-empty OUT without it is refused, other files are kept.
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cmamba_hls.texttable import text_table
from codegen.build import build, run_testbench
from codegen.names import sanitize_names
from codegen.project import (
    PRECISIONS,
    PROJECT_DIR,
    TYPES,
    as_model,
    data_line,
    generate_project,
    load_backend,
    project_options,
)
from intsim.data import find_training_data
from intsim.errors import CmambaError
from intsim.manifest import DirKind, claim, publish, read_manifest, staged

if TYPE_CHECKING:
    from codegen.emission import Emission
    from intsim.executor import Model

DEFAULT_OUT = Path("reports") / "compare"
COMPARE_DIR = DirKind("compare.json", "cmamba-hls compare report", 1, "the compare report", "compare")


@dataclass
class LayerDiff:
    tensor: str
    cname: str
    elements: int
    mismatches: int
    hist: dict  # diff in LSB -> count
    first: tuple[int, int, int] | None = None  # (vector, channel, step)


@dataclass
class CompareResult:
    project: Path
    layers: list[LayerDiff]
    passed: int
    failed: int
    reused: bool = False
    tb_first: str | None = None
    files: list[Path] = field(default_factory=list)
    data: str = ""  # which data the vectors came from (codegen.project.data_line)

    @property
    def mismatches(self) -> int:
        return sum(d.mismatches for d in self.layers)

    @property
    def hist(self) -> dict:
        total: dict = {}
        for d in self.layers:
            for k, v in d.hist.items():
                total[k] = total.get(k, 0) + v
        return dict(sorted(total.items()))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="calibrated model directory")
    p.add_argument("--precision", choices=PRECISIONS, default="int16", help="integer back end (default int16)")
    p.add_argument("--types", choices=TYPES, default="stdint", help="C++ integer types (default stdint)")
    p.add_argument("--vectors", type=int, default=1000, help="test vectors (default 1000)")
    p.add_argument(
        "--data",
        default=None,
        help="CSV for real-data vectors (default: the model's training data, found as calibrate and eval find it)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random vectors (default 0)")
    p.add_argument(
        "--out",
        default=str(DEFAULT_OUT),
        help=f"report directory (default {DEFAULT_OUT}); the project goes to OUT/project",
    )
    p.add_argument("--jobs", type=int, default=2, help="parallel g++ jobs (default 2)")


def _reusable(project: Path, wanted: dict) -> bool:
    have = read_manifest(project, PROJECT_DIR)
    return have is not None and all(have.get(k) == v for k, v in wanted.items())


def diff_layers(golden: dict, dump_dir: Path, emission: Emission) -> list[LayerDiff]:
    """Per layer (graph order): C++ dump vs golden tensor, differences in LSB."""
    out = []
    for b in emission.buffers:
        path = dump_dir / f"{b.cname}.npy"
        if not path.is_file():
            raise CmambaError(f"the testbench wrote no dump for layer '{b.tensor}' ({path})")
        cpp = np.load(path, allow_pickle=False).astype(np.int64)
        gold = np.asarray(golden[b.tensor]).astype(np.int64)
        if cpp.shape != gold.shape:
            raise CmambaError(f"layer '{b.tensor}': C++ dump has shape {cpp.shape}, golden {gold.shape}")
        diff = cpp - gold
        values, counts = np.unique(diff, return_counts=True)
        bad = np.flatnonzero(diff)
        first = tuple(int(i) for i in np.unravel_index(bad[0], diff.shape)) if bad.size else None
        out.append(
            LayerDiff(
                b.tensor,
                b.cname,
                int(diff.size),
                int(bad.size),
                {int(v): int(c) for v, c in zip(values, counts, strict=True)},
                first,
            )
        )
    return out


def compare(
    model: Model | str | Path,
    out_dir: str | Path,
    precision: str = "int16",
    types: str = "stdint",
    n_vectors: int = 1000,
    data: str | Path | None = None,
    seed: int = 0,
    jobs: int = 2,
    project: str | Path | None = None,
) -> CompareResult:
    """Generate or reuse the project, build, dump every C++ layer, diff against the golden model.
    `project`: use this existing generated project instead (tests break one on purpose)."""
    model = as_model(model)
    out_dir = Path(out_dir)
    claim(out_dir, COMPARE_DIR)  # ours (or new) before the project goes in OUT/project
    reused = project is not None
    if project is None:
        project = out_dir / "project"
        wanted = project_options(model, precision, types, n_vectors, None, seed, False)
        wanted.pop("data")
        reused = _reusable(project, wanted) and data is None
        if not reused:
            generate_project(
                model, project, precision=precision, types=types, n_vectors=n_vectors, data=data, seed=seed
            )
    project = Path(project)
    manifest = read_manifest(project, PROJECT_DIR)
    if manifest is None:
        raise CmambaError(f"{project}: not a project generated by this cmamba-hls codegen (no valid project.json)")
    precision, types = manifest["precision"], manifest["types"]
    data_file = manifest.get("data") if isinstance(manifest.get("data"), str) else None
    used = data_line(
        Path(data_file) if data_file else None,
        find_training_data(model.graph)[1] or "no --data",
        (manifest.get("vectors") or {}).get("real", 0),
    )
    build(project, jobs)
    backend = load_backend(precision)
    names = sanitize_names(layer.name for layer in model.graph.layers)
    em = backend.emit(model, names, types)
    x_q = np.load(project / "tb_data" / "input.npy", allow_pickle=False)
    _, golden = em.run_golden(x_q)
    with staged(out_dir, COMPARE_DIR) as tmp:
        tb = run_testbench(project, dump_dir=tmp / "cpp_layers")
        layers = diff_layers(golden, tmp / "cpp_layers", em)
        res = CompareResult(project, layers, tb.passed, tb.failed, reused, tb.first_mismatch, data=used)
        write_csv(res, tmp / "compare.csv")
        write_png(res, tmp / "compare_hist.png")
        publish(tmp, out_dir, COMPARE_DIR)
    res.files = [out_dir / "compare.csv", out_dir / "compare_hist.png"]
    return res


def write_csv(res: CompareResult, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["layer", "diff_lsb", "count", "elements", "mismatches"])
        for d in res.layers:
            for diff, count in sorted(d.hist.items()):
                w.writerow([d.tensor, diff, count, d.elements, d.mismatches])
    tmp.replace(path)
    return path


def write_png(res: CompareResult, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hist = res.hist
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, max(4.0, 0.22 * len(res.layers) + 1.5)))
    ax1.bar([str(k) for k in hist], list(hist.values()), color=["tab:green" if k == 0 else "tab:red" for k in hist])
    ax1.set_yscale("log")
    ax1.set_ylim(bottom=0.5)
    ax1.set_xlabel("C++ - golden (LSB)")
    ax1.set_ylabel("elements (all layers, all vectors)")
    ax1.set_title(f"{res.mismatches} mismatching elements")
    names = [d.tensor for d in res.layers][::-1]
    ax2.barh(names, [d.mismatches for d in res.layers][::-1], color="tab:red")
    ax2.set_xlabel("mismatching elements")
    ax2.set_title("per layer")
    ax2.tick_params(axis="y", labelsize=7)
    if res.mismatches == 0:
        ax2.set_xlim(0, 1)
    fig.suptitle(f"golden vs C++: {res.passed} vectors passed, {res.failed} failed")
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
    return path


def format_report(res: CompareResult) -> str:
    head = ("layer", "elements", "mismatches", "min diff", "max diff", "histogram (diff: count)")
    rows = [head]
    for d in res.layers:
        lo, hi = min(d.hist), max(d.hist)
        shown = ", ".join(f"{k:+d}: {v}" if k else f"0: {v}" for k, v in sorted(d.hist.items())[:7])
        rows.append(
            (
                d.tensor,
                str(d.elements),
                str(d.mismatches),
                f"{lo:+d}" if lo else "0",
                f"{hi:+d}" if hi else "0",
                shown + (" ..." if len(d.hist) > 7 else ""),
            )
        )
    return text_table(head, rows[1:], left_columns=(0, 5))


def run(args: argparse.Namespace) -> int:
    if args.vectors < 1:
        raise CmambaError(f"--vectors must be >= 1, got {args.vectors}")
    res = compare(args.model, Path(args.out), args.precision, args.types, args.vectors, args.data, args.seed, args.jobs)
    print(
        f"compare: {args.precision} ({args.types}) project {res.project}"
        f"{' (reused)' if res.reused else ''}, {res.passed + res.failed} vectors"
    )
    print(res.data)
    print(format_report(res))
    total = sum(d.elements for d in res.layers)
    print(
        f"mismatches: {res.mismatches} of {total} elements in {len(res.layers)} layers; "
        f"histogram of all differences (LSB): {res.hist}"
    )
    first = next((d for d in res.layers if d.mismatches), None)
    if first is not None:
        v, c, t = first.first
        print(f"first mismatch: layer '{first.tensor}' (graph order), vector {v}, channel {c}, step {t}")
    print(f"testbench: {res.passed} passed, {res.failed} failed")
    print(f"wrote {res.files[0]} and {res.files[1]}")
    return 0 if res.mismatches == 0 and res.failed == 0 else 1
