"""Mamba-1 (S6) blocks end to end in C++ (docs/quant-spec.md 2.12, 3.13): the default-size S6
model (the default model's dimensions with N = 16 states, R = 2) bit-exact against the golden
model on 1,000 vectors in both precisions, and a small S6 model driven into saturation (state
and outputs) bit-exact in both precisions. Random S6 graphs run in the hypothesis tests of
test_codegen.py / test_codegen_int8.py (block drawn from simple | s6)."""

from __future__ import annotations

import numpy as np
import pytest

from codegen.build import run_testbench
from codegen.project import generate_project
from intsim import load_model
from intsim.calibrate import calibrate
from intsim.graph import save_quant
from intsim.synth import make_random_model
from tests.conftest import DEFAULT_DIMS
from tests.cpp_harness import build_project_cached

S6_DIMS = dict(DEFAULT_DIMS, block="s6", d_state=16, dt_rank=2)


def _calibrated(path, **dims):
    make_random_model(path, **dims)
    model = load_model(path)
    x = np.random.default_rng(1).standard_normal((256,) + tuple(model.graph.input_shape))
    calibrate(model, x)
    return load_model(path)


@pytest.fixture(scope="module")
def default_size_s6(tmp_path_factory):
    return _calibrated(tmp_path_factory.mktemp("s6") / "m", **S6_DIMS)


@pytest.mark.parametrize("precision", ["int16", "int8"])
def test_default_size_s6_model_bit_exact_1000_vectors(default_size_s6, tmp_path, precision):
    assert default_size_s6.graph.n_weights() <= 150_000
    gen = generate_project(default_size_s6, tmp_path / precision, precision=precision, n_vectors=1000, layers=True)
    build_project_cached(gen.out_dir)
    tb = run_testbench(gen.out_dir)
    assert (tb.passed, tb.failed) == (1000, 0), tb.stdout
    assert "per-layer checks: on" in tb.stdout


@pytest.mark.parametrize("precision", ["int16", "int8"])
def test_saturating_s6_model_bit_exact(tmp_path, precision):
    """weight_scale 8 (INT16) or a scan output scale 1/16 of the calibrated one (INT8): the S6 layer
    saturates (counted by the golden model), the C++ clamps alike."""
    model = _calibrated(tmp_path / "m", block="s6", n_blocks=1, weight_scale=8.0, seed=3)
    if precision == "int8":
        model.graph.quant["int8"]["tensors"]["blk0.scan"]["scale"] /= 16
        save_quant(model.graph)
        model = load_model(tmp_path / "m")
    x = np.random.default_rng(2).standard_normal((64,) + tuple(model.graph.input_shape)) * 4
    mode = "bittrue" if precision == "int16" else "quant8"
    assert model.run(x, mode).stats["blk0.scan"]["saturations"] > 0
    gen = generate_project(model, tmp_path / "p", precision=precision, n_vectors=200, layers=True)
    build_project_cached(gen.out_dir)
    tb = run_testbench(gen.out_dir)
    assert (tb.passed, tb.failed) == (200, 0), tb.stdout
