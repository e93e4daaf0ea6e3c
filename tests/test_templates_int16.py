"""INT16 operator templates alone (templates/int16/) vs their golden Numba kernels.

Each op template is rendered with the shared primitives (stdint and ap flavours), called on
random cases (random dimensions, shifts, weights from small to full int16 range, int32
biases, LUT formats, scan/mul/add shifts of both signs) and on the extremes (all +max, all
-max, zeros, alternating), compiled with g++ (the generated projects' flags) and run; every
output element must equal intsim.kernels_int16 (docs/quant-spec.md section 2). All cases of
one flavour are one program: one compile per flavour.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from codegen.emission import tap_major_values
from codegen.emit_int16 import OP_TEMPLATES, acc_bits
from codegen.project import NPY_HEADER, make_env
from intsim import kernels_int16 as K
from intsim.lut import IDENTITY_ABOVE_RANGE, exp_decay_table, int16_table, int16_table_clamped
from intsim.spec_kit import read_kit
from tests.cpp_harness import compile_program

I16 = np.int16
EXP = exp_decay_table()
# The op templates under test: one per INT16 registry row (codegen/emit_int16.py EMIT16).
OPS = [t.split("/")[-1][: -len(".h.j2")] for t in OP_TEMPLATES]
N_RANDOM = 6  # random cases per op, on top of the fixed ones
EXTREMES = ("max", "min", "zeros", "alternating")


@dataclass
class Case:
    op: str
    func: str
    ints: list  # (name, value) of the CFG struct
    acc_bits: int | None
    consts: list  # (name, ctype, array)
    inputs: list  # int16 [B, C, L] arrays
    expected: np.ndarray  # golden int16 [B, C_out, L_out]
    n_sat: int


def batch(rng, c, length, lo=-32768, hi=32767, n_random=2):
    """[n_random + 4, c, length]: random codes in [lo, hi], then the four extremes."""
    rand = rng.integers(lo, hi + 1, (n_random, c, length))
    alt = np.where((np.arange(c)[:, None] + np.arange(length)) % 2 == 0, 32767, -32768)
    ext = np.stack([np.full((c, length), 32767), np.full((c, length), -32768), np.zeros((c, length)), alt])
    return np.concatenate([rand, ext]).astype(I16)


def weights(rng, shape, full: bool):
    lim = 32767 if full else 300
    w = rng.integers(-lim, lim + 1, shape)
    if full:  # make the extremes appear
        w.flat[0], w.flat[-1] = -32768, 32767
    return w.astype(I16)


def weight_rom(op: str, w: np.ndarray) -> np.ndarray:
    """The weight table as the generator emits it: [C][K] taps of a dwconv tap-major ([K][C])."""
    return tap_major_values(w) if op == "dwconv" else w


def conv_case(rng, op, i):
    full = i % 2 == 1
    c_in, c_out = int(rng.integers(1, 7)), int(rng.integers(1, 7))
    k = 1 if op == "conv1x1" else int(rng.integers(1, 5))
    stride = int(rng.integers(1, 4)) if op == "conv_kx1" else 1
    length = k + int(rng.integers(0, 9))
    if op == "dwconv":
        c_out = c_in
    shift = int(rng.integers(0, 31 if full else 16))
    x = batch(rng, c_in, length)
    b = rng.integers(-(2**31), 2**31, c_out) if full else rng.integers(-5000, 5000, c_out)
    b = b.astype(np.int64)
    if op == "conv_kx1":
        w = weights(rng, (c_out, c_in, k), full)
        y, n = K.conv_kx1_int16(x, w, b, stride, shift)
        t_out = (length - k) // stride + 1
        ints = [("C_IN", c_in), ("L_IN", length), ("C_OUT", c_out), ("L_OUT", t_out), ("K", k), ("S", stride)]
        w_c = w.reshape(c_out, -1)
    elif op == "conv1x1":
        w = weights(rng, (c_out, c_in), full)
        y, n = K.conv1x1_int16(x, w, b, shift)
        ints = [("C_IN", c_in), ("C_OUT", c_out), ("L", length)]
        w_c = w
    else:
        w = weights(rng, (c_in, k), full)
        y, n = K.dwconv_int16(x, w, b, shift)
        ints = [("C", c_in), ("L", length), ("K", k)]
        w_c = w
    return Case(
        op,
        op,
        ints + [("SHIFT", shift)],
        acc_bits(w_c, b),
        [("w", "int16_t", weight_rom(op, w_c)), ("b", "int32_t", b.astype(np.int32))],
        [x],
        y,
        n,
    )


def rmsnorm_case(rng, i):
    d, length = int(rng.integers(1, 9)), int(rng.integers(1, 6))
    x = batch(rng, d, length)
    g = weights(rng, (d,), full=i % 2 == 1)
    eps_q = int(rng.integers(1, 2**20)) if i else 1
    shift = int(rng.integers(17, 48))
    y, n = K.rmsnorm_int16(x, g, np.int64(eps_q), shift)
    ints = [
        ("D", d),
        ("L", length),
        ("EPS_Q", eps_q),
        ("RMS_EXTRA_BITS", K.RMS_EXTRA_BITS),
        ("RMS_INV_BITS", K.RMS_INV_BITS),
        ("SHIFT", shift),
    ]
    return Case("rmsnorm", "rmsnorm", ints, None, [("g", "int16_t", g)], [x], y, n)


def lut_case(rng, i):
    func = ("sigmoid", "silu", "softplus")[i % 3]
    f_x, f_y = int(rng.integers(0, 16)), int(rng.integers(0, 16))
    c, length = int(rng.integers(1, 5)), int(rng.integers(1, 9))
    x = batch(rng, c, length)
    table = int16_table(func, f_y)
    identity = func in IDENTITY_ABOVE_RANGE
    y, n = K.lut_int16(x, table, f_x - 8, identity, f_x - f_y, int16_table_clamped(func, f_y))
    ints = [
        ("C", c),
        ("L", length),
        ("ADDR_SHIFT", f_x - 8),
        ("IDENTITY_SHIFT", f_x - f_y),
        ("IS_SILU", int(identity)),
        ("LUT_OFFSET", K.LUT_OFFSET),
        ("LUT_SIZE", K.LUT_LAST + 1),
    ]
    return Case("lut_activation", "lut_activation", ints, None, [("table", "int16_t", table)], [x], y, n)


def scan_case(rng, i):
    e, t = int(rng.integers(1, 7)), int(rng.integers(1, 12))
    lam_frac = int(rng.integers(0, 16))
    u_shift = int(rng.integers(-15, 16))
    lam = rng.integers(0, 2**lam_frac + 1, (6, e, t))
    lam[0], lam[1] = 0, 2**lam_frac  # no decay / no input
    u = batch(rng, e, t)
    y, n = K.scan_int16(lam.astype(I16), u, lam_frac, u_shift)
    return Case(
        "scan",
        "scan",
        # lam in [0, 2^lam_frac] here: the 32-bit step where it fits (odd cases), else int64
        [("E", e), ("T", t), ("LAM_FRAC", lam_frac), ("U_SHIFT", u_shift), ("LAM_BOUNDED", i % 2)],
        None,
        [],
        [lam.astype(I16), u],
        y,
        n,
    )


S6_SHIFTS = ("ADDR_SHIFT", "H_UP", "P_UP", "H_SHIFT", "Y_UP_C", "Y_UP_D", "Y_SHIFT")


def s6_case_from(delta, x, bm, cm, a, d, shifts, expected, n_sat) -> Case:
    ints = [("E", a.shape[0]), ("N", a.shape[1]), ("T", x.shape[2]), ("EXP_SIZE", EXP.size)]
    ints += list(zip(S6_SHIFTS, shifts, strict=True))
    return Case(
        "s6_scan",
        "s6_scan",
        ints,
        None,
        [("a", "int16_t", a), ("d", "int16_t", d), ("exp", "int16_t", EXP)],
        [delta, x, bm, cm],
        expected,
        n_sat,
    )


def s6_case(rng, i):
    """Spec 2.12 with random shifts in their legal ranges (odd cases: full-scale operands, saturating)."""
    e, n_st, t = int(rng.integers(1, 5)), int(rng.integers(1, 6)), int(rng.integers(1, 10))
    lim = 32767 if i % 2 else 700
    delta = batch(rng, e, t, 0, lim)
    x, bm, cm = batch(rng, e, t, -lim, lim), batch(rng, n_st, t, -lim, lim), batch(rng, n_st, t, -lim, lim)
    a = rng.integers(-lim, 1, (e, n_st)).astype(I16)
    d = weights(rng, (e,), i % 2 == 1)
    shifts = (
        int(rng.integers(-8, 23)),
        int(rng.integers(0, 17)),
        int(rng.integers(0, 17)),
        int(rng.integers(14, 31)),
        int(rng.integers(0, 5)),
        int(rng.integers(0, 15)),
        int(rng.integers(8, 41)),
    )
    y, n = K.s6_scan_int16(delta, x, bm, cm, a, d, EXP, *shifts)
    return s6_case_from(delta, x, bm, cm, a, d, shifts, y, n)


def binary_case(rng, op, i):
    c, length = int(rng.integers(1, 6)), int(rng.integers(1, 9))
    a, b = batch(rng, c, length), batch(rng, c, length)[::-1].copy()
    if op == "mul":
        shift = int(rng.integers(-15, 31))
        y, n = K.mul_int16(a, b, shift)
        ints = [("C", c), ("L", length), ("SHIFT", shift)]
    else:
        a_up, b_up = int(rng.integers(0, 16)), int(rng.integers(0, 16))
        shift = int(rng.integers(-15, 31))
        y, n = K.add_int16(a, b, a_up, b_up, shift)
        ints = [("C", c), ("L", length), ("A_UP", a_up), ("B_UP", b_up), ("SHIFT", shift)]
    return Case(op, op, ints, None, [], [a, b], y, n)


def revin_case(rng, op, i):
    """revin.h.j2 holds both RevIN ops: even cases revin_norm, odd cases revin_denorm (forecast as
    [C*n, 1] or [C, n]); eps_q from 1 to 2^30 (spec 2.10)."""
    c, length = int(rng.integers(1, 6)), int(rng.integers(1, 10))
    x = batch(rng, c, length)
    eps_q = 1 if i < 2 else int(rng.integers(1, 2**30))
    base = [("C", c), ("L", length), ("EPS_Q", eps_q), ("REVIN_EXTRA_BITS", K.REVIN_EXTRA_BITS)]
    if i % 2 == 0:
        shift = int(rng.integers(17, 33))
        y, n = K.revin_norm_int16(x, np.int64(eps_q), shift)
        ints = base + [("REVIN_INV_BITS", K.REVIN_INV_BITS), ("SHIFT", shift)]
        return Case("revin", "revin_norm", ints, None, [], [x], y, n)
    per = int(rng.integers(1, 5))
    rows, cols = (c * per, 1) if i % 4 == 1 else (c, per)
    fc = batch(rng, rows, cols)
    mean_up, shift = int(rng.integers(8, 24)), int(rng.integers(-7, 39))
    y, n = K.revin_denorm_int16(fc, x, np.int64(eps_q), mean_up, shift)
    ints = base + [("R", rows), ("M", cols), ("MEAN_UP", mean_up), ("SHIFT", shift)]
    return Case("revin", "revin_denorm", ints, None, [], [fc, x], y, n)


# template -> case builder (rng, template, i); a template without one fails make_cases
CASE_BUILDERS = {
    "conv_kx1": conv_case,
    "conv1x1": conv_case,
    "dwconv": conv_case,
    "rmsnorm": lambda rng, op, i: rmsnorm_case(rng, i),
    "lut_activation": lambda rng, op, i: lut_case(rng, i),
    "scan": lambda rng, op, i: scan_case(rng, i),
    "mul": binary_case,
    "add": binary_case,
    "revin": revin_case,
    "s6_scan": lambda rng, op, i: s6_case(rng, i),
}


def kit_cases() -> list[Case]:
    """The INT16 operator vectors of the conformance kit (tests/spec_vectors, spec section 7),
    expected = the committed outputs: the templates must reproduce the kit."""
    cases = []
    for kc in read_kit(Path(__file__).resolve().parent / "spec_vectors"):
        if kc.precision != "int16":
            continue
        a, p, op, y = kc.inputs, kc.params, kc.op, kc.outputs["y"]
        c_out, l_out = y.shape[1:]
        if op in ("conv_kx1", "conv1x1", "dwconv"):
            w, b = a["weight"], a["bias"]
            c_in, l_in = a["x"].shape[1:]
            ints = {
                "conv_kx1": [
                    ("C_IN", c_in),
                    ("L_IN", l_in),
                    ("C_OUT", c_out),
                    ("L_OUT", l_out),
                    ("K", w.shape[-1]),
                    ("S", p.get("stride", 1)),
                ],
                "conv1x1": [("C_IN", c_in), ("C_OUT", c_out), ("L", l_out)],
                "dwconv": [("C", c_out), ("L", l_out), ("K", w.shape[-1])],
            }[op]
            w_c = w.reshape(w.shape[0], -1)
            cases.append(
                Case(
                    op,
                    op,
                    ints + [("SHIFT", p["shift"])],
                    acc_bits(w_c, b),
                    [("w", "int16_t", weight_rom(op, w_c)), ("b", "int32_t", b)],
                    [a["x"]],
                    y,
                    kc.saturations,
                )
            )
        elif op == "rmsnorm":
            ints = [
                ("D", c_out),
                ("L", l_out),
                ("EPS_Q", p["eps_q"]),
                ("RMS_EXTRA_BITS", K.RMS_EXTRA_BITS),
                ("RMS_INV_BITS", K.RMS_INV_BITS),
                ("SHIFT", p["shift"]),
            ]
            cases.append(Case(op, op, ints, None, [("g", "int16_t", a["gain"])], [a["x"]], y, kc.saturations))
        elif op == "s6_scan":
            cases.append(
                s6_case_from(
                    a["delta"],
                    a["x"],
                    a["B"],
                    a["C"],
                    a["A"],
                    a["D"],
                    [p[k.lower()] for k in S6_SHIFTS],
                    y,
                    kc.saturations,
                )
            )
        elif op in ("sigmoid", "silu", "softplus"):
            ints = [
                ("C", c_out),
                ("L", l_out),
                ("ADDR_SHIFT", p["addr_shift"]),
                ("IDENTITY_SHIFT", p["identity_shift"]),
                ("IS_SILU", int(op in IDENTITY_ABOVE_RANGE)),
                ("LUT_OFFSET", K.LUT_OFFSET),
                ("LUT_SIZE", K.LUT_LAST + 1),
            ]
            cases.append(
                Case(
                    "lut_activation",
                    "lut_activation",
                    ints,
                    None,
                    [("table", "int16_t", a["table"])],
                    [a["x"]],
                    y,
                    kc.saturations,
                )
            )
        elif op == "scan":
            # the kit's lam takes every int16 value (out of range included): the int64 step
            ints = [
                ("E", c_out),
                ("T", l_out),
                ("LAM_FRAC", p["lam_frac"]),
                ("U_SHIFT", p["u_shift"]),
                ("LAM_BOUNDED", 0),
            ]
            cases.append(Case(op, op, ints, None, [], [a["lam"], a["u"]], y, kc.saturations))
        elif op == "revin_norm":
            ints = [
                ("C", c_out),
                ("L", l_out),
                ("EPS_Q", p["eps_q"]),
                ("REVIN_EXTRA_BITS", K.REVIN_EXTRA_BITS),
                ("REVIN_INV_BITS", K.REVIN_INV_BITS),
                ("SHIFT", p["shift"]),
            ]
            cases.append(Case("revin", op, ints, None, [], [a["x"]], y, kc.saturations))
        elif op == "revin_denorm":
            c_in, l_in = a["x"].shape[1:]
            ints = [
                ("C", c_in),
                ("L", l_in),
                ("EPS_Q", p["eps_q"]),
                ("REVIN_EXTRA_BITS", K.REVIN_EXTRA_BITS),
                ("R", c_out),
                ("M", l_out),
                ("MEAN_UP", p["mean_up"]),
                ("SHIFT", p["shift"]),
            ]
            cases.append(Case("revin", op, ints, None, [], [a["f"], a["x"]], y, kc.saturations))
        else:
            extra = [("A_UP", p["a_up"]), ("B_UP", p["b_up"])] if op == "add" else []
            cases.append(
                Case(
                    op,
                    op,
                    [("C", c_out), ("L", l_out)] + extra + [("SHIFT", p["shift"])],
                    None,
                    [],
                    [a["a"], a["b"]],
                    y,
                    kc.saturations,
                )
            )
    return cases


def make_cases(seed=1234) -> list[Case]:
    rng = np.random.default_rng(seed)
    missing = [op for op in OPS if op not in CASE_BUILDERS]
    assert not missing, f"INT16 templates without test cases: {missing}"
    return [CASE_BUILDERS[op](rng, op, i) for op in OPS for i in range(N_RANDOM)] + kit_cases()


PROGRAM = r"""
#include <string>
#include <vector>
#include "primitives.h"
typedef i16_t data_t;
{% for h in headers %}
#include "ops/{{ h }}"
{% endfor %}
#include "npy.h"

// the kernels' activations are time-major [L][C]; the NPY files [B, C, L]
template<int L, int C> static void fill(data_t (&a)[L][C], const std::vector<int16_t>& v, long b) {
    for (int c = 0; c < C; c++) for (int l = 0; l < L; l++) a[l][c] = data_t(v[(b * C + c) * L + l]);
}
template<int L, int C> static void store(const data_t (&a)[L][C], std::vector<int16_t>& v, long b) {
{% if types == "ap" %}
    for (int c = 0; c < C; c++) for (int l = 0; l < L; l++) v[(b * C + c) * L + l] = (int16_t)a[l][c].to_int();
{% else %}
    for (int c = 0; c < C; c++) for (int l = 0; l < L; l++) v[(b * C + c) * L + l] = a[l][c];
{% endif %}
}
{% for c in cases %}

struct cfg_{{ loop.index0 }} {
{% for n, v in c.ints %}
    static const int {{ n }} = {{ v }};
{% endfor %}
{% if c.acc_bits %}
    typedef acc_int<{{ c.acc_bits }}>::type acc_t;
{% endif %}
};
{% set i = loop.index0 %}
{% for name, ctype, arr in c.consts %}
static const {{ ctype }} {{ name }}_{{ i }}{{ arr | c_dims }} = {{ arr | c_initializer }};
{% endfor %}
static void run_{{ i }}(const std::string& dir) {
    std::vector<long> shape;
{% for x in c.inputs %}
    const std::vector<int16_t> in{{ loop.index0 }} = npy::load_or_exit<int16_t>(
        dir + "/{{ i }}_in{{ loop.index0 }}.npy", "<i2", {-1, {{ x.shape[1] }}, {{ x.shape[2] }}}, shape);
{% endfor %}
    const long n = shape[0];
    std::vector<int16_t> out(n * {{ c.expected.shape[1] }} * {{ c.expected.shape[2] }});
{% for x in c.inputs %}
    static data_t x{{ loop.index0 }}[{{ x.shape[2] }}][{{ x.shape[1] }}];
{% endfor %}
    static data_t y[{{ c.expected.shape[2] }}][{{ c.expected.shape[1] }}];
    for (long b = 0; b < n; b++) {
{% for x in c.inputs %}
        fill(x{{ loop.index0 }}, in{{ loop.index0 }}, b);
{% endfor %}
        {{ c.func }}<cfg_{{ i }}>({% for x in c.inputs %}x{{ loop.index0 }}, {% endfor %}
            {%- for name, ctype, arr in c.consts %}{{ name }}_{{ i }}, {% endfor %}y);
        store(y, out, b);
    }
    std::string err;
    if (!npy::save(dir + "/{{ i }}_out.npy", "<i2", {n, {{ c.expected.shape[1] }}, {{ c.expected.shape[2] }}},
                   out, err)) {
        std::fprintf(stderr, "%s\n", err.c_str());
        std::exit(2);
    }
}
{% endfor %}

int main(int argc, char** argv) {
    const std::string dir = argc > 1 ? argv[1] : ".";
{% for c in cases %}
    run_{{ loop.index0 }}(dir);
{% endfor %}
    return 0;
}
"""


def render_program(cases, types: str) -> dict[str, str]:
    env = make_env()
    ctx = {"types": types, "precision": "int16"}
    files = {
        "primitives.h": env.get_template("common/primitives.h.j2").render(ctx),
        "types.h": '#include "primitives.h"\ntypedef i16_t data_t;\n',
        "npy.h": NPY_HEADER.read_text(),
    }
    headers = []
    for tpl in OP_TEMPLATES:
        name = tpl.split("/")[-1][:-3]
        files[f"ops/{name}"] = env.get_template(tpl).render(ctx)
        headers.append(name)
    prog = env.from_string(PROGRAM)
    files["main.cpp"] = prog.render(cases=cases, headers=headers, types=types)
    return files


@pytest.fixture(scope="module", params=["stdint", "ap"])
def outputs(request, tmp_path_factory):
    """(cases, {case index: C++ output}) for one flavour: one compile, one run."""
    cases = make_cases()
    exe = compile_program(render_program(cases, request.param), types=request.param, name=f"int16_ops_{request.param}")
    data = tmp_path_factory.mktemp(f"ops_{request.param}")
    for i, c in enumerate(cases):
        for j, x in enumerate(c.inputs):
            np.save(data / f"{i}_in{j}.npy", x)
    proc = subprocess.run([str(exe), str(data)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return request.param, cases, {i: np.load(data / f"{i}_out.npy") for i in range(len(cases))}


@pytest.mark.parametrize("op", OPS)
def test_op_template_matches_golden_kernel(outputs, op):
    types, cases, got = outputs
    checked = 0
    for i, c in enumerate(cases):
        if c.op != op:
            continue
        assert got[i].shape == c.expected.shape, (types, op, i)
        bad = np.argwhere(got[i] != c.expected)
        assert bad.size == 0, (
            f"{types} {op} case {i} ({dict(c.ints)}): first mismatch at {tuple(bad[0])}: "
            f"C++ {got[i][tuple(bad[0])]}, golden {c.expected[tuple(bad[0])]}"
        )
        checked += got[i].size
    assert checked > 0


def test_cases_cover_saturation_and_both_accumulator_widths():
    cases = make_cases()
    for op in OPS:
        assert any(c.n_sat > 0 for c in cases if c.op == op), f"{op}: no case saturates"
    conv_bits = [c.acc_bits for c in cases if c.acc_bits]
    assert min(conv_bits) <= 32 < max(conv_bits)  # int32 and int64 accumulators in stdint
    assert {
        sign
        for c in cases
        if c.op in ("mul", "add", "scan")
        for n, v in c.ints
        if n in ("SHIFT", "U_SHIFT")
        for sign in [v < 0]
    } == {True, False}


def test_acc_bits_bounds_every_partial_sum():
    w = np.array([[32767, -32768], [1, 1]], I16)
    b = np.array([5, -7])
    bound = 5 + 32768 * (32767 + 32768)
    assert acc_bits(w, b) == bound.bit_length() + 1
    assert acc_bits(np.zeros((1, 3), I16), np.zeros(1)) == 1
