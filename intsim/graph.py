"""Load, validate and save a model directory (docs/model-format.md).

`load_graph(path) -> Graph`: the one validated, typed in-memory graph that every
stage reads. Any problem raises ModelFormatError naming file, layer and field.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from intsim.errors import ModelFormatError
from intsim.formats import QuantFormats, parse_quant
from intsim.ops import OPS
from intsim.schema import validate_model_json

FORMAT_NAME = "cmamba-hls-model"
FORMAT_VERSION = 1
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]{0,63}$")
INPUT_NAME = "input"


@dataclass
class Layer:
    name: str
    op: str
    inputs: tuple[str, ...]
    attrs: dict
    weights: dict[str, np.ndarray]  # float64, validated shapes
    weight_files: dict[str, str]
    shape: tuple[int, int] = (0, 0)  # output (channels, length), per sample


@dataclass
class Graph:
    name: str
    input_shape: tuple[int, int]  # (C_in, L)
    output_tensor: str
    output_channels: int
    horizon: int
    input_columns: list[str]
    output_columns: list[str]
    norm_in_mean: np.ndarray
    norm_in_std: np.ndarray
    norm_out_mean: np.ndarray
    norm_out_std: np.ndarray
    layers: list[Layer]
    raw: dict  # the parsed model.json (kept for saving)
    path: Path | None = None
    # input.channel_independent (docs/model-format.md): the layers describe ONE series [1, L];
    # every channel of the window runs through them with the same weights, y[c] = body(x[c]).
    channel_independent: bool = False
    formats: QuantFormats = field(init=False, repr=False)  # typed, validated `quant`

    @property
    def quant(self) -> dict:
        """model.json's `quant` object as stored (for saving); read `formats` for the values."""
        return self._quant

    @quant.setter
    def quant(self, value: dict) -> None:
        self._quant = value
        self.formats = parse_quant(value, self.name, self.path)

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    @property
    def series(self) -> int:
        """How many series one window is: C_in for a channel-independent graph, else 1."""
        return self.input_shape[0] if self.channel_independent else 1

    @property
    def body_input_shape(self) -> tuple[int, int]:
        """The shape the first layers see per series: (1, L) channel-independent, else (C_in, L)."""
        return (1, self.input_shape[1]) if self.channel_independent else self.input_shape

    def fold(self, x: np.ndarray) -> np.ndarray:
        """A batch of windows [B, C_in, L] as the batch of series the layers run on: [B*C_in, 1, L]
        (window b, channel c is series b*C_in + c) channel-independent; unchanged otherwise."""
        return x.reshape(-1, *self.body_input_shape)

    def tensor_shape(self, name: str) -> tuple[int, int]:
        """A tensor's shape per series (the graph input: `body_input_shape`)."""
        return self.body_input_shape if name == INPUT_NAME else self.layer(name).shape

    @property
    def tensor_names(self) -> list[str]:
        return [INPUT_NAME] + [layer.name for layer in self.layers]

    def n_weights(self) -> int:
        return int(sum(w.size for layer in self.layers for w in layer.weights.values()))


def _req(obj: dict, key: str, where: str, kind=None):
    if not isinstance(obj, dict) or key not in obj:
        raise ModelFormatError(f"{where}: missing key '{key}'")
    value = obj[key]
    if kind is not None and not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        raise ModelFormatError(f"{where}: '{key}' must be {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def _float_vector(obj, n: int, where: str) -> np.ndarray:
    try:
        arr = np.asarray(obj, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ModelFormatError(f"{where}: not a list of numbers") from exc
    if arr.shape != (n,):
        raise ModelFormatError(f"{where}: expected {n} numbers, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ModelFormatError(f"{where}: contains NaN/Inf")
    return arr


def _check_npy_size(path: Path, where: str) -> None:
    """The header's shape x itemsize must be exactly the bytes after it: a header declaring
    terabytes is rejected before anything is allocated."""
    try:
        with open(path, "rb") as fh:
            fmt = np.lib.format
            version = fmt.read_magic(fh)  # 3.0 differs from 2.0 only in the header's text encoding
            read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, _, dtype = read(fh)
            offset = fh.tell()
    except (ValueError, OSError, EOFError, SyntaxError, TypeError) as exc:
        raise ModelFormatError(f"{where}: {path} is not a plain NPY array ({exc})") from exc
    if dtype.hasobject:
        raise ModelFormatError(f"{where}: {path} is not a plain NPY array (object dtype {dtype})")
    declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
    actual = path.stat().st_size - offset
    if declared != actual:
        raise ModelFormatError(
            f"{where}: {path} declares shape {tuple(shape)} of {dtype} ({declared:,} bytes) "
            f"but holds {actual:,} bytes of data"
        )


def _load_npy(model_dir: Path, rel: str, where: str, ndim: int) -> np.ndarray:
    if not isinstance(rel, str) or rel.startswith("/") or ".." in Path(rel).parts:
        raise ModelFormatError(f"{where}: weight path {rel!r} must be relative, inside the model directory")
    path = model_dir / rel
    if not path.is_file():
        raise ModelFormatError(f"{where}: weight file {path} not found")
    _check_npy_size(path, where)
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise ModelFormatError(f"{where}: {path} is not a plain NPY array ({exc})") from exc
    except OSError as exc:
        raise ModelFormatError(f"{where}: cannot read {path} ({exc})") from exc
    if arr.dtype not in (np.float32, np.float64):
        raise ModelFormatError(f"{where}: {path} has dtype {arr.dtype}; expected float32 or float64")
    if arr.ndim != ndim:
        raise ModelFormatError(f"{where}: {path} has shape {arr.shape}; expected {ndim} dimensions")
    if not np.all(np.isfinite(arr)):
        raise ModelFormatError(f"{where}: {path} contains NaN/Inf")
    return arr.astype(np.float64)


def load_graph(path: str | Path) -> Graph:
    """Read and validate MODEL_DIR/model.json and its weights."""
    model_dir = Path(path)
    json_path = model_dir / "model.json"
    if not json_path.is_file():
        raise ModelFormatError(f"{model_dir}: no model.json (is this a model directory?)")
    try:
        raw = json.loads(json_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFormatError(f"{json_path}: malformed JSON ({exc})") from exc
    except RecursionError:
        raise ModelFormatError(f"{json_path}: malformed JSON (nested too deeply to parse)") from None
    return graph_from_dict(raw, model_dir, where=str(json_path), path=model_dir)


def graph_from_dict(raw: dict, model_dir: Path, where: str = "model.json", path: Path | None = None) -> Graph:
    if not isinstance(raw, dict):
        raise ModelFormatError(f"{where}: top level must be an object")
    if raw.get("format") != FORMAT_NAME:
        raise ModelFormatError(f"{where}: 'format' must be '{FORMAT_NAME}', got {raw.get('format')!r}")
    version = _req(raw, "format_version", where, int)
    if version != FORMAT_VERSION:
        raise ModelFormatError(
            f"{where}: format_version {version} is not supported (this loader reads {FORMAT_VERSION})"
        )
    validate_model_json(raw, where)  # every field's structure and type (intsim/model.schema.json)

    inp = _req(raw, "input", where, dict)
    c_in = _req(inp, "channels", f"{where}: input", int)
    length = _req(inp, "length", f"{where}: input", int)
    if c_in <= 0 or length <= 0:
        raise ModelFormatError(f"{where}: input channels/length must be positive")
    independent = bool(inp.get("channel_independent", False))  # the schema checked it is a boolean
    out = _req(raw, "output", where, dict)
    out_tensor = _req(out, "tensor", f"{where}: output", str)
    c_out = _req(out, "channels", f"{where}: output", int)
    horizon = _req(out, "horizon", f"{where}: output", int)
    if independent and c_out != c_in:
        raise ModelFormatError(
            f"{where}: output.channels {c_out} must equal input.channels {c_in} when input.channel_independent "
            f"is true (one forecast per input series)"
        )
    in_cols = list(inp.get("columns") or [f"ch{i}" for i in range(c_in)])
    out_cols = list(out.get("columns") or [f"ch{i}" for i in range(c_out)])
    if len(in_cols) != c_in or len(out_cols) != c_out:
        raise ModelFormatError(f"{where}: input/output 'columns' lengths do not match channel counts")

    norm = _req(raw, "normalization", where, dict)
    n_in = _req(norm, "input", f"{where}: normalization", dict)
    n_out = _req(norm, "output", f"{where}: normalization", dict)
    mean_in = _float_vector(
        _req(n_in, "mean", f"{where}: normalization.input"), c_in, f"{where}: normalization.input.mean"
    )
    std_in = _float_vector(
        _req(n_in, "std", f"{where}: normalization.input"), c_in, f"{where}: normalization.input.std"
    )
    mean_out = _float_vector(
        _req(n_out, "mean", f"{where}: normalization.output"), c_out, f"{where}: normalization.output.mean"
    )
    std_out = _float_vector(
        _req(n_out, "std", f"{where}: normalization.output"), c_out, f"{where}: normalization.output.std"
    )
    if np.any(std_in <= 0) or np.any(std_out <= 0):
        raise ModelFormatError(f"{where}: normalization std must be > 0")

    layer_list = _req(raw, "layers", where, list)
    if not layer_list:
        raise ModelFormatError(f"{where}: 'layers' is empty")
    shapes: dict[str, tuple[int, int]] = {INPUT_NAME: (1, length) if independent else (c_in, length)}
    layers: list[Layer] = []
    for idx, entry in enumerate(layer_list):
        lw = f"{where}: layers[{idx}]"
        name = _req(entry, "name", lw, str)
        lw = f"{where}: layer '{name}'"
        if not NAME_RE.match(name) or name == INPUT_NAME:
            raise ModelFormatError(f"{lw}: bad name (must match [A-Za-z_][A-Za-z0-9_.]*, <= 64 chars, not 'input')")
        if name in shapes:
            raise ModelFormatError(f"{lw}: duplicate name")
        op = _req(entry, "op", lw, str)
        if op not in OPS:
            raise ModelFormatError(f"{lw}: unknown op '{op}' (known: {', '.join(sorted(OPS))})")
        spec = OPS[op]
        inputs = _req(entry, "inputs", lw, list)
        if len(inputs) != spec.n_inputs:
            raise ModelFormatError(f"{lw}: op '{op}' takes {spec.n_inputs} input(s), got {len(inputs)}")
        for src in inputs:
            if src not in shapes:
                raise ModelFormatError(f"{lw}: input '{src}' is not the graph input or an earlier layer")
        attrs_in = entry.get("attrs", {}) or {}
        if not isinstance(attrs_in, dict):
            raise ModelFormatError(f"{lw}: 'attrs' must be an object")
        attrs: dict = {}
        for key in spec.int_attrs:
            val = _req(attrs_in, key, f"{lw}: attrs", int)
            if val <= 0:
                raise ModelFormatError(f"{lw}: attrs.{key} must be a positive integer, got {val}")
            attrs[key] = val
        for key in spec.float_attrs:
            val = _req(attrs_in, key, f"{lw}: attrs")
            if not isinstance(val, (int, float)) or isinstance(val, bool) or not np.isfinite(val):
                raise ModelFormatError(f"{lw}: attrs.{key} must be a finite number, got {val!r}")
            attrs[key] = float(val)
        files = entry.get("weights", {}) or {}
        if not isinstance(files, dict) or set(files) != set(spec.weights):
            raise ModelFormatError(
                f"{lw}: op '{op}' needs weights {sorted(spec.weights)}, "
                f"got {sorted(files) if isinstance(files, dict) else files!r}"
            )
        weights = {k: _load_npy(model_dir, files[k], f"{lw}: weights.{k}", nd) for k, nd in spec.weights.items()}
        layer = Layer(name, op, tuple(inputs), attrs, weights, dict(files))
        try:
            layer.shape = spec.shape_rule(name, [shapes[s] for s in inputs], weights, attrs)
        except ModelFormatError as exc:
            if independent and INPUT_NAME in inputs:
                raise ModelFormatError(
                    f"{exc} (input.channel_independent is true: the layers see one series, input [1, {length}])"
                ) from None
            raise
        if layer.shape[0] <= 0 or layer.shape[1] <= 0:
            raise ModelFormatError(f"{lw}: output shape {layer.shape} is empty")
        shapes[name] = layer.shape
        layers.append(layer)

    if out_tensor not in shapes or out_tensor == INPUT_NAME:
        raise ModelFormatError(f"{where}: output.tensor '{out_tensor}' is not a layer")
    if independent and shapes[out_tensor] != (horizon, 1):
        raise ModelFormatError(
            f"{where}: output tensor '{out_tensor}' has shape {shapes[out_tensor]}; expected ({horizon}, 1), "
            f"one series' forecast (output.horizon={horizon}), since input.channel_independent is true"
        )
    if not independent and shapes[out_tensor] != (c_out * horizon, 1):
        raise ModelFormatError(
            f"{where}: output tensor '{out_tensor}' has shape {shapes[out_tensor]}; "
            f"expected ({c_out}*{horizon}, 1) for channels={c_out}, horizon={horizon}"
        )
    quant = raw.get("quant", {}) or {}
    if not isinstance(quant, dict):
        raise ModelFormatError(f"{where}: 'quant' must be an object")
    graph = Graph(
        name=str(raw.get("name", model_dir.name)),
        input_shape=(c_in, length),
        output_tensor=out_tensor,
        output_channels=c_out,
        horizon=horizon,
        input_columns=in_cols,
        output_columns=out_cols,
        norm_in_mean=mean_in,
        norm_in_std=std_in,
        norm_out_mean=mean_out,
        norm_out_std=std_out,
        layers=layers,
        raw=raw,
        path=path,
        channel_independent=independent,
    )
    graph.quant = quant  # validated once into graph.formats
    return graph


def write_json_atomic(path: Path, obj: dict) -> None:
    """Write JSON to a temp file in the same folder, then rename: never half-written."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(obj, fh, indent=1)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_quant(graph: Graph) -> None:
    """Store graph.quant into model.json (atomically)."""
    if graph.path is None:
        raise ModelFormatError("graph has no model directory to save into")
    raw = dict(graph.raw)
    raw["quant"] = graph.quant
    write_json_atomic(graph.path / "model.json", raw)
    graph.raw = raw
