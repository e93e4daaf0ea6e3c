"""Whole-network golden model: modes, determinism, integer-only path, errors."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from intsim import load_model
from intsim.errors import DataError, ModelFormatError, QuantizationError, UnsupportedError
from intsim.int8 import quantize_act
from intsim.int16 import lower_int16, pack_program, run_step16
from intsim.synth import make_random_model

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = REPO / "examples" / "default"


def inputs(model, n=64, seed=5, scale=1.0):
    c_in, length = model.graph.input_shape
    return scale * np.random.default_rng(seed).standard_normal((n, c_in, length))


def test_modes_agree_within_documented_tolerance(tiny_model):
    x = inputs(tiny_model)
    fp = tiny_model.run(x, "fp32").output
    q16 = tiny_model.run(x, "quant16").output
    bt = tiny_model.run(x, "bittrue").output
    lsb = 2.0**-tiny_model.program.output_frac
    # bittrue vs quant16: integer rounding and LUTs only (a few LSB through the network)
    assert np.max(np.abs(bt - q16)) <= 8 * lsb
    # bittrue vs fp32: formats + rounding; Q8.8 everywhere on a random net
    assert np.max(np.abs(bt - fp)) <= 0.05
    assert np.mean((bt - fp) ** 2) < 1e-4


def test_bittrue_is_deterministic_bytes(tiny_model_auto):
    x = inputs(tiny_model_auto, n=32)
    a = tiny_model_auto.run(x, "bittrue", capture=True)
    b = tiny_model_auto.run(x, "bittrue", capture=True)
    assert a.output_q.dtype == np.int16
    for name in a.tensors:
        assert a.tensors[name].tobytes() == b.tensors[name].tobytes()
    digest = hashlib.sha256(a.output_q.tobytes()).hexdigest()
    assert digest == hashlib.sha256(b.output_q.tobytes()).hexdigest()


def test_integer_path_has_no_float(tiny_model_auto):
    """Every lowered constant is an integer; every kernel input/output is an int16 array."""
    prog = lower_int16(tiny_model_auto.graph)
    for st in prog.steps:
        for key, val in vars(st.params).items():
            if isinstance(val, np.ndarray):
                assert val.dtype.kind in "ib", (st.name, key, val.dtype)  # ints, or flags (LUT clamped)
            else:
                assert isinstance(val, (int, bool, np.integer)), (st.name, key, type(val))
    res = tiny_model_auto.run_int16(np.zeros((2,) + tiny_model_auto.graph.input_shape, np.int16), capture=True)
    assert all(t.dtype == np.int16 for t in res.tensors.values())
    packed = pack_program(prog, tiny_model_auto.graph.input_shape)
    for name in ("steps", "weights", "biases", "channels", "lengths", "fracs"):
        assert getattr(packed, name).dtype.kind == "i", name


def _run_layer_by_layer(model, x_q):
    """The program again, one public kernel call per step (each op's INT16 registry row,
    intsim.int16.INT16): the packed whole-program interpreter
    (kernels_int16.run_program_int16) must give the same bytes."""
    env = {"input": x_q}
    for st in lower_int16(model.graph).steps:
        env[st.name], _ = run_step16(st, [env[s] for s in st.inputs])
    return env


@pytest.mark.parametrize("full_range", [False, True])
def test_whole_program_call_equals_layer_by_layer_kernels(tiny_model, full_range):
    """full_range: uniform int16 inputs, which saturate inside the network."""
    if full_range:
        x_q = np.random.default_rng(3).integers(-32768, 32768, (5,) + tiny_model.graph.input_shape)
    else:
        x_q = np.rint(inputs(tiny_model, n=5) * 256)
    x_q = x_q.astype(np.int16)
    res = tiny_model.run_int16(x_q, capture=True)
    for name, y in _run_layer_by_layer(tiny_model, x_q).items():
        assert res.tensors[name].tobytes() == y.tobytes(), name
    assert (sum(v["saturations"] for v in res.stats.values()) > 0) == full_range


@pytest.mark.parametrize("scale", [1.0, 16.0])
def test_quant8_whole_program_call_equals_layer_by_layer_kernels(tiny_model_auto, scale):
    """quant8 runs the packed INT8 program in one jitted call (kernels_int8.run_program_int8):
    every tensor and every statistic equals the program run one INT8 registry row at a time.
    scale 16: inputs that saturate inside the network."""
    model = tiny_model_auto
    x_q, _ = quantize_act(inputs(model, n=5, scale=scale), *model.program8.input_qp)
    res = model.run_int8(x_q, capture=True)
    env, stats = model._steps8(x_q, model.program8)
    assert res.tensors.keys() == env.keys()
    for name, y in env.items():
        assert res.tensors[name].tobytes() == y.tobytes(), name
    assert res.stats == stats
    assert (sum(v["saturations"] for v in stats.values()) > 0) == (scale > 1)


def test_packed_stats_built_on_read_also_in_copies(tiny_model):
    """The packed programs' stats are built on first read (the same dict on every read), with the
    host-side input saturations; a pickle or a copy of the result holds them too."""
    import copy
    import pickle

    x = inputs(tiny_model, n=3, scale=64.0)  # the input quantization saturates
    for mode, frac in (("bittrue", tiny_model.program.input_frac), ("quant8", None)):
        n_in = tiny_model._quantize_input(x, frac)[1]
        res = tiny_model.run(x, mode)
        clone, dup = pickle.loads(pickle.dumps(res)), copy.copy(tiny_model.run(x, mode))
        assert n_in > 0 and res.stats["input"]["saturations"] == n_in, mode
        assert res.stats is res.stats and clone.stats == res.stats == dup.stats, mode
        assert set(res.stats) == set(tiny_model.graph.tensor_names), mode


def test_batch_equals_per_sample(tiny_model):
    x = inputs(tiny_model, n=7)
    whole = tiny_model.run(x, "bittrue").output_q
    for i in range(7):
        np.testing.assert_array_equal(tiny_model.run(x[i], "bittrue").output_q, whole[i])


@pytest.mark.parametrize("mode", ["fp32", "quant16"])
def test_float_modes_are_batch_invariant(default_size_model, mode):
    # the float reference gives the same bits whatever the batch (BLAS blocking must not see B)
    x = inputs(default_size_model, n=70)
    whole = default_size_model.run(x, mode).output
    for size in (1, 3, 7, 64):
        parts = [default_size_model.run(x[s : s + size], mode).output for s in range(0, len(x), size)]
        np.testing.assert_array_equal(np.concatenate(parts), whole, err_msg=f"batch {size}")


def test_large_batches_run_in_chunks_with_identical_results(tiny_model_auto, chunked):
    x = inputs(tiny_model_auto, n=23, scale=4.0)  # large enough to saturate somewhere
    whole = {mode: tiny_model_auto.run(x, mode, capture=True) for mode in ("fp32", "quant16", "bittrue", "quant8")}
    calls = chunked(tiny_model_auto, 5)
    for mode, ref in whole.items():
        calls.clear()
        res = tiny_model_auto.run(x, mode, capture=True)
        assert calls == [5, 5, 5, 5, 3], mode
        assert res.output.tobytes() == ref.output.tobytes(), mode
        if ref.output_q is not None:
            assert res.output_q.tobytes() == ref.output_q.tobytes(), mode
        assert res.stats == ref.stats, mode
        assert sum(s["saturations"] for s in res.stats.values()) == sum(s["saturations"] for s in ref.stats.values())
        assert res.tensors.keys() == ref.tensors.keys()
        for name, value in ref.tensors.items():
            assert res.tensors[name].tobytes() == value.tobytes(), (mode, name)
        assert (res.output_lsb, res.output_frac) == (ref.output_lsb, ref.output_frac)
    assert sum(s["saturations"] for s in whole["quant8"].stats.values()) > 0


def test_programs_run_sub_batches_with_identical_results(tiny_model_auto):
    """The jitted programs take SUB_BATCH windows at a time through every step: a batch across
    sub-batch borders gives the bytes, captured tensors and stats of separate runs on its pieces."""
    from intsim.kernels_int16 import SUB_BATCH

    x = inputs(tiny_model_auto, n=SUB_BATCH + 5, scale=4.0)  # large enough to saturate somewhere
    for mode in ("bittrue", "quant8"):
        whole = tiny_model_auto.run(x, mode, capture=True)
        parts = [tiny_model_auto.run(x[s : s + 9], mode, capture=True) for s in range(0, len(x), 9)]
        assert whole.output_q.tobytes() == np.concatenate([p.output_q for p in parts]).tobytes(), mode
        for name, value in whole.tensors.items():
            assert value.tobytes() == np.concatenate([p.tensors[name] for p in parts]).tobytes(), (mode, name)
        for name, st in whole.stats.items():
            assert st["saturations"] == sum(p.stats[name]["saturations"] for p in parts), (mode, name)
            assert st["min"] == min(p.stats[name]["min"] for p in parts), (mode, name)
            assert st["max"] == max(p.stats[name]["max"] for p in parts), (mode, name)
        assert sum(st["saturations"] for st in whole.stats.values()) > 0, mode


@pytest.mark.parametrize(
    "x, match",
    [
        (np.zeros((0, 3, 16)), "empty batch"),
        (np.full((2, 3, 16), "1.0"), "expected real numbers.*dtype <U3"),
        (np.zeros((2, 3, 16), complex) + 1j, "complex values are never truncated"),
        (np.zeros((2, 3, 16), bool), "expected real numbers.*dtype bool"),
        (np.full((2, 3, 16), None), "expected real numbers.*dtype object"),
    ],
)
def test_inputs_that_are_not_real_numbers_are_data_errors(tiny_model, x, match):
    for mode in ("fp32", "bittrue", "quant8"):
        with pytest.raises(DataError, match=match):
            tiny_model.run(x, mode)


def test_float_overflow_is_a_data_error_not_a_nan(tiny_model, recwarn):
    x = inputs(tiny_model, n=3)
    x[1, 0, 5] = 1e200  # finite, but its square is not
    with pytest.raises(DataError, match="fp32: layer '.*' overflows float64.*1e\\+200"):
        tiny_model.run(x, "fp32")
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
    assert np.all(np.isfinite(tiny_model.run(x, "bittrue").output))  # the integer path saturates


def test_capture_by_name_and_stats(tiny_model):
    x = inputs(tiny_model, n=4)
    res = tiny_model.run(x, "bittrue", capture=["blk0.scan", "head"])
    assert set(res.tensors) == {"blk0.scan", "head"}
    assert res.tensors["blk0.scan"].shape == (4,) + tiny_model.graph.layer("blk0.scan").shape
    assert set(res.stats) == set(tiny_model.graph.tensor_names)
    assert all(v["saturations"] == 0 for v in res.stats.values())


def test_saturation_counted_on_large_inputs(tiny_model):
    x = inputs(tiny_model, n=8, scale=500.0)  # far outside Q8.8's +-128
    res = tiny_model.run(x, "bittrue")
    assert res.stats["input"]["saturations"] > 0
    q16 = tiny_model.run(x, "quant16")
    assert q16.stats["input"]["saturations"] == res.stats["input"]["saturations"]


def test_bittrue_without_calibration_is_a_clear_error(tmp_path):
    model = load_model(make_random_model(tmp_path / "m"))
    with pytest.raises(QuantizationError, match="calibrate"):
        model.run(inputs(model, n=1), "bittrue")
    with pytest.raises(QuantizationError, match="calibrate"):
        model.run(inputs(model, n=1), "quant16")


def test_bad_inputs_are_clear_errors(tiny_model):
    with pytest.raises(DataError, match="expected shape"):
        tiny_model.run(np.zeros((2, 5, 16)), "fp32")
    x = inputs(tiny_model, n=2)
    x[1, 0, 3] = np.nan
    with pytest.raises(DataError, match="NaN"):
        tiny_model.run(x, "bittrue")
    with pytest.raises(UnsupportedError, match="mode"):
        tiny_model.run(inputs(tiny_model, n=1), "int4")
    with pytest.raises(DataError, match="int16"):
        tiny_model.run_int16(np.zeros((1,) + tiny_model.graph.input_shape, np.int32))


def test_inconsistent_formats_rejected_naming_the_layer(tmp_path, tiny_model):
    shutil.copytree(tiny_model.graph.path, tmp_path / "m")
    original = (tmp_path / "m" / "model.json").read_text()

    def run_with(edit):
        raw = json.loads(original)
        edit(raw["quant"]["int16"])
        (tmp_path / "m" / "model.json").write_text(json.dumps(raw))
        load_model(tmp_path / "m").run(inputs(tiny_model, n=1), "bittrue")

    def conv_needs_left_shift(q):  # f_y = 15 > f_x + f_w = 2 + 0
        q["tensors"]["blk0.in_proj_u"]["frac_bits"] = 15
        q["weights"]["blk0.in_proj_u.weight"]["frac_bits"] = 0
        q["tensors"]["blk0.norm"]["frac_bits"] = 2

    with pytest.raises(QuantizationError, match="blk0.in_proj_u"):
        run_with(conv_needs_left_shift)
    with pytest.raises(ModelFormatError, match="quant.int16.tensors.head.frac_bits: 16 is greater than the maximum"):
        run_with(lambda q: q["tensors"]["head"].update(frac_bits=16))  # out of range: the schema, at load
    with pytest.raises(QuantizationError, match="norm_f.weight"):
        run_with(lambda q: q["weights"].pop("norm_f.weight"))


def test_predict_round_trips_normalisation(tiny_model):
    g = tiny_model.graph
    x = inputs(tiny_model, n=3)
    raw = x * g.norm_in_std[:, None] + g.norm_in_mean[:, None]
    np.testing.assert_allclose(
        tiny_model.predict(raw, "fp32"), tiny_model.denormalize_output(tiny_model.run(x, "fp32").output)
    )


def test_default_model_integer_paths_close_to_fp32(tmp_path):
    """The shipped model on its real test split: bittrue and quant8 within the documented
    tolerance of fp32 (README accuracy table), saturations reported and zero for bittrue."""
    from intsim.calibrate import calibrate
    from intsim.data import load_splits

    shutil.copytree(DEFAULT_MODEL, tmp_path / "m")
    model = load_model(tmp_path / "m")
    g = model.graph
    splits = load_splits(
        REPO / "data" / "daphnet_S06R02E0.csv.gz", columns=g.input_columns, lookback=g.input_shape[1], horizon=g.horizon
    )
    x_cal = model.normalize_input(splits["train"][0][::4])
    calibrate(model, x_cal)  # Q8.8 everywhere (the default), maxabs
    x = model.normalize_input(splits["test"][0][::2])
    fp = model.run(x, "fp32").output
    bt = model.run(x, "bittrue")
    q8 = model.run(x, "quant8")
    rmse = lambda y: float(np.sqrt(np.mean((y - fp) ** 2)))  # noqa: E731  normalised units
    # Q8.8 costs ~8 output LSB RMS (measured 0.032); INT8 about the same (measured 0.030)
    assert rmse(bt.output) < 0.05
    assert rmse(q8.output) < 0.06
    assert sum(v["saturations"] for k, v in bt.stats.items() if k != "input") == 0
    # per-tensor formats (--formats auto) remove almost all of it (measured 0.0003)
    calibrate(model, x_cal, formats="auto")
    assert rmse(model.run(x, "bittrue").output) < 0.002
