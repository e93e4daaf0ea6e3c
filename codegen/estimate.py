"""Cycles and resources of a generated project, on paper (no vendor tool): the estimator back end.

`estimate(graph, precision="int16", interface="memory", reuse=ReuseSpec(), clock_mhz=250, part="xczu7ev")
-> Estimate`: per layer and in total, the cycles per window, the latency in microseconds, the
multipliers (DSP slices at the operand widths the templates use), the ROMs (weights, biases,
tables) in BRAM18 or LUTs, and the activation buffers and FIFOs. It needs the graph only (no
calibration): every width it uses is fixed by the precision's spec (docs/quant-spec.md).

One row per op (`ESTIMATE`, an intsim.ops.BackendTable, tests/test_registry.py), each giving for
one layer, from its dimensions and parallelism plan (codegen/reuse.py):
  knob     the loop a reuse factor splits: extent E and multiplies per iteration N (or None)
  cost     its pipelined loops (counter slot, invocations, trip count, II, depth), the cycles
           outside loops, its multipliers (count, widths), ROMs (words, width) and local arrays (buffers)
The loops are exactly the pipelined loops of its templates (templates/int16/, templates/int8/):
each one's slot is its CMAMBA_COUNT(slot), and tests/test_estimate.py checks, on the default model
and on random graphs, that the iterations the testbench counts (-DCMAMBA_COUNT_LOOPS) equal
invocations x trips of every loop here. The cycle model (docs/hls.md, "Estimate"):

  loop cycles   = invocations x (trips x II + depth)        (an inner pipelined loop restarts
                                                             every time its outer loop runs)
  layer cycles  = sum of its loops + non-loop latency (dividers: DIV_LATENCY each, per token)
  memory top    = the input copy (to time-major) + sum of all layers + the output copy
                                                             (one window at a time; a channel-
                                                             independent graph: SERIES body passes
                                                             in sequence, every loop x SERIES)
  stream top    = DATAFLOW: each process = token reads + its layer + token writes;
                  interval = the slowest process; latency = the first window through the
                  token-level timing model (codegen/dataflow.py simulate_dataflow)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from codegen.dataflow import MIN_DEPTH, Dataflow, fifo_depths, plan_dataflow, read_order, simulate_dataflow
from codegen.reuse import Plan, ReuseSpec, resolve_reuse, rounded
from intsim.errors import CmambaError
from intsim.kernels_int8 import REVIN_INV_BITS_INT8, RMS_INV_BITS_INT8
from intsim.kernels_int16 import LUT_LAST, REVIN_INV_BITS, RMS_INV_BITS
from intsim.lut import EXP_SIZE
from intsim.ops import BackendTable

if TYPE_CHECKING:
    from intsim.graph import Graph, Layer

# ---- counter slots (templates/common/primitives.h.j2) ----
SLOT_ISQRT, SLOT_READ, SLOT_WRITE = 7, 8, 9
# ---- latency assumptions (docs/hls.md "Estimate": what synthesis can change) ----
DIV_LATENCY = 68  # a 64-bit / 64-bit divider (Vitis: sdiv_64ns_64ns_64_68): per rne_div call
ISQRT_TAIL = 4  # the square root's final r * r compare and + 1
ISQRT_DIGITS = 31  # isqrt_rne_rows' digit steps (one bit of the root each)
COPY_DEPTH = 2  # read, write
MUL_DEPTH = 3  # a DSP multiply, registered
ROUND_DEPTH = 2  # rounding shift + saturation, write
ROM_DEPTH = 2  # a BRAM/LUT ROM read
LUTRAM_MAX_WORDS = 64  # a ROM/buffer bank of <= 64 words goes to LUTs (LUT6 = 64 x 1), else BRAM18
BRAM18_SHAPES = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36))  # (words, bits) modes


@dataclass(frozen=True)
class Part:
    name: str
    family: str
    dsp: int
    bram18: int
    luts: int
    dsp_a: int  # multiplier input widths of the DSP slice (signed): 27 x 18 or 25 x 18
    dsp_b: int
    source: str


# Vendor data sheets (the DSP/BRAM/LUT columns of their device tables).
PARTS = {
    p.name: p
    for p in (
        Part(
            "xczu7ev",
            "Zynq UltraScale+ MPSoC EV (ZCU104)",
            1728,
            624,
            230400,
            27,
            18,
            "AMD/Xilinx DS891, Zynq UltraScale+ MPSoC Data Sheet: Overview (ZU7EV: 1,728 DSP48E2, 312 BRAM36, "
            "230,400 CLB LUTs)",
        ),
        Part(
            "xcu250",
            "Alveo U250 (XCU250)",
            12288,
            5376,
            1728000,
            27,
            18,
            "AMD/Xilinx DS962, Alveo U200 and U250 Data Center Accelerator Cards Data Sheet (U250: 12,288 DSP, "
            "2,688 BRAM36, 1,728K LUTs)",
        ),
        Part(
            "xc7z020",
            "Zynq-7000 (PYNQ-Z1/Z2, ZedBoard)",
            220,
            280,
            53200,
            25,
            18,
            "AMD/Xilinx DS190, Zynq-7000 SoC Data Sheet: Overview (Z-7020: 220 DSP48E1, 140 BRAM36, 53,200 LUTs)",
        ),
    )
}


def get_part(name: str) -> Part:
    if name not in PARTS:
        raise CmambaError(f"unknown part '{name}' (known: {', '.join(PARTS)})")
    return PARTS[name]


# ----------------------------------------------------------------------------- cost records
@dataclass(frozen=True)
class Loop:
    name: str
    slot: int  # its CMAMBA_COUNT slot
    invocations: int  # starts per window
    trips: int  # iterations per start
    ii: int = 1
    depth: int = COPY_DEPTH

    @property
    def iterations(self) -> int:
        return self.invocations * self.trips

    @property
    def cycles(self) -> int:
        return self.invocations * (self.trips * self.ii + self.depth)


@dataclass(frozen=True)
class Mult:
    what: str
    units: int  # multipliers instantiated
    wa: int  # signed operand widths
    wb: int


@dataclass(frozen=True)
class Memory:
    """`banks` banks of `words` x `width` bits: a ROM of constants (Cost.roms) or a template's own
    local array (Cost.buffers)."""

    what: str
    words: int  # per bank
    width: int  # bits per word
    banks: int = 1


Rom = Memory  # weights, biases, gains, tables
Buffer = Memory  # a kernel's local array (e.g. the depthwise convolution's padded input copy)


@dataclass
class Cost:
    loops: list[Loop]
    mults: list[Mult] = field(default_factory=list)
    roms: list[Rom] = field(default_factory=list)
    extra: int = 0  # cycles outside the loops (dividers, ...)
    buffers: list[Buffer] = field(default_factory=list)  # local arrays, beside the top's activation buffers


@dataclass(frozen=True)
class Dims:
    """A layer's sizes: inputs (C, L), output (C, L), kernel, stride."""

    name: str
    op: str
    inputs: tuple[tuple[int, int], ...]
    out: tuple[int, int]
    kernel: int = 1
    stride: int = 1


@dataclass(frozen=True)
class Knob:
    """The loop a reuse factor splits: E iterations of N multiplies (codegen/reuse.py)."""

    extent: int
    body: int
    what: str  # e.g. "64 output channels x 32 multiplies per position"


@dataclass(frozen=True)
class EstimateRow:
    knob: Callable[[Dims], Knob | None]
    cost: Callable[[Dims, Plan, str], Cost]


ESTIMATE: BackendTable[EstimateRow] = BackendTable("estimator")


def dims_of(graph: Graph, layer: Layer) -> Dims:
    return Dims(
        layer.name,
        layer.op,
        tuple(graph.tensor_shape(t) for t in layer.inputs),
        tuple(layer.shape),
        int(layer.attrs.get("kernel", 1)),
        int(layer.attrs.get("stride", 1)),
    )


# ----------------------------------------------------------------------------- hardware maps
def log2c(n: int) -> int:
    return max(0, math.ceil(math.log2(n))) if n > 1 else 0


def dsp_tiles(wa: int, wb: int, part: Part) -> int:
    """DSP slices of one signed wa x wb multiply: the wider operand on the A port (dsp_a bits), the
    narrower on B, each tile taking dsp_a - 1 / dsp_b - 1 magnitude bits (docs/hls.md)."""
    hi, lo = max(wa, wb), min(wa, wb)
    return math.ceil((hi - 1) / (part.dsp_a - 1)) * math.ceil((lo - 1) / (part.dsp_b - 1))


def bram18(words: int, width: int) -> int:
    """BRAM18 blocks of one words x width memory, best aspect ratio (0 when it goes to LUTs)."""
    if words <= LUTRAM_MAX_WORDS:
        return 0
    return min(math.ceil(words / d) * math.ceil(width / w) for d, w in BRAM18_SHAPES)


def lutram(words: int, width: int) -> int:
    """LUTs of one words x width memory held in LUTs (LUT6: 64 x 1), 0 when it goes to BRAM."""
    return width * math.ceil(words / 64) if words <= LUTRAM_MAX_WORDS else 0


# ----------------------------------------------------------------------------- the rows
def _bits(precision: str) -> int:
    return 16 if precision == "int16" else 8


def _div(divisor: int | None) -> int:
    """Latency of one rne_div: shifts for a constant power of two, else a divider (None: a variable)."""
    return 0 if divisor is not None and divisor & (divisor - 1) == 0 else DIV_LATENCY


def _isqrt_rows(n: int) -> Loop:
    """isqrt_rne_rows<n> (templates/common/primitives.h.j2): n roots interleaved, digit loop outer,
    the n values inner and pipelined (II 1: a value's next digit is n iterations later). The nest is
    perfect (`bit` is computed inside the inner loop), which Vitis HLS flattens (UG1399,
    `loop_flatten`; docs/hls.md "Estimate"): one pipeline of 31 n iterations, filled once."""
    return Loop("isqrt", SLOT_ISQRT, 1, ISQRT_DIGITS * n, 1, 2)


def _mac_depth(n: int) -> int:
    return ROM_DEPTH + MUL_DEPTH + log2c(n + 1) + ROUND_DEPTH


def _conv_knob(d: Dims) -> Knob:
    c_in = d.inputs[0][0]
    c_out = d.out[0]
    n = c_in * d.kernel
    return Knob(c_out, n, f"{c_out} output channels x {n} multiplies per position")


def _conv_cost(d: Dims, p: Plan, precision: str) -> Cost:
    c_in = d.inputs[0][0]
    c_out, l_out = d.out
    n = c_in * d.kernel
    units = p.lanes * n // p.ii
    wbits = _bits(precision)
    loops = [
        Loop("window" if d.op == "conv_kx1" else "column", 0, l_out, n),
        Loop("mac", 1, l_out, c_out // p.lanes, p.ii, _mac_depth(n)),
    ]
    if precision == "int16":
        mults = [Mult("w x x", units, 16, 16)]
    else:
        mults = [Mult("w x (x - z)", units, 9, 8), Mult("requantize acc x m0", p.lanes, 32, 32)]
    roms = [Rom("weights", c_out * n // units, units * wbits), Rom("bias", c_out // p.lanes, p.lanes * 32)]
    if precision == "int8":
        roms += [Rom("m0", c_out // p.lanes, p.lanes * 32), Rom("shift", c_out // p.lanes, p.lanes * 8)]
    return Cost(loops, mults, roms)


def _dwconv_knob(d: Dims) -> Knob:
    c, length = d.out
    return Knob(length, d.kernel, f"{length} positions x {d.kernel} taps per channel")


def _dwconv_cost(d: Dims, p: Plan, precision: str) -> Cost:
    c, length = d.out
    k = d.kernel
    wbits = _bits(precision)
    # time-major (templates/*/dwconv.h.j2): the padded copy (K - 1 zero rows, one channel per cycle,
    # then L rows), then per group of PAR positions a pipelined loop over the channels
    loops = [
        Loop("row", 0, 1, c),
        Loop("row", 0, length, c),
        Loop("mac", 1, length // p.lanes, c, p.ii, _mac_depth(k)),
    ]
    units = p.lanes * k // p.ii
    if precision == "int16":
        mults = [Mult("w x x", units, 16, 16)]
    else:
        mults = [Mult("w x (x - z)", units, 9, 8), Mult("requantize acc x m0", p.lanes, 32, 32)]
    roms = [Rom("weights", c, k * wbits), Rom("bias", c, 32)]
    if precision == "int8":
        roms += [Rom("m0", c, 32), Rom("shift", c, 8)]
    # the padded copy: xp[K - 1 + L][C] int16 (INT16) / xc centered9_t = ap_int<9> (INT8), rows
    # partitioned cyclically into K - 1 + PAR banks (one step reads K - 1 + PAR consecutive rows)
    banks = k - 1 + p.lanes
    padded = Buffer("padded input", -(-(k - 1 + length) // banks) * c, 16 if precision == "int16" else 9, banks)
    return Cost(loops, mults, roms, buffers=[padded])


def _rmsnorm_knob(d: Dims) -> Knob:
    dim = d.out[0]
    return Knob(dim, 1, f"{dim} channels per token")


def _rmsnorm_cost(d: Dims, p: Plan, precision: str) -> Cost:
    dim, length = d.out
    per_token = Loop("sumsq", 0, length, dim // p.lanes, 1, ROM_DEPTH + MUL_DEPTH + log2c(p.lanes + 1) + 1)
    isqrt = _isqrt_rows(length)  # the L tokens' roots
    scale = Loop(
        "scale",
        1,
        length,
        dim // p.lanes,
        1,
        ROM_DEPTH + 2 * MUL_DEPTH + ROUND_DEPTH + (MUL_DEPTH if precision == "int8" else 0),
    )
    divs = _div(dim) + _div(None) + ISQRT_TAIL  # rne_div(ss, D), rne_div(2^Q, rms), the root's tail
    if precision == "int16":
        mults = [
            Mult("x x x", p.lanes, 16, 16),
            Mult("x x g", p.lanes, 16, 16),
            Mult("(x g) x 1/rms", p.lanes, 32, RMS_INV_BITS + 1),
        ]
    else:
        mults = [
            Mult("xc x xc", p.lanes, 9, 9),
            Mult("xc x g", p.lanes, 9, 8),
            Mult("(xc g) x 1/rms", p.lanes, 17, RMS_INV_BITS_INT8 + 1),
            Mult("requantize", p.lanes, 32, 32),
        ]
    mults.append(Mult("isqrt r x r", 1, 32, 32))
    return Cost(
        [per_token, isqrt, scale], mults, [Rom("gain", dim // p.lanes, p.lanes * _bits(precision))], extra=length * divs
    )


def _lut_cost(d: Dims, p: Plan, precision: str) -> Cost:
    c, length = d.out
    words = LUT_LAST + 1 if precision == "int16" else 256
    return Cost([Loop("elem", 0, length, c, 1, 2 + ROM_DEPTH + 1)], [], [Rom("table", words, _bits(precision))])


def _scan_cost(d: Dims, p: Plan, precision: str) -> Cost:
    e, t = d.out
    # t outer, channels inner: no recurrence inside the pipelined loop (the state is per channel)
    if precision == "int16":
        return Cost(
            [Loop("step", 0, t, e, 1, 1 + MUL_DEPTH + 1 + ROUND_DEPTH)],
            [Mult("lam x s", 1, 16, 16), Mult("(1 - lam) x u", 1, 17, 16)],
        )
    return Cost(
        [Loop("step", 0, t, e, 1, MUL_DEPTH + 2 + MUL_DEPTH + ROUND_DEPTH)],
        [Mult("lam x S", 1, 10, 32), Mult("(256 - lam) x u", 1, 10, 18), Mult("requantize", 1, 32, 32)],
    )


def _s6_scan_cost(d: Dims, p: Plan, precision: str) -> Cost:
    """Spec 2.12 / 3.13 (templates */s6_scan.h.j2): per channel one pipelined loop over the steps with the
    N_s states unrolled inside (decay-table read, state update, C x h sum per state), so N_s copies
    of the per-state multipliers and N_s reads of the decay table per cycle (one bank per state)."""
    e, t = d.out
    n = d.inputs[2][0]
    w = 16 if precision == "int16" else 9
    depth = 1 + MUL_DEPTH + ROM_DEPTH + 2 * MUL_DEPTH + ROUND_DEPTH
    return Cost(
        [Loop("step", 0, e, t, 1, depth)],
        [
            Mult("Delta x x", 1, w, w),
            Mult("Delta x A", n, w, 16),
            Mult("exp x h", n, 16, 32),
            Mult("(Delta x) x B", n, 2 * w, w),
            Mult("C x h", n, w, 32),
            Mult("D x x", 1, w, w),
        ],
        [Rom("A", e, n * _bits(precision)), Rom("decay table", EXP_SIZE, 16, n)],
    )


def _mul_cost(d: Dims, p: Plan, precision: str) -> Cost:
    c, length = d.out
    if precision == "int16":
        return Cost([Loop("elem", 0, length, c, 1, 1 + MUL_DEPTH + ROUND_DEPTH)], [Mult("a x b", 1, 16, 16)])
    return Cost(
        [Loop("elem", 0, length, c, 1, 1 + 2 * MUL_DEPTH + ROUND_DEPTH)],
        [Mult("(a - z) x (b - z)", 1, 9, 9), Mult("requantize", 1, 32, 32)],
    )


def _add_cost(d: Dims, p: Plan, precision: str) -> Cost:
    c, length = d.out
    if precision == "int16":  # aligning shifts only
        return Cost([Loop("elem", 0, length, c, 1, 1 + 1 + ROUND_DEPTH)])
    return Cost(
        [Loop("elem", 0, length, c, 1, 1 + MUL_DEPTH + 1 + ROUND_DEPTH)],
        [Mult("(a - z) x M_A", 1, 9, 32), Mult("(b - z) x M_B", 1, 9, 32)],
    )


def _revin_stats(c: int, length: int, precision: str) -> tuple[list[Loop], list[Mult], int]:
    """The per-channel statistics (revin_stats): sums loop, square root, and three dividers."""
    loops = [Loop("stats", 0, c, length, 1, ROM_DEPTH + MUL_DEPTH + 1), _isqrt_rows(c)]  # the C channels' roots
    xw = 16 if precision == "int16" else 9
    mults = [Mult("x x x", 1, xw, xw), Mult("S1 x S1", 1, 32, 32), Mult("isqrt r x r", 1, 32, 32)]
    return loops, mults, c * (_div(length) + _div(length * length) + MUL_DEPTH + ISQRT_TAIL)


def _revin_norm_cost(d: Dims, p: Plan, precision: str) -> Cost:
    c, length = d.out
    loops, mults, extra = _revin_stats(c, length, precision)
    loops.append(
        Loop("scale", 1, c, length, 1, 1 + MUL_DEPTH + ROUND_DEPTH + (MUL_DEPTH if precision == "int8" else 0))
    )
    if precision == "int16":
        mults.append(Mult("(x - mean) x 1/std", 1, 17, REVIN_INV_BITS + 1))
    else:
        mults += [Mult("(xc - mean) x 1/std", 1, 10, REVIN_INV_BITS_INT8 + 1), Mult("requantize", 1, 32, 32)]
    return Cost(loops, mults, [], extra + c * _div(None))


def _revin_denorm_cost(d: Dims, p: Plan, precision: str) -> Cost:
    rows, cols = d.out
    c, length = d.inputs[1]
    loops, mults, extra = _revin_stats(c, length, precision)
    loops.append(Loop("restore", 1, c, rows * cols // c, 1, 1 + 2 * MUL_DEPTH + ROUND_DEPTH))
    if precision == "int16":
        mults.append(Mult("y x std", 1, 16, 32))
    else:
        mults += [Mult("(y - z) x std", 1, 9, 25), Mult("x M_A", 1, 34, 32), Mult("mean x M_B", 1, 25, 32)]
    return Cost(loops, mults, [], extra)


def _no_knob(d: Dims) -> None:
    return None


ESTIMATE.register("conv_kx1", EstimateRow(_conv_knob, _conv_cost))
ESTIMATE.register("conv1x1", EstimateRow(_conv_knob, _conv_cost))
ESTIMATE.register("dwconv", EstimateRow(_dwconv_knob, _dwconv_cost))
ESTIMATE.register("rmsnorm", EstimateRow(_rmsnorm_knob, _rmsnorm_cost))
ESTIMATE.register("sigmoid", EstimateRow(_no_knob, _lut_cost))
ESTIMATE.register("silu", EstimateRow(_no_knob, _lut_cost))
ESTIMATE.register("softplus", EstimateRow(_no_knob, _lut_cost))  # the same table activation as SiLU
ESTIMATE.register("scan", EstimateRow(_no_knob, _scan_cost))
ESTIMATE.register("mul", EstimateRow(_no_knob, _mul_cost))
ESTIMATE.register("add", EstimateRow(_no_knob, _add_cost))
ESTIMATE.register("revin_norm", EstimateRow(_no_knob, _revin_norm_cost))
ESTIMATE.register("revin_denorm", EstimateRow(_no_knob, _revin_denorm_cost))
ESTIMATE.register("s6_scan", EstimateRow(_no_knob, _s6_scan_cost))


# ----------------------------------------------------------------------------- the whole model
@dataclass
class StageEstimate:
    """One layer (or one of the top's own stages: "stream_in", "stream_out", "input copy", "output copy")."""

    name: str
    op: str
    row: int  # counter row (the layer index; len(layers) for the top's loops)
    plan: Plan
    loops: list[Loop]
    extra: int
    dsp: int
    mults: list[Mult]
    rom_bram18: int
    rom_luts: int
    rom_bits: int
    buffer_bits: int
    buffer_bram18: int
    fifo_bits: int = 0
    memory_luts: int = 0  # LUTs holding buffers and FIFOs (banks of <= 64 words)

    @property
    def cycles(self) -> int:
        return sum(lp.cycles for lp in self.loops) + self.extra

    def parts(self) -> dict[str, int]:
        """Cycles by kind, for the stacked bar: compute loops, copies/streams, non-loop latency."""
        io = {"window", "column", "row", "read", "write", "window in", "input copy", "output copy"}
        out = {"compute": 0, "copy / stream I/O": 0, "dividers": self.extra}
        for lp in self.loops:
            out["copy / stream I/O" if lp.name in io else "compute"] += lp.cycles
        return out


@dataclass
class Estimate:
    model: str
    precision: str
    interface: str
    clock_mhz: float
    part: Part
    stages: list[StageEstimate]
    reuse_note: str
    latency_cycles: int = 0
    series: int = 1  # body passes per window (channel-independent graphs: C, in sequence)

    @property
    def interval_cycles(self) -> int:
        if self.interface == "memory":
            return sum(s.cycles for s in self.stages)
        return max(s.cycles for s in self.stages)

    @property
    def interval_us(self) -> float:
        return self.interval_cycles / self.clock_mhz

    @property
    def latency_us(self) -> float:
        return self.latency_cycles / self.clock_mhz

    @property
    def dsp(self) -> int:
        return sum(s.dsp for s in self.stages)

    @property
    def bram18(self) -> int:
        return sum(s.rom_bram18 + s.buffer_bram18 for s in self.stages)

    @property
    def rom_bram18(self) -> int:
        return sum(s.rom_bram18 for s in self.stages)

    def loop_iterations(self) -> dict[tuple[int, int], int]:
        """(counter row, slot) -> iterations per window: what -DCMAMBA_COUNT_LOOPS counts."""
        out: dict[tuple[int, int], int] = {}
        for s in self.stages:
            for lp in s.loops:
                out[(s.row, lp.slot)] = out.get((s.row, lp.slot), 0) + lp.iterations
        return out


def _roms(cost: Cost) -> tuple[int, int, int]:
    b = sum(bram18(r.words, r.width) * r.banks for r in cost.roms)
    lut = sum(lutram(r.words, r.width) * r.banks for r in cost.roms)
    bits = sum(r.words * r.width * r.banks for r in cost.roms)
    return b, lut, bits


def estimate(
    graph: Graph,
    precision: str = "int16",
    interface: str = "memory",
    reuse: ReuseSpec | None = None,
    clock_mhz: float = 250.0,
    part: str = "xczu7ev",
) -> Estimate:
    """See the module docstring. Raises CmambaError on an unknown precision, interface, part or an
    invalid reuse factor (one line each)."""
    from codegen.project import PRECISIONS, check_interface

    if precision not in PRECISIONS:
        raise CmambaError(f"unknown precision '{precision}' (known: {', '.join(PRECISIONS)})")
    check_interface(interface, graph=graph)
    if not (isinstance(clock_mhz, (int, float)) and math.isfinite(clock_mhz) and clock_mhz > 0):
        raise CmambaError(f"--clock-mhz must be a positive number, got {clock_mhz!r}")
    prt = get_part(part)
    plans = resolve_reuse(graph, reuse or ReuseSpec())
    bits = _bits(precision)
    n = len(graph.layers)
    stages: list[StageEstimate] = []
    depths = fifo_depths(graph) if interface == "stream" else {}
    reads = read_order(graph)
    consumers: dict[str, int] = {t: 0 for t in graph.tensor_names}
    for layer in graph.layers:
        for t in dict.fromkeys(layer.inputs):
            consumers[t] += 1
    consumers[graph.output_tensor] += 1

    def stage(
        name, op, row, plan, cost: Cost, buffers: list[tuple[int, int]], fifos: list[tuple[int, int]] = ()
    ) -> StageEstimate:
        """buffers: (words, banks) of `bits`-wide memories, besides the kernel's own (cost.buffers);
        fifos: (depth, token bits) of its input FIFOs."""
        dsp = sum(m.units * dsp_tiles(m.wa, m.wb, prt) for m in cost.mults)
        rb, rl, rbits = _roms(cost)
        mems = [(w, banks, bits) for w, banks in buffers] + [(m.words, m.banks, m.width) for m in cost.buffers]
        bb = sum(bram18(w, width) * banks for w, banks, width in mems)
        bbits = sum(w * banks * width for w, banks, width in mems)
        mem_luts = sum(lutram(w, width) * banks for w, banks, width in mems) + sum(
            lutram(depth, width) for depth, width in fifos
        )
        bb += sum(bram18(depth, width) for depth, width in fifos)
        return StageEstimate(
            name,
            op,
            row,
            plan,
            cost.loops,
            cost.extra,
            dsp,
            cost.mults,
            rb,
            rl,
            rbits,
            bbits,
            bb,
            sum(depth * width for depth, width in fifos),
            mem_luts,
        )

    c_in, l_in = graph.input_shape
    if interface == "stream":
        stages.append(stage("stream_in", "io", n, Plan(), Cost([Loop("window in", 0, 1, c_in * l_in)]), []))
    else:  # cmamba_forward's copy of the window (channel-independent: of each series) into the time-major layout
        copy_in = per_window(Cost([Loop("input copy", SLOT_READ, l_in, graph.body_input_shape[0])]), graph.series)
        stages.append(stage("input copy", "io", n, Plan(), copy_in, []))
    for k, layer in enumerate(graph.layers):
        d = dims_of(graph, layer)
        row = ESTIMATE.row(layer.op, layer.name)
        cost = per_window(row.cost(d, plans[layer.name], precision), graph.series)
        c, length = d.out
        if interface == "stream":  # whole-tensor process: token reads, the layer, token writes
            distinct = reads[layer.name]  # one input after another
            cost.loops = [Loop("read", SLOT_READ, 1, graph.tensor_shape(t)[1]) for t in distinct] + cost.loops
            if consumers[layer.name]:
                cost.loops.append(Loop("write", SLOT_WRITE, 1, length))
            # local arrays partitioned by channel: one bank of L words per channel
            buffers = [graph.tensor_shape(t)[::-1] for t in distinct] + [(length, c)]
            fifos = [(depths[(t, layer.name)], graph.tensor_shape(t)[0] * bits) for t in distinct]
            stages.append(stage(layer.name, layer.op, k, plans[layer.name], cost, buffers, fifos))
        else:  # the layer's output buffer in struct Activations
            lanes = plans[layer.name].lanes
            stages.append(stage(layer.name, layer.op, k, plans[layer.name], cost, [(c * length // lanes, lanes)]))
    c_o, l_o = graph.tensor_shape(graph.output_tensor)
    out_values = graph.output_channels * graph.horizon
    if interface == "stream":
        stages.append(
            stage(
                "stream_out",
                "io",
                n,
                Plan(),
                Cost([Loop("read", SLOT_READ, 1, l_o), Loop("write", SLOT_WRITE, 1, out_values)]),
                [(l_o, c_o)],
                [(MIN_DEPTH, c_o * bits)],
            )
        )
    else:
        series = graph.series  # channel-independent: one copy loop of H per series
        copy = Loop("output copy", SLOT_WRITE, series, out_values // series)
        stages.append(stage("output copy", "io", n, Plan(), Cost([copy]), []))
    note = describe_reuse(plans, graph)
    if rounded(plans, reuse or ReuseSpec()):
        note += f" (--reuse {reuse.default} rounded down where not valid)"
    est = Estimate(graph.name, precision, interface, float(clock_mhz), prt, stages, note, series=graph.series)
    est.latency_cycles = _latency(graph, est)
    return est


def per_window(cost: Cost, series: int) -> Cost:
    """A layer's cost per window when the body runs `series` times (channel-independent graphs: one
    pass per input channel, in sequence, with the same multipliers and ROMs): every loop's invocations
    and the cycles outside loops times `series`; resources unchanged (weights stored once)."""
    if series == 1:
        return cost
    loops = [replace(lp, invocations=lp.invocations * series) for lp in cost.loops]
    return replace(cost, loops=loops, extra=cost.extra * series)


def compute_cycles(est: Estimate, df: Dataflow) -> dict[str, int]:
    """Each process's cycles outside its token reads and writes (one cycle per token in
    simulate_dataflow): the kernel, and stream_in's / stream_out's port loops."""
    cycles = {s.name: s.cycles for s in est.stages}
    return {
        p.name: cycles[p.tensor or p.name]
        - sum(ch.tokens for ch in p.inputs)
        - (p.outputs[0].tokens if p.outputs else 0)
        for p in df.processes
    }


def _latency(graph, est: Estimate) -> int:
    """Memory top: the sum of the layers. Stream top: when the first window's forecast has left,
    by the token-level timing model of the process network (codegen/dataflow.py)."""
    if est.interface == "memory":
        return est.interval_cycles
    df = plan_dataflow(graph)
    return simulate_dataflow(df, compute_cycles(est, df), windows=1)[0]


def describe_reuse(plans: dict[str, Plan], graph: Graph) -> str:
    knobs = [(layer.name, plans[layer.name]) for layer in graph.layers if plans[layer.name].reuse is not None]
    return ", ".join(f"{name} R={p.reuse}" for name, p in knobs)
