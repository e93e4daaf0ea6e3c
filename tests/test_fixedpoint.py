"""Fixed-point primitives (intsim/fixedpoint.py) vs exact references (docs/quant-spec.md 1, 3.2, 3.3).

Every reference below is written with Python ints / fractions.Fraction only (no numpy,
no float except where the input itself is a float), so it cannot share a bug with the
code under test. Each scalar primitive is checked twice: the Numba-jitted function and
its plain-Python twin ``.py_func``, on the same hypothesis inputs.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from intsim import fixedpoint as fp
from intsim.fixedpoint import NonFiniteError

I64_MIN, I64_MAX = -(2**63), 2**63 - 1

# deadline=None: the first call of a jitted function compiles (or loads the cache).
FAST = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MEDIUM = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ----------------------------------------------------------------------------------
# Exact references (Python ints / Fraction only)
# ----------------------------------------------------------------------------------


def ref_rne(fr: Fraction) -> int:
    """Round half to even of an exact rational."""
    fl = fr.numerator // fr.denominator  # floor (denominator > 0)
    rem = fr - fl  # in [0, 1)
    if rem > Fraction(1, 2) or (rem == Fraction(1, 2) and fl % 2 == 1):
        fl += 1
    return fl


def ref_rne_shift(x: int, n: int) -> int:
    return ref_rne(Fraction(x, 2**n))


def ref_sat(v: int, bits: int) -> tuple[int, bool]:
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return min(max(v, lo), hi), (v < lo or v > hi)


def ref_requantize(acc: int, m0: int, shift: int, zp: int, bits: int) -> tuple[int, bool]:
    return ref_sat(ref_rne(Fraction(acc * m0, 2**shift)) + zp, bits)


def ref_quantize_multiplier(m: float) -> tuple[int, int]:
    """m0 = RNE(frac * 2**31), m = frac * 2**e, frac in [1/2, 1), exactly (spec 3.2)."""
    M = Fraction(m)
    e = 0
    while M / Fraction(2) ** e >= 1:
        e += 1
    while M / Fraction(2) ** e < Fraction(1, 2):
        e -= 1
    m0 = ref_rne(M / Fraction(2) ** e * 2**31)
    if m0 == 2**31:
        m0, e = 2**30, e + 1
    return m0, 31 - e


def both(func):
    """The jitted primitive and its plain-Python twin."""
    return [pytest.param(func, id="jit"), pytest.param(func.py_func, id="py_func")]


def test_reference_rne_matches_python_round():
    # Python's round() on a Fraction is also half-to-even: two independent references agree.
    for num in range(-40, 41):
        for den in (1, 2, 3, 4, 8, 10):
            assert ref_rne(Fraction(num, den)) == round(Fraction(num, den))


# ----------------------------------------------------------------------------------
# Strategies
# ----------------------------------------------------------------------------------

EDGE_I64 = [
    I64_MIN,
    I64_MIN + 1,
    I64_MIN + 2,
    -(2**62) - 1,
    -(2**62),
    -(2**62) + 1,
    -3,
    -2,
    -1,
    0,
    1,
    2,
    3,
    2**62 - 1,
    2**62,
    2**62 + 1,
    I64_MAX - 1,
    I64_MAX,
]
int64s = st.one_of(st.integers(I64_MIN, I64_MAX), st.sampled_from(EDGE_I64))
shifts = st.one_of(st.integers(0, 62), st.sampled_from([0, 1, 61, 62]))


@st.composite
def ties(draw):
    """(x, n): x / 2**n lies exactly halfway between two integers, x in int64."""
    n = draw(st.integers(1, 62))
    k = draw(st.integers(-(2 ** (63 - n)), 2 ** (63 - n) - 1))
    return k * 2**n + 2 ** (n - 1), n


@st.composite
def left_shifts(draw):
    """(x, n) with n in [-62, 0] and x << -n still inside int64."""
    s = draw(st.integers(0, 62))
    x = draw(
        st.one_of(
            st.integers(-(2 ** (63 - s)), 2 ** (63 - s) - 1),
            st.sampled_from([-(2 ** (63 - s)), 2 ** (63 - s) - 1, 0, 1, -1]),
        )
    )
    return x, -s


# ----------------------------------------------------------------------------------
# rne_shift (spec 1.2)
# ----------------------------------------------------------------------------------


@pytest.mark.parametrize("f", both(fp.rne_shift))
@FAST
@given(x=int64s, n=shifts)
def test_rne_shift_exact_full_int64(f, x, n):
    assert int(f(x, n)) == ref_rne_shift(x, n)


@pytest.mark.parametrize("f", both(fp.rne_shift))
@FAST
@given(t=ties())
def test_rne_shift_ties_go_to_even(f, t):
    x, n = t
    got = int(f(x, n))
    assert got % 2 == 0
    assert Fraction(got) - Fraction(x, 2**n) in (Fraction(1, 2), Fraction(-1, 2))
    assert got == ref_rne_shift(x, n)


@pytest.mark.parametrize("f", both(fp.rne_shift))
@MEDIUM
@given(x=int64s)
def test_rne_shift_n0_is_identity(f, x):
    assert int(f(x, 0)) == x


@pytest.mark.parametrize("f", both(fp.rne_shift))
@MEDIUM
@given(x=st.integers(I64_MIN, I64_MAX), n=st.integers(1, 62))
def test_rne_shift_negation_symmetry(f, x, n):
    # RNE is odd-symmetric: RNE(-v) = -RNE(v) (ties to even are symmetric too).
    assume(x != I64_MIN)
    assert int(f(-x, n)) == -int(f(x, n))


@pytest.mark.parametrize("f", both(fp.rne_shift))
def test_rne_shift_largest_shifts(f):
    h = 2**61  # half of 2**62
    cases = {
        (I64_MIN, 62): -2,
        (I64_MAX, 62): 2,  # 1.99999... -> 2
        (h, 62): 0,
        (-h, 62): 0,  # +-0.5 -> 0 (even)
        (3 * h, 62): 2,
        (-3 * h, 62): -2,  # +-1.5 -> +-2 (even)
        (h + 1, 62): 1,
        (-h - 1, 62): -1,  # just above the tie
        (h - 1, 62): 0,
        (-h + 1, 62): 0,  # just below the tie
        (I64_MIN, 61): -4,
        (I64_MAX, 61): 4,
        (2**60, 61): 0,
        (3 * 2**60, 61): 2,
    }
    for (x, n), want in cases.items():
        assert int(f(x, n)) == want == ref_rne_shift(x, n), (x, n)
        assert int(f(np.int64(x), n)) == want, (x, n)


@pytest.mark.parametrize("f", both(fp.rne_shift))
def test_rne_shift_small_grid_exhaustive(f):
    for n in range(6):
        for x in range(-70, 71):
            assert int(f(x, n)) == ref_rne_shift(x, n), (x, n)


@pytest.mark.parametrize("f", both(fp.rne_shift))
@pytest.mark.parametrize("n", [-1, -62, 63, 64, 100])
def test_rne_shift_out_of_range_raises(f, n):
    with pytest.raises(ValueError):
        f(5, n)


# ----------------------------------------------------------------------------------
# shift_round (spec 1.3)
# ----------------------------------------------------------------------------------


@pytest.mark.parametrize("f", both(fp.shift_round))
@FAST
@given(xn=left_shifts())
def test_shift_round_left_is_exact(f, xn):
    x, n = xn
    assert int(f(x, n)) == x * 2 ** (-n)


@pytest.mark.parametrize("f", both(fp.shift_round))
@FAST
@given(x=int64s, n=shifts)
def test_shift_round_right_is_rne_shift(f, x, n):
    got = int(f(x, n))
    assert got == ref_rne_shift(x, n)
    assert got == int(fp.rne_shift(x, n))


@pytest.mark.parametrize("f", both(fp.shift_round))
@pytest.mark.parametrize("n", [63, -63, 64, -64])
def test_shift_round_out_of_range_raises(f, n):
    with pytest.raises(ValueError):
        f(1, n)


@FAST
@given(x=int64s, n=shifts, left=left_shifts(), neg=st.booleans())
def test_shift_round_core_is_shift_round(x, n, left, neg):
    """The kernels' unchecked form (`shift_parts` once, `shift_round_core` in the loop) gives
    shift_round's value for right shifts (any int64) and exact left shifts."""
    x, n = left if neg else (x, n)
    up, down = fp.shift_parts(n)
    assert int(fp.shift_round_core(x, up, down)) == int(fp.shift_round(x, n)) == int(fp.shift_round.py_func(x, n))
    assert int(fp.rne_shift_core(x, down)) == ref_rne_shift(x, down)


@pytest.mark.parametrize("n", [63, -63, 100])
def test_shift_parts_out_of_range_raises(n):
    with pytest.raises(ValueError):
        fp.shift_parts(n)


def test_shift_round_format_alignment_examples():
    # spec 2.5/2.6: Q6.10 717 -> Q8.8 address 179 (179.25 rounds down); Q8.8 -> Q6.10 exact.
    assert int(fp.shift_round(717, 10 - 8)) == 179
    assert int(fp.shift_round(179, 8 - 10)) == 716
    assert int(fp.shift_round(-32768, -15)) == -(2**30)


# ----------------------------------------------------------------------------------
# saturate / sat_limits / saturate_array (spec 1.4)
# ----------------------------------------------------------------------------------


@pytest.mark.parametrize("f", both(fp.saturate))
@FAST
@given(x=int64s, bits=st.integers(2, 63))
def test_saturate_exact(f, x, bits):
    v, flag = f(x, bits)
    want_v, want_flag = ref_sat(x, bits)
    assert int(v) == want_v
    assert bool(flag) is want_flag


@pytest.mark.parametrize("f", both(fp.saturate))
@pytest.mark.parametrize("bits", [2, 8, 16, 32, 62, 63])
def test_saturate_both_ends(f, bits):
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    for x, want, flag in [
        (hi, hi, False),
        (hi + 1, hi, True),
        (I64_MAX, hi, bits < 64),
        (lo, lo, False),
        (lo - 1, lo, True),
        (I64_MIN, lo, True),
        (0, 0, False),
    ]:
        if bits == 63 and x == I64_MAX:
            flag = True
        v, s = f(x, bits)
        assert (int(v), bool(s)) == (want, flag), (x, bits)


@pytest.mark.parametrize("f", both(fp.sat_limits))
def test_sat_limits(f):
    for bits in range(2, 64):
        lo, hi = f(bits)
        assert (int(lo), int(hi)) == (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)


@pytest.mark.parametrize("f", both(fp.saturate_array))
@MEDIUM
@given(xs=st.lists(int64s, min_size=0, max_size=40), bits=st.integers(2, 63), rows=st.sampled_from([1, 2]))
def test_saturate_array_values_and_count(f, xs, bits, rows):
    xs = xs[: len(xs) - len(xs) % rows]
    x = np.asarray(xs, dtype=np.int64).reshape(rows, -1)
    out, count = f(x, bits)
    assert out.dtype == np.int64 and out.shape == x.shape
    want = [ref_sat(v, bits) for v in xs]
    assert out.ravel().tolist() == [v for v, _ in want]
    assert int(count) == sum(s for _, s in want)


def test_saturate_array_count_example():
    x = np.array([[40000, -40000, 32767], [-32768, 32768, -32769]], dtype=np.int64)
    out, count = fp.saturate_array(x, 16)
    assert out.tolist() == [[32767, -32768, 32767], [-32768, 32767, -32768]]
    assert int(count) == 4


# ----------------------------------------------------------------------------------
# rne_shift_array
# ----------------------------------------------------------------------------------


@pytest.mark.parametrize("f", both(fp.rne_shift_array))
@MEDIUM
@given(xs=st.lists(int64s, min_size=1, max_size=36), n=shifts, cols=st.sampled_from([1, 3]))
def test_rne_shift_array_exact(f, xs, n, cols):
    xs = xs[: len(xs) - len(xs) % cols] or xs[:1] * cols
    x = np.asarray(xs, dtype=np.int64).reshape(-1, cols)
    out = f(x, n)
    assert out.dtype == np.int64 and out.shape == x.shape
    assert out.ravel().tolist() == [ref_rne_shift(v, n) for v in xs]


def test_rne_shift_array_out_of_range_raises():
    with pytest.raises(ValueError):
        fp.rne_shift_array(np.array([1, 2], dtype=np.int64), 63)


# ----------------------------------------------------------------------------------
# rne_div (spec 1.5)
# ----------------------------------------------------------------------------------

dens = st.one_of(
    st.integers(1, I64_MAX),
    st.integers(1, 1000),
    st.sampled_from([1, 2, 3, 2**62, 2**62 + 1, 2**62 + 10, I64_MAX - 1, I64_MAX]),
)


@pytest.mark.parametrize("f", both(fp.rne_div))
@FAST
@given(num=int64s, den=dens)
def test_rne_div_exact(f, num, den):
    assert int(f(num, den)) == ref_rne(Fraction(num, den))


@st.composite
def div_ties(draw):
    half = draw(st.integers(1, 2**62 - 1))
    den = 2 * half
    q = draw(st.integers(I64_MIN // den + 1, (I64_MAX - half) // den))
    return q * den + half, den


@pytest.mark.parametrize("f", both(fp.rne_div))
@FAST
@given(t=div_ties())
def test_rne_div_ties_go_to_even(f, t):
    num, den = t
    got = int(f(num, den))
    assert got % 2 == 0
    assert got == ref_rne(Fraction(num, den))


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("f", both(fp.rne_div))
def test_rne_div_large_denominator(f):
    # 2*rem would overflow int64 here (den > 2**62): regression for the fixed overflow.
    d = 2**62 + 10
    cases = [
        (2**62 + 5, d, 1),
        (2**61 + 5, d, 0),
        (2**61 + 6, d, 1),
        (2**61 + 4, d, 0),
        (3 * (2**61 + 5), d, 2),
        (-(2**61 + 5), d, 0),
        (-3 * (2**61 + 5), d, -2),
        (I64_MAX, I64_MAX, 1),
        (I64_MAX - 1, I64_MAX, 1),
        (2**62 - 1, I64_MAX, 0),
        (2**62, I64_MAX, 1),
        (2**62 + 1, I64_MAX, 1),
        (-(2**62) - 1, I64_MAX, -1),
        (I64_MIN, I64_MAX, -1),
        (I64_MIN, 2**62 + 2**61, -1),
    ]
    for num, den, want in cases:
        assert ref_rne(Fraction(num, den)) == want
        assert int(f(num, den)) == want, (num, den)
        assert int(f(np.int64(num), np.int64(den))) == want, (num, den)


@pytest.mark.parametrize("f", both(fp.rne_div))
@pytest.mark.parametrize("den", [0, -1, -4, I64_MIN])
def test_rne_div_nonpositive_den_raises(f, den):
    with pytest.raises((ValueError, ZeroDivisionError)):
        f(10, den)


# ----------------------------------------------------------------------------------
# isqrt_floor / isqrt_rne (spec 1.6)
# ----------------------------------------------------------------------------------

SQRT_MAX = 2**62 - 1
radicands = st.one_of(
    st.integers(0, SQRT_MAX),
    st.integers(0, 10_000),
    st.integers(1, 2**31 - 1)
    .flatmap(  # squares and their neighbours
        lambda k: st.sampled_from([k * k - 1, k * k, k * k + 1, k * k + k, k * k + k + 1])
    )
    .filter(lambda v: 0 <= v <= SQRT_MAX),
    st.sampled_from([0, 1, 2, 3, 4, SQRT_MAX, SQRT_MAX - 1, 2**60, 2**60 - 1]),
)


@pytest.mark.parametrize("f", both(fp.isqrt_floor))
@FAST
@given(v=radicands)
def test_isqrt_floor_vs_math(f, v):
    assert int(f(v)) == math.isqrt(v)


@pytest.mark.parametrize("f", both(fp.isqrt_rne) + both(fp.isqrt_rne_fast))
@FAST
@given(v=radicands)
def test_isqrt_rne_is_nearest(f, v):
    r = int(f(v))
    # |r - sqrt(v)| < 1/2  <=>  (2r - 1)^2 < 4v < (2r + 1)^2   (exact integers)
    assert (2 * r - 1) ** 2 < 4 * v < (2 * r + 1) ** 2 or (r == 0 and v == 0)
    s = math.isqrt(v)
    assert r == (s + 1 if v - s * s > s else s)


@pytest.mark.parametrize("f", both(fp.isqrt_rne) + both(fp.isqrt_rne_fast))
def test_isqrt_rne_boundaries(f):
    # r^2 + r rounds down (sqrt < r + 1/2), r^2 + r + 1 rounds up.
    for r in (1, 2, 7, 255, 2**16 + 3, 2**31 - 2):
        assert int(f(r * r + r)) == r
        assert int(f(r * r + r + 1)) == r + 1
        assert int(f(r * r)) == r
    assert int(f(SQRT_MAX)) == 2**31


@pytest.mark.parametrize("f", both(fp.isqrt_floor) + both(fp.isqrt_rne) + both(fp.isqrt_rne_fast))
@pytest.mark.parametrize("v", [-1, -(2**40), 2**62, 2**62 + 5, I64_MAX])
def test_isqrt_out_of_range_raises(f, v):
    with pytest.raises(ValueError):
        f(v)


# ----------------------------------------------------------------------------------
# quantize_q / dequantize (spec 1.1)
# ----------------------------------------------------------------------------------


def ref_quantize_q(x: float, f: int, bits: int) -> tuple[int, bool]:
    return ref_sat(ref_rne(Fraction(x) * 2**f), bits)


finite = st.floats(allow_nan=False, allow_infinity=False)


@FAST
@given(x=st.one_of(finite, st.floats(-300, 300)), f=st.integers(0, 40), bits=st.integers(2, 63))
def test_quantize_q_scalar_exact(x, f, bits):
    q, n_sat = fp.quantize_q(x, f, bits)
    want, sat = ref_quantize_q(x, f, bits)
    assert q.dtype == np.int64
    assert int(q) == want
    assert n_sat == int(sat)


@MEDIUM
@given(
    xs=st.lists(st.one_of(finite, st.floats(-200, 200)), min_size=1, max_size=30),
    f=st.integers(0, 16),
    bits=st.sampled_from([8, 16, 32, 53, 54, 55, 62, 63]),
)
def test_quantize_q_array_exact(xs, f, bits):
    q, n_sat = fp.quantize_q(np.asarray(xs), f, bits)
    want = [ref_quantize_q(x, f, bits) for x in xs]
    assert q.tolist() == [v for v, _ in want]
    assert n_sat == sum(s for _, s in want)


def test_quantize_q_rne_ties():
    xs = [0.5 / 256, 1.5 / 256, 2.5 / 256, 3.5 / 256, -0.5 / 256, -1.5 / 256, -2.5 / 256, -0.0]
    q, n_sat = fp.quantize_q(xs, 8, 16)
    assert q.tolist() == [0, 2, 2, 4, 0, -2, -2, 0]
    assert n_sat == 0


@pytest.mark.filterwarnings("error")
def test_quantize_q_saturation_both_ends():
    xs = [200.0, -200.0, 127.99609375, -128.0, 127.998046875, -128.001953125, -128.005859375, 1e308, -1e308]
    q, n_sat = fp.quantize_q(xs, 8, 16)
    # 127.998046875*256 = 32767.5 -> 32768 (even) -> clamps; -32768.5 -> -32768 (even) fits;
    # -32769.5 -> -32770 clamps. Six values clamp.
    assert q.tolist() == [32767, -32768, 32767, -32768, 32767, -32768, -32768, 32767, -32768]
    assert n_sat == 6


def test_quantize_q_wide_formats_clamp_exactly():
    # 2**(bits-1) - 1 is not a float64 once bits > 54: the top end must still clamp to it.
    for bits in (54, 55, 62, 63):
        hi, lo = 2 ** (bits - 1) - 1, -(2 ** (bits - 1))
        q, n_sat = fp.quantize_q(
            [2.0 ** (bits - 1), -(2.0 ** (bits - 1)), 2.0**70, -(2.0**70), float(2 ** (bits - 2))], 0, bits
        )
        assert q.tolist() == [hi, lo, hi, lo, 2 ** (bits - 2)]
        assert n_sat == 3


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_quantize_q_nonfinite_names_tensor(bad):
    with pytest.raises(NonFiniteError, match=r"blocks\.0\.dt_proj\.weight") as ei:
        fp.quantize_q(np.array([1.0, bad, 2.0]), 8, 16, name="blocks.0.dt_proj.weight")
    assert isinstance(ei.value, ValueError)
    assert "1 non-finite" in str(ei.value)


def test_quantize_q_nonfinite_counts_all_and_default_name():
    with pytest.raises(NonFiniteError, match=r"^tensor: 3 non-finite"):
        fp.quantize_q([np.nan, np.inf, -np.inf, 0.0], 8, 16)


@pytest.mark.parametrize("bits", [0, 1, 64, 65])
def test_quantize_q_bad_bits_raises(bits):
    with pytest.raises(ValueError):
        fp.quantize_q([1.0], 8, bits)


@FAST
@given(q=st.integers(-(2**53), 2**53), f=st.integers(0, 60))
def test_dequantize_exact(q, f):
    got = fp.dequantize(q, f)
    assert got.dtype == np.float64
    assert Fraction(float(got)) == Fraction(q, 2**f)


def test_dequantize_arrays():
    q = np.array([[32767, -32768], [1, -1]], dtype=np.int16)
    got = fp.dequantize(q, 8)
    assert got.tolist() == [[32767 / 256, -128.0], [1 / 256, -1 / 256]]
    assert fp.dequantize(np.array([179]), 8).tolist() == [0.69921875]


@MEDIUM
@given(x=st.floats(-127, 127), f=st.integers(0, 8))
def test_quantize_dequantize_roundtrip_within_half_lsb(x, f):
    q, _ = fp.quantize_q(x, f, 16)
    assert abs(Fraction(float(fp.dequantize(q, f))) - Fraction(x)) <= Fraction(1, 2 ** (f + 1))


# ----------------------------------------------------------------------------------
# quantize_multiplier (spec 3.2)
# ----------------------------------------------------------------------------------

multipliers = st.one_of(
    st.floats(min_value=2**-31, max_value=2**31 - 0.5, exclude_max=True),
    st.floats(min_value=1e-6, max_value=10.0),
    st.integers(-31, 30).map(lambda e: 2.0**e),
    st.integers(-32, 29).map(lambda e: math.nextafter(2.0 ** (e + 1), 0.0)),  # frac -> 1
)


@FAST
@given(m=multipliers)
def test_quantize_multiplier_exact(m):
    m0, shift = fp.quantize_multiplier(m)
    assert isinstance(m0, int) and isinstance(shift, int)
    assert 2**30 <= m0 < 2**31
    assert 0 <= shift <= 62
    M = Fraction(m)
    assert abs(Fraction(m0, 2**shift) - M) <= M / 2**31
    assert (m0, shift) == ref_quantize_multiplier(m)


def test_quantize_multiplier_rounds_up_to_next_power():
    # frac * 2**31 = 2**31 - 2**-22: rounds to 2**31 -> (2**30, shift - 1).
    m = math.nextafter(1.0, 0.0)
    assert fp.quantize_multiplier(m) == (2**30, 30)
    assert fp.quantize_multiplier(1.0) == (2**30, 30)
    assert fp.quantize_multiplier(0.75) == (3 * 2**29, 31)


def test_quantize_multiplier_domain_boundaries():
    # Accepted set is exactly [2**-32 - 2**-64, 2**31 - 1/2) (see the docstring).
    assert fp.quantize_multiplier(2.0**-31) == (2**30, 61)
    assert fp.quantize_multiplier(2.0**-32) == (2**30, 62)
    assert fp.quantize_multiplier(2.0**-32 - 2.0**-64) == (2**30, 62)
    assert fp.quantize_multiplier(math.nextafter(2.0**31 - 0.5, 0.0)) == (2**31 - 1, 0)
    for bad in (math.nextafter(2.0**-32 - 2.0**-64, 0.0), 2.0**-40, 5e-324, 2.0**31 - 0.5, 2.0**31, 1e300):
        with pytest.raises(ValueError):
            fp.quantize_multiplier(bad)


@pytest.mark.parametrize("bad", [0.0, -0.0, -1.0, -(2.0**-20), float("nan"), float("inf"), float("-inf")])
def test_quantize_multiplier_rejects_nonpositive_and_nonfinite(bad):
    with pytest.raises(ValueError, match="quantize_multiplier"):
        fp.quantize_multiplier(bad)


# ----------------------------------------------------------------------------------
# requantize / requantize_array (spec 3.3)
# ----------------------------------------------------------------------------------

accs = st.one_of(
    st.integers(-(2**31), 2**31 - 1), st.integers(-3000, 3000), st.sampled_from([-(2**31), 2**31 - 1, 0, 1, -1])
)
m0s = st.one_of(st.integers(2**30, 2**31 - 1), st.sampled_from([2**30, 2**31 - 1, 1690499128]))
zps = st.integers(-128, 127)
out_bits = st.sampled_from([8, 8, 16, 32])


@pytest.mark.parametrize("f", both(fp.requantize))
@FAST
@given(acc=accs, m0=m0s, shift=shifts, zp=zps, bits=out_bits)
def test_requantize_exact(f, acc, m0, shift, zp, bits):
    v, flag = f(acc, m0, shift, zp, bits)
    want_v, want_flag = ref_requantize(acc, m0, shift, zp, bits)
    assert int(v) == want_v
    assert bool(flag) is want_flag


@pytest.mark.parametrize("f", both(fp.requantize))
@MEDIUM
@given(shift=st.integers(31, 61), zp=zps, k=st.integers(-(2**20), 2**20))
def test_requantize_ties_go_to_even(f, shift, zp, k):
    # m0 = 2**30 makes acc*m0 / 2**shift = acc / 2**s: choose acc = (k + 1/2) * 2**s exactly.
    m0, s = 2**30, shift - 30
    acc = k * 2**s + 2 ** (s - 1)
    assume(-(2**31) <= acc < 2**31)
    v, flag = f(acc, m0, shift, 0, 32)
    assert (int(v), bool(flag)) == (k if k % 2 == 0 else k + 1, False)
    v, flag = f(acc, m0, shift, zp, 32)
    assert (int(v), bool(flag)) == ref_requantize(acc, m0, shift, zp, 32)


def test_requantize_does_not_round_half_away_from_zero():
    # 2.5 -> 2 and -2.5 -> -2 (TFLite would give 3 and -3).
    assert fp.requantize(5, 2**30, 31, 0, 8) == (2, False)
    assert fp.requantize(-5, 2**30, 31, 0, 8) == (-2, False)
    assert fp.requantize(7, 2**30, 31, 0, 8) == (4, False)


@pytest.mark.parametrize("f", both(fp.requantize_array))
@MEDIUM
@given(xs=st.lists(accs, min_size=1, max_size=30), m0=m0s, shift=st.integers(20, 45), zp=zps)
def test_requantize_array_values_and_count(f, xs, m0, shift, zp):
    acc = np.asarray(xs, dtype=np.int64).reshape(1, -1)
    out, count = f(acc, m0, shift, zp, 8)
    assert out.dtype == np.int64 and out.shape == acc.shape
    want = [ref_requantize(a, m0, shift, zp, 8) for a in xs]
    assert out.ravel().tolist() == [v for v, _ in want]
    assert int(count) == sum(s for _, s in want)


def test_requantize_array_example():
    acc = np.array([[1000, -20000], [1540, 20000]], dtype=np.int64)
    out, count = fp.requantize_array(acc, 1690499128, 37, -5, 8)
    assert out.tolist() == [[7, -128], [14, 127]]
    assert int(count) == 2


# ----------------------------------------------------------------------------------
# Jitted vs plain-Python twin, every scalar primitive on the same inputs
# ----------------------------------------------------------------------------------


@FAST
@given(
    x=int64s, n=shifts, s=st.integers(-62, 62), bits=st.integers(2, 63), den=dens, v=radicands, acc=accs, m0=m0s, zp=zps
)
def test_jit_and_py_func_agree(x, n, s, bits, den, v, acc, m0, zp):
    def same(name, *args):
        f = getattr(fp, name)
        try:
            a = f(*args)
        except ValueError as e:  # both must raise, same type
            with pytest.raises(type(e)):
                f.py_func(*args)
            return
        b = f.py_func(*args)
        if isinstance(a, tuple):
            assert tuple(int(t) for t in a) == tuple(int(t) for t in b), (name, args)
        else:
            assert int(a) == int(b), (name, args)

    same("rne_shift", x, n)
    same("saturate", x, bits)
    same("sat_limits", bits)
    same("rne_div", x, den)
    same("isqrt_floor", v)
    same("isqrt_rne", v)
    same("requantize", acc, m0, n, zp, 8)
    # left shifts: fold x into [-2**(62+s), 2**(62+s)) so that x << -s fits int64
    same("shift_round", x if s >= 0 else x % 2 ** (63 + s) - 2 ** (62 + s), s)


# ----------------------------------------------------------------------------------
# Worked examples of docs/quant-spec.md, one test each
# ----------------------------------------------------------------------------------


def test_spec_1_1_quantize_0_7():
    q, n_sat = fp.quantize_q(0.7, 8, 16)
    assert (int(q), n_sat) == (179, 0)


def test_spec_1_1_quantize_tie_to_even():
    q, n_sat = fp.quantize_q(0.001953125, 8, 16)
    assert (int(q), n_sat) == (0, 0)


def test_spec_1_1_quantize_saturates():
    q, n_sat = fp.quantize_q(200.0, 8, 16)
    assert (int(q), n_sat) == (32767, 1)


@pytest.mark.parametrize(
    "x,n,want",
    [(5, 1, 2), (7, 1, 4), (-5, 1, -2), (-7, 1, -4), (6, 2, 2), (-(2**63), 62, -2)],
    ids=["5>>1", "7>>1", "-5>>1", "-7>>1", "6>>2", "min>>62"],
)
def test_spec_1_2_rne_shift_examples(x, n, want):
    assert int(fp.rne_shift(x, n)) == want
    assert int(fp.rne_shift.py_func(x, n)) == want


def test_spec_1_2_n0_returns_x():
    assert int(fp.rne_shift(-123456789, 0)) == -123456789


def test_spec_1_4_saturate_positive():
    v, s = fp.saturate(40000, 16)
    assert (int(v), bool(s)) == (32767, True)


def test_spec_1_4_saturate_negative():
    v, s = fp.saturate(-40000, 16)
    assert (int(v), bool(s)) == (-32768, True)


@pytest.mark.parametrize("num,den,want", [(344064, 4, 86016), (10, 4, 2), (14, 4, 4)], ids=["344064/4", "10/4", "14/4"])
def test_spec_1_5_rne_div_examples(num, den, want):
    assert int(fp.rne_div(num, den)) == want


@pytest.mark.parametrize("v,want", [(20, 4), (21, 5), (5637210112, 75081)], ids=["20", "21", "5637210112"])
def test_spec_1_6_isqrt_rne_examples(v, want):
    assert int(fp.isqrt_rne(v)) == want


def test_spec_2_4_rmsnorm_inverse_example():
    # the 1.5/1.6 primitives chained as in the spec's RMSNorm example
    assert int(fp.rne_div(344064, 4)) == 86016
    assert int(fp.isqrt_rne((86016 + 1) << 16)) == 75081
    assert int(fp.rne_div(2**40, 75081)) == 14644339


def test_spec_3_2_quantize_multiplier_example():
    assert fp.quantize_multiplier(0.0123) == (1690499128, 37)


def test_spec_3_3_requantize_example():
    v, s = fp.requantize(1000, 1690499128, 37, -5, 8)
    assert (int(v), bool(s)) == (7, False)


def test_spec_3_3_requantize_saturates():
    v, s = fp.requantize(-20000, 1690499128, 37, -5, 8)
    assert (int(v), bool(s)) == (-128, True)


def test_spec_3_4_requantize_example():
    assert fp.requantize(1540, 1690499128, 37, -5, 8) == (14, False)
