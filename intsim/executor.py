"""Graph executor: `load_model(path).run(x, mode)`.

Modes: intsim/modes.py (one ordered list): "fp32" float reference; "quant16" fake
quantization (weights, biases and activations snapped to their INT16 formats, float
arithmetic); "bittrue" the INT16 golden model (integer Numba kernels, spec section 2);
"quant8" the INT8 integer path (spec section 3; float only in RMSNorm V1 if chosen).

`run` works in the network's own (normalised) domain: x is what the network
sees, `.output` what it produces. `predict` takes and returns original units.
A leading batch axis is processed inside the kernels (no Python loop per
sample). The model holds no global state: map it over shards freely.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike, NDArray

from intsim import float_ref
from intsim.backends import BUILTIN, load_backend
from intsim.chunks import run_in_chunks
from intsim.errors import DataError
from intsim.fixedpoint import dequantize, quantize_q
from intsim.formats import lsb
from intsim.graph import INPUT_NAME, Graph, load_graph
from intsim.int8 import Int8Program, dequantize_act, lower_int8, pack_program8, run_step8
from intsim.int16 import Int16Program, PackedInt16, int16_formats, lower_int16, pack_program
from intsim.kernels_int8 import run_program_int8
from intsim.kernels_int16 import quantize_input, run_program_int16
from intsim.modes import BITTRUE, MODE_NAMES, QUANT8, QUANT16, Mode, get_mode

if TYPE_CHECKING:
    from pathlib import Path

MODES = MODE_NAMES


@dataclass
class RunResult:
    mode: str
    output: np.ndarray  # float64 [B, C_out, H] (network units)
    output_q: np.ndarray | None = None  # int16 (bittrue) / int8 (quant8) [B, C_out, H]
    # layer -> {"saturations", "min", "max", "size"}; given as a dict or as a function building it
    # (the packed programs: built on first read, so a run whose stats nobody reads skips the work)
    stats: dict = field(default_factory=dict)
    tensors: dict = field(default_factory=dict)  # captured [B, C, L] (int for bittrue); per series [B*C_in, C, L]
    # for a channel-independent graph (series b*C_in + c: window b, channel c)
    output_frac: int | None = None  # bittrue: LSB = 2**-output_frac
    output_lsb: float | None = None  # integer modes: one output LSB in network units


def _get_stats(res: RunResult) -> dict:
    value = res.__dict__["_stats"]
    if callable(value):
        value = res.__dict__["_stats"] = value()
    return value


def _set_stats(res: RunResult, value: dict | Callable[[], dict]) -> None:
    res.__dict__["_stats"] = value


def _get_state(res: RunResult) -> dict:
    _get_stats(res)  # a pickle or copy holds the stats, not the function building them
    return res.__dict__


RunResult.stats = property(_get_stats, _set_stats)  # type: ignore[assignment]  # the dataclass field, deferred
RunResult.__getstate__ = _get_state  # type: ignore[method-assign]


def _wants(capture, name: str) -> bool:
    return capture is True or (capture not in (None, False) and name in capture)


class Model:
    def __init__(self, graph: Graph):
        self.graph = graph
        self._program: Int16Program | None = None
        self._packed: PackedInt16 | None = None
        self._program8: Int8Program | None = None
        self._packed8: list = []  # [] not packed yet; [None, ...]: a step has no packed kernel
        self._k_out = 0  # index of the output tensor in the packed INT16 program
        self._backends: dict[str, object] = {}  # plug-in back ends by name (intsim/backends.py)

    def invalidate(self) -> None:
        """Forget lowered programs and re-validate the formats (after the quantization
        parameters change, also when they were edited in place)."""
        self.graph.quant = self.graph.quant
        self._program = None
        self._packed = None
        self._program8 = None
        self._packed8 = []

    # ----------------------------------------------------------------- inputs
    def _as_batch(self, x, what="x") -> tuple[np.ndarray, bool]:
        arr = np.asarray(x)
        single = arr.ndim == 2
        if single:
            arr = arr[None]
        c_in, length = self.graph.input_shape
        if arr.ndim != 3 or arr.shape[1:] != (c_in, length):
            raise DataError(f"{what}: expected shape [B, {c_in}, {length}] or [{c_in}, {length}], got {np.shape(x)}")
        return arr, single

    def _check_float(self, x) -> tuple[np.ndarray, bool]:
        """x as a real, finite, non-empty [B, C_in, L] batch (dtype kept: chunks convert)."""
        arr, single = self._as_batch(x)
        if arr.dtype.kind not in "iuf":
            raise DataError(
                f"x: expected real numbers (float or int), got dtype {arr.dtype}"
                + (" (complex values are never truncated to their real part)" if arr.dtype.kind == "c" else "")
            )
        if len(arr) == 0:
            raise DataError("x: empty batch (0 windows)")
        # a finite sum means every value is finite (a NaN or an infinity makes the sum NaN or infinite);
        # only a non-finite sum (also an overflow of huge finite values) needs the full check
        if arr.dtype.kind == "f" and not math.isfinite(arr.sum()) and not np.all(np.isfinite(arr)):
            raise DataError(f"x: {int(np.count_nonzero(~np.isfinite(arr)))} NaN/Inf value(s) in the input")
        return arr, single

    def normalize_input(self, x_raw: ArrayLike) -> NDArray[np.float64]:
        g = self.graph
        return (np.asarray(x_raw, dtype=np.float64) - g.norm_in_mean[:, None]) / g.norm_in_std[:, None]

    def denormalize_output(self, y: np.ndarray) -> np.ndarray:
        g = self.graph
        return y * g.norm_out_std[:, None] + g.norm_out_mean[:, None]

    def _shape_output(self, y_flat):
        # head tensor [B, C_out*H, 1] -> [B, C_out, H]; channel-independent: [B*C_out, H, 1] (series
        # b*C_out + c is window b, channel c) -> [B, C_out, H], the same row-major reshape
        return y_flat.reshape(-1, self.graph.output_channels, self.graph.horizon)

    # ------------------------------------------------------------------- run
    @property
    def program(self) -> Int16Program:
        if self._program is None:
            self._program = lower_int16(self.graph)
        return self._program

    @property
    def program8(self) -> Int8Program:
        if self._program8 is None:
            self._program8 = lower_int8(self.graph)
        return self._program8

    def run(
        self,
        x: ArrayLike,
        mode: str | Mode = "fp32",
        capture: bool | Iterable[str] | None = None,
        backend: str = BUILTIN,
    ) -> RunResult:
        """x: float [B, C_in, L] or [C_in, L], normalised. mode: a name of intsim.modes.MODES
        (or a Mode). capture: None, True or names.
        Batches of more than CHUNK_WINDOWS (1024) windows run in chunks of that size, so memory
        stays bounded (intsim/chunks.py); the results are the same bits as one call.
        backend: "numba" (this golden model) or a plug-in back end (intsim/backends.py), e.g.
        "torch" (the bit-true PyTorch back end, integer modes, the same bits)."""
        mode = get_mode(mode)
        if backend != BUILTIN:
            if backend not in self._backends:
                self._backends[backend] = load_backend(backend, self)
            return self._backends[backend].run(x, mode, capture)
        xb, single = self._check_float(x)
        res = run_in_chunks(
            lambda part: self._run_mode(part.astype(np.float64, copy=False), mode, capture),
            xb,
            series=self.graph.series,
        )
        if single:
            res.output = res.output[0]
            if res.output_q is not None:
                res.output_q = res.output_q[0]
        return res

    def _run_mode(self, xb, mode: Mode, capture) -> RunResult:
        if mode is BITTRUE:  # n_sat: the host-side input quantization's saturations
            res = self._run_packed16(*self._quantize_input(xb, self.program.input_frac), capture)
        elif mode is QUANT8:
            res = self._run_packed8(*self._quantize_input(xb, None), capture)
        else:
            res = self._run_float(xb, mode, capture)
        return res

    def _quantize_input(self, xb: np.ndarray, frac: int | None) -> tuple[np.ndarray, int]:
        """The finite float input as the integer program's input and its saturations, in one jitted
        pass with the float operations of fixedpoint.quantize_q (frac: INT16, x 2^frac exact) or,
        frac None, int8.quantize_act (RNE(x / s) + z): the same codes."""
        if frac is None:
            s_in, z_in = self.program8.input_qp
            mul, div, zp, lo, hi, dtype = 1.0, float(s_in), float(z_in), -128.0, 127.0, np.int8
        elif abs(frac) < 1000:  # 2^frac a normal float64: x * 2^frac is ldexp(x, frac)
            mul, div, zp, lo, hi, dtype = math.ldexp(1.0, frac), 1.0, 0.0, -32768.0, 32767.0, np.int16
        else:
            x_q, n_sat = quantize_q(xb, frac, 16, "input")
            return x_q.astype(np.int16), n_sat
        xb = np.ascontiguousarray(xb)
        x_q = np.empty(xb.shape, dtype)
        return x_q, int(quantize_input(xb, mul, div, zp, lo, hi, x_q))

    def output_lsb(self, mode: str | Mode) -> float | None:
        """One output LSB of `mode` in network units (None for float modes without formats)."""
        mode = get_mode(mode)
        if mode.precision == "int16":
            return lsb(self.program.output_frac)
        if mode.precision == "int8":
            return float(self.program8.output_qp.scale)
        return None

    def program_of(self, mode: str | Mode) -> Int16Program | Int8Program | None:
        """The lowered program a mode runs (Int16Program, Int8Program) or None (fp32)."""
        mode = get_mode(mode)
        if mode.precision == "int16":
            return self.program
        if mode.precision == "int8":
            return self.program8
        return None

    def predict(self, x_raw: ArrayLike, mode: str = "fp32") -> np.ndarray:
        """Original units in and out: normalise, run, de-normalise."""
        return self.denormalize_output(self.run(self.normalize_input(x_raw), mode).output)

    def run_int16(self, x_q: np.ndarray, capture: bool | Iterable[str] | None = None) -> RunResult:
        """Bittrue from an integer input: x_q int16 [B, C_in, L] at the input format.
        The whole program runs in one jitted call (kernels_int16.run_program_int16)."""
        return self._run_packed16(self._int_batch(x_q, np.int16), 0, capture)

    def _run_packed16(self, xb: np.ndarray, n_sat_in: int, capture) -> RunResult:
        """run_int16 on a checked, contiguous int16 [B, C_in, L] batch (channel-independent: run as
        the [B*C_in, 1, L] batch of its series, graph.fold); n_sat_in: the input's saturations."""
        xb = self.graph.fold(xb)
        if self._packed is None:
            prog = self.program
            self._packed = pack_program(prog, self.graph.body_input_shape)
            self._k_out = self._packed.names.index(prog.output_tensor)
        pk = self._packed
        buf, offsets, n_sat, lo, hi = run_program_int16(xb, pk.steps, pk.weights, pk.biases, pk.channels, pk.lengths)
        n_b = xb.shape[0]
        n_sat[0] = n_sat_in

        def tensor(k):
            return buf[offsets[k] : offsets[k + 1]].reshape(n_b, pk.channels[k], pk.lengths[k])

        def stats():  # value = integer * 2**-frac, every tensor
            return _program_stats(pk.names, n_sat, np.ldexp(lo, -pk.fracs), np.ldexp(hi, -pk.fracs), offsets)

        tensors = {name: tensor(k) for k, name in enumerate(pk.names) if _wants(capture, name)} if capture else {}
        out_q, out_frac = self._shape_output(tensor(self._k_out)), int(pk.fracs[self._k_out])
        return RunResult(BITTRUE.name, dequantize(out_q, out_frac), out_q, stats, tensors, out_frac, lsb(out_frac))

    def run_int8(self, x_q: np.ndarray, capture: bool | Iterable[str] | None = None) -> RunResult:
        """quant8 from an integer input: x_q int8 [B, C_in, L] at the input's (scale, zp).
        The whole program runs in one jitted call (kernels_int8.run_program_int8) unless a step
        has no packed kernel (RMSNorm V1, float inside): then layer by layer."""
        return self._run_packed8(self._int_batch(x_q, np.int8), 0, capture)

    def _run_packed8(self, xb: np.ndarray, n_sat_in: int, capture) -> RunResult:
        """run_int8 on a checked, contiguous int8 [B, C_in, L] batch (channel-independent: as the
        [B*C_in, 1, L] batch of its series, graph.fold); n_sat_in: the input's saturations."""
        prog = self.program8
        xb = self.graph.fold(xb)
        if not self._packed8:
            pk = pack_program8(prog, self.graph.body_input_shape)
            qps = [prog.input_qp] + [st.out_qp for st in prog.steps]
            # packed program, every tensor's (scale, zero point), the output's index and (scale, zero
            # point), once per model
            self._packed8 = [
                pk,
                np.array([qp.scale for qp in qps], np.float64),
                np.array([qp.zero_point for qp in qps], np.float64),
                None if pk is None else pk.names.index(prog.output_tensor),
                prog.output_qp,
            ]
        pk, scale, zero, k_out, out_qp = self._packed8
        if pk is not None:
            buf, offsets, n_sat, lo, hi = run_program_int8(
                xb, pk.steps, pk.weights, pk.biases, pk.channels, pk.lengths, pk.quads, pk.quads_at
            )
            n_sat[0] = n_sat_in

            def tensor(k):
                return buf[offsets[k] : offsets[k + 1]].reshape(len(xb), pk.channels[k], pk.lengths[k])

            def stats():  # value = s * (q - z), as dequantize_act
                return _program_stats(pk.names, n_sat, scale * (lo - zero), scale * (hi - zero), offsets)

            out_q = self._shape_output(tensor(k_out))
            tensors = {name: tensor(k) for k, name in enumerate(pk.names) if _wants(capture, name)} if capture else {}
        else:
            env, stats = self._steps8(xb, prog)
            stats[INPUT_NAME]["saturations"] = n_sat_in
            out_q = self._shape_output(env[prog.output_tensor])
            tensors = {k: v for k, v in env.items() if _wants(capture, k)}
        return RunResult(QUANT8.name, dequantize_act(out_q, *out_qp), out_q, stats, tensors, output_lsb=out_qp.scale)

    def _steps8(self, x_q, prog: Int8Program):
        """The INT8 program one public kernel call per step -> (tensors by name, per-layer stats)."""
        return self._run_steps(
            x_q,
            np.int8,
            prog.steps,
            run_step8,
            lambda y, st: _int8_stats(y, st.out_qp),
            _int8_stats(np.asarray(x_q), prog.input_qp),
        )

    def _int_batch(self, x_q, dtype) -> np.ndarray:
        xb, _ = self._as_batch(x_q, "x_q")
        if xb.dtype != dtype:
            raise DataError(f"x_q: expected {np.dtype(dtype).name}, got {xb.dtype}")
        return np.ascontiguousarray(xb)

    def _run_steps(self, x_q, dtype, steps, run_fn, stats_fn, input_stats):
        """Run lowered integer steps in order; returns (tensors by name, per-layer stats)."""
        env = {INPUT_NAME: np.ascontiguousarray(x_q, dtype)}  # checked by the caller; folded
        stats = {INPUT_NAME: input_stats}
        for st in steps:
            y, n_sat = run_fn(st, [env[s] for s in st.inputs])
            env[st.name] = y
            stats[st.name] = stats_fn(y, st) | {"saturations": int(n_sat)}
        return env, stats

    def _run_float(self, xb, mode: Mode, capture) -> RunResult:
        snap = mode is QUANT16
        xb = self.graph.fold(xb)
        stats: dict = {}
        if snap:
            fmt = int16_formats(self.graph)
            xb, n_sat = _snap(xb, fmt.frac(INPUT_NAME), 16)
        else:
            n_sat = 0
        env = {INPUT_NAME: xb}
        stats[INPUT_NAME] = _float_stats(xb, n_sat)
        for layer in self.graph.layers:
            weights = layer.weights
            if snap:
                weights = self._snapped_weights(layer, fmt)
            try:  # an overflow anywhere inside a layer (even one a later step hides) is an error
                with np.errstate(over="raise", invalid="raise"):
                    y = float_ref.run_layer(layer, [env[s] for s in layer.inputs], weights)
            except FloatingPointError:
                raise DataError(
                    f"{mode.name}: layer '{layer.name}' overflows float64 (largest |input| "
                    f"{np.max(np.abs(xb)):.3g}): the input is beyond what the float model can "
                    f"compute"
                ) from None
            n_sat = 0
            if snap:
                y, n_sat = _snap(y, fmt.frac(layer.name), 16)
            env[layer.name] = y
            stats[layer.name] = _float_stats(y, n_sat)
        out = self._shape_output(env[self.graph.output_tensor])
        tensors = {k: v for k, v in env.items() if _wants(capture, k)}
        return RunResult(mode.name, out, None, stats, tensors)

    @staticmethod
    def _snapped_weights(layer, fmt):
        out = {}
        for key, w in layer.weights.items():
            if key == "bias":  # int32 at the accumulator format f_x + f_w (spec 2)
                out[key] = _snap(w, fmt.bias_frac(layer), 32)[0]
            else:
                out[key] = _snap(w, fmt.weight_frac(layer.name, key), 16)[0]
        return out


def _snap(x, frac_bits, bits):
    q, n_sat = quantize_q(x, frac_bits, bits)
    return dequantize(q, frac_bits), n_sat


def _program_stats(names: list[str], n_sat: np.ndarray, low: np.ndarray, high: np.ndarray, offsets: np.ndarray) -> dict:
    """Per-tensor stats of a packed program's run: {name: {saturations, min, max, size}} from its
    saturation counts, value ranges (network units) and buffer offsets (tensor k: offsets[k:k+2])."""
    return {
        name: {"saturations": n, "min": a, "max": b, "size": size}
        for name, n, a, b, size in zip(
            names, n_sat.tolist(), low.tolist(), high.tolist(), np.diff(offsets).tolist(), strict=True
        )
    }


def _int8_stats(y, qp, n_sat=0):
    lo, hi = dequantize_act(np.array([y.min(), y.max()]), *qp)
    return {"saturations": n_sat, "min": float(lo), "max": float(hi), "size": int(y.size)}


def _float_stats(y, n_sat):
    return {"saturations": n_sat, "min": float(y.min()), "max": float(y.max()), "size": int(y.size)}


def load_model(path: str | Path) -> Model:
    """Load and validate a model directory (docs/model-format.md)."""
    return Model(load_graph(path))
