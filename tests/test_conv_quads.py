"""The INT8 convolution as u8 x s8 quad dot products (kernels_mac.conv_quads_requant, vpdpbusd where
Numba targets AVX512-VNNI, plain loops elsewhere): the same bytes and saturation counts as the int64
reference sums (kernels_mac.conv_requant, narrow False), and the tiles equal to their loop version."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from intsim import kernels_mac as M
from intsim.fixedpoint import quantize_multiplier, requantize
from tests.conftest import run_tile

I8 = np.int8


def conv_case(rng: np.random.Generator, n_b: int, c_in: int, k: int, stride: int, c_out: int) -> tuple:
    """(x, x_zp, w_cols, b, m0, sh, y_zp) of a random INT8 conv: spec 3.2 multipliers, weights and inputs
    over the whole int8 range (-128 included), zero points at their extremes as often as not."""
    length = k + int(rng.integers(0, 12)) * stride
    x = rng.integers(-128, 128, (n_b, c_in, length)).astype(I8)
    w_cols = np.ascontiguousarray(M.weight_cols(rng.integers(-128, 128, (c_out, c_in, k)).astype(I8)))
    b = rng.integers(-(2**20), 2**20, c_out).astype(np.int64)
    scales = np.exp(rng.uniform(np.log(1e-6), np.log(0.5), c_out))
    scales[: int(rng.integers(0, 3))] = rng.choice([2.0**-24, 2.0**29], 2)[: min(2, c_out)][:1]  # shift 54 or 1
    mults = [quantize_multiplier(m) for m in scales]
    m0 = np.array([m for m, _ in mults], np.int64)
    sh = np.array([s for _, s in mults], np.int64)
    x_zp, y_zp = (int(rng.choice([-128, 127, int(rng.integers(-128, 128))])) for _ in range(2))
    return x, x_zp, w_cols, b, m0, sh, y_zp


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    n_b=st.integers(1, 40),
    c_in=st.integers(1, 13),
    k=st.integers(1, 5),
    stride=st.integers(1, 3),
    c_out=st.sampled_from([1, 3, 16, 17, 33, 64, 130]),
)
def test_quad_conv_equals_int64_reference(seed, n_b, c_in, k, stride, c_out):
    """Every window-row count (J = K * C_in, a partial last quad included), tile shape (C_out 1..130:
    16x1, 8x2, 4x4 tiles, several channel blocks) and batch (partial last tiles): the quad conv's bytes and
    saturations are the int64 sums' requantized by spec 3.3; so are the int32 pair tiles'."""
    rng = np.random.default_rng(seed)
    x, x_zp, w_cols, b, m0, sh, y_zp = conv_case(rng, n_b, c_in, k, stride, c_out)
    t_out = (x.shape[2] - k) // stride + 1
    if seed % 2:  # at least 64 positions: the pair tiles' requant8 path below, not the position blocks
        x = np.concatenate([x] * (64 // (n_b * t_out) + 1))
        n_b = x.shape[0]
    work, part32, part64, _ = M.scratch(M.conv_scratch_size(n_b, c_in, x.shape[2], c_out, k, t_out), 0)
    ref = np.empty((n_b, c_out, t_out), I8)
    args = (x, x_zp, w_cols, b, k, stride, m0, sh, y_zp)
    n_ref = M.conv_requant(*args, 8, False, M.PROD16, work, part32, part64, ref)
    y = np.full_like(ref, 99)
    assert M.conv_quads_requant(*args, part32, y) == n_ref
    np.testing.assert_array_equal(y, ref)
    y[:] = 99  # the int32 path without VNNI: pair tiles (requant8 in registers) from 64 positions on, else
    # the position blocks
    assert M.conv_requant(*args, 8, True, M.PROD16, work, part32, part64, y) == n_ref
    np.testing.assert_array_equal(y, ref)


@pytest.mark.parametrize(
    "change",
    [
        lambda m0, sh: sh.__setitem__(1, 55),  # a multiplier below 2^-24
        lambda m0, sh: sh.__setitem__(1, 0),  # a multiplier of 2^30 or more
        lambda m0, sh: m0.__setitem__(1, 2**31),  # not int32
        lambda m0, sh: m0.__setitem__(1, -(2**63)),  # not int32 (|m0| wraps)
    ],
)
def test_quad_conv_refuses_channels_its_requantization_cannot_take(change):
    """A channel outside the requant8 tiles' multipliers and shifts is an error, not a different rounding;
    so is a zero point outside int8 (its padded lanes would count as saturated)."""
    rng = np.random.default_rng(0)
    x, x_zp, w_cols, b, m0, sh, y_zp = conv_case(rng, 2, 4, 1, 1, 3)
    part = np.zeros(4096, np.int32)
    y = np.zeros((2, 3, x.shape[2]), I8)
    bad_m0, bad_sh = m0.copy(), sh.copy()
    change(bad_m0, bad_sh)
    for args in ((bad_m0, bad_sh, y_zp), (m0, sh, 128)):
        with pytest.raises(ValueError, match="requant8"):
            M.conv_quads_requant(x, x_zp, w_cols, b, 1, 1, *args, part, y)
    assert not M.requant8_fits(bad_m0, bad_sh, 0) and not M.requant8_fits(m0, sh, 128)


def test_quad_tiles_are_the_intrinsics_where_numba_targets_vnni():
    """The tile tests below compare the vpdpbusd intrinsics with the loops, not the loops with themselves,
    wherever the CPU has AVX512-VNNI (as this project's machines do)."""
    assert (M.quad_tile_4x4 is not M.quad_tile_loops) == M.HAS_AVX512VNNI
    assert (M.requant8_tile_4x4 is not M.pair_tile_loops) == M.HAS_AVX512BW


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31), n_quads=st.integers(0, 30))
def test_quad_tiles_simd_equal_loops_and_reference(seed, n_quads):
    """The quad tiles: bias + sum over quads of the four (x + 128) * w byte products (x read in place at
    each position's offsets, the weights' bytes signed), wrapped to int32, then requantized per output
    channel (`requantize`, 8 bits) and the saturations of the first n_valid positions counted; the
    vpdpbusd intrinsics (where Numba targets AVX512-VNNI) and the plain loops alike; the acc rows around
    the tile untouched."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, 300).astype(I8)
    x[:4] = (-128, 127, -128, 127)
    w_step, w_off, a_step = 3 * 64 + 16, 16, 64 + 16 + 5
    w_bytes = rng.integers(-128, 128, (max(1, n_quads), w_step, 4)).astype(I8)
    wq = np.ascontiguousarray(w_bytes).view(np.int32).reshape(-1)
    bias = rng.integers(-(2**31), 2**31, w_step).astype(np.int32)
    quad_offs = rng.integers(0, 100, 4 * max(1, n_quads)).astype(np.int64)
    mul = rng.integers(-(2**31), 2**31, w_step).astype(np.int32)
    shifts = rng.integers(1, 55, w_step).astype(np.int64)
    y_zp = int(rng.integers(-128, 129))
    tiles = ((4, 4, M.quad_tile_4x4), (8, 2, M.quad_tile_8x2), (16, 1, M.quad_tile_16x1))
    for n_p, n_v, tile in tiles:
        n_l = n_v * M.PAIR_LANES
        x_offs = rng.integers(0, 200, n_p).astype(np.int64)
        n_valid = int(rng.integers(1, n_p + 1))
        sums = np.zeros((n_p, n_l), np.int64)
        for p in range(n_p):
            sums[p] = bias[w_off : w_off + n_l]
            for m in range(n_quads):
                for i in range(4):
                    xv = int(x[x_offs[p] + quad_offs[4 * m + i]]) + 128
                    sums[p] += xv * w_bytes[m, w_off : w_off + n_l, i].astype(np.int64)
        sums = sums.astype(np.int32)  # wrapped, as int32 lanes are
        rounded = [
            [requantize(int(v), int(mul[w_off + o]), int(shifts[w_off + o]), y_zp, 8) for o, v in enumerate(row)]
            for row in sums
        ]
        want = np.array([[v for v, _ in row] for row in rounded], np.int32)
        want_sat = sum(int(s) for row in rounded[:n_valid] for _, s in row)
        for fn in (M.quad_tile_loops, run_tile(tile)):
            acc = np.full(n_p * a_step + 7, 7, np.int32)
            before = acc.copy()
            counts = np.full(1, 5, np.int64)
            args = (acc, a_step, x, 0, x_offs, quad_offs, n_quads, wq, w_off, w_step, bias, n_l, -1, n_valid)
            fn(*args, counts, mul, shifts, y_zp)
            for p in range(n_p):
                before[p * a_step : p * a_step + n_l] = want[p]
            np.testing.assert_array_equal(acc, before)
            assert counts[0] == 5 + want_sat


def test_quad_conv_bias_fold_wraps_back():
    """The folded bias b - (x_zp + 128) sum w leaves int32 here (b near -2^31, every weight 127, x_zp 127)
    while each true sum b + sum w (x - x_zp) stays inside: the wrapped int32 lanes still end on the
    int64 reference's bytes."""
    c_in, c_out, k, n_b = 8, 20, 3, 30
    x = np.full((n_b, c_in, 10), 127, I8)
    x[:, :, ::3] = 126  # some sums off the bias
    w_cols = np.full((k * c_in, c_out), 127, I8)
    b = np.full(c_out, -(2**31) + 10**5, np.int64)
    m0, sh = (np.full(c_out, v, np.int64) for v in quantize_multiplier(2.0**-24))
    t_out = 10 - k + 1
    work, part32, part64, _ = M.scratch(M.conv_scratch_size(n_b, c_in, 10, c_out, k, t_out), 0)
    ref = np.empty((n_b, c_out, t_out), I8)
    n_ref = M.conv_requant(x, 127, w_cols, b, k, 1, m0, sh, 3, 8, False, M.PROD16, work, part32, part64, ref)
    assert int(b[0]) - 255 * 127 * k * c_in < -(2**31)  # the fold does leave int32
    y = np.zeros_like(ref)
    assert M.conv_quads_requant(x, 127, w_cols, b, k, 1, m0, sh, 3, part32, y) == n_ref
    np.testing.assert_array_equal(y, ref)


def test_packed_program_quads_equal_its_other_convs(default_calibrated):
    """The INT8 program's convs packed once as quad tile weights (`kernels_int8.pack_conv_quads`, every
    conv of the default model where Numba targets AVX512-VNNI) give every tensor, saturation count and
    range of the same program run with none packed (`conv_int8_into`: the small convs at batch 1, the
    tiles at batch 70), at both batches."""
    from intsim import kernels_int8 as K8
    from intsim.int8 import quantize_act

    model = default_calibrated
    c_in, length = model.graph.input_shape
    x = np.random.default_rng(4).standard_normal((70, c_in, length))
    model.run(x[:1], "quant8")  # packs the program
    pk = model._packed8[0]
    conv = pk.steps[:, K8.COL_OP] == K8.K8_CONV
    assert (pk.quads_at[~conv] == -1).all()
    assert (pk.quads_at[conv] >= 0).all() == K8.HAS_AVX512VNNI and conv.sum() >= 5
    x_q = model.graph.fold(quantize_act(x, *model.program8.input_qp)[0])
    program = (pk.steps, pk.weights, pk.biases, pk.channels, pk.lengths, pk.quads)
    for n in (1, 70):
        packed = K8.run_program_int8(x_q[:n], *program, pk.quads_at)
        unpacked = K8.run_program_int8(x_q[:n], *program, np.full_like(pk.quads_at, -1))
        for a, b in zip(packed, unpacked, strict=True):
            np.testing.assert_array_equal(a, b)
