"""Exact integer multiply-accumulate cores shared by the INT16 and INT8 convolutions.

The sums (docs/quant-spec.md 2.2/2.3 and 3.4 share them): every product and the bias are added
exactly: in int32 accumulators where the caller proved the layer's bound (`acc_bound`, from the
weights and the input range: no partial sum can leave int32, so the sums are the spec's int64 sums
bit for bit), else in int64. Each finished sum is narrowed at once by the one requantization both
precisions share (fixedpoint.requantize: INT16 is m0 = 1, zero point 0, 16 bits; INT8 the
per-channel multiplier and shift, 8 bits) into the caller's output array: no int64 sum tensor.
Scratch (`work`, `part`, `row`) comes from the caller so a whole program reuses it across layers.
Numba, integer only.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import config, njit, types
from numba.core.codegen import get_host_cpu_features
from numba.extending import intrinsic

from intsim.arrays import I16Array, I32Array, I64Array, IntArray
from intsim.fixedpoint import check_rne_shift, requantize, requantize_core


@njit(cache=True)
def weight_rows(w: IntArray) -> IntArray:
    """int[C_out, C_in, K] -> int[C_out, K*C_in]: row o lists w[o, :, k] for k = 0.. in turn
    (the order of a channels-last input window)."""
    c_out, c_in, k_size = w.shape
    return np.ascontiguousarray(w.transpose(0, 2, 1)).reshape(c_out, k_size * c_in)


INT32_LIMIT = (1 << 31) - 1
POS_BLOCK = 4  # output positions accumulated together: each weight row is loaded once for four


def acc_bits(weight: np.ndarray, bias: np.ndarray, x_max_abs: int = 1 << 15) -> int:
    """Host side: the signed width that holds every partial sum of b[o] + sum_j w[o, j] x[j]
    for |x| <= x_max_abs (INT16: 2^15, -32768 included; INT8: 255 = |x - z_x|), any order."""
    w = np.ascontiguousarray(weight, np.int64).reshape(weight.shape[0], -1)
    return int(acc_bound(w, np.ascontiguousarray(bias, np.int64), x_max_abs)).bit_length() + 1


@njit(cache=True)
def acc_bound(w_rows: IntArray, b: I64Array, x_max_abs: int) -> int:
    """max_o |b[o]| + x_max_abs * sum_j |w_rows[o, j]|: bounds every partial sum of output o's
    accumulation in any order (each term and the bias at most their absolute values)."""
    worst = np.int64(0)
    for o in range(w_rows.shape[0]):
        total = abs(np.int64(b[o]))
        for j in range(w_rows.shape[1]):
            total += abs(np.int64(w_rows[o, j])) * x_max_abs
        worst = max(worst, total)
    return worst


@njit(cache=True)
def weight_cols(w: IntArray) -> IntArray:
    """int[C_out, C_in, K] -> int[K*C_in, C_out]: `weight_rows` transposed, so the output
    channels are the contiguous (vectorised) axis of the MAC loop."""
    return np.ascontiguousarray(weight_rows(w).T)


@njit(cache=True)
def conv_rows_requant(
    x: IntArray,
    x_zp: int,
    w_cols: IntArray,
    b: I64Array,
    k_size: int,
    stride: int,
    m0: I64Array,
    sh: I64Array,
    zp: int,
    bits: int,
    part: IntArray,
    prod: IntArray,
    y: IntArray,
) -> int:
    """Dense Kx1 conv, requantized as it is summed. x: int[B, C_in, L] with zero point x_zp (0 for
    INT16), w_cols: int[K*C_in, C_out] (`weight_cols`), b: int64[C_out]; per output channel o (or
    one value for all when the array has length 1): m0 (INT16: 1), sh; zp; bits (16 or 8); y:
    int16/int8 [B, C_out, (L-K)//S+1] receives sat_bits(rne_shift(acc * m0[o], sh[o]) + zp) (spec 2.2;
    spec 3.3), acc[b, o, t] = b[o] + sum_{c,k} w[o,c,k] (x[b,c,t*S+k] - x_zp); returns the saturations.
    part: accumulators, at least POS_BLOCK*(C_out+31) of int32 when the caller proved
    `acc_bound(...) <= 2^31 - 1` (every partial sum fits: the int64 sums bit for bit), else int64.
    prod: an empty array whose dtype holds every product exactly (`PROD16`, `PROD32`).
    For a block of output positions, acc[p, :] += w_cols[j, :] * (x[b_p, c, t_p*S+k] - x_zp): the
    output channels innermost (contiguous, vectorised; each product exact in the accumulator's width),
    the input values read in place (scalars: no re-layout of x)."""
    n_b, c_in, length = x.shape
    c_out = w_cols.shape[1]
    t_out = (length - k_size) // stride + 1
    step = padded(c_out)  # aligned accumulator rows
    acc = aligned(part)[: POS_BLOCK * step].reshape((POS_BLOCK, step))
    cast, pc = part.dtype.type, prod.dtype.type
    n_pos = n_b * t_out
    nsat = 0
    for p0 in range(0, n_pos, POS_BLOCK):
        n_q = min(POS_BLOCK, n_pos - p0)
        for q in range(POS_BLOCK):
            for o in range(c_out):
                acc[q, o] = b[o]
        if n_q == POS_BLOCK:
            b0, t0 = divmod(p0, t_out)
            b1, t1 = divmod(p0 + 1, t_out)
            b2, t2 = divmod(p0 + 2, t_out)
            b3, t3 = divmod(p0 + 3, t_out)
            a0, a1, a2, a3 = acc[0], acc[1], acc[2], acc[3]
            for k in range(k_size):
                xs0, xs1 = x[b0, :, t0 * stride + k], x[b1, :, t1 * stride + k]
                xs2, xs3 = x[b2, :, t2 * stride + k], x[b3, :, t3 * stride + k]
                for c in range(c_in):
                    x0, x1 = pc(xs0[c] - x_zp), pc(xs1[c] - x_zp)
                    x2, x3 = pc(xs2[c] - x_zp), pc(xs3[c] - x_zp)
                    w_col = w_cols[k * c_in + c]
                    for o in range(c_out):  # range indices: no negative-index checks, vectorises
                        wv = pc(w_col[o])
                        a0[o] += cast(pc(wv * x0))
                        a1[o] += cast(pc(wv * x1))
                        a2[o] += cast(pc(wv * x2))
                        a3[o] += cast(pc(wv * x3))
        else:  # the last positions one at a time (a padded block would sum unused rows)
            for q in range(n_q):
                bq, tq = divmod(p0 + q, t_out)
                aq = acc[q]
                for k in range(k_size):
                    xs = x[bq, :, tq * stride + k]
                    for c in range(c_in):
                        xv = pc(xs[c] - x_zp)
                        w_col = w_cols[k * c_in + c]
                        for o in range(c_out):
                            aq[o] += cast(pc(pc(w_col[o]) * xv))
        for q in range(n_q):
            bq, tq = divmod(p0 + q, t_out)
            nsat += requant_row(acc[q, :c_out], m0, sh, zp, bits, y[bq, :, tq])
    return nsat


@njit(cache=True, inline="always")
def requant_row(acc: IntArray, m0: I64Array, sh: I64Array, zp: int, bits: int, out: IntArray) -> int:
    """out[o] = sat_bits(rne_shift(acc[o] * m0[o], sh[o]) + zp) for every o (m0, sh of length 1:
    one value for every o; INT16: m0 = 1, zp = 0) -> saturations (spec 2.2 narrowing; spec 3.3)."""
    nsat = 0
    per_channel = m0.shape[0] > 1
    for o in range(acc.shape[0]):
        j = o if per_channel else 0
        v, s = requantize(acc[o], m0[j], sh[j], zp, bits)
        out[o] = v
        nsat += s
    return nsat


@njit(cache=True)
def dwconv_scratch_size(c: int, length: int, k_size: int) -> int:
    """int64 values of the `row` scratch one dwconv of [C, L] with K taps needs (`dwconv_requant`)."""
    return (k_size + 4) * c * length


@njit(cache=True)
def dwconv_requant(
    x: IntArray,
    x_zp: int,
    w: IntArray,
    b: I64Array,
    m0: I64Array,
    sh: I64Array,
    zp: int,
    bits: int,
    row: I64Array,
    y: IntArray,
) -> int:
    """Causal depthwise conv, requantized like `conv_rows_requant`. x: int[B, C, L] contiguous, x_zp:
    the input's zero point (0 for INT16), w: int[C, K], b: int64[C]; row: int64[>= dwconv_scratch_size]
    scratch; y: int16/int8[B, C, L] contiguous receives the requantized acc[b, c, t] = b[c] +
    sum_k w[c, k] (x[b, c, t-K+1+k] - x_zp), terms before t = 0 omitted (the padding is the real
    zero) -> saturations. Each sample as one flat run of C*L values: tap k's weights spread over
    the run once (zero where t < K-1-k, so a read across the channel boundary adds nothing), then
    per tap one contiguous loop over C*L (vectorised, no branch), int64 sums, then one requantization
    loop (per-value multiplier and shift: per-channel INT8 and per-tensor INT16 alike)."""
    n_b, c, length = x.shape
    k_size = w.shape[1]
    n = c * length
    bias, mul, shift, acc = row[:n], row[n : 2 * n], row[2 * n : 3 * n], row[3 * n : 4 * n]
    taps = row[4 * n : (4 + k_size) * n].reshape((k_size, n))
    per_channel = m0.shape[0] > 1
    for ch in range(c):
        j = ch if per_channel else 0
        check_rne_shift(sh[j])
        bc, mc, sc = np.int64(b[ch]), np.int64(m0[j]), np.int64(sh[j])
        bias_c, mul_c, shift_c = bias[ch * length :], mul[ch * length :], shift[ch * length :]
        for t in range(length):
            bias_c[t], mul_c[t], shift_c[t] = bc, mc, sc
        for k in range(k_size):
            lag, wk, tk = k_size - 1 - k, np.int64(w[ch, k]), taps[k, ch * length :]
            for t in range(length):
                tk[t] = wk if t >= lag else 0
    nsat = 0
    for bi in range(n_b):
        xs, ys = x[bi].reshape(n), y[bi].reshape(n)
        for i in range(n):
            acc[i] = bias[i]
        for k in range(k_size):
            lag = k_size - 1 - k  # tap k reads x[t - lag]: acc[lag:] += taps[k, lag:] x[:n - lag]
            at, tk, xk = acc[lag:], taps[k, lag:], xs[: n - lag]
            for i in range(n - lag):  # range indices into offset views: no index arithmetic, vectorises
                at[i] += tk[i] * (np.int64(xk[i]) - x_zp)
        for i in range(n):
            v, s = requantize_core(acc[i], mul[i], shift[i], zp, bits)
            ys[i] = v
            nsat += s
    return nsat


GEMM_MIN_POSITIONS = 64  # from this many output positions (B * T_out) on, a conv runs as one GEMM
# ... unless it has this many output channels: then the position blocks' vector loop over the
# channels is long enough (>= 8 vectors of int32 per input value) and they beat the GEMM, whose
# window unrolling they save (measured on the default model's head, 144 channels, batch 16-1024)
ROWS_MIN_CHANNELS = 128


# The product type of a convolution's sums, as an empty array (`conv_requant`'s `prod`): INT8's
# |x - z_x| <= 255 (an int8 zero point) times |w| <= 128 is at most 32,640, exact in int16 (16-bit
# vector multiplies); INT16's products, at most 2^30 in magnitude, are exact in int32.
PROD16 = np.empty(0, np.int16)
PROD32 = np.empty(0, np.int32)


@njit(cache=True)
def conv_requant(
    x: IntArray,
    x_zp: int,
    w_cols: IntArray,
    b: I64Array,
    k_size: int,
    stride: int,
    m0: I64Array,
    sh: I64Array,
    zp: int,
    bits: int,
    narrow: bool,
    prod: IntArray,
    work: I16Array,
    part32: I32Array,
    part64: I64Array,
    y: IntArray,
) -> int:
    """A Kx1 conv of x: int[B, C_in, L] (zero point x_zp) into y, requantized: int32 accumulators
    (`part32`) when `narrow` (the caller's proof), else int64 (`part64`) -> saturations.
    Narrow, with at least GEMM_MIN_POSITIONS output positions (B * T_out; not batch 1) and fewer than
    ROWS_MIN_CHANNELS output channels: one GEMM over every position of the batch (`conv_gemm_requant`:
    input unrolled into int16 pair rows in `work`, int16 pair multiply-adds, sums in `part32`); else
    position blocks with the output channels innermost (`conv_rows_requant`, input read in place, each
    product in `prod`'s dtype: `PROD16` for INT8, `PROD32` for INT16, exact either way). The scratch
    arrays must hold `conv_scratch_size` values each (checked: the kernels index them unchecked)."""
    n_b, c_in, length = x.shape
    c_out = w_cols.shape[1]
    t_out = (length - k_size) // stride + 1
    need = conv_scratch_size(n_b, c_in, length, c_out, k_size, t_out)
    if min(work.shape[0], part32.shape[0], part64.shape[0]) < need:
        raise ValueError("conv scratch smaller than conv_scratch_size")
    if narrow and n_b * t_out >= GEMM_MIN_POSITIONS and c_out < ROWS_MIN_CHANNELS:
        cols = unroll_pairs(x, x_zp, k_size, stride, work)
        return conv_gemm_requant(cols, w_cols, b, m0, sh, zp, bits, part32, y)
    if narrow:
        return conv_rows_requant(x, x_zp, w_cols, b, k_size, stride, m0, sh, zp, bits, part32, prod, y)
    return conv_rows_requant(x, x_zp, w_cols, b, k_size, stride, m0, sh, zp, bits, part64, prod, y)


@njit(cache=True)
def conv_scratch_size(n_b: int, c_in: int, length: int, c_out: int, k_size: int, t_out: int) -> int:
    """Scratch values (`work` and `part`, each) one conv of a batch of n_b needs (`conv_requant`):
    the GEMM's pair rows (`unroll_pairs`: (K*C_in + 1) // 2 rows of 2 padded(B*T_out) int16) and
    accumulator rows (C_out rounded up to GEMM_O rows of padded(B*T_out)), the position blocks'
    accumulators (POS_BLOCK rows of padded(C_out)), each plus a cache line for `aligned`."""
    n_pos = padded(n_b * t_out)
    pairs = (k_size * c_in + 1) // 2 * 2 * n_pos
    acc = (c_out + GEMM_O - 1) // GEMM_O * GEMM_O * n_pos
    return max(pairs, acc, POS_BLOCK * padded(c_out)) + ALIGN_BYTES


@njit(cache=True)
def unroll_pairs(x: IntArray, x_zp: int, k_size: int, stride: int, work: I16Array) -> I16Array:
    """x: int[B, C_in, L] -> the GEMM's input in `work` (im2col, zero point removed, int16) as pair rows:
    window row j = k*C_in + c (the row order of `weight_cols`) holds x[b, c, t*S + k] - x_zp at position
    n = b*T_out + t; pair row m interleaves window rows 2m and 2m + 1: pairs[m * 2 padded(B*T_out) + 2n + h]
    = row 2m + h at n (64-byte aligned pair rows; an odd last row's partner is 0, as its weights are).
    Both rows of a pair are written in one pass (each output cache line written once)."""
    n_b, c_in, length = x.shape
    n_win = k_size * c_in
    t_out = (length - k_size) // stride + 1
    step = 2 * padded(n_b * t_out)
    base = aligned(work)
    for m in range((n_win + 1) // 2):
        k0, c0 = divmod(2 * m, c_in)
        k1, c1 = divmod(min(2 * m + 1, n_win - 1), c_in)
        keep = 0 if 2 * m + 1 == n_win else 1  # no partner row: zeros
        out = base[m * step : m * step + 2 * n_b * t_out]
        for bi in range(n_b):
            xs0, xs1, dst = x[bi, c0, k0:], x[bi, c1, k1:], out[2 * bi * t_out : 2 * (bi + 1) * t_out]
            for t in range(t_out):
                dst[2 * t] = xs0[t * stride] - x_zp
                dst[2 * t + 1] = (xs1[t * stride] - x_zp) * keep
    return base


@njit(cache=True)
def pair_weights(w_cols: IntArray, b: I64Array) -> tuple[I32Array, I64Array]:
    """The GEMM's weights: (wp int32[C_out rounded up to GEMM_O, (J + 1) // 2], bias int64[same rows]),
    wp[o, m] = the int16 pair (w_cols[2m, o], w_cols[2m + 1, o]) as one int32 (low half first, as the
    pair rows of `unroll_pairs` hold x); rows and slots beyond w_cols are 0."""
    n_win, c_out = w_cols.shape
    n_rows = (c_out + GEMM_O - 1) // GEMM_O * GEMM_O
    wp = np.zeros((n_rows, (n_win + 1) // 2), np.int32)
    bias = np.zeros(n_rows, np.int64)
    for o in range(c_out):
        bias[o] = b[o]
        for j in range(n_win):
            v = np.int32(w_cols[j, o])
            wp[o, j // 2] |= (v & 0xFFFF) if j % 2 == 0 else (v << 16)
    return wp, bias


@njit(cache=True)
def conv_gemm_requant(
    cols: I16Array,
    w_cols: IntArray,
    b: I64Array,
    m0: I64Array,
    sh: I64Array,
    zp: int,
    bits: int,
    part: I32Array,
    y: IntArray,
) -> int:
    """acc[o, n] = b[o] + sum_j w_cols[j, o] cols_j[n] for every position n = b*T_out + t of the batch
    (cols: `unroll_pairs`' pair rows; accumulators int32: only where the caller proved the bound, so
    the wrapped int32 arithmetic gives the exact sums), GEMM_O output channels by TILE_POS positions
    at a time (`gemm_tile`); then y[b, o, t] = requantized acc[o, n] (`requant_row`'s arithmetic)
    -> saturations."""
    c_out = w_cols.shape[1]
    n_b, _, t_out = y.shape
    n_pos = n_b * t_out
    a_step = padded(n_pos)
    wp, bias = pair_weights(w_cols, b)
    n_pairs = wp.shape[1]
    acc = aligned(part)
    for n0 in range(0, n_pos, TILE_POS):  # padded rows hold whole tiles
        for o in range(0, wp.shape[0], GEMM_O):
            gemm_tile(
                acc, o * a_step + n0, a_step, cols, 2 * n0, 2 * a_step, wp, o * n_pairs, n_pairs, n_pairs, bias, o
            )
    nsat = 0
    row = np.empty(n_pos, dtype=y.dtype)
    for o in range(c_out):
        j = o if m0.shape[0] > 1 else 0
        nsat += requant_flat(acc[o * a_step : o * a_step + n_pos], m0[j], sh[j], zp, bits, row)
        for bi in range(n_b):
            out = y[bi, o]
            for t in range(t_out):
                out[t] = row[bi * t_out + t]
    return nsat


GEMM_O = 4  # output channels per GEMM tile
TILE_LANES = 16  # int32 lanes of one vector of a tile (512 bits)
GEMM_V = 2  # vectors of positions per GEMM tile
TILE_POS = TILE_LANES * GEMM_V  # positions per GEMM tile (32: `padded` rows hold whole tiles)


@njit(cache=True)
def gemm_tile_loops(
    acc: I32Array,
    a_off: int,
    a_step: int,
    xp: I16Array,
    x_off: int,
    x_step: int,
    wp: I32Array,
    w_off: int,
    w_step: int,
    n_pairs: int,
    b: I64Array,
    o: int,
) -> None:
    """One GEMM tile in plain loops: for i < GEMM_O, l < TILE_POS:
    acc[a_off + i*a_step + l] = b[o + i] + sum_{m < n_pairs} lo(w) xp[p + 2l] + hi(w) xp[p + 2l + 1],
    w = wp[w_off + i*w_step + m] (an int16 pair as int32, low half first), p = x_off + m*x_step;
    int32 results (wrapped: exact where the caller proved the bound). `gemm_tile_simd` computes the same."""
    for i in range(GEMM_O):
        out = acc[a_off + i * a_step : a_off + i * a_step + TILE_POS]
        for lane in range(TILE_POS):
            out[lane] = b[o + i]
        for m in range(n_pairs):
            wv = np.int64(wp[w_off + i * w_step + m])
            lo = ((wv & 0xFFFF) ^ 0x8000) - 0x8000
            hi = wv >> 16
            xs = xp[x_off + m * x_step : x_off + m * x_step + 2 * TILE_POS]
            for lane in range(TILE_POS):
                out[lane] += lo * xs[2 * lane] + hi * xs[2 * lane + 1]


@intrinsic
def gemm_tile_simd(
    typingctx: object,
    acc: types.Type,
    a_off: types.Type,
    a_step: types.Type,
    xp: types.Type,
    x_off: types.Type,
    x_step: types.Type,
    wp: types.Type,
    w_off: types.Type,
    w_step: types.Type,
    n_pairs: types.Type,
    b: types.Type,
    o: types.Type,
) -> tuple:
    """`gemm_tile_loops` as LLVM IR with the int16 pair multiply-add (`llvm.x86.avx512.pmaddw.d.512`:
    vpmaddwd, or vpdpwssd with the add folded in where the CPU has AVX512-VNNI): GEMM_O x GEMM_V
    accumulator vectors in registers over every pair row m, each input vector loaded once for GEMM_O
    outputs, the weight pair broadcast. AVX512BW CPUs only (`HAS_AVX512BW`); int32 lanes wrap like the loops."""
    sig = types.void(acc, a_off, a_step, xp, x_off, x_step, wp, w_off, w_step, n_pairs, b, o)

    def codegen(context: object, builder: ir.IRBuilder, signature: object, args: tuple) -> object:
        acc_d, xp_d, wp_d, b_d = (
            context.make_array(signature.args[k])(context, builder, args[k]).data for k in (0, 3, 6, 10)
        )
        a_off_v, a_step_v, x_off_v, x_step_v, w_off_v, w_step_v, n_pairs_v, o_v = (
            args[k] for k in (1, 2, 4, 5, 7, 8, 9, 11)
        )
        i16, i32, i64 = ir.IntType(16), ir.IntType(32), ir.IntType(64)
        vec, hvec = ir.VectorType(i32, TILE_LANES), ir.VectorType(i16, 2 * TILE_LANES)
        name = "llvm.x86.avx512.pmaddw.d.512"
        madd = builder.module.globals.get(name) or ir.Function(builder.module, ir.FunctionType(vec, [hvec, hvec]), name)
        undef, zeros = ir.Constant(vec, None), ir.Constant(vec, [0] * TILE_LANES)

        def const(v: int) -> ir.Constant:
            return ir.Constant(i64, v)

        def splat(v: ir.Value) -> ir.Value:
            return builder.shuffle_vector(builder.insert_element(undef, v, ir.Constant(i32, 0)), undef, zeros)

        inits = []
        for i in range(GEMM_O):
            bias = builder.trunc(builder.load(builder.gep(b_d, [builder.add(o_v, const(i))])), i32)
            inits += [splat(bias)] * GEMM_V
        pre = builder.block
        loop, done = builder.append_basic_block("tile.loop"), builder.append_basic_block("tile.done")
        builder.cbranch(builder.icmp_signed(">", n_pairs_v, const(0)), loop, done)
        builder.position_at_end(loop)
        m = builder.phi(i64)
        accs = [builder.phi(vec) for _ in inits]
        x_base = builder.add(x_off_v, builder.mul(m, x_step_v))
        xs = []
        for v in range(GEMM_V):
            at = builder.gep(xp_d, [builder.add(x_base, const(2 * TILE_LANES * v))])
            xs.append(builder.load(builder.bitcast(at, hvec.as_pointer()), align=2))
        new = []
        for i in range(GEMM_O):
            w_at = builder.add(builder.add(w_off_v, builder.mul(const(i), w_step_v)), m)
            w_pair = builder.bitcast(splat(builder.load(builder.gep(wp_d, [w_at]))), hvec)
            for v in range(GEMM_V):
                new.append(builder.add(accs[i * GEMM_V + v], builder.call(madd, [xs[v], w_pair])))
        m_next = builder.add(m, const(1))
        body = builder.block
        m.add_incoming(const(0), pre)
        m.add_incoming(m_next, body)
        for phi, init, nxt in zip(accs, inits, new, strict=True):
            phi.add_incoming(init, pre)
            phi.add_incoming(nxt, body)
        builder.cbranch(builder.icmp_signed("<", m_next, n_pairs_v), loop, done)
        builder.position_at_end(done)
        finals = []
        for init, nxt in zip(inits, new, strict=True):
            final = builder.phi(vec)
            final.add_incoming(init, pre)
            final.add_incoming(nxt, body)
            finals.append(final)
        for i in range(GEMM_O):
            row = builder.add(a_off_v, builder.mul(const(i), a_step_v))
            for v in range(GEMM_V):
                at = builder.gep(acc_d, [builder.add(row, const(TILE_LANES * v))])
                builder.store(finals[i * GEMM_V + v], builder.bitcast(at, vec.as_pointer()), align=4)
        return context.get_dummy_value()

    return sig, codegen


def _has_avx512bw() -> bool:
    """Whether Numba compiles for a CPU with AVX512BW (its target's features: NUMBA_CPU_FEATURES, else the host's)."""
    features = config.CPU_FEATURES if config.CPU_FEATURES is not None else get_host_cpu_features()
    return "+avx512bw" in features.split(",")


HAS_AVX512BW = _has_avx512bw()
# the GEMM's tile: the same integers either way (tests/test_kernels_mac.py compares them)
gemm_tile = gemm_tile_simd if HAS_AVX512BW else gemm_tile_loops


ALIGN_BYTES = 64  # a cache line: vector loads and stores of an aligned row never split one


@njit(cache=True, inline="always")
def padded(n: int) -> int:
    """n rounded up to a multiple of 32 values: rows that far apart stay 64-byte aligned (int16 and wider)."""
    return (n + 31) // 32 * 32


@njit(cache=True)
def aligned(buf: IntArray) -> IntArray:
    """buf from its first 64-byte aligned element on (numpy aligns allocations to 16 bytes only;
    the scratch has ALIGN_BYTES to spare)."""
    skip = (-buf.ctypes.data) % ALIGN_BYTES // buf.itemsize
    return buf[skip:]


@njit(cache=True)
def requant_flat(acc: IntArray, m0: int, sh: int, zp: int, bits: int, out: IntArray) -> int:
    """out[i] = sat_bits(rne_shift(acc[i] * m0, sh) + zp) over contiguous 1-D arrays (one
    multiplier and shift, checked once: the loop vectorises) -> saturations."""
    check_rne_shift(sh)
    nsat = 0
    for i in range(acc.shape[0]):
        v, s = requantize_core(acc[i], m0, sh, zp, bits)
        out[i] = v
        nsat += s
    return nsat


@njit(cache=True)
def scratch(n_values: int, n_row: int) -> tuple[I16Array, I32Array, I64Array, I64Array]:
    """The conv / dwconv scratch: (work int16[n_values], part32 int32[n_values], part64 int64[n_values],
    row int64[n_row]); n_values at least `conv_scratch_size` of every conv it serves, n_row at least
    `dwconv_scratch_size` of every dwconv. One set serves a whole program (reused by every layer)."""
    return (
        np.empty(n_values, np.int16),
        np.empty(n_values, np.int32),
        np.empty(n_values, np.int64),
        np.empty(n_row, np.int64),
    )
