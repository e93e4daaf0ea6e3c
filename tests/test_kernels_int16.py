"""INT16 kernels vs independent computations (docs/quant-spec.md section 2).

- Worked examples of the spec, one test each.
- Random inputs: each kernel equals an exact big-integer reference (Python ints,
  Fraction) and lies within the spec's error bound of float64 math.
- Extreme inputs (all +max / all -max / alternating): values clamp, never wrap,
  and every clamp is counted.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from intsim import kernels_int16 as K
from intsim.float_ref import sigmoid, silu
from intsim.lut import int16_table, int16_table_clamped
from tests.conftest import run_tile

I16 = np.int16
MAXV, MINV = 32767, -32768
NONE_CLAMPED = np.zeros(4096, dtype=np.bool_)  # Q8.8 tables: no entry saturates


def rne_exact(fr: Fraction) -> int:
    """Round half to even of an exact rational."""
    fl = fr.numerator // fr.denominator
    rem = fr - fl
    if rem > Fraction(1, 2) or (rem == Fraction(1, 2) and fl % 2 == 1):
        fl += 1
    return fl


def sat16(v: int) -> tuple[int, int]:
    return (max(MINV, min(MAXV, v)), int(v > MAXV or v < MINV))


def arr(values, shape=None):
    a = np.asarray(values, dtype=I16)
    return a.reshape(shape) if shape else a


# --------------------------------------------------------------------------- spec examples
def test_spec_2_1_conv1x1_example():
    y, n = K.conv1x1_int16(arr([384, -64], (1, 2, 1)), arr([[128, 192]]), np.array([6554]), 8)
    assert y.tolist() == [[[170]]] and n == 0


def test_spec_2_2_conv_kx1_example():
    y, n = K.conv_kx1_int16(arr([256, 512, -256], (1, 1, 3)), arr([128, 64], (1, 1, 2)), np.array([0]), 1, 8)
    assert y.tolist() == [[[256, 192]]] and n == 0


def test_spec_2_3_dwconv_example():
    y, n = K.dwconv_int16(arr([256, 512], (1, 1, 2)), arr([[128, 256]]), np.array([0]), 8)
    assert y.tolist() == [[[256, 640]]] and n == 0


def test_spec_2_4_rmsnorm_example():
    x = arr([256, -512, 128, 0], (1, 4, 1))
    g = arr([256, 256, 128, 512])
    eps_q = int(np.rint(1e-5 * 2**16))
    assert eps_q == 1
    y, n = K.rmsnorm_int16(x, g, np.int64(eps_q), K.RMS_INV_BITS + 8 - K.RMS_EXTRA_BITS - 8)
    assert y[0, :, 0].tolist() == [223, -447, 56, 0] and n == 0


def test_spec_2_6_lut_example():
    sig, sil = int16_table("sigmoid", 8), int16_table("silu", 8)
    y, _ = K.lut_int16(arr([179], (1, 1, 1)), sig, 0, False, 0, NONE_CLAMPED)
    assert y.item() == 171
    y, _ = K.lut_int16(arr([179], (1, 1, 1)), sil, 0, True, 0, NONE_CLAMPED)
    assert y.item() == 120
    # f_x = 10: x_q = 717 -> address rne_shift(717, 2) = 179: same entries.
    y, _ = K.lut_int16(arr([717], (1, 1, 1)), sig, 2, False, 2, NONE_CLAMPED)
    assert y.item() == 171
    assert sil[0] == -1  # silu(-8) * 256 = -0.69 -> -1, used below the range


def test_spec_2_7_scan_example():
    lam = arr([192, 192, 64], (1, 1, 3))
    u = arr([256, 512, -128], (1, 1, 3))
    y, n = K.scan_int16(lam, u, 8, 0)
    assert y.tolist() == [[[64, 176, -52]]] and n == 0


def test_spec_2_8_mul_example_tie_to_even():
    y, n = K.mul_int16(arr([384], (1, 1, 1)), arr([-179], (1, 1, 1)), 8)
    assert y.item() == -268 and n == 0


def test_spec_2_9_add_example():
    # a Q8.8 = 300, b Q6.10 = 1001, y Q8.8: F = 10, a_up = 2, b_up = 0, shift = 2
    y, n = K.add_int16(arr([300], (1, 1, 1)), arr([1001], (1, 1, 1)), 2, 0, 2)
    assert y.item() == 550 and n == 0


# --------------------------------------------------------------------------- exact references
def conv_kx1_reference(x, w, b, stride, shift):
    """Python-int reference of spec 2.2 for one batch element: (y, n_sat)."""
    c_out, c_in, k = w.shape
    t_out = (x.shape[1] - k) // stride + 1
    y = np.zeros((c_out, t_out), dtype=np.int64)
    n_sat = 0
    for o in range(c_out):
        for t in range(t_out):
            acc = int(b[o]) + sum(int(w[o, i, kk]) * int(x[i, t * stride + kk]) for i in range(c_in) for kk in range(k))
            y[o, t], s = sat16(rne_exact(Fraction(acc, 2**shift)))
            n_sat += s
    return y, n_sat


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    k=st.integers(1, 5),
    stride=st.integers(1, 4),
    shift=st.integers(0, 20),
    big=st.booleans(),
)
def test_conv_kx1_matches_exact_reference(seed, k, stride, shift, big):
    rng = np.random.default_rng(seed)
    c_in, c_out, length = 3, 4, k + 7
    lim = 32768 if big else 2000
    x = rng.integers(-lim, lim, (2, c_in, length)).astype(I16)
    w = rng.integers(-lim, lim, (c_out, c_in, k)).astype(I16)
    b = rng.integers(-(2**31), 2**31, c_out).astype(np.int64)
    y, n = K.conv_kx1_int16(x, w, b, stride, shift)
    total = 0
    for bi in range(2):
        ref, ns = conv_kx1_reference(x[bi], w, b, stride, shift)
        np.testing.assert_array_equal(y[bi], ref)
        total += ns
    assert n == total


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    k=st.integers(1, 5),
    stride=st.integers(1, 4),
    c_out=st.integers(1, 9),
    big=st.booleans(),
)
def test_conv_batch_gemm_equals_per_sample_blocks(seed, k, stride, c_out, big):
    """A batch with >= GEMM_MIN_POSITIONS output positions runs as one GEMM (kernels_mac), one sample
    as position blocks (checked against the exact reference above): the same bytes and saturations,
    int32 (proved) and int64 accumulators (big: the bound exceeds int32)."""
    from intsim.kernels_mac import GEMM_MIN_POSITIONS

    rng = np.random.default_rng(seed)
    c_in, length = 3, k + 3 * stride
    n_b = GEMM_MIN_POSITIONS // ((length - k) // stride + 1) + 1
    lim = 32768 if big else 2000
    x = rng.integers(-lim, lim, (n_b, c_in, length)).astype(I16)
    w = rng.integers(-lim, lim, (c_out, c_in, k)).astype(I16)
    b = rng.integers(-(2**20), 2**20, c_out).astype(np.int64) * (2**11 if big else 1)
    y, n = K.conv_kx1_int16(x, w, b, stride, 12)
    parts = [K.conv_kx1_int16(x[i : i + 1], w, b, stride, 12) for i in range(n_b)]
    np.testing.assert_array_equal(y, np.concatenate([p[0] for p in parts]))
    assert n == sum(p[1] for p in parts)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31), n_pairs=st.integers(0, 40), zp=st.integers(-3, 3), shift=st.integers(0, 30))
def test_pair_tiles_simd_equal_loops_and_reference(seed, n_pairs, zp, shift):
    """The conv tiles (kernels_mac): the vpmaddwd intrinsics (where the CPU has AVX512BW) and the plain
    loops both give bias + sum of the int16 pair products, wrapped to int32 (full int16 range, -32768
    included), each position's x values read at its offset, the zero point removed; the acc rows around
    the tile untouched (x - zp within int16, as the callers' inputs are). The sat16 tiles: each sum as
    sat16(rne_shift(sum, shift)) (`rne_shift`, `saturate`); the requant8 tiles: each sum as
    requantize(sum, mul[o], shifts[o], y_zp, 8) with every output channel's own multiplier and shift (the
    extremes of int32 multipliers and of shifts 1..54 included); both add the saturations of the first
    n_valid positions to counts[0]."""
    from intsim import kernels_mac as M
    from intsim.fixedpoint import requantize, rne_shift, saturate

    rng = np.random.default_rng(seed)
    x = rng.integers(-32768, 32768, 500).clip(-32768 + max(zp, 0), 32767 + min(zp, 0)).astype(I16)
    x[:8] = -32768 + max(zp, 0)  # x - zp within int16 (INT16: zp = 0; INT8: |x - zp| <= 255)
    w_step, w_off, a_step = 3 * 64 + 16, 16, 64 + 16 + 5
    wp_pairs = rng.integers(-32768, 32768, (max(1, n_pairs), w_step, 2)).astype(I16)
    wp = np.ascontiguousarray(wp_pairs).view(np.int32).ravel()
    wp_pairs = wp_pairs.astype(np.int64)
    bias = rng.integers(-(2**31), 2**31, w_step).astype(np.int32)
    pair_offs = rng.integers(0, 100, 2 * max(1, n_pairs)).astype(np.int64)
    mul = rng.integers(-(2**31), 2**31, w_step).astype(np.int32)
    mul[w_off : w_off + 4] = (-(2**31), 2**31 - 1, 0, 1)
    shifts = rng.integers(1, 55, w_step).astype(np.int64)
    shifts[w_off : w_off + 4] = (1, 54, 31, 2)
    y_zp = int(rng.integers(-128, 128))
    no_mul, no_shift = np.zeros(0, np.int32), np.zeros(0, np.int64)
    tiles = (
        (4, 4, M.pair_tile_4x4, M.sat16_tile_4x4, M.requant8_tile_4x4),
        (8, 2, M.pair_tile_8x2, M.sat16_tile_8x2, M.requant8_tile_8x2),
        (16, 1, M.pair_tile_16x1, M.sat16_tile_16x1, M.requant8_tile_16x1),
    )
    for n_p, n_v, tile, sat_tile, requant_tile in tiles:
        n_l = n_v * M.PAIR_LANES
        x_offs = rng.integers(0, 400, n_p).astype(np.int64)
        n_valid = int(rng.integers(1, n_p + 1))
        want = np.zeros((n_p, n_l), np.int64)
        for p in range(n_p):
            want[p] = bias[w_off : w_off + n_l]
            for m in range(n_pairs):
                x0 = int(x[x_offs[p] + pair_offs[2 * m]]) - zp
                x1 = int(x[x_offs[p] + pair_offs[2 * m + 1]]) - zp
                want[p] += wp_pairs[m, w_off : w_off + n_l, 0] * x0 + wp_pairs[m, w_off : w_off + n_l, 1] * x1
        want = want.astype(np.int32)  # wrapped, as int32 lanes are
        narrowed = {
            M.NARROW_NONE: (want, 0),
            M.NARROW_SAT16: narrowed_rows(
                [[saturate(rne_shift(int(v), shift), 16) for v in row] for row in want], n_valid
            ),
            M.NARROW_REQUANT8: narrowed_rows(
                [
                    [
                        requantize(int(v), int(mul[w_off + o]), int(shifts[w_off + o]), y_zp, 8)
                        for o, v in enumerate(row)
                    ]
                    for row in want
                ],
                n_valid,
            ),
        }
        cases = (
            (M.pair_tile_loops, M.NARROW_NONE),
            (run_tile(tile), M.NARROW_NONE),
            (M.pair_tile_loops, M.NARROW_SAT16),
            (run_tile(sat_tile), M.NARROW_SAT16),
            (M.pair_tile_loops, M.NARROW_REQUANT8),
            (run_tile(requant_tile), M.NARROW_REQUANT8),
        )
        for fn, narrowing in cases:
            acc = np.full(n_p * a_step + 7, 7, np.int32)
            before = acc.copy()
            counts = np.full(1, 5, np.int64)
            args = (acc, a_step, x, zp, x_offs, pair_offs, n_pairs, wp, w_off, w_step, bias, n_l)
            tile_shift = shift if narrowing == M.NARROW_SAT16 else -1
            muls = (mul, shifts, y_zp) if narrowing == M.NARROW_REQUANT8 else (no_mul, no_shift, 0)
            fn(*args, tile_shift, n_valid, counts, *muls)
            rows, n_sat = narrowed[narrowing]
            for p in range(n_p):
                before[p * a_step : p * a_step + n_l] = rows[p]
            np.testing.assert_array_equal(acc, before)
            assert counts[0] == 5 + n_sat  # the plain tiles leave counts alone


def narrowed_rows(rounded: list, n_valid: int) -> tuple[np.ndarray, int]:
    """(values int32[P, lanes], saturations of the first n_valid positions) of per-lane (value, flag)."""
    values = np.array([[v for v, _ in row] for row in rounded], np.int32)
    return values, sum(int(s) for row in rounded[:n_valid] for _, s in row)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), shift=st.integers(0, 20), big=st.booleans())
def test_conv1x1_and_dwconv_match_exact_reference(seed, shift, big):
    rng = np.random.default_rng(seed)
    lim = 32768 if big else 2000
    x = rng.integers(-lim, lim, (2, 5, 6)).astype(I16)
    w = rng.integers(-lim, lim, (3, 5)).astype(I16)
    b = rng.integers(-(2**20), 2**20, 3).astype(np.int64)
    y, n = K.conv1x1_int16(x, w, b, shift)
    total = 0
    for bi in range(2):
        ref, ns = conv_kx1_reference(x[bi], w[:, :, None], b, 1, shift)
        np.testing.assert_array_equal(y[bi], ref)
        total += ns
    assert n == total
    # depthwise causal = per-channel conv_kx1 on a left-zero-padded input
    kd = 3
    wd = rng.integers(-lim, lim, (5, kd)).astype(I16)
    bd = rng.integers(-(2**20), 2**20, 5).astype(np.int64)
    y, n = K.dwconv_int16(x, wd, bd, shift)
    total = 0
    for bi in range(2):
        for c in range(5):
            padded = np.concatenate([np.zeros(kd - 1, dtype=np.int64), x[bi, c].astype(np.int64)])
            ref, ns = conv_kx1_reference(padded[None], wd[c][None, None], bd[c : c + 1], 1, shift)
            np.testing.assert_array_equal(y[bi, c], ref[0])
            total += ns
    assert n == total


def test_conv_output_within_half_lsb_of_float64():
    rng = np.random.default_rng(3)
    x = rng.integers(-600, 600, (4, 8, 20)).astype(I16)  # Q8.8 values in [-2.3, 2.3]
    w = rng.integers(-200, 200, (6, 8)).astype(I16)
    b = rng.integers(-50000, 50000, 6).astype(np.int64)
    y, n = K.conv1x1_int16(x, w, b, 8)
    exact = (np.einsum("bil,oi->bol", x.astype(np.float64), w.astype(np.float64)) + b[None, :, None]) / 256
    assert n == 0
    assert np.max(np.abs(y - exact)) <= 0.5


@pytest.mark.parametrize("fx,fg,fy", [(8, 8, 8), (12, 10, 13), (4, 14, 6)])
def test_rmsnorm_within_spec_bound_of_float64(fx, fg, fy):
    rng = np.random.default_rng(fx * 100 + fy)
    d, length = 16, 12
    x = rng.integers(-(2**14), 2**14, (3, d, length)).astype(I16)
    x[0, :, 0] = 0  # eps-only token
    x[1, :, 1] = 1  # tiny token
    g = rng.integers(-(2**fg), 2**fg, d).astype(I16)
    eps = 1e-5
    eps_q = int(np.rint(np.ldexp(eps, 2 * fx)))
    shift = K.RMS_INV_BITS + fg - K.RMS_EXTRA_BITS - fy
    y, n = K.rmsnorm_int16(x, g, np.int64(eps_q), shift)
    xf = np.ldexp(x.astype(np.float64), -fx)
    # the spec's effective eps is eps_q * 2^-2fx, and v >= 1 LSB^2 (spec 2.4)
    ms = np.maximum(np.mean(xf * xf, axis=1, keepdims=True) + np.ldexp(float(eps_q), -2 * fx), np.ldexp(1.0, -2 * fx))
    exact = xf / np.sqrt(ms) * np.ldexp(g.astype(np.float64), -fg)[None, :, None] * 2.0**fy
    inside = np.abs(exact) < MAXV
    # Spec 2.4 / 6: 0.5 LSB final rounding + relative error < 2^-9 from rms_q, + inv rounding
    bound = 1.0 + np.abs(exact) * 2.0**-9
    assert np.all(np.abs(y - exact)[inside] <= bound[inside])
    assert n == int(np.count_nonzero(~inside))


@pytest.mark.parametrize("func", ["sigmoid", "silu"])
@pytest.mark.parametrize("fx,fy", [(8, 8), (8, 14), (11, 8), (5, 12)])
def test_lut_within_half_lsb_inside_range(func, fx, fy):
    table = int16_table(func, fy)
    x = np.arange(-32768, 32768, dtype=np.int64).astype(I16).reshape(1, 1, -1)
    y, n = K.lut_int16(x, table, fx - 8, func == "silu", fx - fy, int16_table_clamped(func, fy))
    xf = np.ldexp(x.astype(np.float64), -fx)
    f = sigmoid if func == "sigmoid" else silu
    # the address rounds the input to 2^-8 when fx > 8; f is evaluated there
    x_addr = np.ldexp(np.rint(np.ldexp(xf, 8)), -8) if fx > 8 else xf
    ref = f(x_addr) * 2.0**fy
    inside = (x_addr >= -8) & (x_addr < 8) & (np.abs(ref) < MAXV)
    assert np.max(np.abs(y - ref)[inside]) <= 0.5 + 1e-9
    # outside [-8, 8): sigmoid clamps, SiLU is identity above (0.69 LSB at Q8.8) and T[0] below
    lsb_err = np.abs(y - f(xf) * 2.0**fy)[~inside & (np.abs(f(xf) * 2.0**fy) < MAXV)]
    assert lsb_err.size == 0 or np.max(lsb_err) <= 0.5 + 0.0027 * 2.0**fy + 1e-9


def test_scan_error_bounded_by_half_lsb_per_step():
    rng = np.random.default_rng(7)
    e, t_len = 32, 40
    lam = rng.integers(0, 257, (2, e, t_len)).astype(I16)  # Q8.8 in [0, 1]
    u = rng.integers(-3000, 3000, (2, e, t_len)).astype(I16)
    y, n = K.scan_int16(lam, u, 8, 0)
    lf, uf = lam / 256.0, u / 256.0
    state = np.zeros((2, e))
    worst = 0.0
    for t in range(t_len):
        state = lf[:, :, t] * state + (1 - lf[:, :, t]) * uf[:, :, t]
        err = np.max(np.abs(y[:, :, t] - state * 256))
        assert err <= 0.5 * (t + 1)
        worst = max(worst, err)
    assert n == 0 and worst <= 2.0  # contraction keeps it far below the linear bound


def test_mul_add_within_half_lsb():
    rng = np.random.default_rng(9)
    a = rng.integers(-4000, 4000, (2, 4, 30)).astype(I16)
    b = rng.integers(-4000, 4000, (2, 4, 30)).astype(I16)
    y, n = K.mul_int16(a, b, 10)  # Q8.8 * Q8.8 -> Q2.6? shift 10 -> Q(6)
    exact = a.astype(np.float64) * b / 1024
    ok = np.abs(exact) < MAXV
    assert np.max(np.abs(y - exact)[ok]) <= 0.5 and n == np.count_nonzero(~ok)
    y, n = K.add_int16(a, b, 0, 3, 1)  # a Q(F), b Q(F-3), y Q(F-1)
    exact = (a.astype(np.float64) + b * 8.0) / 2
    ok = np.abs(exact) < MAXV
    assert np.max(np.abs(y - exact)[ok]) <= 0.5 and n == np.count_nonzero(~ok)


# --------------------------------------------------------------------------- extremes
EXTREMES = {
    "all_max": lambda shape: np.full(shape, MAXV, dtype=I16),
    "all_min": lambda shape: np.full(shape, MINV, dtype=I16),
    "alternating": lambda shape: np.where(np.indices(shape).sum(0) % 2 == 0, MAXV, MINV).astype(I16),
}


@pytest.mark.parametrize("pattern", sorted(EXTREMES))
@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31))
def test_extreme_inputs_clamp_never_wrap(pattern, seed):
    rng = np.random.default_rng(seed)
    x = EXTREMES[pattern]((2, 6, 9))
    w = rng.choice([MAXV, MINV, 1000, -1000], (5, 6, 3)).astype(I16)
    b = rng.integers(-(2**31), 2**31, 5).astype(np.int64)
    y, n = K.conv_kx1_int16(x, w, b, 2, 8)
    total = 0
    for bi in range(2):
        ref, ns = conv_kx1_reference(x[bi], w, b, 2, 8)
        np.testing.assert_array_equal(y[bi], ref)
        total += ns
    assert n == total and n > 0
    # element-wise ops: products and sums of extremes clamp to the int16 limits
    ym, nm = K.mul_int16(x, x, 0)
    assert np.all(ym == MAXV) and nm == x.size  # (+-max)^2 always overflows
    ya, na = K.add_int16(x, x, 0, 0, 0)
    assert np.array_equal(ya, np.where(x > 0, MAXV, MINV)) and na == x.size
    # scan: a convex combination of in-range values stays in range: no saturation
    lam = rng.integers(0, 257, x.shape).astype(I16)
    ys, ns = K.scan_int16(lam, x, 8, 0)
    assert ns == 0 and ys.min() >= MINV and ys.max() <= MAXV
    # scan with u in a wider format than the state: u_al overflows int16 -> clamped, counted
    ys, ns = K.scan_int16(np.zeros_like(lam), x, 8, -1)
    assert np.array_equal(ys, np.where(x > 0, MAXV, MINV)) and ns == x.size
    # rmsnorm of extremes stays bounded by the gain: |y| <= |g| * sqrt(D)
    g = np.full(6, 256, dtype=I16)
    yr, nr = K.rmsnorm_int16(x, g, np.int64(1), K.RMS_INV_BITS + 8 - K.RMS_EXTRA_BITS - 8)
    assert nr == 0 and np.max(np.abs(yr.astype(np.int64))) <= 256 * np.sqrt(6) + 1


# --------------------------------------------------------------------------- RevIN (spec 2.10)
def test_spec_2_10_revin_example():
    x = arr([256, 512, 768, 1536], (1, 1, 4))
    assert K.revin_stats_int16(x, 0, 0, np.int64(1)) == (768, 122607)
    y, n = K.revin_norm_int16(x, np.int64(1), K.REVIN_INV_BITS - K.REVIN_EXTRA_BITS - 8)
    assert y[0, 0].tolist() == [-274, -137, 0, 411] and n == 0
    o, n = K.revin_denorm_int16(arr([256], (1, 1, 1)), x, np.int64(1), 8 + K.REVIN_EXTRA_BITS, 8 + 8 + 8 - 8)
    assert o[0, 0, 0] == 1247 and n == 0


def _nearest_sqrt(v: int) -> int:
    r = math.isqrt(v)
    return r + 1 if v - r * r > r else r


def revin_stats_exact(row: list[int], eps_q: int) -> tuple[int, int]:
    """Spec 2.10 with exact rationals: (mean_q, std_q)."""
    n, s1, s2 = len(row), sum(row), sum(v * v for v in row)
    v = max(rne_exact(Fraction(n * s2 - s1 * s1, n * n)) + eps_q, 1)
    return rne_exact(Fraction(s1, n)), _nearest_sqrt(v << (2 * K.REVIN_EXTRA_BITS))


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    length=st.integers(1, 40),
    f_y=st.integers(0, 15),
    f_o=st.integers(0, 15),
    eps_q=st.sampled_from([0, 1, 7, 2**30]),
    wide=st.booleans(),
)
def test_revin_kernels_match_exact_reference(seed, length, f_y, f_o, eps_q, wide):
    rng = np.random.default_rng(seed)
    lim = MAXV if wide else 600
    c, per = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    x = rng.integers(-lim - 1, lim + 1, (2, c, length)).astype(I16)
    x[1, 0] = x[1, 0, 0]  # a constant channel
    fc = rng.integers(MINV, MAXV + 1, (2, c * per, 1)).astype(I16)
    shift = K.REVIN_INV_BITS - K.REVIN_EXTRA_BITS - f_y
    y, n_y = K.revin_norm_int16(x, np.int64(eps_q), shift)
    o, n_o = K.revin_denorm_int16(fc, x, np.int64(eps_q), f_y + K.REVIN_EXTRA_BITS, f_y + 8 + K.REVIN_EXTRA_BITS - f_o)
    sat_y = sat_o = 0
    for b in range(2):
        for ch in range(c):
            mean_q, std_q = revin_stats_exact(x[b, ch].tolist(), eps_q)
            inv = rne_exact(Fraction(1 << K.REVIN_INV_BITS, std_q))
            for t in range(length):
                want, s = sat16(rne_exact(Fraction((int(x[b, ch, t]) - mean_q) * inv, 1 << shift)))
                assert y[b, ch, t] == want
                sat_y += s
            for i in range(ch * per, (ch + 1) * per):
                acc = int(fc[b, i, 0]) * std_q + (mean_q << (f_y + K.REVIN_EXTRA_BITS))
                want, s = sat16(rne_exact(Fraction(acc, 2 ** (f_y + 8 + K.REVIN_EXTRA_BITS - f_o))))
                assert o[b, i, 0] == want
                sat_o += s
        assert np.all(y[1, 0] == 0)  # a constant channel normalises to exactly 0
    assert (n_y, n_o) == (sat_y, sat_o)


def test_revin_norm_within_one_lsb_of_float():
    from intsim.float_ref import revin_norm

    rng = np.random.default_rng(3)
    x = rng.standard_normal((20, 4, 64)) * 2 + rng.uniform(-20, 20, (20, 4, 1))
    x_q = np.clip(np.rint(x * 256), MINV, MAXV).astype(I16)
    y, _ = K.revin_norm_int16(x_q, np.int64(1), K.REVIN_INV_BITS - K.REVIN_EXTRA_BITS - 8)
    want = revin_norm(x_q / 256.0, 1e-5) * 256
    assert np.max(np.abs(y - want)) <= 1.0
