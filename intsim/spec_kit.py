"""The conformance kit's file format and its golden replay (docs/quant-spec.md section 7).

A kit is a folder: `index.json` lists the cases (`cases.txt` repeats "id precision op" per line
for readers without a JSON parser); each case `<id>/` holds its arrays as plain NPY files
(little-endian signed integers, `uint8` flags, `float64` host inputs) and a `params.txt` of its
integer scalars ("name value" per line). `run_case` computes a case's
outputs from its inputs with the golden model (the Numba kernels and primitives for device
cases, the lowering for host cases), so the same function writes the kit and replays it.

Case kinds (`precision`):
- "primitive": element-wise fixed-point primitives of spec 1 (arrays of int64 arguments);
- "int16", "int8": one operator of spec 2 / 3 on [B, C, L] inputs with its integer constants;
- "host": float -> integer derivations done once on the host (spec 1.1, 2.6, 3.1-3.10).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from intsim import fixedpoint as fp, kernels_int8 as K8, kernels_int16 as K16
from intsim.graph import write_json_atomic
from intsim.int8 import asymmetric_params, lower_int8
from intsim.int16 import lower_int16
from intsim.lut import IDENTITY_ABOVE_RANGE, int8_table, int8_table_clamped, int16_table, int16_table_clamped
from intsim.ops import OPS, BackendTable
from intsim.small_graph import small_graph

KIT_FORMAT = "cmamba-hls-spec-vectors"
KIT_VERSION = 1
INDEX = "index.json"
CASE_LIST = "cases.txt"  # "id precision op" per line: the index for readers without JSON
PARAMS = "params.txt"
PRECISIONS = ("primitive", "host", "int16", "int8")
# dtypes a kit may hold (NPY descr): what an RTL testbench has to parse
KIT_DTYPES = {np.dtype(t) for t in ("<i8", "<i4", "<i2", "|i1", "|u1", "<f8")}


@dataclass
class Case:
    """One conformance case. inputs/outputs: name -> array; params: integer scalars the kernel
    or derivation takes; floats: float64 host inputs; expect: scalar results of host cases;
    saturations: the number of values the op clamps (spec 5), None where not applicable."""

    id: str
    precision: str
    op: str
    spec: str
    rules: tuple[str, ...]
    description: str
    inputs: dict[str, np.ndarray] = field(default_factory=dict)
    params: dict[str, int] = field(default_factory=dict)
    floats: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    expect: dict = field(default_factory=dict)
    saturations: int | None = None


# ----------------------------------------------------------------------------- golden replay


def _elementwise(func, *cols) -> list:
    return [func(*(int(c[i]) for c in cols)) for i in range(len(cols[0]))]


def _saturating(pairs: list) -> tuple[dict, int]:
    y = np.array([v for v, _ in pairs], np.int64)
    flags = np.array([bool(s) for _, s in pairs], np.uint8)
    return {"y": y, "saturated": flags}, int(flags.sum())


_i64 = np.int64
# primitive -> (inputs, params) -> (outputs, saturations or None); spec section 1
PRIMITIVES = {
    "rne_shift": lambda a, p: (
        {"y": np.array(_elementwise(lambda x, n: fp.rne_shift(_i64(x), n), a["x"], a["n"]), _i64)},
        None,
    ),
    "shift_round": lambda a, p: (
        {"y": np.array(_elementwise(lambda x, n: fp.shift_round(_i64(x), n), a["x"], a["n"]), _i64)},
        None,
    ),
    "rne_div": lambda a, p: (
        {"q": np.array(_elementwise(lambda x, d: fp.rne_div(_i64(x), _i64(d)), a["num"], a["den"]), _i64)},
        None,
    ),
    "isqrt_rne": lambda a, p: ({"r": np.array(_elementwise(lambda v: fp.isqrt_rne(_i64(v)), a["v"]), _i64)}, None),
    "saturate": lambda a, p: _saturating(_elementwise(lambda x, b: fp.saturate(_i64(x), b), a["x"], a["bits"])),
    "requantize": lambda a, p: _saturating(
        _elementwise(
            lambda acc, m0, sh, z: fp.requantize(_i64(acc), _i64(m0), sh, _i64(z), p["bits"]),
            a["acc"],
            a["m0"],
            a["shift"],
            a["zp"],
        )
    ),
}


def _primitive(case: Case) -> tuple[dict, int | None]:
    if case.op not in PRIMITIVES:
        raise ValueError(f"kit: unknown primitive '{case.op}'")
    return PRIMITIVES[case.op](case.inputs, case.params)


# The kit's replay of one operator, by op: a back end of the op registry (tests/test_registry.py
# checks every op has a row). A row takes (inputs, params) -> (y, saturations).
KIT16: BackendTable = BackendTable("conformance kit INT16")
KIT8: BackendTable = BackendTable("conformance kit INT8")


def _bias(a: dict) -> np.ndarray:
    return a["bias"].astype(np.int64)


KIT16.register("conv1x1", lambda a, p: K16.conv1x1_int16(a["x"], a["weight"], _bias(a), p["shift"]))
KIT16.register("conv_kx1", lambda a, p: K16.conv_kx1_int16(a["x"], a["weight"], _bias(a), p["stride"], p["shift"]))
KIT16.register("dwconv", lambda a, p: K16.dwconv_int16(a["x"], a["weight"], _bias(a), p["shift"]))
KIT16.register("rmsnorm", lambda a, p: K16.rmsnorm_int16(a["x"], a["gain"], np.int64(p["eps_q"]), p["shift"]))
for _func in ("sigmoid", "silu", "softplus"):
    KIT16.register(
        _func,
        lambda a, p, silu=_func in IDENTITY_ABOVE_RANGE: K16.lut_int16(
            a["x"], a["table"], p["addr_shift"], silu, p["identity_shift"], a["clamped"]
        ),
    )
KIT16.register("scan", lambda a, p: K16.scan_int16(a["lam"], a["u"], p["lam_frac"], p["u_shift"]))
KIT16.register("mul", lambda a, p: K16.mul_int16(a["a"], a["b"], p["shift"]))
KIT16.register("add", lambda a, p: K16.add_int16(a["a"], a["b"], p["a_up"], p["b_up"], p["shift"]))
KIT16.register(
    "s6_scan",
    lambda a, p: K16.s6_scan_int16(
        a["delta"], a["x"], a["B"], a["C"], a["A"], a["D"], a["table"], *(p[k] for k in K16.S6.params)
    ),
)
KIT16.register("revin_norm", lambda a, p: K16.revin_norm_int16(a["x"], np.int64(p["eps_q"]), p["shift"]))
KIT16.register(
    "revin_denorm", lambda a, p: K16.revin_denorm_int16(a["f"], a["x"], np.int64(p["eps_q"]), p["mean_up"], p["shift"])
)


def _conv8(a: dict, p: dict) -> tuple:
    return (a["x"], p["x_zp"], a["weight"], _bias(a), a["m0"].astype(np.int64), a["shift"].astype(np.int64), p["y_zp"])


KIT8.register("conv1x1", lambda a, p: K8.conv1x1_int8(*_conv8(a, p)))
KIT8.register("dwconv", lambda a, p: K8.dwconv_int8(*_conv8(a, p)))
KIT8.register("conv_kx1", lambda a, p: K8.conv_kx1_int8(*_conv8(a, p), p["stride"]))
KIT8.register(
    "rmsnorm",
    lambda a, p: K8.rmsnorm_int8(a["x"], p["x_zp"], a["gain"], np.int64(p["eps_q"]), p["m0"], p["shift"], p["y_zp"]),
)
for _func in ("sigmoid", "silu", "softplus"):
    KIT8.register(_func, lambda a, p: K8.lut_int8(a["x"], a["table"], a["clamped"]))
KIT8.register("scan", lambda a, p: K8.scan_int8(a["lam"], a["u"], p["u_zp"], p["m0"], p["shift"], p["y_zp"]))
KIT8.register("mul", lambda a, p: K8.mul_int8(a["a"], p["a_zp"], a["b"], p["b_zp"], p["m0"], p["shift"], p["y_zp"]))
KIT8.register(
    "add", lambda a, p: K8.add_int8(a["a"], p["a_zp"], p["m_a"], a["b"], p["b_zp"], p["m_b"], p["shift"], p["y_zp"])
)
KIT8.register(
    "s6_scan",
    lambda a, p: K8.s6_scan_int8(
        a["delta"],
        p["d_zp"],
        a["x"],
        p["x_zp"],
        a["B"],
        p["b_zp"],
        a["C"],
        p["c_zp"],
        a["A"],
        a["m_a"].astype(np.int64),
        a["sh_a"].astype(np.int64),
        a["D"],
        a["table"],
        p["m_h"],
        p["m_k"],
        p["shift"],
        p["y_zp"],
    ),
)
KIT8.register(
    "revin_norm",
    lambda a, p: K8.revin_norm_int8(a["x"], p["x_zp"], np.int64(p["eps_q"]), p["m0"], p["shift"], p["y_zp"]),
)
KIT8.register(
    "revin_denorm",
    lambda a, p: K8.revin_denorm_int8(
        a["f"], p["y_zp"], a["x"], p["x_zp"], np.int64(p["eps_q"]), p["m_a"], p["m_b"], p["shift"], p["o_zp"]
    ),
)


def _device(table: BackendTable, case: Case) -> tuple[dict, int]:
    if case.op not in OPS:
        raise ValueError(f"kit: unknown {case.precision} op '{case.op}'")
    y, n = table.row(case.op, case.id)(case.inputs, case.params)
    return {"y": y}, int(n)


# One-operator INT8 graphs built from a host case's float inputs, by op kind: op -> (case) -> graph.
def _binary_graph(op: str, case: Case):
    """mul / add / scan: the second input comes from a helper layer (a SiLU, or the scan's sigmoid)."""
    f = case.floats
    first = ("lam", "sigmoid") if op == "scan" else ("b", "silu")
    inputs = [first[0], "input"] if op == "scan" else ["input", first[0]]
    layers = [{"name": first[0], "op": first[1], "inputs": ["input"]}, {"name": "y", "op": op, "inputs": inputs}]
    qp = (
        {"input": (f["s_u"], 0), "lam": (1.0 / 256.0, -128), "y": (f["s_y"], 0)}
        if op == "scan"
        else {"input": (f["s_a"], 0), "b": (f["s_b"], 0), "y": (f["s_y"], 0)}
    )
    return small_graph((1, 1), layers, int8=qp)


def _conv_graph(op: str, case: Case):
    f, p, w = case.floats, case.params, case.inputs["weight"]
    attrs = {k: p[k] for k in ("kernel", "stride") if k in p}
    channels = w.shape[0] if op == "dwconv" else w.shape[1]
    return small_graph(
        (channels, p.get("length", 1)),
        [
            {
                "name": "y",
                "op": op,
                "inputs": ["input"],
                "attrs": attrs,
                "weights": {"weight": w, "bias": case.inputs["bias"]},
            }
        ],
        int8={"input": (f["s_x"], p["z_x"]), "y": (f["s_y"], p["z_y"])},
    )


def _rmsnorm_graph(op: str, case: Case):
    f, p, g = case.floats, case.params, case.inputs["gain"]
    return small_graph(
        (g.size, 1),
        [{"name": "y", "op": op, "inputs": ["input"], "weights": {"weight": g}, "attrs": {"eps": f["eps"]}}],
        int8={"input": (f["s_x"], p["z_x"]), "y": (f["s_y"], p["z_y"])},
    )


INT8_HOST_GRAPHS = {
    "mul": _binary_graph,
    "add": _binary_graph,
    "scan": _binary_graph,
    "conv1x1": _conv_graph,
    "conv_kx1": _conv_graph,
    "dwconv": _conv_graph,
    "rmsnorm": _rmsnorm_graph,
}


def _int8_lowered(op: str, case: Case):
    """Lower a one-operator INT8 graph built from the case's float inputs; returns its step."""
    if op not in INT8_HOST_GRAPHS:
        raise ValueError(f"kit: no INT8 host derivation for '{op}'")
    return lower_int8(INT8_HOST_GRAPHS[op](op, case)).step("y")


def _quantize_multipliers(a: dict, p: dict, f: dict) -> tuple[dict, dict]:
    pairs = [fp.quantize_multiplier(float(m)) for m in a["M"]]
    return {"m0": np.array([m for m, _ in pairs], np.int64), "shift": np.array([s for _, s in pairs], np.int64)}, {}


def _quantize_q(a: dict, p: dict, f: dict) -> tuple[dict, dict]:
    q = [fp.quantize_q(np.array([v]), p["frac_bits"], p["bits"]) for v in a["x"]]
    return {"q": np.array([int(v[0][0]) for v in q], np.int64), "saturated": np.array([v[1] for v in q], np.uint8)}, {}


def _int16_table(a: dict, p: dict, f: dict) -> tuple[dict, dict]:
    func = ("sigmoid", "silu")[p["is_silu"]]
    return {
        "table": int16_table(func, p["frac_bits"]),
        "clamped": int16_table_clamped(func, p["frac_bits"]).astype(np.uint8),
    }, {}


def _int8_table(a: dict, p: dict, f: dict) -> tuple[dict, dict]:
    args = (("sigmoid", "silu")[p["is_silu"]], f["s_x"], p["z_x"], f["s_y"], p["z_y"])
    return {"table": int8_table(*args), "clamped": int8_table_clamped(*args).astype(np.uint8)}, {}


def _activation_params(a: dict, p: dict, f: dict) -> tuple[dict, dict]:
    pairs = [asymmetric_params(lo, hi) for lo, hi in zip(a["lo"].tolist(), a["hi"].tolist(), strict=True)]
    return {
        "scale": np.array([s for s, _ in pairs], np.float64),
        "zero_point": np.array([z for _, z in pairs], np.int64),
    }, {}


def _int16_rmsnorm(a: dict, p: dict, f: dict) -> tuple[dict, dict]:
    graph = small_graph(
        (a["gain"].size, 1),
        [
            {
                "name": "y",
                "op": "rmsnorm",
                "inputs": ["input"],
                "weights": {"weight": a["gain"]},
                "attrs": {"eps": f["eps"]},
            }
        ],
        int16={"tensors": {"input": p["f_x"], "y": p["f_y"]}, "weights": {"y.weight": p["f_g"]}},
    )
    q = lower_int16(graph).step("y").params
    return {"gain_q": q.gain}, {"eps_q": q.eps_q, "shift": q.shift}


# host derivation -> (inputs, params, floats) -> (outputs, expected scalars); spec 1.1, 2.6, 3.1-3.10
HOST_DERIVATIONS = {
    "quantize_multiplier": _quantize_multipliers,
    "quantize_q": _quantize_q,
    "int16_table": _int16_table,
    "int8_table": _int8_table,
    "int8_activation_params": _activation_params,
    "int16_rmsnorm": _int16_rmsnorm,
}
# lowered INT8 constants of one layer: what a host case of that kind expects
INT8_HOST_RESULTS = {
    "conv": lambda q: (
        {
            "weight_q": q.weight,
            "bias_q": q.bias.astype(np.int32),
            "m0": q.m0.astype(np.int32),
            "shift": q.shift.astype(np.int8),
        },
        {},
    ),
    "add": lambda q: ({}, {"m_a": q.m_a, "m_b": q.m_b, "shift": q.shift}),
    "rmsnorm": lambda q: ({"gain_q": q.gain}, {"eps_q": q.eps_q, "m0": q.m0, "shift": q.shift}),
    "multiplier": lambda q: ({}, {"m0": q.m0, "shift": q.shift}),  # mul, scan
}
INT8_HOST_KIND = {
    "conv1x1": "conv",
    "conv_kx1": "conv",
    "dwconv": "conv",
    "add": "add",
    "rmsnorm": "rmsnorm",
    "mul": "multiplier",
    "scan": "multiplier",
}


def _host(case: Case) -> tuple[dict, dict]:
    """(output arrays, expected scalars) of a host-side derivation."""
    if case.op in HOST_DERIVATIONS:
        return HOST_DERIVATIONS[case.op](case.inputs, case.params, case.floats)
    op = case.op.removeprefix("int8_")
    st = _int8_lowered(op, case)
    return INT8_HOST_RESULTS[INT8_HOST_KIND[op]](st.params)


def run_case(case: Case) -> Case:
    """Fill `outputs`, `expect` and `saturations` of `case` from its inputs (golden model)."""
    expect: dict = {}
    if case.precision == "primitive":
        outputs, sat = _primitive(case)
    elif case.precision == "int16":
        outputs, sat = _device(KIT16, case)
    elif case.precision == "int8":
        outputs, sat = _device(KIT8, case)
    elif case.precision == "host":
        outputs, expect = _host(case)
        sat = int(outputs["saturated"].sum()) if "saturated" in outputs else None
    else:
        raise ValueError(f"kit: unknown precision '{case.precision}' (known: {', '.join(PRECISIONS)})")
    case.outputs = outputs
    case.expect = {k: (float(v) if isinstance(v, float) else int(v)) for k, v in expect.items()}
    case.saturations = sat
    return case


# ------------------------------------------------------------------------------- files


def _entry(case: Case) -> dict:
    def files(arrs):
        return {name: f"{case.id}/{name}.npy" for name in arrs}

    entry = {
        "id": case.id,
        "precision": case.precision,
        "op": case.op,
        "spec": case.spec,
        "rules": list(case.rules),
        "description": case.description,
        "params": {k: int(v) for k, v in case.params.items()},
        "floats": {k: float(v) for k, v in case.floats.items()},
        "floats_hex": {k: float(v).hex() for k, v in case.floats.items()},
        "inputs": files(case.inputs),
        "outputs": files(case.outputs),
    }
    if case.expect:
        entry["expect"] = case.expect
    if case.saturations is not None:
        entry["saturations"] = case.saturations
    return entry


def write_kit(cases: list[Case], out_dir: str | Path) -> Path:
    """Write the cases into `out_dir` (index.json, <id>/*.npy, <id>/params.txt). Files of
    earlier kits that the new one does not list are removed; nothing else is touched."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ids = [c.id for c in cases]
    if len(set(ids)) != len(ids):
        raise ValueError("kit: duplicate case ids")
    old = out / INDEX
    if old.is_file():
        for entry in json.loads(old.read_text())["cases"]:
            if entry["id"] not in ids:
                stale = list(entry["inputs"].values()) + list(entry["outputs"].values()) + [f"{entry['id']}/{PARAMS}"]
                for rel in stale:
                    (out / rel).unlink(missing_ok=True)
                if (out / entry["id"]).is_dir() and not any((out / entry["id"]).iterdir()):
                    (out / entry["id"]).rmdir()
    for case in cases:
        if set(case.inputs) & set(case.outputs):  # one file per name: an input would be overwritten
            raise ValueError(
                f"kit: case {case.id}: {sorted(set(case.inputs) & set(case.outputs))} name both an input and an output"
            )
        folder = out / case.id
        folder.mkdir(exist_ok=True)
        for name, arr in {**case.inputs, **case.outputs}.items():
            arr = np.ascontiguousarray(arr)
            if arr.dtype.newbyteorder("<") not in KIT_DTYPES and arr.dtype not in KIT_DTYPES:
                raise ValueError(f"kit: case {case.id}: array '{name}' has dtype {arr.dtype}")
            np.save(folder / f"{name}.npy", arr, allow_pickle=False)
        (folder / PARAMS).write_text("".join(f"{k} {int(v)}\n" for k, v in case.params.items()))
    (out / CASE_LIST).write_text("".join(f"{c.id} {c.precision} {c.op}\n" for c in cases))
    write_json_atomic(
        out / INDEX,
        {
            "format": KIT_FORMAT,
            "version": KIT_VERSION,
            "spec": "docs/quant-spec.md",
            "generator": "python -m intsim.spec_vectors",
            "cases": [_entry(c) for c in cases],
        },
    )
    return out


def read_kit(kit_dir: str | Path) -> list[Case]:
    """Load every case of a kit (arrays, params, floats, expected results)."""
    root = Path(kit_dir)
    index = json.loads((root / INDEX).read_text())
    if index.get("format") != KIT_FORMAT or index.get("version") != KIT_VERSION:
        raise ValueError(f"{root / INDEX}: not a version-{KIT_VERSION} {KIT_FORMAT} index")
    cases = []
    for e in index["cases"]:
        floats = {k: float.fromhex(v) for k, v in e["floats_hex"].items()}
        if floats != e["floats"]:
            raise ValueError(f"{root / INDEX}: case {e['id']}: floats and floats_hex disagree")
        case = Case(
            e["id"],
            e["precision"],
            e["op"],
            e["spec"],
            tuple(e["rules"]),
            e["description"],
            {k: np.load(root / v, allow_pickle=False) for k, v in e["inputs"].items()},
            dict(e["params"]),
            floats,
            {k: np.load(root / v, allow_pickle=False) for k, v in e["outputs"].items()},
            dict(e.get("expect", {})),
            e.get("saturations"),
        )
        cases.append(case)
    return cases


def case_differences(want: Case, got: Case) -> list[str]:
    """What differs between two versions of one case (empty when they are identical)."""
    diffs = []
    for what in ("inputs", "outputs"):
        a, b = getattr(want, what), getattr(got, what)
        if set(a) != set(b):
            diffs.append(f"{what}: {sorted(a)} != {sorted(b)}")
            continue
        for name in a:
            x, y = np.asarray(a[name]), np.asarray(b[name])
            if x.dtype != y.dtype or x.shape != y.shape or not np.array_equal(x, y):
                diffs.append(
                    f"{what}.{name}: {x.dtype}{list(x.shape)} vs {y.dtype}{list(y.shape)}"
                    + ("" if x.shape != y.shape else f", {int(np.count_nonzero(x != y))} value(s) differ")
                )
    for what in ("precision", "op", "spec", "rules", "description", "params", "floats", "expect", "saturations"):
        if getattr(want, what) != getattr(got, what):
            diffs.append(f"{what}: {getattr(want, what)!r} != {getattr(got, what)!r}")
    return diffs
