"""Render a self-contained HLS C++ project for one model, precision and type flavour.

`generate_project(model, out_dir, precision="int16", types="stdint", n_vectors=1000, data=None,
seed=0, layers=False, weights="embedded", interface="memory", reuse=ReuseSpec()) -> GenerateResult` writes

  out_dir/firmware/  primitives.h types.h params.h ops/*.h weights/*.h top.h top.cpp
  out_dir/tb/        tb_main.cpp npy.h
  out_dir/tb_data/   input.npy output.npy [layers/<layer>.npy]   (golden vectors)
  out_dir/Makefile   out_dir/build_prj.tcl   out_dir/project.json

(with weights="external": firmware/weights.h and tb/load_weights.h instead of the weight ROMs,
and out_dir/export/, the integer export the testbench loads at start-up, codegen/deploy.py),
everything from Jinja templates in templates/ (templates/common/ for the shared files,
templates/<precision>/ for the operator headers). The precision-specific part comes from a
back end module `codegen/emit_<precision>.py` (the interface: codegen/emission.py). The whole
project is written to a temporary sibling folder first and moved into place at the end:
nothing half-written is ever left at `out_dir`. `project.json` is the project's manifest
(intsim/manifest.py): it lists every file codegen wrote, and regenerating replaces exactly
those; other files in `out_dir` (notes, a Vitis project folder, build outputs) stay. A
directory that is not empty and holds no such manifest is refused. Output is deterministic
(no timestamps, seeded vectors): the same model and options give byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from codegen import emit_int8, emit_int16
from codegen.dataflow import plan_dataflow
from codegen.emission import CTYPES, Emission
from codegen.names import sanitize_names
from codegen.reuse import ReuseSpec, apply_plans, resolve_reuse
from codegen.vectors import make_vectors
from intsim.errors import CmambaError, UnsupportedError
from intsim.manifest import DirKind, owned_files, publish, staged

if TYPE_CHECKING:
    from codegen.deploy import Export
    from intsim.executor import Model
    from intsim.graph import Graph

REPO = Path(__file__).resolve().parent.parent
TEMPLATES = REPO / "templates"
NPY_HEADER = REPO / "hls_tb" / "npy.h"
BACKENDS = {"int16": emit_int16, "int8": emit_int8}  # precision -> back end module (codegen/emission.py)
PRECISIONS = tuple(BACKENDS)
TYPES = ("stdint", "ap")
WEIGHTS = ("embedded", "external")  # constants compiled in as ROMs | loaded from an integer export
# memory: cmamba_top(input[C][L], output[C][H]) on ap_memory ports, the layers one after another;
# stream: hls::stream ports (AXI-Stream), one DATAFLOW process per layer (codegen/dataflow.py).
INTERFACES = ("memory", "stream")
EXPORT_SUBDIR = "export"  # --weights external: the project's own export (codegen/deploy.py)
MARKER = "project.json"
PROJECT_DIR = DirKind(MARKER, "cmamba-hls codegen project", 2, "the project", "codegen")


@dataclass
class GenerateResult:
    out_dir: Path
    n_vectors: int
    files: list[Path]
    seconds: float
    precision: str = "int16"
    types: str = "stdint"
    interface: str = "memory"
    reuse: ReuseSpec = field(default_factory=ReuseSpec)
    vector_counts: dict = field(default_factory=dict)
    data_file: Path | None = None
    layers: bool = False
    data_note: str = ""  # why no real data was used (no --data, nothing found)


# ----------------------------------------------------------------------------- back ends
def load_backend(precision: str) -> ModuleType:
    """The back end module of `precision` (codegen.emit_<precision>); UnsupportedError for others."""
    if precision not in PRECISIONS:
        raise UnsupportedError(f"--precision {precision!r} is not supported (known: {', '.join(PRECISIONS)})")
    if precision not in BACKENDS:
        raise UnsupportedError(
            f"--precision {precision}: the {precision.upper()} C++ back end "
            f"(codegen/emit_{precision}.py) is not available in this version"
        )
    return BACKENDS[precision]


def as_model(model: Model | str | Path) -> Model:
    """A Model, or a model directory loaded as one."""
    from intsim.executor import Model, load_model

    if isinstance(model, Model):
        return model
    return load_model(model)


def model_digest(graph: Graph) -> str:
    """SHA-256 of the model: its JSON (incl. quantization) and every weight array."""
    h = hashlib.sha256(json.dumps(graph.raw, sort_keys=True).encode())
    for layer in graph.layers:
        for key in sorted(layer.weights):
            h.update(f"{layer.name}.{key}".encode())
            h.update(np.ascontiguousarray(layer.weights[key], dtype="<f8").tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------- rendering
def _c_dims(values: np.ndarray) -> str:
    return "".join(f"[{d}]" for d in values.shape)


def _c_initializer(values: np.ndarray, per_line: int = 16) -> str:
    """Nested brace initializer, C order, `per_line` numbers per line."""

    def rows(arr, indent):
        pad = " " * indent
        if arr.ndim == 1:
            items = [str(int(v)) for v in arr.tolist()]
            lines = [", ".join(items[i : i + per_line]) for i in range(0, len(items), per_line)] or [""]
            if len(lines) == 1 and indent > 4:
                return "{" + lines[0] + "}"
            return "{\n" + ",\n".join(pad + "    " + ln for ln in lines) + "\n" + pad + "}"
        inner = [pad + "    " + rows(sub, indent + 4) for sub in arr]
        return "{\n" + ",\n".join(inner) + "\n" + pad + "}"

    return rows(np.asarray(values), 0)


def _c_string(text: str) -> str:
    """Body of a C string literal: printable ASCII kept, `"` `\\` and the rest as octal escapes."""
    out = []
    for byte in str(text).encode("utf-8"):
        ch = chr(byte)
        out.append(ch if 32 <= byte < 127 and ch not in '"\\?' else f"\\{byte:03o}")
    return "".join(out)


def _c_comment(text: str) -> str:
    """Text safe inside a // comment: one line, no backslash at the end, ASCII only."""
    return "".join(ch if 32 <= ord(ch) < 127 and ch != "\\" else "?" for ch in str(text))


def make_env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters.update(c_dims=_c_dims, c_initializer=_c_initializer, c_string=_c_string, c_comment=_c_comment)
    return env


def _check_emission(em: Emission, names: dict[str, str]) -> None:
    for c in em.consts:
        if c.ctype not in CTYPES:
            raise CmambaError(f"back end '{em.precision}': constant {c.name} has unknown ctype {c.ctype!r}")
        info = np.iinfo(CTYPES[c.ctype])
        v = np.asarray(c.values)
        if v.dtype.kind not in "iu" or (v.size and (v.min() < info.min or v.max() > info.max)):
            raise CmambaError(f"back end '{em.precision}': constant {c.name} does not fit {c.ctype}")
    for b in em.buffers:
        if names.get(b.tensor) != b.cname:
            raise CmambaError(f"back end '{em.precision}': buffer {b.cname} is not the sanitised name of {b.tensor!r}")


def _loader_tables(em: Emission, exp, cnames: dict[str, str]) -> list[dict]:
    """--weights external: per constant table, the export files it is loaded from (codegen/deploy.py)."""
    from codegen.deploy import DTYPES, array_file, dtype_name

    index = {rec.name: i for i, rec in enumerate(exp.layers)}
    stypes = {"|i1": "int8_t", "<i2": "int16_t", "<i4": "int32_t", "<i8": "long long", "|u1": "uint8_t"}
    tables = []
    for c in em.consts:
        info = np.iinfo(CTYPES[c.ctype])
        sources = []
        for layer, fld in c.sources:
            arr = exp.layers[index[layer]].arrays[fld]
            if arr.size != np.asarray(c.values).size:
                raise CmambaError(
                    f"layer '{layer}': table {c.name} has {np.asarray(c.values).size} entries, "
                    f"its export array '{fld}' {arr.size}"
                )
            descr = DTYPES[dtype_name(arr)]
            sources.append(
                dict(
                    file=array_file(index[layer], cnames[layer], fld),
                    descr=descr,
                    stype=stypes[descr],
                    shape=list(arr.shape),
                )
            )
        if not sources:
            raise CmambaError(f"back end '{em.precision}': constant {c.name} names no export source")
        tables.append(
            dict(
                name=c.name,
                ctype=c.ctype,
                ndim=np.asarray(c.values).ndim,
                count=int(np.asarray(c.values).size),
                rows=int(np.asarray(c.values).shape[1]) if c.transposed else 0,
                lo=int(info.min),
                hi=int(info.max),
                sources=sources,
            )
        )
    return tables


def check_interface(interface: str, weights: str = "embedded", graph: Graph | None = None) -> None:
    """One line for an interface the project cannot have: unknown, stream with external weights, or
    (given the graph) stream for a channel-independent graph (input.channel_independent), whose
    series run one after another through one set of layers, which the DATAFLOW top does not express."""
    if interface not in INTERFACES:
        raise UnsupportedError(f"--interface {interface!r} is not supported (known: {', '.join(INTERFACES)})")
    if interface == "stream" and weights == "external":
        raise UnsupportedError(
            "--interface stream takes --weights embedded only: every DATAFLOW process reads its "
            "own ROMs, and one m_axi weights port cannot feed them all"
        )
    if graph is not None and graph.channel_independent and interface == "stream":
        raise UnsupportedError(
            f"model '{graph.name}' is channel-independent (input.channel_independent): --interface stream is "
            f"not supported for it (the DATAFLOW top streams one window through the layers, not its "
            f"{graph.series} series); use --interface memory"
        )


def emit_with_reuse(
    model: Model,
    backend: ModuleType,
    names: dict[str, str],
    types: str,
    reuse: ReuseSpec | None,
    external: bool = False,
) -> Emission:
    """The back end's Emission with every layer's parallelism (codegen/reuse.py) in its config."""
    plans = resolve_reuse(model.graph, reuse or ReuseSpec())
    em = backend.emit(model, names, types, external=external)
    apply_plans(em, names, plans)
    return em


def render_files(
    model: Model,
    em: Emission,
    types: str,
    weights: str = "embedded",
    exp: Export | None = None,
    interface: str = "memory",
) -> dict[str, str]:
    """Relative path -> text of every generated source file (no vectors). `weights="external"`
    needs `exp`, the model's integer export (codegen.deploy.export_records)."""
    check_interface(interface, weights, model.graph)
    env = make_env()
    series = model.graph.series
    external = weights == "external"
    groups: dict[str, list] = {}
    for c in em.consts if not external else ():
        groups.setdefault(c.group, []).append(c)
    op_headers = [Path(t).name[: -len(".j2")] for t in em.op_templates]
    ctx = dict(
        model_name=model.graph.name,
        precision=em.precision,
        types=types,
        typedefs=em.typedefs,
        configs=em.configs,
        buffers=em.buffers,
        steps=em.steps,
        input_shape=em.input_shape,
        output_shape=em.output_shape,
        output_buffer=em.output_buffer,
        output_tensor=model.graph.output_tensor,
        op_headers=op_headers,
        weight_groups=list(groups),
        npy_descr=em.npy_descr,
        npy_ctype={16: "int16_t", 8: "int8_t"}[em.elem_bits],
        notes=em.notes,
        weights=weights,
        consts=em.consts,
        interface=interface,
        dataflow=plan_dataflow(model.graph, em) if interface == "stream" else None,
        # channel-independent graphs (series > 1): cmamba_forward is one series, cmamba_top loops
        series=series,
        body_c="BODY_C" if series > 1 else "IN_C",
        rows="n * SERIES" if series > 1 else "n",  # rows of the per-layer files
        row="r" if series > 1 else "v",  # the testbench's per-layer row
    )
    files = {
        "firmware/primitives.h": env.get_template("common/primitives.h.j2").render(ctx),
        "firmware/types.h": env.get_template("common/types.h.j2").render(ctx),
        "firmware/params.h": env.get_template("common/params.h.j2").render(ctx),
        "firmware/top.h": env.get_template("common/top.h.j2").render(ctx),
        "firmware/top.cpp": env.get_template("common/top.cpp.j2").render(ctx),
        "tb/tb_main.cpp": env.get_template("common/tb_main.cpp.j2").render(ctx),
        "tb/npy.h": NPY_HEADER.read_text(),
        "Makefile": env.get_template("common/Makefile.j2").render(ctx),
        "build_prj.tcl": env.get_template("common/build_prj.tcl.j2").render(ctx),
    }
    for tpl, header in zip(em.op_templates, op_headers, strict=True):
        files[f"firmware/ops/{header}"] = env.get_template(tpl).render(ctx)
    weight_tpl = env.get_template("common/weights.h.j2")
    for group, consts in groups.items():
        files[f"firmware/weights/{group}.h"] = weight_tpl.render(ctx, group=group, consts=consts)
    if external:
        from codegen.deploy import scalar_names

        files["firmware/weights.h"] = env.get_template("common/weights_struct.h.j2").render(ctx)
        files["tb/load_weights.h"] = env.get_template("common/load_weights.h.j2").render(
            ctx, scalars=scalar_names(exp), tables=_loader_tables(em, exp, sanitize_names(r.name for r in exp.layers))
        )
    return files


# ----------------------------------------------------------------------------- writing
def _save_npy(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.ascontiguousarray(arr), allow_pickle=False)


def data_line(data_file: Path | None, note: str, n_real: int) -> str:
    """What codegen and compare print about the data their vectors came from."""
    if data_file is not None:
        return f"real windows: {n_real} from the test split of {data_file}"
    return f"real windows: none ({note})"


def project_options(
    model: Model,
    precision: str,
    types: str,
    n_vectors: int,
    data: str | Path | None,
    seed: int,
    layers: bool,
    weights: str = "embedded",
    interface: str = "memory",
    reuse: ReuseSpec | None = None,
) -> dict:
    return {
        "model": model.graph.name,
        "model_sha256": model_digest(model.graph),
        "precision": precision,
        "types": types,
        "interface": interface,
        "reuse": (reuse or ReuseSpec()).as_json(),
        "n_vectors": int(n_vectors),
        "data": None if data is None else Path(data).name,
        "seed": int(seed),
        "layers": bool(layers),
        "weights": weights,
    }


def generate_project(
    model: Model | str | Path,
    out_dir: str | Path,
    precision: str = "int16",
    types: str = "stdint",
    n_vectors: int = 1000,
    data: str | Path | None = None,
    seed: int = 0,
    layers: bool = False,
    weights: str = "embedded",
    interface: str = "memory",
    reuse: ReuseSpec | None = None,
) -> GenerateResult:
    """Generate the project (see the module docstring). model: a Model or a model directory.
    weights="external": the constant tables are loaded at start-up from an integer export
    (written to out_dir/export/, docs/deploy-format.md) instead of compiled in. interface:
    "memory" or "stream" (the DATAFLOW top); reuse: the layers' reuse factors (codegen/reuse.py)."""
    t0 = time.perf_counter()
    if types not in TYPES:
        raise UnsupportedError(f"--types {types!r} is not supported (known: {', '.join(TYPES)})")
    if weights not in WEIGHTS:
        raise UnsupportedError(f"--weights {weights!r} is not supported (known: {', '.join(WEIGHTS)})")
    if not isinstance(n_vectors, (int, np.integer)) or n_vectors < 1:
        raise CmambaError(f"--vectors must be a positive integer, got {n_vectors!r}")
    backend = load_backend(precision)
    model = as_model(model)
    check_interface(interface, weights, model.graph)
    out_dir = Path(out_dir)
    owned_files(out_dir, PROJECT_DIR)  # refuse someone else's directory before any work
    names = sanitize_names(layer.name for layer in model.graph.layers)
    external = weights == "external"
    em: Emission = emit_with_reuse(model, backend, names, types, reuse, external)
    _check_emission(em, names)
    exp = None
    if external:
        from codegen.deploy import export_records

        exp = export_records(model, precision)
    files = render_files(model, em, types, weights, exp, interface)

    vecs = make_vectors(model, em, int(n_vectors), data=data, seed=seed)
    out_q, tensors = em.run_golden(vecs.x_q)

    with staged(out_dir, PROJECT_DIR) as tmp:
        for rel, text in files.items():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        dtype = em.np_dtype
        _save_npy(tmp / "tb_data" / "input.npy", vecs.x_q.astype(dtype))
        _save_npy(tmp / "tb_data" / "output.npy", np.asarray(out_q).astype(dtype))
        if layers:
            for b in em.buffers:
                _save_npy(tmp / "tb_data" / "layers" / f"{b.cname}.npy", np.asarray(tensors[b.tensor]).astype(dtype))
        if external:
            from codegen.deploy import write_nested

            write_nested(exp, names, tmp / EXPORT_SUBDIR)
        manifest = project_options(
            model, precision, types, n_vectors, vecs.data_file, seed, layers, weights, interface, reuse
        )
        manifest["vectors"] = vecs.counts
        manifest["layers_map"] = {b.tensor: b.cname for b in em.buffers}
        written = publish(tmp, out_dir, PROJECT_DIR, manifest)
    return GenerateResult(
        out_dir,
        int(len(vecs.x_q)),
        written,
        time.perf_counter() - t0,
        precision,
        types,
        interface,
        reuse or ReuseSpec(),
        dict(vecs.counts),
        vecs.data_file,
        layers,
        vecs.data_note,
    )
