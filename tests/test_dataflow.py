"""The streaming dataflow top (`codegen --interface stream`, codegen/dataflow.py).

- The default model's stream projects in the ap flavour (both precisions) are bit-exact with the
  golden model; the stdint ones are, at several reuse factors, in tests/test_estimate.py (built with
  the loop counters) and random graphs there too.
- The FIFO depths the generator chooses let the process network run one window per slowest
  process (the token-level timing model, codegen/dataflow.py simulate_dataflow): the estimator's
  interval; depth 2 everywhere stalls the skip paths; no depth deadlocks (read order).
- The project: hls::stream ports, AXI-Stream and ap_ctrl_chain pragmas, DATAFLOW, one STREAM
  pragma per channel with the planned depth; the synthesizability checks pass on stream projects
  (tests/test_synthesizability.py); a missing hls_stream.h is a clear build error.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from codegen.build import run_testbench
from codegen.dataflow import MIN_DEPTH, fifo_depths, plan_dataflow, read_order, simulate_dataflow
from codegen.estimate import compute_cycles, estimate
from codegen.project import generate_project
from codegen.reuse import ReuseSpec
from intsim.errors import CmambaError
from intsim.graph import load_graph
from tests.cpp_harness import ap_include_or_skip, build_project_cached
from tests.test_estimate import DEFAULT, TARGET_REUSE


def test_fifo_depths_rule_on_the_default_model():
    g = load_graph(DEFAULT)
    depths = fifo_depths(g)
    deep = {k: d for k, d in depths.items() if d > MIN_DEPTH}
    # an input read before a later one holds the windows in flight on the longer path:
    # the residual skips (9 processes from the fork to out_proj), silu_u before the scan's lam
    # (dt_proj, lam: 2), silu_z before the gate's scan (4); L = 15 tokens per window
    assert deep == {
        ("patch_embed", "blk0.residual"): 9 * 15,
        ("blk0.residual", "blk1.residual"): 9 * 15,
        ("blk0.silu_u", "blk0.scan"): 2 * 15,
        ("blk1.silu_u", "blk1.scan"): 2 * 15,
        ("blk0.silu_z", "blk0.gate"): 4 * 15,
        ("blk1.silu_z", "blk1.gate"): 4 * 15,
    }
    assert read_order(g)["blk0.scan"] == ["blk0.silu_u", "blk0.lam"]  # ascending rank: lam comes last


@pytest.mark.parametrize("reuse", [ReuseSpec(), TARGET_REUSE], ids=["natural", "target"])
def test_planned_depths_run_at_the_slowest_process(reuse):
    """The token-level timing model of the default model's network: with the planned depths one
    window leaves every `slowest process` cycles (the estimator's interval); with depth 2 everywhere
    the skip paths stall the pipeline; at depth 1 everywhere it still never deadlocks (read order)."""
    g = load_graph(DEFAULT)
    df = plan_dataflow(g)
    est = estimate(g, "int16", "stream", reuse)
    compute = compute_cycles(est, df)
    done = simulate_dataflow(df, compute, windows=6)
    assert {b - a for a, b in zip(done, done[1:], strict=False)} == {est.interval_cycles}
    assert done[0] == est.latency_cycles
    shallow = simulate_dataflow(df, compute, 6, {ch.name: MIN_DEPTH for ch in df.channels})
    assert shallow[-1] - shallow[-2] > 3 * est.interval_cycles
    simulate_dataflow(df, compute, 3, {ch.name: 1 for ch in df.channels})  # completes: no deadlock


def test_a_deadlocked_network_is_reported():
    g = load_graph(DEFAULT)
    df = plan_dataflow(g)
    with pytest.raises(CmambaError, match="deadlock"):
        simulate_dataflow(df, {}, 1, {ch.name: 0 for ch in df.channels})


def test_stream_project_has_the_interface_and_dataflow_pragmas(tiny_model, tmp_path):
    gen = generate_project(tiny_model, tmp_path / "p", n_vectors=4, interface="stream", reuse=None)
    top = (gen.out_dir / "firmware" / "top.cpp").read_text()
    assert "void cmamba_top(hls::stream<data_t>& input, hls::stream<data_t>& output)" in top
    for pragma in (
        "INTERFACE mode=axis port=input",
        "INTERFACE mode=axis port=output",
        "INTERFACE mode=ap_ctrl_chain port=return",
        "DATAFLOW",
    ):
        assert f"#pragma HLS {pragma}" in top
    depths = dict(re.findall(r"#pragma HLS STREAM variable=(\w+) depth=(\d+)", top))
    assert depths == {ch.name: str(ch.depth) for ch in plan_dataflow(tiny_model.graph).channels}
    assert '#include "hls_stream.h"' in (gen.out_dir / "firmware" / "top.h").read_text()
    assert "INTERFACE := stream" in (gen.out_dir / "Makefile").read_text()
    env = {k: v for k, v in os.environ.items() if k not in ("AP_INCLUDE", "CMAMBA_HLS_AP_INCLUDE")}
    proc = subprocess.run(["make", "-C", str(gen.out_dir), "build"], capture_output=True, text=True, env=env)
    assert proc.returncode == 2 and "uses hls::stream (--interface stream): set AP_INCLUDE" in proc.stderr


@pytest.mark.parametrize("precision", ["int16", "int8"])
def test_default_model_stream_ap_bit_exact(default_calibrated, tmp_path, precision):
    ap_include_or_skip()
    gen = generate_project(
        default_calibrated,
        tmp_path / "p",
        precision=precision,
        types="ap",
        n_vectors=300,
        interface="stream",
        reuse=TARGET_REUSE,
    )
    build_project_cached(gen.out_dir)
    tb = run_testbench(gen.out_dir)
    assert (tb.passed, tb.failed) == (300, 0), tb.first_mismatch
    assert "stream top:" not in tb.stdout  # no value left in a port stream
