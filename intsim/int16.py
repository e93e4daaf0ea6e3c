"""INT16 lowering: calibrated graph -> integer program (docs/quant-spec.md section 2).

`lower_int16(graph)` turns every layer into an `Int16Step`: quantized weights,
int32 biases, shifts, eps constants and LUT tables, computed once on the host.
The bittrue executor packs these steps into one table (`pack_program`) and runs
the whole program in one jitted call; codegen emits the
very same integers into C++ headers. Nothing here is recomputed elsewhere.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from intsim import kernels_int16 as K
from intsim.errors import QuantizationError, UnsupportedError
from intsim.fixedpoint import MAX_SHIFT, quantize_q
from intsim.graph import INPUT_NAME, Graph
from intsim.kernels_mac import weight_rows
from intsim.lut import LUT_FRAC_BITS, int16_table, int16_table_clamped

FRAC_MIN, FRAC_MAX = 0, 15


@dataclass
class Int16Step:
    """One layer lowered to integers. `params` holds ints and int arrays only."""
    name: str
    op: str
    inputs: tuple[str, ...]
    in_frac: tuple[int, ...]
    out_frac: int
    shape: tuple[int, int]
    params: dict = field(default_factory=dict)
    weight_saturations: int = 0


@dataclass
class Int16Program:
    input_frac: int
    steps: list[Int16Step]
    output_tensor: str

    @property
    def output_frac(self) -> int:
        return self.step(self.output_tensor).out_frac

    def step(self, name: str) -> Int16Step:
        for st in self.steps:
            if st.name == name:
                return st
        raise KeyError(name)

    def frac_of(self, tensor: str) -> int:
        return self.input_frac if tensor == INPUT_NAME else self.step(tensor).out_frac


def int16_formats(graph: Graph) -> dict:
    q = graph.quant.get("int16")
    if not q or "tensors" not in q or "weights" not in q:
        raise QuantizationError(
            f"model '{graph.name}' has no INT16 formats (quant.int16): run "
            f"`cmamba-hls calibrate {graph.path or 'MODEL_DIR'}` first")
    return q


def _frac(table: dict, key: str, what: str) -> int:
    entry = table.get(key)
    if not isinstance(entry, dict) or "frac_bits" not in entry:
        raise QuantizationError(f"quant.int16: no frac_bits for {what} '{key}' (re-run calibrate)")
    f = entry["frac_bits"]
    if not isinstance(f, int) or isinstance(f, bool) or not FRAC_MIN <= f <= FRAC_MAX:
        raise QuantizationError(f"quant.int16: frac_bits of {what} '{key}' must be an int in [0, 15], got {f!r}")
    return f


def _check_shift(layer: str, what: str, value: int, lo: int = 0, hi: int = MAX_SHIFT) -> int:
    if not lo <= value <= hi:
        raise QuantizationError(
            f"layer '{layer}': {what} = {value} is outside [{lo}, {hi}]; the formats chosen for this "
            f"layer are inconsistent (spec 2: the output may not need a left shift)")
    return value


def lower_int16(graph: Graph) -> Int16Program:
    q = int16_formats(graph)
    tensors, weights = q["tensors"], q["weights"]
    frac = {INPUT_NAME: _frac(tensors, INPUT_NAME, "tensor")}
    steps: list[Int16Step] = []
    for layer in graph.layers:
        f_y = _frac(tensors, layer.name, "tensor")
        f_in = tuple(frac[s] for s in layer.inputs)
        st = Int16Step(layer.name, layer.op, layer.inputs, f_in, f_y, layer.shape)
        p = st.params
        if layer.op in ("conv_kx1", "conv1x1", "dwconv"):
            f_w = _frac(weights, f"{layer.name}.weight", "weight")
            f_acc = f_in[0] + f_w
            w_q, n1 = quantize_q(layer.weights["weight"], f_w, 16, f"{layer.name}.weight")
            b_q, n2 = quantize_q(layer.weights["bias"], f_acc, 32, f"{layer.name}.bias")
            p.update(weight=w_q.astype(np.int16), bias=b_q.astype(np.int64), w_frac=f_w,
                     shift=_check_shift(layer.name, "output shift f_x + f_w - f_y", f_acc - f_y))
            if layer.op == "conv_kx1":
                p["stride"] = layer.attrs["stride"]
            st.weight_saturations = n1 + n2
        elif layer.op == "rmsnorm":
            f_g = _frac(weights, f"{layer.name}.weight", "gain")
            g_q, n1 = quantize_q(layer.weights["weight"], f_g, 16, f"{layer.name}.weight")
            eps_q = int(np.rint(np.ldexp(layer.attrs["eps"], 2 * f_in[0])))
            shift = K.RMS_INV_BITS + f_g - K.RMS_EXTRA_BITS - f_y
            p.update(gain=g_q.astype(np.int16), g_frac=f_g, eps_q=eps_q,
                     shift=_check_shift(layer.name, "RMSNorm output shift", shift))
            st.weight_saturations = n1
        elif layer.op in ("sigmoid", "silu"):
            p.update(table=int16_table(layer.op, f_y), clamped=int16_table_clamped(layer.op, f_y),
                     addr_shift=f_in[0] - LUT_FRAC_BITS,
                     identity_shift=f_in[0] - f_y, is_silu=layer.op == "silu")
        elif layer.op == "scan":
            p.update(lam_frac=f_in[0], u_shift=f_in[1] - f_y)
        elif layer.op == "mul":
            p.update(shift=f_in[0] + f_in[1] - f_y)
        elif layer.op == "add":
            top = max(f_in)
            p.update(a_up=top - f_in[0], b_up=top - f_in[1], shift=top - f_y)
        else:
            raise UnsupportedError(f"layer '{layer.name}': op '{layer.op}' has no INT16 lowering")
        frac[layer.name] = f_y
        steps.append(st)
    return Int16Program(frac[INPUT_NAME], steps, graph.output_tensor)


@dataclass(frozen=True)
class PackedInt16:
    """A lowered program as flat arrays for `kernels_int16.run_program_int16`:
    one int64 row per step (op code, input tensor indices, weight/bias offsets and
    dims, shifts), all weights/gains/tables in one int16 array, all biases in one
    int64 array, and the per-sample [C, L] and format of every tensor (0 = the input)."""
    steps: np.ndarray
    weights: np.ndarray
    biases: np.ndarray
    channels: np.ndarray
    lengths: np.ndarray
    fracs: np.ndarray            # int64[n + 1]: fractional bits of every tensor
    names: tuple[str, ...]


def pack_program(prog: Int16Program, input_shape: tuple[int, int]) -> PackedInt16:
    """Pack `prog` (shapes per sample; input_shape = (C_in, L)) into one table."""
    names = (INPUT_NAME,) + tuple(st.name for st in prog.steps)
    index = {name: k for k, name in enumerate(names)}
    shapes = [tuple(input_shape)] + [tuple(st.shape) for st in prog.steps]
    rows = np.zeros((len(prog.steps), K.N_COLS), dtype=np.int64)
    w_parts, b_parts = [], []
    w_off = b_off = 0
    for i, st in enumerate(prog.steps):
        p, r = st.params, rows[i]
        r[K.COL_IN0] = index[st.inputs[0]]
        r[K.COL_IN1] = index[st.inputs[1]] if len(st.inputs) > 1 else -1
        w = bias = dims = None
        if st.op in ("conv_kx1", "conv1x1"):
            w, bias = p["weight"], p["bias"]
            if w.ndim == 2:          # 1x1: the K = 1, S = 1 case of spec 2.2
                w = w[:, :, None]
            r[K.COL_OP], r[K.COL_P0], r[K.COL_P1] = K.OP_CONV, p["shift"], p.get("stride", 1)
            dims = w.shape                                          # [C_out, C_in, K]
            w = weight_rows(np.ascontiguousarray(w, np.int16))     # stored as [C_out, K*C_in]
        elif st.op == "dwconv":
            w, bias = p["weight"], p["bias"]
            dims = (w.shape[0], 1, w.shape[1])                      # [C, 1, K]
            r[K.COL_OP], r[K.COL_P0] = K.OP_DWCONV, p["shift"]
        elif st.op == "rmsnorm":
            w = p["gain"]
            dims = (w.size, 1, 1)
            r[K.COL_OP], r[K.COL_P0], r[K.COL_P1] = K.OP_RMSNORM, p["shift"], p["eps_q"]
        elif st.op in ("sigmoid", "silu"):
            w = np.concatenate([p["table"], p["clamped"].astype(np.int16)])   # flags after the table
            dims = (p["table"].size, 2, 1)
            r[K.COL_OP], r[K.COL_P0], r[K.COL_P1], r[K.COL_P2] = (
                K.OP_LUT, p["addr_shift"], p["identity_shift"], int(p["is_silu"]))
        elif st.op == "scan":
            r[K.COL_OP], r[K.COL_P0], r[K.COL_P1] = K.OP_SCAN, p["lam_frac"], p["u_shift"]
        elif st.op == "mul":
            r[K.COL_OP], r[K.COL_P0] = K.OP_MUL, p["shift"]
        elif st.op == "add":
            r[K.COL_OP], r[K.COL_P0], r[K.COL_P1], r[K.COL_P2] = (
                K.OP_ADD, p["a_up"], p["b_up"], p["shift"])
        else:
            raise UnsupportedError(f"layer '{st.name}': op '{st.op}' has no INT16 kernel")
        if w is not None:
            r[K.COL_W_OFF], r[K.COL_W0], r[K.COL_W1], r[K.COL_W2] = (w_off,) + tuple(dims)
            w_parts.append(w.astype(np.int16).ravel())
            w_off += w.size
        if bias is not None:
            r[K.COL_B_OFF] = b_off
            b_parts.append(bias.astype(np.int64))
            b_off += bias.size
    return PackedInt16(rows, _concat(w_parts, np.int16), _concat(b_parts, np.int64),
                       np.array([c for c, _ in shapes], np.int64),
                       np.array([n for _, n in shapes], np.int64),
                       np.array([prog.input_frac] + [st.out_frac for st in prog.steps], np.int64), names)


def _concat(parts: list[np.ndarray], dtype) -> np.ndarray:
    return np.ascontiguousarray(np.concatenate(parts) if parts else np.zeros(0), dtype)
