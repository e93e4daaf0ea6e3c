"""The fixed-point primitives of docs/quant-spec.md section 1 on torch tensors (needs the 'train' extra).

The torch twins of `intsim/fixedpoint.py`, element-wise over int64 tensors of any shape, on
any device (CPU or CUDA): round-half-to-even shifts and divisions, clamping saturation with a
count, the exact integer square root and INT8 requantization. Each is exact for the ranges
the spec states and is property-tested against exact Python integers (tests/test_torch_backend.py).

Exactness traps handled here, once:
- `>>` on int64 tensors is an arithmetic (floor) shift; shift counts stay in [0, 62].
- torch integer division: only `rounding_mode="floor"` is used (never true division, never
  truncation toward zero); `rne_div` corrects the floor quotient with the remainder.
- products: every caller keeps |product| < 2^63 by the spec's widths (section 2, 3).
- `isqrt_floor`: a float64 estimate corrected by exact integer comparisons (the estimate of
  sqrt(v) for v < 2^62 is within 1 of the floor; the corrections make it exact).

`exact_float_shift` is the fast path for integers a float type holds exactly (|x| <= 2^53 in
float64): scaling by 2^-n is exact and `torch.round` rounds half to even, so
round(x * 2^-n) == rne_shift(x, n). Kernels use it only where the spec's widths prove the
bound (each kernel says which); `narrow` and `requantize` are the two output steps.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from numpy.typing import ArrayLike

MAX_SHIFT = 62
FLOAT64_EXACT = 1 << 53  # every integer of magnitude <= 2^53 is a float64
FLOAT32_EXACT = 1 << 24  # ... <= 2^24 a float32


def rne_shift(x: torch.Tensor, n: int | torch.Tensor) -> torch.Tensor:
    """RNE(x / 2^n) for an integer tensor x (int64: x < 2^63 - 2^61; int32: x <= 2^31 - 2^(n-1))
    and n in [0, 62]: a Python int or an int64 tensor broadcastable to x. q = x >> n; round up when
    the remainder r exceeds 2^(n-1), or
    equals it and q is odd: (x + 2^(n-1) - 1 + (q & 1)) >> n (n >= 1; n = 0 returns x)."""
    if isinstance(n, int):
        if not 0 <= n <= MAX_SHIFT:
            raise ValueError(f"rne_shift: shift must be in [0, {MAX_SHIFT}], got {n}")
        if n == 0:
            return x
        return (x + ((1 << (n - 1)) - 1) + ((x >> n) & 1)) >> n
    half_minus_one = torch.clamp((torch.ones_like(n) << n >> 1) - 1, min=0)  # per channel: small
    return (x + half_minus_one + ((x >> n) & (n > 0).to(x.dtype))) >> n


def rne_shift_(x: torch.Tensor, n: int) -> torch.Tensor:
    """`rne_shift` with a Python int shift, computed in x itself (a temporary of the caller; the
    same range conditions). Returns x."""
    if not 0 <= n <= MAX_SHIFT:
        raise ValueError(f"rne_shift: shift must be in [0, {MAX_SHIFT}], got {n}")
    if n == 0:
        return x
    odd = (x >> n).bitwise_and_(1)
    return x.add_(odd).add_((1 << (n - 1)) - 1).bitwise_right_shift_(n)


def time_major(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """x [B, L, C] as a contiguous [L, B, C] tensor of `dtype` (per-step slices of a scan are then
    contiguous)."""
    return x.transpose(0, 1).to(dtype, memory_format=torch.contiguous_format)


def batch_major(y: torch.Tensor) -> torch.Tensor:
    """The inverse of `time_major` for an int32 result: [L, B, C] -> contiguous [B, L, C]."""
    return y.transpose(0, 1).contiguous()


def scan_steps(a: torch.Tensor, b: torch.Tensor, bits: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The first-order recurrence of the INT16 scan (spec 2.7) on time-major float64 [L, B, C]:
    s_t = sat_bits(round(a_t s_{t-1} + b_t)), s_{-1} = 0 (no saturation when bits is None), and the
    number of clamped steps. Exact when every a_t s + b_t is a float64 integer or tie (the callers'
    bounds). -> (states float64 [L, B, C], count)."""
    lo, hi = sat_limits(bits) if bits is not None else (None, None)
    out = torch.empty_like(b)
    state = torch.zeros_like(b[0])
    for t in range(b.shape[0]):
        state = torch.addcmul(b[t], a[t], state, out=out[t]).round_()
        if bits is not None:
            state.clamp_(lo, hi)
    zero = zero_count(b.device)
    if bits is None or out.numel() == 0:
        return out, zero
    s_min, s_max = torch.aminmax(out)
    if bool((s_min > lo) & (s_max < hi)):  # no state at a limit: nothing was clamped
        return out, zero
    raw = torch.addcmul(b[1:], a[1:], out[:-1]).round_()  # each step recomputed before clamping
    return out, torch.count_nonzero(raw != out[1:]) + torch.count_nonzero(torch.round(b[0]) != out[0])


def shift_round(x: torch.Tensor, n: int) -> torch.Tensor:
    """x * 2^-n for a signed shift count (spec 1.3): RNE right shift when n > 0, exact left
    shift when n <= 0 (|n| <= 62; the caller keeps the result inside int64)."""
    if n >= 0:
        return rne_shift(x, n)
    if n < -MAX_SHIFT:
        raise ValueError(f"shift_round: shift must be in [-{MAX_SHIFT}, {MAX_SHIFT}], got {n}")
    return x << -n


def exact_float_shift(x: torch.Tensor, n: int, out_of_place: bool = True) -> torch.Tensor:
    """RNE(x * 2^-n) of a float tensor of integers inside its exact range (|x| <= 2^53 in
    float64, 2^24 in float32), n in [-62, 62]: exact (power-of-two scaling loses nothing and
    stays normal, torch.round is half to even). Result: the same float dtype; with
    out_of_place=False computed in x itself (x a temporary of the caller)."""
    if out_of_place:
        return torch.round(x * (2.0**-n))
    return x.mul_(2.0**-n).round_()


def sat_limits(bits: int) -> tuple[int, int]:
    hi = (1 << (bits - 1)) - 1
    return -hi - 1, hi


def saturate(x: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(clamp(x, -2^(bits-1), 2^(bits-1) - 1), number of clamped elements as a 0-d int64
    tensor) (spec 1.4). Works on integer tensors and on float tensors of integers alike.
    Callers pass a temporary, use the returned tensor and never read x again: x is consumed (clamped
    in place where it is contiguous; otherwise overwritten while the clamped copy is formed). One
    min/max pass decides first: a tensor already inside the range (the common case) is returned as it
    is, count 0."""
    lo, hi = sat_limits(bits)
    if x.numel() == 0:
        return x, zero_count(x.device)
    x_min, x_max = torch.aminmax(x)
    below, above = int(x_min) < lo, int(x_max) > hi  # Python ints: one host read each, no extra tensor ops
    if not (below or above):
        return _with_range(x, x_min, x_max), zero_count(x.device)
    y, n = _clamp_counted(x, lo, hi, below, above)
    return _with_range(y, torch.clamp(x_min, lo, hi), torch.clamp(x_max, lo, hi)), n


@functools.lru_cache(maxsize=16)
def zero_count(device: torch.device) -> torch.Tensor:
    """A 0-d int64 zero on `device`, made once: the count of a layer that clamps nothing (never
    modified in place: counts are summed out of place)."""
    return torch.zeros((), dtype=torch.int64, device=device)


def _clamp_counted(x: torch.Tensor, lo: int, hi: int, below: bool, above: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(x clamped to [lo, hi], the number of elements of x outside it) for an x with some (`below` /
    `above` say which sides). Clamped values differ from their input: clamp(r) - r != 0 counts both
    sides (a difference, not a compare: 2x faster). Saturation is usually rare: for a contiguous x the
    work runs only on the rows (x[b], one sample of a [B, L, C] tensor, flattened: fewer and longer rows
    reduce faster than [B * L, C]) whose max exceeds hi or min falls below lo (a per-row amax / amin, the
    sides that need it; every clamped element lies in such a row), which are clamped and written back in
    place (x is the caller's temporary). Where a quarter of the rows or more hold one, or x is strided,
    on the whole tensor (a clamped copy)."""
    if x.dim() >= 2 and x.shape[-1] and x.is_contiguous():
        rows = x.view(x.shape[0], -1)
        hit = torch.amax(rows, dim=1) > hi if above else None
        if below:
            low = torch.amin(rows, dim=1) < lo
            hit = low if hit is None else hit.logical_or_(low)
        index = torch.nonzero(hit).squeeze(1)
        if 4 * index.shape[0] < rows.shape[0]:
            sel = rows.index_select(0, index)
            clamped = torch.clamp(sel, lo, hi)
            rows.index_copy_(0, index, clamped)
            return x, torch.count_nonzero(sel.sub_(clamped))
    y = torch.clamp(x, lo, hi)
    return y, torch.count_nonzero(x.sub_(y))


RANGE_ATTR = "_cmamba_min_max"  # (min, max) 0-d tensors of an int32 result of `saturate`, known from its own pass


def _with_range(y: torch.Tensor, y_min: torch.Tensor, y_max: torch.Tensor) -> torch.Tensor:
    if y.dtype == torch.int32:
        setattr(y, RANGE_ATTR, (y_min, y_max))
    return y


def min_max(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(min, max) of a layer's int32 output: the one `saturate` found (the tensor as it returned it: rows
    do not change their output afterwards), else one aminmax pass."""
    known = getattr(t, RANGE_ATTR, None)
    return known if known is not None else tuple(torch.aminmax(t))


def rne_div(num: torch.Tensor, den: int | torch.Tensor) -> torch.Tensor:
    """RNE(num / den), ties to even, for int64 num and den > 0 (an int or an int64 tensor
    broadcastable to num) (spec 1.5): floor quotient q, remainder r = num - q den in [0, den);
    round up when r > den - r, or r == den - r and q is odd."""
    q = torch.div(num, den, rounding_mode="floor")
    rem = num - q * den
    other = den - rem
    return q + ((rem > other) | ((rem == other) & ((q & 1) == 1))).to(q.dtype)


def isqrt_floor(v: torch.Tensor) -> torch.Tensor:
    """floor(sqrt(v)) for int64 0 <= v < 2^62: a float64 estimate (off by at most 1), then
    exact integer corrections (r^2 <= v < (r + 1)^2 holds on return)."""
    r = torch.floor(torch.sqrt(v.to(torch.float64))).to(torch.int64)
    r = r - (r * r > v).to(torch.int64)
    r = r - (r * r > v).to(torch.int64)
    r = r + ((r + 1) * (r + 1) <= v).to(torch.int64)
    return r + ((r + 1) * (r + 1) <= v).to(torch.int64)


def isqrt_rne(v: torch.Tensor) -> torch.Tensor:
    """Nearest integer to sqrt(v), 0 <= v < 2^62 (no ties exist): r + 1 when v - r^2 > r (spec 1.6)."""
    r = isqrt_floor(v)
    return r + (v - r * r > r).to(torch.int64)


ACC_BOUND = (1 << 31) - 1  # |acc| of an INT8 accumulator (int32, spec 3.3)
ROUND_MAGIC = 1.5 * 2.0**52  # x + ROUND_MAGIC rounds x half to even into the low bits (|x| <= 2^51)
MAGIC_ROUND_MAX = 1 << 30  # |RNE(P)| bound under which requantize_float rounds through ROUND_MAGIC
FLOAT_REQUANT_MAX_SHIFT = 44  # requantization in float64 is exact up to this shift (see requantize)
INT32_REQUANT_MIN_SHIFT = 32  # from this shift the rounded |acc m0| < 2^62 fits int32 (see requantize)


def requantize(
    acc: torch.Tensor,
    m0: int | torch.Tensor,
    shift: int | torch.Tensor,
    zero_point: int,
    bits: int = 8,
    acc_bound: int = ACC_BOUND,
) -> tuple[torch.Tensor, torch.Tensor]:
    """sat_bits(rne_shift(acc * m0, shift) + zero_point) as int32, count (spec 3.3). acc: an integer
    tensor (or a float tensor of exact integers) with |acc| < 2^31 (spec 3.3); m0, shift: ints, or
    int64 tensors broadcastable to acc (per channel). An int shift <= 44 takes the exact float path
    (`requantize_float`, given acc_bound >= max |acc|: the RMSNorm and RevIN products are wider);
    otherwise the product acc * m0 < 2^62 is formed in int64, and from an int shift >= 32 (|rounded|
    <= 2^30) the zero point and the saturation run in int32."""
    if isinstance(shift, int) and shift <= FLOAT_REQUANT_MAX_SHIFT:
        ties = not (isinstance(m0, int) and no_ties(acc_bound, m0, shift))
        return requantize_float(acc, math.ldexp(m0, -shift), zero_point, bits, acc_bound, ties=ties)
    offset = (
        tie_free_offset(acc_bound, m0, shift, zero_point) if isinstance(m0, int) and isinstance(shift, int) else None
    )
    if offset is not None:  # no tie: floor((acc m0 + offset) / 2^shift) = RNE(acc m0 2^-shift) + z
        y = acc.to(torch.int64).mul_(m0).add_(offset).bitwise_right_shift_(shift)
        return saturate(y.to(torch.int32), bits)  # shift > 44 here: |y| <= 2^17 + |z| fits int32
    prod = acc.to(torch.int64) * m0  # a temporary: an int shift rounds it in place
    y = rne_shift_(prod, shift) if isinstance(shift, int) else rne_shift(prod, shift)
    if isinstance(shift, int) and shift >= INT32_REQUANT_MIN_SHIFT and bits <= 16:  # |y| <= 2^(62 - shift) <= 2^30
        return saturate(y.to(torch.int32).add_(zero_point), bits)  # (+ |z| <= 2^15: int32) narrower passes
    y, n = saturate(y.add_(zero_point), bits)
    return y.to(torch.int32), n


def no_ties(acc_bound: int, m0: int, shift: int) -> bool:
    """True when no product acc m0 (integer |acc| <= acc_bound) is a tie of the rounding by 2^shift,
    i.e. an odd multiple of 2^(shift-1): that needs exactly shift - 1 - v2(m0) trailing zero bits in acc
    (v2: the number of trailing zero bits), while a nonzero |acc| <= acc_bound has at most
    bit_length(acc_bound) - 1 (acc = 0 or m0 = 0 give 0; shift <= 0 gives an integer: no tie)."""
    return shift <= 0 or not m0 or shift - (m0 & -m0).bit_length() >= acc_bound.bit_length()


def tie_free_offset(acc_bound: int, m0: int, shift: int, zero_point: int) -> int | None:
    """2^(shift-1) + z 2^shift when `no_ties` holds, shift >= 1 and the sum stays inside int64; else None.
    Then RNE(acc m0 / 2^shift) + z = floor((acc m0 + offset) / 2^shift), one arithmetic shift (rounding
    half up differs from half to even only on ties). Holds for INT8 RMSNorm (|acc| < 2^31, shift 48:
    any m0 with v2(m0) <= 16)."""
    if shift < 1 or not no_ties(acc_bound, m0, shift):
        return None
    offset = (1 << (shift - 1)) + (zero_point << shift)
    return offset if acc_bound * abs(m0) + abs(offset) < 1 << 63 else None


def float_multipliers(m0: ArrayLike, shift: ArrayLike) -> np.ndarray | None:
    """m0 * 2^-shift as float64 (exact: m0 has 31 bits) for `requantize_float`, or None when a shift
    exceeds FLOAT_REQUANT_MAX_SHIFT (then the int64 path is the exact one)."""
    shift = np.asarray(shift, dtype=np.int64)
    if shift.size and int(shift.max()) > FLOAT_REQUANT_MAX_SHIFT:
        return None
    return np.ldexp(np.asarray(m0, dtype=np.float64), -shift)


def requantize_float(
    acc: torch.Tensor,
    mult: float | torch.Tensor,
    zero_point: int,
    bits: int = 8,
    acc_bound: int = ACC_BOUND,
    mult_max: float | None = None,
    ties: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`requantize` with M = m0 2^-shift (a float, or a float64 tensor per channel), shift <= 44:
    y = sat(round(acc * M) + z) in float64. Exact: with P = acc m0 2^-shift the true value, the
    product's error is at most |P| 2^-53, while a P that is not a tie lies at least 2^-shift from
    the nearest half-integer, so round() matches RNE(P) whenever |P| < 2^(53 - shift) (>= 2^9);
    a tie is representable, hence exact. A larger |P| saturates either way (|P| + |z| > 2^9 - 129
    exceeds int8), with the same sign: the clamped value and its count agree.

    acc_bound (>= max |acc|; the spec's int32 accumulator by default) and mult_max (max |M|;
    computed when None) decide the rounding: when acc_bound mult_max <= 2^30 (`magic_round_fits`),
    |RNE(P)| <= 2^30 and adding ROUND_MAGIC = 1.5 2^52 rounds half to even (the sum's ulp is 1) and
    leaves RNE(P) in the low 32 bits of the float64 (two's complement): read as int64 and
    truncated to int32. An even z is added with the constant (ROUND_MAGIC + z + M acc in one pass,
    `addcmul` / `add` with alpha): the sum's ulp is still 1 and, z being even, the parity that breaks a tie is RNE(P)'s,
    so the low bits hold RNE(P) + z whether P is rounded once (FMA) or first to float64 (then
    exactly as above); an odd z would flip the parity of ties, so it is added in int32 afterwards,
    unless the caller knows that no acc m0 is a tie (ties=False, `no_ties`): then no P or its float64
    product lies on a half-integer (the product's error is below P's distance to one, above), the
    sum's rounding is never a tie, and any z is folded into the constant.
    Fewer and narrower passes than round / add / convert in float64, the same bits."""
    v = acc.to(torch.float64)  # in place from here (acc is consumed if it is float64 already)
    if mult_max is None:
        mult_max = abs(mult) if isinstance(mult, float) else float(mult.abs().max()) if mult.numel() else 0.0
    if magic_round_fits(acc_bound, mult_max):
        folded = zero_point if zero_point % 2 == 0 or not ties else 0
        offset = ROUND_MAGIC + folded
        if isinstance(mult, float):  # offset + M acc: one pass (M acc rounded once, or fused)
            torch.add(const64(offset, v.device), v, alpha=mult, out=v)
        else:
            torch.addcmul(const64(offset, v.device), v, mult, out=v)
        y = v.view(torch.int64).to(torch.int32)
        return saturate(y.add_(zero_point) if zero_point != folded else y, bits)
    y, n = saturate(v.mul_(mult).round_().add_(zero_point), bits)
    return y.to(torch.int32), n


@functools.lru_cache(maxsize=1024)
def const64(value: float, device: torch.device) -> torch.Tensor:
    """A 0-d float64 tensor of `value` on `device`, made once (creating one costs more than the pass it feeds).
    Bounded: an add layer's folded offset differs per model and per QAT step."""
    return torch.tensor(value, dtype=torch.float64, device=device)


def magic_round_fits(acc_bound: int, mult_max: float) -> bool:
    """True when every |acc M| <= acc_bound mult_max <= 2^30: `requantize_float` may round through
    ROUND_MAGIC (RNE(P) + z then fits int32 for |z| < 2^30)."""
    return acc_bound * mult_max <= MAGIC_ROUND_MAX


def narrow(acc: torch.Tensor, shift: int, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """sat_bits(shift_round(acc, shift)) as int32, count: the INT16 output step (spec 2). acc: an
    integer tensor, or a float tensor of integers inside its exact range (|acc| <= 2^53 for
    float64, 2^24 for float32), where the rounding is done exactly in float (`exact_float_shift`).
    acc is a temporary of the caller: it is rounded in place (int32 acc: |acc| <= 2^30 and shift <= 30,
    or no right shift, so that `rne_shift_` cannot overflow)."""
    if acc.is_floating_point():
        v = exact_float_shift(acc, shift, out_of_place=False)
    else:
        v = rne_shift_(acc, shift) if shift >= 0 else shift_round(acc, shift)
    y, n = saturate(v, bits)
    return y.to(torch.int32), n
