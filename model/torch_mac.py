"""Exact multiply-accumulate sums on torch tensors, shared by the INT16 and INT8 torch back ends
(the torch twin of `intsim/kernels_mac.py`; docs/quant-spec.md 2.1-2.3 and 3.4).

Tensors are channels-last here, [B, L, C] (the torch back end's layout: a 1x1 convolution is
then one GEMM on the tensor as it lies). A dense Kx1 convolution is one GEMM of the input
windows (`unfold` over time: rows [B*T, C_in*K]) with the weight rows [C_in*K, C_out].
torch has no fast (and, on CUDA, no) integer GEMM, so the sum runs in the narrowest float type
that holds **every partial sum exactly**: with |x| <= x_max,

    bound = max_o (sum_j |w[o, j]|) * x_max + max_o |b[o]|

bounds every partial sum in any order (BLAS blocking, FMA, GPU split-K alike); bound <= 2^24:
float32 (only while float32 GEMMs are IEEE: no TF32 / reduced matmul precision, else float64),
<= 2^53: float64. Every product and partial sum is then an integer that type
represents, so the result is the exact integer sum whatever the summation order, on CPU and
CUDA. The choice is made once per layer (`DenseSum`, `DepthwiseSum`) from the lowered weights.
The sums are returned in that float type (exact integers, |acc| <= bound); a layer whose bound
exceeds 2^53 (millions of terms) is summed in runs of columns that each stay within 2^53 and
added in int64, and its sums are returned as int64.

The bound from the format alone (INT16: x_max = 2^15) rarely allows float32 for INT16 layers,
while real activations use a fraction of the range. So a layer whose static type is wider also
keeps float32 weights, and each call measures its input's max |x| (one min/max pass) and runs
the float32 GEMM when `max_o (sum_j |w[o, j]| * max|x| + |b[o]|) <= 2^24` holds for that very
input: the same proof, with the input's own bound, so the sum is exact either way
(`RuntimeBound`; tests/test_torch_backend.py checks both sides of 2^24).

INT8 dense layers on a CPU with int8 dot-product instructions (`int8_gemm_is_exact`) skip the float
GEMM: `Int8DenseSum` multiplies the int8 codes themselves with `torch._int_mm` (oneDNN, int8 x int8
-> int32), about 4x faster than the float32 GEMM. There every product and every partial sum is an
integer in int32 arithmetic (VNNI `vpdpbusd` / AMX add four or more int8 products straight into an
int32; no 16-bit intermediate that could saturate, as AVX2's `vpmaddubsw` path can, hence the
check), and the sum is exact whenever the integer bound `sum_j |w[o, j]| * 128 + |b[o]| < 2^31`
holds (int32 addition is exact below 2^31 in any order).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from model.torch_fixedpoint import ACC_BOUND, FLOAT32_EXACT, FLOAT64_EXACT

INT8_CODE_MAX_ABS = 128  # |x| of an int8 code


def float32_gemm_is_ieee() -> bool:
    """True when float32 matrix products are plain IEEE float32 (torch's "highest" matmul precision,
    no TF32 on CUDA): the float32 exactness proof needs it. Otherwise (`torch.set_float32_matmul_precision`
    "high"/"medium", or TF32 allowed) every sum runs in float64."""
    return torch.get_float32_matmul_precision() == "highest" and not torch.backends.cuda.matmul.allow_tf32


def exact_float(bound: int) -> torch.dtype | None:
    """The narrowest float dtype whose integers up to `bound` in magnitude are all exact (None: none)."""
    if bound <= FLOAT32_EXACT:
        return torch.float32
    if bound <= FLOAT64_EXACT:
        return torch.float64
    return None


def _bound(w_rows: np.ndarray, bias: np.ndarray, x_max: int) -> int:
    per_row = np.abs(w_rows.astype(np.int64)).sum(axis=1) * x_max + np.abs(bias.astype(np.int64))
    return int(per_row.max()) if per_row.size else 0


def _column_chunks(rows: np.ndarray, x_max: int) -> list[tuple[int, int]]:
    """Runs of the reduction axis whose partial sums stay within 2^53 (each summed exactly in float64)."""
    col = np.abs(rows.astype(np.int64)).max(axis=0) * x_max
    chunks, start, total = [], 0, 0
    for j, c in enumerate(col.tolist()):
        if total + c > FLOAT64_EXACT and j > start:
            chunks.append((start, j))
            start, total = j, 0
        total += c
    chunks.append((start, len(col)))
    return chunks


@dataclass
class RuntimeBound:
    """A float32 copy of a layer's weights and the per-row sums that bound its accumulators:
    `fits(x)` says whether input x keeps every partial sum of every row within 2^24."""

    row_abs: np.ndarray  # int64 [C_out]: sum_j |w[o, j]|
    bias_abs: np.ndarray  # int64 [C_out]: |b[o]|
    weight: torch.Tensor  # float32, the layer's weight layout
    bias: torch.Tensor  # float32 [C_out] (exact wherever `fits` holds: |b| <= 2^24)

    @classmethod
    def build(cls, rows: np.ndarray, bias: np.ndarray, weight: np.ndarray, device: str | torch.device) -> RuntimeBound:
        """rows: int [C_out, J] (the weights of each output); weight: the same in the layout the sum uses."""
        return cls(
            np.abs(rows.astype(np.int64)).sum(axis=1),
            np.abs(bias.astype(np.int64)),
            torch.as_tensor(np.ascontiguousarray(weight), device=device).to(torch.float32),
            torch.as_tensor(bias, device=device).to(torch.float32),
        )

    def fits(self, x: torch.Tensor) -> bool:
        """True when the float32 sums of x are exact: max_o (row_abs[o] max|x| + |b[o]|) <= 2^24."""
        if x.numel() == 0:
            return True
        x_min, x_max = torch.aminmax(x)
        x_abs = max(-int(x_min), int(x_max))
        return int((self.row_abs * x_abs + self.bias_abs).max(initial=0)) <= FLOAT32_EXACT


def _runtime_bound(rows: np.ndarray, bias: np.ndarray, weight: np.ndarray, dtype, device) -> RuntimeBound | None:
    """A RuntimeBound for a layer whose static accumulator type is wider than float32, else None."""
    return None if dtype == torch.float32 else RuntimeBound.build(rows, bias, weight, device)


@dataclass
class DenseSum:
    """acc[b, t, o] = bias[o] + sum_{c,k} w[o, c, k] * x[b, t*S + k, c] (spec 2.2 / 3.4), exact."""

    w_t: torch.Tensor  # [C_in*K, C_out] float (row order: k major, c minor: a channels-last window)
    bias: torch.Tensor  # [C_out] in w_t's dtype (one run) or int64 (several runs)
    kernel: int
    stride: int
    chunks: list[tuple[int, int]]  # runs of the reduction axis summed in float (one, unless huge)
    narrow: RuntimeBound | None = None  # float32 weights for inputs that allow them (static type wider)
    wide: tuple[torch.Tensor, torch.Tensor] | None = None  # float64 (w_t, bias) when the static type is float32

    @classmethod
    def build(
        cls, weight: np.ndarray, bias: np.ndarray, stride: int, x_max: int, device: str | torch.device
    ) -> DenseSum:
        """weight: int [C_out, C_in, K] or [C_out, C_in] (1x1); x_max: the largest |input| (int16:
        32768; INT8: 255 once the zero point is removed)."""
        w3 = weight if weight.ndim == 3 else weight[:, :, None]
        rows = np.ascontiguousarray(w3.transpose(0, 2, 1)).reshape(w3.shape[0], -1)
        dtype = exact_float(_bound(rows, bias, x_max))
        chunks = [(0, rows.shape[1])] if dtype is not None else _column_chunks(rows, x_max)
        w_t = torch.as_tensor(np.ascontiguousarray(rows.T), device=device).to(dtype or torch.float64)
        wide = (
            (w_t.to(torch.float64), torch.as_tensor(bias, device=device).to(torch.float64))
            if dtype == torch.float32
            else None
        )
        return cls(
            w_t,
            torch.as_tensor(bias, device=device).to(dtype or torch.int64),
            w3.shape[2],
            stride,
            chunks,
            _runtime_bound(rows, bias, rows.T, dtype, device),
            wide,
        )

    @property
    def acc_dtype(self) -> torch.dtype:
        """The accumulator type when the input does not allow float32 (`narrow`)."""
        return self.bias.dtype if self.wide is None or float32_gemm_is_ieee() else torch.float64

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x: int [B, L, C_in] (zero point already removed) -> acc [B, (L-K)//S+1, C_out]: float32 when
        the input allows it (`narrow.fits`), else acc_dtype."""
        n_b, _, c_in = x.shape
        ieee = float32_gemm_is_ieee()
        small = ieee and self.narrow is not None and self.narrow.fits(x)
        w_t, bias = (self.narrow.weight, self.narrow.bias) if small else (self.w_t, self.bias)
        if self.wide is not None and not ieee:
            w_t, bias = self.wide
        xf = x.to(w_t.dtype, memory_format=torch.contiguous_format)  # windows: contiguous runs of K * C_in
        if self.kernel == 1 and self.stride == 1:
            cols = xf.reshape(-1, c_in)
        else:
            cols = xf.unfold(1, self.kernel, self.stride).transpose(2, 3).reshape(-1, self.kernel * c_in)
        if small or len(self.chunks) == 1:  # bias inside the bound: one exact GEMM
            acc = torch.addmm(bias, cols, w_t)
        else:
            acc = self.bias.expand(cols.shape[0], -1)
            for lo, hi in self.chunks:
                acc = acc + (cols[:, lo:hi] @ self.w_t[lo:hi]).to(torch.int64)
        return acc.reshape(n_b, -1, acc.shape[1])


@dataclass
class DepthwiseSum:
    """Causal depthwise: acc[b, t, c] = bias[c] + sum_k w[c, k] x[b, t-K+1+k, c], x[:, <0] = 0
    (spec 2.3 / 3.4: the padding is the real zero), exact."""

    weight: torch.Tensor  # [K, C] in the exact dtype
    bias: torch.Tensor  # [C]
    narrow: RuntimeBound | None = None  # float32 weights for inputs that allow them (static type wider)

    @classmethod
    def build(cls, weight: np.ndarray, bias: np.ndarray, x_max: int, device: str | torch.device) -> DepthwiseSum:
        dtype = exact_float(_bound(weight, bias, x_max)) or torch.int64
        return cls(
            torch.as_tensor(np.ascontiguousarray(weight.T), device=device).to(dtype),
            torch.as_tensor(bias, device=device).to(dtype),
            _runtime_bound(weight, bias, weight.T, dtype, device),
        )

    @property
    def acc_dtype(self) -> torch.dtype:
        """The accumulator type when the input does not allow float32 (`narrow`)."""
        return self.bias.dtype

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x: int [B, L, C] (zero point removed) -> acc [B, L, C]: float32 when the input allows it, else acc_dtype."""
        weight, bias = (
            (self.narrow.weight, self.narrow.bias)
            if self.narrow is not None and self.narrow.fits(x)
            else (self.weight, self.bias)
        )
        k_size, length = weight.shape[0], x.shape[1]
        xf = x.to(weight.dtype)
        acc = torch.addcmul(bias, xf, weight[k_size - 1])  # tap k reads x[t - s], s = K - 1 - k: no padding
        for k in range(k_size - 1):  # positions t < s get no tap k (it would read the zero padding)
            s = k_size - 1 - k
            if s < length:
                acc[:, s:].addcmul_(xf[:, : length - s], weight[k])
        return acc


def int8_gemm_is_exact(device: torch.device) -> bool:
    """True where `torch._int_mm` sums int8 products exactly into int32: on a CPU whose int8 dot
    products accumulate into 32 bits directly (AVX-512 VNNI or AMX) through oneDNN (mkldnn enabled).
    Elsewhere (CUDA, AVX2-only CPUs, mkldnn off) `Int8DenseSum` runs its float `DenseSum`."""
    return device.type == "cpu" and torch.backends.mkldnn.enabled and _cpu_sums_int8_into_int32()


@functools.cache
def _cpu_sums_int8_into_int32() -> bool:
    """The CPU and build facts behind `int8_gemm_is_exact` (fixed for the process; cached: reading
    them costs tens of microseconds a call)."""
    return torch.backends.mkldnn.is_available() and (
        torch.cpu._is_vnni_supported() or torch.cpu._is_amx_tile_supported()
    )


@dataclass
class Int8DenseSum:
    """`DenseSum` of int8 codes x (|x| <= 128, no zero point: the caller folds it into the bias) and
    int8 weights, in int32 through `torch._int_mm` where `int8_gemm_is_exact`, else through `fallback`
    (the float DenseSum of the same weights and bias, bound at |x| <= 128: exact too)."""

    w_t: torch.Tensor  # int8 [C_in*K, C_out] (row order: k major, c minor, as DenseSum)
    bias: torch.Tensor  # int32 [C_out]
    kernel: int
    stride: int
    fallback: DenseSum

    @classmethod
    def build(
        cls, weight: np.ndarray, bias: np.ndarray, stride: int, device: str | torch.device
    ) -> Int8DenseSum | None:
        """weight: int8 codes [C_out, C_in, K] or [C_out, C_in]; bias: int [C_out]. None unless every
        weight is an int8 and every accumulator stays within int32: sum|w| * 128 + |b| < 2^31."""
        w3 = weight if weight.ndim == 3 else weight[:, :, None]
        rows = np.ascontiguousarray(w3.transpose(0, 2, 1)).reshape(w3.shape[0], -1)
        if rows.size and (rows.min() < -128 or rows.max() > 127):
            return None
        if _bound(rows, bias, INT8_CODE_MAX_ABS) > ACC_BOUND:  # a partial sum past int32
            return None
        return cls(
            torch.as_tensor(np.ascontiguousarray(rows.T).astype(np.int8), device=device),
            torch.as_tensor(np.asarray(bias, dtype=np.int32), device=device),
            w3.shape[2],
            stride,
            DenseSum.build(weight, bias, stride, INT8_CODE_MAX_ABS, device),
        )

    @property
    def acc_dtype(self) -> torch.dtype:
        return torch.int32

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x: int [B, L, C_in] holding int8 codes -> acc [B, (L-K)//S+1, C_out]: int32 (exact integers;
        the fallback's float type where the int8 GEMM is not exact)."""
        if not int8_gemm_is_exact(x.device):
            return self.fallback(x)
        n_b, _, c_in = x.shape
        xb = int8_codes(x)  # windows: runs of K * C_in bytes
        if self.kernel == 1 and self.stride == 1:
            cols = xb.reshape(-1, c_in)
        else:
            cols = xb.unfold(1, self.kernel, self.stride).transpose(2, 3).reshape(-1, self.kernel * c_in)
        # canonical strides: for one window row the reshape above is a view whose rows overlap (stride S * C_in <
        # K * C_in), and torch counts a size-1 axis's odd stride as contiguous; _int_mm reads such strides wrongly
        if cols.stride() != (cols.shape[1], 1):
            cols = cols.clone(memory_format=torch.contiguous_format)
        acc = torch._int_mm(cols, self.w_t).add_(self.bias)
        return acc.reshape(n_b, -1, acc.shape[1])


INT8_CODES_ATTR = "_cmamba_int8_codes"  # the int8 copy of an int32 tensor of codes, made by its first int8 GEMM reader


def int8_codes(x: torch.Tensor) -> torch.Tensor:
    """x (integer codes within int8) as a contiguous int8 tensor, converted once per tensor: layer outputs never
    change after their layer returns them, so a second GEMM reading the same tensor (e.g. two input projections
    of one RMSNorm output) reuses the copy of the first."""
    codes = getattr(x, INT8_CODES_ATTR, None)
    if codes is None:
        codes = x.to(torch.int8, memory_format=torch.contiguous_format)
        if codes is not x:  # (an int8 x is its own copy: no self-reference)
            setattr(x, INT8_CODES_ATTR, codes)
    return codes
