"""Write the conformance kit: per-operator input/output vectors of docs/quant-spec.md.

    python -m intsim.spec_vectors [--out tests/spec_vectors]

Every case is built here (inputs, integer constants, host-side float inputs, and which rules of
the spec it exercises); the outputs come from the golden model (`intsim.spec_kit.run_case`).
The inputs are fixed: hand-picked values for ties, extremes, bounds and saturation, and
pseudo-random values from Python's `random.Random(seed).random()` (a stream Python guarantees
across versions), so regenerating the kit reproduces the committed files exactly.

Rule tags (index.json "rules"): spec-example, ties, extremes, bounds, saturation,
saturation-count (spec 5), accumulator-bound (3.1), table-construction (2.6, 3.5),
rmsnorm-constants (3.9), float-order (3.10), scan-state (2.7, 3.6), shift-range (1.3).
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import numpy as np

from intsim.int8 import lower_int8
from intsim.int16 import lower_int16
from intsim.small_graph import small_graph
from intsim.spec_kit import Case, run_case, write_kit

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "tests" / "spec_vectors"
I64_MIN, I64_MAX = -(1 << 63), (1 << 63) - 1
I8, I16, I32, I64 = np.int8, np.int16, np.int32, np.int64


class _Rand:
    """Deterministic integers from random.Random(seed).random() only (stable across Pythons)."""

    def __init__(self, seed: int):
        self._r = random.Random(seed)

    def ints(self, lo: int, hi: int, shape, dtype=I64) -> np.ndarray:
        n = int(np.prod(shape))
        vals = [min(hi, lo + int(self._r.random() * (hi - lo + 1))) for _ in range(n)]
        return np.array(vals, dtype=dtype).reshape(shape)

    def floats(self, lo: float, hi: float, shape) -> np.ndarray:
        n = int(np.prod(shape))
        return np.array([lo + (hi - lo) * self._r.random() for _ in range(n)]).reshape(shape)


def _case(id_, precision, op, spec, rules, description, inputs=None, params=None, floats=None) -> Case:
    """A case with its outputs from the golden model; tagged "saturation" exactly when it saturates."""
    case = run_case(
        Case(
            id_,
            precision,
            op,
            spec,
            tuple(rules),
            description,
            dict(inputs or {}),
            dict(params or {}),
            dict(floats or {}),
        )
    )
    if "saturation" in case.rules and not case.saturations:
        raise ValueError(f"kit case {id_}: tagged 'saturation' but nothing saturates")
    if case.saturations and "saturation" not in case.rules:
        case.rules += ("saturation",)
    return case


def _cols(pairs, *names) -> dict:
    return {name: np.array([p[i] for p in pairs], I64) for i, name in enumerate(names)}


# ----------------------------------------------------------------------------- primitives


def primitive_cases() -> list[Case]:
    r = _Rand(1)
    shift = [
        (5, 1),
        (7, 1),
        (-5, 1),
        (-7, 1),
        (6, 2),
        (I64_MIN, 62),  # spec 1.2 examples
        (2, 2),
        (10, 2),
        (-2, 2),
        (-6, 2),
        (-10, 2),
        (1 << 61, 62),
        (-(1 << 61), 62),
        (3 << 61, 62),
        (3, 1),
        (-3, 1),
        (1, 1),
        (-1, 1),  # ties, both parities
        (5, 2),
        (-5, 2),
        (7, 3),
        (I64_MAX, 1),
        (I64_MIN, 1),
        (I64_MAX, 62),
        (I64_MIN, 0),
        (I64_MAX, 0),
    ]
    shift += list(zip(r.ints(I64_MIN, I64_MAX, 40).tolist(), r.ints(0, 62, 40).tolist(), strict=True))
    rounds = [
        (1, -62),
        (-2, -62),
        (-179, -15),
        (3, -1),
        (32767, -15),
        (-32768, -15),
        (I64_MAX, 0),
        (5, 1),
        (-5, 1),
        (6, 2),
        (-(1 << 62), 62),
        (1 << 61, 62),
    ]
    rounds += list(zip(r.ints(-32768, 32767, 20).tolist(), r.ints(-15, 0, 20).tolist(), strict=True))
    rounds += list(zip(r.ints(-(1 << 40), 1 << 40, 20).tolist(), r.ints(1, 20, 20).tolist(), strict=True))
    div = [
        (344064, 4),
        (10, 4),
        (14, 4),
        (-10, 4),
        (-14, 4),
        (-6, 4),
        (6, 4),
        (1 << 40, 75081),
        (I64_MAX, (1 << 62) + 1),
        (I64_MIN, (1 << 62) + 1),
        ((1 << 62) + 1, 1 << 62),
        (7, 1),
        (-7, 1),
    ]
    div += list(zip(r.ints(-(1 << 50), 1 << 50, 20).tolist(), r.ints(1, 1 << 20, 20).tolist(), strict=True))
    roots = [0, 1, 2, 3, 4, 20, 21, 5637210112, (1 << 62) - 1, 1 << 60]
    roots += [v for k in (1, 2, 1000, 2147483646) for v in (k * k + k, k * k + k + 1)]
    roots += r.ints(0, (1 << 62) - 1, 16).tolist()
    sat = [(b_, v) for b_ in (8, 16, 32) for v in (-(1 << b_ - 1) - 1, -(1 << b_ - 1), (1 << b_ - 1) - 1, 1 << b_ - 1)]
    sat += [(16, 40000), (16, -40000), (63, I64_MAX), (63, I64_MIN), (2, 2), (2, -3)]
    req = [
        (1000, 1690499128, 37, -5),
        (-20000, 1690499128, 37, -5),
        (1540, 1690499128, 37, -5),  # spec 3.3/3.4
        (1, 1 << 30, 31, 0),
        (3, 1 << 30, 31, 0),
        (-1, 1 << 30, 31, 0),
        (-3, 1 << 30, 31, 0),  # exact ties
        (255, 1 << 30, 31, 0),
        (257, 1 << 30, 31, 0),
        (253, 1 << 30, 31, 3),  # ties near 127
        ((1 << 31) - 1, (1 << 31) - 1, 62, 0),
        (-(1 << 31) + 1, (1 << 31) - 1, 62, 0),  # extremes
        ((1 << 31) - 1, (1 << 31) - 1, 0, 0),
        (-(1 << 31), 1 << 30, 0, 127),
        (0, 1 << 30, 62, -128),
    ]
    req += list(
        zip(
            r.ints(-(1 << 31) + 1, (1 << 31) - 1, 20).tolist(),
            r.ints(1 << 30, (1 << 31) - 1, 20).tolist(),
            r.ints(30, 45, 20).tolist(),
            r.ints(-128, 127, 20).tolist(),
            strict=True,
        )
    )
    return [
        _case(
            "primitive-rne_shift",
            "primitive",
            "rne_shift",
            "1.2",
            ["spec-example", "ties", "extremes"],
            "y = RNE(x / 2^n), 0 <= n <= 62, over the whole int64 range",
            _cols(shift, "x", "n"),
        ),
        _case(
            "primitive-shift_round",
            "primitive",
            "shift_round",
            "1.3",
            ["shift-range", "ties", "extremes"],
            "y = x * 2^-n: RNE right shift for n > 0, exact left shift for n <= 0 (n in [-62, 62])",
            _cols(rounds, "x", "n"),
        ),
        _case(
            "primitive-rne_div",
            "primitive",
            "rne_div",
            "1.5",
            ["spec-example", "ties", "extremes"],
            "q = RNE(num / den), den > 0 (den above 2^62 included)",
            _cols(div, "num", "den"),
        ),
        _case(
            "primitive-isqrt_rne",
            "primitive",
            "isqrt_rne",
            "1.6",
            ["spec-example", "bounds"],
            "r = nearest integer to sqrt(v), 0 <= v < 2^62 (r^2 + r and r^2 + r + 1 around each switch)",
            _cols([(v,) for v in roots], "v"),
        ),
        _case(
            "primitive-saturate",
            "primitive",
            "saturate",
            "1.4",
            ["saturation", "bounds"],
            "y = clamp(x, -2^(bits-1), 2^(bits-1) - 1), saturated = 1 when it clamps",
            _cols(sat, "bits", "x"),
        ),
        _case(
            "primitive-requantize",
            "primitive",
            "requantize",
            "3.3",
            ["spec-example", "ties", "saturation"],
            "y = sat8(RNE(acc * m0 / 2^shift) + zp): one rounding, ties to even, then the zero point",
            _cols(req, "acc", "m0", "shift", "zp"),
            {"bits": 8},
        ),
    ]


# ----------------------------------------------------------------------------- host side


def host_cases() -> list[Case]:
    r = _Rand(2)
    mults = [
        0.0123,
        1.0,
        0.5,
        2.0**-31,
        2.0**-32 - 2.0**-64,
        2.0**31 - 0.5 - 2.0**-22,
        0.5 + 2.0**-32,
        (2.0**30 + 1.5) / 2.0**31,
        1.0 - 2.0**-33,
        (0.05606394622302311 * 0.09554173266933418) / 0.16563353837374134,  # 3.7's order example
        0.05606394622302311 * (0.09554173266933418 / 0.16563353837374134),
    ]
    # random multipliers over 2^-30 .. 2^10, built exactly (no libm: the same bits everywhere)
    mults += [
        float(np.ldexp(m, e))
        for m, e in zip(r.floats(0.5, 1.0, 12).tolist(), r.ints(-30, 10, 12).tolist(), strict=True)
    ]
    xs = [
        0.7,
        0.001953125,
        200.0,
        -200.0,
        0.005859375,
        -0.001953125,
        127.99609375,
        128.0,
        -128.0,
        -128.001953125,
        1e-300,
        -0.0,
    ]
    cases = [
        _case(
            "host-quantize_multiplier",
            "host",
            "quantize_multiplier",
            "3.2",
            ["spec-example", "ties", "bounds", "float-order"],
            "float64 M -> (m0, shift): frac * 2^31 rounded half to even, m0 = 2^31 renormalised; "
            "the accepted ends [2^-32 - 2^-64, 2^31 - 1/2); two neighbouring floats of 3.7's example",
            {"M": np.array(mults, np.float64)},
        ),
        _case(
            "host-quantize_q",
            "host",
            "quantize_q",
            "1.1",
            ["spec-example", "ties", "saturation"],
            "float64 x -> sat16(RNE(x * 2^8)) at Q8.8, with the saturation flag",
            {"x": np.array(xs, np.float64)},
            {"frac_bits": 8, "bits": 16},
        ),
    ]
    for func, f, rules, what in (
        ("sigmoid", 8, ["table-construction"], "Q8.8"),
        ("silu", 8, ["table-construction"], "Q8.8"),
        (
            "silu",
            14,
            ["table-construction", "saturation-count"],
            "Q2.14: entries from x = 2.21875 up are clamped (flag 1)",
        ),
        ("sigmoid", 0, ["table-construction", "ties"], "Q16.0: sigmoid(0) = 0.5 -> 0"),
    ):
        cases.append(
            _case(
                f"host-int16_table-{func}-f{f}",
                "host",
                "int16_table",
                "2.6",
                rules,
                f"the 4096-entry {func} table for output Q{16 - f}.{f}: {what}",
                params={"is_silu": int(func == "silu"), "frac_bits": f},
            )
        )
    for name, func, s_x, z_x, s_y, z_y, rules, what in (
        (
            "lam",
            "sigmoid",
            0.1,
            3,
            1.0 / 256.0,
            -128,
            ["table-construction", "saturation-count"],
            "the fixed lam format s = 1/256, z = -128: sigmoid >= 255.5/256 clamps to 127",
        ),
        (
            "exact-scale",
            "sigmoid",
            0.05,
            0,
            1.0 / 9.0,
            0,
            ["table-construction", "ties"],
            "s_y = float64(1/9): sigmoid(0) / s_y = 4.50000000000000028 -> 5 (float64 would give 4)",
        ),
        (
            "clamped",
            "silu",
            0.1,
            0,
            0.002,
            0,
            ["table-construction", "saturation-count"],
            "clamped entries (flag 1) from x = 0.5 up and around silu's minimum (-0.2785 / 0.002 < -128)",
        ),
        (
            "tie-zp",
            "sigmoid",
            0.2,
            -128,
            1.0,
            3,
            ["table-construction", "ties"],
            "sigmoid(0) = 0.5 rounds to 0 before the zero point 3 is added",
        ),
    ):
        cases.append(
            _case(
                f"host-int8_table-{name}",
                "host",
                "int8_table",
                "3.5",
                rules,
                f"256-entry {func} table, entry k for code q = k - 128: {what}",
                params={"is_silu": int(func == "silu"), "z_x": z_x, "z_y": z_y},
                floats={"s_x": s_x, "s_y": s_y},
            )
        )
    lo = [-1.9035227324900108, 0.0, 0.5, -3.0, -0.2784645427610738]
    hi = [4.279895060948878, 0.0, 2.0, -1.0, 7.996]
    cases.append(
        _case(
            "host-int8_activation_params",
            "host",
            "int8_activation_params",
            "3.1, 3.10",
            ["float-order", "bounds"],
            "calibrated [lo, hi] -> (s, z): widened to contain 0 and span >= 1e-3; the first "
            "case's z is -50 with -128 - (lo / s), -49 with -128 - 255 lo / (hi - lo)",
            {"lo": np.array(lo), "hi": np.array(hi)},
        )
    )
    cases += _host_int8_layers(r)
    cases.append(
        _case(
            "host-int16_rmsnorm",
            "host",
            "int16_rmsnorm",
            "2.4",
            ["rmsnorm-constants"],
            "INT16 RMSNorm constants: gain codes at Q(f_g), eps_q = RNE(eps * 2^(2 f_x)), shift",
            {"gain": np.array([1.0, -0.5, 0.00390625, 2.5])},
            {"f_x": 15, "f_g": 12, "f_y": 8},
            {"eps": 1e-5},
        )
    )
    return cases


def _host_int8_layers(r: _Rand) -> list[Case]:
    """Lowering of one INT8 layer from float weights and scales (spec 3.1, 3.4, 3.7-3.10)."""
    w_order = np.array(
        [[0.3131294559364898, -0.1, 0.05], [1.2751102739320455, -0.2761065553789862, 0.0], [0.0, 0.0, 0.0]]
    )
    return [
        _case(
            "host-int8_conv1x1-order",
            "host",
            "int8_conv1x1",
            "3.1, 3.4, 3.10",
            ["float-order"],
            "channel 0: M = (s_x * s_w) / s_y gives m0 = 1268480782 (s_x * (s_w / s_y): 1268480781); "
            "channel 1: w / s_w = -27.5000...1 -> -28 (w * 127 / max|w|: -27); channel 2: all-zero, s_w = 1",
            {"weight": w_order, "bias": np.array([0.01, -0.02, 0.5])},
            {"z_x": 3, "z_y": -7},
            {"s_x": 0.017708425042926194, "s_y": 0.01892282962544012},
        ),
        _case(
            "host-int8_conv1x1-bias-order",
            "host",
            "int8_conv1x1",
            "3.1, 3.10",
            ["float-order"],
            "b_q = RNE(b / (s_x * s_w)) = -95746 ((b / s_x) / s_w: -95747)",
            {"weight": np.array([[0.20230481792926308, 0.1]]), "bias": np.array([-11.608556634697425])},
            {"z_x": 0, "z_y": 0},
            {"s_x": 0.07611194362682931, "s_y": 0.05},
        ),
        _case(
            "host-int8_conv_kx1-random",
            "host",
            "int8_conv_kx1",
            "3.1, 3.4",
            ["float-order"],
            "a Kx1 convolution (K = 3, S = 2) from random float weights",
            {"weight": r.floats(-0.6, 0.6, (4, 3, 3)), "bias": r.floats(-0.3, 0.3, (4,))},
            {"z_x": -9, "z_y": 12, "kernel": 3, "stride": 2, "length": 9},
            {"s_x": 0.031, "s_y": 0.047},
        ),
        _case(
            "host-int8_dwconv-random",
            "host",
            "int8_dwconv",
            "3.1, 3.4",
            ["float-order"],
            "a causal depthwise convolution (K = 4) from random float weights, one near-zero channel "
            "(its scale takes the 2^-30 floor)",
            {
                "weight": np.vstack([r.floats(-0.8, 0.8, (3, 4)), np.full((1, 4), 1e-12)]),
                "bias": r.floats(-0.2, 0.2, (4,)),
            },
            {"z_x": 5, "z_y": -3, "kernel": 4, "length": 7},
            {"s_x": 0.02, "s_y": 0.03},
        ),
        _case(
            "host-int8_mul-order",
            "host",
            "int8_mul",
            "3.7, 3.10",
            ["float-order"],
            "M = (s_a * s_b) / s_y: m0 = 1111164468 (s_a * (s_b / s_y): 1111164467)",
            floats={"s_a": 0.05606394622302311, "s_b": 0.09554173266933418, "s_y": 0.16563353837374134},
        ),
        _case(
            "host-int8_add",
            "host",
            "int8_add",
            "3.8, 3.10",
            ["float-order"],
            "M_a = s_a / s_y, M_b = s_b / s_y; the shift of the larger; m_a, m_b = RNE(M * 2^SH)",
            floats={"s_a": 0.0874372, "s_b": 0.0446891, "s_y": 0.0491319},
        ),
        _case(
            "host-int8_scan",
            "host",
            "int8_scan",
            "3.6, 3.10",
            ["float-order"],
            "M = s_u / (256 s_y)",
            floats={"s_u": 0.0410267, "s_y": 0.0332037},
        ),
        _case(
            "host-int8_rmsnorm-order",
            "host",
            "int8_rmsnorm",
            "3.9, 3.10",
            ["rmsnorm-constants", "float-order"],
            "g_q = RNE(g / s_g): -28 for the second entry; eps_q = RNE((eps / (s_x * s_x)) * 2^16) = 501101 "
            "(eps / s_x / s_x: 501102); M = s_g / s_y",
            {"gain": np.array([1.2751102739320455, -0.2761065553789862, 0.5, -1.0])},
            {"z_x": 0, "z_y": 0},
            {"eps": 1e-5, "s_x": 0.0011436078134811714, "s_y": 0.03},
        ),
        _case(
            "host-int8_rmsnorm-zero-gain",
            "host",
            "int8_rmsnorm",
            "3.9",
            ["rmsnorm-constants", "extremes"],
            "an all-zero gain: s_g = 1, g_q = 0, M = 1 / s_y",
            {"gain": np.zeros(4)},
            {"z_x": 2, "z_y": -1},
            {"eps": 1e-5, "s_x": 0.05, "s_y": 0.04},
        ),
    ]


# ----------------------------------------------------------------------------- INT16 operators


def _a(values, shape, dtype) -> np.ndarray:
    return np.array(values, dtype=I64).reshape(shape).astype(dtype)


def _lut16(func: str, f_y: int) -> dict:
    from intsim.lut import int16_table, int16_table_clamped

    return {"table": int16_table(func, f_y), "clamped": int16_table_clamped(func, f_y).astype(np.uint8)}


def int16_cases() -> list[Case]:
    r = _Rand(3)
    full = (-32768, 32767)
    x_c = r.ints(-60, 60, (3, 6, 5), I16)
    x_c[0, :, 0], x_c[0, :, 1] = 32767, -32768
    x_k, x_d = r.ints(-3000, 3000, (2, 3, 11), I16), r.ints(-3000, 3000, (2, 3, 8), I16)
    x_k[0, :, :3], x_d[0, :, :2] = 32767, -32768  # a few full-scale windows saturate
    tokens = [
        [0] * 6,
        [-32768, 0, 0, 0, 0, 0],
        [32767] * 6,
        [-32768] * 6,
        r.ints(-300, 300, 6).tolist(),
        r.ints(*full, 6).tolist(),
    ]
    silu10 = [
        2,
        6,
        -2,
        -6,
        714,
        718,
        2272,
        2276,
        3000,
        8000,
        8188,
        8190,
        8191,
        8192,
        32767,
        -8188,
        -8194,
        -32768,
        0,
        1,
    ] + r.ints(*full, 28).tolist()
    cases = [
        _case(
            "int16-conv1x1-spec-example",
            "int16",
            "conv1x1",
            "2.1",
            ["spec-example"],
            "spec 2.1's example: Q8.8 everywhere, one rounding (169.6 -> 170)",
            {"x": _a([384, -64], (1, 2, 1), I16), "weight": _a([128, 192], (1, 2), I16), "bias": _a([6554], (1,), I32)},
            {"shift": 8},
        ),
        _case(
            "int16-conv1x1-random",
            "int16",
            "conv1x1",
            "2.1",
            ["ties", "extremes", "saturation"],
            "shift 1 (every odd sum is a tie), full-scale inputs in the first columns saturate",
            {"x": x_c, "weight": r.ints(-40, 40, (4, 6), I16), "bias": r.ints(-1000, 1000, (4,), I32)},
            {"shift": 1},
        ),
        _case(
            "int16-conv_kx1-spec-example",
            "int16",
            "conv_kx1",
            "2.2",
            ["spec-example"],
            "spec 2.2's example: K = 2, S = 1",
            {
                "x": _a([256, 512, -256], (1, 1, 3), I16),
                "weight": _a([128, 64], (1, 1, 2), I16),
                "bias": _a([0], (1,), I32),
            },
            {"stride": 1, "shift": 8},
        ),
        _case(
            "int16-conv_kx1-random",
            "int16",
            "conv_kx1",
            "2.2",
            ["ties", "extremes", "saturation"],
            "K = 3, S = 2, shift 4; the first windows hold full-scale inputs and saturate",
            {"x": x_k, "weight": r.ints(-64, 64, (4, 3, 3), I16), "bias": r.ints(-(1 << 16), 1 << 16, (4,), I32)},
            {"stride": 2, "shift": 4},
        ),
        _case(
            "int16-dwconv-spec-example",
            "int16",
            "dwconv",
            "2.3",
            ["spec-example"],
            "spec 2.3's example: causal, K = 2",
            {"x": _a([256, 512], (1, 1, 2), I16), "weight": _a([128, 256], (1, 2), I16), "bias": _a([0], (1,), I32)},
            {"shift": 8},
        ),
        _case(
            "int16-dwconv-random",
            "int16",
            "dwconv",
            "2.3",
            ["ties", "extremes", "saturation"],
            "K = 4 (three zeros of causal padding), shift 2; full-scale inputs in the first steps saturate",
            {"x": x_d, "weight": r.ints(-20, 20, (3, 4), I16), "bias": r.ints(-(1 << 12), 1 << 12, (3,), I32)},
            {"shift": 2},
        ),
        _case(
            "int16-rmsnorm-spec-example",
            "int16",
            "rmsnorm",
            "2.4",
            ["spec-example"],
            "spec 2.4's example: rms_q = 75081, inv = 14644339, shift 32",
            {"x": _a([256, -512, 128, 0], (1, 4, 1), I16), "gain": _a([256, 256, 128, 512], (4,), I16)},
            {"eps_q": 1, "shift": 32},
        ),
        _case(
            "int16-rmsnorm-extremes",
            "int16",
            "rmsnorm",
            "2.4",
            ["extremes", "saturation", "bounds"],
            "tokens: all zero (v = max(0 + eps_q, 1) with eps_q = 0), one -32768, all 32767, all -32768; "
            "full-scale gains; the smallest legal shift (17) saturates",
            {
                "x": np.array(tokens, I64).T.reshape(1, 6, 6).astype(I16),
                "gain": _a([32767, -32768, 256, -1, 0, 1000], (6,), I16),
            },
            {"eps_q": 0, "shift": 17},
        ),
        _case(
            "int16-silu-q8.8",
            "int16",
            "silu",
            "2.5, 2.6",
            ["extremes", "bounds"],
            "Q8.8 in and out: the table ends (-2048..2047), identity from 2048 (x >= 8), T[0] below -8",
            {
                "x": _a(
                    [-32768, -2049, -2048, -2047, -1, 0, 1, 179, 2046, 2047, 2048, 2049, 32767]
                    + r.ints(*full, 35).tolist(),
                    (1, 1, 48),
                    I16,
                ),
                **_lut16("silu", 8),
            },
            {"addr_shift": 0, "identity_shift": 0},
        ),
        _case(
            "int16-silu-fx10-fy14",
            "int16",
            "silu",
            "2.5, 2.6, 5",
            ["ties", "saturation-count", "saturation"],
            "Q6.10 in, Q2.14 out: address ties (x_q = 4k + 2), clamped table entries (x >= 2.21875) "
            "count, 8190 rounds to address 2048 (identity), the identity's left shift by 4 saturates",
            {"x": _a(silu10, (1, 2, 24), I16), **_lut16("silu", 14)},
            {"addr_shift": 2, "identity_shift": -4},
        ),
        _case(
            "int16-sigmoid-fx6-fy15",
            "int16",
            "sigmoid",
            "2.5, 2.6, 5",
            ["extremes", "bounds"],
            "Q10.6 in (address = x_q << 2), Q1.15 out: addresses clamp at both ends (not saturations)",
            {
                "x": _a([-32768, -513, -512, -511, 0, 1, 511, 512, 32767] + r.ints(*full, 23).tolist(), (1, 4, 8), I16),
                **_lut16("sigmoid", 15),
            },
            {"addr_shift": -2, "identity_shift": -9},
        ),
        _case(
            "int16-sigmoid-fx12-fy8",
            "int16",
            "sigmoid",
            "2.5, 2.6",
            ["ties"],
            "Q4.12 in: address = RNE(x_q / 16), ties at x_q = 16k + 8",
            {
                "x": _a([8, 24, -8, -24, 40, 2872, 2888] + r.ints(*full, 25).tolist(), (1, 2, 16), I16),
                **_lut16("sigmoid", 8),
            },
            {"addr_shift": 4, "identity_shift": 4},
        ),
        _case(
            "int16-scan-spec-example",
            "int16",
            "scan",
            "2.7",
            ["spec-example"],
            "spec 2.7's example: one rounding per step",
            {"lam": _a([192, 192, 64], (1, 1, 3), I16), "u": _a([256, 512, -128], (1, 1, 3), I16)},
            {"lam_frac": 8, "u_shift": 0},
        ),
        _case(
            "int16-scan-fl15",
            "int16",
            "scan",
            "2.7",
            ["scan-state", "extremes"],
            "f_l = 15: lam = 1.0 is not representable; lam_q = 32767 and 32757 (the sigmoid table's "
            "largest entry) decay the state by at least 2^-15 per step",
            {
                "lam": np.vstack([np.full(24, 32767), np.full(24, 32757)]).reshape(1, 2, 24).astype(I16),
                "u": np.vstack([[32767] * 4 + [-32768] * 20, r.ints(*full, 24)]).reshape(1, 2, 24).astype(I16),
            },
            {"lam_frac": 15, "u_shift": 0},
        ),
        _case(
            "int16-scan-lam-range",
            "int16",
            "scan",
            "2.7",
            ["scan-state", "saturation", "extremes"],
            "lam outside [0, 2^f_l] (negative, above 256) extrapolates and saturates; u aligned up by 3 bits",
            {
                "lam": _a([-300, -1, 0, 256, 257, 600, 32767, -32768] * 3, (1, 4, 6), I16),
                "u": r.ints(*full, (1, 4, 6), I16),
            },
            {"lam_frac": 8, "u_shift": -3},
        ),
        _case(
            "int16-scan-ties",
            "int16",
            "scan",
            "2.7",
            ["ties"],
            "u aligned down by 2 bits (RNE, ties), then the step's rounding",
            {"lam": r.ints(0, 256, (2, 3, 10), I16), "u": r.ints(*full, (2, 3, 10), I16)},
            {"lam_frac": 8, "u_shift": 2},
        ),
        _case(
            "int16-mul-spec-example",
            "int16",
            "mul",
            "2.8",
            ["spec-example", "ties"],
            "spec 2.8's example: 384 * -179 / 256 = -268.5 -> -268 (even)",
            {"a": _a([384], (1, 1, 1), I16), "b": _a([-179], (1, 1, 1), I16)},
            {"shift": 8},
        ),
        _case(
            "int16-mul-ties",
            "int16",
            "mul",
            "2.8",
            ["ties", "saturation", "extremes"],
            "shift 15: products of 2^14 are ties; -32768^2 saturates",
            {
                "a": _a([1, 3, -1, -3, 5, -32768, 32767, -32768] + r.ints(*full, 16).tolist(), (1, 3, 8), I16),
                "b": _a([16384] * 5 + [-32768, 32767, 32767] + r.ints(*full, 16).tolist(), (1, 3, 8), I16),
            },
            {"shift": 15},
        ),
        _case(
            "int16-mul-left",
            "int16",
            "mul",
            "1.3, 2.8",
            ["shift-range", "saturation"],
            "f_y = f_a + f_b + 3: the product is shifted left by 3 (exact), then saturated",
            {"a": r.ints(-200, 200, (1, 2, 8), I16), "b": r.ints(-200, 200, (1, 2, 8), I16)},
            {"shift": -3},
        ),
        _case(
            "int16-add-spec-example",
            "int16",
            "add",
            "2.9",
            ["spec-example"],
            "spec 2.9's example: Q8.8 + Q6.10 -> Q8.8",
            {"a": _a([300], (1, 1, 1), I16), "b": _a([1001], (1, 1, 1), I16)},
            {"a_up": 2, "b_up": 0, "shift": 2},
        ),
        _case(
            "int16-add-random",
            "int16",
            "add",
            "2.9",
            ["ties", "saturation", "extremes"],
            "b aligned up by 3 bits, one rounding (shift 1: ties), full-range inputs saturate",
            {"a": r.ints(*full, (2, 2, 6), I16), "b": r.ints(*full, (2, 2, 6), I16)},
            {"a_up": 0, "b_up": 3, "shift": 1},
        ),
        _case(
            "int16-add-left",
            "int16",
            "add",
            "1.3, 2.9",
            ["shift-range", "saturation"],
            "f_y = F + 2: the sum is shifted left by 2",
            {"a": r.ints(-9000, 9000, (1, 2, 6), I16), "b": r.ints(-9000, 9000, (1, 2, 6), I16)},
            {"a_up": 0, "b_up": 0, "shift": -2},
        ),
        _case(
            "int16-softplus-q8.8",
            "int16",
            "softplus",
            "2.11",
            ["extremes", "bounds"],
            "Q8.8 in and out: the table ends, identity from 2048 (x >= 8), T[0] = 0 below -8",
            {
                "x": _a(
                    [-32768, -2049, -2048, -1, 0, 1, 2047, 2048, 32767] + r.ints(*full, 23).tolist(), (1, 2, 16), I16
                ),
                **_lut16("softplus", 8),
            },
            {"addr_shift": 0, "identity_shift": 0},
        ),
        _case(
            "int16-softplus-fy14",
            "int16",
            "softplus",
            "2.11, 5",
            ["saturation-count", "saturation"],
            "Q8.8 in, Q2.14 out: entries from x = 1.85546875 up are clamped, each read counts",
            {"x": r.ints(-2500, 2500, (1, 2, 16), I16), **_lut16("softplus", 14)},
            {"addr_shift": 0, "identity_shift": -6},
        ),
        _case(
            "int16-s6_scan-spec-example",
            "int16",
            "s6_scan",
            "2.12",
            ["spec-example", "scan-state"],
            "spec 2.12's example: Q8.8, E = N = 1, two steps (y = 256, 411)",
            {**_s6_16([128, 128], [512, 512], [256, 256], [256, 256], [-256], [0], 1, 1, 2)},
            dict(zip(_S6_16_PARAMS, (8, 0, 6, 14, 0, 8, 16), strict=True)),
        ),
        _case(
            "int16-s6_scan-q88",
            "int16",
            "s6_scan",
            "2.12",
            ["scan-state", "ties"],
            "Q8.8 shifts, E = 3 channels, N = 4 states, T = 8: random steps, inputs and A in [-16, 0]",
            _s6_16(
                r.ints(0, 600, 24),
                r.ints(-800, 800, 24),
                r.ints(-800, 800, 32),
                r.ints(-800, 800, 32),
                r.ints(-4096, 0, 12),
                r.ints(-512, 512, 3),
                3,
                4,
                8,
            ),
            dict(zip(_S6_16_PARAMS, (8, 0, 6, 14, 0, 8, 16), strict=True)),
        ),
        _case(
            "int16-s6_scan-saturation",
            "int16",
            "s6_scan",
            "2.12, 5",
            ["scan-state", "extremes", "saturation"],
            "full-scale inputs, A = 0 (no decay): the int32 state and the output clamp, each counted",
            _s6_16(
                [32767] * 12,
                [-32768] * 6 + [32767] * 6,
                [32767] * 12,
                [-32768] * 12,
                [0, -1, -32768, 0],
                [32767, -32768],
                2,
                2,
                6,
            ),
            dict(zip(_S6_16_PARAMS, (8, 0, 0, 20, 0, 0, 10), strict=True)),
        ),
    ]
    return cases


_S6_16_PARAMS = ("addr_shift", "h_up", "p_up", "h_shift", "y_up_c", "y_up_d", "y_shift")


def _s6_16(delta, x, b, c, a, d, e: int, n: int, t: int) -> dict:
    from intsim.lut import exp_decay_table

    return {
        "delta": _a(delta, (1, e, t), I16),
        "x": _a(x, (1, e, t), I16),
        "B": _a(b, (1, n, t), I16),
        "C": _a(c, (1, n, t), I16),
        "A": _a(a, (e, n), I16),
        "D": _a(d, (e,), I16),
        "table": exp_decay_table(),
    }


# ----------------------------------------------------------------------------- INT8 operators


def int8_cases(host: dict[str, Case]) -> list[Case]:
    """INT8 operator vectors; their constants come from the host cases' lowering (by id)."""
    r = _Rand(4)
    full = (-128, 127)
    n_acc = 16
    b_acc = (1 << 31) - 1 - 255 * 127 * n_acc  # the accumulator reaches +-(2^31 - 1) exactly
    codes = np.arange(-128, 128, dtype=I64).reshape(1, 1, 256).astype(I8)
    cases = [
        _case(
            "int8-conv1x1-spec-example",
            "int8",
            "conv1x1",
            "3.4",
            ["spec-example"],
            "spec 3.4's example: acc = 1540, 18.94 -> 19, + z_y",
            {
                "x": _a([10, -20], (1, 2, 1), I8),
                "weight": _a([64, -32], (1, 2), I8),
                "bias": _a([100], (1,), I32),
                "m0": _a([1690499128], (1,), I32),
                "shift": _a([37], (1,), I8),
            },
            {"x_zp": -5, "y_zp": -5},
        ),
        _case(
            "int8-conv1x1-acc-bound",
            "int8",
            "conv1x1",
            "3.1, 3.4",
            ["accumulator-bound", "extremes", "saturation"],
            f"C_in = {n_acc}: 255 * sum|w_q| + |b_q| = 2^31 - 1 exactly in both channels; sample 0 has "
            "x_q - z_x = 255 everywhere, so acc = +(2^31 - 1) and -(2^31 - 1): the int32 accumulator's "
            "ends, reached without overflow; sample 1 has x_q = z_x (acc = b_q)",
            {
                "x": np.concatenate([np.full((1, n_acc, 2), 127), np.full((1, n_acc, 2), -128)]).astype(I8),
                "weight": np.vstack([np.full(n_acc, 127), np.full(n_acc, -127)]).astype(I8),
                "bias": _a([b_acc, -b_acc], (2,), I32),
                "m0": _a([(1 << 31) - 1, 1 << 30], (2,), I32),
                "shift": _a([55, 62], (2,), I8),
            },
            {"x_zp": -128, "y_zp": 0},
        ),
    ]
    conv_x = {
        "conv1x1": r.ints(*full, (2, 3, 6), I8),
        "conv_kx1": r.ints(*full, (2, 3, 9), I8),
        "dwconv": r.ints(*full, (2, 4, 7), I8),
    }
    for op, hid, extra in (
        ("conv1x1", "host-int8_conv1x1-order", {}),
        ("conv_kx1", "host-int8_conv_kx1-random", {"stride": 2}),
        ("dwconv", "host-int8_dwconv-random", {}),
    ):
        h = host[hid]
        x = conv_x[op]
        x[0, :, 0], x[0, :, 1] = 127, -128
        cases.append(
            _case(
                f"int8-{op}-lowered",
                "int8",
                op,
                "3.4",
                ["extremes"],
                f"the constants of {hid} on random codes (first columns at the code ends)",
                {
                    "x": x,
                    "weight": h.outputs["weight_q"],
                    "bias": h.outputs["bias_q"],
                    "m0": h.outputs["m0"],
                    "shift": h.outputs["shift"],
                },
                {"x_zp": h.params["z_x"], "y_zp": h.params["z_y"], **extra},
            )
        )
    h = host["host-int8_rmsnorm-order"]
    tokens = [
        [0, 0, 0, 0],
        [127, 0, 0, 0],
        [-128, 0, 0, 0],
        [127, 127, 127, 127],
        [-128, 127, -128, 127],
        r.ints(*full, 4).tolist(),
        r.ints(-3, 3, 4).tolist(),
    ]
    cases.append(
        _case(
            "int8-rmsnorm-lowered",
            "int8",
            "rmsnorm",
            "3.9",
            ["extremes", "bounds"],
            "the constants of host-int8_rmsnorm-order; tokens: all at the zero point (v = eps_q), "
            "one element at a code end, all at the ends, small values",
            {"x": np.array(tokens, I64).T.reshape(1, 4, len(tokens)).astype(I8), "gain": h.outputs["gain_q"]},
            {
                "x_zp": h.params["z_x"],
                "eps_q": h.expect["eps_q"],
                "m0": h.expect["m0"],
                "shift": h.expect["shift"],
                "y_zp": h.params["z_y"],
            },
        )
    )
    h = host["host-int8_rmsnorm-zero-gain"]
    cases.append(
        _case(
            "int8-rmsnorm-zero-gain",
            "int8",
            "rmsnorm",
            "3.9",
            ["extremes"],
            "an all-zero gain: every output is z_y",
            {"x": r.ints(*full, (1, 4, 3), I8), "gain": h.outputs["gain_q"]},
            {
                "x_zp": h.params["z_x"],
                "eps_q": h.expect["eps_q"],
                "m0": h.expect["m0"],
                "shift": h.expect["shift"],
                "y_zp": h.params["z_y"],
            },
        )
    )
    for name in ("lam", "exact-scale", "clamped"):
        h = host[f"host-int8_table-{name}"]
        func = ("sigmoid", "silu")[h.params["is_silu"]]
        cases.append(
            _case(
                f"int8-{func}-{name}",
                "int8",
                func,
                "3.5, 5",
                ["table-construction"] + (["saturation-count"] if h.outputs["clamped"].any() else []),
                f"every input code through the table of host-int8_table-{name}; reads of clamped "
                "entries count as saturations",
                {"x": codes, "table": h.outputs["table"], "clamped": h.outputs["clamped"]},
            )
        )
    h = host["host-int8_scan"]
    lam = np.vstack([np.full(40, -128), np.full(40, 127), r.ints(*full, 40), r.ints(60, 127, 40)])
    u = np.vstack([np.tile([127, -128], 20), [127] * 5 + [-128] * 35, r.ints(*full, 40), r.ints(*full, 40)])
    cases.append(
        _case(
            "int8-scan-state",
            "int8",
            "scan",
            "3.6",
            ["scan-state", "extremes", "saturation"],
            "S_{-1} = 0; lam_i = 0 jumps the state to +-255 * 256 = +-65280 (its bound, never "
            "clamped), lam_i = 255 decays slowest; only y_q saturates",
            {"lam": lam.reshape(1, 4, 40).astype(I8), "u": u.reshape(1, 4, 40).astype(I8)},
            {"u_zp": -128, "m0": h.expect["m0"], "shift": h.expect["shift"], "y_zp": 5},
        )
    )
    h = host["host-int8_mul-order"]
    cases.append(
        _case(
            "int8-mul-lowered",
            "int8",
            "mul",
            "3.7",
            ["extremes"],
            "the multiplier of host-int8_mul-order on random codes",
            {"a": r.ints(*full, (1, 3, 8), I8), "b": r.ints(*full, (1, 3, 8), I8)},
            {"a_zp": -20, "b_zp": 7, "m0": h.expect["m0"], "shift": h.expect["shift"], "y_zp": 3},
        )
    )
    cases.append(
        _case(
            "int8-mul-ties",
            "int8",
            "mul",
            "3.3, 3.7",
            ["ties", "saturation"],
            "m0 = 2^30, shift 31: y = RNE(acc / 2) + z_y, every odd product is a tie",
            {"a": r.ints(-6, 6, (1, 2, 8), I8), "b": r.ints(-6, 6, (1, 2, 8), I8)},
            {"a_zp": 1, "b_zp": -2, "m0": 1 << 30, "shift": 31, "y_zp": 120},
        )
    )
    h = host["host-int8_add"]
    cases.append(
        _case(
            "int8-add-lowered",
            "int8",
            "add",
            "3.8",
            ["extremes"],
            "the multipliers of host-int8_add on random codes and the code ends",
            {
                "a": _a([127, -128, 127, -128] + r.ints(*full, 20).tolist(), (1, 3, 8), I8),
                "b": _a([127, -128, -128, 127] + r.ints(*full, 20).tolist(), (1, 3, 8), I8),
            },
            {
                "a_zp": 10,
                "m_a": h.expect["m_a"],
                "b_zp": -4,
                "m_b": h.expect["m_b"],
                "shift": h.expect["shift"],
                "y_zp": -30,
            },
        )
    )
    from intsim.lut import exp_decay_table, int8_table, int8_table_clamped

    sp = ("softplus", 0.05, 3, 0.03, -120)
    cases.append(
        _case(
            "int8-softplus",
            "int8",
            "softplus",
            "3.12, 5",
            ["table-construction", "saturation-count"],
            "every input code through the softplus table for s_x = 0.05, z_x = 3, s_y = 0.03, z_y = -120 "
            "(softplus above 7.47 clamps to 127, counted)",
            {"x": codes, "table": int8_table(*sp), "clamped": int8_table_clamped(*sp).astype(np.uint8)},
        )
    )
    e, n, t = 3, 4, 10
    cases.append(
        _case(
            "int8-s6_scan-random",
            "int8",
            "s6_scan",
            "3.13",
            ["scan-state", "extremes", "saturation"],
            "E = 3, N = 4, T = 10, random codes (channel 0 at the code ends); address multipliers and "
            "a 15-bit state-sum multiplier and a wider skip multiplier, as a lowering makes them",
            {
                "delta": r.ints(*full, (1, e, t), I8),
                "x": _a([127, -128] * 5 + r.ints(*full, 20).tolist(), (1, e, t), I8),
                "B": r.ints(*full, (1, n, t), I8),
                "C": r.ints(*full, (1, n, t), I8),
                "A": r.ints(-127, 0, (e, n), I8),
                "m_a": r.ints(1 << 30, (1 << 31) - 1, e, I64),
                "sh_a": _a([30, 31, 32], (e,), I64),
                "D": r.ints(-127, 127, e, I8),
                "table": exp_decay_table(),
            },
            {"d_zp": -128, "x_zp": 3, "b_zp": -2, "c_zp": 10, "y_zp": -7, "m_h": 23456, "m_k": 8704000, "shift": 33},
        )
    )
    return cases


def _revin_steps(precision: str, fmt: dict) -> tuple:
    """The lowered (revin_norm, revin_denorm) steps of a window [3, 8] -> normalised -> restored graph."""
    layers = [
        {"name": "n", "op": "revin_norm", "inputs": ["input"], "attrs": {"eps": 1e-5}},
        {"name": "y", "op": "revin_denorm", "inputs": ["n", "input"], "attrs": {"eps": 1e-5}},
    ]
    graph = small_graph((3, 8), layers, **{precision: fmt})
    prog = lower_int16(graph) if precision == "int16" else lower_int8(graph)
    return prog.step("n").params, prog.step("y").params


def revin_cases() -> list[Case]:
    """RevIN (spec 2.10 / 3.11): per window and channel, normalise and restore; constants lowered
    from a one-window graph (eps = 1e-5)."""
    r = _Rand(5)
    x16 = r.ints(-3000, 3000, (2, 3, 8), I16)
    x16[0, 0, :] = 700  # a constant channel: std = sqrt(eps)
    x16[0, 1, :] = [32767, -32768] * 4  # full-scale alternation
    n16, d16 = _revin_steps("int16", {"tensors": {"input": 8, "n": 12, "y": 8}})
    x8 = r.ints(-128, 128, (2, 3, 8), I8)
    x8[0, 0, :] = 5
    x8[0, 1, :] = [127, -128] * 4
    n8, d8 = _revin_steps("int8", {"input": (0.05, 3), "n": (0.02, 0), "y": (0.05, 3)})
    fc16 = r.ints(-32768, 32768, (2, 3, 8), I16)
    fc8 = r.ints(-128, 128, (2, 3, 8), I8)
    return [
        _case(
            "int16-revin_norm",
            "int16",
            "revin_norm",
            "2.10",
            ["extremes"],
            "Q8.8 window -> Q3.12: a constant channel (std = sqrt(eps)), a full-scale alternation, random",
            {"x": x16},
            {"eps_q": n16.eps_q, "shift": n16.shift},
        ),
        _case(
            "int16-revin_denorm",
            "int16",
            "revin_denorm",
            "2.10",
            ["extremes"],
            "a full-range Q3.12 forecast restored to the window's Q8.8 statistics",
            {"f": fc16, "x": x16},
            {"eps_q": d16.eps_q, "mean_up": d16.mean_up, "shift": d16.shift},
        ),
        _case(
            "int8-revin_norm",
            "int8",
            "revin_norm",
            "3.11",
            ["extremes"],
            "s_x = 0.05, z_x = 3 -> s_y = 0.02: a constant channel, a full-scale alternation, random",
            {"x": x8},
            {"x_zp": n8.x_zp, "eps_q": n8.eps_q, "m0": n8.m0, "shift": n8.shift, "y_zp": n8.y_zp},
        ),
        _case(
            "int8-revin_denorm",
            "int8",
            "revin_denorm",
            "3.11",
            ["extremes"],
            "a full-range forecast restored to the window's statistics",
            {"f": fc8, "x": x8},
            {
                "y_zp": d8.y_zp,
                "x_zp": d8.x_zp,
                "eps_q": d8.eps_q,
                "m_a": d8.m_a,
                "m_b": d8.m_b,
                "shift": d8.shift,
                "o_zp": d8.o_zp,
            },
        ),
    ]


def build_cases() -> list[Case]:
    """Every case of the kit, outputs filled by the golden model."""
    host = host_cases()
    return primitive_cases() + host + int16_cases() + int8_cases({c.id: c for c in host}) + revin_cases()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m intsim.spec_vectors", description="write the conformance kit of docs/quant-spec.md (section 7)"
    )
    ap.add_argument("--out", default=str(DEFAULT_OUT), help=f"kit folder (default {DEFAULT_OUT})")
    args = ap.parse_args(argv)
    cases = build_cases()
    out = write_kit(cases, args.out)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"spec vectors: {len(cases)} cases, {size / 1024:.0f} KiB -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
