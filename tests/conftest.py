"""Shared fixtures: small random CMamba-slim models (numpy only), calibrated."""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

import numpy as np
import pytest

from intsim import load_model
from intsim.calibrate import calibrate
from intsim.synth import make_random_model

REPO = Path(__file__).resolve().parent.parent
# Dimensions of the shipped default model (docs/model.md), for default-size tests.
DEFAULT_DIMS = dict(c_in=9, length=64, patch=8, stride=4, d_model=32, d_inner=64, n_blocks=2, d_conv=4, horizon=16)


def make_calibrated(path, formats="q88", n_cal=256, seed=0, **dims):
    """Random model at `path`, calibrated on standard-normal windows. Returns the Model."""
    make_random_model(path, seed=seed, **dims)
    model = load_model(path)
    c_in, length = model.graph.input_shape
    x = np.random.default_rng(seed + 1).standard_normal((n_cal, c_in, length))
    calibrate(model, x, method="maxabs", formats=formats)
    return load_model(path)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """1 block, C_in=3, L=16, D=8, E=16, RevIN in and out (every registered op): Q8.8 everywhere."""
    return make_calibrated(tmp_path_factory.mktemp("tiny"), n_blocks=1, revin=True)


@pytest.fixture(scope="session")
def tiny_s6_model(tmp_path_factory):
    """1 Mamba-1 (S6) block, C_in=3, L=16, D=8, E=16, N=4, R=2: Q8.8 everywhere."""
    return make_calibrated(tmp_path_factory.mktemp("tiny_s6"), n_blocks=1, block="s6")


@pytest.fixture(scope="session")
def tiny_model_auto(tmp_path_factory):
    """2 blocks, per-tensor formats chosen by calibration (--formats auto)."""
    return make_calibrated(tmp_path_factory.mktemp("tiny_auto"), formats="auto", n_blocks=2)


@pytest.fixture(scope="session")
def default_calibrated(tmp_path_factory):
    """A copy of examples/default, calibrated with the calibrate CLI's defaults (INT16 Q8.8 maxabs,
    INT8 maxabs, RMSNorm V2) on its training data. Read-only: copy it to change it."""
    from cmamba_hls.cli import main as cli_main

    path = tmp_path_factory.mktemp("default_calibrated") / "model"
    shutil.copytree(REPO / "examples" / "default", path)
    assert cli_main(["calibrate", str(path)]) == 0
    return load_model(path)


@pytest.fixture(scope="session")
def default_size_model(tmp_path_factory):
    """Random model with the default model's dimensions, Q8.8."""
    return make_calibrated(tmp_path_factory.mktemp("default_size"), **DEFAULT_DIMS)


@pytest.fixture
def chunked(monkeypatch):
    """chunked(model, chunk): sets intsim.chunks.CHUNK_WINDOWS = chunk (for this test) and returns the
    list that records the windows of every chunk `model` runs."""
    from intsim import chunks

    def record(model, chunk: int) -> list[int]:
        monkeypatch.setattr(chunks, "CHUNK_WINDOWS", chunk)
        calls: list[int] = []
        real = model._run_mode
        monkeypatch.setattr(model, "_run_mode", lambda xb, *a: calls.append(len(xb)) or real(xb, *a))
        return calls

    return record


@functools.cache
def run_tile(tile):
    """A jitted caller of a kernels_mac conv tile (the intrinsics are callable from jitted code only), one
    per tile (compiled once per argument types)."""
    from numba import njit

    @njit
    def run(*args):
        tile(*args)

    return run
