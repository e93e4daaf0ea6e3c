"""The host-side build of a generated project (`-DCMAMBA_HOST_LOOPS`, docs/hls.md "Host builds").

With the macro the INT16 convolutions compute a position's sums first and round them in one loop
that g++ vectorises, instead of one output at a time inside the HLS output step; on a host with
AVX-512BW or AVX2 the sums of all outputs come at once from `host_mac_rows` (int32 lanes
over the outputs, weights re-laid as input pairs), where a layer's sums are int32. It must compute
the same integers: generated projects built with the macro are bit-exact on their golden vectors,
on the default model with int32 sums (embedded weights; plain -O2, AVX2 and -O3 -march=native) and int64
sums (external weights, whose accumulator width cannot depend on the values) in the ap flavour, and
on a small model with odd channel counts and per-tensor formats chosen by calibration, where some
layers take the all-outputs path and others (C_out not a multiple of 16, an odd C_in x K) do not.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from codegen.build import run_testbench
from codegen.project import generate_project
from tests.cpp_harness import ap_include_or_skip, build_project_cached

HOST = "-DCMAMBA_HOST_LOOPS"
NATIVE = f"-O3 -march=native {HOST}"  # the documented host build
AVX2 = f"-O3 -mavx2 {HOST}"  # host_mac_rows in 256-bit vectors (this machine's native build takes 512)
CASES = [
    ("default_calibrated", "stdint", "embedded", HOST),
    ("default_calibrated", "stdint", "embedded", NATIVE),
    ("default_calibrated", "stdint", "embedded", AVX2),
    ("default_calibrated", "ap", "external", NATIVE),
    ("tiny_model_auto", "stdint", "embedded", NATIVE),
]


@pytest.mark.parametrize(
    "fixture, types, weights, flags",
    CASES,
    ids=[f"{f}-{t}-{w}-{x.split()[1].lstrip('-') if ' ' in x else 'O2'}" for f, t, w, x in CASES],
)
def test_host_loops_build_is_bit_exact(request, tmp_path, fixture, types, weights, flags):
    if types == "ap":
        ap_include_or_skip()
    cpuinfo = Path("/proc/cpuinfo")
    if flags == AVX2 and not (cpuinfo.is_file() and " avx2" in cpuinfo.read_text(errors="replace")):
        pytest.skip("no AVX2 on this host (per /proc/cpuinfo): an -mavx2 binary would not run")
    model = request.getfixturevalue(fixture)
    n = 200
    gen = generate_project(model, tmp_path / "p", precision="int16", types=types, n_vectors=n, weights=weights)
    text = "".join((gen.out_dir / "firmware" / "ops" / h).read_text() for h in ("conv1x1.h", "conv_kx1.h"))
    assert text.count("round_row16<") == 2  # both kernels take the host loops under the macro: not vacuous
    build_project_cached(gen.out_dir, extra_flags=flags)
    tb = run_testbench(gen.out_dir)
    assert tb.ok and tb.passed == n, (types, weights, flags, tb.first_mismatch, tb.stdout[-2000:])
