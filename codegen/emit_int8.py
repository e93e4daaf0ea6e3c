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

import numpy as np

from codegen.emission import Buffer, Config, ConstArray, Emission, Step
from intsim.errors import UnsupportedError
from intsim.graph import INPUT_NAME
from intsim.int8 import Int8Step, quantize_act
from intsim.kernels_int8 import RMS_EXTRA_BITS, RMS_INV_BITS_INT8

OP_TEMPLATES = ["int8/primitives_int8.h.j2"] + [f"int8/{op}.h.j2" for op in (
    "conv_kx1", "conv1x1", "dwconv", "rmsnorm", "lut", "scan", "mul", "add")]
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
CONV_OPS = ("conv_kx1", "conv1x1", "dwconv")


def _qp(qp: tuple[float, int]) -> str:
    return f"s={qp[0]:.6g} z={qp[1]}"


def reject_mixed_precision(prog, model_dir=None) -> None:
    """RMSNorm V1 is float inside: no integer C++ kernel exists for it (spec 3.9)."""
    mixed = [st.name for st in prog.steps if st.mixed_precision]
    if mixed:
        raise UnsupportedError(
            f"layer '{mixed[0]}': RMSNorm V1 (quant.int8.rmsnorm = v1) is mixed precision (float inside, "
            f"docs/quant-spec.md 3.9) and has no integer C++ kernel (also: {', '.join(mixed[1:]) or 'none'}); "
            f"re-run `cmamba-hls calibrate {model_dir or 'MODEL'} --int8-rmsnorm v2` to generate --precision int8")


def emit(model, names: dict[str, str], types: str) -> Emission:
    graph = model.graph
    prog = model.program8
    reject_mixed_precision(prog, graph.path)
    configs: list[Config] = []
    consts: list[ConstArray] = []
    buffers: list[Buffer] = []
    steps: list[Step] = []
    tables: dict[bytes, str] = {}

    def ref(tensor: str) -> str:
        return "input" if tensor == INPUT_NAME else f"act.{names[tensor]}"

    for st in prog.steps:
        cname = names[st.name]
        channels, length = st.shape
        qp_in = " x ".join(_qp(q) for q in st.in_qp)
        comment = (f"{st.name}: {st.op} {list(graph.tensor_shape(st.inputs[0]))} -> [{channels}, {length}], "
                   f"int8 {qp_in} -> {_qp(st.out_qp)}")
        buffers.append(Buffer(st.name, cname, (channels, length)))
        ints, call = _layer(st, cname, f"cfg_{cname}", graph, consts, tables, ref)
        for key, value in ints:     # params.h: int, or long long for EPS_Q (spec 3.9: int64)
            if key != "EPS_Q" and not INT32_MIN <= int(value) <= INT32_MAX:
                raise UnsupportedError(f"layer '{st.name}': {key} = {value} does not fit int32")
        configs.append(Config(f"cfg_{cname}", comment, [(k, int(v)) for k, v in ints]))
        steps.append(Step(st.name, st.op, comment, call))

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
        precision="int8", elem_bits=8,
        typedefs=["typedef i8_t data_t;   // every activation: int8 code, per-tensor scale and zero point"],
        op_templates=list(OP_TEMPLATES), configs=configs, consts=consts, buffers=buffers, steps=steps,
        input_shape=tuple(graph.input_shape), output_buffer=names[graph.output_tensor],
        output_shape=(c_out, horizon), quantize_input=quantize_input, run_golden=run_golden,
        input_limits=(-128, 127),
        notes=[f"input int8: x = {s_in!r} * (q - {z_in}); output int8: y = {s_out!r} * (q - {z_out})",
               "RMSNorm V2 (integer); INT8 arithmetic of docs/quant-spec.md section 3"],
    )


def _conv_consts(st: Int8Step, cname: str, consts: list) -> str:
    """Weights, bias, m0 and shift of a convolution; returns their argument list."""
    p = st.params
    w = p["weight"]
    flat = " (rows: [i][k] flattened, k fastest)" if w.ndim == 3 else ""
    consts += [
        ConstArray(f"w_{cname}", "int8_t", w.reshape(w.shape[0], -1), cname,
                   f"{st.name}.weight {list(w.shape)} int8, per-output-channel symmetric{flat}"),
        ConstArray(f"b_{cname}", "int32_t", p["bias"].astype(np.int32), cname,
                   f"{st.name}.bias [{w.shape[0]}] int32 at scale s_x * s_w[o]"),
        ConstArray(f"m0_{cname}", "int32_t", p["m0"].astype(np.int32), cname,
                   f"{st.name} multipliers m0[o] in [2^30, 2^31): s_x s_w[o] / s_y = m0 2^-shift"),
        ConstArray(f"sh_{cname}", "int8_t", p["shift"].astype(np.int8), cname,
                   f"{st.name} right shifts [{w.shape[0]}] in [0, 62]"),
    ]
    return f"w_{cname}, b_{cname}, m0_{cname}, sh_{cname}"


def _layer(st: Int8Step, cname: str, cfg: str, graph, consts: list, tables: dict, ref):
    """(config ints, C++ call) of one step; appends its constants to `consts`."""
    p = st.params
    channels, length = st.shape
    x = ref(st.inputs[0])
    out = f"act.{cname}"
    if st.op in CONV_OPS:
        c_in, l_in = graph.tensor_shape(st.inputs[0])
        args = _conv_consts(st, cname, consts)
        zps = [("X_ZP", p["x_zp"]), ("Y_ZP", p["y_zp"])]
        if st.op == "conv_kx1":
            ints = [("C_IN", c_in), ("L_IN", l_in), ("C_OUT", channels), ("L_OUT", length),
                    ("K", p["weight"].shape[2]), ("S", p["stride"])]
        elif st.op == "conv1x1":
            ints = [("C_IN", c_in), ("C_OUT", channels), ("L", length)]
        else:
            ints = [("C", channels), ("L", length), ("K", p["weight"].shape[1])]
        return ints + zps, f"{st.op}_int8<{cfg}>({x}, {args}, {out});"
    if st.op == "rmsnorm":
        consts.append(ConstArray(f"g_{cname}", "int8_t", p["gain"], cname,
                                 f"{st.name}.weight (gain) [{channels}] int8, per-tensor symmetric"))
        ints = [("D", channels), ("L", length), ("X_ZP", p["x_zp"]), ("Y_ZP", p["y_zp"]), ("EPS_Q", p["eps_q"]),
                ("RMS_EXTRA_BITS", RMS_EXTRA_BITS), ("RMS_INV_BITS", RMS_INV_BITS_INT8),
                ("M0", p["m0"]), ("SHIFT", p["shift"])]
        return ints, f"rmsnorm_int8<{cfg}>({x}, g_{cname}, {out});"
    if st.op in ("sigmoid", "silu"):
        table = np.asarray(p["table"], dtype=np.int8)
        key = table.tobytes()
        if key not in tables:     # identical tables (same op and formats) are emitted once
            tables[key] = f"lut_{cname}"
            consts.append(ConstArray(tables[key], "int8_t", table, "luts",
                                     f"{st.op} table [256] of {st.name}: entry k = code of {st.op}(s_x (k - 128 - z_x)), "
                                     f"in {_qp(st.in_qp[0])}, out {_qp(st.out_qp)}"))
        return [("C", channels), ("L", length)], f"lut_int8<{cfg}>({x}, {tables[key]}, {out});"
    if st.op == "scan":
        ints = [("E", channels), ("T", length), ("U_ZP", p["u_zp"]), ("Y_ZP", p["y_zp"]),
                ("M0", p["m0"]), ("SHIFT", p["shift"])]
        return ints, f"scan_int8<{cfg}>({x}, {ref(st.inputs[1])}, {out});"
    if st.op == "mul":
        ints = [("C", channels), ("L", length), ("A_ZP", p["a_zp"]), ("B_ZP", p["b_zp"]), ("Y_ZP", p["y_zp"]),
                ("M0", p["m0"]), ("SHIFT", p["shift"])]
        return ints, f"mul_int8<{cfg}>({x}, {ref(st.inputs[1])}, {out});"
    if st.op == "add":
        ints = [("C", channels), ("L", length), ("A_ZP", p["a_zp"]), ("B_ZP", p["b_zp"]), ("Y_ZP", p["y_zp"]),
                ("M_A", p["m_a"]), ("M_B", p["m_b"]), ("SHIFT", p["shift"])]
        return ints, f"add_int8<{cfg}>({x}, {ref(st.inputs[1])}, {out});"
    raise UnsupportedError(f"layer '{st.name}': op '{st.op}' has no INT8 C++ template")
