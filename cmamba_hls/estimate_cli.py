"""`cmamba-hls estimate MODEL`: cycles per window and resources of the generated C++, on paper.

Runs the estimator (codegen/estimate.py; the model: docs/hls.md "Estimate") for the options
codegen takes (--precision, --interface, --reuse, --reuse-layer) at a clock (--clock-mhz) on a
part (--part), prints a table per layer and the totals against the part's budget, and writes to
--out (default reports/estimate/): estimate.txt (the table), estimate.csv (one row per layer and
a TOTAL row), estimate.png (stacked bars: cycles per layer, by kind). OUT is an owned directory
(intsim/manifest.py, manifest OUT/estimate.json). The model needs no calibration.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from cmamba_hls.texttable import text_table
from codegen.estimate import LUTRAM_MAX_WORDS, PARTS, Estimate, estimate
from codegen.project import INTERFACES, PRECISIONS
from codegen.reuse import ReuseSpec, check_factor, parse_reuse_layer
from intsim.manifest import DirKind, owned_files, publish, staged

DEFAULT_OUT = Path("reports") / "estimate"
ESTIMATE_DIR = DirKind("estimate.json", "cmamba-hls estimate report", 1, "the estimate report", "estimate")
CSV_COLUMNS = (
    "layer",
    "op",
    "reuse",
    "lanes",
    "ii",
    "cycles",
    "compute_cycles",
    "io_cycles",
    "divider_cycles",
    "dsp",
    "rom_bram18",
    "rom_luts",
    "rom_bits",
    "buffer_bram18",
    "buffer_bits",
    "fifo_bits",
    "memory_luts",
)


def add_reuse_arguments(p: argparse.ArgumentParser) -> None:
    """--reuse and --reuse-layer, worded the same for codegen and estimate."""
    p.add_argument(
        "--reuse",
        default=None,
        metavar="N",
        help="reuse factor of every layer with multipliers (convolutions, rmsnorm): the cycles in which "
        "one block of its multiplies is done, on multiplies/N multipliers; each layer takes the "
        "largest valid factor <= N (docs/hls.md 'Reuse factor'). Default: each layer's natural factor",
    )
    p.add_argument(
        "--reuse-layer",
        action="append",
        default=[],
        metavar="NAME=N",
        help="reuse factor N for the layers matching NAME (a layer name or a pattern such as '*.dwconv'); "
        "must be valid for each of them (repeatable, later ones win)",
    )


def reuse_spec(args: argparse.Namespace) -> ReuseSpec:
    default = None
    if args.reuse is not None:
        try:
            default = int(args.reuse)
        except ValueError:
            check_factor(args.reuse, "--reuse")  # raises: not an integer
        check_factor(default, "--reuse")
    return ReuseSpec(default, tuple(parse_reuse_layer(text) for text in args.reuse_layer))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="model directory (model.json + weights/; calibration not needed)")
    p.add_argument(
        "--precision", default="int16", metavar="|".join(PRECISIONS), help="integer back end (default int16)"
    )
    p.add_argument(
        "--interface",
        default="memory",
        metavar="|".join(INTERFACES),
        help="top function (default memory; stream: the DATAFLOW top)",
    )
    add_reuse_arguments(p)
    p.add_argument("--clock-mhz", type=float, default=250.0, help="clock frequency in MHz (default 250)")
    p.add_argument(
        "--part",
        default="xczu7ev",
        metavar="|".join(PARTS),
        help="FPGA part whose budget the totals are compared with (default xczu7ev)",
    )
    p.add_argument("--out", default=str(DEFAULT_OUT), help=f"report directory (default {DEFAULT_OUT})")


def _pct(used: int, have: int) -> str:
    return f"{used:,} / {have:,} ({100.0 * used / have:.0f}%)"


def table(est: Estimate) -> str:
    head = (
        "layer",
        "op",
        "reuse",
        "lanes",
        "II",
        "cycles",
        "DSP",
        "ROM BRAM18",
        "ROM LUTs",
        "buffer bits",
        "FIFO bits",
        "buffer+FIFO BRAM18",
        "buffer+FIFO LUTs",
    )
    rows = [
        (
            s.name,
            s.op,
            s.plan.reuse or "-",
            s.plan.lanes,
            s.plan.ii,
            f"{s.cycles:,}",
            s.dsp,
            s.rom_bram18,
            f"{s.rom_luts:,}",
            f"{s.buffer_bits:,}",
            f"{s.fifo_bits:,}",
            s.buffer_bram18,
            f"{s.memory_luts:,}",
        )
        for s in est.stages
    ]
    total = sum(s.cycles for s in est.stages)
    rows.append(
        (
            "TOTAL",
            "",
            "",
            "",
            "",
            f"{total:,}",
            est.dsp,
            est.rom_bram18,
            f"{sum(s.rom_luts for s in est.stages):,}",
            f"{sum(s.buffer_bits for s in est.stages):,}",
            f"{sum(s.fifo_bits for s in est.stages):,}",
            sum(s.buffer_bram18 for s in est.stages),
            f"{sum(s.memory_luts for s in est.stages):,}",
        )
    )
    return text_table(head, rows, left_columns=(0, 1))


def summary(est: Estimate) -> list[str]:
    p = est.part
    how = (
        "the sum of the layers (one after another)"
        if est.interface == "memory"
        else "the slowest DATAFLOW process (one window enters per interval)"
    )
    if est.series > 1:
        how += f"; channel-independent: the layers run {est.series} times per window, one series after another"
    luts = sum(s.rom_luts + s.memory_luts for s in est.stages)
    return [
        f"estimate: model '{est.model}', {est.precision}, {est.interface} top, {est.clock_mhz:g} MHz, part {p.name} "
        f"({p.family})",
        f"  interval: {est.interval_cycles:,} cycles = {est.interval_us:.2f} us per window "
        f"({1e6 / est.interval_us:,.0f} windows/s), {how}",
        f"  latency:  {est.latency_cycles:,} cycles = {est.latency_us:.2f} us (first window in to forecast out)",
        f"  DSP:      {_pct(est.dsp, p.dsp)}",
        f"  BRAM18:   {_pct(est.bram18, p.bram18)} (ROM {est.rom_bram18}, buffers {est.bram18 - est.rom_bram18})",
        f"  LUTs as memory: {_pct(luts, p.luts)} (ROMs, buffers and FIFOs of <= {LUTRAM_MAX_WORDS} words; logic LUTs "
        f"are not estimated)",
        f"  reuse: {est.reuse_note or 'no layer with multipliers'}",
        f"  fits {p.name}: " + ("yes" if est.dsp <= p.dsp and est.bram18 <= p.bram18 and luts <= p.luts else "NO"),
    ]


def write_csv(est: Estimate, path: Path) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(CSV_COLUMNS)
        for s in est.stages:
            parts = s.parts()
            w.writerow(
                [
                    s.name,
                    s.op,
                    s.plan.reuse or "",
                    s.plan.lanes,
                    s.plan.ii,
                    s.cycles,
                    parts["compute"],
                    parts["copy / stream I/O"],
                    parts["dividers"],
                    s.dsp,
                    s.rom_bram18,
                    s.rom_luts,
                    s.rom_bits,
                    s.buffer_bram18,
                    s.buffer_bits,
                    s.fifo_bits,
                    s.memory_luts,
                ]
            )
        w.writerow(
            [
                "TOTAL",
                "",
                "",
                "",
                "",
                est.interval_cycles,
                "",
                "",
                "",
                est.dsp,
                est.rom_bram18,
                sum(s.rom_luts for s in est.stages),
                sum(s.rom_bits for s in est.stages),
                sum(s.buffer_bram18 for s in est.stages),
                sum(s.buffer_bits for s in est.stages),
                sum(s.fifo_bits for s in est.stages),
                sum(s.memory_luts for s in est.stages),
            ]
        )


def write_png(est: Estimate, path: Path) -> None:
    from cmamba_hls.report_plots import _figure, _save, require_matplotlib

    require_matplotlib()
    names = [s.name for s in est.stages]
    fig = _figure(max(8.0, 0.42 * len(names) + 2.5), 4.8)
    ax = fig.subplots()
    bottom = [0] * len(names)
    colors = {"compute": "tab:blue", "copy / stream I/O": "tab:orange", "dividers": "tab:red"}
    for kind, color in colors.items():
        values = [s.parts()[kind] for s in est.stages]
        ax.bar(range(len(names)), values, bottom=bottom, color=color, label=kind)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    if est.interface == "stream":
        ax.axhline(
            est.interval_cycles,
            color="black",
            linestyle="--",
            linewidth=1,
            label=f"interval {est.interval_cycles:,} cycles",
        )
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=70, ha="right", fontsize=7)
    ax.set_ylabel("cycles per window")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title(
        f"{est.model}: {est.precision}, {est.interface} top, {est.interval_us:.2f} us per window at "
        f"{est.clock_mhz:g} MHz, {est.dsp} DSP, {est.bram18} BRAM18 ({est.part.name})",
        fontsize=9,
    )
    _save(fig, path)


def run(args: argparse.Namespace) -> int:
    from intsim.graph import load_graph

    spec = reuse_spec(args)
    out = Path(args.out)
    owned_files(out, ESTIMATE_DIR)  # refuse someone else's folder before any work
    est = estimate(load_graph(Path(args.model)), args.precision, args.interface, spec, args.clock_mhz, args.part)
    text = "\n".join(summary(est) + ["", table(est)])
    with staged(out, ESTIMATE_DIR) as tmp:
        (tmp / "estimate.txt").write_text(text + "\n")
        write_csv(est, tmp / "estimate.csv")
        write_png(est, tmp / "estimate.png")
        publish(
            tmp,
            out,
            ESTIMATE_DIR,
            {
                "model": est.model,
                "precision": est.precision,
                "interface": est.interface,
                "reuse": spec.as_json(),
                "clock_mhz": est.clock_mhz,
                "part": est.part.name,
            },
        )
    print(text)
    print(f"wrote {out / 'estimate.txt'}, {out / 'estimate.csv'} and {out / 'estimate.png'}")
    return 0
