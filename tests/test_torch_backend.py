"""The bit-true PyTorch back end (model/torch_*.py) == the Numba golden model, byte for byte.

- primitives (model/torch_fixedpoint.py) against exact Python integers (hypothesis);
- exact GEMM sums (model/torch_mac.py) in each of their number types against int64 numpy;
- the default model and hypothesis random graphs, INT16 and INT8: every layer's tensor, the
  saturation counts and statistics, the output; on real-like, saturating and tie inputs;
- the plug-in (`Model.run(..., backend="torch")`) and its errors; CUDA when a GPU is present.

torch is installed in CI (the 'train' extra); importorskip only guards a numpy-only install.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

torch = pytest.importorskip("torch", reason="the 'train' extra (torch) is not installed")

from intsim import fixedpoint as fxp, load_model  # noqa: E402
from intsim.calibrate import calibrate  # noqa: E402
from intsim.errors import UnsupportedError  # noqa: E402
from intsim.synth import make_random_model  # noqa: E402
from model import torch_fixedpoint as tfp  # noqa: E402
from model.torch_backend import TorchRunner  # noqa: E402
from model.torch_mac import DenseSum, DepthwiseSum, Int8DenseSum, int8_gemm_is_exact  # noqa: E402

try:  # random INT16 formats; tests/test_codegen.py needs the codegen stack (jinja2), which a GPU
    from tests.test_codegen import randomize_formats  # image may lack: those cases skip there
except ImportError:
    randomize_formats = None
from tests.test_fixedpoint import ref_requantize, ref_rne, ref_rne_shift, ref_sat  # noqa: E402

EXAMPLES = int(os.environ.get("CMAMBA_HLS_HYPOTHESIS_EXAMPLES", "6"))
PRIMS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
I62 = 2**62


def _t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int64)


# ------------------------------------------------------------------ primitives
@PRIMS
@given(xs=st.lists(st.integers(-3 * 2**61, 3 * 2**61 - 1), min_size=1, max_size=40), n=st.integers(0, 62))
def test_rne_shift_matches_exact_rounding(xs, n):
    assert tfp.rne_shift(_t(xs), n).tolist() == [ref_rne_shift(x, n) for x in xs]
    per_element = _t([n] * len(xs))  # per-channel shift tensors (INT8 requantization)
    assert tfp.rne_shift(_t(xs), per_element).tolist() == [ref_rne_shift(x, n) for x in xs]


@PRIMS
@given(xs=st.lists(st.integers(-(2**53), 2**53), min_size=1, max_size=40), n=st.integers(-9, 62))
def test_float_shift_is_exact_rne_below_2_53(xs, n):
    got = tfp.exact_float_shift(_t(xs).to(torch.float64), n)
    assert [int(v) for v in got.tolist()] == [ref_rne(Fraction(x) / Fraction(2) ** n) for x in xs]


@PRIMS
@given(q=st.integers(-(2**40), 2**40), n=st.integers(1, 12))
def test_ties_go_to_even(q, n):
    x = (2 * q + 1) << (n - 1)  # exactly half-way between q and q + 1
    want = q + (q & 1)
    assert tfp.rne_shift(_t([x]), n).item() == want
    assert tfp.exact_float_shift(_t([x]).double(), n).item() == want


@PRIMS
@given(nums=st.lists(st.integers(-(2**62), 2**62), min_size=1, max_size=30), den=st.integers(1, 2**62))
def test_rne_div_matches_exact_rounding(nums, den):
    assert tfp.rne_div(_t(nums), den).tolist() == [ref_rne(Fraction(x, den)) for x in nums]
    assert tfp.rne_div(_t(nums), _t([den] * len(nums))).tolist() == [ref_rne(Fraction(x, den)) for x in nums]


@PRIMS
@given(
    vs=st.lists(
        st.one_of(
            st.integers(0, I62 - 1),
            st.integers(0, 2**31 - 1).map(lambda r: r * r),
            st.integers(1, 2**31 - 1).map(lambda r: r * r - 1),
            st.integers(0, 2**31 - 1).map(lambda r: r * r + r),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_isqrt_is_exact(vs):
    vs = [v for v in vs if v < I62]
    got = tfp.isqrt_rne(_t(vs)).tolist()
    floors = tfp.isqrt_floor(_t(vs)).tolist()
    assert floors == [math.isqrt(v) for v in vs]
    assert got == [r + (v - r * r > r) for v, r in zip(vs, floors, strict=True)]


@PRIMS
@given(
    accs=st.lists(st.integers(-(2**31) + 1, 2**31 - 1), min_size=1, max_size=30),
    m0=st.integers(2**30, 2**31 - 1),
    shift=st.integers(0, 62),
    zp=st.integers(-128, 127),
)
def test_requantize_matches_exact(accs, m0, shift, zp):
    y, n = tfp.requantize(_t(accs), m0, shift, zp)
    ref = [ref_requantize(a, m0, shift, zp, 8) for a in accs]
    assert y.tolist() == [v for v, _ in ref] and n.item() == sum(s for _, s in ref)


@PRIMS
@given(
    accs=st.lists(st.integers(-(2**31) + 1, 2**31 - 1), min_size=1, max_size=30),
    odd=st.integers(0, 2**30),
    shift=st.integers(32, 54),
    zp=st.integers(-128, 127),
    extra=st.integers(0, 1),
)
def test_tie_free_requantization_at_its_bound(accs, odd, shift, zp, extra):
    """When no |acc| < 2^31 can make acc m0 a tie (`no_ties`: v2(m0) <= shift - 32), requantize rounds
    without the tie rule: the int64 path (shift > 44) by one floor shift (`tie_free_offset`), the float64
    path (shift <= 44) with an odd zero point folded into its rounding constant. At that bound and one
    past it (where acc = 2^30 gives a tie, and the tie-aware paths must run), both exact against RNE,
    ties included. Shifts up to 54 keep |acc m0| + 2^(shift-1) + |z| 2^shift inside int64 (the floor
    shift's other condition; INT8 RMSNorm: 48)."""
    v2 = shift - 32 + extra
    m0 = ((odd % (1 << (31 - v2))) | 1) << v2  # v2 trailing zero bits, m0 < 2^31
    assert tfp.no_ties(2**31 - 1, m0, shift) == (extra == 0)
    assert (tfp.tie_free_offset(2**31 - 1, m0, shift, zp) is not None) == (extra == 0)
    accs = accs + [2**30, -(2**30), 3 * 2**29, 2**31 - 1, -(2**31) + 1]
    y, n = tfp.requantize(_t(accs), m0, shift, zp)
    ref = [ref_requantize(a, m0, shift, zp, 8) for a in accs]
    assert y.tolist() == [v for v, _ in ref] and n.item() == sum(s for _, s in ref)


@PRIMS
@given(
    accs=st.lists(st.integers(-(2**31) + 1, 2**31 - 1), min_size=1, max_size=30),
    m0s=st.lists(st.integers(2**30, 2**31 - 1), min_size=1, max_size=4),
    shift=st.integers(0, tfp.FLOAT_REQUANT_MAX_SHIFT),
    zp=st.integers(-128, 127),
    tie=st.booleans(),
)
def test_float_requantization_is_exact_per_channel(accs, m0s, shift, zp, tie):
    """The float64 path (shift <= 44) == exact RNE, per-channel multipliers, ties included."""
    m0s = (m0s * len(accs))[: len(accs)]
    if tie and shift >= 1:  # make acc * m0 / 2^shift = k + 1/2 exactly
        odd = [2 * (a % 300) + 1 for a in accs]
        if shift <= 30:  # m0 = 2^30 + 2^(shift-1): acc 2^(30-shift) + acc/2, a tie for odd acc
            accs, m0s = odd, [2**30 + (1 << (shift - 1))] * len(accs)
        else:  # m0 = 2^30: acc 2^(30-shift), a tie for acc = odd * 2^(shift-31)
            accs, m0s = [o << (shift - 31) for o in odd], [2**30] * len(accs)
    mult = tfp.float_multipliers(np.array(m0s), np.array([shift] * len(accs)))
    y, n = tfp.requantize_float(_t(accs), torch.as_tensor(mult), zp)
    ref = [ref_requantize(a, m, shift, zp, 8) for a, m in zip(accs, m0s, strict=True)]
    assert y.tolist() == [v for v, _ in ref] and n.item() == sum(s for _, s in ref)
    assert tfp.float_multipliers(np.array(m0s), np.array([tfp.FLOAT_REQUANT_MAX_SHIFT + 1])) is None


@PRIMS
@given(
    accs=st.lists(st.integers(-(2**31), 2**31), min_size=1, max_size=30),
    extra=st.integers(0, 1),
    zp=st.integers(-128, 127),
)
def test_magic_rounding_at_its_bound(accs, extra, zp):
    """requantize_float rounds through ROUND_MAGIC while acc_bound max|M| <= 2^30 (|RNE(P)| fits
    int32 beside z): at the bound (M = 1/2, |acc| <= 2^31: ties at every odd acc) and one step
    past it (m0 = 2^30 + 1, the float64 round path), both exact against RNE at 32 bits. The round
    path is exact for |P| < 2^(53 - shift) = 2^22 (beyond it only int8 saturation hides its error,
    requantize_float), so its accs are scaled into that range (|acc| <= 2^22: |P| <= 2^21)."""
    m0, shift = 2**30 + extra, 31
    if extra:
        accs = [a >> 9 for a in accs]
    mult = math.ldexp(m0, -shift)
    assert tfp.magic_round_fits(2**31, mult) == (extra == 0)
    y, n = tfp.requantize_float(_t(accs), mult, zp, bits=32, acc_bound=2**31)
    ref = [ref_requantize(a, m0, shift, zp, 32) for a in accs]
    assert y.dtype == torch.int32 and y.tolist() == [v for v, _ in ref] and n.item() == 0


@PRIMS
@given(xs=st.lists(st.integers(-(2**53), 2**53), min_size=1, max_size=30), shift=st.integers(-15, 40))
def test_narrow_float_and_integer_paths_agree_with_exact(xs, shift):
    ref = [ref_sat(ref_rne(Fraction(x) / Fraction(2) ** shift), 16) for x in xs]
    for acc in (_t(xs), _t(xs).double()):
        if not acc.is_floating_point() and shift < 0 and max(abs(x) for x in xs) >= 2 ** (62 + shift):
            continue  # a left shift must keep int64 (the caller's guarantee)
        y, n = tfp.narrow(acc, shift, 16)
        assert y.dtype == torch.int32 and y.tolist() == [v for v, _ in ref] and n.item() == sum(s for _, s in ref)


@pytest.mark.parametrize(
    "rows_hit", [0, 1, 5, 16, 63, 64]
)  # the row-restricted count, and from 16 rows on the full one
@pytest.mark.parametrize("dtype", [torch.int32, torch.float64])
def test_saturation_count_on_sparse_and_dense_rows(rows_hit, dtype):
    g = torch.Generator().manual_seed(rows_hit)
    x = torch.randint(-128, 128, (4, 16, 8), generator=g).to(dtype)
    flat, placed = x.view(-1, 8), 0
    for r in torch.randperm(64, generator=g)[:rows_hit].tolist():  # one or both sides, at and past the limits
        flat[r, r % 8] = 128 + r
        placed += 1 + r % 2
        if r % 2:
            flat[r, (r + 3) % 8] = -129 - r
    for t in (x, x.transpose(0, 1), x[:, :, :1], x.reshape(-1)):  # contiguous rows, strided, one column, 1-D
        expected = int(((t < -128) | (t > 127)).sum())
        y, n = tfp.saturate(t.clone(), 8)
        assert n.item() == expected and torch.equal(y, t.clamp(-128, 127))
        if t is x:
            assert expected == placed


def test_shift_counts_outside_the_spec_are_errors():
    with pytest.raises(ValueError, match="shift"):
        tfp.rne_shift(_t([1]), 63)
    with pytest.raises(ValueError, match="shift"):
        tfp.shift_round(_t([1]), -63)


# ------------------------------------------------------------------ exact sums
def _dense_ref(x, w, b, stride):
    k = w.shape[2]
    t = (x.shape[1] - k) // stride + 1
    win = np.stack([x[:, i * stride : i * stride + k, :] for i in range(t)], axis=1)  # [B, T, K, C]
    return np.einsum("btkc,ock->bto", win.astype(object), w.astype(object)) + b.astype(object)


@pytest.mark.parametrize(
    "x_max, w_max, b_max, c_in, dtype",
    [
        (255, 127, 2**20, 40, torch.float32),
        (32768, 32767, 2**31, 700, torch.float64),
        (2**30, 32767, 2**31, 700, torch.int64),
    ],
)
def test_dense_sum_is_exact_in_each_number_type(x_max, w_max, b_max, c_in, dtype):
    """float32 / float64 when the bound allows, runs of columns summed in int64 beyond 2^53."""
    rng = np.random.default_rng(0)
    w = rng.integers(-w_max, w_max + 1, (5, c_in, 3))
    b = rng.integers(-b_max, b_max, 5)
    x = rng.integers(-x_max, x_max + 1, (2, 9, c_in), dtype=np.int64)
    x[0, 0] = x_max  # a full-scale window
    mac = DenseSum.build(w, b, 2, x_max, "cpu")
    assert mac.acc_dtype == dtype and (len(mac.chunks) > 1) == (dtype == torch.int64)
    got = mac(torch.as_tensor(x))
    assert got.dtype == dtype
    assert np.array_equal(
        got.to(torch.int64).numpy().astype(object) if dtype != torch.int64 else got.numpy(), _dense_ref(x, w, b, 2)
    )


@pytest.mark.parametrize("bias, dtype", [(0, torch.float32), (1, torch.float64)])
def test_sums_take_float32_exactly_when_the_input_allows(bias, dtype):
    """INT16 layers (static bound at |x| = 2^15 needs float64) run float32 GEMMs when the input's own
    max |x| keeps sum|w| max|x| + |b| <= 2^24: at exactly 2^24 (float32, exact) and one above
    (2^24 + 1 is not a float32: float64 is taken, still exact)."""
    w = np.stack([np.full((4, 2), 512), np.full((4, 2), -512)])  # sum |w| = 4096 per row
    b = np.array([bias, -bias])
    x = np.full((3, 5, 4), 4096, dtype=np.int64)  # 4096 * 4096 = 2^24
    x[1] = np.random.default_rng(2).integers(-4096, 4097, (5, 4))
    mac = DenseSum.build(w, b, 1, 32768, "cpu")
    assert mac.acc_dtype == torch.float64
    got = mac(torch.as_tensor(x, dtype=torch.int32))
    assert got.dtype == dtype
    assert np.array_equal(got.to(torch.int64).numpy().astype(object), _dense_ref(x, w, b, 1))
    assert int(got[0, 0, 0]) == 2**24 + bias
    dw = DepthwiseSum.build(np.full((4, 2), 2048), np.full(4, bias), 32768, "cpu")  # sum |w| = 4096
    acc = dw(torch.as_tensor(x, dtype=torch.int32))
    assert acc.dtype == dtype and int(acc[0, 1, 0]) == 2**24 + bias


def test_reduced_float32_matmul_precision_falls_back_to_float64():
    """With TF32 / bf16 matmuls allowed (`set_float32_matmul_precision("medium")`) float32 GEMMs are not
    IEEE: every dense sum runs in float64, still exact."""
    rng = np.random.default_rng(3)
    w, b = rng.integers(-127, 128, (6, 40, 1)), rng.integers(-(2**20), 2**20, 6)
    x = rng.integers(-255, 256, (2, 7, 40))
    mac = DenseSum.build(w, b, 1, 255, "cpu")
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("medium")
        got = mac(torch.as_tensor(x, dtype=torch.float64))
        assert mac.acc_dtype == got.dtype == torch.float64
    finally:
        torch.set_float32_matmul_precision(before)
    assert mac.acc_dtype == torch.float32
    assert np.array_equal(got.to(torch.int64).numpy().astype(object), _dense_ref(x, w, b, 1))


def test_depthwise_sum_is_causal_and_exact():
    rng = np.random.default_rng(1)
    w, b = rng.integers(-32767, 32768, (6, 4)), rng.integers(-(2**31), 2**31, 6)
    x = rng.integers(-32768, 32768, (3, 11, 6))
    got = DepthwiseSum.build(w, b, 32768, "cpu")(torch.as_tensor(x)).to(torch.int64).numpy()
    xp = np.concatenate([np.zeros((3, 3, 6), np.int64), x], axis=1)
    want = b + sum(xp[:, k : k + 11, :] * w[:, k] for k in range(4))
    assert np.array_equal(got, want)


# ------------------------------------------------------------------ whole programs
def assert_same_run(golden, torch_res):
    """Every captured tensor (dtype and bytes), every statistic, the output, the integer output."""
    assert golden.tensors.keys() == torch_res.tensors.keys()
    for name, arr in golden.tensors.items():
        other = torch_res.tensors[name]
        assert other.dtype == arr.dtype and other.shape == arr.shape, name
        assert other.tobytes() == arr.tobytes(), f"layer '{name}' differs"
    assert torch_res.stats == golden.stats
    assert torch_res.output_q.tobytes() == golden.output_q.tobytes()
    assert torch_res.output.tobytes() == golden.output.tobytes()
    assert (torch_res.output_frac, torch_res.output_lsb, torch_res.mode) == (
        golden.output_frac,
        golden.output_lsb,
        golden.mode,
    )


def stress_inputs(model, n: int, seed: int) -> np.ndarray:
    """Real-scale, saturating (x 1e3) and exact-tie windows (input codes at half an LSB)."""
    rng = np.random.default_rng(seed)
    shape = model.graph.input_shape
    normal = rng.standard_normal((n,) + shape)
    big = 1e3 * rng.standard_normal((n // 4 + 1,) + shape)
    frac = model.program.input_frac
    ties = (rng.integers(-400, 400, (n // 4 + 1,) + shape) + 0.5) * 2.0**-frac
    s, z = model.program8.input_qp
    ties8 = (rng.integers(-128, 128, (n // 4 + 1,) + shape) - z + 0.5) * s
    return np.concatenate([normal, big, ties, ties8])


@pytest.mark.parametrize("mode", ["bittrue", "quant8"])
def test_default_model_every_layer_byte_equal(default_calibrated, mode):
    model = default_calibrated
    x = stress_inputs(model, 96, seed=3)
    golden = model.run(x, mode, capture=True)
    res = TorchRunner(model, chunk=37).run(x, mode, capture=True)  # chunks merged exactly
    assert_same_run(golden, res)
    assert sum(s["saturations"] for s in golden.stats.values()) > 0  # the saturating inputs did saturate
    for part in (None, ["blk0.norm", "blk1.scan"]):  # the other tensors dropped after their last reader
        assert_same_run(model.run(x, mode, capture=part), TorchRunner(model).run(x, mode, capture=part))
    for one in (x[:1], x[50:51]):  # a single window: the windows' matrix of a patch conv is then a view
        assert_same_run(model.run(one, mode, capture=True), TorchRunner(model).run(one, mode, capture=True))


@pytest.mark.parametrize("mode, dtype", [("bittrue", np.int16), ("quant8", np.int8)])
def test_extreme_integer_inputs_byte_equal(default_calibrated, mode, dtype):
    """Full-scale integer codes straight into the integer program (Model.run_int16 / run_int8)."""
    model = default_calibrated
    info = np.iinfo(dtype)
    rng = np.random.default_rng(4)
    shape = (6,) + model.graph.input_shape
    x_q = np.stack(
        [
            np.full(shape[1:], info.min),
            np.full(shape[1:], info.max),
            np.zeros(shape[1:]),
            rng.choice([info.min, info.max], shape[1:]),
            *rng.integers(info.min, info.max + 1, (2,) + shape[1:]),
        ]
    )
    x_q = x_q.astype(dtype)
    golden = model.run_int16(x_q, capture=True) if mode == "bittrue" else model.run_int8(x_q, capture=True)
    assert_same_run(golden, TorchRunner(model).run_int(x_q, mode, capture=True))


def test_plugin_backend_and_its_errors(tiny_model):
    x = np.random.default_rng(5).standard_normal((7,) + tiny_model.graph.input_shape)
    for mode in ("bittrue", "quant8"):
        golden = tiny_model.run(x, mode, capture=True)
        assert_same_run(golden, tiny_model.run(x, mode, capture=True, backend="torch"))
    single = tiny_model.run(x[0], "bittrue", backend="torch")
    assert single.output.shape == (tiny_model.graph.output_channels, tiny_model.graph.horizon)
    with pytest.raises(UnsupportedError, match="mode 'fp32' is float"):
        tiny_model.run(x, "fp32", backend="torch")
    with pytest.raises(UnsupportedError, match=r"back end 'tpu' is not available \(known: numba, .*torch"):
        tiny_model.run(x, "bittrue", backend="tpu")


def test_rmsnorm_v1_is_refused_naming_the_layer(tiny_model, tmp_path):
    shutil.copytree(tiny_model.graph.path, tmp_path / "m")
    model = load_model(tmp_path / "m")
    calibrate(model, np.random.default_rng(0).standard_normal((16,) + model.graph.input_shape), int8_rmsnorm="v1")
    with pytest.raises(UnsupportedError, match=r"layer 'blk0.norm': RMSNorm V1"):
        TorchRunner(model).run(np.zeros(model.graph.input_shape), "quant8")


def test_runner_follows_recalibration(tiny_model, tmp_path):
    """A model lowered again (new formats) is prepared again: never stale parameters."""
    shutil.copytree(tiny_model.graph.path, tmp_path / "m")
    model = load_model(tmp_path / "m")
    runner = TorchRunner(model)
    x = np.random.default_rng(6).standard_normal((5,) + model.graph.input_shape)
    runner.run(x, "bittrue")
    calibrate(model, 3 * x, formats="auto", save=False)
    assert_same_run(model.run(x, "bittrue", capture=True), runner.run(x, "bittrue", capture=True))


@st.composite
def graphs(draw):
    patch, stride = draw(st.integers(1, 5)), draw(st.integers(1, 4))
    tokens = draw(st.integers(1, 6))
    dims = dict(
        c_in=draw(st.integers(1, 4)),
        patch=patch,
        stride=stride,
        length=patch + stride * (tokens - 1),
        d_model=draw(st.integers(1, 8)),
        d_inner=draw(st.integers(1, 8)),
        n_blocks=draw(st.integers(1, 2)),
        d_conv=draw(st.integers(1, 4)),
        horizon=draw(st.integers(1, 3)),
        seed=draw(st.integers(0, 2**16)),
        weight_scale=draw(st.sampled_from([0.25, 1.0, 4.0])),
    )
    return dims, draw(st.sampled_from(["q88", "auto", "random"])), draw(st.sampled_from(["maxabs", "p99", "p99.9"]))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=graphs())
@example(  # one input channel: the program input's host array keeps a size-1 axis's odd stride (int8 GEMM reads it)
    case=(
        dict(
            c_in=1,
            patch=1,
            stride=1,
            length=2,
            d_model=1,
            d_inner=1,
            n_blocks=1,
            d_conv=1,
            horizon=1,
            seed=0,
            weight_scale=0.25,
        ),
        "q88",
        "maxabs",
    )
)
def test_random_graphs_every_layer_byte_equal(case):
    dims, formats, int8_method = case
    with tempfile.TemporaryDirectory() as tmp:
        make_random_model(Path(tmp) / "m", **dims)
        model = load_model(Path(tmp) / "m")
        x = np.random.default_rng(dims["seed"]).standard_normal((48,) + model.graph.input_shape)
        calibrate(model, x, formats="q88" if formats == "random" else formats, int8_method=int8_method)
        if formats == "random":
            randomize_formats(model, np.random.default_rng(dims["seed"] + 1))
            model = load_model(Path(tmp) / "m")
        runner = TorchRunner(model)
        for mode in ("bittrue", "quant8"):
            xs = stress_inputs(model, 24, dims["seed"])
            assert_same_run(model.run(xs, mode, capture=True), runner.run(xs, mode, capture=True))


S6_DIMS = dict(
    c_in=3,
    patch=4,
    stride=2,
    length=16,
    d_model=8,
    d_inner=12,
    n_blocks=2,
    d_conv=3,
    horizon=3,
    block="s6",
    d_state=5,
    dt_rank=2,
)


def random_s6_model(path: Path, formats: str):
    """A random 2-block Mamba-1 (S6) model calibrated with `formats` (q88, auto, or random per-tensor)."""
    make_random_model(path, seed=11, weight_scale=2.0, **S6_DIMS)
    model = load_model(path)
    x = np.random.default_rng(12).standard_normal((64,) + model.graph.input_shape)
    calibrate(model, x, formats="q88" if formats == "random" else formats)
    if formats == "random":
        if randomize_formats is None:
            pytest.skip("random formats need tests/test_codegen.py (codegen stack not installed)")
        randomize_formats(model, np.random.default_rng(13))
        model = load_model(path)
    return model


@pytest.mark.parametrize("formats", ["q88", "auto", "random"])
def test_s6_model_every_layer_byte_equal(tmp_path, formats):
    """The S6 block (softplus, s6_scan: spec 2.11-2.12, 3.12-3.13) on a random Mamba-1 model, both
    precisions: real-scale, saturating and tie inputs; the states and outputs saturate somewhere."""
    model = random_s6_model(tmp_path / "m", formats)
    xs = stress_inputs(model, 40, seed=14)
    for mode in ("bittrue", "quant8"):
        golden = model.run(xs, mode, capture=True)
        assert_same_run(golden, TorchRunner(model, chunk=29).run(xs, mode, capture=True))
        assert sum(golden.stats[n]["saturations"] for n in golden.stats if n.endswith("scan")) > 0, mode


NO_CUDA = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device (CI has no GPU): the CPU tests cover the same kernels"
)


@NO_CUDA
@pytest.mark.parametrize("mode", ["bittrue", "quant8"])
def test_cuda_every_layer_byte_equal(default_calibrated, mode):
    """Every kernel of the shipped model on the GPU (float32 GEMMs by the input's bound, float64 and int64
    paths), real-scale, saturating and tie inputs; also full-scale integer codes."""
    model = default_calibrated
    x = stress_inputs(model, 512, seed=7)
    runner = TorchRunner(model, device="cuda")
    assert_same_run(model.run(x, mode, capture=True), runner.run(x, mode, capture=True))
    dtype = np.int16 if mode == "bittrue" else np.int8
    info = np.iinfo(dtype)
    x_q = np.random.default_rng(8).choice([info.min, info.max, 0], (16,) + model.graph.input_shape).astype(dtype)
    golden = model.run_int16(x_q, capture=True) if mode == "bittrue" else model.run_int8(x_q, capture=True)
    assert_same_run(golden, runner.run_int(x_q, mode, capture=True))


@NO_CUDA
@pytest.mark.parametrize("formats", ["q88", "random"])
def test_cuda_s6_and_random_graphs_byte_equal(tmp_path, formats):
    """The S6 kernels (softplus, s6_scan) and a RevIN model (revin_norm / revin_denorm) on the GPU."""
    model = random_s6_model(tmp_path / "s6", formats)
    revin = tmp_path / "revin"
    make_random_model(revin, seed=5, revin=True, n_blocks=2, weight_scale=4.0)
    revin_model = load_model(revin)
    calibrate(
        revin_model,
        np.random.default_rng(6).standard_normal((64,) + revin_model.graph.input_shape),
        formats="auto" if formats == "random" else "q88",
    )
    for m in (model, load_model(revin)):
        xs = stress_inputs(m, 64, seed=15)
        for mode in ("bittrue", "quant8"):
            assert_same_run(m.run(xs, mode, capture=True), TorchRunner(m, device="cuda").run(xs, mode, capture=True))


@pytest.mark.parametrize("extra", [0, 1])
def test_int8_conv_zero_point_folding_at_its_bound(extra, monkeypatch):
    """Without the int8 GEMM (mkldnn off, as on a CPU without VNNI), a dense INT8 conv folds z_x into the
    bias (b - z_x sum w, codes summed as they are, |x| <= 128) only while 128 sum|w| + |b - z_x sum w|
    <= 2^24 (float32 exact): at the bound (extra = 0) it folds, one past it (extra = 1) it sums the
    centred codes in float64; both exact."""
    from types import SimpleNamespace

    from model import torch_int8
    from model.torch_int8 import TORCH8

    monkeypatch.setattr(torch_int8, "int8_gemm_is_exact", lambda device: False)

    j, z, m0, shift = 1024, 1, 2**30, 44
    weight = np.full((1, j), 127, dtype=np.int64)
    bias = np.array([2**24 - 127 * 128 * j + 127 * j * z + extra])  # b - z sum w = 2^24 - 128 sum|w| + extra
    params = SimpleNamespace(
        weight=weight, bias=bias, stride=1, x_zp=z, y_zp=-3, m0=np.array([m0]), shift=np.array([shift])
    )
    row = TORCH8.row("conv1x1", "fold")
    prepared = row.prepare(SimpleNamespace(op="conv1x1", params=params), torch.device("cpu"))
    assert prepared.x_zp == (0 if extra == 0 else z)
    x = np.random.default_rng(extra).integers(-128, 128, size=(3, 5, j))
    x[0, 0] = -128  # the extreme codes
    x[0, 1] = 127
    y, n = row.run(prepared, [torch.as_tensor(x, dtype=torch.int32)])
    acc = bias[0] + ((x - z) * weight[0]).sum(axis=2)
    ref = [ref_requantize(int(a), m0, shift, -3, 8) for a in acc.ravel()]
    assert y.ravel().tolist() == [v for v, _ in ref] and n.item() == sum(s for _, s in ref)


@pytest.mark.skipif(not int8_gemm_is_exact(torch.device("cpu")), reason="no int8 GEMM that sums into int32 here")
@pytest.mark.parametrize("extra", [0, 1])
def test_int8_gemm_at_its_int32_bound(extra, monkeypatch):
    """Int8DenseSum (torch._int_mm, int8 codes -> int32) is built only while 128 sum|w| + |b| <= 2^31 - 1:
    at the bound (extra = 0) its sums, the extreme code -128 included, equal int64 numpy (the largest
    |acc| is 2^31 - 1 - 2 * 1023); one past it (extra = 1) there is none (the float DenseSum is used)."""
    j = 132_104  # 127 * 128 * j = 2^31 - 1024
    weight = np.full((2, j, 1), 127, dtype=np.int64)
    weight[1] = -127
    bias = np.array([1023 + extra, -1023])
    mac = Int8DenseSum.build(weight, bias, 1, "cpu")
    if extra:
        assert mac is None
        return
    x = np.random.default_rng(0).integers(-128, 128, (2, 3, j))
    x[0, 0], x[0, 1], x[1, 0] = -128, 127, 0
    got = mac(torch.as_tensor(x, dtype=torch.int32))
    assert got.dtype == torch.int32
    want = bias + np.einsum("btj,oj->bto", x, weight[:, :, 0])
    assert np.array_equal(got.numpy(), want) and int(np.abs(want).max()) == 2**31 - 1 - 2 * 1023
    monkeypatch.setattr(torch.backends.mkldnn, "enabled", False)  # no int8 GEMM now: the float DenseSum
    assert np.array_equal(mac(torch.as_tensor(x, dtype=torch.int32)).to(torch.int64).numpy(), want)


def test_int8_scan_float32_at_its_state_bound():
    """The INT8 scan runs in float32: exact while |S| <= 255 * 256 (spec 3.6). Driven to the bound
    (lam = -128 then u_c = +-255: S = +-65280 at once, then held by lam = 127) and through random
    extreme codes, it equals the Numba kernel bit for bit, saturations included."""
    from types import SimpleNamespace

    from intsim.kernels_int8 import scan_int8
    from model.torch_int8 import TORCH8

    rng = np.random.default_rng(5)
    lam = rng.choice([-128, -127, 0, 126, 127], size=(4, 40, 6)).astype(np.int8)
    lam[:, 0], lam[:2, 1:20] = -128, 127
    u = rng.choice([-128, 127, 5], size=(4, 40, 6)).astype(np.int8)
    u[0], u[1] = 127, -128
    for u_zp in (-128, 127):
        params = SimpleNamespace(u_zp=u_zp, y_zp=-3, m0=2**30 + 12345, shift=38)
        y, n = TORCH8.row("scan", "s").run(
            params, [torch.as_tensor(lam, dtype=torch.int32), torch.as_tensor(u, dtype=torch.int32)]
        )
        want, n_want = scan_int8(lam.transpose(0, 2, 1), u.transpose(0, 2, 1), u_zp, params.m0, params.shift, -3)
        assert np.array_equal(y.numpy(), want.transpose(0, 2, 1)) and n.item() == n_want


@pytest.mark.parametrize("d", [1, 3, 32, 1000, 3 * 2**17, 2**20])
def test_rms_inverse_in_float64_at_its_bounds(d):
    """INT8 RMSNorm's per-row chain inv = RNE(2^Q8 / isqrt_rne(max(RNE(ss 2^2G / d) + eps_q, 1))) in float64
    equals the int64 chain for every sum of squares up to d 255^2 (the largest, and the division's ties where d
    has them: 2^17 | d) and |eps_q| up to the bound 2^48 - 1; so does `_rms_inverse`'s int64 branch. The
    reference is the golden model's scalar primitives (intsim.fixedpoint), not the torch ones either branch calls."""
    from model.torch_int8 import RMS_FLOAT_MAX_D, RMS_FLOAT_MAX_EPS, _rms_inverse

    assert d <= RMS_FLOAT_MAX_D
    top = d * 255**2
    rng = np.random.default_rng(d)
    ties = [(d // 2 + m * d) >> 16 for m in range(200) if d % 2 == 0 and (d // 2 + m * d) % (1 << 16) == 0]
    ties = np.array(ties, np.int64)  # ss with ss 2^16 / d a tie (none for odd d: int64 kept when empty)
    rows = [[0, 1, 2, top - 1, top], rng.integers(0, top + 1, 400), (np.arange(50) * d) // 2, ties]
    ss = np.unique(np.concatenate(rows))
    ss = ss[ss <= top]
    for eps in (0, 1, 1509, -(2**20), RMS_FLOAT_MAX_EPS - 1, -(RMS_FLOAT_MAX_EPS - 1)):
        want = [fxp.rne_div(1 << 24, fxp.isqrt_rne(max(fxp.rne_div(int(s) << 16, d) + eps, 1))) for s in ss]
        got = _rms_inverse(_t(ss), d, eps, in_float=True)
        assert got.dtype == torch.float64 and got.to(torch.int64).tolist() == want
        assert _rms_inverse(_t(ss), d, eps, in_float=False).tolist() == want


@pytest.mark.parametrize(
    "clamped",
    [[], [255], [0, 1, 2, 253, 254, 255], [0], list(range(256)), [7, 200]],
    ids=["none", "top", "both-ends", "bottom", "all", "inside"],
)
def test_int8_lut_counts_clamped_reads(clamped):
    """The INT8 LUT's saturation count (one per read of a clamped entry): the ends counted by clamping,
    any other set by a gather; equal to the Numba kernel, with the extreme codes read."""
    from types import SimpleNamespace

    from intsim.kernels_int8 import lut_int8
    from model.torch_int8 import TORCH8

    rng = np.random.default_rng(len(clamped))
    flags = np.zeros(256, dtype=np.int64)
    flags[clamped] = 1
    params = SimpleNamespace(table=rng.integers(-128, 128, 256).astype(np.int8), clamped=flags)
    row = TORCH8.row("silu", "lut")
    prepared = row.prepare(SimpleNamespace(params=params), torch.device("cpu"))
    for x in (rng.integers(-128, 128, (3, 7, 5)), np.full((1, 2, 3), 127), np.full((1, 2, 3), -128)):
        y, n = row.run(prepared, [torch.as_tensor(x, dtype=torch.int32)])
        want, n_want = lut_int8(x.astype(np.int8), params.table, flags)
        assert np.array_equal(y.numpy(), want) and n.item() == n_want
