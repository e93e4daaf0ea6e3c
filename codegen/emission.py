"""The plug-in interface between the project framework and one precision back end.

A back end is a module `codegen/emit_<precision>.py` with one function

    emit(model: intsim.executor.Model, names: dict[str, str], types: str, external: bool = False) -> Emission

and one registry table (intsim/ops.BackendTable) of `TemplateRow`s, one per op: the op's
template under templates/ and a function `emit(step, ctx: LayerContext) -> LayerCode` that
turns the lowered step (typed params from intsim) into its config fields and C++ call,
appending its constant tables to `ctx.consts`. `emit()` walks the program and asks the table
for each step's row; `op_templates(table)` lists the templates to render, in registry order.

`names` maps every layer name to its C identifier (codegen/names.py; use it for buffer,
config and constant names so every back end sanitises the same way); `types` is
"stdint" or "ap" (only needed when a back end emits type-specific text; the shared
primitives header already hides the difference); `external` is True for `codegen --weights
external` (the tables are loaded at run time: nothing may be derived from their values, e.g.
an accumulator width; LayerContext.external). The back end raises UnsupportedError
naming the layer for any op/format it cannot emit; it never falls back silently.

The framework (codegen/project.py) renders, from an Emission:
- firmware/primitives.h   shared, templates/common/primitives.h.j2 (stdint | ap flavour):
                          i8_t i16_t i32_t i64_t, acc_int<W>::type, rne_shift(x, n),
                          shift_round<N>(x), sat8/sat16/sat32(x), round_sat8<N>/round_sat16<N>(x),
                          rne_div(num, den), isqrt_rne(v), requantize8(acc, m0, shift, zp)
- firmware/params.h       `typedefs` lines, then one `struct <Config.cname>` per layer
                          (`static const int` fields, `long long` when a value needs it; typedefs)
- firmware/ops/*.h        each template in `op_templates` (path under templates/), rendered
                          with {types, precision}; the output name is the template's file name
                          without `.j2`
- firmware/weights/<group>.h   `static const <ctype> <name>[...] = {...};` per ConstArray
- firmware/top.h/.cpp     struct Activations (one member per Buffer), cmamba_forward() (the
                          `call` statement of every Step, in order) and the HLS top
                          cmamba_top(input, output) that copies `output_tensor` out
- tb/, tb_data/, Makefile, build_prj.tcl   shared; golden vectors from `quantize_input` and
                          `run_golden`

C++ names available to a Step's `call`: `input` (the top's input array), `act.<buffer cname>`
(every layer output), the ConstArray names, the Config cnames, and every op template's
functions. Buffers are `data_t <cname>[C][L]`; `data_t` comes from `typedefs`.
Constant tables should use the plain ctypes int8_t/int16_t/int32_t/int64_t (C integers in
BOTH flavours: an ap_int table of 93k entries takes g++ minutes to compile, a plain one a
second; Vitis maps both to ROM). Operator templates take their constant arrays as
`const int16_t w[...]` etc. and widen on use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from intsim.graph import INPUT_NAME
from intsim.lut import EXP_SIZE, exp_decay_table

if TYPE_CHECKING:
    from intsim.int8 import Int8Step
    from intsim.int16 import Int16Step
    from intsim.ops import BackendTable

# ctype names defined by firmware/primitives.h, with the numpy dtype their values must fit.
# The plain <stdint.h> names are storage types for constant ROMs in both flavours: the same
# bits, and g++ compiles a 70k-entry `static const int8_t` table in milliseconds where the
# same table of ap_int<8> objects takes minutes (each element a constructor call).
CTYPES = {
    "i8_t": np.int8,
    "i16_t": np.int16,
    "i32_t": np.int32,
    "i64_t": np.int64,
    "int8_t": np.int8,
    "int16_t": np.int16,
    "int32_t": np.int32,
    "int64_t": np.int64,
}


@dataclass
class ConstArray:
    """A constant table emitted as `static const <ctype> <name>[d0][d1]... = {...};`."""

    name: str  # C identifier (e.g. "w_l_blk0_in_proj_u")
    ctype: str  # a key of CTYPES
    values: np.ndarray  # integer array, 1 to 3 dimensions, emitted in C (row-major) order
    group: str  # header stem: firmware/weights/<group>.h
    comment: str = ""  # one line: what it holds, shape, format
    # where the values come from: (layer name, field of its lowered params), one entry per layer
    # that uses this table (a shared LUT has several); `--weights external` loads it from there
    sources: list[tuple[str, str]] = field(default_factory=list)
    # True: `values` is the transpose of the export array viewed as [values.shape[1]][values.shape[0]]
    # (a tap-major [K][C] ROM of a [C][..K] weight, tap_major()); `--weights external` transposes on load
    transposed: bool = False


@dataclass
class Config:
    """One layer's compile-time parameters: `struct <cname> { ... };` in params.h."""

    cname: str  # e.g. "cfg_l_blk0_in_proj_u"
    comment: str  # one line: op, shapes, formats
    ints: list[tuple[str, int]] = field(default_factory=list)  # static const int (or long long) NAME = v;
    types: list[tuple[str, str]] = field(default_factory=list)  # typedef <ctype> NAME;


@dataclass
class Buffer:
    """One tensor the network computes: data_t <cname>[channels][length] in Activations."""

    tensor: str  # the original layer name (golden-model tensor name)
    cname: str
    shape: tuple[int, int]


@dataclass
class Step:
    """One layer: a comment line and the C++ statement that computes its buffer."""

    tensor: str
    op: str
    comment: str
    call: str


@dataclass
class LayerContext:
    """What a row's `emit` may use for one layer (besides the lowered step)."""

    graph: object  # intsim.graph.Graph
    names: dict[str, str]  # layer name -> C identifier
    cname: str  # this layer's C identifier
    consts: list[ConstArray]  # append this layer's tables here
    shared: dict  # tables shared between layers (e.g. one LUT per format)
    external: bool = False  # constants loaded at start-up (codegen --weights external)

    @property
    def cfg(self) -> str:
        return f"cfg_{self.cname}"

    @property
    def out(self) -> str:
        return f"act.{self.cname}"

    def ref(self, tensor: str) -> str:
        """C++ expression of a tensor: the top's `input` or a member of `act`."""
        return "input" if tensor == INPUT_NAME else f"act.{self.names[tensor]}"

    def binary_call(self, func: str, step: Int16Step | Int8Step) -> str:
        """`func<cfg>(in0, in1, out);` for an op with two activation inputs."""
        return f"{func}<{self.cfg}>({self.ref(step.inputs[0])}, {self.ref(step.inputs[1])}, {self.out});"


@dataclass
class LayerCode:
    """A row's output for one layer: config fields, config typedefs and the C++ call."""

    ints: list[tuple[str, int]]
    call: str
    types: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class TemplateRow:
    """One op in one C++ back end: its template (path under templates/) and its emitter."""

    template: str
    emit: Callable[[object, LayerContext], LayerCode]


def op_templates(table: BackendTable[TemplateRow], first: tuple[str, ...] = ()) -> list[str]:
    """`first`, then every row's template once, in registry order (the include order)."""
    out = list(first)
    for _, row in table.rows():
        if row.template not in out:
            out.append(row.template)
    return out


def tap_major_values(w: np.ndarray) -> np.ndarray:
    """A [C][..K] weight array as the [K][C] table of tap_major()."""
    w = np.asarray(w)
    return np.ascontiguousarray(w.reshape(w.shape[0], -1).T)


def tap_major(consts: list[ConstArray], name: str) -> None:
    """Re-emit the [C][K] weight table `name` as its transpose [K][C] (row k: tap k of every channel),
    the layout of the time-major depthwise convolution (templates/*/dwconv.h.j2): its channel loop,
    innermost, then reads contiguous weights (docs/hls.md, "Depthwise convolution")."""
    i = next(j for j, c in enumerate(consts) if c.name == name)
    c = consts[i]
    consts[i] = ConstArray(
        c.name,
        c.ctype,
        tap_major_values(c.values),
        c.group,
        c.comment + " (stored tap-major: [k][c])",
        c.sources,
        transposed=True,
    )


def exp_table_name(ctx: LayerContext) -> str:
    """The S6 decay table (spec 2.12), emitted once per project into weights/luts.h."""
    if "exp_decay" not in ctx.shared:
        ctx.shared["exp_decay"] = "exp_decay_q14"
        ctx.consts.append(
            ConstArray(
                "exp_decay_q14",
                "int16_t",
                exp_decay_table(),
                "luts",
                f"S6 decay table [{EXP_SIZE}]: entry a = RNE(exp(-a / 256) * 2^14), Q1.14",
            )
        )
    return ctx.shared["exp_decay"]


def s6_call(func: str, st: Int16Step | Int8Step, ctx: LayerContext, consts: str) -> str:
    """`func<cfg>(delta, x, B, C, <consts>, exp table, out);` of an s6_scan layer."""
    ins = ", ".join(ctx.ref(t) for t in st.inputs)
    return f"{func}<{ctx.cfg}>({ins}, {consts}, {exp_table_name(ctx)}, {ctx.out});"


@dataclass
class Emission:
    precision: str  # "int16" | "int8"
    elem_bits: int  # 16 | 8: width of data_t (and of the NPY vectors)
    typedefs: list[str]  # lines for params.h, at least `typedef i16_t data_t;`
    op_templates: list[str]  # e.g. ["int16/conv1x1.h.j2", ...], in include order
    configs: list[Config]
    consts: list[ConstArray]
    buffers: list[Buffer]
    steps: list[Step]
    input_shape: tuple[int, int]  # (C_in, L)
    output_buffer: str  # cname of the output tensor ([C_out * H, 1])
    output_shape: tuple[int, int]  # (C_out, H)
    # float [N, C_in, L] (normalised) -> int [N, C_in, L] in the input's quantized format
    quantize_input: Callable[[np.ndarray], np.ndarray]
    # int [N, C_in, L] -> (output int [N, C_out, H], {tensor name: int [N, C, L]})
    run_golden: Callable[[np.ndarray], tuple[np.ndarray, dict]]
    input_limits: tuple[int, int] = (-32768, 32767)  # extremes for adversarial vectors
    notes: list[str] = field(default_factory=list)  # lines for the project README

    @property
    def npy_descr(self) -> str:
        return {16: "<i2", 8: "|i1"}[self.elem_bits]

    @property
    def np_dtype(self) -> type[np.signedinteger]:
        return {16: np.int16, 8: np.int8}[self.elem_bits]
