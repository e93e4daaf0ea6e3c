"""Exact integer multiply-accumulate cores shared by the INT16 and INT8 convolutions.

The sums (docs/quant-spec.md 2.2/2.3 and 3.4 share them): every product and the bias are added
exactly: in int32 accumulators where the caller proved the layer's bound (`acc_bound`, from the
weights and the input range: no partial sum can leave int32, so the sums are the spec's int64 sums
bit for bit; the INT8 quad tiles start from a rearranged bias that may leave int32 and rely on int32
lanes wrapping modulo 2^32: their final sums are the same, as those lie in int32), else in int64.
Each finished sum is narrowed at once by the one requantization both precisions share
(fixedpoint.requantize: INT16 is m0 = 1, zero point 0, 16 bits; INT8 the per-channel multiplier and
shift, 8 bits) into the caller's output array: no int64 sum tensor.
Scratch (`work`, `part`, `row`) comes from the caller so a whole program reuses it across layers.
Numba, integer only.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import config, njit, types
from numba.core.codegen import get_host_cpu_features
from numba.extending import intrinsic

from intsim.arrays import I8Array, I16Array, I32Array, I64Array, IntArray
from intsim.fixedpoint import check_rne_shift, requantize_core, rne_shift_core, saturate


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
    mul, shift = channel_requant(m0, sh, c_out)
    out = np.empty(c_out, y.dtype)
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
            nsat += requant_into(acc[q, :c_out], mul, shift, zp, bits, out)
            for o in range(c_out):
                y[bq, o, tq] = out[o]
    return nsat


@njit(cache=True)
def channel_requant(m0: I64Array, sh: I64Array, c_out: int) -> tuple[I64Array, I64Array]:
    """(multiplier int64[c_out], shift int64[c_out]) of every output channel from m0, sh (length 1: one
    value for every channel; INT16: m0 = 1), each shift checked (`check_rne_shift`) once."""
    mul, shift = np.empty(c_out, np.int64), np.empty(c_out, np.int64)
    for o in range(c_out):
        j = o if m0.shape[0] > 1 else 0
        check_rne_shift(sh[j])
        mul[o], shift[o] = m0[j], sh[j]
    return mul, shift


@njit(cache=True, inline="always")
def requant_into(acc: IntArray, mul: I64Array, shift: I64Array, zp: int, bits: int, out: IntArray) -> int:
    """out[o] = sat_bits(rne_shift(acc[o] * mul[o], shift[o]) + zp) for o < len(acc) (`channel_requant`'s
    arrays: one contiguous loop, vectorised) -> saturations (spec 2.2 narrowing; spec 3.3)."""
    nsat = 0
    for o in range(acc.shape[0]):
        v, s = requantize_core(acc[o], mul[o], shift[o], zp, bits)
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
    per tap one contiguous loop over C*L (vectorised, no branch), then one requantization loop
    (per-value multiplier and shift: per-channel INT8 and per-tensor INT16 alike). The sums in int32
    (twice the lanes) where every partial sum provably fits (`acc_bound` with |x - x_zp| at most
    2^15 for int16 inputs, 128 + |x_zp| for int8: wrapped int32 sums are then the exact ones), else int64."""
    n_b, c, length = x.shape
    k_size = w.shape[1]
    n = c * length
    bias, mul, shift = row[:n], row[n : 2 * n], row[2 * n : 3 * n]
    per_channel = m0.shape[0] > 1
    for ch in range(c):
        j = ch if per_channel else 0
        check_rne_shift(sh[j])
        bc, mc, sc = np.int64(b[ch]), np.int64(m0[j]), np.int64(sh[j])
        bias_c, mul_c, shift_c = bias[ch * length :], mul[ch * length :], shift[ch * length :]
        for t in range(length):
            bias_c[t], mul_c[t], shift_c[t] = bc, mc, sc
    x_max_abs = (1 << 15) if x.itemsize == 2 else 128 + abs(x_zp)
    if acc_bound(w, b, x_max_abs) <= INT32_LIMIT:
        part = row[3 * n : (4 + k_size) * n].view(np.int32)  # acc and taps, int32
        acc32, taps32 = part[:n], part[n : (1 + k_size) * n].reshape((k_size, n))
        return dwconv_sums(x, x_zp, w, acc32, taps32, bias, mul, shift, zp, bits, y)
    acc, taps = row[3 * n : 4 * n], row[4 * n : (4 + k_size) * n].reshape((k_size, n))
    return dwconv_sums(x, x_zp, w, acc, taps, bias, mul, shift, zp, bits, y)


@njit(cache=True)
def dwconv_sums(
    x: IntArray,
    x_zp: int,
    w: IntArray,
    acc: IntArray,
    taps: IntArray,
    bias: I64Array,
    mul: I64Array,
    shift: I64Array,
    zp: int,
    bits: int,
    y: IntArray,
) -> int:
    """`dwconv_requant`'s sums in acc's width (int32 where proved, else int64; taps: [K, C*L] scratch of
    that width, acc: [C*L]) and its requantization by the per-value bias, mul, shift -> saturations."""
    n_b, c, length = x.shape
    k_size = w.shape[1]
    n = c * length
    cast = acc.dtype.type
    for ch in range(c):
        for k in range(k_size):
            lag, wk, tk = k_size - 1 - k, cast(w[ch, k]), taps[k, ch * length :]
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
                at[i] += tk[i] * cast(cast(xk[i]) - x_zp)
        for i in range(n):
            v, s = requantize_core(acc[i], mul[i], shift[i], zp, bits)
            ys[i] = v
            nsat += s
    return nsat


GEMM_MIN_POSITIONS = 64  # from this many output positions (B * T_out) on, a conv runs as pair tiles


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
    Narrow, with at least GEMM_MIN_POSITIONS output positions (B * T_out; not batch 1): int16 pair
    multiply-adds over tiles of positions and output channels (`conv_pairs_requant`); else position
    blocks with the output channels innermost (`conv_rows_requant`, each product in `prod`'s dtype:
    `PROD16` for INT8, `PROD32` for INT16, exact either way). Both read x in place. The scratch arrays
    must hold `conv_scratch_size` values each (checked: the kernels index them unchecked); `work` is
    not used."""
    n_b, c_in, length = x.shape
    c_out = w_cols.shape[1]
    t_out = (length - k_size) // stride + 1
    need = conv_scratch_size(n_b, c_in, length, c_out, k_size, t_out)
    if min(part32.shape[0], part64.shape[0]) < need:
        raise ValueError("conv scratch smaller than conv_scratch_size")
    if narrow and n_b * t_out >= GEMM_MIN_POSITIONS:
        return conv_pairs_requant(x, x_zp, w_cols, b, k_size, stride, m0, sh, zp, bits, part32, y)
    if narrow:
        return conv_rows_requant(x, x_zp, w_cols, b, k_size, stride, m0, sh, zp, bits, part32, prod, y)
    return conv_rows_requant(x, x_zp, w_cols, b, k_size, stride, m0, sh, zp, bits, part64, prod, y)


@njit(cache=True)
def conv_scratch_size(n_b: int, c_in: int, length: int, c_out: int, k_size: int, t_out: int) -> int:
    """Scratch values (`part32` and `part64`, each) one conv of a batch of n_b needs (`conv_requant`):
    the pair tiles' accumulators (P rows of C_out rounded up to the tile's V*PAIR_LANES, `tile_shape`)
    and the position blocks' (POS_BLOCK rows of padded(C_out), plus a cache line for `aligned`)."""
    return max(tile_shape(c_out)[0] * tile_lanes(c_out), POS_BLOCK * padded(c_out) + ALIGN_BYTES)


PAIR_TILE = 16  # accumulator vectors of a conv tile: P positions x V vectors of 16 output channels, P*V = 16
PAIR_LANES = 16  # int32 lanes per vector (512 bits)


@njit(cache=True)
def tile_shape(c_out: int) -> tuple[int, int]:
    """(P positions, V vectors of PAIR_LANES output channels) of the conv tile for c_out outputs."""
    v = 4 if c_out > 2 * PAIR_LANES else 2 if c_out > PAIR_LANES else 1
    return PAIR_TILE // v, v


@njit(cache=True)
def tile_lanes(c_out: int) -> int:
    """O_pad: c_out rounded up to whole blocks of the tile's V * PAIR_LANES output channels (`tile_shape`)."""
    o_blk = tile_shape(c_out)[1] * PAIR_LANES
    return (c_out + o_blk - 1) // o_blk * o_blk


NARROW_NONE, NARROW_SAT16, NARROW_REQUANT8 = 0, 1, 2  # a conv tile's narrowing (`pair_tile_loops`)


def _make_pair_tile(n_p: int, n_v: int, narrowing: int, quads: bool = False) -> object:
    """The conv tile intrinsic for n_p positions by n_v vectors (`pair_tile_loops`' contract for that
    narrowing; NARROW_SAT16 and NARROW_REQUANT8 narrow each sum in the registers); with quads,
    `quad_tile_loops`' sums instead (vpdpbusd: AVX512-VNNI)."""

    def codegen(context: object, builder: ir.IRBuilder, signature: object, args: tuple) -> object:
        acc_d, x_d, xo_d, po_d, wp_d, b_d = (
            context.make_array(signature.args[k])(context, builder, args[k]).data for k in (0, 2, 4, 5, 7, 10)
        )
        a_step_v, zp_v, n_pairs_v, w_off_v, w_step_v = (args[k] for k in (1, 3, 6, 8, 9))
        i16, i32, i64 = ir.IntType(16), ir.IntType(32), ir.IntType(64)
        vec, hvec = ir.VectorType(i32, PAIR_LANES), ir.VectorType(i16, 2 * PAIR_LANES)
        name = "llvm.x86.avx512.pmaddw.d.512"
        madd = builder.module.globals.get(name) or ir.Function(builder.module, ir.FunctionType(vec, [hvec, hvec]), name)
        name = "llvm.x86.avx512.vpdpbusd.512"  # the int32-vector form: LLVM 14 takes it, newer ones upgrade it
        dot4 = builder.module.globals.get(name) or ir.Function(builder.module, ir.FunctionType(vec, [vec] * 3), name)
        undef, zeros = ir.Constant(vec, None), ir.Constant(vec, [0] * PAIR_LANES)

        def const(v: int) -> ir.Constant:
            return ir.Constant(i64, v)

        def vload(ptr: ir.Value, at: ir.Value) -> ir.Value:
            return builder.load(builder.bitcast(builder.gep(ptr, [at]), vec.as_pointer()), align=4)

        def splat(v: ir.Value) -> ir.Value:
            return builder.shuffle_vector(builder.insert_element(undef, v, ir.Constant(i32, 0)), undef, zeros)

        def x_value(at: ir.Value) -> ir.Value:  # an x value as int32 (x int8 or int16; int32 x: quads only)
            v = builder.load(builder.gep(x_d, [at]))
            return v if v.type.width == 32 else builder.sext(v, i32)

        zp32 = builder.trunc(zp_v, i32)
        bases = [builder.load(builder.gep(xo_d, [const(p)])) for p in range(n_p)]
        inits = [vload(b_d, builder.add(w_off_v, const(PAIR_LANES * v))) for v in range(n_v)] * n_p
        pre = builder.block
        loop, done = builder.append_basic_block("tile.loop"), builder.append_basic_block("tile.done")
        builder.cbranch(builder.icmp_signed(">", n_pairs_v, const(0)), loop, done)
        builder.position_at_end(loop)
        m = builder.phi(i64)
        accs = [builder.phi(vec) for _ in inits]
        w_row = builder.add(w_off_v, builder.mul(m, w_step_v))
        ws = [builder.bitcast(vload(wp_d, builder.add(w_row, const(PAIR_LANES * v))), hvec) for v in range(n_v)]
        new = []
        if quads:  # four int8 x values per position (offsets[4m + i]) as one int32 of u8 codes x + 128
            offs = [
                builder.load(builder.gep(po_d, [builder.add(builder.mul(m, const(4)), const(i))])) for i in range(4)
            ]
            for p in range(n_p):
                quad = ir.Constant(i32, 0x80808080 - 2**32)  # byte-wise x ^ 0x80 = x + 128 (mod 256)
                for i in range(4):
                    x8 = builder.load(builder.gep(x_d, [builder.add(bases[p], offs[i])]))
                    byte = builder.zext(builder.trunc(x8, ir.IntType(8)), i32)
                    quad = builder.xor(quad, builder.shl(byte, ir.Constant(i32, 8 * i)))
                xv = splat(quad)
                for v in range(n_v):
                    new.append(builder.call(dot4, [accs[p * n_v + v], xv, builder.bitcast(ws[v], vec)]))
        else:  # two x values per position (offsets[2m], [2m + 1]), zero point removed, as one int16 pair
            off0 = builder.load(builder.gep(po_d, [builder.mul(m, const(2))]))
            off1 = builder.load(builder.gep(po_d, [builder.add(builder.mul(m, const(2)), const(1))]))
            for p in range(n_p):
                lo = builder.sub(x_value(builder.add(bases[p], off0)), zp32)
                hi = builder.sub(x_value(builder.add(bases[p], off1)), zp32)
                pair = builder.or_(builder.and_(lo, ir.Constant(i32, 0xFFFF)), builder.shl(hi, ir.Constant(i32, 16)))
                xv = builder.bitcast(splat(pair), hvec)
                for v in range(n_v):
                    new.append(builder.add(accs[p * n_v + v], builder.call(madd, [xv, ws[v]])))
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

        def store(k: int, value: ir.Value) -> None:  # accumulator vector k: position k // n_v, vector k % n_v
            row = builder.mul(const(k // n_v), a_step_v)
            at = builder.gep(acc_d, [builder.add(row, const(PAIR_LANES * (k % n_v)))])
            builder.store(value, builder.bitcast(at, vec.as_pointer()), align=4)

        if narrowing == NARROW_SAT16:
            sat16_round(context, builder, signature, args, finals, n_v, store)
        elif narrowing == NARROW_REQUANT8:
            requant8_round(context, builder, signature, args, finals, n_v, store)
        else:
            for k, final in enumerate(finals):
                store(k, final)
        return context.get_dummy_value()

    @intrinsic
    def pair_tile(
        typingctx: object,
        acc: types.Type,
        a_step: types.Type,
        x: types.Type,
        x_zp: types.Type,
        x_offs: types.Type,
        pair_offs: types.Type,
        n_pairs: types.Type,
        wp: types.Type,
        w_off: types.Type,
        w_step: types.Type,
        bias: types.Type,
        n_lanes: types.Type,
        shift: types.Type,
        n_valid: types.Type,
        counts: types.Type,
        mul: types.Type,
        shifts: types.Type,
        y_zp: types.Type,
    ) -> tuple:
        args = (acc, a_step, x, x_zp, x_offs, pair_offs, n_pairs, wp, w_off, w_step, bias, n_lanes)
        return types.void(*args, shift, n_valid, counts, mul, shifts, y_zp), codegen

    return pair_tile


def sat16_round(
    context: object, builder: ir.IRBuilder, signature: object, args: tuple, accs: list, n_v: int, store: object
) -> None:
    """IR of `pair_tile_loops`' NARROW_SAT16 (shift >= 0): every accumulator vector k (position k // n_v) as
    sat16(rne_shift(acc, shift)) in int32 lanes (exact for 0 <= shift <= 30: the remainder and twice it
    fit; a wrapped q << shift cancels in acc - (q << shift)), handed to store(k, value) at once; the
    saturations of the first n_valid positions added to counts[0]. args[12:15] = (shift, n_valid, counts)."""
    i32 = ir.IntType(32)
    vec = ir.VectorType(i32, PAIR_LANES)
    undef, zeros = ir.Constant(vec, None), ir.Constant(vec, [0] * PAIR_LANES)
    shift_v, n_valid_v = args[12], args[13]
    counts_d = context.make_array(signature.args[14])(context, builder, args[14]).data

    def const(v: int) -> ir.Constant:
        return ir.Constant(vec, [v] * PAIR_LANES)

    sh = builder.shuffle_vector(
        builder.insert_element(undef, builder.trunc(shift_v, i32), ir.Constant(i32, 0)), undef, zeros
    )
    total = zeros
    for k, a in enumerate(accs):
        v = rne_shift_ir(builder, a, sh, vec)
        hi, lo = builder.icmp_signed(">", v, const(32767)), builder.icmp_signed("<", v, const(-32768))
        store(k, builder.select(hi, const(32767), builder.select(lo, const(-32768), v)))
        total = count_saturations(builder, total, builder.or_(hi, lo), k // n_v, n_valid_v)
    add_total(builder, total, counts_d)


def rne_shift_ir(builder: ir.IRBuilder, x: ir.Value, sh: ir.Value, vec: ir.VectorType) -> ir.Value:
    """IR of `rne_shift_core` on every lane of x by the lanes of sh (0 <= sh < the lane width - 1): the
    same operations, so the same values (wraps in q << sh cancel in x - (q << sh))."""
    one_v = ir.Constant(vec, [1] * vec.count)
    q = builder.ashr(x, sh)
    twice_rem = builder.shl(builder.sub(x, builder.shl(q, sh)), one_v)
    one = builder.shl(one_v, sh)
    odd = builder.icmp_signed("!=", builder.and_(q, one_v), ir.Constant(vec, [0] * vec.count))
    up = builder.or_(
        builder.icmp_signed(">", twice_rem, one), builder.and_(builder.icmp_signed("==", twice_rem, one), odd)
    )
    return builder.add(q, builder.zext(up, vec))


def count_saturations(builder: ir.IRBuilder, total: ir.Value, flags: ir.Value, p: int, n_valid: ir.Value) -> ir.Value:
    """IR of total (<16 x i32>) plus the set lanes of flags (<16 x i1>) when position p < n_valid."""
    vec = ir.VectorType(ir.IntType(32), PAIR_LANES)
    counted = builder.icmp_signed("<", ir.Constant(ir.IntType(64), p), n_valid)
    return builder.add(total, builder.select(counted, builder.zext(flags, vec), ir.Constant(vec, [0] * PAIR_LANES)))


def add_total(builder: ir.IRBuilder, total: ir.Value, counts: ir.Value) -> None:
    """IR of counts[0] += the sum of total's lanes (<16 x i32>)."""
    i32, i64 = ir.IntType(32), ir.IntType(64)
    name = "llvm.vector.reduce.add.v16i32"
    fn_type = ir.FunctionType(i32, [ir.VectorType(i32, PAIR_LANES)])
    reduce = builder.module.globals.get(name) or ir.Function(builder.module, fn_type, name)
    builder.store(builder.add(builder.load(counts), builder.sext(builder.call(reduce, [total]), i64)), counts)


def requant8_round(
    context: object, builder: ir.IRBuilder, signature: object, args: tuple, accs: list, n_v: int, store: object
) -> None:
    """IR of `pair_tile_loops`' NARROW_REQUANT8: every accumulator vector k (position k // n_v; lane l of it
    holds output channel o = w_off + 16 (k % n_v) + l) as sat8(rne_shift(acc * mul[o], shifts[o]) + y_zp)
    (`requantize_core`'s value) in int32 lanes, handed to store(k, value) at once; the saturations of the
    first n_valid positions added to counts[0]. mul: int32 multipliers (a 32 x 32 -> 64-bit multiply per
    lane); shifts 1..54. The rounding, with the zero point, as
    floor((p + 2^(s-1) - 1 + z 2^s + odd(floor(p / 2^s))) / 2^s) for p = acc * mul, s >= 1: the ties go
    to the even neighbour, the rest to the nearest, as rne_shift's compare of twice the remainder, and
    z 2^s adds z after the floor (|p| <= 2^62 and z an int8 zero point, s <= 54: the sum fits int64).
    args[8], args[13:18] = (w_off, n_valid, counts, mul, shifts, y_zp)."""
    i32, i64 = ir.IntType(32), ir.IntType(64)
    vec, wide = ir.VectorType(i32, PAIR_LANES), ir.VectorType(i64, PAIR_LANES)
    undef, zeros = ir.Constant(wide, None), ir.Constant(vec, [0] * PAIR_LANES)
    w_off_v, n_valid_v = args[8], args[13]
    y_zp_v = context.cast(builder, args[17], signature.args[17], types.int64)
    counts_d, mul_d, shifts_d = (
        context.make_array(signature.args[k])(context, builder, args[k]).data for k in (14, 15, 16)
    )

    def lanes(ptr: ir.Value, v: int, ty: ir.VectorType) -> ir.Value:
        at = builder.gep(ptr, [builder.add(w_off_v, ir.Constant(i64, PAIR_LANES * v))])
        return builder.load(builder.bitcast(at, ty.as_pointer()), align=4)

    def const(v: int) -> ir.Constant:
        return ir.Constant(wide, [v] * PAIR_LANES)

    zp = builder.shuffle_vector(builder.insert_element(undef, y_zp_v, ir.Constant(i32, 0)), undef, zeros)
    total = zeros
    for v in range(n_v):  # a lane group's multipliers and shifts, then its accumulators
        mul = builder.sext(lanes(mul_d, v, vec), wide)
        sh = lanes(shifts_d, v, wide)
        unit = builder.shl(const(1), sh)  # 2^s: its bit of p is the quotient's lowest
        offset = builder.add(builder.sub(builder.ashr(unit, const(1)), const(1)), builder.shl(zp, sh))
        for k in range(v, len(accs), n_v):
            prod = builder.mul(builder.sext(accs[k], wide), mul)
            odd = builder.icmp_signed("!=", builder.and_(prod, unit), ir.Constant(wide, [0] * PAIR_LANES))
            y = builder.ashr(builder.add(builder.add(prod, offset), builder.zext(odd, wide)), sh)
            hi, lo = builder.icmp_signed(">", y, const(127)), builder.icmp_signed("<", y, const(-128))
            store(k, builder.trunc(builder.select(hi, const(127), builder.select(lo, const(-128), y)), vec))
            total = count_saturations(builder, total, builder.or_(hi, lo), k // n_v, n_valid_v)
    add_total(builder, total, counts_d)


@njit(cache=True)
def pair_tile_loops(
    acc: I32Array,
    a_step: int,
    x: IntArray,
    x_zp: int,
    x_offs: I64Array,
    pair_offs: I64Array,
    n_pairs: int,
    wp: I32Array,
    w_off: int,
    w_step: int,
    bias: I32Array,
    n_lanes: int,
    shift: int,
    n_valid: int,
    counts: I64Array,
    mul: I32Array,
    shifts: I64Array,
    y_zp: int,
) -> None:
    """One conv tile in plain loops (the intrinsics of `_make_pair_tile` compute the same, n_lanes = their
    V * PAIR_LANES): for position p < len(x_offs) and lane l < n_lanes:
    acc[p*a_step + l] = bias[w_off + l] + sum_{m < n_pairs} lo(w) (x[x_offs[p] + pair_offs[2m]] - x_zp)
    + hi(w) (x[x_offs[p] + pair_offs[2m + 1]] - x_zp), w = wp[w_off + m*w_step + l] (an int16 pair as
    int32, low half first); int32 results (wrapped: exact where the caller proved the bound). Then each
    sum is narrowed (the saturations of the positions p < n_valid added to counts[0]): with
    0 <= shift <= 30 (NARROW_SAT16) to sat16(rne_shift(sum, shift)); with shift < 0 and mul non-empty
    (NARROW_REQUANT8) to requantize(sum, mul[w_off + l], shifts[w_off + l], y_zp, 8) (int32 multipliers,
    shifts 1..54, y_zp an int8 zero point); with shift < 0 and mul empty (NARROW_NONE) the sums stay."""
    n_l = n_lanes
    for p in range(x_offs.shape[0]):
        out = acc[p * a_step : p * a_step + n_l]
        for lane in range(n_l):
            out[lane] = bias[w_off + lane]
        for m in range(n_pairs):
            x0 = np.int64(x[x_offs[p] + pair_offs[2 * m]]) - x_zp
            x1 = np.int64(x[x_offs[p] + pair_offs[2 * m + 1]]) - x_zp
            ws = wp[w_off + m * w_step : w_off + m * w_step + n_l]
            for lane in range(n_l):
                wv = np.int64(ws[lane])
                lo = ((wv & 0xFFFF) ^ 0x8000) - 0x8000
                out[lane] += lo * x0 + (wv >> 16) * x1
        narrow_tile_row(out, shift, mul[w_off:], shifts[w_off:], y_zp, p < n_valid, counts)


@njit(cache=True)
def narrow_tile_row(
    out: I32Array, shift: int, mul: I32Array, shifts: I64Array, y_zp: int, counted: bool, counts: I64Array
) -> None:
    """The loop tiles' narrowing of one position's sums `out` in place (`pair_tile_loops`: shift >= 0 sat16,
    else with mul non-empty requant8 by lane l's mul[l] and shifts[l], else none); its saturations added to
    counts[0] when counted."""
    for lane in range(out.shape[0]):
        if shift >= 0:
            v, s = saturate(rne_shift_core(np.int64(out[lane]), shift), 16)
        elif mul.shape[0] > 0:
            v, s = requantize_core(out[lane], mul[lane], shifts[lane], y_zp, 8)
        else:
            return
        out[lane] = v
        if counted:
            counts[0] += s


@njit(cache=True)
def quad_tile_loops(
    acc: I32Array,
    a_step: int,
    x: I8Array,
    x_zp: int,
    x_offs: I64Array,
    quad_offs: I64Array,
    n_quads: int,
    wq: I32Array,
    w_off: int,
    w_step: int,
    bias: I32Array,
    n_lanes: int,
    shift: int,
    n_valid: int,
    counts: I64Array,
    mul: I32Array,
    shifts: I64Array,
    y_zp: int,
) -> None:
    """One INT8 conv tile of u8 x s8 quads in plain loops (the quad intrinsics of `_make_pair_tile`, vpdpbusd,
    compute the same): for position p < len(x_offs) and lane l < n_lanes: acc[p*a_step + l] = bias[w_off + l]
    + sum_{m < n_quads} sum_{i < 4} (x[x_offs[p] + quad_offs[4m + i]] + 128) s8_i(wq[w_off + m*w_step + l])
    (byte i of the int32, lowest first; x_zp and shift unused, kept for the tiles' one argument list:
    `quad_weights` moved x_zp into the bias), wrapped to int32, then narrowed as `pair_tile_loops`
    (NARROW_REQUANT8 with mul non-empty)."""
    n_l = n_lanes
    for p in range(x_offs.shape[0]):
        out = acc[p * a_step : p * a_step + n_l]
        for lane in range(n_l):
            out[lane] = bias[w_off + lane]
        for m in range(n_quads):
            ws = wq[w_off + m * w_step : w_off + m * w_step + n_l]
            for i in range(4):
                xv = np.int64(x[x_offs[p] + quad_offs[4 * m + i]]) + 128
                for lane in range(n_l):
                    out[lane] += xv * ((((np.int64(ws[lane]) >> (8 * i)) & 0xFF) ^ 0x80) - 0x80)
        narrow_tile_row(out, shift, mul[w_off:], shifts[w_off:], y_zp, p < n_valid, counts)


@njit(cache=True)
def pair_weights(w_cols: IntArray, b: I64Array) -> tuple[I32Array, I32Array]:
    """The conv tiles' weights: (wp int32[(J + 1) // 2 * O_pad], bias int32[O_pad]), O_pad =
    `tile_lanes(C_out)`; wp[m * O_pad + o] = the int16 pair (w_cols[2m, o], w_cols[2m + 1, o]) as one int32 (low
    half first, as the tiles pack x); the slots beyond w_cols 0. The bias narrowed to int32: only for
    layers whose bound the caller proved (it bounds |b| too)."""
    n_win, c_out = w_cols.shape
    o_pad = tile_lanes(c_out)
    n_pairs = (n_win + 1) // 2
    wp = np.zeros(n_pairs * o_pad, np.int32)
    bias = np.zeros(o_pad, np.int32)
    bias[:c_out] = b
    for m in range(n_pairs):
        row, lo = wp[m * o_pad : m * o_pad + c_out], w_cols[2 * m]
        for o in range(c_out):
            row[o] = np.int32(lo[o]) & 0xFFFF
        if 2 * m + 1 < n_win:
            hi = w_cols[2 * m + 1]
            for o in range(c_out):
                row[o] |= np.int32(hi[o]) << 16
    return wp, bias


@njit(cache=True)
def conv_pairs_requant(
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
    part: I32Array,
    y: IntArray,
) -> int:
    """`conv_rows_requant`'s sums and requantization (int32 accumulators: only where the caller proved the
    bound) by int16 pair multiply-adds: window rows j = k*C_in + c taken two at a time (x read in place: the
    pair's two values per position, zero point removed, packed into one int32 and broadcast), P positions
    by V vectors of 16 output channels per tile (`tile_shape`), every pair row summed in registers and
    narrowed there (INT16's sat16, INT8's per-channel requantization where `requant8_fits`; else after the
    tile, per position), into y -> saturations. part: int32 scratch of P * O_pad values."""
    n_b, c_in, length = x.shape
    c_out = w_cols.shape[1]
    n_win = k_size * c_in
    wp, bias = pair_weights(w_cols, b)
    n_pairs = (n_win + 1) // 2
    pair_offs = np.empty(2 * n_pairs, np.int64)  # offsets of window rows 2m, 2m + 1 from a window's start
    for j in range(2 * n_pairs):
        k, c = divmod(min(j, n_win - 1), c_in)  # an odd last row's partner: itself (its weights are 0)
        pair_offs[j] = c * length + k
    xf = np.ascontiguousarray(x).reshape(x.size)
    mul, shift = channel_requant(m0, sh, c_out)
    # narrowed inside the tiles: INT16 (multiplier 1, one shift <= 30, no zero point) as sat16, INT8
    # (every channel's multiplier and shift, the zero point) as requant8; else after them, per position
    if m0.shape[0] == 1 and m0[0] == 1 and zp == 0 and bits == 16 and shift[0] <= 30:
        narrowing = NARROW_SAT16
    elif bits == 8 and requant8_fits(mul, shift, zp):
        narrowing = NARROW_REQUANT8
    else:
        narrowing = NARROW_NONE
    n_pos = n_b * ((length - k_size) // stride + 1)
    tiles = (xf, x_zp, c_in * length, pair_offs, n_pairs, wp, bias, narrowing, False)
    return conv_tiles(*tiles, n_pos, (length - k_size) // stride + 1, stride, mul, shift, zp, bits, part, y)


@njit(cache=True)
def requant8_fits(mul: I64Array, shift: I64Array, zp: int) -> bool:
    """Whether the requant8 tiles (`requant8_round`) can narrow these channels: int32 multipliers, shifts
    1..54, an int8 zero point (so the padded lanes, 0 + zp, never saturate); spec 3.2's m0 < 2^31, and its
    shift 31 - e lies there for 2^-24 <= M < 2^30."""
    fits_mul = np.all((mul >= -(2**31)) & (mul < 2**31))
    return bool(fits_mul and np.all((shift >= 1) & (shift <= 54)) and -128 <= zp <= 127)


@njit(cache=True)
def conv_quads_requant(
    x: I8Array,
    x_zp: int,
    w_cols: IntArray,
    b: I64Array,
    k_size: int,
    stride: int,
    m0: I64Array,
    sh: I64Array,
    zp: int,
    part: I32Array,
    y: I8Array,
) -> int:
    """The INT8 conv (`conv_rows_requant`'s sums and requantization, spec 3.4; int32 accumulators: only where
    the caller proved the bound, and only for channels `requant8_fits` takes: ValueError otherwise) by
    u8 x s8 quad dot products (`conv_quads_packed`, the weights packed here by `quad_weights`) -> saturations.
    part: int32 scratch of P * O_pad values."""
    c_out = w_cols.shape[1]
    mul, shift = channel_requant(m0, sh, c_out)
    if not requant8_fits(mul, shift, zp):
        raise ValueError("conv_quads_requant: a channel's multiplier or shift is outside the requant8 tiles'")
    if x.itemsize != 1:
        raise ValueError("conv_quads_requant: x must be int8")
    wq, bias = quad_weights(w_cols, b, x_zp)
    return conv_quads_packed(x, wq, bias, k_size, stride, mul, shift, zp, part, y)


@njit(cache=True)
def conv_quads_packed(
    x: I8Array,
    wq: I32Array,
    bias: I32Array,
    k_size: int,
    stride: int,
    mul: I64Array,
    shift: I64Array,
    zp: int,
    part: I32Array,
    y: I8Array,
) -> int:
    """`conv_quads_requant` with its weights packed (wq, bias: `quad_weights` of this conv's weights and
    x_zp; mul, shift: `channel_requant`'s, `requant8_fits` checked by the caller): window rows
    j = k*C_in + c taken four at a time (x read in place, each value's u8 code x + 128, the four packed
    into one int32 and broadcast), P positions by V vectors of 16 output channels per tile, requantized in
    the registers, into y (int8[B, C_out, T_out]) -> saturations."""
    n_b, c_in, length = x.shape
    n_win = k_size * c_in
    n_quads = (n_win + 3) // 4
    quad_offs = np.empty(4 * n_quads, np.int64)  # offsets of window rows 4m .. 4m + 3 from a window's start
    for j in range(4 * n_quads):
        k, c = divmod(min(j, n_win - 1), c_in)  # rows past the last: the last again (their weights are 0)
        quad_offs[j] = c * length + k
    t_out = (length - k_size) // stride + 1
    xf = np.ascontiguousarray(x).reshape(x.size)
    tiles = (xf, 0, c_in * length, quad_offs, n_quads, wq, bias, NARROW_REQUANT8, True)
    return conv_tiles(*tiles, n_b * t_out, t_out, stride, mul, shift, zp, 8, part, y)


@njit(cache=True)
def quad_weights(w_cols: IntArray, b: I64Array, x_zp: int) -> tuple[I32Array, I32Array]:
    """The quad tiles' weights: (wq int32[ceil(J / 4) * O_pad], bias int32[O_pad]), O_pad =
    `tile_lanes(C_out)`; byte i (lowest first) of wq[m * O_pad + o] the int8 weight w_cols[4m + i, o] (0 beyond J rows
    and C_out). The bias b - (x_zp + 128) * sum_j w_cols[j, o] (sum w (x - x_zp) = sum w (x + 128) -
    (x_zp + 128) sum w), wrapped to int32: the tiles' wrapped int32 sums then end exact wherever the caller
    proved the true sum fits. ValueError for a weight outside int8."""
    n_win, c_out = w_cols.shape
    o_pad = tile_lanes(c_out)
    wq = np.zeros((n_win + 3) // 4 * o_pad, np.int32)
    bias = np.zeros(o_pad, np.int32)
    total = np.zeros(c_out, np.int64)
    for j in range(n_win):
        row, up = wq[j // 4 * o_pad : j // 4 * o_pad + c_out], 8 * (j % 4)
        for o in range(c_out):
            w = np.int64(w_cols[j, o])
            if w < -128 or w > 127:
                raise ValueError("quad_weights: a weight outside int8")
            total[o] += w
            row[o] |= np.int32((w & 0xFF) << up)
    for o in range(c_out):
        bias[o] = np.int32(((b[o] - (x_zp + 128) * total[o] + 2**31) & 0xFFFFFFFF) - 2**31)
    return wq, bias


@njit(cache=True)
def conv_tiles(
    xf: IntArray,
    x_zp: int,
    x_step: int,
    offs: I64Array,
    n_mults: int,
    wp: I32Array,
    bias: I32Array,
    narrowing: int,
    quads: bool,
    n_pos: int,
    t_out: int,
    stride: int,
    mul: I64Array,
    shift: I64Array,
    zp: int,
    bits: int,
    part: I32Array,
    y: IntArray,
) -> int:
    """The tile loop of `conv_pairs_requant` (pair tiles, offs 2 per pair) and `conv_quads_requant` (quad
    tiles, offs 4 per quad): position n = (b, t) reads xf from b * x_step + t * stride; every tile of P
    positions by the output channels in blocks of V * PAIR_LANES, then each position's outputs into y[b, :, t]
    (narrowed in the tiles, or here by `requant_into`) -> saturations."""
    c_out = mul.shape[0]
    n_p, n_v = tile_shape(c_out)
    o_blk = n_v * PAIR_LANES
    o_pad = bias.shape[0]
    if part.shape[0] < n_p * o_pad:
        raise ValueError("conv scratch smaller than conv_scratch_size")
    x_offs = np.empty(n_p, np.int64)
    acc = part[: n_p * o_pad]
    # the padded lanes: 0 * 1 + zp, within int8 (`requant8_fits`): not stored and never saturated
    mul_p, shift_p = np.zeros(o_pad, np.int32), np.ones(o_pad, np.int64)
    if narrowing == NARROW_REQUANT8:
        mul_p[:c_out], shift_p[:c_out] = mul, shift
    no_mul, no_shift = mul_p[:0], shift_p[:0]
    sh_tile = shift[0] if narrowing == NARROW_SAT16 else -1
    counts = np.zeros(1, np.int64)
    out = np.empty(c_out, y.dtype)
    nsat = 0
    for n0 in range(0, n_pos, n_p):
        n_q = min(n_p, n_pos - n0)
        for q in range(n_p):  # a partial last tile repeats its last position (computed, not stored)
            bq, tq = divmod(n0 + min(q, n_q - 1), t_out)
            x_offs[q] = bq * x_step + tq * stride
        for ob in range(0, o_pad, o_blk):
            args = (acc[ob:], o_pad, xf, x_zp, x_offs, offs, n_mults, wp, ob, o_pad, bias, o_blk, sh_tile, n_q)
            if quads:
                if n_v == 4:
                    quad_tile_4x4(*args, counts, mul_p, shift_p, zp)
                elif n_v == 2:
                    quad_tile_8x2(*args, counts, mul_p, shift_p, zp)
                else:
                    quad_tile_16x1(*args, counts, mul_p, shift_p, zp)
            elif narrowing == NARROW_REQUANT8:
                if n_v == 4:
                    requant8_tile_4x4(*args, counts, mul_p, shift_p, zp)
                elif n_v == 2:
                    requant8_tile_8x2(*args, counts, mul_p, shift_p, zp)
                else:
                    requant8_tile_16x1(*args, counts, mul_p, shift_p, zp)
            elif narrowing == NARROW_SAT16:
                if n_v == 4:
                    sat16_tile_4x4(*args, counts, no_mul, no_shift, 0)
                elif n_v == 2:
                    sat16_tile_8x2(*args, counts, no_mul, no_shift, 0)
                else:
                    sat16_tile_16x1(*args, counts, no_mul, no_shift, 0)
            elif n_v == 4:
                pair_tile_4x4(*args, counts, no_mul, no_shift, 0)
            elif n_v == 2:
                pair_tile_8x2(*args, counts, no_mul, no_shift, 0)
            else:
                pair_tile_16x1(*args, counts, no_mul, no_shift, 0)
        for q in range(n_q):
            bq, tq = divmod(n0 + q, t_out)
            row = acc[q * o_pad : q * o_pad + c_out]
            if narrowing != NARROW_NONE:
                for o in range(c_out):
                    y[bq, o, tq] = row[o]
            else:
                nsat += requant_into(row, mul, shift, zp, bits, out)
                for o in range(c_out):
                    y[bq, o, tq] = out[o]
    return nsat + counts[0]


def _has_cpu_feature(name: str) -> bool:
    """Whether Numba compiles for a CPU with that feature (e.g. "avx512bw"; its target's features:
    NUMBA_CPU_FEATURES, else the host's)."""
    features = config.CPU_FEATURES if config.CPU_FEATURES is not None else get_host_cpu_features()
    return "+" + name in features.split(",")


HAS_AVX512BW = _has_cpu_feature("avx512bw")
HAS_AVX512VNNI = HAS_AVX512BW and _has_cpu_feature("avx512vnni")
# the conv tiles by shape (P positions x V vectors): the vpmaddwd / vpdpbusd intrinsics on AVX512BW /
# AVX512-VNNI, else the plain loops (the same integers: tests/test_kernels_int16.py compares them)
if HAS_AVX512BW:
    pair_tile_4x4, pair_tile_8x2, pair_tile_16x1 = (_make_pair_tile(PAIR_TILE // v, v, NARROW_NONE) for v in (4, 2, 1))
    sat16_tile_4x4, sat16_tile_8x2, sat16_tile_16x1 = (
        _make_pair_tile(PAIR_TILE // v, v, NARROW_SAT16) for v in (4, 2, 1)
    )
    requant8_tile_4x4, requant8_tile_8x2, requant8_tile_16x1 = (
        _make_pair_tile(PAIR_TILE // v, v, NARROW_REQUANT8) for v in (4, 2, 1)
    )
else:
    pair_tile_4x4 = pair_tile_8x2 = pair_tile_16x1 = pair_tile_loops
    sat16_tile_4x4 = sat16_tile_8x2 = sat16_tile_16x1 = pair_tile_loops
    requant8_tile_4x4 = requant8_tile_8x2 = requant8_tile_16x1 = pair_tile_loops
if HAS_AVX512VNNI:
    quad_tile_4x4, quad_tile_8x2, quad_tile_16x1 = (
        _make_pair_tile(PAIR_TILE // v, v, NARROW_REQUANT8, quads=True) for v in (4, 2, 1)
    )
else:
    quad_tile_4x4 = quad_tile_8x2 = quad_tile_16x1 = quad_tile_loops


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
def scratch(n_values: int, n_row: int) -> tuple[I16Array, I32Array, I64Array, I64Array]:
    """The conv / dwconv scratch: (work int16[0] (no kernel needs it now; `conv_requant` keeps the
    argument), part32 int32[n_values], part64 int64[n_values], row int64[n_row]); n_values at least
    `conv_scratch_size` of every conv it serves, n_row at least `dwconv_scratch_size` of every dwconv.
    One set serves a whole program (reused by every layer)."""
    return (
        np.empty(0, np.int16),
        np.empty(n_values, np.int32),
        np.empty(n_values, np.int64),
        np.empty(n_row, np.int64),
    )
