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

from intsim import fixedpoint as fp
from intsim import kernels_int8 as K8
from intsim import kernels_int16 as K16
from intsim.graph import write_json_atomic
from intsim.int8 import asymmetric_params, lower_int8
from intsim.int16 import lower_int16
from intsim.lut import IDENTITY_ABOVE_RANGE, int8_table, int8_table_clamped, int16_table, int16_table_clamped
from intsim.small_graph import small_graph

KIT_FORMAT = "cmamba-hls-spec-vectors"
KIT_VERSION = 1
INDEX = "index.json"
CASE_LIST = "cases.txt"      # "id precision op" per line: the index for readers without JSON
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


def _primitive(case: Case) -> tuple[dict, int | None]:
    a, p, op = case.inputs, case.params, case.op
    i64 = np.int64
    if op in ("rne_shift", "shift_round"):
        func = fp.rne_shift if op == "rne_shift" else fp.shift_round
        return {"y": np.array(_elementwise(lambda x, n: func(i64(x), n), a["x"], a["n"]), i64)}, None
    if op == "rne_div":
        return {"q": np.array(_elementwise(lambda x, d: fp.rne_div(i64(x), i64(d)), a["num"], a["den"]), i64)}, None
    if op == "isqrt_rne":
        return {"r": np.array(_elementwise(lambda v: fp.isqrt_rne(i64(v)), a["v"]), i64)}, None
    if op == "saturate":
        pairs = _elementwise(lambda x, b: fp.saturate(i64(x), b), a["x"], a["bits"])
    elif op == "requantize":
        pairs = _elementwise(lambda acc, m0, sh, z: fp.requantize(i64(acc), i64(m0), sh, i64(z), p["bits"]),
                             a["acc"], a["m0"], a["shift"], a["zp"])
    else:
        raise ValueError(f"kit: unknown primitive '{op}'")
    y = np.array([v for v, _ in pairs], i64)
    flags = np.array([bool(s) for _, s in pairs], np.uint8)
    return {"y": y, "saturated": flags}, int(flags.sum())


def _int16(case: Case) -> tuple[dict, int]:
    a, p, op = case.inputs, case.params, case.op
    if op == "conv1x1":
        y, n = K16.conv1x1_int16(a["x"], a["weight"], a["bias"].astype(np.int64), p["shift"])
    elif op == "conv_kx1":
        y, n = K16.conv_kx1_int16(a["x"], a["weight"], a["bias"].astype(np.int64), p["stride"], p["shift"])
    elif op == "dwconv":
        y, n = K16.dwconv_int16(a["x"], a["weight"], a["bias"].astype(np.int64), p["shift"])
    elif op == "rmsnorm":
        y, n = K16.rmsnorm_int16(a["x"], a["gain"], np.int64(p["eps_q"]), p["shift"])
    elif op in ("sigmoid", "silu", "softplus"):
        y, n = K16.lut_int16(a["x"], a["table"], p["addr_shift"], op in IDENTITY_ABOVE_RANGE, p["identity_shift"],
                             a["clamped"])
    elif op == "s6_scan":
        y, n = K16.s6_scan_int16(a["delta"], a["x"], a["B"], a["C"], a["A"], a["D"], a["table"],
                                 *(p[k] for k in K16.S6.params))
    elif op == "scan":
        y, n = K16.scan_int16(a["lam"], a["u"], p["lam_frac"], p["u_shift"])
    elif op == "mul":
        y, n = K16.mul_int16(a["a"], a["b"], p["shift"])
    elif op == "add":
        y, n = K16.add_int16(a["a"], a["b"], p["a_up"], p["b_up"], p["shift"])
    else:
        raise ValueError(f"kit: unknown int16 op '{op}'")
    return {"y": y}, int(n)


def _int8(case: Case) -> tuple[dict, int]:
    a, p, op = case.inputs, case.params, case.op
    if op in ("conv1x1", "conv_kx1", "dwconv"):
        conv = (a["x"], p["x_zp"], a["weight"], a["bias"].astype(np.int64), a["m0"].astype(np.int64),
                a["shift"].astype(np.int64), p["y_zp"])
        if op == "conv1x1":
            y, n = K8.conv1x1_int8(*conv)
        elif op == "dwconv":
            y, n = K8.dwconv_int8(*conv)
        else:
            y, n = K8.conv_kx1_int8(*conv, p["stride"])
    elif op == "rmsnorm":
        y, n = K8.rmsnorm_int8(a["x"], p["x_zp"], a["gain"], np.int64(p["eps_q"]), p["m0"], p["shift"], p["y_zp"])
    elif op in ("sigmoid", "silu", "softplus"):
        y, n = K8.lut_int8(a["x"], a["table"], a["clamped"])
    elif op == "s6_scan":
        y, n = K8.s6_scan_int8(a["delta"], p["d_zp"], a["x"], p["x_zp"], a["B"], p["b_zp"], a["C"], p["c_zp"], a["A"],
                               a["m_a"].astype(np.int64), a["sh_a"].astype(np.int64), a["D"], a["table"],
                               p["m_h"], p["m_k"], p["shift"], p["y_zp"])
    elif op == "scan":
        y, n = K8.scan_int8(a["lam"], a["u"], p["u_zp"], p["m0"], p["shift"], p["y_zp"])
    elif op == "mul":
        y, n = K8.mul_int8(a["a"], p["a_zp"], a["b"], p["b_zp"], p["m0"], p["shift"], p["y_zp"])
    elif op == "add":
        y, n = K8.add_int8(a["a"], p["a_zp"], p["m_a"], a["b"], p["b_zp"], p["m_b"], p["shift"], p["y_zp"])
    else:
        raise ValueError(f"kit: unknown int8 op '{op}'")
    return {"y": y}, int(n)


def _int8_lowered(op: str, case: Case):
    """Lower a one-operator INT8 graph built from the case's float inputs; returns its step."""
    f, p, a = case.floats, case.params, case.inputs
    if op in ("mul", "add", "scan"):       # two inputs: the second comes from a helper layer
        first = ("lam", "sigmoid") if op == "scan" else ("b", "silu")
        layers = [{"name": first[0], "op": first[1], "inputs": ["input"]},
                  {"name": "y", "op": op, "inputs": [first[0], "input"] if op == "scan" else ["input", first[0]]}]
        if op == "scan":
            qp = {"input": (f["s_u"], 0), "lam": (1.0 / 256.0, -128), "y": (f["s_y"], 0)}
        else:
            qp = {"input": (f["s_a"], 0), "b": (f["s_b"], 0), "y": (f["s_y"], 0)}
        graph = small_graph((1, 1), layers, int8=qp)
    elif op in ("conv1x1", "conv_kx1", "dwconv"):
        w = a["weight"]
        attrs = {k: p[k] for k in ("kernel", "stride") if k in p}
        length = p.get("length", 1)
        channels = w.shape[0] if op == "dwconv" else w.shape[1]
        graph = small_graph((channels, length), [{"name": "y", "op": op, "inputs": ["input"], "attrs": attrs,
                                                  "weights": {"weight": w, "bias": a["bias"]}}],
                            int8={"input": (f["s_x"], p["z_x"]), "y": (f["s_y"], p["z_y"])})
    elif op == "rmsnorm":
        g = a["gain"]
        graph = small_graph((g.size, 1), [{"name": "y", "op": op, "inputs": ["input"], "weights": {"weight": g},
                                           "attrs": {"eps": f["eps"]}}],
                            int8={"input": (f["s_x"], p["z_x"]), "y": (f["s_y"], p["z_y"])})
    else:
        raise ValueError(f"kit: no INT8 host derivation for '{op}'")
    return lower_int8(graph).step("y")


def _host(case: Case) -> tuple[dict, dict]:
    """(output arrays, expected scalars) of a host-side derivation."""
    a, p, f, op = case.inputs, case.params, case.floats, case.op
    if op == "quantize_multiplier":
        pairs = [fp.quantize_multiplier(float(m)) for m in a["M"]]
        return {"m0": np.array([m for m, _ in pairs], np.int64),
                "shift": np.array([s for _, s in pairs], np.int64)}, {}
    if op == "quantize_q":
        q = [fp.quantize_q(np.array([v]), p["frac_bits"], p["bits"]) for v in a["x"]]
        return {"q": np.array([int(v[0][0]) for v in q], np.int64),
                "saturated": np.array([v[1] for v in q], np.uint8)}, {}
    if op == "int16_table":
        func = ("sigmoid", "silu")[p["is_silu"]]
        return {"table": int16_table(func, p["frac_bits"]),
                "clamped": int16_table_clamped(func, p["frac_bits"]).astype(np.uint8)}, {}
    if op == "int8_table":
        args = (("sigmoid", "silu")[p["is_silu"]], f["s_x"], p["z_x"], f["s_y"], p["z_y"])
        return {"table": int8_table(*args), "clamped": int8_table_clamped(*args).astype(np.uint8)}, {}
    if op == "int8_activation_params":
        pairs = [asymmetric_params(lo, hi) for lo, hi in zip(a["lo"].tolist(), a["hi"].tolist())]
        return {"scale": np.array([s for s, _ in pairs], np.float64),
                "zero_point": np.array([z for _, z in pairs], np.int64)}, {}
    if op == "int16_rmsnorm":
        graph = small_graph((a["gain"].size, 1), [{"name": "y", "op": "rmsnorm", "inputs": ["input"],
                                                   "weights": {"weight": a["gain"]}, "attrs": {"eps": f["eps"]}}],
                            int16={"tensors": {"input": p["f_x"], "y": p["f_y"]}, "weights": {"y.weight": p["f_g"]}})
        q = lower_int16(graph).step("y").params
        return {"gain_q": q.gain}, {"eps_q": q.eps_q, "shift": q.shift}
    st = _int8_lowered(op.removeprefix("int8_"), case)
    q = st.params
    if op in ("int8_conv1x1", "int8_conv_kx1", "int8_dwconv"):
        return {"weight_q": q.weight, "bias_q": q.bias.astype(np.int32), "m0": q.m0.astype(np.int32),
                "shift": q.shift.astype(np.int8)}, {}
    if op == "int8_add":
        return {}, {"m_a": q.m_a, "m_b": q.m_b, "shift": q.shift}
    if op == "int8_rmsnorm":
        return {"gain_q": q.gain}, {"eps_q": q.eps_q, "m0": q.m0, "shift": q.shift}
    return {}, {"m0": q.m0, "shift": q.shift}            # int8_mul, int8_scan


def run_case(case: Case) -> Case:
    """Fill `outputs`, `expect` and `saturations` of `case` from its inputs (golden model)."""
    expect: dict = {}
    if case.precision == "primitive":
        outputs, sat = _primitive(case)
    elif case.precision == "int16":
        outputs, sat = _int16(case)
    elif case.precision == "int8":
        outputs, sat = _int8(case)
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
    entry = {"id": case.id, "precision": case.precision, "op": case.op, "spec": case.spec,
             "rules": list(case.rules), "description": case.description,
             "params": {k: int(v) for k, v in case.params.items()},
             "floats": {k: float(v) for k, v in case.floats.items()},
             "floats_hex": {k: float(v).hex() for k, v in case.floats.items()},
             "inputs": files(case.inputs), "outputs": files(case.outputs)}
    if case.expect:
        entry["expect"] = case.expect
    if case.saturations is not None:
        entry["saturations"] = case.saturations
    return entry


def write_kit(cases: list[Case], out_dir) -> Path:
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
                for rel in list(entry["inputs"].values()) + list(entry["outputs"].values()) + [f"{entry['id']}/{PARAMS}"]:
                    (out / rel).unlink(missing_ok=True)
                if (out / entry["id"]).is_dir() and not any((out / entry["id"]).iterdir()):
                    (out / entry["id"]).rmdir()
    for case in cases:
        folder = out / case.id
        folder.mkdir(exist_ok=True)
        for name, arr in {**case.inputs, **case.outputs}.items():
            arr = np.ascontiguousarray(arr)
            if arr.dtype.newbyteorder("<") not in KIT_DTYPES and arr.dtype not in KIT_DTYPES:
                raise ValueError(f"kit: case {case.id}: array '{name}' has dtype {arr.dtype}")
            np.save(folder / f"{name}.npy", arr, allow_pickle=False)
        (folder / PARAMS).write_text("".join(f"{k} {int(v)}\n" for k, v in case.params.items()))
    (out / CASE_LIST).write_text("".join(f"{c.id} {c.precision} {c.op}\n" for c in cases))
    write_json_atomic(out / INDEX, {"format": KIT_FORMAT, "version": KIT_VERSION, "spec": "docs/quant-spec.md",
                                    "generator": "python -m intsim.spec_vectors",
                                    "cases": [_entry(c) for c in cases]})
    return out


def read_kit(kit_dir) -> list[Case]:
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
        case = Case(e["id"], e["precision"], e["op"], e["spec"], tuple(e["rules"]), e["description"],
                    {k: np.load(root / v, allow_pickle=False) for k, v in e["inputs"].items()},
                    dict(e["params"]), floats,
                    {k: np.load(root / v, allow_pickle=False) for k, v in e["outputs"].items()},
                    dict(e.get("expect", {})), e.get("saturations"))
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
                diffs.append(f"{what}.{name}: {x.dtype}{list(x.shape)} vs {y.dtype}{list(y.shape)}"
                             + ("" if x.shape != y.shape else f", {int(np.count_nonzero(x != y))} value(s) differ"))
    for what in ("precision", "op", "spec", "rules", "description", "params", "floats", "expect", "saturations"):
        if getattr(want, what) != getattr(got, what):
            diffs.append(f"{what}: {getattr(want, what)!r} != {getattr(got, what)!r}")
    return diffs
