"""INT8 back end: the lowered Int8Program -> an Emission (codegen/emission.py).

Every constant comes from `intsim.int8.lower_int8(graph)` (Int8Step.params): int8 weights
(per-output-channel symmetric), int32 biases, multipliers m0 and shifts, zero points, the
256-entry tables, the RMSNorm V2 constants. Nothing is recomputed here; the C++ kernels
(templates/int8/) implement docs/quant-spec.md section 3 on top of the shared primitives.

Constant tables are ROMs of plain int8_t / int32_t in both type flavours (the same bits;
g++ builds them in milliseconds, where ap_int tables of the default model's size take minutes).

RMSNorm V1 (`quant.int8.rmsnorm = v1`) has float inside (spec 3.9: mixed precision, not
bit-true-able): it is rejected with an UnsupportedError naming the layer, never emitted as
some integer approximation. Re-calibrate with `--int8-rmsnorm v2` to generate C++.
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
from intsim.formats import QParams
from intsim.graph import INPUT_NAME
from intsim.int8 import Int8Program, Int8Step, quantize_act
from intsim.kernels_int8 import REVIN_EXTRA_BITS, REVIN_INV_BITS_INT8, RMS_EXTRA_BITS, RMS_INV_BITS_INT8
from intsim.lut import EXP_FRAC_BITS, EXP_SIZE
from intsim.ops import BackendTable

if TYPE_CHECKING:
    from pathlib import Path

    from intsim.executor import Model

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
# One row per op: its template and its emitter (config fields + C++ call).
EMIT8: BackendTable[TemplateRow] = BackendTable("INT8 C++ back end")


def _qp(qp: QParams) -> str:
    return f"s={qp.scale:.6g} z={qp.zero_point}"


def reject_mixed_precision(prog: Int8Program, model_dir: str | Path | None = None) -> None:
    """RMSNorm V1 is float inside: no integer C++ kernel exists for it (spec 3.9)."""
    mixed = [st.name for st in prog.steps if st.mixed_precision]
    if mixed:
        raise UnsupportedError(
            f"layer '{mixed[0]}': RMSNorm V1 (quant.int8.rmsnorm = v1) is mixed precision (float inside, "
            f"docs/quant-spec.md 3.9) and has no integer C++ kernel (also: {', '.join(mixed[1:]) or 'none'}); "
            f"re-run `cmamba-hls calibrate {model_dir or 'MODEL'} --int8-rmsnorm v2` to generate --precision int8"
        )


def emit(model: Model, names: dict[str, str], types: str, external: bool = False) -> Emission:
    graph = model.graph
    prog = model.program8
    reject_mixed_precision(prog, graph.path)
    configs: list[Config] = []
    consts: list[ConstArray] = []
    buffers: list[Buffer] = []
    steps: list[Step] = []
    shared: dict = {}

    for st in prog.steps:
        cname = names[st.name]
        channels, length = st.shape
        qp_in = " x ".join(_qp(q) for q in st.in_qp)
        comment = (
            f"{st.name}: {st.op} {list(graph.tensor_shape(st.inputs[0]))} -> [{channels}, {length}], "
            f"int8 {qp_in} -> {_qp(st.out_qp)}"
        )
        buffers.append(Buffer(st.name, cname, (channels, length)))
        ctx = LayerContext(graph, names, cname, consts, shared, external)
        code = EMIT8.row(st.op, st.name).emit(st, ctx)
        for key, value in code.ints:  # params.h: int, or long long for EPS_Q (3.9) and the S6 M_K (3.13): int64
            if key not in ("EPS_Q", "M_K") and not INT32_MIN <= int(value) <= INT32_MAX:
                raise UnsupportedError(f"layer '{st.name}': {key} = {value} does not fit int32")
        configs.append(Config(ctx.cfg, comment, [(k, int(v)) for k, v in code.ints]))
        steps.append(Step(st.name, st.op, comment, code.call))

    c_out, horizon = graph.output_channels, graph.horizon
    s_in, z_in = prog.input_qp

    def quantize_input(x_norm):
        return quantize_act(x_norm, s_in, z_in, "input")[0]

    def run_golden(x_q):
        res = model.run_int8(np.ascontiguousarray(x_q, dtype=np.int8), capture=True)
        tensors = {k: v for k, v in res.tensors.items() if k != INPUT_NAME}
        return res.output_q.reshape(len(x_q), c_out, horizon), tensors

    s_out, z_out = prog.output_qp
    return Emission(
        precision="int8",
        elem_bits=8,
        typedefs=["typedef i8_t data_t;   // every activation: int8 code, per-tensor scale and zero point"],
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
        input_limits=(-128, 127),
        notes=[
            f"input int8: x = {s_in!r} * (q - {z_in}); output int8: y = {s_out!r} * (q - {z_out})",
            "RMSNorm V2 (integer); INT8 arithmetic of docs/quant-spec.md section 3",
        ],
    )


# ------------------------------------------------------------------ registry rows
def _conv_code(st: Int8Step, ctx: LayerContext, ints: list) -> LayerCode:
    """Weights, bias, m0 and shift of a convolution as tables; zero points after `ints`."""
    p, cname = st.params, ctx.cname
    w = p.weight
    flat = " (rows: [i][k] flattened, k fastest)" if w.ndim == 3 else ""
    ctx.consts.extend(
        [
            ConstArray(
                f"w_{cname}",
                "int8_t",
                w.reshape(w.shape[0], -1),
                cname,
                f"{st.name}.weight {list(w.shape)} int8, per-output-channel symmetric{flat}",
                [(st.name, "weight")],
            ),
            ConstArray(
                f"b_{cname}",
                "int32_t",
                p.bias.astype(np.int32),
                cname,
                f"{st.name}.bias [{w.shape[0]}] int32 at scale s_x * s_w[o]",
                [(st.name, "bias")],
            ),
            ConstArray(
                f"m0_{cname}",
                "int32_t",
                p.m0.astype(np.int32),
                cname,
                f"{st.name} multipliers m0[o] in [2^30, 2^31): s_x s_w[o] / s_y = m0 2^-shift",
                [(st.name, "m0")],
            ),
            ConstArray(
                f"sh_{cname}",
                "int8_t",
                p.shift.astype(np.int8),
                cname,
                f"{st.name} right shifts [{w.shape[0]}] in [0, 62]",
                [(st.name, "shift")],
            ),
        ]
    )
    args = f"w_{cname}, b_{cname}, m0_{cname}, sh_{cname}"
    return LayerCode(
        ints + [("X_ZP", p.x_zp), ("Y_ZP", p.y_zp)],
        f"{st.op}_int8<{ctx.cfg}>({ctx.ref(st.inputs[0])}, {args}, {ctx.out});",
    )


def _emit_conv_kx1(st: Int8Step, ctx: LayerContext) -> LayerCode:
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
            ("K", st.params.weight.shape[2]),
            ("S", st.params.stride),
        ],
    )


def _emit_conv1x1(st: Int8Step, ctx: LayerContext) -> LayerCode:
    c_in, _ = ctx.graph.tensor_shape(st.inputs[0])
    channels, length = st.shape
    return _conv_code(st, ctx, [("C_IN", c_in), ("C_OUT", channels), ("L", length)])


def _emit_dwconv(st: Int8Step, ctx: LayerContext) -> LayerCode:
    channels, length = st.shape
    code = _conv_code(st, ctx, [("C", channels), ("L", length), ("K", st.params.weight.shape[1])])
    tap_major(ctx.consts, f"w_{ctx.cname}")
    return code


def _emit_rmsnorm(st: Int8Step, ctx: LayerContext) -> LayerCode:
    p = st.params
    channels, length = st.shape
    ctx.consts.append(
        ConstArray(
            f"g_{ctx.cname}",
            "int8_t",
            p.gain,
            ctx.cname,
            f"{st.name}.weight (gain) [{channels}] int8, per-tensor symmetric",
            [(st.name, "gain")],
        )
    )
    ints = [
        ("D", channels),
        ("L", length),
        ("X_ZP", p.x_zp),
        ("Y_ZP", p.y_zp),
        ("EPS_Q", p.eps_q),
        ("RMS_EXTRA_BITS", RMS_EXTRA_BITS),
        ("RMS_INV_BITS", RMS_INV_BITS_INT8),
        ("M0", p.m0),
        ("SHIFT", p.shift),
    ]
    return LayerCode(ints, f"rmsnorm_int8<{ctx.cfg}>({ctx.ref(st.inputs[0])}, g_{ctx.cname}, {ctx.out});")


def _emit_lut(st: Int8Step, ctx: LayerContext) -> LayerCode:
    """sigmoid and silu: identical tables (same op and formats) are emitted once."""
    channels, length = st.shape
    table = np.asarray(st.params.table, dtype=np.int8)
    tables = ctx.shared.setdefault("tables", {})
    key = table.tobytes()
    if key not in tables:
        tables[key] = f"lut_{ctx.cname}"
        ctx.consts.append(
            ConstArray(
                tables[key],
                "int8_t",
                table,
                "luts",
                f"{st.op} table [256] of {st.name}: "
                f"entry k = code of {st.op}(s_x (k - 128 - z_x)), "
                f"in {_qp(st.in_qp[0])}, out {_qp(st.out_qp)}",
                [(st.name, "table")],
            )
        )
    else:
        next(c for c in ctx.consts if c.name == tables[key]).sources.append((st.name, "table"))
    return LayerCode(
        [("C", channels), ("L", length)], f"lut_int8<{ctx.cfg}>({ctx.ref(st.inputs[0])}, {tables[key]}, {ctx.out});"
    )


def _emit_scan(st: Int8Step, ctx: LayerContext) -> LayerCode:
    p = st.params
    channels, length = st.shape
    ints = [("E", channels), ("T", length), ("U_ZP", p.u_zp), ("Y_ZP", p.y_zp), ("M0", p.m0), ("SHIFT", p.shift)]
    return LayerCode(ints, ctx.binary_call("scan_int8", st))


def _emit_s6(st: Int8Step, ctx: LayerContext) -> LayerCode:
    p, cname = st.params, ctx.cname
    e, n_states = p.a.shape
    ctx.consts.extend(
        [
            ConstArray(f"a_{cname}", "int8_t", p.a, cname, f"{st.name}.A [{e}, {n_states}] int8, per-row symmetric"),
            ConstArray(
                f"ma_{cname}",
                "int32_t",
                p.m_a.astype(np.int32),
                cname,
                f"{st.name} decay-address multipliers: (s_d s_A[e]) 2^8 = m_a 2^-sh_a",
            ),
            ConstArray(f"sha_{cname}", "int8_t", p.sh_a.astype(np.int8), cname, f"{st.name} decay-address shifts"),
            ConstArray(f"d_{cname}", "int8_t", p.d, cname, f"{st.name}.D [{e}] int8, per-tensor symmetric"),
        ]
    )
    z_d, z_x, z_b, z_c, z_y = p.zps
    ints = [
        ("E", e),
        ("N", n_states),
        ("T", st.shape[1]),
        ("EXP_SIZE", EXP_SIZE),
        ("EXP_FRAC", EXP_FRAC_BITS),
        ("D_ZP", z_d),
        ("X_ZP", z_x),
        ("B_ZP", z_b),
        ("C_ZP", z_c),
        ("Y_ZP", z_y),
        ("M_H", p.m_h),
        ("M_K", p.m_k),
        ("SHIFT", p.shift),
    ]
    return LayerCode(ints, s6_call("s6_scan_int8", st, ctx, f"a_{cname}, ma_{cname}, sha_{cname}, d_{cname}"))


def _emit_mul(st: Int8Step, ctx: LayerContext) -> LayerCode:
    p = st.params
    channels, length = st.shape
    ints = [
        ("C", channels),
        ("L", length),
        ("A_ZP", p.a_zp),
        ("B_ZP", p.b_zp),
        ("Y_ZP", p.y_zp),
        ("M0", p.m0),
        ("SHIFT", p.shift),
    ]
    return LayerCode(ints, ctx.binary_call("mul_int8", st))


def _emit_add(st: Int8Step, ctx: LayerContext) -> LayerCode:
    p = st.params
    channels, length = st.shape
    ints = [
        ("C", channels),
        ("L", length),
        ("A_ZP", p.a_zp),
        ("B_ZP", p.b_zp),
        ("Y_ZP", p.y_zp),
        ("M_A", p.m_a),
        ("M_B", p.m_b),
        ("SHIFT", p.shift),
    ]
    return LayerCode(ints, ctx.binary_call("add_int8", st))


def _emit_revin_norm(st: Int8Step, ctx: LayerContext) -> LayerCode:
    p = st.params
    channels, length = st.shape
    ints = [
        ("C", channels),
        ("L", length),
        ("X_ZP", p.x_zp),
        ("Y_ZP", p.y_zp),
        ("EPS_Q", p.eps_q),
        ("REVIN_EXTRA_BITS", REVIN_EXTRA_BITS),
        ("REVIN_INV_BITS", REVIN_INV_BITS_INT8),
        ("M0", p.m0),
        ("SHIFT", p.shift),
    ]
    return LayerCode(ints, f"revin_norm_int8<{ctx.cfg}>({ctx.ref(st.inputs[0])}, {ctx.out});")


def _emit_revin_denorm(st: Int8Step, ctx: LayerContext) -> LayerCode:
    p = st.params
    rows, cols = st.shape
    channels, length = ctx.graph.tensor_shape(st.inputs[1])
    ints = [
        ("C", channels),
        ("L", length),
        ("R", rows),
        ("M", cols),
        ("Y_ZP", p.y_zp),
        ("X_ZP", p.x_zp),
        ("O_ZP", p.o_zp),
        ("EPS_Q", p.eps_q),
        ("REVIN_EXTRA_BITS", REVIN_EXTRA_BITS),
        ("M_A", p.m_a),
        ("M_B", p.m_b),
        ("SHIFT", p.shift),
    ]
    return LayerCode(ints, ctx.binary_call("revin_denorm_int8", st))


EMIT8.register("conv_kx1", TemplateRow("int8/conv_kx1.h.j2", _emit_conv_kx1))
EMIT8.register("conv1x1", TemplateRow("int8/conv1x1.h.j2", _emit_conv1x1))
EMIT8.register("dwconv", TemplateRow("int8/dwconv.h.j2", _emit_dwconv))
EMIT8.register("rmsnorm", TemplateRow("int8/rmsnorm.h.j2", _emit_rmsnorm))
EMIT8.register("sigmoid", TemplateRow("int8/lut.h.j2", _emit_lut))
EMIT8.register("silu", TemplateRow("int8/lut.h.j2", _emit_lut))
EMIT8.register("scan", TemplateRow("int8/scan.h.j2", _emit_scan))
EMIT8.register("mul", TemplateRow("int8/mul.h.j2", _emit_mul))
EMIT8.register("softplus", TemplateRow("int8/lut.h.j2", _emit_lut))
EMIT8.register("s6_scan", TemplateRow("int8/s6_scan.h.j2", _emit_s6))
EMIT8.register("add", TemplateRow("int8/add.h.j2", _emit_add))
EMIT8.register("revin_norm", TemplateRow("int8/revin.h.j2", _emit_revin_norm))
EMIT8.register("revin_denorm", TemplateRow("int8/revin.h.j2", _emit_revin_denorm))
OP_TEMPLATES = op_templates(EMIT8, first=("int8/primitives_int8.h.j2",))
