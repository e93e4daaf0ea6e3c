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

import numpy as np

from codegen.emission import Buffer, Config, ConstArray, Emission, Step
from intsim.errors import UnsupportedError
from intsim.fixedpoint import quantize_q
from intsim.graph import INPUT_NAME
from intsim.int16 import Int16Step
from intsim.kernels_int16 import LUT_OFFSET, RMS_EXTRA_BITS, RMS_INV_BITS
from intsim.lut import LUT_SIZE

OP_TEMPLATES = [f"int16/{op}.h.j2" for op in (
    "conv_kx1", "conv1x1", "dwconv", "rmsnorm", "lut_activation", "scan", "mul", "add")]
INT16_MAX_ABS = 1 << 15


def acc_bits(weight: np.ndarray, bias: np.ndarray) -> int:
    """Signed width that holds every partial sum of b[o] + sum_j w[o, j] x[j], |x| <= 2^15."""
    w = np.abs(weight.astype(np.int64).reshape(weight.shape[0], -1)).sum(axis=1)
    bound = int(np.max(np.abs(bias.astype(np.int64)) + INT16_MAX_ABS * w))
    return bound.bit_length() + 1


def _fmt(f: int) -> str:
    return f"Q{16 - f}.{f}"


def emit(model, names: dict[str, str], types: str) -> Emission:
    graph = model.graph
    prog = model.program
    configs: list[Config] = []
    consts: list[ConstArray] = []
    buffers: list[Buffer] = []
    steps: list[Step] = []
    luts: dict[tuple[str, int], str] = {}

    def ref(tensor: str) -> str:
        return "input" if tensor == INPUT_NAME else f"act.{names[tensor]}"

    for st in prog.steps:
        cname = names[st.name]
        cfg = f"cfg_{cname}"
        channels, length = st.shape
        fmt_in = " x ".join(_fmt(f) for f in st.in_frac)
        comment = f"{st.name}: {st.op} {list(graph.tensor_shape(st.inputs[0]))} -> [{channels}, {length}], " \
                  f"{fmt_in} -> {_fmt(st.out_frac)}"
        buffers.append(Buffer(st.name, cname, (channels, length)))
        ints, call = _layer(st, cname, cfg, graph, consts, luts, ref)
        config = Config(cfg, comment, ints)
        if st.op in ("conv_kx1", "conv1x1", "dwconv"):
            bits = acc_bits(st.params["weight"], st.params["bias"])
            config.ints.append(("ACC_BITS", bits))
            config.types.append(("acc_t", "acc_int<ACC_BITS>::type"))
        configs.append(config)
        steps.append(Step(st.name, st.op, comment, call))

    c_out, horizon = graph.output_channels, graph.horizon

    def quantize_input(x_norm):
        return quantize_q(x_norm, prog.input_frac, 16, "input")[0].astype(np.int16)

    def run_golden(x_q):
        res = model.run_int16(np.ascontiguousarray(x_q, dtype=np.int16), capture=True)
        tensors = {k: v for k, v in res.tensors.items() if k != INPUT_NAME}
        return res.output_q.reshape(len(x_q), c_out, horizon), tensors

    return Emission(
        precision="int16", elem_bits=16, typedefs=["typedef i16_t data_t;   // every activation: int16, per-tensor Q format"],
        op_templates=list(OP_TEMPLATES), configs=configs, consts=consts, buffers=buffers, steps=steps,
        input_shape=tuple(graph.input_shape), output_buffer=names[graph.output_tensor],
        output_shape=(c_out, horizon), quantize_input=quantize_input, run_golden=run_golden,
        notes=[f"input format {_fmt(prog.input_frac)}, output format {_fmt(prog.output_frac)}"],
    )


def _layer(st: Int16Step, cname: str, cfg: str, graph, consts, luts, ref):
    """(config ints, C++ call) of one step; appends its constants to `consts`."""
    p = st.params
    channels, length = st.shape
    x = ref(st.inputs[0])
    out = f"act.{cname}"
    if st.op in ("conv_kx1", "conv1x1", "dwconv"):
        c_in, l_in = graph.tensor_shape(st.inputs[0])
        w = p["weight"]
        f_w = p["w_frac"]
        consts.append(ConstArray(f"w_{cname}", "int16_t", w.reshape(w.shape[0], -1), cname,
                                 f"{st.name}.weight {list(w.shape)} {_fmt(f_w)}"
                                 + (" (rows: [i][k] flattened, k fastest)" if w.ndim == 3 else "")))
        consts.append(ConstArray(f"b_{cname}", "int32_t", p["bias"].astype(np.int32), cname,
                                 f"{st.name}.bias [{w.shape[0]}] int32 at Q(f_x + f_w) = 2^-{st.in_frac[0] + f_w}"))
        call = f"{st.op}<{cfg}>({x}, w_{cname}, b_{cname}, {out});"
        if st.op == "conv_kx1":
            ints = [("C_IN", c_in), ("L_IN", l_in), ("C_OUT", channels), ("L_OUT", length),
                    ("K", w.shape[2]), ("S", p["stride"]), ("SHIFT", p["shift"])]
        elif st.op == "conv1x1":
            ints = [("C_IN", c_in), ("C_OUT", channels), ("L", length), ("SHIFT", p["shift"])]
        else:
            ints = [("C", channels), ("L", length), ("K", w.shape[1]), ("SHIFT", p["shift"])]
        return ints, call
    if st.op == "rmsnorm":
        consts.append(ConstArray(f"g_{cname}", "int16_t", p["gain"], cname,
                                 f"{st.name}.weight (gain) [{channels}] {_fmt(p['g_frac'])}"))
        ints = [("D", channels), ("L", length), ("EPS_Q", int(p["eps_q"])), ("RMS_EXTRA_BITS", RMS_EXTRA_BITS),
                ("RMS_INV_BITS", RMS_INV_BITS), ("SHIFT", p["shift"])]
        return ints, f"rmsnorm<{cfg}>({x}, g_{cname}, {out});"
    if st.op in ("sigmoid", "silu"):
        key = (st.op, st.out_frac)
        if key not in luts:
            luts[key] = f"lut_{st.op}_q{st.out_frac}"
            consts.append(ConstArray(luts[key], "int16_t", p["table"], "luts",
                                     f"{st.op} table [{LUT_SIZE}], entry a = {st.op}((a - {LUT_OFFSET}) / 256) "
                                     f"at {_fmt(st.out_frac)}"))
        else:
            prev = next(c for c in consts if c.name == luts[key])
            if not np.array_equal(prev.values, p["table"]):
                raise UnsupportedError(f"layer '{st.name}': {st.op} table differs from an earlier one of the same format")
        ints = [("C", channels), ("L", length), ("ADDR_SHIFT", p["addr_shift"]),
                ("IDENTITY_SHIFT", p["identity_shift"]), ("IS_SILU", int(bool(p["is_silu"]))),
                ("LUT_OFFSET", LUT_OFFSET), ("LUT_SIZE", LUT_SIZE)]
        return ints, f"lut_activation<{cfg}>({x}, {luts[key]}, {out});"
    if st.op == "scan":
        ints = [("E", channels), ("T", length), ("LAM_FRAC", p["lam_frac"]), ("U_SHIFT", p["u_shift"])]
        return ints, f"scan<{cfg}>({x}, {ref(st.inputs[1])}, {out});"
    if st.op == "mul":
        return [("C", channels), ("L", length), ("SHIFT", p["shift"])], \
            f"mul<{cfg}>({x}, {ref(st.inputs[1])}, {out});"
    if st.op == "add":
        ints = [("C", channels), ("L", length), ("A_UP", p["a_up"]), ("B_UP", p["b_up"]), ("SHIFT", p["shift"])]
        return ints, f"add<{cfg}>({x}, {ref(st.inputs[1])}, {out});"
    raise UnsupportedError(f"layer '{st.name}': op '{st.op}' has no INT16 C++ template")
