"""`codegen --precision int8`: generated C++ vs the quant8 golden model, bit for bit.

- The shipped default model (calibrated as `cmamba-hls calibrate` does by default):
  1,000 golden vectors (adversarial extremes, real test-split windows, random windows at
  several scales), every output and every intermediate layer compared, stdint and ap types.
- A deliberately broken kernel (one rounding flipped) is caught by the testbench.
- Property test: random small CMamba graphs (dimensions, kernel sizes, strides, weight
  scales, INT8 calibration method) -> codegen -> g++ -> 0 mismatches. A few examples in
  CI; CMAMBA_HLS_HYPOTHESIS_EXAMPLES=N runs N.
- RMSNorm V1 (float inside, spec 3.9) is rejected with one clear error naming the layer;
  generation is deterministic.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from codegen.build import build, run_testbench
from codegen.project import generate_project
from intsim import load_model
from intsim.calibrate import calibrate
from intsim.errors import UnsupportedError
from intsim.synth import make_random_model
from tests.cpp_harness import ap_include_or_skip, build_project_cached

N_VECTORS = 1000
HYPOTHESIS_EXAMPLES = int(os.environ.get("CMAMBA_HLS_HYPOTHESIS_EXAMPLES", "3"))


@pytest.fixture(scope="module")
def default_stdint_project(default_calibrated, tmp_path_factory):
    return generate_project(
        default_calibrated,
        tmp_path_factory.mktemp("p8") / "stdint",
        precision="int8",
        types="stdint",
        n_vectors=N_VECTORS,
        layers=True,
    )


def _check_vectors(gen):
    assert gen.n_vectors == N_VECTORS
    assert gen.vector_counts["adversarial"] == 4
    assert gen.vector_counts["real"] > 100 and gen.vector_counts["random"] > 100
    x = np.load(gen.out_dir / "tb_data" / "input.npy")
    assert x.dtype == np.int8 and x.shape == (N_VECTORS, 9, 64)
    assert x.min() == -128 and x.max() == 127


def test_default_model_stdint_bit_exact(default_stdint_project):
    gen = default_stdint_project
    _check_vectors(gen)
    build_project_cached(gen.out_dir)
    res = run_testbench(gen.out_dir)
    assert (res.passed, res.failed) == (N_VECTORS, 0), res.first_mismatch
    assert "per-layer checks: on" in res.stdout
    assert f"{N_VECTORS} passed, 0 failed" in res.stdout


def test_default_model_ap_bit_exact(default_calibrated, tmp_path):
    ap_include_or_skip()
    gen = generate_project(default_calibrated, tmp_path / "ap", precision="int8", types="ap", n_vectors=N_VECTORS)
    _check_vectors(gen)
    assert "ap_int<9> centered9_t" in (gen.out_dir / "firmware" / "ops" / "primitives_int8.h").read_text()
    build_project_cached(gen.out_dir)
    res = run_testbench(gen.out_dir)
    assert (res.passed, res.failed) == (N_VECTORS, 0), res.first_mismatch


def test_broken_kernel_is_caught(default_stdint_project, tmp_path):
    """Flip one rounding (the scan state's RNE shift becomes a floor shift): mismatches."""
    out = tmp_path / "broken"
    shutil.copytree(default_stdint_project.out_dir, out, ignore=shutil.ignore_patterns("build"))
    scan = out / "firmware" / "ops" / "scan.h"
    text = scan.read_text()
    rounded = "return acc32_t(shift_round32<8>(i32_t(acc)));"
    assert text.count(rounded) == 1
    scan.write_text(text.replace(rounded, "return acc32_t(acc >> 8);"))
    build(out)
    res = run_testbench(out)
    assert res.failed > 0 and res.returncode == 1
    assert "layer 'blk0.scan'" in res.stdout


def test_rmsnorm_v1_is_rejected(tiny_model, tmp_path):
    shutil.copytree(tiny_model.graph.path, tmp_path / "m")
    model = load_model(tmp_path / "m")
    x = np.random.default_rng(0).standard_normal((32,) + model.graph.input_shape)
    calibrate(model, x, int8_rmsnorm="v1")
    with pytest.raises(UnsupportedError, match=r"layer 'blk0.norm': RMSNorm V1 .*--int8-rmsnorm v2"):
        generate_project(model, tmp_path / "out", precision="int8")
    assert not (tmp_path / "out").exists()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cmamba_hls.cli",
            "codegen",
            str(tmp_path / "m"),
            "--out",
            str(tmp_path / "out"),
            "--precision",
            "int8",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "blk0.norm" in proc.stderr and "mixed precision" in proc.stderr
    # the INT16 back end does not care about the INT8 RMSNorm mode
    generate_project(model, tmp_path / "out16", precision="int16", n_vectors=8)


def test_generation_is_deterministic(tiny_model, tmp_path):
    a = generate_project(tiny_model, tmp_path / "a", precision="int8", types="ap", n_vectors=16, layers=True)
    b = generate_project(tiny_model, tmp_path / "b", precision="int8", types="ap", n_vectors=16, layers=True)
    rel = sorted(p.relative_to(a.out_dir) for p in a.files)
    assert rel == sorted(p.relative_to(b.out_dir) for p in b.files)
    for r in rel:
        assert (a.out_dir / r).read_bytes() == (b.out_dir / r).read_bytes(), r


@st.composite
def small_graphs(draw):
    patch = draw(st.integers(1, 4))
    stride = draw(st.integers(1, 3))
    tokens = draw(st.integers(1, 5))
    dims = dict(
        c_in=draw(st.integers(1, 4)),
        patch=patch,
        stride=stride,
        length=patch + stride * (tokens - 1) + draw(st.integers(0, stride - 1)),
        d_model=draw(st.integers(1, 8)),
        d_inner=draw(st.integers(1, 12)),
        n_blocks=draw(st.integers(1, 2)),
        d_conv=draw(st.integers(1, 4)),
        horizon=draw(st.integers(1, 3)),
        seed=draw(st.integers(0, 2**16)),
        weight_scale=draw(st.sampled_from([0.3, 1.0, 4.0])),
        block=draw(st.sampled_from(["simple", "s6"])),
        d_state=draw(st.integers(1, 4)),
        dt_rank=draw(st.integers(1, 3)),
    )
    return dims, draw(st.sampled_from(["maxabs", "p99", "p99.9"]))


@settings(max_examples=HYPOTHESIS_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=small_graphs())
def test_random_small_graphs_bit_exact(case):
    dims, method = case
    with tempfile.TemporaryDirectory() as tmp:
        path = make_random_model(Path(tmp) / "m", **dims)
        model = load_model(path)
        x = np.random.default_rng(dims["seed"]).standard_normal((64,) + model.graph.input_shape)
        calibrate(model, x, int8_method=method)
        gen = generate_project(model, Path(tmp) / "p", precision="int8", n_vectors=48, layers=True)
        build_project_cached(gen.out_dir)
        res = run_testbench(gen.out_dir)
        assert (res.passed, res.failed) == (48, 0), (dims, method, res.first_mismatch)
