"""Fixed-point primitives: the arithmetic of docs/quant-spec.md, section 1.

Every function here is tiny, pure and exact. Names carry the semantics:
rounding is always round-half-to-even (RNE, "convergent"), saturation always
clamps (never wraps). The jitted scalar functions are what the integer kernels
call; each has a plain-Python twin via ``.py_func`` (tests check they agree).

Host-side helpers (``quantize_q``, ``dequantize``, ``quantize_multiplier``)
use float and are never called on the bittrue path.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "MAX_SHIFT",
    "rne_shift",
    "rne_shift_core",
    "shift_round",
    "shift_round_core",
    "shift_parts",
    "saturate",
    "sat_limits",
    "rne_shift_array",
    "saturate_array",
    "rne_div",
    "isqrt_rne",
    "isqrt_rne_fast",
    "quantize_q",
    "dequantize",
    "quantize_multiplier",
    "requantize",
    "requantize_core",
    "requantize_array",
    "NonFiniteError",
]

# Right shifts of int64 values are defined for 0 <= n <= MAX_SHIFT (spec 1.2).
MAX_SHIFT = 62


class NonFiniteError(ValueError):
    """A float tensor handed to the quantizer holds NaN or +-Inf."""


@njit(cache=True, inline="always")
def rne_shift(x: int, n: int) -> int:
    """Round-half-to-even arithmetic right shift: RNE(x / 2**n), int64.

    x: int64 in [-2**63, 2**63); n: int in [0, 62]. Exact for every such input:
    ties (remainder exactly 2**(n-1)) go to the even quotient; n = 0 returns x.
    Equals the hardware "convergent rounding" (AP_RND_CONV) of a right shift.
    Branch-free: q = floor(x / 2**n), r = x - q*2**n in [0, 2**n); round up
    when 2r > 2**n, or 2r == 2**n and q is odd (for n = 0, r = 0: never).
    """
    check_rne_shift(n)
    return rne_shift_core(x, n)


@njit(cache=True, inline="always")
def check_rne_shift(n: int) -> None:
    """ValueError unless 0 <= n <= 62 (the range of `rne_shift` / `requantize`): loops call it
    once and then the unchecked `rne_shift_core` / `requantize_core` per element."""
    if n < 0 or n > 62:
        raise ValueError("rne_shift: shift must be in [0, 62]")


@njit(cache=True, inline="always")
def rne_shift_core(x: int, n: int) -> int:
    """`rne_shift` without the range check: the caller has checked 0 <= n <= 62 once (a kernel,
    before its loop: a loop without an exit vectorises). The same operations, so the same value."""
    x = np.int64(x)
    q = x >> n  # floor(x / 2**n)
    twice_rem = (x - (q << n)) << 1  # 2r < 2**63: exact (wraps in q << n cancel)
    one = np.int64(1) << n
    return q + ((twice_rem > one) | ((twice_rem == one) & ((q & 1) == 1)))


@njit(cache=True, inline="always")
def shift_round_core(x: int, up: int, down: int) -> int:
    """`shift_round(x, n)` as rne_shift_core(x << up, down) with (up, down) = `shift_parts(n)`:
    no branch and no check inside (the caller checked n once), the same value for every n."""
    return rne_shift_core(np.int64(x) << up, down)


@njit(cache=True)
def shift_parts(n: int) -> tuple[int, int]:
    """(up, down) = (max(-n, 0), max(n, 0)) of a signed shift count in [-62, 62] for
    `shift_round_core`; a count outside that range raises ValueError (as `shift_round`)."""
    if n < -62 or n > 62:
        raise ValueError("shift_round: shift must be in [-62, 62]")
    return max(-n, 0), max(n, 0)


@njit(cache=True, inline="always")
def shift_round(x: int, n: int) -> int:
    """x * 2**(-n) for a signed shift count: RNE right shift when n > 0, exact
    left shift when n <= 0 (spec 1.3, format alignment). |n| <= 62, else
    ValueError (a shift count >= 64 is undefined in LLVM/C++; the caller
    guarantees the left-shifted value fits int64)."""
    if n >= 0:
        return rne_shift(x, n)
    if n < -62:
        raise ValueError("shift_round: shift must be in [-62, 62]")
    return np.int64(x) << (-n)


@njit(cache=True, inline="always")
def sat_limits(bits: int) -> tuple[int, int]:
    """(lo, hi) of a signed two's-complement integer of ``bits`` bits, 2..63."""
    hi = (np.int64(1) << (bits - 1)) - 1
    return -hi - 1, hi


@njit(cache=True, inline="always")
def saturate(x: int, bits: int) -> tuple[int, bool]:
    """Clamp int64 x to signed ``bits`` (2..63). Returns (value, saturated: bool);
    callers add the flag to their layer's saturation counter (spec 1.4)."""
    lo, hi = sat_limits(bits)
    return min(max(np.int64(x), lo), hi), (x > hi) | (x < lo)


@njit(cache=True)
def rne_div(num: int, den: int) -> int:
    """RNE(num / den) for int64 num and den > 0 (ties to even). Spec 1.5.

    Compares rem with den - rem rather than 2*rem with den: 2*rem overflows
    int64 when den > 2**62 (the rounding was then silently wrong). den <= 0
    raises ValueError."""
    if den <= 0:
        raise ValueError("rne_div: denominator must be > 0")
    q = num // den  # floor
    rem = num % den  # = num - q*den, in [0, den); never overflows
    other = den - rem  # in (0, den]; rem > other <=> 2*rem > den
    if rem > other or (rem == other and (q & 1) == 1):
        q += 1
    return q


@njit(cache=True)
def isqrt_floor(v: int) -> int:
    """floor(sqrt(v)) for 0 <= v < 2**62 by the bit-by-bit (digit recurrence)
    method: shifts, compares and subtractions only. v outside [0, 2**62)
    raises ValueError (the recurrence starts at bit 2**60 and would silently
    return 2**31 - 1 for larger v)."""
    if v < 0 or v >= (np.int64(1) << 62):
        raise ValueError("isqrt_floor: input must be in [0, 2**62)")
    res = np.int64(0)
    bit = np.int64(1) << 60
    while bit > v:
        bit >>= 2
    while bit != 0:
        if v >= res + bit:
            v -= res + bit
            res = (res >> 1) + bit
        else:
            res >>= 1
        bit >>= 2
    return res


@njit(cache=True)
def isqrt_rne(v: int) -> int:
    """Nearest integer to sqrt(v), 0 <= v < 2**62. sqrt of an integer is never
    exactly r + 1/2, so there are no ties: round up iff v - r*r > r. Spec 1.6."""
    r = isqrt_floor(v)
    if v - r * r > r:
        r += 1
    return r


@njit(cache=True)
def isqrt_rne_fast(v: int) -> int:
    """`isqrt_rne(v)`, the same value for every 0 <= v < 2**62, from a float64 estimate corrected
    exactly in integers: r = floor(sqrt(float(v))) is within 1 of floor(sqrt(v)) (v < 2**62: the
    float's relative error is below 2**-52), then moved while r*r > v or (r+1)^2 <= v ((r+1)^2 <
    2**63), then rounded as isqrt_rne. A few operations instead of the 31-step recurrence: the
    kernels' per-token square roots (RMSNorm, RevIN) use it."""
    if v < 0 or v >= (np.int64(1) << 62):
        raise ValueError("isqrt_rne_fast: input must be in [0, 2**62)")
    r = np.int64(np.sqrt(np.float64(v)))
    while r * r > v:
        r -= 1
    while (r + 1) * (r + 1) <= v:
        r += 1
    if v - r * r > r:
        r += 1
    return r


@njit(cache=True)
def rne_shift_array(x: NDArray[np.int64], n: int) -> NDArray[np.int64]:
    """Element-wise rne_shift over an int64 array (any shape)."""
    flat = x.ravel()
    out = np.empty(flat.size, dtype=np.int64)
    for i in range(flat.size):
        out[i] = rne_shift(flat[i], n)
    return out.reshape(x.shape)


@njit(cache=True)
def saturate_array(x: NDArray[np.int64], bits: int) -> tuple[NDArray[np.int64], int]:
    """Element-wise saturate over an int64 array. Returns (values, count)."""
    flat = x.ravel()
    out = np.empty(flat.size, dtype=np.int64)
    count = 0
    for i in range(flat.size):
        v, s = saturate(flat[i], bits)
        out[i] = v
        count += s
    return out.reshape(x.shape), count


@njit(cache=True)
def requantize(acc: int, m0: int, shift: int, zero_point: int, bits: int) -> tuple[int, bool]:
    """INT8 requantization (spec 3.3): sat_bits(RNE(acc * m0 / 2**shift) + zp).

    acc: int64 (an int32 accumulator, or the int64 RMSNorm product); m0: int64 in
    [2**30, 2**31); shift in [0, 62]. One rounding, half to even (TFLite rounds
    half away from zero, twice; we do not). Returns (value, saturated)."""
    check_rne_shift(shift)
    return requantize_core(acc, m0, shift, zero_point, bits)


@njit(cache=True, inline="always")
def requantize_core(acc: int, m0: int, shift: int, zero_point: int, bits: int) -> tuple[int, bool]:
    """`requantize` without the shift's range check (the caller checked it once, before its loop)."""
    return saturate(rne_shift_core(np.int64(acc) * np.int64(m0), shift) + zero_point, bits)


@njit(cache=True)
def requantize_array(
    acc: NDArray[np.int64], m0: int, shift: int, zero_point: int, bits: int
) -> tuple[NDArray[np.int64], int]:
    """Element-wise requantize over an int64 array. Returns (values, count)."""
    flat = acc.ravel()
    out = np.empty(flat.size, dtype=np.int64)
    count = 0
    for i in range(flat.size):
        v, s = requantize(flat[i], m0, shift, zero_point, bits)
        out[i] = v
        count += s
    return out.reshape(acc.shape), count


# ----------------------------------------------------------------------------------
# Host side (float allowed): quantizing weights and inputs, reading results back.
# ----------------------------------------------------------------------------------


def quantize_q(x: ArrayLike, frac_bits: int, bits: int = 16, name: str = "tensor") -> tuple[NDArray[np.int64], int]:
    """Float -> signed fixed point with ``frac_bits`` fractional bits (spec 1.1).

    RNE of x * 2**frac_bits (exact: scaling by a power of two loses nothing in
    float64), then saturation to ``bits``. Returns (int64 array, n_saturated).
    NaN/Inf raise NonFiniteError naming ``name``. bits must be in [2, 63].
    """
    if not 2 <= bits <= 63:
        raise ValueError(f"quantize_q: bits must be in [2, 63], got {bits}")
    arr = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise NonFiniteError(f"{name}: {bad} non-finite value(s) (NaN/Inf) cannot be quantized")
    with np.errstate(over="ignore"):  # overflow to +-inf saturates below
        scaled = np.rint(np.ldexp(arr, frac_bits))  # np.rint rounds half to even
    # 2**(bits-1) is exact in float64 for every bits; 2**(bits-1) - 1 is not
    # once bits > 54, so clamp the top end in the integer domain.
    lim = float(1 << (bits - 1))
    n_sat = int(np.count_nonzero((scaled >= lim) | (scaled < -lim)))
    q = np.clip(scaled, -lim, lim).astype(np.int64)
    return np.minimum(q, (1 << (bits - 1)) - 1), n_sat


def dequantize(q: ArrayLike, frac_bits: int) -> NDArray[np.float64]:
    """Signed fixed point -> float64: q * 2**-frac_bits (exact)."""
    return np.ldexp(np.asarray(q, dtype=np.float64), -frac_bits)


def quantize_multiplier(real_multiplier: float, bits: int = 31) -> tuple[int, int]:
    """Real M > 0 -> (m0, shift) with M ~= m0 * 2**-shift (spec 3.2).

    `bits` (default 31) is the multiplier's width: m0 in [2**(bits-1), 2**bits); the S6 output
    uses bits = 15 (spec 3.13). The description below is for the default.

    m0 in [2**30, 2**31) (31 significant bits), shift in [0, 62]. m0 is
    RNE(frac * 2**31) where M = frac * 2**e, frac in [0.5, 1); so the relative
    error is at most 2**-31. Raises ValueError when M is not finite, <= 0, or
    when the shift would leave [0, 62]. Every M in [2**-31, 2**31 - 1/2) is
    accepted; precisely, the accepted set is [2**-32 - 2**-64, 2**31 - 1/2)
    (just below 2**31 frac rounds up to 1 and the shift would be -1).
    """
    m = float(real_multiplier)
    if not math.isfinite(m) or m <= 0.0:
        raise ValueError(f"quantize_multiplier: multiplier must be finite and > 0, got {m!r}")
    frac, exp = math.frexp(m)  # m = frac * 2**exp, 0.5 <= frac < 1
    m0 = int(np.rint(math.ldexp(frac, bits)))  # exact scaling, RNE
    if m0 == (1 << bits):  # frac rounded up to 1.0
        m0 //= 2
        exp += 1
    shift = bits - exp
    if not 0 <= shift <= MAX_SHIFT:
        raise ValueError(
            f"quantize_multiplier: multiplier {m!r} needs shift {shift}, outside "
            f"[0, {MAX_SHIFT}] (accepted: [2**-32 - 2**-64, 2**31 - 1/2))"
        )
    return m0, shift
