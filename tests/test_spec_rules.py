"""Contract points of docs/quant-spec.md that an independent reading found open (issue 20), and
the one saturation rule (issue 13 item 16). Each test pins what the spec states, with values
chosen so that the obvious alternative reading gives a different result.

1 INT8 accumulator rule (3.1)        5 scan state and lam range (2.7, 3.6, 4.2)
2 table construction (2.6, 3.5)      6 saturation counting (5)
3 INT8 RMSNorm constants (3.9)       7 shift_round range (1.3)
4 float64 evaluation order (3.10)
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, localcontext

import numpy as np
import pytest

from intsim import kernels_int8 as K8, kernels_int16 as K16
from intsim.errors import QuantizationError
from intsim.executor import Model
from intsim.fixedpoint import isqrt_rne, quantize_multiplier, requantize, rne_div, shift_round
from intsim.int8 import RMS_MAX_D, asymmetric_params, lower_int8, run_step8
from intsim.int16 import lower_int16
from intsim.lut import exact_value, int8_table, int8_table_clamped, int16_table, int16_table_clamped
from intsim.small_graph import small_graph

I64_MAX = (1 << 63) - 1


def _rne(num: int, sh: int) -> int:
    """RNE(num / 2^sh) in Python integers (the spec's rounding, written out)."""
    q, r = num >> sh, num & ((1 << sh) - 1)
    return q + (r > (1 << sh - 1) or (r == 1 << sh - 1 and q & 1))


def _conv_graph(weight, bias, s_x=1.0, z_x=0, s_y=1.0, z_y=0):
    w = np.asarray(weight, dtype=np.float64)
    return small_graph(
        (w.shape[1], 1),
        [
            {
                "name": "y",
                "op": "conv1x1",
                "inputs": ["input"],
                "weights": {"weight": w, "bias": np.asarray(bias, np.float64)},
            }
        ],
        int8={"input": (s_x, z_x), "y": (s_y, z_y)},
    )


def _rms_graph(gain, eps=1e-5, s_x=0.05, z_x=0, s_y=0.04, z_y=0):
    g = np.asarray(gain, dtype=np.float64)
    return small_graph(
        (g.size, 1),
        [{"name": "y", "op": "rmsnorm", "inputs": ["input"], "weights": {"weight": g}, "attrs": {"eps": eps}}],
        int8={"input": (s_x, z_x), "y": (s_y, z_y)},
    )


# --------------------------------------------------------------------------- 1. accumulator

N_FULL = 66311  # 255 * 127 * N_FULL = 2^31 - 1 - 1912


def test_int8_accumulator_rule_just_inside_and_just_outside():
    """Spec 3.1: 255 * sum|w_q| + |b_q| <= 2^31 - 1 per channel, nothing else. Full-scale weights
    (w_q = 127) over N = 66311 inputs leave room for |b_q| = 1912, not 1913."""
    assert 255 * 127 * N_FULL + 1912 == (1 << 31) - 1
    s_w = 1.0 / 127.0  # max|w| = 1 -> s_w = 1/127, w_q = 127
    s_y = 2.0**31 / 12700.0  # the full sum lands near code 100
    inside = lower_int8(_conv_graph(np.ones((1, N_FULL)), [1912 * s_w], z_x=-128, s_y=s_y)).step("y")
    assert inside.params.bias.tolist() == [1912] and np.all(inside.params.weight == 127)
    # the worst input: x_q - z_x = 255 everywhere: the sum reaches 2^31 - 1 exactly, no overflow
    y, n = run_step8(inside, [np.full((1, N_FULL, 1), 127, np.int8)])
    m0, sh = int(inside.params.m0[0]), int(inside.params.shift[0])
    assert int(y.item()) == _rne(((1 << 31) - 1) * m0, sh) == 100 and n == 0
    with pytest.raises(QuantizationError, match=r"layer 'y': output channel 0: .* = 2147483648 exceeds 2\^31 - 1"):
        lower_int8(_conv_graph(np.ones((1, N_FULL)), [1913 * s_w], z_x=-128, s_y=s_y))
    # the old rule of thumb (N < 66000) is not the rule: more terms pass when the weights are small
    small = lower_int8(_conv_graph(np.r_[1.0, np.full(69999, 0.003)][None, :], [0.0])).step("y")
    assert small.params.weight.shape == (1, 70000)


# --------------------------------------------------------------------------- 2. tables


def _spec_int8_entry(func: str, s_x: float, q: int, z_x: int, s_y: float, z_y: int) -> int:
    """Spec 3.5's recipe, step by step, in decimal at 50 digits (written from the text)."""
    with localcontext() as ctx:
        ctx.prec, ctx.rounding = 50, ROUND_HALF_EVEN
        x = Decimal(s_x) * (q - z_x)
        sig = 1 / (1 + (-x).exp())
        f = sig if func == "sigmoid" else x * sig
        p = f * (1 / Decimal(s_y))
        return max(-128, min(127, int(p.to_integral_value(rounding=ROUND_HALF_EVEN)) + z_y))


def test_int8_table_entries_follow_the_decimal_recipe_with_exact_scales():
    # s_y = float64(1/9): exact decimal gives 4.50000000000000028 -> 5; float64 0.5 / s_y == 4.5 -> 4
    table = int8_table("sigmoid", 0.05, 0, 1.0 / 9.0, 0)
    assert int(table[128]) == 5 and np.rint(0.5 / (1.0 / 9.0)) == 4
    for args in (("sigmoid", 0.05, 0, 1.0 / 9.0, 0), ("silu", 0.031, -7, 0.017, -100), ("silu", 0.1, 0, 0.01, 0)):
        func, s_x, z_x, s_y, z_y = args
        assert int8_table(*args).tolist() == [_spec_int8_entry(func, s_x, q, z_x, s_y, z_y) for q in range(-128, 128)]


def test_silu_is_x_times_sigmoid_and_int16_clamped_entries_are_where_the_spec_says():
    with localcontext() as ctx:
        ctx.prec = 50
        x = Decimal("-3.5")
        assert exact_value("silu", x) == x * exact_value("sigmoid", x)
    starts = {13: 4.0703125, 14: 2.21875, 15: 1.28125}  # spec 2.6
    for f in range(16):
        for func in ("sigmoid", "silu"):
            flags = int16_table_clamped(func, f)
            table = int16_table(func, f)
            if func == "silu" and f in starts:
                first = int(np.flatnonzero(flags)[0])
                assert (first - 2048) / 256 == starts[f] and flags[first:].all() and not flags[:first].any()
                assert np.all(table[flags] == 32767)
            else:
                assert not flags.any(), (func, f)


# --------------------------------------------------------------------------- 3. INT8 RMSNorm


def test_int8_rmsnorm_gain_and_eps_constants():
    """g_q = clamp(RNE(g / s_g)), s_g = max|g| / 127; eps_q = RNE((eps / (s_x * s_x)) * 2^16)."""
    g = [1.2751102739320455, -0.2761065553789862, 0.5, -1.0]
    s_x = 0.0011436078134811714
    p = lower_int8(_rms_graph(g, eps=1e-5, s_x=s_x, s_y=0.03)).step("y").params
    assert p.gain.tolist() == [127, -28, 50, -100]
    assert np.rint(g[1] * 127.0 / g[0]) == -27  # another order: -27
    assert p.eps_q == 501101 and np.rint(1e-5 / s_x / s_x * 2.0**16) == 501102
    m0, sh = quantize_multiplier((g[0] / 127.0) / 0.03)
    assert (p.m0, p.shift) == (m0, sh + 16)


def test_int8_rmsnorm_all_zero_gain_outputs_the_zero_point():
    st = lower_int8(_rms_graph(np.zeros(4), z_x=2, z_y=-1, s_y=0.04)).step("y")
    assert (st.params.m0, st.params.shift - 16) == quantize_multiplier(1.0 / 0.04)  # s_g = 1
    y, n = run_step8(st, [np.arange(-128, 128, 8, dtype=np.int8).reshape(1, 4, 8)])
    assert np.all(y == -1) and n == 0


def test_int8_rmsnorm_limits_shift_d_and_eps():
    # total shift sh + 16 <= 62: s_g / s_y = 2^-16 (sh = 46) passes, 2^-17 (sh = 47) is rejected
    lower_int8(_rms_graph([127.0 * 2.0**-16], s_y=1.0))
    with pytest.raises(QuantizationError, match="layer 'y': RMSNorm shift 63 exceeds 62"):
        lower_int8(_rms_graph([127.0 * 2.0**-17], s_y=1.0))
    lower_int8(_rms_graph(np.ones(RMS_MAX_D)))
    with pytest.raises(QuantizationError, match="D = 65537"):
        lower_int8(_rms_graph(np.ones(RMS_MAX_D + 1)))
    with pytest.raises(QuantizationError, match="eps_q"):
        lower_int8(_rms_graph([1.0], eps=1.0, s_x=1e-30))


def test_int8_rmsnorm_product_bound_at_the_largest_d():
    """Spec 3.9: with D <= 65536, |xc * g_q * inv| < 0.9922 * 2^31. inv is largest when the
    token's other elements are 0 and eps_q = 0 (v smallest), so checking each |xc| there is exhaustive."""
    worst = 0
    for xc in range(1, 256):
        v = max(rne_div(xc * xc << 16, RMS_MAX_D), 1)
        worst = max(worst, 127 * xc * rne_div(1 << 24, isqrt_rne(v)))
    assert worst < 0.9922 * 2**31
    x = np.zeros((1, RMS_MAX_D, 1), np.int8)
    x[0, 0, 0] = -128  # xc = -128 with z_x = 0
    y, n = K8.rmsnorm_int8(x, 0, np.full(RMS_MAX_D, -127, np.int8), np.int64(0), (1 << 31) - 1, 56, 0)
    prod = 128 * 127 * rne_div(1 << 24, isqrt_rne(rne_div(128 * 128 << 16, RMS_MAX_D)))
    assert 0.99 * 2**31 < prod < 2**31  # prod * m0 close to 2^62: still int64
    assert y[0, 0, 0] == _rne(prod * ((1 << 31) - 1), 56) == 63 and y[0, 1, 0] == 0 and n == 0


# --------------------------------------------------------------------------- 4. float order


def test_float64_multipliers_use_the_stated_order():
    # mul: (s_a * s_b) / s_y
    s_a, s_b, s_y = 0.05606394622302311, 0.09554173266933418, 0.16563353837374134
    graph = small_graph(
        (1, 1),
        [{"name": "b", "op": "silu", "inputs": ["input"]}, {"name": "y", "op": "mul", "inputs": ["input", "b"]}],
        int8={"input": (s_a, 0), "b": (s_b, 0), "y": (s_y, 0)},
    )
    p = lower_int8(graph).step("y").params
    assert (p.m0, p.shift) == quantize_multiplier((s_a * s_b) / s_y) == (1111164468, 35)
    assert quantize_multiplier(s_a * (s_b / s_y))[0] == 1111164467
    # conv: (s_x * s_w) / s_y, s_w = max|w| / 127
    s_x, m, s_y = 0.017708425042926194, 0.3131294559364898, 0.01892282962544012
    p = lower_int8(_conv_graph([[m, -0.1]], [0.0], s_x=s_x, s_y=s_y)).step("y").params
    assert p.m0[0] == quantize_multiplier((s_x * (m / 127.0)) / s_y)[0] == 1268480782
    assert quantize_multiplier(s_x * ((m / 127.0) / s_y))[0] == 1268480781
    # bias: RNE(b / (s_x * s_w))
    b, s_x, m = -11.608556634697425, 0.07611194362682931, 0.20230481792926308
    p = lower_int8(_conv_graph([[m, 0.1]], [b], s_x=s_x, s_y=0.05)).step("y").params
    assert p.bias[0] == np.rint(b / (s_x * (m / 127.0))) == -95746
    assert np.rint((b / s_x) / (m / 127.0)) == -95747
    # weights: RNE(w / s_w)
    p = lower_int8(_conv_graph([[1.2751102739320455, -0.2761065553789862]], [0.0])).step("y").params
    assert p.weight.tolist() == [[127, -28]]
    # activation zero point: RNE(-128 - lo / s), s = (hi - lo) / 255
    lo, hi = -1.9035227324900108, 4.279895060948878
    assert asymmetric_params(lo, hi)[1] == -50 and np.rint(-128.0 - 255.0 * lo / (hi - lo)) == -49
    # add: M_a, M_b rounded to the larger one's shift by exact scaling: both < 2^31
    graph = small_graph(
        (1, 1),
        [{"name": "b", "op": "silu", "inputs": ["input"]}, {"name": "y", "op": "add", "inputs": ["input", "b"]}],
        int8={"input": (0.0874372, 0), "b": (0.0446891, 0), "y": (0.0491319, 0)},
    )
    p = lower_int8(graph).step("y").params
    _, sh = quantize_multiplier(0.0874372 / 0.0491319)
    assert (p.shift, p.m_a, p.m_b) == (
        sh,
        int(np.rint(np.ldexp(0.0874372 / 0.0491319, sh))),
        int(np.rint(np.ldexp(0.0446891 / 0.0491319, sh))),
    )
    assert max(p.m_a, p.m_b) < 2**31


# --------------------------------------------------------------------------- 5. scans


def test_int8_scan_state_starts_at_zero_and_never_saturates():
    """Spec 3.6 in plain Python integers: S_{-1} = 0, S = RNE(acc / 256) unclamped, |S| <= 65280."""
    rng = np.random.default_rng(5)
    lam = np.concatenate([np.full((1, 1, 30), -128), np.full((1, 1, 30), 127), rng.integers(-128, 128, (1, 1, 30))], 1)
    u = np.concatenate(
        [np.tile([127, -128], 15)[None, None], np.full((1, 1, 30), 127), rng.integers(-128, 128, (1, 1, 30))], 1
    )
    m0, sh = quantize_multiplier(1.0 / 256.0)  # y = S / 256, in codes
    y, n = K8.scan_int8(lam.astype(np.int8), u.astype(np.int8), -128, m0, sh, 0)
    states, n_sat = [], 0
    for e in range(3):
        s = 0  # S_{-1} = 0
        for t in range(30):
            lam_i, u_c = int(lam[0, e, t]) + 128, int(u[0, e, t]) + 128
            s = _rne(lam_i * s + (256 - lam_i) * (u_c << 8), 8)  # never clamped
            states.append(s)
            code, clamped = requantize(s, m0, sh, 0, 8)
            assert y[0, e, t] == code
            n_sat += bool(clamped)
    assert max(abs(s) for s in states) == 255 * 256  # the bound, reached when lam_i = 0
    assert n == n_sat > 0  # only the output saturates


def test_int16_scan_lam_outside_its_range_extrapolates_then_saturates():
    lam = np.array([[[-300, 600, 257, 0, 256]]], np.int16)
    u = np.array([[[8000, 1000, -2000, 4000, 32767]]], np.int16)
    y, n = K16.scan_int16(lam, u, 8, -3)  # u aligned up by 3 bits
    s, want, sat = 0, [], 0
    for t in range(5):
        acc = int(lam[0, 0, t]) * s + (256 - int(lam[0, 0, t])) * (int(u[0, 0, t]) << 3)
        q = _rne(acc, 8)
        s = max(-32768, min(32767, q))
        sat += s != q
        want.append(s)
    assert y[0, 0].tolist() == want and n == sat > 0


def test_lam_at_f15_is_below_one_and_calibration_never_picks_f15_for_sigmoid(tiny_model_auto):
    assert int16_table("sigmoid", 15).max() == 32757  # lam_q <= 2^15 - 1 at f_l = 15
    y, _ = K16.scan_int16(np.full((1, 1, 3), 32767, np.int16), np.array([[[32767, 0, 0]]], np.int16), 15, 0)
    assert y[0, 0].tolist() == [1, 1, 1]  # (2^15 - 32767) * 32767 / 2^15 -> 1, held
    fr = tiny_model_auto.graph.quant["int16"]["tensors"]
    sigmoids = [layer.name for layer in tiny_model_auto.graph.layers if layer.op == "sigmoid"]
    assert sigmoids and all(fr[name]["frac_bits"] == 14 for name in sigmoids)


# --------------------------------------------------------------------------- 6. saturations


def _lut_model(op: str, f_x: int, f_y: int, n: int) -> Model:
    graph = small_graph(
        (1, n), [{"name": "y", "op": op, "inputs": ["input"]}], int16={"tensors": {"input": f_x, "y": f_y}}
    )
    return Model(graph)


@pytest.mark.parametrize("op,f_y", [("silu", 14), ("silu", 13), ("silu", 8), ("sigmoid", 14)])
def test_lut_saturations_counted_by_one_rule_in_quant16_and_bittrue(op, f_y):
    """Issue 13 item 16 / spec 5: on the same input and formats a LUT layer counts the same values
    in quant16 (float result snapped to the format) and bittrue (reads of clamped table entries,
    plus the SiLU identity branch), including inputs beyond the table's range."""
    x_q = np.arange(-32768, 32768, 7, dtype=np.int64)
    model = _lut_model(op, 8, f_y, x_q.size)
    x = np.ldexp(x_q.astype(np.float64), -8)[None, None, :]  # exact at Q7.8: both modes see x_q
    q16 = model.run(x, "quant16").stats["y"]["saturations"]
    bt = model.run(x, "bittrue").stats["y"]["saturations"]
    assert q16 == bt
    if op == "silu" and f_y >= 13:
        assert bt > 0
    # bittrue's count is the rule itself: clamped entries read + identity results clamped
    st = lower_int16(model.graph).step("y")
    addr = np.clip(x_q + 2048, 0, 4095)
    ident = (x_q + 2048 > 4095) & (op == "silu")
    clamped_reads = int(np.count_nonzero(st.params.clamped[addr] & ~ident))
    ident_sat = int(np.count_nonzero(ident & (np.abs(np.ldexp(x_q.astype(np.float64), f_y - 8)) > 32767)))
    assert bt == clamped_reads + ident_sat


def test_int8_lut_counts_reads_of_clamped_entries():
    """quant8: a LUT entry clamped when the table was built counts on every read."""
    args = ("silu", 0.1, 0, 0.01, 0)
    table, flags = int8_table(*args), int8_table_clamped(*args)
    x = np.tile(np.arange(-128, 128), (1, 3, 1)).astype(np.int8)
    y, n = K8.lut_int8(x, table, flags)
    assert n == 3 * int(flags.sum()) > 0 and np.array_equal(y[0, 0], table)
    y_none, n_none = K8.lut_int8(x, table, np.zeros_like(flags))  # no clamped entry: the one-gather loop
    assert n_none == 0 and np.array_equal(y_none, y)
    assert np.all(table[flags] == 127)  # this table clamps at its top only
    # the same count through the lowered quant8 step
    graph = small_graph(
        (1, 256), [{"name": "y", "op": "silu", "inputs": ["input"]}], int8={"input": (0.1, 0), "y": (0.01, 0)}
    )
    st = lower_int8(graph).step("y")
    assert run_step8(st, [x[:, :1]])[1] == int(flags.sum())


# --------------------------------------------------------------------------- 7. shift_round


def test_shift_round_range_and_the_lowering_stays_within_15_left():
    assert shift_round(1, -62) == 1 << 62 and shift_round(-2, -62) == -(1 << 63)
    assert shift_round(-179, -15) == -5865472 and shift_round(I64_MAX, 0) == I64_MAX
    for n in (-63, 63):
        with pytest.raises(ValueError, match="shift must be in"):
            shift_round(1, n)
    # every left shift the INT16 lowering emits moves a value by at most 15 bits (formats 0..15)
    for f_lo, f_hi in ((0, 15), (15, 0)):
        graph = small_graph(
            (1, 4),
            [
                {"name": "s", "op": "silu", "inputs": ["input"]},
                {"name": "m", "op": "mul", "inputs": ["input", "s"]},
                {"name": "a", "op": "add", "inputs": ["m", "s"]},
                {"name": "l", "op": "sigmoid", "inputs": ["a"]},
                {"name": "y", "op": "scan", "inputs": ["l", "a"]},
            ],
            int16={"tensors": {"input": f_lo, "s": f_hi, "m": f_hi, "a": f_lo, "l": f_hi, "y": f_hi}},
        )
        for st in lower_int16(graph).steps:
            for key in ("addr_shift", "identity_shift", "shift", "u_shift"):
                if hasattr(st.params, key):
                    assert getattr(st.params, key) >= -15, (st.name, key, getattr(st.params, key))
