"""INT8 operator templates alone (templates/int8/) vs their golden Numba kernels.

Every op template is rendered, instantiated on random cases (random dimensions, codes,
zero points, weights, multipliers; extreme inputs; multipliers large enough to saturate),
compiled with g++ and run; each output must equal intsim.kernels_int8 bit for bit
(docs/quant-spec.md section 3). All cases of one type flavour go into one translation
unit: one compile per flavour (stdint, and ap when CMAMBA_HLS_AP_INCLUDE is set), through
the shared C++ test harness (tests/cpp_harness.py: the projects' flags, builds cached).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from codegen.emission import tap_major_values
from codegen.emit_int8 import OP_TEMPLATES
from intsim import kernels_int8 as K8
from intsim.fixedpoint import quantize_multiplier, requantize
from intsim.lut import EXP_FRAC_BITS, exp_decay_table
from intsim.spec_kit import read_kit
from tests.cpp_harness import compile_program, render_primitives, render_template

I8 = np.int8
EXP = exp_decay_table()
N_CASES = 8  # random cases per op (plus the fixed extreme ones)
# header stems in include order: primitives_int8, then the eight op kernels (as codegen emits them)
HEADERS = [t.split("/")[-1][: -len(".h.j2")] for t in OP_TEMPLATES]


@dataclass
class Case:
    """One kernel call: its Cfg struct body, constant input arrays, the call's argument
    pattern ({array} names and `y`), and the golden output with its saturation count."""

    name: str
    func: str
    cfg: str
    arrays: list  # (name, ctype, int array)
    out_shape: tuple
    args: str
    expected: np.ndarray
    n_sat: int


def cpp_array(values: np.ndarray) -> str:
    """Nested C initialiser of an integer array: [[1, -2], [3, 4]] -> {{1, -2}, {3, 4}}."""
    if values.ndim == 1:
        return "{" + ", ".join(str(int(v)) for v in values) + "}"
    return "{" + ", ".join(cpp_array(v) for v in values) + "}"


def case_source(case: Case) -> str:
    ns = f"case_{case.name}"
    lines = [f"namespace {ns} {{", f"struct cfg {{{case.cfg} }};"]
    for name, ctype, values in case.arrays:
        if ctype == "i8_t" and values.ndim == 2:  # an activation [C, L]: the kernels' time-major [L][C]
            values = values.T
        dims = "".join(f"[{d}]" for d in values.shape)
        lines.append(f"static const {ctype} {name}{dims} = {cpp_array(values)};")
    rows, cols = case.out_shape
    args = case.args.format(**{name: name for name, _, _ in case.arrays})
    lines += [
        "static void run() {",
        f"    static i8_t y[{cols}][{rows}];   // time-major",
        f"    {case.func}<cfg>({args});",
        f'    print_codes("{case.name}", &y[0][0], {rows * cols});',
        "}",
        f"}}  // namespace {ns}",
    ]
    return "\n".join(lines)


def render_sources(cases: list[Case], types: str) -> dict[str, str]:
    """The shared primitives, the INT8 headers and one main.cpp calling every case."""
    sources = {"primitives.h": render_primitives(types)}
    for stem in HEADERS:
        sources[f"ops/{stem}.h"] = render_template(f"int8/{stem}.h.j2", types=types, precision="int8")
    src = (
        ["#include <cstdio>"]
        + [f'#include "ops/{stem}.h"' for stem in HEADERS]
        + [
            "static void print_codes(const char* name, const i8_t* y, int n) {",
            '    std::printf("%s", name);',
            '    for (int i = 0; i < n; ++i) std::printf(" %d", int(y[i]));',
            '    std::printf("\\n");',
            "}",
        ]
    )
    src += [case_source(c) for c in cases]
    src += ["int main() {"] + [f"    case_{c.name}::run();" for c in cases] + ["    return 0;", "}"]
    sources["main.cpp"] = "\n".join(src) + "\n"
    return sources


def run_cases(cases: list[Case], types: str) -> dict:
    """Render, compile (one translation unit, the projects' flags), run: case name -> int64 output."""
    exe = compile_program(render_sources(cases, types), types, name=f"int8_templates_{types}")
    run = subprocess.run([str(exe)], capture_output=True, text=True, check=True)
    got = {}
    for line in run.stdout.splitlines():
        name, *vals = line.split()
        got[name] = np.array([int(v) for v in vals], np.int64)
    return {c.name: got[c.name].reshape(c.out_shape[::-1]).T for c in cases}  # time-major -> [C, L]


def _mults(rng, n, lo, hi):
    """Per-channel (m0, shift) from log-uniform real multipliers in [lo, hi]."""
    pairs = [quantize_multiplier(float(m)) for m in np.exp(rng.uniform(np.log(lo), np.log(hi), n))]
    return np.array([m for m, _ in pairs], np.int64), np.array([s for _, s in pairs], np.int64)


def _codes(rng, shape, extreme):
    """int8 codes: uniform, or all-max / all-min / alternating extremes."""
    if extreme == "max":
        return np.full(shape, 127, I8)
    if extreme == "min":
        return np.full(shape, -128, I8)
    if extreme == "alt":
        return np.where(np.indices(shape).sum(axis=0) % 2 == 0, 127, -128).astype(I8)
    return rng.integers(-128, 128, shape).astype(I8)


def _zp(rng):
    return int(rng.integers(-128, 128))


def _cfg(**ints):
    """Body of a CFG struct, typed as params.h types it (long long outside int32)."""
    return "".join(
        f" static const {'int' if -(2**31) <= v < 2**31 else 'long long'} {k} = {int(v)}"
        f"{'' if -(2**31) <= v < 2**31 else 'LL'};"
        for k, v in ints.items()
    )


EXTREMES = (None, None, "max", "min", "alt")
CONV_ARGS = "{x}, {w}, {b}, {m0}, {sh}, y"
CONV_OPS = ("conv_kx1", "conv1x1", "dwconv")
KIT_DIR = Path(__file__).resolve().parent / "spec_vectors"


def conv_cases(rng, idx, extreme):
    cases = []
    c_in, c_out = int(rng.integers(1, 7)), int(rng.integers(1, 7))
    k, s = int(rng.integers(1, 5)), int(rng.integers(1, 4))
    length = k + int(rng.integers(0, 9))
    x = _codes(rng, (c_in, length), extreme)
    x_zp, y_zp = _zp(rng), _zp(rng)
    # typical |acc| is ~5300 sqrt(terms); multipliers aim its output at 2..400 codes
    # (odd cases up to 3000: those saturate)
    hi = 3000.0 if idx % 2 else 400.0
    w = rng.integers(-127, 128, (c_out, c_in, k)).astype(I8)
    b = rng.integers(-(1 << 14), 1 << 14, c_out).astype(np.int64)
    m0, sh = _mults(rng, c_out, 2.0 / (5300 * np.sqrt(c_in * k)), hi / (5300 * np.sqrt(c_in * k)))
    t_out = (length - k) // s + 1
    y, n = K8.conv_kx1_int8(x[None], x_zp, w, b, m0, sh, y_zp, s)
    cfg = _cfg(C_IN=c_in, L_IN=length, C_OUT=c_out, L_OUT=t_out, K=k, S=s, X_ZP=x_zp, Y_ZP=y_zp)
    cases.append(
        Case(
            f"conv_kx1_{idx}",
            "conv_kx1_int8",
            cfg,
            [
                ("x", "i8_t", x),
                ("w", "int8_t", w.reshape(c_out, c_in * k)),
                ("b", "int32_t", b),
                ("m0", "int32_t", m0),
                ("sh", "int8_t", sh),
            ],
            (c_out, t_out),
            CONV_ARGS,
            y[0],
            n,
        )
    )
    w1 = w[:, :, 0].copy()
    y, n = K8.conv1x1_int8(x[None], x_zp, w1, b, m0, sh, y_zp)
    cfg = _cfg(C_IN=c_in, C_OUT=c_out, L=length, X_ZP=x_zp, Y_ZP=y_zp)
    cases.append(
        Case(
            f"conv1x1_{idx}",
            "conv1x1_int8",
            cfg,
            [("x", "i8_t", x), ("w", "int8_t", w1), ("b", "int32_t", b), ("m0", "int32_t", m0), ("sh", "int8_t", sh)],
            (c_out, length),
            CONV_ARGS,
            y[0],
            n,
        )
    )
    wd = rng.integers(-127, 128, (c_in, k)).astype(I8)
    bd = rng.integers(-(1 << 14), 1 << 14, c_in).astype(np.int64)
    md, shd = _mults(rng, c_in, 2.0 / (5300 * np.sqrt(k)), hi / (5300 * np.sqrt(k)))
    y, n = K8.dwconv_int8(x[None], x_zp, wd, bd, md, shd, y_zp)
    cfg = _cfg(C=c_in, L=length, K=k, X_ZP=x_zp, Y_ZP=y_zp)
    cases.append(
        Case(
            f"dwconv_{idx}",
            "dwconv_int8",
            cfg,
            [
                ("x", "i8_t", x),
                ("w", "int8_t", tap_major_values(wd)),
                ("b", "int32_t", bd),
                ("m0", "int32_t", md),
                ("sh", "int8_t", shd),
            ],
            (c_in, length),
            CONV_ARGS,
            y[0],
            n,
        )
    )
    return cases


def rmsnorm_case(rng, idx, extreme):
    d, length = int(rng.integers(1, 40)), int(rng.integers(1, 6))
    x = _codes(rng, (d, length), extreme)
    g = rng.integers(-127, 128, d).astype(I8)
    x_zp, y_zp = _zp(rng), _zp(rng)
    # s_g / s_y spans [0.01, 2]: the larger ones saturate (output ~ g * sqrt(D) codes)
    m0, sh = quantize_multiplier(float(np.exp(rng.uniform(np.log(0.01), np.log(2.0)))))
    shift = sh + K8.RMS_INV_BITS_INT8 - K8.RMS_EXTRA_BITS
    eps_q = int(rng.choice([0, 1, int(rng.integers(0, 1 << 20)), (1 << 31) - 1, 1 << 40]))  # int64 (spec 3.9)
    y, n = K8.rmsnorm_int8(x[None], x_zp, g, np.int64(eps_q), m0, shift, y_zp)
    cfg = _cfg(
        D=d,
        L=length,
        X_ZP=x_zp,
        Y_ZP=y_zp,
        EPS_Q=eps_q,
        RMS_EXTRA_BITS=K8.RMS_EXTRA_BITS,
        RMS_INV_BITS=K8.RMS_INV_BITS_INT8,
        M0=m0,
        SHIFT=shift,
    )
    return [
        Case(
            f"rmsnorm_{idx}",
            "rmsnorm_int8",
            cfg,
            [("x", "i8_t", x), ("g", "int8_t", g)],
            (d, length),
            "{x}, {g}, y",
            y[0],
            n,
        )
    ]


def elementwise_cases(rng, idx, extreme):
    c, length = int(rng.integers(1, 6)), int(rng.integers(1, 12))
    a = _codes(rng, (c, length), extreme)
    b = rng.integers(-128, 128, (c, length)).astype(I8)
    za, zb, zy = _zp(rng), _zp(rng), _zp(rng)
    cases = []
    table = rng.integers(-128, 128, 256).astype(I8)
    y, n = K8.lut_int8(a[None], table, table == 127)  # any flags: C++ does not count
    cases.append(
        Case(
            f"lut_{idx}",
            "lut_int8",
            _cfg(C=c, L=length),
            [("x", "i8_t", a), ("table", "int8_t", table)],
            (c, length),
            "{x}, {table}, y",
            y[0],
            n,
        )
    )
    m0, sh = quantize_multiplier(float(np.exp(rng.uniform(np.log(1e-3), np.log(0.05)))))
    y, n = K8.mul_int8(a[None], za, b[None], zb, m0, sh, zy)
    cases.append(
        Case(
            f"mul_{idx}",
            "mul_int8",
            _cfg(C=c, L=length, A_ZP=za, B_ZP=zb, Y_ZP=zy, M0=m0, SHIFT=sh),
            [("a", "i8_t", a), ("b", "i8_t", b)],
            (c, length),
            "{a}, {b}, y",
            y[0],
            n,
        )
    )
    # add: as lowered (spec 3.8): one shift from the larger multiplier, both rounded to it
    m_a, m_b = (float(np.exp(rng.uniform(np.log(0.05), np.log(2.0)))) for _ in range(2))
    _, sh = quantize_multiplier(max(m_a, m_b))
    ia, ib = int(np.rint(np.ldexp(m_a, sh))), int(np.rint(np.ldexp(m_b, sh)))
    y, n = K8.add_int8(a[None], za, ia, b[None], zb, ib, sh, zy)
    cases.append(
        Case(
            f"add_{idx}",
            "add_int8",
            _cfg(C=c, L=length, A_ZP=za, B_ZP=zb, Y_ZP=zy, M_A=ia, M_B=ib, SHIFT=sh),
            [("a", "i8_t", a), ("b", "i8_t", b)],
            (c, length),
            "{a}, {b}, y",
            y[0],
            n,
        )
    )
    # scan: lam in the fixed format (s = 1/256, z = -128). Odd cases: u within 3 codes of
    # its zero point and a multiplier up to 4 (one state unit up to 1/64 output code), so
    # a single wrong rounding of the state shows in the output.
    lam = _codes(rng, (c, length), None if extreme is None else "max")
    u, m_lo, m_hi = a, 1.0 / 512, 0.05
    if idx % 2:
        u = np.clip(za + rng.integers(-3, 4, (c, length)), -128, 127).astype(I8)
        m_lo, m_hi = 0.1, 4.0
    m0, sh = quantize_multiplier(float(np.exp(rng.uniform(np.log(m_lo), np.log(m_hi)))))
    y, n = K8.scan_int8(lam[None], u[None], za, m0, sh, zy)
    cases.append(
        Case(
            f"scan_{idx}",
            "scan_int8",
            _cfg(E=c, T=length, U_ZP=za, Y_ZP=zy, M0=m0, SHIFT=sh),
            [("lam", "i8_t", lam), ("u", "i8_t", u)],
            (c, length),
            "{lam}, {u}, y",
            y[0],
            n,
        )
    )
    return cases


S6_ARGS = "{delta}, {x}, {bm}, {cm}, {a}, {ma}, {sha}, {d}, {exp}, y"


def s6_arrays(delta, x, bm, cm, a, m_a, sh_a, d) -> list:
    return [
        ("delta", "i8_t", delta),
        ("x", "i8_t", x),
        ("bm", "i8_t", bm),
        ("cm", "i8_t", cm),
        ("a", "int8_t", a),
        ("ma", "int32_t", m_a),
        ("sha", "int8_t", sh_a),
        ("d", "int8_t", d),
        ("exp", "int16_t", EXP),
    ]


def s6_cfg(e, n, t, zps, m_h, m_k, shift):
    return _cfg(
        E=e,
        N=n,
        T=t,
        EXP_SIZE=EXP.size,
        EXP_FRAC=EXP_FRAC_BITS,
        D_ZP=zps[0],
        X_ZP=zps[1],
        B_ZP=zps[2],
        C_ZP=zps[3],
        Y_ZP=zps[4],
        M_H=m_h,
        M_K=m_k,
        SHIFT=shift,
    )


def s6_case(rng, idx, extreme):
    """Spec 3.13: random codes, address multipliers spreading -Delta*A over the table, a state-sum
    multiplier aiming the output at tens of codes (odd cases: hundreds, saturating)."""
    e, n, t = int(rng.integers(1, 5)), int(rng.integers(1, 6)), int(rng.integers(1, 10))
    delta, x = _codes(rng, (e, t), extreme), _codes(rng, (e, t), None)
    bm, cm = _codes(rng, (n, t), extreme), _codes(rng, (n, t), None)
    a = rng.integers(-127, 1, (e, n)).astype(I8)
    d = rng.integers(-127, 128, e).astype(I8)
    m_a, sh_a = _mults(rng, e, 0.01, 0.5)
    hi = 3e-8 if idx % 2 else 3e-9
    m_h, shift = quantize_multiplier(float(np.exp(rng.uniform(np.log(hi / 30), np.log(hi)))), 15)
    m_k = int(np.rint(np.ldexp(float(np.exp(rng.uniform(np.log(1e-3), np.log(0.05)))), shift)))
    zps = tuple(_zp(rng) for _ in range(5))
    y, n_sat = K8.s6_scan_int8(
        delta[None],
        zps[0],
        x[None],
        zps[1],
        bm[None],
        zps[2],
        cm[None],
        zps[3],
        a,
        m_a,
        sh_a,
        d,
        EXP,
        m_h,
        m_k,
        shift,
        zps[4],
    )
    return [
        Case(
            f"s6_scan_{idx}",
            "s6_scan_int8",
            s6_cfg(e, n, t, zps, m_h, m_k, shift),
            s6_arrays(delta, x, bm, cm, a, m_a, sh_a, d),
            (e, t),
            S6_ARGS,
            y[0],
            n_sat,
        )
    ]


def revin_cases(rng, idx, extreme):
    """Both RevIN ops (spec 3.11): norm with 1/s_y from 0.3 to 40 (the larger saturate), denorm with
    the forecast as [C*n, 1] or [C, n] and multipliers as lowered (one shift from the larger)."""
    c, length = int(rng.integers(1, 5)), int(rng.integers(1, 12))
    x = _codes(rng, (c, length), extreme)
    x_zp, y_zp, o_zp = _zp(rng), _zp(rng), _zp(rng)
    eps_q = int(rng.choice([0, 1, int(rng.integers(0, 1 << 20)), 1 << 32]))
    m0, sh = quantize_multiplier(float(np.exp(rng.uniform(np.log(0.3), np.log(40.0)))))
    shift = sh + K8.REVIN_INV_BITS_INT8
    y, n = K8.revin_norm_int8(x[None], x_zp, np.int64(eps_q), m0, shift, y_zp)
    cfg = _cfg(
        C=c,
        L=length,
        X_ZP=x_zp,
        Y_ZP=y_zp,
        EPS_Q=eps_q,
        REVIN_EXTRA_BITS=K8.REVIN_EXTRA_BITS,
        REVIN_INV_BITS=K8.REVIN_INV_BITS_INT8,
        M0=m0,
        SHIFT=shift,
    )
    cases = [Case(f"revin_norm_{idx}", "revin_norm_int8", cfg, [("x", "i8_t", x)], (c, length), "{x}, y", y[0], n)]
    per = int(rng.integers(1, 5))
    rows, cols = (c * per, 1) if idx % 2 else (c, per)
    fc = rng.integers(-128, 128, (rows, cols)).astype(I8)
    m_a, m_b = (float(np.exp(rng.uniform(np.log(0.01), np.log(2.0)))) for _ in range(2))
    _, sh = quantize_multiplier(max(m_a, m_b))
    ia, ib = int(np.rint(np.ldexp(m_a, sh))), int(np.rint(np.ldexp(m_b, sh)))
    y, n = K8.revin_denorm_int8(fc[None], y_zp, x[None], x_zp, np.int64(eps_q), ia, ib, sh + K8.REVIN_EXTRA_BITS, o_zp)
    cfg = _cfg(
        C=c,
        L=length,
        R=rows,
        M=cols,
        Y_ZP=y_zp,
        X_ZP=x_zp,
        O_ZP=o_zp,
        EPS_Q=eps_q,
        REVIN_EXTRA_BITS=K8.REVIN_EXTRA_BITS,
        M_A=ia,
        M_B=ib,
        SHIFT=sh + K8.REVIN_EXTRA_BITS,
    )
    cases.append(
        Case(
            f"revin_denorm_{idx}",
            "revin_denorm_int8",
            cfg,
            [("f", "i8_t", fc), ("x", "i8_t", x)],
            (rows, cols),
            "{f}, {x}, y",
            y[0],
            n,
        )
    )
    return cases


def kit_cases() -> list[Case]:
    """The INT8 operator vectors of the conformance kit (tests/spec_vectors, spec section 7), one
    Case per sample, expected = the committed outputs: the templates must reproduce the kit."""
    cases = []
    for kc in read_kit(KIT_DIR):
        if kc.precision != "int8":
            continue
        a, p, op = kc.inputs, kc.params, kc.op
        for bi in range(kc.outputs["y"].shape[0]):
            name = f"kit_{kc.id.replace('-', '_').replace('.', '_')}_{bi}"
            y = kc.outputs["y"][bi]
            first = a["x"][bi] if "x" in a else None
            if op in CONV_OPS:
                w = a["weight"]
                dims = {
                    "conv1x1": dict(C_IN=w.shape[1], C_OUT=w.shape[0], L=y.shape[1]),
                    "dwconv": dict(C=w.shape[0], L=y.shape[1], K=w.shape[1]),
                }.get(op) or dict(
                    C_IN=w.shape[1],
                    L_IN=first.shape[1],
                    C_OUT=w.shape[0],
                    L_OUT=y.shape[1],
                    K=w.shape[2],
                    S=p["stride"],
                )
                arrays = [
                    ("x", "i8_t", first),
                    ("w", "int8_t", tap_major_values(w) if op == "dwconv" else w.reshape(w.shape[0], -1)),
                    ("b", "int32_t", a["bias"]),
                    ("m0", "int32_t", a["m0"]),
                    ("sh", "int8_t", a["shift"]),
                ]
                cases.append(
                    Case(
                        name,
                        f"{op}_int8",
                        _cfg(**dims, X_ZP=p["x_zp"], Y_ZP=p["y_zp"]),
                        arrays,
                        y.shape,
                        CONV_ARGS,
                        y,
                        0,
                    )
                )
            elif op == "rmsnorm":
                cfg = _cfg(
                    D=y.shape[0],
                    L=y.shape[1],
                    X_ZP=p["x_zp"],
                    Y_ZP=p["y_zp"],
                    EPS_Q=p["eps_q"],
                    RMS_EXTRA_BITS=K8.RMS_EXTRA_BITS,
                    RMS_INV_BITS=K8.RMS_INV_BITS_INT8,
                    M0=p["m0"],
                    SHIFT=p["shift"],
                )
                cases.append(
                    Case(
                        name,
                        "rmsnorm_int8",
                        cfg,
                        [("x", "i8_t", first), ("g", "int8_t", a["gain"])],
                        y.shape,
                        "{x}, {g}, y",
                        y,
                        0,
                    )
                )
            elif op == "s6_scan":
                zps = (p["d_zp"], p["x_zp"], p["b_zp"], p["c_zp"], p["y_zp"])
                cfg = s6_cfg(y.shape[0], a["B"].shape[1], y.shape[1], zps, p["m_h"], p["m_k"], p["shift"])
                cases.append(
                    Case(
                        name,
                        "s6_scan_int8",
                        cfg,
                        s6_arrays(
                            a["delta"][bi], a["x"][bi], a["B"][bi], a["C"][bi], a["A"], a["m_a"], a["sh_a"], a["D"]
                        ),
                        y.shape,
                        S6_ARGS,
                        y,
                        0,
                    )
                )
            elif op in ("sigmoid", "silu", "softplus"):
                cases.append(
                    Case(
                        name,
                        "lut_int8",
                        _cfg(C=y.shape[0], L=y.shape[1]),
                        [("x", "i8_t", first), ("table", "int8_t", a["table"])],
                        y.shape,
                        "{x}, {table}, y",
                        y,
                        0,
                    )
                )
            elif op == "scan":
                cfg = _cfg(E=y.shape[0], T=y.shape[1], U_ZP=p["u_zp"], Y_ZP=p["y_zp"], M0=p["m0"], SHIFT=p["shift"])
                cases.append(
                    Case(
                        name,
                        "scan_int8",
                        cfg,
                        [("lam", "i8_t", a["lam"][bi]), ("u", "i8_t", a["u"][bi])],
                        y.shape,
                        "{lam}, {u}, y",
                        y,
                        0,
                    )
                )
            elif op == "revin_norm":
                cfg = _cfg(
                    C=y.shape[0],
                    L=y.shape[1],
                    X_ZP=p["x_zp"],
                    Y_ZP=p["y_zp"],
                    EPS_Q=p["eps_q"],
                    REVIN_EXTRA_BITS=K8.REVIN_EXTRA_BITS,
                    REVIN_INV_BITS=K8.REVIN_INV_BITS_INT8,
                    M0=p["m0"],
                    SHIFT=p["shift"],
                )
                cases.append(Case(name, "revin_norm_int8", cfg, [("x", "i8_t", first)], y.shape, "{x}, y", y, 0))
            elif op == "revin_denorm":
                cfg = _cfg(
                    C=first.shape[0],
                    L=first.shape[1],
                    R=y.shape[0],
                    M=y.shape[1],
                    Y_ZP=p["y_zp"],
                    X_ZP=p["x_zp"],
                    O_ZP=p["o_zp"],
                    EPS_Q=p["eps_q"],
                    REVIN_EXTRA_BITS=K8.REVIN_EXTRA_BITS,
                    M_A=p["m_a"],
                    M_B=p["m_b"],
                    SHIFT=p["shift"],
                )
                cases.append(
                    Case(
                        name,
                        "revin_denorm_int8",
                        cfg,
                        [("f", "i8_t", a["f"][bi]), ("x", "i8_t", first)],
                        y.shape,
                        "{f}, {x}, y",
                        y,
                        0,
                    )
                )
            else:
                ints = dict(C=y.shape[0], L=y.shape[1], A_ZP=p["a_zp"], B_ZP=p["b_zp"], Y_ZP=p["y_zp"])
                ints.update(
                    dict(M0=p["m0"], SHIFT=p["shift"])
                    if op == "mul"
                    else dict(M_A=p["m_a"], M_B=p["m_b"], SHIFT=p["shift"])
                )
                cases.append(
                    Case(
                        name,
                        f"{op}_int8",
                        _cfg(**ints),
                        [("a", "i8_t", a["a"][bi]), ("b", "i8_t", a["b"][bi])],
                        y.shape,
                        "{a}, {b}, y",
                        y,
                        0,
                    )
                )
    return cases


def all_cases(seed=0):
    rng, rng_s6 = np.random.default_rng(seed), np.random.default_rng(seed + 1)
    cases = []
    for idx in range(N_CASES + 3):
        extreme = EXTREMES[idx] if idx < len(EXTREMES) else None
        cases += (
            conv_cases(rng, idx, extreme)
            + rmsnorm_case(rng, idx, extreme)
            + elementwise_cases(rng, idx, extreme)
            + revin_cases(rng, idx, extreme)
            + s6_case(rng_s6, idx, extreme)
        )
    return cases + kit_cases()


@pytest.fixture(scope="module")
def cases():
    return all_cases()


def test_cases_cover_saturation_and_extremes(cases):
    """The case set is meaningful: every saturating op saturates somewhere, and over 40% of the
    outputs of every op lie strictly inside the int8 range (not just on the rails)."""
    ops = [h for h in HEADERS if h != "primitives_int8"]  # one per INT8 registry row template
    for op in ops:
        mine = [c for c in cases if c.name.startswith(op + "_")]
        assert mine, f"INT8 template {op} has no test case"
        values = np.concatenate([c.expected.ravel() for c in mine])
        assert np.mean((values > -128) & (values < 127)) > 0.4, op
        if op != "lut":
            assert sum(c.n_sat for c in mine) > 0, op


@pytest.mark.parametrize("types", ["stdint", "ap"])
def test_int8_templates_match_golden_kernels(cases, types):
    got = run_cases(cases, types)  # the ap flavour skips, with the reason, without ap headers
    for case in cases:
        assert np.array_equal(got[case.name], case.expected.astype(np.int64)), case.name


def test_cpp_array_initialiser():
    assert cpp_array(np.array([[1, -2], [3, 4]], I8)) == "{{1, -2}, {3, 4}}"


# ------------------------------------------------------------------ requantize8 over spec 3.3's domain
def requantize_domain(rng: np.random.Generator) -> np.ndarray:
    """(acc, m0, shift, zp) rows over spec 3.3's whole domain: every corner (|acc| up to 2^31, -2^31
    included; m0 up to 2^31 - 1; shift 0..62), exact ties (acc m0 = (k + 1/2) 2^shift, k odd and
    even) and uniform random rows."""
    accs, m0s = [-(2**31), -(2**31) + 1, -1, 0, 1, 2**31 - 1], [1, 2**30, 2**31 - 1]
    rows = [(a, m, s, z) for a in accs for m in m0s for s in (0, 1, 31, 61, 62) for z in (-128, 0, 127)]
    for s in (1, 2, 8, 20, 29):  # m0 = 2^30: acc m0 / 2^(s + 30) = acc / 2^s, |acc| < 2^31
        rows += [(k * 2**s + 2 ** (s - 1), 2**30, s + 30, 0) for k in (-3, -2, -1, 0, 1, 2, 3)]
    n = 2000
    rand = np.stack(
        [
            rng.integers(-(2**31), 2**31, n),
            rng.integers(2**30, 2**31, n),
            rng.integers(0, 63, n),
            rng.integers(-128, 128, n),
        ],
        axis=1,
    )
    return np.concatenate([np.array(rows, np.int64), rand])


@pytest.mark.parametrize("types", ["stdint", "ap"])
def test_requantize8_is_spec_requantize_over_its_domain(types):
    """The C++ requantize8 (one biased shift) equals the golden model's requantize (intsim.fixedpoint,
    itself checked against exact rationals) on every corner, tie and random row of spec 3.3's domain."""
    rows = requantize_domain(np.random.default_rng(3))
    main = [
        "#include <cstdio>",
        '#include "primitives.h"',
        f"static const int64_t rows[{len(rows)}][4] = {cpp_array(rows)};",
        "int main() {",
        f"    for (int i = 0; i < {len(rows)}; i++) {{",
        "        const i8_t y = requantize8(i32_t(rows[i][0]), rows[i][1], int(rows[i][2]), int(rows[i][3]));",
        '        std::printf("%d\\n", int(y));',
        "    }",
        "    return 0;",
        "}",
    ]
    sources = {"primitives.h": render_primitives(types), "main.cpp": "\n".join(main) + "\n"}
    exe = compile_program(sources, types, name=f"requantize8_{types}")
    got = [int(v) for v in subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()]
    want = [int(requantize(int(a), int(m), int(s), int(z), 8)[0]) for a, m, s, z in rows]
    assert got == want
