"""Quantization-aware training whose forward is the integer arithmetic itself (docs/qat.md;
needs the 'train' extra).

`QATNetwork(model, precision)` holds a calibrated model's float weights and its learned
quantization parameters as torch Parameters. Every forward:

1. `snapshot()`: the graph with the current weights (INT8: clipped to the learned per-channel
   range, +-127 steps) and quantization parameters (INT8: learned per-tensor scale and zero
   point; INT16: the calibrated formats, fixed), exactly what `export` writes;
2. lowers it with the golden model's own lowering (`lower_int8` / `lower_int16`: int8/int16
   weight codes, int32 biases, multipliers + shifts, LUTs) and prepares it on the torch
   bit-true back end (`TorchProgram`);
3. runs the network op by op through `IntegerOp`, an autograd Function whose forward is that
   op's bit-true integer kernel (the torch back end's registry row) and whose backward is the
   straight-through estimator of model/qat_ops.py.

So training sees the hardware's exact numbers (LUTs, rounding, saturation included), and the
exported model directory reproduces the QAT forward bit for bit in `eval` (quant8 / bittrue),
the golden model and the generated C++.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.autograd.function import FunctionCtx

from intsim.errors import CmambaError, UnsupportedError
from intsim.executor import Model, RunResult
from intsim.fixedpoint import quantize_q
from intsim.graph import INPUT_NAME, Graph, Layer
from intsim.int8 import INT8, lower_int8, quantize_act
from intsim.int16 import lower_int16
from intsim.modes import BITTRUE, QUANT8
from intsim.ops import OPS
from model.qat_ops import SURROGATE, fixed_point_fake, lsq_fake
from model.torch_backend import TABLES, TorchProgram, TorchRunner

PRECISIONS = ("int8", "int16")
MODE_OF = {"int8": QUANT8, "int16": BITTRUE}
INT8_WEIGHT_MAX = 127  # symmetric int8 weight codes (spec 3.1)
MIN_LOG_SCALE = math.log(1e-8)


def _key(name: str) -> str:
    """A parameter name for a tensor or weight name (torch forbids '.' in parameter names)."""
    return name.replace(".", "/")


class IntegerOp(torch.autograd.Function):
    """One quantized op. forward: the op's bit-true integer kernel on the integer codes of its
    inputs (`node.integer_forward`), returning the dequantized output, i.e. exactly the
    hardware's value. backward: the gradient of `node.surrogate` (float op on fake-quantized
    weights, then the output's fake quantizer: model/qat_ops.py) at the same saved inputs."""

    @staticmethod
    def forward(ctx: FunctionCtx, node: _Node, *tensors: torch.Tensor) -> torch.Tensor:
        ctx.node = node
        ctx.save_for_backward(*tensors)
        return node.dequantize(node.integer_forward())

    @staticmethod
    def backward(ctx: FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        need = ctx.needs_input_grad[1:]
        with torch.enable_grad():
            leaves = [t.detach().requires_grad_(n) for t, n in zip(ctx.saved_tensors, need, strict=True)]
            out = ctx.node.surrogate(*leaves)
            wanted = [leaf for leaf, n in zip(leaves, need, strict=True) if n]
            grads = iter(torch.autograd.grad(out, wanted, grad, allow_unused=True) if wanted else ())
        return (None, *[next(grads) if n else None for n in need])


@dataclass(eq=False)
class _Node:
    """One tensor of the forward: how its integer codes are computed from its inputs' codes, how
    they read as floats, and the float surrogate its backward differentiates."""

    name: str
    inputs: tuple[str, ...]
    codes: Callable[[list[torch.Tensor]], tuple[torch.Tensor, torch.Tensor]]  # int inputs -> (int output, sats)
    dequantize: Callable[[torch.Tensor], torch.Tensor]
    surrogate: Callable[..., torch.Tensor]
    env: dict
    sats: dict

    def integer_forward(self) -> torch.Tensor:
        y, n = self.codes([self.env[s] for s in self.inputs])
        self.env[self.name], self.sats[self.name] = y, n
        return y


class QATNetwork(nn.Module):
    """A calibrated model's weights and quantization parameters, trainable; the forward is the
    integer program of `precision` ("int8" or "int16"). Tensors are channels-last inside."""

    def __init__(self, model: Model, precision: str, device: str | torch.device = "cpu"):
        super().__init__()
        if precision not in PRECISIONS:
            raise CmambaError(f"unknown precision '{precision}' (known: {', '.join(PRECISIONS)})")
        self.graph = model.graph
        self.precision = precision
        self.mode = MODE_OF[precision]
        self.device = torch.device(device)
        self.source_quant = copy.deepcopy(model.graph.quant)
        formats = model.graph.formats
        self.int16 = formats.int16 if precision == "int16" else None  # QuantizationError if absent
        q8 = formats.int8 if precision == "int8" else None
        if q8 is not None and q8.rmsnorm != "v2":
            raise UnsupportedError(
                "INT8 RMSNorm V1 (float inside) is not integer: QAT trains the integer "
                "program, calibrate with --int8-rmsnorm v2"
            )
        model.program_of(self.mode)  # the calibrated parameters lower (clear errors before training)
        for layer in self.graph.layers:  # every op has a torch kernel and a surrogate (else: the layer named)
            TABLES[precision].row(layer.op, layer.name)
            SURROGATE.row(layer.op, layer.name)
        self.weights = nn.ParameterDict(
            {
                _key(f"{layer.name}.{k}"): nn.Parameter(torch.tensor(w, dtype=torch.float32))
                for layer in self.graph.layers
                for k, w in layer.weights.items()
            }
        )
        self.fixed: dict = {}
        if q8 is not None:
            self.fixed = {
                layer.name: INT8.row(layer.op, layer.name).fixed_output
                for layer in self.graph.layers
                if INT8.row(layer.op, layer.name).fixed_output is not None
            }
            learned = [n for n in self.graph.tensor_names if n not in self.fixed]
            self.log_scale = nn.ParameterDict(
                {_key(n): nn.Parameter(torch.tensor(math.log(q8.qp(n).scale))) for n in learned}
            )
            self.zero = nn.ParameterDict(
                {_key(n): nn.Parameter(torch.tensor(float(q8.qp(n).zero_point))) for n in learned}
            )
            # the calibrated int8 range [s (-128 - z), s (127 - z)] of every learned tensor: the floor of
            # its learned range (`constrain`), so QAT never clips what calibration covered
            self.calibrated_range = {n: q8.qp(n).range for n in learned}
            self.log_step = nn.ParameterDict(
                {
                    _key(layer.name): nn.Parameter(
                        torch.tensor(np.log(_initial_steps(layer.weights["weight"])), dtype=torch.float32)
                    )
                    for layer in self.graph.layers
                    if OPS[layer.op].accumulates
                }
            )
        self.to(self.device)

    # ---------------------------------------------------------------- parameters as the integer path sees them
    def _weight(self, layer, key: str) -> torch.Tensor:
        return self.weights[_key(f"{layer.name}.{key}")]

    def clip_range(self, layer: Layer) -> torch.Tensor:
        """INT8 per-output-channel clip of a weight: +-127 learned steps (float32)."""
        return INT8_WEIGHT_MAX * torch.exp(self.log_step[_key(layer.name)])

    def export_weights(self) -> dict[str, dict[str, np.ndarray]]:
        """Layer -> {key: float32 array}: what the model directory holds. INT8 weights of a
        multiply-accumulate layer are clipped to their learned range, so the lowering's per-channel
        step max|w| / 127 is the learned one wherever the clip binds."""
        out = {}
        with torch.no_grad():
            for layer in self.graph.layers:
                out[layer.name] = {}
                for key in layer.weights:
                    w = self._weight(layer, key).detach()
                    if self.precision == "int8" and OPS[layer.op].accumulates and key == "weight":
                        a = self.clip_range(layer).reshape((-1,) + (1,) * (w.ndim - 1))
                        w = torch.maximum(torch.minimum(w, a), -a)
                    out[layer.name][key] = w.cpu().numpy().astype(np.float32)
        return out

    def _qparams(self, name: str) -> tuple[float, int]:
        if name in self.fixed:
            return tuple(self.fixed[name])
        z = int(np.clip(np.rint(float(self.zero[_key(name)].detach())), -128, 127))
        return math.exp(float(self.log_scale[_key(name)].detach())), z

    def quant_block(self) -> dict:
        """model.json quant.<precision> for the current parameters (INT16: the calibrated formats)."""
        if self.precision == "int16":
            return copy.deepcopy(self.source_quant["int16"])
        tensors = {}
        for name in self.graph.tensor_names:
            scale, zp = self._qparams(name)
            tensors[name] = {"scale": scale, "zero_point": zp}
        return {"method": "qat", "rmsnorm": "v2", "tensors": tensors}

    def snapshot(self) -> Graph:
        """The graph as the integer path sees it now (weights as exported, float64 like a loaded model)."""
        weights = self.export_weights()
        g = copy.copy(self.graph)
        g.layers = [
            dataclasses.replace(layer, weights={k: w.astype(np.float64) for k, w in weights[layer.name].items()})
            for layer in self.graph.layers
        ]
        quant = copy.deepcopy(self.source_quant)
        quant[self.precision] = self.quant_block()
        g.quant = quant
        return g

    def runner(self) -> TorchRunner:
        """The torch bit-true back end on the current snapshot (`run(x, mode)` -> RunResult)."""
        return TorchRunner(Model(self.snapshot()), self.device)

    def constrain(self) -> None:
        """After each step: keep every learned activation range [s (-128 - z), s (127 - z)] around its
        calibrated range (it may widen where clipping costs, never shrink below what calibration
        covered: s >= s_cal, then z inside [127 - hi/s, -128 - lo/s]) and zero points in [-128, 127]."""
        if self.precision != "int8":
            return
        with torch.no_grad():
            for name, (lo, hi) in self.calibrated_range.items():
                log_s, z = self.log_scale[_key(name)], self.zero[_key(name)]
                log_s.clamp_(min=max(math.log((hi - lo) / 255.0), MIN_LOG_SCALE))
                s = math.exp(float(log_s))
                z.clamp_(min(127.0 - hi / s, 127.0), max(-128.0 - lo / s, -128.0))

    # ---------------------------------------------------------------- forward
    def _fake_act(self, name: str, v: torch.Tensor, params) -> torch.Tensor:
        if self.precision == "int16":
            return fixed_point_fake(v, self.int16.frac(name))
        if name in self.fixed:
            scale, zp = self.fixed[name]
            return lsq_fake(v, scale, zp, -128, 127)
        log_s, z = params
        return lsq_fake(v, torch.exp(log_s), z, -128, 127)

    def _act_params(self, name: str) -> list:
        if self.precision == "int8" and name not in self.fixed:
            return [self.log_scale[_key(name)], self.zero[_key(name)]]
        return []

    def _fake_weights(self, layer, w: dict, step) -> dict:
        if self.precision == "int16":
            fmt = self.int16
            return {
                k: fixed_point_fake(v, fmt.bias_frac(layer), 32)
                if k == "bias"
                else fixed_point_fake(v, fmt.weight_frac(layer.name, k))
                for k, v in w.items()
            }
        if step is None:  # RMSNorm gain: per-tensor symmetric from its max (spec 3.9), straight through
            return w
        s = torch.exp(step).reshape((-1,) + (1,) * (w["weight"].ndim - 1))
        return dict(w, weight=lsq_fake(w["weight"], s, 0.0, -INT8_WEIGHT_MAX, INT8_WEIGHT_MAX))

    def _layer_node(self, layer, run, prepared, env, sats, dequantize) -> tuple[_Node, list]:
        keys = list(OPS[layer.op].weights)
        step = [self.log_step[_key(layer.name)]] if self.precision == "int8" and OPS[layer.op].accumulates else []
        params = [self._weight(layer, k) for k in keys] + step + self._act_params(layer.name)
        n_in, n_w, n_s = len(layer.inputs), len(keys), len(step)
        surrogate_op = SURROGATE.row(layer.op, layer.name)

        def surrogate(*t):
            w = self._fake_weights(
                layer, dict(zip(keys, t[n_in : n_in + n_w], strict=True)), t[n_in + n_w] if n_s else None
            )
            v = surrogate_op(list(t[:n_in]), w, layer.attrs)
            return self._fake_act(layer.name, v, t[n_in + n_w + n_s :])

        node = _Node(layer.name, layer.inputs, lambda xs: run(prepared, xs), dequantize, surrogate, env, sats)
        return node, params

    def _dequantizer(self, name: str) -> Callable[[torch.Tensor], torch.Tensor]:
        if self.precision == "int16":
            lsb = 2.0 ** -self.int16.frac(name)
            return lambda q: q.to(torch.float32) * lsb
        scale, zp = self._qparams(name)  # s (q - z) in float64 as the golden model, then float32
        return lambda q: ((q.to(torch.float64) - zp) * scale).to(torch.float32)

    def forward(self, x: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """x: float64 numpy [B, C_in, L] (normalised windows) -> (the integer program's output,
        dequantized, float32 [B, C_out, H], differentiable; its integer codes, int32 [B, C_out, H]).
        The input is quantized on the host exactly as `Model.run` does; a channel-independent graph
        runs on the [B*C_in, 1, L] batch of its series (`Graph.fold`), as the golden model does."""
        n_windows = len(x)
        x = self.graph.fold(np.asarray(x, dtype=np.float64))
        program = TorchProgram(self._lower(), self.precision, self.device)
        lowered = program.program
        if self.precision == "int16":
            x_q, _ = quantize_q(x, lowered.input_frac, 16, "input")
        else:
            x_q, _ = quantize_act(x, *lowered.input_qp, "input")
        env: dict = {}
        sats: dict = {}
        codes_in = torch.as_tensor(x_q, device=self.device).to(torch.int32).transpose(1, 2)
        x_float = torch.as_tensor(x, device=self.device).to(torch.float32).transpose(1, 2)
        node = _Node(
            INPUT_NAME,
            (),
            lambda xs: (codes_in, torch.zeros((), dtype=torch.int64)),
            self._dequantizer(INPUT_NAME),
            lambda *t: self._fake_act(INPUT_NAME, t[0], t[1:]),
            env,
            sats,
        )
        values = {INPUT_NAME: IntegerOp.apply(node, x_float, *self._act_params(INPUT_NAME))}
        for (_st, run, prepared), layer in zip(program.steps, self.graph.layers, strict=True):
            node, params = self._layer_node(layer, run, prepared, env, sats, self._dequantizer(layer.name))
            values[layer.name] = IntegerOp.apply(node, *[values[s] for s in layer.inputs], *params)
        shape = (n_windows, self.graph.output_channels, self.graph.horizon)
        out = self.graph.output_tensor
        return values[out].transpose(1, 2).reshape(shape), env[out].transpose(1, 2).reshape(shape)

    def _lower(self):
        g = self.snapshot()
        return lower_int8(g) if self.precision == "int8" else lower_int16(g)

    @torch.no_grad()
    def run(self, x: np.ndarray, capture: bool | Iterable[str] | None = None) -> RunResult:
        """The integer program of the current parameters on normalised windows (any count):
        `Model.run(x, mode)` of the exported model, byte for byte."""
        return self.runner().run(x, self.mode, capture)


def _initial_steps(weight: np.ndarray) -> np.ndarray:
    """Per-output-channel step max|w[c]| / 127 (1 for an all-zero channel): the calibrated start."""
    maxabs = np.max(np.abs(weight.reshape(weight.shape[0], -1)), axis=1)
    return np.where(maxabs > 0, maxabs / INT8_WEIGHT_MAX, 1.0)
