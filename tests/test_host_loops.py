"""The host-side build of a generated project (`-DCMAMBA_HOST_LOOPS`, docs/hls.md "Host builds").

With the macro the INT16 convolutions store a position's sums and round them in one loop that g++
vectorises, instead of one output at a time inside the HLS output step. It must compute the same
integers: generated projects built with the macro are bit-exact on their golden vectors, on the
default model with int32 sums (embedded weights) and int64 sums (external weights, whose
accumulator width cannot depend on the values) in the ap flavour, and on a small model with odd
channel counts and per-tensor formats chosen by calibration.
"""

from __future__ import annotations

import pytest

from codegen.build import run_testbench
from codegen.project import generate_project
from tests.cpp_harness import ap_include_or_skip, build_project_cached

HOST_FLAG = "-DCMAMBA_HOST_LOOPS"
CASES = [
    ("default_calibrated", "int16", "stdint", "embedded"),
    ("default_calibrated", "int16", "ap", "external"),
    ("tiny_model_auto", "int16", "stdint", "embedded"),
]


@pytest.mark.parametrize("fixture, precision, types, weights", CASES, ids=["-".join(c) for c in CASES])
def test_host_loops_build_is_bit_exact(request, tmp_path, fixture, precision, types, weights):
    if types == "ap":
        ap_include_or_skip()
    model = request.getfixturevalue(fixture)
    n = 200
    gen = generate_project(model, tmp_path / "p", precision=precision, types=types, n_vectors=n, weights=weights)
    text = "".join((gen.out_dir / "firmware" / "ops" / h).read_text() for h in ("conv1x1.h", "conv_kx1.h"))
    assert text.count("round_row16<") == 2  # both kernels take the host loops under the macro: the test is not vacuous
    build_project_cached(gen.out_dir, extra_flags=HOST_FLAG)
    tb = run_testbench(gen.out_dir)
    assert tb.ok and tb.passed == n, (precision, types, weights, tb.first_mismatch, tb.stdout[-2000:])
