"""INT16 back end: the lowered Int16Program -> an Emission (codegen/emission.py).

Every constant comes from `intsim.int16.lower_int16(graph)` (Int16Step.params): quantized
weights, int32 biases, shifts, eps constants, LUT tables. Nothing is recomputed here except
one derived, exact quantity per convolution: the accumulator width. For every output row,
|b[o]| + 32768 * sum|w[o]| bounds every partial sum over every int16 input (-32768 included),
so an accumulator of bit_length(bound) + 1 bits holds the exact int64 sum of spec 2 bit for
bit ("HLS may narrow it", spec 2). The stdint flavour then uses int32_t when that fits (and
vectorises), the ap flavour an ap_int of exactly that width.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from codegen.emission import (
    Buffer,
    Config,
    ConstArray,
    Emission,
    LayerCode,
    LayerContext,
    Step,
    TemplateRow,
    op_templates,
    s6_call,
    tap_major,
)
from intsim.errors import UnsupportedError
from intsim.fixedpoint import quantize_q
from intsim.formats import q_name
from intsim.graph import INPUT_NAME
from intsim.int16 import ConvParams, Int16Step
from intsim.kernels_int16 import LUT_OFFSET, REVIN_EXTRA_BITS, REVIN_INV_BITS, RMS_EXTRA_BITS, RMS_INV_BITS
from intsim.kernels_mac import acc_bits  # the golden model proves the same bound (int32 sums)
from intsim.lut import EXP_SIZE, LUT_SIZE
from intsim.ops import BackendTable

if TYPE_CHECKING:
    from intsim.executor import Model

INT16_MAX_ABS = 1 << 15
# One row per op: its template and its emitter (config fields + C++ call).
EMIT16: BackendTable[TemplateRow] = BackendTable("INT16 C++ back end")


def acc_bits_any(weight_shape: tuple[int, ...]) -> int:
    """acc_bits for ANY int16 weights and int32 biases of this shape (`--weights external`: the
    weights arrive at run time, so the accumulator cannot depend on their values)."""
    taps = int(np.prod(weight_shape[1:]))
    return ((1 << 31) + INT16_MAX_ABS * INT16_MAX_ABS * taps).bit_length() + 1


def emit(model: Model, names: dict[str, str], types: str, external: bool = False) -> Emission:
    graph = model.graph
    prog = model.program
    configs: list[Config] = []
    consts: list[ConstArray] = []
    buffers: list[Buffer] = []
    steps: list[Step] = []
    shared: dict = {}

    for st in prog.steps:
        cname = names[st.name]
        channels, length = st.shape
        fmt_in = " x ".join(q_name(f) for f in st.in_frac)
        comment = (
            f"{st.name}: {st.op} {list(graph.tensor_shape(st.inputs[0]))} -> [{channels}, {length}], "
            f"{fmt_in} -> {q_name(st.out_frac)}"
        )
        buffers.append(Buffer(st.name, cname, (channels, length)))
        ctx = LayerContext(graph, names, cname, consts, shared, external)
        code = EMIT16.row(st.op, st.name).emit(st, ctx)
        configs.append(Config(ctx.cfg, comment, code.ints, code.types))
        steps.append(Step(st.name, st.op, comment, code.call))

    c_out, horizon = graph.output_channels, graph.horizon

    def quantize_input(x_norm):
        return quantize_q(x_norm, prog.input_frac, 16, "input")[0].astype(np.int16)

    def run_golden(x_q):
        res = model.run_int16(np.ascontiguousarray(x_q, dtype=np.int16), capture=True)
        tensors = {k: v for k, v in res.tensors.items() if k != INPUT_NAME}
        return res.output_q.reshape(len(x_q), c_out, horizon), tensors

    return Emission(
        precision="int16",
        elem_bits=16,
        typedefs=["typedef i16_t data_t;   // every activation: int16, per-tensor Q format"],
        op_templates=list(OP_TEMPLATES),
        configs=configs,
        consts=consts,
        buffers=buffers,
        steps=steps,
        input_shape=tuple(graph.input_shape),
        output_buffer=names[graph.output_tensor],
        output_shape=(c_out, horizon),
        quantize_input=quantize_input,
        run_golden=run_golden,
        notes=[f"input format {q_name(prog.input_frac)}, output format {q_name(prog.output_frac)}"],
    )


# ------------------------------------------------------------------ registry rows
def _conv_consts(st: Int16Step, ctx: LayerContext) -> ConvParams:
    p: ConvParams = st.params
    w, cname = p.weight, ctx.cname
    ctx.consts.append(
        ConstArray(
            f"w_{cname}",
            "int16_t",
            w.reshape(w.shape[0], -1),
            cname,
            f"{st.name}.weight {list(w.shape)} {q_name(p.w_frac)}"
            + (" (rows: [i][k] flattened, k fastest)" if w.ndim == 3 else ""),
            [(st.name, "weight")],
        )
    )
    ctx.consts.append(
        ConstArray(
            f"b_{cname}",
            "int32_t",
            p.bias.astype(np.int32),
            cname,
            f"{st.name}.bias [{w.shape[0]}] int32 at Q(f_x + f_w) = 2^-{p.b_frac}",
            [(st.name, "bias")],
        )
    )
    return p


def _conv_code(st: Int16Step, ctx: LayerContext, ints: list) -> LayerCode:
    """Config of a convolution: its ints, then the exact accumulator width and type."""
    p: ConvParams = st.params
    call = f"{st.op}<{ctx.cfg}>({ctx.ref(st.inputs[0])}, w_{ctx.cname}, b_{ctx.cname}, {ctx.out});"
    bits = acc_bits_any(p.weight.shape) if ctx.external else acc_bits(p.weight, p.bias)
    return LayerCode(ints + [("ACC_BITS", bits)], call, [("acc_t", "acc_int<ACC_BITS>::type")])


def _emit_conv_kx1(st: Int16Step, ctx: LayerContext) -> LayerCode:
    p = _conv_consts(st, ctx)
    c_in, l_in = ctx.graph.tensor_shape(st.inputs[0])
    channels, length = st.shape
    return _conv_code(
        st,
        ctx,
        [
            ("C_IN", c_in),
            ("L_IN", l_in),
            ("C_OUT", channels),
            ("L_OUT", length),
            ("K", p.weight.shape[2]),
            ("S", p.stride),
            ("SHIFT", p.shift),
        ],
    )


def _emit_conv1x1(st: Int16Step, ctx: LayerContext) -> LayerCode:
    p = _conv_consts(st, ctx)
    c_in, _ = ctx.graph.tensor_shape(st.inputs[0])
    channels, length = st.shape
    return _conv_code(st, ctx, [("C_IN", c_in), ("C_OUT", channels), ("L", length), ("SHIFT", p.shift)])


def _emit_dwconv(st: Int16Step, ctx: LayerContext) -> LayerCode:
    p = _conv_consts(st, ctx)
    tap_major(ctx.consts, f"w_{ctx.cname}")
    channels, length = st.shape
    return _conv_code(st, ctx, [("C", channels), ("L", length), ("K", p.weight.shape[1]), ("SHIFT", p.shift)])


def _emit_rmsnorm(st: Int16Step, ctx: LayerContext) -> LayerCode:
    p = st.params
    channels, length = st.shape
    ctx.consts.append(
        ConstArray(
            f"g_{ctx.cname}",
            "int16_t",
            p.gain,
            ctx.cname,
            f"{st.name}.weight (gain) [{channels}] {q_name(p.g_frac)}",
            [(st.name, "gain")],
        )
    )
    ints = [
        ("D", channels),
        ("L", length),
        ("EPS_Q", int(p.eps_q)),
        ("RMS_EXTRA_BITS", RMS_EXTRA_BITS),
        ("RMS_INV_BITS", RMS_INV_BITS),
        ("SHIFT", p.shift),
    ]
    return LayerCode(ints, f"rmsnorm<{ctx.cfg}>({ctx.ref(st.inputs[0])}, g_{ctx.cname}, {ctx.out});")


def _emit_lut(st: Int16Step, ctx: LayerContext) -> LayerCode:
    """sigmoid and silu: one table per (function, output format), shared by every layer using it."""
    p = st.params
    channels, length = st.shape
    luts = ctx.shared.setdefault("luts", {})
    key = (st.op, st.out_frac)
    if key not in luts:
        luts[key] = f"lut_{st.op}_q{st.out_frac}"
        ctx.consts.append(
            ConstArray(
                luts[key],
                "int16_t",
                p.table,
                "luts",
                f"{st.op} table [{LUT_SIZE}], entry a = {st.op}((a - {LUT_OFFSET}) / 256) at {q_name(st.out_frac)}",
                [(st.name, "table")],
            )
        )
    else:
        prev = next(c for c in ctx.consts if c.name == luts[key])
        if not np.array_equal(prev.values, p.table):
            raise UnsupportedError(f"layer '{st.name}': {st.op} table differs from an earlier one of the same format")
        prev.sources.append((st.name, "table"))
    ints = [
        ("C", channels),
        ("L", length),
        ("ADDR_SHIFT", p.addr_shift),
        ("IDENTITY_SHIFT", p.identity_shift),
        ("IS_SILU", int(bool(p.is_silu))),
        ("LUT_OFFSET", LUT_OFFSET),
        ("LUT_SIZE", LUT_SIZE),
    ]
    return LayerCode(ints, f"lut_activation<{ctx.cfg}>({ctx.ref(st.inputs[0])}, {luts[key]}, {ctx.out});")


def _lam_bounded(st: Int16Step, ctx: LayerContext) -> int:
    """1 when every lam the scan reads is in [0, 2^f_lam] (templates/int16/scan.h.j2, LAM_BOUNDED):
    lam is the output of a sigmoid layer whose embedded table holds only such entries. 0 otherwise
    (any other producer, or `--weights external`: the table arrives at run time)."""
    lam = st.inputs[0]
    if ctx.external or lam == INPUT_NAME or ctx.graph.layer(lam).op != "sigmoid":
        return 0
    table = next(c for c in ctx.consts if (lam, "table") in c.sources)
    values = np.asarray(table.values)
    return int(values.min() >= 0 and values.max() <= 1 << st.params.lam_frac)


def _emit_scan(st: Int16Step, ctx: LayerContext) -> LayerCode:
    channels, length = st.shape
    p = st.params
    ints = [("E", channels), ("T", length), ("LAM_FRAC", p.lam_frac), ("U_SHIFT", p.u_shift)]
    return LayerCode(ints + [("LAM_BOUNDED", _lam_bounded(st, ctx))], ctx.binary_call("scan", st))


def _emit_s6(st: Int16Step, ctx: LayerContext) -> LayerCode:
    p, cname = st.params, ctx.cname
    e, n_states = p.a.shape
    ctx.consts.append(
        ConstArray(f"a_{cname}", "int16_t", p.a, cname, f"{st.name}.A [{e}, {n_states}] {q_name(p.a_frac)}")
    )
    ctx.consts.append(ConstArray(f"d_{cname}", "int16_t", p.d, cname, f"{st.name}.D [{e}] {q_name(p.d_frac)}"))
    ints = [("E", e), ("N", n_states), ("T", st.shape[1]), ("EXP_SIZE", EXP_SIZE)] + [
        (name.upper(), getattr(p, name))
        for name in ("addr_shift", "h_up", "p_up", "h_shift", "y_up_c", "y_up_d", "y_shift")
    ]
    return LayerCode(ints, s6_call("s6_scan", st, ctx, f"a_{cname}, d_{cname}"))


def _emit_mul(st: Int16Step, ctx: LayerContext) -> LayerCode:
    channels, length = st.shape
    return LayerCode([("C", channels), ("L", length), ("SHIFT", st.params.shift)], ctx.binary_call("mul", st))


def _emit_add(st: Int16Step, ctx: LayerContext) -> LayerCode:
    p = st.params
    channels, length = st.shape
    ints = [("C", channels), ("L", length), ("A_UP", p.a_up), ("B_UP", p.b_up), ("SHIFT", p.shift)]
    return LayerCode(ints, ctx.binary_call("add", st))


def _emit_revin_norm(st: Int16Step, ctx: LayerContext) -> LayerCode:
    channels, length = st.shape
    ints = [
        ("C", channels),
        ("L", length),
        ("EPS_Q", st.params.eps_q),
        ("REVIN_EXTRA_BITS", REVIN_EXTRA_BITS),
        ("REVIN_INV_BITS", REVIN_INV_BITS),
        ("SHIFT", st.params.shift),
    ]
    return LayerCode(ints, f"revin_norm<{ctx.cfg}>({ctx.ref(st.inputs[0])}, {ctx.out});")


def _emit_revin_denorm(st: Int16Step, ctx: LayerContext) -> LayerCode:
    rows, cols = st.shape
    channels, length = ctx.graph.tensor_shape(st.inputs[1])
    ints = [
        ("C", channels),
        ("L", length),
        ("R", rows),
        ("M", cols),
        ("EPS_Q", st.params.eps_q),
        ("REVIN_EXTRA_BITS", REVIN_EXTRA_BITS),
        ("MEAN_UP", st.params.mean_up),
        ("SHIFT", st.params.shift),
    ]
    return LayerCode(ints, ctx.binary_call("revin_denorm", st))


EMIT16.register("conv_kx1", TemplateRow("int16/conv_kx1.h.j2", _emit_conv_kx1))
EMIT16.register("conv1x1", TemplateRow("int16/conv1x1.h.j2", _emit_conv1x1))
EMIT16.register("dwconv", TemplateRow("int16/dwconv.h.j2", _emit_dwconv))
EMIT16.register("rmsnorm", TemplateRow("int16/rmsnorm.h.j2", _emit_rmsnorm))
EMIT16.register("sigmoid", TemplateRow("int16/lut_activation.h.j2", _emit_lut))
EMIT16.register("silu", TemplateRow("int16/lut_activation.h.j2", _emit_lut))
EMIT16.register("scan", TemplateRow("int16/scan.h.j2", _emit_scan))
EMIT16.register("mul", TemplateRow("int16/mul.h.j2", _emit_mul))
EMIT16.register("softplus", TemplateRow("int16/lut_activation.h.j2", _emit_lut))
EMIT16.register("s6_scan", TemplateRow("int16/s6_scan.h.j2", _emit_s6))
EMIT16.register("add", TemplateRow("int16/add.h.j2", _emit_add))
EMIT16.register("revin_norm", TemplateRow("int16/revin.h.j2", _emit_revin_norm))
EMIT16.register("revin_denorm", TemplateRow("int16/revin.h.j2", _emit_revin_denorm))
OP_TEMPLATES = op_templates(EMIT16)
