"""PyTorch front end (needs the 'train' extra): trace a user's `nn.Module` with torch.fx and
write it as a model directory (docs/model-format.md, docs/import.md).

`from_module(module, example_input, out_dir)` traces `module.eval()`, propagates the example
input's shapes through every node, and maps each node onto one op of the registry
(`intsim.ops.OPS`), or folds it into one exactly:

| PyTorch                                              | registry op / treatment            |
|------------------------------------------------------|------------------------------------|
| `nn.Conv1d`, groups 1, no padding: kernel 1 stride 1  | `conv1x1`                          |
| `nn.Conv1d`, groups 1, no padding: kernel K, stride S | `conv_kx1`                         |
| `nn.Conv1d` depthwise (groups = C_in = C_out), causal: `F.pad(x, (K-1, 0))` before it, or `padding=K-1` and only its first L outputs kept (`[..., :L]`) | `dwconv` |
| `nn.Linear` on `[B, L, C]` (channels last)            | `conv1x1`                          |
| `nn.Linear` on a flattened `[B, C*L]` / `[B, L*C]`    | `conv_kx1`, kernel L (a head)      |
| `model.cmamba.RMSNorm` on `[B, C, L]`; `nn.RMSNorm((C,))` on `[B, L, C]` | `rmsnorm`   |
| `F.silu`, `nn.SiLU`; `torch.sigmoid`, `nn.Sigmoid`    | `silu`; `sigmoid`                  |
| `model.cmamba.scan(lam, u)`                          | `scan`                             |
| `model.cmamba.RevIN` without affine: `revin_norm(x, eps)` | `revin_norm`                       |
| `revin_denorm(y, x, eps)`, `y` the `[B, C, H]` output  | `revin_denorm` (inputs head, x)    |
| tensor `*` / `+` (torch.mul / torch.add, same shape)  | `mul` / `add`                      |
| channel slice / `chunk` / `split` of a conv's output  | the conv split into one conv per part (weights sliced) |
| `transpose(1, 2)` / `permute(0, 2, 1)`, `contiguous`  | layout bookkeeping, no layer       |
| `flatten` / `reshape` / `view` before a Linear head, reshape of the `[B, C*H, 1]` output to `[B, C, H]` | no layer |
| `nn.Dropout` / `F.dropout` (eval), `nn.Identity`      | identity, no layer                 |

Anything else (LayerNorm, GELU, a constant factor, broadcasting, a non-causal pad, a parameter
used directly in forward, ...) is a `FrontendError` naming the node, its source line and the
op; nothing is approximated. Before the directory is moved into place, the numpy fp32
reference of the written graph is run on the example input and compared with the module's own
output.

Layer names: a module traced to exactly the CMamba-slim layer list (`intsim.synth.cmamba_layers`)
gets its canonical names and `hyper` (so `model.load.load_torch_model` reads it back);
any other graph is named after module paths (`blocks.0.in_proj`, `blocks.0.silu_1`, ...).
"""  # noqa: E501  (the markdown table rows of this docstring)

from __future__ import annotations

import hashlib
import json
import math
import operator
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from intsim.errors import CmambaError
from intsim.graph import INPUT_NAME, NAME_RE, graph_from_dict
from intsim.ops import OPS
from intsim.synth import cmamba_layers
from model.cmamba import RMSNorm, revin_denorm, revin_norm, scan
from model.export import check_output_dir, model_header, write_model_dir

REGISTRY = ", ".join(OPS)
# |fp32 reference - module| allowed on the example input, relative to max(1, max |module output|).
CHECK_TOL = 1e-4
_TORCH_DIR = os.path.dirname(torch.__file__)


class FrontendError(CmambaError):
    """A module (or one node of it) the front end cannot map exactly onto the op registry."""


class _Unmappable(Exception):
    """Raised inside the node handlers; turned into a FrontendError naming the node."""


# ----------------------------------------------------------------------------- values
@dataclass(frozen=True)
class _T:
    """A tensor of the exported graph, as the module holds it.

    layout 'CL': torch [B, C, L] (channel-major, the graph's own layout); 'LC': [B, L, C].
    flat: torch [B, C*L] (from 'CL') or [B, L*C] (from 'LC')."""

    name: str
    layout: str = "CL"
    flat: bool = False


@dataclass
class _Conv:
    """A convolution not emitted yet: its output is used only through channel selections
    (each becomes its own conv with the selected rows) or, for a symmetric-padded depthwise
    conv, through the slice that keeps its first `trim` steps (causal)."""

    node: torch.fx.Node
    name: str
    op: str
    src: _T
    weight: np.ndarray
    bias: np.ndarray
    attrs: dict
    out: _T  # layout/flat of its output (name filled when emitted)
    trim: int | None = None
    emitted: _T | None = None


@dataclass(frozen=True)
class _Parts:
    """chunk / split of a pending conv: the channel ranges of its parts."""

    conv: _Conv
    ranges: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class _Padded:
    """`src` with `left` zeros in front of the time axis (the causal padding of a dwconv)."""

    src: _T
    left: int


@dataclass(frozen=True)
class _View:
    """A length-1 tensor reshaped to [B, a, b] (the forecast [B, C_out, H]): only the output."""

    src: _T
    shape: tuple[int, int]


@dataclass(frozen=True)
class _Other:
    """Not a tensor (a shape, a number, a parameter, an unused default argument); `value`: the
    concrete shape or size where it is one (so `x[..., :x.shape[1]]` resolves)."""

    what: str
    value: object = None


@dataclass
class TracedGraph:
    """The mapped graph, before it is written: layers [(entry, {key: float64 array})]."""

    layers: list[tuple[dict, dict]]
    input_shape: tuple[int, int]
    output_tensor: str
    output_channels: int
    horizon: int
    hyper: dict | None = None  # set when the graph is canonical CMamba-slim
    n_nodes: int = 0
    shapes: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- tracing
class _Tracer(torch.fx.Tracer):
    """Keeps the project's RMSNorm (and every torch.nn module) as one node; `scan`, `revin_norm`
    and `revin_denorm` as one call each."""

    def __init__(self):
        super().__init__(autowrap_functions=(scan, revin_norm, revin_denorm))
        self.record_stack_traces = True

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return type(m) is RMSNorm or super().is_leaf_module(m, qualname)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _source(node: torch.fx.Node) -> str:
    """'file.py:LINE `code`' of the innermost user frame that created the node."""
    frames = re.findall(r'File "([^"]+)", line (\d+), in [^\n]*\n\s*([^\n]*)', node.stack_trace or "")
    here = os.path.abspath(__file__)
    for path, line, code in reversed(frames):
        full = os.path.abspath(path)
        if full.startswith(_TORCH_DIR) or full == here:
            continue
        try:
            shown = os.path.relpath(full)
        except ValueError:
            shown = full
        if shown.startswith(".."):
            shown = full
        return f"{shown}:{line} `{code.strip()}`"
    return "source line unknown"


def _qualname(fn) -> str:
    mod = getattr(fn, "__module__", None) or ""
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    if mod in ("_operator", "operator"):
        mod = "operator"
    return f"{mod}.{name}" if mod else name


def _what(node: torch.fx.Node, modules: dict) -> str:
    if node.op == "call_module":
        m = modules[node.target]
        return f"{type(m).__name__} module '{node.target}'"
    if node.op == "call_function":
        return f"function {_qualname(node.target)}"
    if node.op == "call_method":
        return f"method Tensor.{node.target}"
    return f"{node.op} '{node.target}'"


def _meta_shape(node) -> tuple[int, ...] | None:
    tm = node.meta.get("tensor_meta") if isinstance(node, torch.fx.Node) else None
    shape = getattr(tm, "shape", None)
    return tuple(int(s) for s in shape) if shape is not None else None


def _arr(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def _positive_ints(seq) -> tuple[int, ...]:
    return tuple(int(v) for v in (seq if isinstance(seq, (tuple, list)) else (seq,)))


# ----------------------------------------------------------------------------- mapper
class _Mapper:
    def __init__(self, gm: torch.fx.GraphModule):
        self.gm = gm
        self.modules = dict(gm.named_modules())
        self.layers: list[tuple[dict, dict]] = []
        self.shapes: dict[str, tuple[int, int]] = {}
        self.env: dict[torch.fx.Node, object] = {}
        self.node: torch.fx.Node | None = None
        self.output: tuple[str, int, int] | None = None
        self.seen_input = False

    # ------------------------------------------------------------ helpers
    def fail(self, msg: str):
        raise _Unmappable(msg)

    def val(self, arg):
        if isinstance(arg, torch.fx.Node):
            return self.env[arg]
        if isinstance(arg, (tuple, list)):
            return _Other("a tuple")
        return _Other(f"the constant {arg!r}")

    def tensor(self, arg, role: str = "input") -> _T:
        """The operand as an emitted graph tensor (a pending conv is emitted now)."""
        v = self.val(arg)
        if isinstance(v, _T):
            return v
        if isinstance(v, _Conv):
            if v.trim is not None:
                self.fail(
                    f"uses the output of the padded depthwise Conv1d '{v.name}' before its first "
                    f"{v.trim} steps are kept (causal convolution: slice [..., :{v.trim}] right after it)"
                )
            return self.emit_conv(v)
        if isinstance(v, _Padded):
            self.fail(
                "zero padding is supported only as the causal padding of a depthwise Conv1d "
                "(F.pad(x, (K-1, 0)) right before it)"
            )
        if isinstance(v, _View):
            self.fail(
                f"uses the reshaped output tensor '{v.src.name}' (a reshape to [B, C_out, H] must be "
                f"the module's output)"
            )
        if isinstance(v, _Parts):
            self.fail("uses the tuple of a chunk/split as a tensor")
        self.fail(f"its {role} is {v.what}, not a tensor (registry ops take tensors only)")

    def layer_name(self, base: str) -> str:
        name = re.sub(r"[^A-Za-z0-9_.]", "_", base).strip(".") or "layer"
        name = re.sub(r"\.{2,}", ".", name)
        if not re.match(r"[A-Za-z_]", name):
            name = "l_" + name
        if name == INPUT_NAME:
            name = "input_"
        if len(name) > 64:
            name = name[:55] + "_" + hashlib.sha1(name.encode()).hexdigest()[:8]
        stem, k = name, 2
        while name in self.shapes:
            suffix = f"_{k}"
            name = stem[: 64 - len(suffix)] + suffix
            k += 1
        assert NAME_RE.match(name), name
        return name

    def scoped_name(self) -> str:
        node = self.node
        if node.op == "call_module":
            return str(node.target)
        stack = node.meta.get("nn_module_stack") or {}
        scope = next(reversed(stack.values()))[0] if stack else ""
        base = re.sub(r"_\d+$", "", node.name)  # fx numbers nodes globally; layer_name per scope
        return f"{scope}.{base}" if scope else base

    def emit(
        self,
        name: str,
        op: str,
        inputs: list[_T],
        weights: dict,
        attrs: dict | None,
        out: _T,
        at: torch.fx.Node | None = None,
    ) -> _T:
        """Append a layer; returns its output tensor `out` (renamed to `name`). `at`: the node whose
        torch shape the output has (default: the node being mapped)."""
        spec = OPS[op]
        if name in self.shapes:  # a pending conv's name taken meanwhile
            name = self.layer_name(name)
        entry = {"name": name, "op": op, "inputs": [t.name for t in inputs]}
        if attrs:
            entry["attrs"] = dict(attrs)
        try:
            shape = spec.shape_rule(name, [self.shapes[t.name] for t in inputs], weights, attrs or {})
        except CmambaError as exc:  # a front-end bug, not a user error: say so
            raise FrontendError(f"internal error mapping node '{self.node.name}': {exc}") from exc
        self.shapes[name] = shape
        self.layers.append((entry, weights))
        t = _T(name, out.layout, out.flat)
        self.check_shape(t, at or self.node)
        return t

    def torch_shape(self, t: _T, batch: int) -> tuple[int, ...]:
        c, length = self.shapes[t.name]
        if t.flat:
            return batch, c * length
        return (batch, c, length) if t.layout == "CL" else (batch, length, c)

    def check_shape(self, t: _T, node: torch.fx.Node) -> None:
        have = _meta_shape(node)
        if have is not None and have != self.torch_shape(t, have[0]):
            raise FrontendError(
                f"internal error mapping node '{node.name}': torch shape {list(have)} "
                f"but the graph tensor '{t.name}' is {list(self.shapes[t.name])} ({t.layout})"
            )

    def emit_conv(self, conv: _Conv, rows: range | None = None) -> _T:
        """Emit `conv` whole (once) or the output channels `rows` of it (a new conv layer)."""
        if rows is None:
            if conv.emitted is None:
                conv.emitted = self.emit(
                    conv.name,
                    conv.op,
                    [conv.src],
                    {"weight": conv.weight, "bias": conv.bias},
                    conv.attrs,
                    conv.out,
                    conv.node,
                )
            return conv.emitted
        if conv.op == "dwconv":
            self.fail(
                f"selects channels of the depthwise conv '{conv.name}' (each channel of a depthwise "
                f"conv reads its own input channel; select before it instead)"
            )
        if len(rows) == 0:
            self.fail(f"selects no channel of '{conv.name}'")
        idx = np.asarray(rows)
        step = f"_{rows.step}" if rows.step != 1 else ""
        name = self.layer_name(f"{conv.name}.ch{rows.start}_{rows.stop}{step}")
        return self.emit(
            name, conv.op, [conv.src], {"weight": conv.weight[idx], "bias": conv.bias[idx]}, conv.attrs, conv.out
        )

    @staticmethod
    def conv_channel_dim(conv: _Conv) -> int:
        """The channel axis of a pending conv's output (a flat one is a Linear's [B, out])."""
        return 1 if conv.out.flat or conv.out.layout == "CL" else 2

    def channel_dim(self, t: _T) -> int | None:
        if t.flat:
            return 1 if self.shapes[t.name][1] == 1 else None
        return 1 if t.layout == "CL" else 2

    def time_dim(self, t: _T) -> int | None:
        return None if t.flat else (2 if t.layout == "CL" else 1)

    # ------------------------------------------------------------ dispatch
    def run(self) -> None:
        for node in self.gm.graph.nodes:
            self.node = node
            try:
                self.env[node] = self.visit(node)
            except _Unmappable as exc:
                raise FrontendError(
                    f"cannot map node '{node.name}' ({_what(node, self.modules)}) at {_source(node)}: {exc}"
                ) from None

    def visit(self, node: torch.fx.Node):
        if node.op == "placeholder":
            if not self.seen_input:
                self.seen_input = True
                shape = _meta_shape(node)
                if shape is None or len(shape) != 3:
                    self.fail(f"the example input must be one float tensor [B, C_in, L], got {shape}")
                self.shapes[INPUT_NAME] = (shape[1], shape[2])
                return _T(INPUT_NAME)
            if node.args:
                return _Other(f"the default value {node.args[0]!r} of argument '{node.target}'")
            self.fail("forward() takes a second tensor argument; the front end maps one input [B, C_in, L]")
        if node.op == "get_attr":
            return _Other(f"the parameter or buffer '{node.target}' used directly in forward()")
        if node.op == "output":
            return self.visit_output(node)
        if node.op == "call_module":
            m = self.modules[node.target]
            handler = _MODULES.get(type(m))
            if handler is None:
                self.fail(f"{type(m).__name__} has no op in the registry ({REGISTRY})")
            return handler(self, node, m)
        if node.op == "call_function":
            handler = _FUNCTIONS.get(node.target)
            if handler is None:
                self.fail(f"{_qualname(node.target)} has no op in the registry ({REGISTRY})")
            return handler(self, node)
        if node.op == "call_method":
            handler = _METHODS.get(node.target)
            if handler is None:
                self.fail(f"Tensor.{node.target} has no op in the registry ({REGISTRY})")
            return handler(self, node)
        self.fail(f"unknown node kind {node.op}")

    def visit_output(self, node):
        (res,) = node.args
        if isinstance(res, (tuple, list)):
            self.fail(f"forward() returns {len(res)} values; the front end maps one output tensor")
        v = self.val(res)
        if isinstance(v, _View):
            t, (c_out, horizon) = v.src, v.shape
        else:
            t = self.tensor(res, "output")
            shape = _meta_shape(res)
            if len(shape) == 3:
                c_out, horizon = shape[1], shape[2]
            else:
                c_out, horizon = shape[1], 1
        if t.name == INPUT_NAME:
            self.fail("the module returns its input unchanged")
        c, length = self.shapes[t.name]
        if length != 1 or c != c_out * horizon:
            self.fail(
                f"the output tensor '{t.name}' is [{c}, {length}] per sample; the model format's output "
                f"is one [C_out*H, 1] tensor read as [C_out, H] (a head whose kernel spans every token)"
            )
        self.output = (t.name, c_out, horizon)
        return v

    # ------------------------------------------------------------ ops
    def unary(self, node, op: str, x=None):
        t = self.tensor(node.args[0] if x is None else x)
        return self.emit(self.layer_name(self.scoped_name()), op, [t], {}, None, t)

    def binary(self, node, op: str):
        a, b = node.args[:2]
        if node.kwargs.get("alpha", 1) != 1:
            self.fail(f"torch.add with alpha={node.kwargs['alpha']} has no op in the registry")
        for arg in (a, b):
            if not isinstance(arg, torch.fx.Node):
                self.fail(
                    f"{op} with the constant {arg!r}: the registry's '{op}' combines two tensors of "
                    f"the same shape (a constant factor or offset has no op)"
                )
        ta, tb = self.tensor(a, "first operand"), self.tensor(b, "second operand")
        if (self.shapes[ta.name], ta.layout, ta.flat) != (self.shapes[tb.name], tb.layout, tb.flat) or _meta_shape(
            a
        ) != _meta_shape(b):
            self.fail(
                f"{op} of tensors shaped {list(_meta_shape(a))} and {list(_meta_shape(b))} "
                f"(broadcasting or mixed layouts have no op in the registry)"
            )
        return self.emit(self.layer_name(self.scoped_name()), op, [ta, tb], {}, None, ta)

    def require_cl(self, t: _T, what: str) -> None:
        if t.flat or t.layout != "CL":
            self.fail(
                f"{what} needs a channel-major [B, C, L] input; this one is {'flattened' if t.flat else '[B, L, C]'}"
            )

    def conv1d(self, node, m: nn.Conv1d):
        (k,), (s,), (d,) = m.kernel_size, m.stride, m.dilation
        pad = m.padding
        if isinstance(pad, str):
            pad = 0 if pad == "valid" or k == 1 else None
            if pad is None:
                self.fail(f"Conv1d padding='{m.padding}' is not causal; dwconv pads K-1 zeros on the left only")
        (pad,) = _positive_ints(pad)
        if d != 1:
            self.fail(f"Conv1d dilation={d} has no op in the registry")
        if pad and m.padding_mode != "zeros":
            self.fail(f"Conv1d padding_mode='{m.padding_mode}' has no op in the registry")
        x = self.val(node.args[0])
        bias = _arr(m.bias) if m.bias is not None else np.zeros(m.out_channels)
        w = _arr(m.weight)
        name = self.layer_name(self.scoped_name())
        depthwise = m.groups == m.in_channels == m.out_channels and m.groups > 1
        if not depthwise and m.groups != 1:
            self.fail(
                f"grouped Conv1d (groups={m.groups}, {m.in_channels} -> {m.out_channels}) has no op in the "
                f"registry (dense: groups=1; depthwise: groups = in = out channels)"
            )
        if depthwise or (m.groups == 1 and m.in_channels == m.out_channels == 1 and isinstance(x, _Padded)):
            if s != 1:
                self.fail(f"depthwise Conv1d with stride {s} has no op in the registry")
            trim = None
            if isinstance(x, _Padded):
                if pad != 0 or x.left != k - 1:
                    self.fail(
                        f"depthwise Conv1d (kernel {k}) after F.pad of {x.left} zeros on the left"
                        f"{f' and padding={pad}' if pad else ''}: dwconv is causal, exactly K-1 = {k - 1} "
                        f"zeros on the left"
                    )
                src = x.src
            else:
                src = self.tensor(node.args[0])
                if pad == k - 1 and k > 1:
                    trim = self.shapes[src.name][1]
                elif pad != 0 or k != 1:
                    self.fail(
                        f"depthwise Conv1d (kernel {k}) with padding={pad} is not causal: dwconv pads "
                        f"K-1 zeros on the left only (F.pad(x, ({k - 1}, 0)) before it, or padding={k - 1} "
                        f"and keep the first L outputs)"
                    )
            self.require_cl(src, "a depthwise Conv1d")
            conv = _Conv(node, name, "dwconv", src, w[:, 0, :], bias, {"kernel": k}, _T("", "CL"), trim)
            return conv if trim is not None else self.pending_or_emit(node, conv)
        if isinstance(x, _Padded):
            self.fail("a dense Conv1d after F.pad: the registry's dense convs take no padding")
        if pad != 0:
            self.fail(f"Conv1d with padding={pad}: the registry's dense convs (conv1x1, conv_kx1) take no padding")
        src = self.tensor(node.args[0])
        self.require_cl(src, "Conv1d")
        if k == 1 and s == 1:
            conv = _Conv(node, name, "conv1x1", src, w[:, :, 0], bias, {}, _T("", "CL"))
        else:
            conv = _Conv(node, name, "conv_kx1", src, w, bias, {"kernel": k, "stride": s}, _T("", "CL"))
        return self.pending_or_emit(node, conv)

    def linear(self, node, m: nn.Linear):
        src = self.tensor(node.args[0])
        w = _arr(m.weight)
        bias = _arr(m.bias) if m.bias is not None else np.zeros(m.out_features)
        c, length = self.shapes[src.name]
        name = self.layer_name(self.scoped_name())
        if not src.flat:
            if src.layout != "LC":
                self.fail(
                    "Linear acts on the last axis, which is time in a channel-major [B, C, L] tensor "
                    "(no registry op mixes time steps that way); transpose to [B, L, C] first"
                )
            conv = _Conv(node, name, "conv1x1", src, w, bias, {}, _T("", "LC"))
        elif length == 1:
            conv = _Conv(node, name, "conv1x1", src, w, bias, {}, _T("", "CL", flat=True))
        else:
            if src.layout == "CL":
                wk = w.reshape(m.out_features, c, length)
            else:
                wk = w.reshape(m.out_features, length, c).transpose(0, 2, 1)
            conv = _Conv(
                node,
                name,
                "conv_kx1",
                src,
                np.ascontiguousarray(wk),
                bias,
                {"kernel": length, "stride": 1},
                _T("", "CL", flat=True),
            )
        return self.pending_or_emit(node, conv)

    def pending_or_emit(self, node, conv: _Conv):
        """Keep a conv pending when every use selects channels of it; else emit it now."""
        if node.users and all(_is_selection(u) for u in node.users):
            return conv
        return self.emit_conv(conv)

    def rmsnorm(self, node, m: RMSNorm):
        t = self.tensor(node.args[0])
        self.require_cl(t, "the project's RMSNorm (over dim 1)")
        return self.emit(
            self.layer_name(self.scoped_name()), "rmsnorm", [t], {"weight": _arr(m.weight)}, {"eps": float(m.eps)}, t
        )

    def torch_rmsnorm(self, node, m: nn.RMSNorm):
        t = self.tensor(node.args[0])
        c, length = self.shapes[t.name]
        over_channels = (not t.flat and t.layout == "LC") or (t.flat and length == 1)
        if tuple(m.normalized_shape) != (c,) or not over_channels:
            self.fail(
                f"nn.RMSNorm{tuple(m.normalized_shape)} on a tensor of shape {list(_meta_shape(node.args[0]))}: "
                f"rmsnorm normalises over the channels only ([B, L, C] with normalized_shape=({c},))"
            )
        eps = float(m.eps) if m.eps is not None else float(torch.finfo(torch.float32).eps)
        gain = _arr(m.weight) if m.weight is not None else np.ones(c)
        return self.emit(self.layer_name(self.scoped_name()), "rmsnorm", [t], {"weight": gain}, {"eps": eps}, t)

    def scan(self, node):
        if len(node.args) != 2 or node.kwargs:
            self.fail("scan takes exactly (lam, u)")
        lam, u = self.tensor(node.args[0], "lam"), self.tensor(node.args[1], "u")
        self.require_cl(lam, "scan")
        self.require_cl(u, "scan")
        if self.shapes[lam.name] != self.shapes[u.name]:
            self.fail(f"scan of lam {list(self.shapes[lam.name])} and u {list(self.shapes[u.name])}: shapes differ")
        return self.emit(self.layer_name(self.scoped_name()), "scan", [lam, u], {}, None, lam)

    def revin_eps(self, node: torch.fx.Node, index: int) -> float:
        eps = node.args[index] if len(node.args) > index else node.kwargs.get("eps")
        if isinstance(eps, torch.fx.Node) or not isinstance(eps, (int, float)) or not eps > 0:
            self.fail(f"RevIN eps must be a positive constant, got {eps!r}")
        return float(eps)

    def revin_norm(self, node: torch.fx.Node) -> _T:
        t = self.tensor(node.args[0])
        self.require_cl(t, "revin_norm (per channel over time)")
        return self.emit(
            self.layer_name(self.scoped_name()), "revin_norm", [t], {}, {"eps": self.revin_eps(node, 1)}, t
        )

    def revin_denorm(self, node: torch.fx.Node) -> _View:
        """revin_denorm(y, x, eps): y the forecast [B, C_out, H] (the head's [B, C_out*H, 1] output
        reshaped, as the op reads it: row c*H + h is channel c), x the window. Its result is the
        module's output, again seen as [B, C_out, H]."""
        y, x = self.val(node.args[0]), self.tensor(node.args[1], "window")
        self.require_cl(x, "revin_denorm's window")
        if not isinstance(y, _View):
            self.fail("revin_denorm's forecast must be the head's [B, C_out*H, 1] output reshaped to [B, C_out, H]")
        out = self.emit(
            self.layer_name(self.scoped_name()),
            "revin_denorm",
            [y.src, x],
            {},
            {"eps": self.revin_eps(node, 2)},
            y.src,
            at=node.args[0].args[0],
        )
        return _View(out, y.shape)

    def pad(self, node, pads, mode="constant", value=None):
        if mode != "constant" or value not in (None, 0, 0.0):
            self.fail(f"padding mode '{mode}' value {value!r}: only zero padding before a depthwise conv is supported")
        pads = _positive_ints(pads)
        t = self.tensor(node.args[0])
        if len(pads) != 2 or pads[1] != 0 or pads[0] < 0 or t.flat or t.layout != "CL":
            self.fail(
                f"pads {list(pads)}: only causal padding of the time axis (F.pad(x, (K-1, 0)) on [B, C, L]) "
                f"before a depthwise Conv1d is supported"
            )
        return _Padded(t, pads[0])

    def select(self, node):
        """x[...]: a channel slice of a pending conv, or the causal trim of a padded dwconv."""
        base, index = node.args
        v = self.val(base)
        if isinstance(v, _Other):
            item = v.value[index] if isinstance(v.value, tuple) and isinstance(index, int) else None
            return _Other(f"an item of {v.what}", item)
        index = self.concrete(index)
        if isinstance(v, _Parts):
            if not isinstance(index, int):
                self.fail("indexes a chunk/split result with a non-integer")
            lo, hi = v.ranges[index]
            return self.emit_conv(v.conv, range(lo, hi))
        shape = _meta_shape(base)
        dims = _index_ranges(index, shape)
        if dims is None:
            self.fail(f"index {index!r} drops or adds an axis (only slices of the channel or time axis are supported)")
        changed = [i for i, r in enumerate(dims) if r != range(shape[i])]
        if not changed:
            return v
        if isinstance(v, _Conv) and v.trim is not None:
            if changed == [2] and dims[2] == range(v.trim):
                conv = _Conv(node, v.name, v.op, v.src, v.weight, v.bias, v.attrs, v.out)
                return self.pending_or_emit(node, conv)
            self.fail(
                f"keeps steps {_fmt_range(dims[2])} of the padded depthwise Conv1d '{v.name}'; a causal conv "
                f"keeps the first {v.trim} ([..., :{v.trim}])"
            )
        if isinstance(v, _Conv) and changed == [self.conv_channel_dim(v)]:
            return self.emit_conv(v, dims[changed[0]])
        t = self.tensor(base)
        axes = ", ".join(
            {0: "batch", self.channel_dim(t): "channel", self.time_dim(t): "time"}.get(i, str(i)) for i in changed
        )
        self.fail(
            f"selects part of the {axes} axis of '{t.name}': no registry op does (only a convolution's "
            f"output channels can be split; the front end folds such a slice into the convolution)"
        )

    def parts(self, node, how: str):
        """chunk(x, n, dim) / split(x, size or sizes, dim) of a pending conv's output channels."""
        sizes = (
            node.args[1] if len(node.args) > 1 else node.kwargs.get("chunks", node.kwargs.get("split_size_or_sections"))
        )
        dim = node.kwargs.get("dim", node.args[2] if len(node.args) > 2 else 0)
        v = self.val(node.args[0])
        shape = _meta_shape(node.args[0])
        dim = dim % len(shape)
        if not isinstance(v, _Conv) or v.trim is not None or dim != self.conv_channel_dim(v):
            t = self.tensor(node.args[0])
            self.fail(
                f"{how} of '{t.name}' along axis {dim}: only the output channels of a convolution can be "
                f"split (the front end folds the split into the convolution)"
            )
        total = shape[dim]
        if how == "chunk":
            step = math.ceil(total / int(sizes))
            bounds = list(range(0, total, step)) + [total]
        elif isinstance(sizes, int):
            bounds = list(range(0, total, sizes)) + [total]
        else:
            bounds = [0] + list(np.cumsum([int(s) for s in sizes]))
        ranges = tuple((int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=False))
        return _Parts(v, ranges)

    def reshape(self, node):
        v = self.val(node.args[0])
        src_shape, out_shape = _meta_shape(node.args[0]), _meta_shape(node)
        if src_shape == out_shape:
            return v
        if isinstance(v, _View):
            self.fail("reshapes the module's reshaped output again")
        t = self.tensor(node.args[0])
        c, length = self.shapes[t.name]
        if out_shape[0] != src_shape[0]:
            folds = len(out_shape) == 3 and out_shape[0] == src_shape[0] * src_shape[1] and out_shape[1] == 1
            self.fail(
                f"reshape {list(src_shape)} -> {list(out_shape)} changes the batch axis"
                + (
                    " (channels folded into the batch: channel-independent processing is not traced; build it with "
                    "`train --channels independent` or import its weights with `import --config "
                    "'{\"channel_independent\": true, ...}'`)"
                    if folds
                    else ""
                )
            )
        if len(out_shape) == 2 and not t.flat and length == 1:
            return _T(t.name, "CL", flat=True)
        if len(out_shape) == 2 and not t.flat:
            return _T(t.name, t.layout, flat=True)
        if len(out_shape) == 3:
            a, b = out_shape[1:]
            if length == 1:
                if (a, b) == (c, 1):
                    return _T(t.name, "CL")
                if (a, b) == (1, c):
                    return _T(t.name, "LC")
                return _View(t, (a, b))
            if t.flat and (a, b) == ((c, length) if t.layout == "CL" else (length, c)):
                return _T(t.name, t.layout)
        self.fail(
            f"reshape {list(src_shape)} -> {list(out_shape)} of '{t.name}' ([{c}, {length}] per sample) "
            f"reorders the graph's values; supported: flatten before a Linear head, and a reshape of the "
            f"[B, C*H, 1] output to [B, C, H]"
        )

    def transpose(self, node, dims):
        t = self.tensor(node.args[0])
        rank = len(_meta_shape(node.args[0]))
        dims = tuple(int(d) % rank for d in dims)
        if rank == 3 and dims in ((0, 1, 2), (1, 1), (2, 2)):
            return t
        if rank == 3 and dims in ((0, 2, 1), (1, 2), (2, 1)) and not t.flat:
            return _T(t.name, "LC" if t.layout == "CL" else "CL")
        self.fail(
            f"permutes axes {list(dims)} of a {rank}-d tensor: only swapping the channel and time axes "
            f"of [B, C, L] is supported"
        )

    def identity(self, node):
        return self.val(node.args[0])

    def dropout(self, node):
        training = node.kwargs.get("training", node.args[2] if len(node.args) > 2 else True)
        if training:
            self.fail("dropout with training=True is random; trace the module in eval mode")
        return self.val(node.args[0])

    def shape_of(self, node):
        shape = _meta_shape(node.args[0])
        if node.op == "call_function":  # x.shape
            return _Other("a tensor shape", shape)
        if node.target == "dim":
            return _Other("a tensor rank", len(shape))
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        return _Other("a tensor shape", shape if dim is None else shape[dim])

    def concrete(self, index):
        """Shape-derived sizes (`x.shape[1]`, `x.size(2)`) inside an index, as plain ints."""
        if isinstance(index, tuple):
            return tuple(self.concrete(i) for i in index)
        if isinstance(index, slice):
            return slice(self.concrete(index.start), self.concrete(index.stop), self.concrete(index.step))
        if isinstance(index, torch.fx.Node):
            v = self.env[index]
            if isinstance(v, _Other) and isinstance(v.value, int):
                return v.value
            self.fail(f"indexes with '{index.name}', which is not a size known at trace time")
        return index


def _is_selection(node: torch.fx.Node) -> bool:
    if node.op == "call_function":
        return node.target in (operator.getitem, torch.chunk, torch.split)
    return node.op == "call_method" and node.target in ("chunk", "split")


def _index_ranges(index, shape) -> list[range] | None:
    """x[index] as one range per axis of `shape`, or None when it drops or adds an axis."""
    items = list(index) if isinstance(index, tuple) else [index]
    if sum(1 for i in items if i is Ellipsis) > 1:
        return None
    if Ellipsis in items:
        k = items.index(Ellipsis)
        items = items[:k] + [slice(None)] * (len(shape) - len(items) + 1) + items[k + 1 :]
    items += [slice(None)] * (len(shape) - len(items))
    if len(items) != len(shape) or not all(isinstance(i, slice) for i in items):
        return None
    for i in items:
        for part in (i.start, i.stop, i.step):
            if part is not None and not isinstance(part, int):
                return None
    return [range(*s.indices(n)) for s, n in zip(items, shape, strict=True)]


def _fmt_range(r: range) -> str:
    return f"{r.start}:{r.stop}" + (f":{r.step}" if r.step != 1 else "")


def _f(name):
    return lambda self, node: self.unary(node, name)


_MODULES = {
    nn.Conv1d: _Mapper.conv1d,
    nn.Linear: _Mapper.linear,
    RMSNorm: _Mapper.rmsnorm,
    nn.RMSNorm: _Mapper.torch_rmsnorm,
    nn.SiLU: lambda self, node, m: self.unary(node, "silu"),
    nn.Sigmoid: lambda self, node, m: self.unary(node, "sigmoid"),
    nn.Dropout: lambda self, node, m: self.val(node.args[0]),
    nn.Identity: lambda self, node, m: self.val(node.args[0]),
    nn.Flatten: lambda self, node, m: self.reshape(node),
    nn.ConstantPad1d: lambda self, node, m: self.pad(node, m.padding, value=m.value),
    nn.ZeroPad1d: lambda self, node, m: self.pad(node, m.padding),
}

_FUNCTIONS = {
    F.silu: _f("silu"),
    torch.sigmoid: _f("sigmoid"),
    F.sigmoid: _f("sigmoid"),
    operator.mul: lambda self, node: self.binary(node, "mul"),
    operator.imul: lambda self, node: self.binary(node, "mul"),
    torch.mul: lambda self, node: self.binary(node, "mul"),
    operator.add: lambda self, node: self.binary(node, "add"),
    operator.iadd: lambda self, node: self.binary(node, "add"),
    torch.add: lambda self, node: self.binary(node, "add"),
    scan: _Mapper.scan,
    revin_norm: _Mapper.revin_norm,
    revin_denorm: _Mapper.revin_denorm,
    F.pad: lambda self, node: self.pad(
        node,
        node.args[1] if len(node.args) > 1 else node.kwargs["pad"],
        node.kwargs.get("mode", "constant"),
        node.kwargs.get("value"),
    ),
    operator.getitem: _Mapper.select,
    getattr: lambda self, node: (
        self.transpose(node, (0, 2, 1))
        if node.args[1] == "mT"
        else self.shape_of(node)
        if node.args[1] == "shape"
        else _Other(f"the attribute .{node.args[1]}")
    ),
    torch.flatten: _Mapper.reshape,
    torch.reshape: _Mapper.reshape,
    torch.squeeze: _Mapper.reshape,
    torch.unsqueeze: _Mapper.reshape,
    torch.transpose: lambda self, node: self.transpose(node, node.args[1:3]),
    torch.permute: lambda self, node: self.transpose(node, node.args[1] if len(node.args) == 2 else node.args[1:]),
    torch.chunk: lambda self, node: self.parts(node, "chunk"),
    torch.split: lambda self, node: self.parts(node, "split"),
    F.dropout: _Mapper.dropout,
}

_METHODS = {
    "sigmoid": _f("sigmoid"),
    "mul": lambda self, node: self.binary(node, "mul"),
    "add": lambda self, node: self.binary(node, "add"),
    "reshape": _Mapper.reshape,
    "view": _Mapper.reshape,
    "flatten": _Mapper.reshape,
    "squeeze": _Mapper.reshape,
    "unsqueeze": _Mapper.reshape,
    "transpose": lambda self, node: self.transpose(node, node.args[1:3]),
    "permute": lambda self, node: self.transpose(
        node, node.args[1] if len(node.args) == 2 and isinstance(node.args[1], (tuple, list)) else node.args[1:]
    ),
    "contiguous": _Mapper.identity,
    "clone": _Mapper.identity,
    "chunk": lambda self, node: self.parts(node, "chunk"),
    "split": lambda self, node: self.parts(node, "split"),
    "size": _Mapper.shape_of,
    "dim": _Mapper.shape_of,
}


# ----------------------------------------------------------------------------- entry points
def _example(module: nn.Module, example_input) -> torch.Tensor:
    x = torch.as_tensor(example_input)
    if x.ndim != 3 or not x.is_floating_point() or min(x.shape) < 1:
        raise FrontendError(
            f"the example input must be a float tensor [B, C_in, L] (channel-major, "
            f"as docs/model-format.md), got {x.dtype} {list(x.shape)}"
        )
    params = next(iter(module.parameters()), None)
    return x.to(params.dtype if params is not None else torch.float32)


def trace_module(module: nn.Module, example_input: torch.Tensor | np.ndarray) -> TracedGraph:
    """Trace `module` (in eval mode; its mode is restored) on `example_input` [B, C_in, L] and
    map every node onto the op registry. FrontendError names the node that cannot be mapped."""
    if not isinstance(module, nn.Module):
        raise FrontendError(f"expected a torch.nn.Module, got {type(module).__name__}")
    x = _example(module, example_input)
    was_training = module.training
    module.eval()
    try:
        try:
            graph = _Tracer().trace(module)
        except Exception as exc:  # fx raises many kinds: report the first line, never a traceback
            raise FrontendError(f"torch.fx cannot trace {type(module).__name__}: {_first_line(exc)}") from exc
        gm = torch.fx.GraphModule(module, graph)
        try:
            with torch.no_grad():
                ShapeProp(gm).propagate(x)
        except Exception as exc:
            raise FrontendError(
                f"{type(module).__name__} does not run on the example input {list(x.shape)}: {_first_line(exc)}"
            ) from exc
        mapper = _Mapper(gm)
        mapper.run()
    finally:
        module.train(was_training)
    name, c_out, horizon = mapper.output
    layers = _live(mapper.layers, name)
    traced = TracedGraph(
        layers, mapper.shapes[INPUT_NAME], name, c_out, horizon, n_nodes=len(gm.graph.nodes), shapes=mapper.shapes
    )
    _canonical_names(traced)
    return traced


def _live(layers: list[tuple[dict, dict]], output: str) -> list[tuple[dict, dict]]:
    """Drop layers the output does not depend on (e.g. a full conv whose parts were emitted)."""
    needed = {output}
    for entry, _ in reversed(layers):
        if entry["name"] in needed:
            needed.update(entry["inputs"])
    return [(e, w) for e, w in layers if e["name"] in needed]


def _canonical_ref(entries: list[dict], revin: bool, head_proj: bool) -> list[dict] | None:
    """The CMamba-slim layer list (`cmamba_layers`) with the sizes `entries` imply, or None."""
    n_blocks, rest = divmod(len(entries) - 3 - 2 * revin - head_proj, 12)
    first, head = entries[int(revin)], entries[-1 - int(revin)]
    if (
        rest
        or n_blocks < 1
        or first["op"] != "conv_kx1"
        or head["op"] != "conv_kx1"
        or entries[int(revin) + 1]["op"] != "rmsnorm"
        or entries[int(revin) + 4]["op"] != "dwconv"
    ):
        return None
    return cmamba_layers(
        n_blocks,
        first["attrs"]["kernel"],
        first["attrs"]["stride"],
        entries[int(revin) + 4]["attrs"]["kernel"],
        head["attrs"]["kernel"],
        entries[int(revin) + 1]["attrs"]["eps"],
        revin,
        head_proj,
    )


def _canonical_names(traced: TracedGraph) -> None:
    """Give a graph that is exactly the CMamba-slim layer list (with or without RevIN and
    head_proj) its canonical names and hyper."""
    entries = [e for e, _ in traced.layers]
    for revin, head_proj in ((False, False), (False, True), (True, False), (True, True)):
        ref = _canonical_ref(entries, revin, head_proj)
        if ref is None:
            continue
        rename = {INPUT_NAME: INPUT_NAME}
        for mine, want in zip(entries, ref, strict=False):
            if (
                mine["op"] != want["op"]
                or mine.get("attrs", {}) != want.get("attrs", {})
                or [rename.get(i) for i in mine["inputs"]] != want["inputs"]
            ):
                break
            rename[mine["name"]] = want["name"]
        else:
            break
    else:
        return
    shapes = traced.shapes
    for entry in entries:
        entry["name"], entry["inputs"] = rename[entry["name"]], [rename[i] for i in entry["inputs"]]
    traced.shapes = {rename.get(k, k): v for k, v in shapes.items() if k in rename}
    traced.output_tensor = rename[traced.output_tensor]
    embed = next(e for e in entries if e["name"] == "patch_embed")
    traced.hyper = {
        "d_model": traced.shapes["patch_embed"][0],
        "d_inner": traced.shapes["blk0.in_proj_u"][0],
        "n_blocks": sum(e["op"] == "add" for e in ref),
        "patch": embed["attrs"]["kernel"],
        "stride": embed["attrs"]["stride"],
        "d_conv": ref[4 + int(revin)]["attrs"]["kernel"],
        "horizon": traced.horizon,
        "eps": ref[1 + int(revin)]["attrs"]["eps"],
        **({"revin": True} if revin else {}),
        **({"head_dim": traced.shapes["head_proj"][0]} if head_proj else {}),
    }


def check_against_module(model_dir: str | Path, module: nn.Module, example_input: torch.Tensor | np.ndarray) -> float:
    """Run the numpy fp32 reference of `model_dir` and `module` on `example_input`; return the
    largest |difference|. FrontendError when it exceeds CHECK_TOL * max(1, max |output|)."""
    from intsim.executor import Model
    from intsim.graph import load_graph

    x = _example(module, example_input)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            want = module(x).double().numpy()
    finally:
        module.train(was_training)
    got = Model(load_graph(model_dir)).run(x.double().numpy(), "fp32").output
    want = want.reshape(got.shape)
    diff = float(np.max(np.abs(got - want)))
    if not diff <= CHECK_TOL * max(1.0, float(np.max(np.abs(want)))):
        raise FrontendError(
            f"the traced graph's fp32 output differs from {type(module).__name__}'s by {diff:.3g} on "
            f"the example input (a front-end bug: please report it with the module)"
        )
    return diff


def from_module(
    module: nn.Module,
    example_input: torch.Tensor | np.ndarray,
    out_dir: str | Path,
    name: str | None = None,
    normalization: dict | None = None,
    columns: Sequence[str] | None = None,
    output_columns: Sequence[str] | None = None,
    training_info: dict | None = None,
) -> Path:
    """Trace `module` on `example_input` (float [B, C_in, L]) and write it as a model directory
    at `out_dir` (docs/model-format.md); returns the path. The written graph's fp32 reference
    is checked against the module on the example input before it replaces `out_dir`.
    normalization / columns: as model/export.py's export_model (default: identity, unnamed)."""
    out_dir = check_output_dir(out_dir)
    traced = trace_module(module, example_input)
    header = model_header(
        name or type(module).__name__,
        traced.input_shape,
        traced.output_tensor,
        (traced.output_channels, traced.horizon),
        normalization,
        columns,
        output_columns,
        traced.hyper,
        training_info,
    )
    where = f"{out_dir}/model.json"

    def check(tmp: Path) -> None:
        graph_from_dict(json.loads((tmp / "model.json").read_text()), tmp, where=where)
        check_against_module(tmp, module, example_input)

    return write_model_dir(out_dir, traced.layers, header, check)
