"""The integer deployment export: a lowered program as a versioned JSON manifest plus NPY files.

`export_records(model, precision)` walks the SAME lowered program the golden model runs and
codegen emits (`Model.program` = `lower_int16`, `Model.program8` = `lower_int8`) and turns
every step into a `LayerRecord`: its integer formats and, by a generic walk over the fields
of its typed params dataclass (`dataclasses.fields`), every int/bool field as a scalar and
every integer array as an NPY file. A new op's params dataclass exports with no new code.
`write_export` writes the directory (owned by manifest, intsim/manifest.py: nothing
half-written, nobody else's folder touched); `read_export` reads and validates it back.
The format is documented field by field in docs/deploy-format.md.

    DIR/manifest.json                  format "cmamba-hls integer export", version, layers
    DIR/scalars.npy                    int64 [n]: every layer's scalars, in manifest order
    DIR/layers/<NNN>_<cname>/<field>.npy   integer arrays (weights, biases, m0, shifts, LUTs)
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from codegen.names import sanitize_names
from intsim.errors import CmambaError, ModelFormatError, UnsupportedError
from intsim.manifest import DirKind, owned_files, publish, read_manifest, staged

if TYPE_CHECKING:
    from intsim.executor import Model

EXPORT_DIR = DirKind("manifest.json", "cmamba-hls integer export", 1, "the export", "export-int")
PRECISIONS = ("int16", "int8")
SCALARS_FILE = "scalars.npy"
# dtype name in the manifest -> the NPY dtype the file holds (bool flags are stored as uint8 0/1)
DTYPES = {"int8": "|i1", "int16": "<i2", "int32": "<i4", "int64": "<i8", "uint8": "|u1", "bool": "|u1"}


@dataclass
class LayerRecord:
    """One lowered step as the export holds it."""

    name: str
    op: str
    inputs: list[str]
    shape: list[int]
    formats: dict  # {"in": [...], "out": {...}}: int16 {"frac"}; int8 {"scale", "zero_point"}
    scalars: list[tuple[str, int]]  # (name, value) in order: format integers, then int/bool params
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # param field -> integer array
    weight_saturations: int = 0


@dataclass
class Export:
    precision: str
    meta: dict  # model name, digest, input/output, constants
    layers: list[LayerRecord]

    def scalar_vector(self) -> np.ndarray:
        return np.array([v for rec in self.layers for _, v in rec.scalars], dtype=np.int64)


def _format16(frac: int) -> dict:
    return {"frac": int(frac)}


def _format8(qp) -> dict:
    return {"scale": float(qp.scale), "zero_point": int(qp.zero_point)}


def _format_scalars(formats: dict) -> list[tuple[str, int]]:
    """The integers of the formats (fracs / zero points); scales are host-side floats."""
    out = []
    for i, f in enumerate(formats["in"]):
        out += [(f"in{i}_{k}", v) for k, v in f.items() if k != "scale"]
    out += [(f"out_{k}", v) for k, v in formats["out"].items() if k != "scale"]
    return out


def param_items(layer: str, params: object) -> tuple[list[tuple[str, int]], dict[str, np.ndarray]]:
    """Generic walk of a typed params record: (scalars in field order, integer arrays).
    None fields are skipped; a float (e.g. RMSNorm V1's gain_float, eps) is not integer-only."""
    scalars, arrays = [], {}
    for f in dataclasses.fields(params):
        value = getattr(params, f.name)
        if value is None:
            continue
        if isinstance(value, (bool, np.bool_, int, np.integer)):
            scalars.append((f.name, int(value)))
        elif isinstance(value, np.ndarray) and value.dtype.kind in "iub":
            arrays[f.name] = value
        else:
            raise UnsupportedError(
                f"layer '{layer}': parameter '{f.name}' is not an integer "
                f"({type(value).__name__}); the integer export holds integers only"
            )
    return scalars, arrays


def _program(model, precision: str):
    if precision not in PRECISIONS:
        raise UnsupportedError(f"--precision {precision!r} is not supported (known: {', '.join(PRECISIONS)})")
    prog = model.program if precision == "int16" else model.program8
    mixed = [st.name for st in prog.steps if getattr(st, "mixed_precision", False)]
    if mixed:
        raise UnsupportedError(
            f"layer '{mixed[0]}': RMSNorm V1 (quant.int8.rmsnorm = v1) has float inside "
            f"(docs/quant-spec.md 3.9) and no integer form; re-run `cmamba-hls calibrate MODEL "
            f"--int8-rmsnorm v2` to export --precision int8"
        )
    return prog


def _constants(precision: str) -> dict:
    """Spec constants the kernels use that are not per-layer parameters."""
    if precision == "int16":
        from intsim import kernels_int16 as K
        from intsim.lut import LUT_FRAC_BITS, LUT_SIZE

        return {
            "RMS_EXTRA_BITS": K.RMS_EXTRA_BITS,
            "RMS_INV_BITS": K.RMS_INV_BITS,
            "LUT_OFFSET": K.LUT_OFFSET,
            "LUT_SIZE": LUT_SIZE,
            "LUT_FRAC_BITS": LUT_FRAC_BITS,
            "REVIN_EXTRA_BITS": K.REVIN_EXTRA_BITS,
            "REVIN_INV_BITS": K.REVIN_INV_BITS,
        }
    from intsim import kernels_int8 as K8
    from intsim.int8 import LAM_SCALE, LAM_ZERO_POINT

    return {
        "RMS_EXTRA_BITS": K8.RMS_EXTRA_BITS,
        "RMS_INV_BITS": K8.RMS_INV_BITS_INT8,
        "LUT_SIZE": 256,
        "LAM_ZERO_POINT": LAM_ZERO_POINT,
        "LAM_SCALE_INV": int(round(1 / LAM_SCALE)),
        "REVIN_EXTRA_BITS": K8.REVIN_EXTRA_BITS,
        "REVIN_INV_BITS": K8.REVIN_INV_BITS_INT8,
    }


def export_records(model: Model, precision: str) -> Export:
    """The lowered program of `precision` as an Export (no files)."""
    from codegen.project import model_digest

    prog = _program(model, precision)
    graph = model.graph
    layers = []
    for st in prog.steps:
        if precision == "int16":
            formats = {"in": [_format16(f) for f in st.in_frac], "out": _format16(st.out_frac)}
        else:
            formats = {"in": [_format8(q) for q in st.in_qp], "out": _format8(st.out_qp)}
        scalars, arrays = param_items(st.name, st.params)
        layers.append(
            LayerRecord(
                st.name,
                st.op,
                list(st.inputs),
                [int(d) for d in st.shape],
                formats,
                _format_scalars(formats) + scalars,
                arrays,
                int(st.weight_saturations),
            )
        )
    if precision == "int16":
        in_fmt, out_fmt = _format16(prog.input_frac), _format16(prog.output_frac)
    else:
        in_fmt, out_fmt = _format8(prog.input_qp), _format8(prog.output_qp)
    meta = {
        "model": graph.name,
        "model_sha256": model_digest(graph),
        "precision": precision,
        "input": {
            "shape": [int(d) for d in graph.input_shape],
            "format": in_fmt,
            # the layers describe one series [1, L], run once per input channel (docs/deploy-format.md)
            **({"channel_independent": True} if graph.channel_independent else {}),
        },
        "output": {
            "tensor": graph.output_tensor,
            "shape": [int(graph.output_channels), int(graph.horizon)],
            "format": out_fmt,
        },
        "constants": _constants(precision),
    }
    return Export(precision, meta, layers)


def array_file(index: int, cname: str, name: str) -> str:
    """Relative path of one array: layers/<NNN>_<cname>/<field>.npy (cname: codegen/names.py rule)."""
    return f"layers/{index:03d}_{cname}/{name}.npy"


def dtype_name(arr: np.ndarray) -> str:
    """The manifest's dtype of a lowered array (a key of DTYPES)."""
    return "bool" if arr.dtype.kind == "b" else str(arr.dtype)


def _stored(arr: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(
        arr.astype(np.uint8) if arr.dtype.kind == "b" else arr, dtype=np.dtype(DTYPES[dtype_name(arr)])
    )


def write_files(exp: Export, cnames: dict[str, str], root: Path) -> dict:
    """Write the NPY files of `exp` under `root`; returns the manifest's metadata (no "files")."""
    root = Path(root)
    np.save(root / SCALARS_FILE, exp.scalar_vector(), allow_pickle=False)
    layers = []
    for i, rec in enumerate(exp.layers):
        arrays = {}
        for name, arr in rec.arrays.items():
            rel = array_file(i, cnames[rec.name], name)
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            np.save(root / rel, _stored(arr), allow_pickle=False)
            arrays[name] = {"file": rel, "dtype": dtype_name(arr), "shape": list(arr.shape)}
        layers.append(
            {
                "index": i,
                "name": rec.name,
                "op": rec.op,
                "inputs": rec.inputs,
                "shape": rec.shape,
                "formats": rec.formats,
                "weight_saturations": rec.weight_saturations,
                "scalars": [{"name": k, "value": v} for k, v in rec.scalars],
                "arrays": arrays,
            }
        )
    return dict(
        exp.meta, scalars_file=SCALARS_FILE, n_scalars=int(sum(len(r.scalars) for r in exp.layers)), layers=layers
    )


def write_nested(exp: Export, cnames: dict[str, str], root: Path) -> None:
    """The export's files and manifest inside a directory another manifest owns (a codegen
    project's export/, listed there)."""
    root.mkdir(parents=True)
    meta = write_files(exp, cnames, root)
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    (root / EXPORT_DIR.manifest).write_text(
        json.dumps(
            dict(meta, format=EXPORT_DIR.format, version=EXPORT_DIR.version, files=files), indent=1, sort_keys=True
        )
        + "\n"
    )


def scalar_names(exp: Export) -> list[tuple[str, int]]:
    """("layer.scalar", value) of every entry of scalars.npy, in order."""
    return [(f"{rec.name}.{k}", v) for rec in exp.layers for k, v in rec.scalars]


def write_export(model: Model, precision: str, out_dir: str | Path) -> tuple[Export, list[Path]]:
    """`cmamba-hls export-int`: write the export of `model` (a Model) to `out_dir`."""
    out_dir = Path(out_dir)
    owned_files(out_dir, EXPORT_DIR)  # refuse a foreign directory before any work
    exp = export_records(model, precision)
    cnames = sanitize_names(rec.name for rec in exp.layers)
    with staged(out_dir, EXPORT_DIR) as tmp:
        meta = write_files(exp, cnames, tmp)
        written = publish(tmp, out_dir, EXPORT_DIR, meta)
    return exp, written


# ----------------------------------------------------------------------------- reading
def _bad(path: Path, msg: str):
    raise ModelFormatError(f"{path}: {msg}")


def _load_array(root: Path, entry: dict, where: str) -> np.ndarray:
    if not isinstance(entry, dict) or not {"file", "dtype", "shape"} <= set(entry):
        _bad(root / EXPORT_DIR.manifest, f"{where}: needs 'file', 'dtype' and 'shape'")
    if entry["dtype"] not in DTYPES:
        _bad(
            root / EXPORT_DIR.manifest,
            f"{where}: dtype {entry['dtype']!r} is not an integer type (known: {', '.join(DTYPES)})",
        )
    path = root / entry["file"]
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        _bad(path, f"cannot read the NPY file ({exc})")
    if arr.dtype != np.dtype(DTYPES[entry["dtype"]]) or list(arr.shape) != list(entry["shape"]):
        _bad(
            path,
            f"dtype {arr.dtype.str} shape {list(arr.shape)}, the manifest says "
            f"{DTYPES[entry['dtype']]} {list(entry['shape'])}",
        )
    if entry["dtype"] == "bool":
        if arr.size and arr.max() > 1:
            _bad(path, "a flag array holds values other than 0 and 1")
        return arr.astype(bool)
    return arr


def read_export(path: str | Path) -> Export:
    """Read and validate an export directory (ModelFormatError naming the file on any defect)."""
    root = Path(path)
    raw = read_manifest(root, EXPORT_DIR)
    if raw is None:
        raise ModelFormatError(
            f"{root}: not a cmamba-hls integer export (needs {EXPORT_DIR.manifest} with format "
            f"'{EXPORT_DIR.format}', version {EXPORT_DIR.version})"
        )
    try:
        layers = []
        for i, entry in enumerate(raw["layers"]):
            where = f"layers[{i}] ('{entry['name']}')"
            arrays = {k: _load_array(root, v, f"{where}.arrays.{k}") for k, v in entry["arrays"].items()}
            scalars = [(s["name"], int(s["value"])) for s in entry["scalars"]]
            layers.append(
                LayerRecord(
                    entry["name"],
                    entry["op"],
                    list(entry["inputs"]),
                    list(entry["shape"]),
                    entry["formats"],
                    scalars,
                    arrays,
                    int(entry["weight_saturations"]),
                )
            )
        meta = {k: raw[k] for k in ("model", "model_sha256", "precision", "input", "output", "constants")}
    except (KeyError, TypeError, ValueError) as exc:
        _bad(root / EXPORT_DIR.manifest, f"malformed manifest ({type(exc).__name__}: {exc})")
    exp = Export(meta["precision"], meta, layers)
    try:
        vec = np.load(root / SCALARS_FILE, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        _bad(root / SCALARS_FILE, f"cannot read the NPY file ({exc})")
    if vec.dtype != np.dtype("<i8") or not np.array_equal(vec, exp.scalar_vector()):
        _bad(root / SCALARS_FILE, "does not hold the manifest's scalars (int64, in manifest order)")
    return exp


def check_same_as(exp: Export, model: Model, precision: str) -> None:
    """Raise CmambaError naming the first layer/field where `exp` differs from the lowered program."""
    ref = export_records(model, precision)
    if [r.name for r in ref.layers] != [r.name for r in exp.layers]:
        raise CmambaError("the export's layers differ from the model's")
    for a, b in zip(ref.layers, exp.layers, strict=True):
        if a.scalars != b.scalars or a.formats != b.formats:
            raise CmambaError(f"layer '{a.name}': scalars or formats differ")
        if set(a.arrays) != set(b.arrays):
            raise CmambaError(f"layer '{a.name}': arrays {sorted(b.arrays)}, expected {sorted(a.arrays)}")
        for k in a.arrays:
            if a.arrays[k].dtype != b.arrays[k].dtype or not np.array_equal(a.arrays[k], b.arrays[k]):
                raise CmambaError(f"layer '{a.name}': array '{k}' differs")
