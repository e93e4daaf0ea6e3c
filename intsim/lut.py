"""Look-up tables for sigmoid and SiLU (docs/quant-spec.md, sections 2.6 and 3.5).

Tables are built once in Python and emitted as constants into the C++ headers;
the C++ never recomputes them. Entries are computed with ``decimal`` (exp is
correctly rounded there) at 50 significant digits and rounded half to even, so
the bytes are the same on every machine and with every libm.

INT16: the table address is the input re-expressed with LUT_FRAC_BITS = 8
fractional bits, clamped to [-LUT_RANGE, LUT_RANGE) = [-8, 8): 4096 entries.
INT8: one entry per int8 input code (256 entries), so the only error is the
output rounding.
"""

from __future__ import annotations

import math
import operator
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from fractions import Fraction
from functools import cache, lru_cache

import numpy as np

__all__ = [
    "LUT_FRAC_BITS",
    "LUT_RANGE",
    "LUT_SIZE",
    "LUT_OFFSET",
    "FUNCTIONS",
    "int16_table",
    "int8_table",
    "int16_table_clamped",
    "int8_table_clamped",
    "max_abs_error_int16",
    "max_abs_error_int8",
    "exact_value",
    "EXP_ADDR_FRAC_BITS",
    "EXP_SIZE",
    "EXP_FRAC_BITS",
    "exp_decay_table",
]

LUT_FRAC_BITS = 8  # address resolution 2**-8
LUT_RANGE = 8  # table covers [-8, 8)
LUT_SIZE = 2 * LUT_RANGE << LUT_FRAC_BITS  # 4096 entries
LUT_OFFSET = LUT_RANGE << LUT_FRAC_BITS  # address of x = 0 is 2048

_DIGITS = 50
FUNCTIONS = ("sigmoid", "silu", "softplus")
# Functions whose INT16 table read is the identity above the table range (x >= 8, spec 2.6, 2.11).
IDENTITY_ABOVE_RANGE = ("silu", "softplus")

# The S6 decay table (spec 2.12): EXP[a] = RNE(exp(-a / 2^8) * 2^14), a = 0 .. 4095 (-Delta*A in [0, 16)).
EXP_ADDR_FRAC_BITS = 8
EXP_SIZE = 4096
EXP_FRAC_BITS = 14


def exact_value(func: str, x: Decimal | float | Fraction) -> Decimal:
    """sigmoid(x), silu(x) or softplus(x) to 50 significant digits (spec 2.6, 2.11): every
    decimal operation rounds to 50 digits, half to even: sig = 1 / (1 + exp(-x)), silu = x * sig,
    softplus = ln(1 + exp(x)). x is a Decimal or float (taken exactly) or a Fraction
    (numerator / denominator, to 50 digits)."""
    with localcontext() as ctx:
        ctx.prec = _DIGITS
        ctx.rounding = ROUND_HALF_EVEN
        xd = Decimal(x) if not isinstance(x, Fraction) else Decimal(x.numerator) / Decimal(x.denominator)
        if func == "softplus":
            return (Decimal(1) + xd.exp()).ln()
        sig = Decimal(1) / (Decimal(1) + (-xd).exp())
        if func == "sigmoid":
            return +sig
        if func == "silu":
            return xd * sig
    raise ValueError(f"unknown LUT function {func!r}; expected one of {FUNCTIONS}")


def _round_scaled(value: Decimal, scale: Decimal, bits: int, offset: int = 0) -> tuple[int, bool]:
    """(sat_bits(RNE(value * scale) + offset), clamped) (spec 1.1 and 1.4); the product is
    rounded to 50 digits first. `clamped` says the entry was saturated (spec 5 counts its reads)."""
    with localcontext() as ctx:
        ctx.prec = _DIGITS
        ctx.rounding = ROUND_HALF_EVEN
        q = int((value * scale).to_integral_value(rounding=ROUND_HALF_EVEN)) + offset
    hi = (1 << (bits - 1)) - 1
    return max(-hi - 1, min(hi, q)), not -hi - 1 <= q <= hi


@cache
def _int16_table_cached(func: str, out_frac_bits: int) -> tuple[bytes, bytes]:
    """(int16 entries, bool clamped flags) as bytes."""
    scale = Decimal(2) ** out_frac_bits
    pairs = [
        _round_scaled(exact_value(func, Fraction(a - LUT_OFFSET, 1 << LUT_FRAC_BITS)), scale, 16)
        for a in range(LUT_SIZE)
    ]
    return (
        np.asarray([v for v, _ in pairs], dtype="<i2").tobytes(),
        np.asarray([c for _, c in pairs], dtype=np.bool_).tobytes(),
    )


@cache
def _exp_decay_cached() -> bytes:
    scale = Decimal(2) ** EXP_FRAC_BITS
    with localcontext() as ctx:
        ctx.prec = _DIGITS
        ctx.rounding = ROUND_HALF_EVEN
        entries = [
            _round_scaled((-(Decimal(a) / Decimal(1 << EXP_ADDR_FRAC_BITS))).exp(), scale, 16)[0]
            for a in range(EXP_SIZE)
        ]
    return np.asarray(entries, dtype="<i2").tobytes()


def exp_decay_table() -> np.ndarray:
    """int16[EXP_SIZE]: entry a = RNE(exp(-a / 256) * 2^14) (spec 2.12), the S6 decay exp(Delta*A)
    at Q1.14 for -Delta*A = a / 256 in [0, 16); entry 0 is 16384 (1.0), entries a >= 2662 are 0.
    Shared by INT16 and INT8 (3.13). A fresh copy."""
    return np.frombuffer(_exp_decay_cached(), dtype="<i2").astype(np.int16)


def _int16_cached_checked(func: str, out_frac_bits) -> tuple[bytes, bytes]:
    if func not in FUNCTIONS:
        raise ValueError(f"unknown LUT function {func!r}; expected one of {FUNCTIONS}")
    return _int16_table_cached(func, _frac_bits(out_frac_bits))


def int16_table(func: str, out_frac_bits: int) -> np.ndarray:
    """int16[4096]: entry a = sat16(RNE(f((a - 2048) / 256) * 2**out_frac_bits)).

    func: "sigmoid" | "silu"; out_frac_bits: an integer 0..15. Returns a fresh
    (writable) copy; the cached bytes cannot be altered through it."""
    return np.frombuffer(_int16_cached_checked(func, out_frac_bits)[0], dtype="<i2").astype(np.int16)


def int16_table_clamped(func: str, out_frac_bits: int) -> np.ndarray:
    """bool[4096]: True where `int16_table(func, out_frac_bits)` saturated the entry (the
    rounded value lay outside int16). Reading such an entry counts as a saturation (spec 5)."""
    return np.frombuffer(_int16_cached_checked(func, out_frac_bits)[1], dtype=np.bool_).copy()


def _frac_bits(value) -> int:
    """An integer in [0, 15] (8.5 or "8" are errors, not silently truncated)."""
    try:
        f = operator.index(value)
    except TypeError:
        raise ValueError(f"LUT output frac_bits must be an integer in [0, 15], got {value!r}") from None
    if isinstance(value, bool) or not 0 <= f <= 15:
        raise ValueError(f"LUT output frac_bits must be an integer in [0, 15], got {value!r}")
    return f


def _int8_params(in_scale, in_zero_point, out_scale, out_zero_point):
    """Validate INT8 quantization parameters (spec 3.1): scales finite and > 0,
    zero points integers in [-128, 127]. Returns them as (float, int, float, int)."""
    scales = []
    for label, s in (("in_scale", in_scale), ("out_scale", out_scale)):
        s = float(s)
        if not math.isfinite(s) or s <= 0.0:
            raise ValueError(f"int8 LUT: {label} must be finite and > 0, got {s!r}")
        scales.append(s)
    zps = []
    for label, z in (("in_zero_point", in_zero_point), ("out_zero_point", out_zero_point)):
        try:
            zi = operator.index(z)
        except TypeError:
            raise ValueError(f"int8 LUT: {label} must be an integer, got {z!r}") from None
        if not -128 <= zi <= 127:
            raise ValueError(f"int8 LUT: {label} must be in [-128, 127], got {zi}")
        zps.append(zi)
    return scales[0], zps[0], scales[1], zps[1]


@lru_cache(maxsize=256)
def _int8_entries(
    func: str, in_scale: float, in_zero_point: int, out_scale: float, out_zero_point: int
) -> tuple[tuple[int, bool], ...]:
    """(entry, clamped) for the 256 input codes, spec 3.5: the scales enter with their exact
    binary values; x = s_x * (q - z_x), 1 / s_y and f(x) * (1 / s_y) are each rounded to 50
    digits (half to even) before the final RNE to an integer."""
    if func not in FUNCTIONS:
        raise ValueError(f"unknown LUT function {func!r}; expected one of {FUNCTIONS}")
    in_scale, in_zero_point, out_scale, out_zero_point = _int8_params(
        in_scale, in_zero_point, out_scale, out_zero_point
    )
    s_in, s_out = Decimal(float(in_scale)), Decimal(float(out_scale))
    with localcontext() as ctx:
        ctx.prec = _DIGITS
        ctx.rounding = ROUND_HALF_EVEN
        inv_out = Decimal(1) / s_out
        return tuple(
            _round_scaled(exact_value(func, s_in * (q - int(in_zero_point))), inv_out, 8, int(out_zero_point))
            for q in range(-128, 128)
        )


def int8_table(func: str, in_scale: float, in_zero_point: int, out_scale: float, out_zero_point: int) -> np.ndarray:
    """int8[256]: entry k (input code q = k - 128) =
    sat8(RNE(f(in_scale * (q - in_zp)) / out_scale) + out_zp). Spec 3.5."""
    entries = _int8_entries(func, in_scale, in_zero_point, out_scale, out_zero_point)
    return np.asarray([v for v, _ in entries], dtype=np.int8)


def int8_table_clamped(
    func: str, in_scale: float, in_zero_point: int, out_scale: float, out_zero_point: int
) -> np.ndarray:
    """bool[256]: True where `int8_table` with the same arguments saturated the entry
    (reading it counts as a saturation, spec 5)."""
    entries = _int8_entries(func, in_scale, in_zero_point, out_scale, out_zero_point)
    return np.asarray([c for _, c in entries], dtype=np.bool_)


def max_abs_error_int16(func: str, out_frac_bits: int) -> float:
    """max over table entries of |T[a] / 2**out_frac_bits - f(x_a)| (a float)."""
    table = int16_table(func, out_frac_bits)
    scale = Decimal(2) ** -out_frac_bits
    worst = Decimal(0)
    for a in range(LUT_SIZE):
        exact = exact_value(func, Fraction(a - LUT_OFFSET, 1 << LUT_FRAC_BITS))
        worst = max(worst, abs(Decimal(int(table[a])) * scale - exact))
    return float(worst)


def max_abs_error_int8(func: str, in_scale: float, in_zero_point: int, out_scale: float, out_zero_point: int) -> float:
    """max over the 256 entries of |out_scale*(T[k]-out_zp) - f(in_scale*(q-in_zp))|."""
    table = int8_table(func, in_scale, in_zero_point, out_scale, out_zero_point)
    s_in, s_out = Decimal(float(in_scale)), Decimal(float(out_scale))
    worst = Decimal(0)
    for k, q in enumerate(range(-128, 128)):
        exact = exact_value(func, s_in * (q - int(in_zero_point)))
        worst = max(worst, abs(s_out * (int(table[k]) - int(out_zero_point)) - exact))
    return float(worst)
