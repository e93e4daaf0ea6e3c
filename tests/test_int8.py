"""INT8 path (quant8): kernels vs exact Python-int references, lowering, whole network."""

from __future__ import annotations

import json
import math
import shutil
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from intsim import kernels_int8 as K8, load_model
from intsim.calibrate import calibrate
from intsim.errors import QuantizationError
from intsim.fixedpoint import quantize_multiplier
from intsim.int8 import asymmetric_params, dequantize_act, lower_int8, quantize_act, quantize_weight_per_channel
from tests.test_kernels_int16 import rne_exact

I8 = np.int8


def requant_ref(acc: int, m0: int, shift: int, zp: int) -> tuple[int, int]:
    v = rne_exact(Fraction(acc * m0, 2**shift)) + zp
    return max(-128, min(127, v)), int(v > 127 or v < -128)


def test_spec_3_4_conv_example():
    m0, sh = quantize_multiplier(0.0123)
    x = np.array([10, -20], I8).reshape(1, 2, 1)
    y, n = K8.conv1x1_int8(x, -5, np.array([[64, -32]], I8), np.array([100]), np.array([m0]), np.array([sh]), -5)
    assert y.item() == 14 and n == 0


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31), k=st.integers(1, 4), stride=st.integers(1, 3))
def test_conv_kernels_match_exact_reference(seed, k, stride):
    rng = np.random.default_rng(seed)
    c_in, c_out, length = 4, 3, k + 6
    x = rng.integers(-128, 128, (2, c_in, length)).astype(I8)
    w = rng.integers(-127, 128, (c_out, c_in, k)).astype(I8)
    b = rng.integers(-5000, 5000, c_out).astype(np.int64)
    mults = [quantize_multiplier(m) for m in rng.uniform(1e-4, 0.05, c_out)]
    m0 = np.array([m for m, _ in mults], np.int64)
    sh = np.array([s for _, s in mults], np.int64)
    x_zp, y_zp = int(rng.integers(-128, 128)), int(rng.integers(-128, 128))
    y, n = K8.conv_kx1_int8(x, x_zp, w, b, m0, sh, y_zp, stride)
    t_out = (length - k) // stride + 1
    total = 0
    for bi in range(2):
        for o in range(c_out):
            for t in range(t_out):
                acc = int(b[o]) + sum(
                    int(w[o, i, kk]) * (int(x[bi, i, t * stride + kk]) - x_zp) for i in range(c_in) for kk in range(k)
                )
                ref, s = requant_ref(acc, int(m0[o]), int(sh[o]), y_zp)
                assert y[bi, o, t] == ref
                total += s
    assert n == total
    # depthwise: causal, padding with the real zero
    wd = rng.integers(-127, 128, (c_in, k)).astype(I8)
    yd, nd = K8.dwconv_int8(x, x_zp, wd, b[:1].repeat(c_in), m0[:1].repeat(c_in), sh[:1].repeat(c_in), y_zp)
    for bi in range(2):
        for c in range(c_in):
            for t in range(length):
                acc = int(b[0]) + sum(
                    int(wd[c, kk]) * (int(x[bi, c, t - k + 1 + kk]) - x_zp) for kk in range(k) if t - k + 1 + kk >= 0
                )
                assert yd[bi, c, t] == requant_ref(acc, int(m0[0]), int(sh[0]), y_zp)[0]


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31), k=st.integers(1, 4), stride=st.integers(1, 3), c_out=st.integers(1, 9))
def test_conv_batch_gemm_equals_per_sample_blocks(seed, k, stride, c_out):
    """INT8 twin of the INT16 test: the batch GEMM path (zero point removed as the windows are
    unrolled, per-channel requantization) gives the bytes of the per-sample position blocks."""
    from intsim.kernels_mac import GEMM_MIN_POSITIONS

    rng = np.random.default_rng(seed)
    c_in, length = 4, k + 3 * stride
    n_b = GEMM_MIN_POSITIONS // ((length - k) // stride + 1) + 1
    x = rng.integers(-128, 128, (n_b, c_in, length)).astype(I8)
    w = rng.integers(-127, 128, (c_out, c_in, k)).astype(I8)
    b = rng.integers(-5000, 5000, c_out).astype(np.int64)
    mults = [quantize_multiplier(m) for m in rng.uniform(1e-4, 0.05, c_out)]
    m0 = np.array([m for m, _ in mults], np.int64)
    sh = np.array([s for _, s in mults], np.int64)
    x_zp, y_zp = int(rng.integers(-128, 128)), int(rng.integers(-128, 128))
    y, n = K8.conv_kx1_int8(x, x_zp, w, b, m0, sh, y_zp, stride)
    parts = [K8.conv_kx1_int8(x[i : i + 1], x_zp, w, b, m0, sh, y_zp, stride) for i in range(n_b)]
    np.testing.assert_array_equal(y, np.concatenate([p[0] for p in parts]))
    assert n == sum(p[1] for p in parts)


@settings(max_examples=10, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    k=st.integers(1, 4),
    stride=st.integers(1, 3),
    c_out=st.sampled_from([1, 2, 3, 5, 8, 9, 130]),
    n_b=st.integers(1, 5),
)
def test_small_conv_equals_mac_cores(seed, k, stride, c_out, n_b):
    """Few output positions (batch 1-5; up to 130 channels) run as conv_small_int8 (int32
    sums; without that proof, narrow False, kernels_mac's int64 sums): the bytes and saturations of the
    kernels_mac cores (conv_requant) either way."""
    from intsim.kernels_mac import PROD16, conv_requant, conv_scratch_size, scratch, weight_cols

    rng = np.random.default_rng(seed)
    c_in, length = 5, k + 3 * stride
    t_out = (length - k) // stride + 1
    assert K8.runs_small(n_b * t_out)
    x = rng.integers(-128, 128, (n_b, c_in, length)).astype(I8)
    w_cols = np.ascontiguousarray(weight_cols(rng.integers(-127, 128, (c_out, c_in, k)).astype(I8)))
    b = rng.integers(-5000, 5000, c_out).astype(np.int64)
    mults = [quantize_multiplier(m) for m in rng.uniform(1e-4, 0.05, c_out)]
    m0 = np.array([m for m, _ in mults], np.int64)
    sh = np.array([s for _, s in mults], np.int64)
    x_zp, y_zp = int(rng.integers(-128, 128)), int(rng.integers(-128, 128))
    work, part32, part64, _ = scratch(conv_scratch_size(n_b, c_in, length, c_out, k, t_out), 0)
    ref = np.empty((n_b, c_out, t_out), I8)
    n_ref = conv_requant(x, x_zp, w_cols, b, k, stride, m0, sh, y_zp, 8, True, PROD16, work, part32, part64, ref)
    for narrow in (True, False):
        y, n = K8.conv_kx1_cols_int8(x, x_zp, w_cols, b, m0, sh, y_zp, k, stride, narrow)
        np.testing.assert_array_equal(y, ref)
        assert n == n_ref


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31))
def test_elementwise_and_scan_match_exact_reference(seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, (1, 3, 9)).astype(I8)
    b = rng.integers(-128, 128, (1, 3, 9)).astype(I8)
    za, zb, zy = (int(v) for v in rng.integers(-128, 128, 3))
    m0, sh = quantize_multiplier(float(rng.uniform(1e-3, 0.1)))
    y, n = K8.mul_int8(a, za, b, zb, m0, sh, zy)
    ref = [requant_ref((int(p) - za) * (int(q) - zb), m0, sh, zy) for p, q in zip(a.ravel(), b.ravel(), strict=True)]
    assert y.ravel().tolist() == [r for r, _ in ref] and n == sum(s for _, s in ref)
    m_a, m_b, shift = int(rng.integers(2**28, 2**31)), int(rng.integers(2**20, 2**31)), 31
    y, n = K8.add_int8(a, za, m_a, b, zb, m_b, shift, zy)
    for p, q, got in zip(a.ravel(), b.ravel(), y.ravel(), strict=True):
        v = rne_exact(Fraction((int(p) - za) * m_a + (int(q) - zb) * m_b, 2**shift)) + zy
        assert got == max(-128, min(127, v))
    # scan: lam fixed format (q + 128) / 256, state int32 at s_u / 256
    lam = rng.integers(-128, 128, (1, 3, 9)).astype(I8)
    y, n = K8.scan_int8(lam, a, za, m0, sh, zy)
    for c in range(3):
        state = 0
        for t in range(9):
            li = int(lam[0, c, t]) + 128
            state = rne_exact(Fraction(li * state + (256 - li) * ((int(a[0, c, t]) - za) << 8), 256))
            assert abs(state) <= 255 * 256
            assert y[0, c, t] == requant_ref(state, m0, sh, zy)[0]


def test_rmsnorm_v2_close_to_float():
    rng = np.random.default_rng(4)
    d = 32
    s_x, z_x, s_y, z_y = 0.02, 7, 0.03, -4
    x = rng.integers(-128, 128, (4, d, 10)).astype(I8)
    g = rng.uniform(0.5, 1.5, d)
    s_g = np.max(np.abs(g)) / 127
    g_q = np.rint(g / s_g).astype(I8)
    m0, sh = quantize_multiplier(s_g / s_y)
    eps = 1e-5
    eps_q = int(np.rint(eps / s_x**2 * 2**16))
    y, n = K8.rmsnorm_int8(x, z_x, g_q, np.int64(eps_q), m0, sh + K8.RMS_INV_BITS_INT8 - K8.RMS_EXTRA_BITS, z_y)
    xf = s_x * (x.astype(np.float64) - z_x)
    exact = xf / np.sqrt(np.mean(xf**2, axis=1, keepdims=True) + eps) * (g_q * s_g)[None, :, None]
    codes = exact / s_y + z_y
    inside = (codes > -128.5) & (codes < 127.5)
    assert np.max(np.abs(y - codes)[inside]) <= 0.5 + 0.02  # 0.5 LSB + rsqrt rounding
    assert n == np.count_nonzero(~inside)


def test_asymmetric_params_and_weights():
    s, z = asymmetric_params(-1.0, 3.0)
    assert s == pytest.approx(4.0 / 255) and z == -128 + 64  # RNE(-128 + 63.75) = -64
    q, n = quantize_act(np.array([-1.0, 0.0, 3.0, 10.0]), s, z)
    assert q.tolist() == [-128, z, 127, 127] and n == 1
    s, z = asymmetric_params(0.5, 2.0)  # widened to contain 0
    assert z == -128 and s == pytest.approx(2.0 / 255)
    w = np.array([[0.5, -1.0, 0.25], [0.0, 0.0, 0.0], [2.0, 1.0, -0.01]])
    q, scales = quantize_weight_per_channel(w)
    assert q.tolist() == [[64, -127, 32], [0, 0, 0], [127, 64, -1]]
    np.testing.assert_allclose(scales, [1 / 127, 1.0, 2 / 127])


def test_quant8_whole_network_tolerance(tiny_model):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((128,) + tiny_model.graph.input_shape)
    fp = tiny_model.run(x, "fp32").output
    res = tiny_model.run(x, "quant8", capture=True)
    assert res.output_q.dtype == np.int8
    assert all(t.dtype == np.int8 for t in res.tensors.values())
    err = res.output - fp
    # documented tolerance (docs/quant-spec.md 6): RMSE below 5% of the output's spread
    assert np.sqrt(np.mean(err**2)) < 0.05 * fp.std()
    again = tiny_model.run(x, "quant8").output_q
    assert again.tobytes() == res.output_q.tobytes()


def test_rmsnorm_v1_is_marked_mixed_precision(tmp_path, tiny_model):
    shutil.copytree(tiny_model.graph.path, tmp_path / "m")
    model = load_model(tmp_path / "m")
    x = np.random.default_rng(2).standard_normal((64,) + model.graph.input_shape)
    calibrate(model, x, int8_rmsnorm="v1")
    prog = lower_int8(model.graph)
    assert [s.name for s in prog.steps if s.mixed_precision] == ["blk0.norm", "norm_f"]
    v1 = model.run(x, "quant8").output
    calibrate(model, x, int8_rmsnorm="v2")
    v2 = model.run(x, "quant8").output
    fp = model.run(x, "fp32").output
    assert np.sqrt(np.mean((v1 - fp) ** 2)) < 0.05 * fp.std()
    assert np.sqrt(np.mean((v2 - fp) ** 2)) < 0.05 * fp.std()


def test_lowering_errors_name_the_layer(tmp_path, tiny_model):
    shutil.copytree(tiny_model.graph.path, tmp_path / "m")
    path = tmp_path / "m" / "model.json"
    raw = json.loads(path.read_text())
    raw["quant"]["int8"]["tensors"]["blk0.lam"] = {"scale": 0.01, "zero_point": 0}
    path.write_text(json.dumps(raw))
    with pytest.raises(QuantizationError, match="blk0.scan"):
        load_model(tmp_path / "m").run(np.zeros(tiny_model.graph.input_shape), "quant8")
    raw["quant"].pop("int8")
    path.write_text(json.dumps(raw))
    with pytest.raises(QuantizationError, match="calibrate"):
        load_model(tmp_path / "m").run(np.zeros(tiny_model.graph.input_shape), "quant8")


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31), length=st.integers(1, 40), eps_q=st.sampled_from([0, 1, 500, 2**32]))
def test_revin_kernels_match_exact_reference(seed, length, eps_q):
    """Spec 3.11 with exact rationals (a constant channel included): revin_norm and revin_denorm."""
    rng = np.random.default_rng(seed)
    c, per = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    x = rng.integers(-128, 128, (2, c, length)).astype(I8)
    x[1, 0] = x[1, 0, 0]
    fc = rng.integers(-128, 128, (2, c, per)).astype(I8)
    z_x, z_y, z_o = (int(v) for v in rng.integers(-128, 128, 3))
    m0, sh = quantize_multiplier(float(rng.uniform(0.5, 30.0)))
    shift = sh + K8.REVIN_INV_BITS_INT8
    m_a, m_b = int(rng.integers(1, 2**31)), int(rng.integers(1, 2**31))
    sh_o = int(rng.integers(20, 50))
    y, n_y = K8.revin_norm_int8(x, z_x, np.int64(eps_q), m0, shift, z_y)
    o, n_o = K8.revin_denorm_int8(fc, z_y, x, z_x, np.int64(eps_q), m_a, m_b, sh_o, z_o)
    sat_y = sat_o = 0
    for b in range(2):
        for ch in range(c):
            xc = [int(v) - z_x for v in x[b, ch]]
            s1, s2 = sum(xc), sum(v * v for v in xc)
            mean = rne_exact(Fraction(s1 * 256, length))  # at 2^G
            v = max(rne_exact(Fraction((length * s2 - s1 * s1) << 16, length * length)) + eps_q, 1)
            r = math.isqrt(v)
            std = r + 1 if v - r * r > r else r
            inv = rne_exact(Fraction(1 << K8.REVIN_INV_BITS_INT8, std))
            for t in range(length):
                prod = (xc[t] * 256 - mean) * inv
                assert abs(prod) < 2**31
                want, s = requant_ref(prod, m0, shift, z_y)
                assert y[b, ch, t] == want
                sat_y += s
            for i in range(per):
                acc = (int(fc[b, ch, i]) - z_y) * std * m_a + mean * m_b
                val = rne_exact(Fraction(acc, 2**sh_o)) + z_o
                assert o[b, ch, i] == max(-128, min(127, val))
                sat_o += int(val > 127 or val < -128)
        assert np.all(y[1, 0] == z_y)  # a constant channel: exactly the real zero
    assert (n_y, n_o) == (sat_y, sat_o)


def test_revin_norm_int8_close_to_float():
    from intsim.float_ref import revin_norm

    rng = np.random.default_rng(5)
    s_x, z_x, s_y, z_y = 0.05, -10, 4.0 / 255, 0
    x = rng.integers(-128, 128, (4, 3, 48)).astype(I8)
    m0, sh = quantize_multiplier(1.0 / s_y)
    eps_q = int(np.rint(1e-5 / (s_x * s_x) * 2**16))
    y, n = K8.revin_norm_int8(x, z_x, np.int64(eps_q), m0, sh + K8.REVIN_INV_BITS_INT8, z_y)
    codes = revin_norm(s_x * (x.astype(np.float64) - z_x), 1e-5) / s_y + z_y
    inside = (codes > -128.5) & (codes < 127.5)
    std_codes = np.std(x.astype(np.float64), axis=2, keepdims=True)
    # 0.5 LSB + the rounded mean (at most 2^-9 input code, i.e. 2^-9 / std_codes in normalised units) + rsqrt
    bound = 0.5 + 2.0**-9 / std_codes / s_y + 0.02
    assert np.all((np.abs(y - codes) <= bound)[inside])
    assert n == np.count_nonzero(~inside)


def test_int8_revin_window_limit_names_the_layer():
    """Spec 3.11: INT8 revin_norm keeps |((xc << G) - mean) inv| < 2^31 only for L <= 2^11."""
    from intsim.int8 import REVIN_MAX_L_INT8
    from intsim.small_graph import small_graph

    layers = [{"name": "n", "op": "revin_norm", "inputs": ["input"], "attrs": {"eps": 1e-5}}]
    fmt = {"input": (0.05, 0), "n": (0.02, 0)}
    assert lower_int8(small_graph((2, REVIN_MAX_L_INT8), layers, int8=fmt)).step("n").params.m0 > 0
    with pytest.raises(QuantizationError, match=r"layer 'n'.*2049 samples.*3\.11"):
        lower_int8(small_graph((2, REVIN_MAX_L_INT8 + 1), layers, int8=fmt))


def test_mse_range_is_the_candidate_of_least_quantization_error(tmp_path):
    """Spec 4.3 `mse`: of the candidate ranges, the one of least INT8 error (heavy tails: clipped,
    below min/max's error), and calibrate(int8_method="mse") stores those ranges' scales."""
    from intsim.calibrate import MSE_TAILS, mse_range
    from intsim.synth import make_random_model

    def err(v, lo, hi):
        s, z = asymmetric_params(lo, hi)
        return float(np.mean((v - dequantize_act(quantize_act(v, s, z)[0], s, z)) ** 2))

    rng = np.random.default_rng(2)
    heavy = rng.standard_t(2, 100_000)  # heavy tails: some clipping pays
    lo, hi = mse_range(heavy)
    assert heavy.min() <= lo < 0.0 < hi <= heavy.max() and (lo, hi) != (heavy.min(), heavy.max())
    cands = [(a, b) for a in np.quantile(heavy, MSE_TAILS) for b in np.quantile(heavy, [1 - t for t in MSE_TAILS])]
    assert err(heavy, lo, hi) == min(err(heavy, a, b) for a, b in cands) < err(heavy, heavy.min(), heavy.max())
    model = load_model(make_random_model(tmp_path / "m", revin=True))
    x = rng.standard_normal((64,) + model.graph.input_shape)
    quant = calibrate(model, x, int8_method="mse")
    assert quant["int8"]["method"] == "mse"
    for name, entry in quant["stats"]["tensors"].items():
        if name != "blk0.lam":  # sigmoid output: the spec's fixed format (3.5)
            assert quant["int8"]["tensors"][name]["scale"] == asymmetric_params(entry["mse_lo"], entry["mse_hi"])[0]
    assert model.run(x, "quant8").output.shape == (64, 3, 4)
