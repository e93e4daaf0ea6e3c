"""The Mamba-1 (S6) ops: softplus tables, the decay table and the s6_scan kernels (docs/quant-spec.md
2.11, 2.12, 3.12, 3.13) against independent references: float math for the tables (entries away
from a rounding tie), and plain Python integers with Fraction rounding (Python's round() of a
Fraction rounds half to even) for the kernels."""

from __future__ import annotations

import math
import subprocess
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from intsim import kernels_int8 as K8, kernels_int16 as K, lut
from intsim.fixedpoint import quantize_multiplier

EXP = lut.exp_decay_table()


def _rne(value: Fraction) -> int:
    return round(value)  # half to even


def _sat(v: int, bits: int) -> tuple[int, int]:
    hi = (1 << (bits - 1)) - 1
    return max(-hi - 1, min(hi, v)), int(not -hi - 1 <= v <= hi)


def _shift(x: int, n: int) -> int:
    """x * 2^-n, RNE (n > 0) or exact (n <= 0)."""
    return _rne(Fraction(x, 1 << n)) if n > 0 else x << -n


def _near_tie(v: float) -> bool:
    return abs(v - math.floor(v) - 0.5) < 1e-6


# ---------------------------------------------------------------- tables
def test_decay_table_entries():
    assert EXP.dtype == np.int16 and EXP.shape == (lut.EXP_SIZE,) == (4096,)
    assert EXP[0] == 1 << lut.EXP_FRAC_BITS and EXP[2661] == 1 and not EXP[2662:].any()
    for a in range(lut.EXP_SIZE):
        v = math.exp(-a / 256) * 2**14
        if not _near_tie(v):
            assert EXP[a] == round(v), a
    assert np.all(np.diff(EXP.astype(int)) <= 0)


@pytest.mark.parametrize("f", [0, 8, 12, 13, 15])
def test_softplus_int16_table(f):
    table, clamped = lut.int16_table("softplus", f), lut.int16_table_clamped("softplus", f)
    for j in range(lut.LUT_SIZE):
        x = (j - lut.LUT_OFFSET) / 256
        v = (max(x, 0.0) + math.log1p(math.exp(-abs(x)))) * 2**f
        if _near_tie(v):
            continue
        assert table[j] == min(round(v), 32767) and clamped[j] == (round(v) > 32767), j
    first = {13: 3068, 14: 2523, 15: 2187}.get(f)  # spec 2.11: clamped entries only for f >= 13
    assert (np.flatnonzero(clamped)[0] if clamped.any() else None) == first


def test_softplus_spec_example_and_int8_table():
    t = lut.int16_table("softplus", 8)
    assert (t[2048], t[4095], t[0]) == (177, 2047, 0)
    s_in, z_in, s_out, z_out = 0.05, 3, 0.03, -120
    t8 = lut.int8_table("softplus", s_in, z_in, s_out, z_out)
    for k, q in enumerate(range(-128, 128)):
        x = s_in * (q - z_in)
        v = (max(x, 0.0) + math.log1p(math.exp(-abs(x)))) / s_out
        if not _near_tie(v):
            assert t8[k] == max(-128, min(127, round(v) + z_out)), k


def test_quantize_multiplier_15_bits():
    m, sh = quantize_multiplier(0.0123, 15)
    assert 2**14 <= m < 2**15 and m == round(Fraction(0.0123) * 2**sh)
    assert quantize_multiplier(1.0 - 2.0**-17, 15) == (1 << 14, 14)  # rounds up to 2^15 -> 2^14, e + 1


# ---------------------------------------------------------------- INT16 kernel
def ref_scan(e: int, n_st: int, t_len: int, state, output):
    """The S6 loop nest in Python integers: state(ch, n, t, h) -> (new h, saturated), then
    output(ch, t, [h[ch][n] for n]) -> (y, saturated). Returns (y [E, T], saturations)."""
    h = [[0] * n_st for _ in range(e)]
    y = np.zeros((e, t_len), np.int64)
    nsat = 0
    for t in range(t_len):
        for ch in range(e):
            for n in range(n_st):
                h[ch][n], s = state(ch, n, t, h[ch][n])
                nsat += s
            y[ch, t], s = output(ch, t, h[ch])
            nsat += s
    return y, nsat


def ref_s6_int16(delta, x, bm, cm, a, d, sh):
    """Spec 2.12 in Python integers: (y [E, T], saturations); sh = the host shifts."""
    addr_shift, h_up, p_up, h_shift, y_up_c, y_up_d, y_shift = sh

    def state(ch, n, t, h):
        dv = int(delta[ch, t])
        addr = min(max(_shift(-dv * int(a[ch, n]), addr_shift), 0), 4095)
        acc = (int(EXP[addr]) * h << h_up) + (dv * int(x[ch, t]) * int(bm[n, t]) << p_up)
        return _sat(_rne(Fraction(acc, 1 << h_shift)), 32)

    def output(ch, t, h):
        total = sum(int(cm[n, t]) * v for n, v in enumerate(h))
        acc_y = (total << y_up_c) + (int(d[ch]) * int(x[ch, t]) << y_up_d)
        return _sat(_rne(Fraction(acc_y, 1 << y_shift)), 16)

    return ref_scan(x.shape[0], a.shape[1], x.shape[1], state, output)


def _run16(delta, x, bm, cm, a, d, sh):
    y, n = K.s6_scan_int16(delta[None], x[None], bm[None], cm[None], a, d, EXP, *sh)
    return y[0], n


def test_int16_spec_example():
    """docs/quant-spec.md 2.12's example: Q8.8, E = N = 1, two steps."""
    one = lambda v: np.array([[v, v]], np.int16)  # noqa: E731
    y, n = _run16(
        one(128),
        one(512),
        one(256),
        one(256),
        np.array([[-256]], np.int16),
        np.array([0], np.int16),
        (8, 0, 6, 14, 0, 8, 16),
    )
    assert y.tolist() == [[256, 411]] and n == 0
    assert EXP[128] == 9937


i16 = st.integers(-32768, 32767)


@settings(max_examples=40, deadline=None)
@given(data=st.data(), e=st.integers(1, 3), n_st=st.integers(1, 4), t_len=st.integers(1, 5), q88=st.booleans())
def test_s6_scan_int16_matches_python_integers(data, e, n_st, t_len, q88):
    def arr(shape, s=i16):
        return np.array(
            data.draw(
                st.lists(
                    s,
                    min_size=int(np.prod(shape)),
                    max_size=int(np.prod(shape)),
                )
            ),
            np.int16,
        ).reshape(shape)

    small = st.integers(-600, 600)
    delta = arr((e, t_len), st.integers(0, 32767) if not q88 else st.integers(0, 1200))
    x, bm, cm = (
        arr((e, t_len), small if q88 else i16),
        arr((n_st, t_len), small if q88 else i16),
        arr((n_st, t_len), small if q88 else i16),
    )
    a = arr((e, n_st), st.integers(-32768, 0) if not q88 else st.integers(-4096, 0))
    d = arr((e,))
    sh = (
        (8, 0, 6, 14, 0, 8, 16)
        if q88
        else (
            data.draw(st.integers(-8, 22)),
            data.draw(st.integers(0, 16)),
            data.draw(st.integers(0, 16)),
            data.draw(st.integers(14, 30)),
            0,
            data.draw(st.integers(0, 14)),
            data.draw(st.integers(0, 40)),
        )
    )
    got = _run16(delta, x, bm, cm, a, d, sh)
    want = ref_s6_int16(delta, x, bm, cm, a, d, sh)
    assert np.array_equal(got[0], want[0]) and got[1] == want[1]


def test_s6_scan_int16_saturates_and_counts():
    """Full-scale inputs: the state and the output clamp, every clamp counted (spec 5)."""
    e, n_st, t_len = 2, 3, 6
    full = np.full((e, t_len), 32767, np.int16)
    b = np.full((n_st, t_len), -32768, np.int16)
    a = np.zeros((e, n_st), np.int16)  # no decay: the state grows until sat32
    d = np.full(e, 32767, np.int16)
    sh = (8, 0, 0, 20, 0, 0, 10)
    got = _run16(full, full, b, b, a, d, sh)
    want = ref_s6_int16(full, full, b, b, a, d, sh)
    assert np.array_equal(got[0], want[0]) and got[1] == want[1] > e * n_st


# ---------------------------------------------------------------- INT8 kernel
def ref_s6_int8(delta, zps, x, bm, cm, a, m_a, sh_a, dk, m_h, m_k, shift):
    """Spec 3.13 in Python integers."""
    z_d, z_x, z_b, z_c, z_y = zps

    def state(ch, n, t, h):
        dc, xc = int(delta[ch, t]) - z_d, int(x[ch, t]) - z_x
        addr = min(max(_rne(Fraction(-dc * int(a[ch, n]) * int(m_a[ch]), 1 << int(sh_a[ch]))), 0), 4095)
        acc = int(EXP[addr]) * h + (dc * xc * (int(bm[n, t]) - z_b) << 14)
        return _sat(_rne(Fraction(acc, 1 << 14)), 32)

    def output(ch, t, h):
        total = sum((int(cm[n, t]) - z_c) * v for n, v in enumerate(h))
        acc_y = total * m_h + int(dk[ch]) * (int(x[ch, t]) - z_x) * m_k
        return _sat(_rne(Fraction(acc_y, 1 << shift)) + z_y, 8)

    return ref_scan(x.shape[0], a.shape[1], x.shape[1], state, output)


i8 = st.integers(-128, 127)


@settings(max_examples=40, deadline=None)
@given(data=st.data(), e=st.integers(1, 3), n_st=st.integers(1, 4), t_len=st.integers(1, 5))
def test_s6_scan_int8_matches_python_integers(data, e, n_st, t_len):
    def arr(shape, s=i8):
        return np.array(
            data.draw(
                st.lists(
                    s,
                    min_size=int(np.prod(shape)),
                    max_size=int(np.prod(shape)),
                )
            ),
            np.int8,
        ).reshape(shape)

    delta, x, bm, cm = arr((e, t_len)), arr((e, t_len)), arr((n_st, t_len)), arr((n_st, t_len))
    a = arr((e, n_st), st.integers(-127, 127))
    dk = arr((e,), st.integers(-127, 127))
    zps = tuple(data.draw(i8) for _ in range(5))
    m_a = np.array([data.draw(st.integers(1 << 30, (1 << 31) - 1)) for _ in range(e)], np.int64)
    sh_a = np.array([data.draw(st.integers(20, 40)) for _ in range(e)], np.int64)
    m_h, m_k = data.draw(st.integers(1 << 14, (1 << 15) - 1)), data.draw(st.integers(0, 1 << 40))
    shift = data.draw(st.integers(20, 50))
    args = (a, m_a, sh_a, dk, m_h, m_k, shift)
    got = K8.s6_scan_int8(
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
        dk,
        EXP,
        m_h,
        m_k,
        shift,
        zps[4],
    )
    want = ref_s6_int8(delta, zps, x, bm, cm, *args)
    assert np.array_equal(got[0][0], want[0]) and got[1] == want[1]


# ---------------------------------------------------------------- the network
def test_s6_model_every_mode_close_to_fp32_and_packed_equals_per_layer(tiny_s6_model):
    """A random S6 model: quant16, bittrue and quant8 track fp32; the bittrue whole-program
    interpreter gives exactly the per-layer kernels' values (spec 2.12 in both paths)."""
    from intsim.fixedpoint import quantize_q
    from intsim.int16 import run_step16

    m = tiny_s6_model
    x = np.random.default_rng(7).standard_normal((32,) + tuple(m.graph.input_shape))
    ref = m.run(x, "fp32").output
    power = float(np.mean(ref**2))
    for mode, tol in (("quant16", 1e-3), ("bittrue", 1e-3), ("quant8", 2e-2)):
        assert float(np.mean((m.run(x, mode).output - ref) ** 2)) < tol * power, mode
    x_q = quantize_q(x, m.program.input_frac, 16)[0].astype(np.int16)
    res = m.run_int16(x_q, capture=True)
    for step in m.program.steps:
        y, _ = run_step16(step, [res.tensors[i] for i in step.inputs])
        assert np.array_equal(y, res.tensors[step.name]), step.name


# ---------------------------------------------------------------- C++ primitive of the scan's hot loop
SHIFT_ROUND_C_NS = (-3, 0, 1, 2, 8, 14, 30, 61)


def test_cpp_shift_round_c_equals_spec_shift_round():
    """templates' shift_round_c<N> (one biased shift; the S6 scan's RNE) equals spec 1.3 for
    |x| < 2^62: exact ties of both parities and signs, the bounds, random values."""
    from tests.cpp_harness import compile_program, render_primitives

    rng = np.random.default_rng(0)
    xs = [0, 1, -1, (1 << 62) - 1, -(1 << 62) + 1] + [int(v) for v in rng.integers(-(1 << 62) + 1, 1 << 62, 300)]
    for n in SHIFT_ROUND_C_NS:
        if n > 0:
            xs += [s * ((k << n) + (1 << (n - 1)) + d) for k in (0, 1, 2, 3, 1001) for s in (1, -1) for d in (-1, 0, 1)]
    xs = [x for x in xs if abs(x) < 1 << 62]
    calls = "\n".join(f'        std::printf("%lld\\n", (long long)shift_round_c<{n}>(x));' for n in SHIFT_ROUND_C_NS)
    main = (
        '#include <cstdio>\n#include "primitives.h"\nint main() {\n    long long v;\n'
        '    while (std::scanf("%lld", &v) == 1) {\n        const i64_t x = v;\n' + calls + '\n    }\n}\n'
    )
    exe = compile_program({"primitives.h": render_primitives("stdint"), "main.cpp": main}, name="shift_round_c")
    out = subprocess.run([str(exe)], input="\n".join(map(str, xs)), capture_output=True, text=True, check=True)
    got = [int(v) for v in out.stdout.split()]
    want = [_shift(x, n) for x in xs for n in SHIFT_ROUND_C_NS]
    fits = [abs(w) < 1 << 63 for w in want]  # a left shift's result must fit int64 (the caller's bound)
    assert len(got) == len(want) and sum(fits) > len(xs) * (len(SHIFT_ROUND_C_NS) - 1)
    assert [g for g, f in zip(got, fits, strict=True) if f] == [w for w, f in zip(want, fits, strict=True) if f]
