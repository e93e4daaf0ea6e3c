"""The estimator (codegen/estimate.py) and the reuse factors (codegen/reuse.py), proven against the code.

- Proof: the testbench built with -DCMAMBA_COUNT_LOOPS counts the iterations of every pipelined
  loop of one window; they equal the estimator's trip counts, on the default model (memory and
  stream tops, INT16 and INT8, natural and non-trivial reuse factors: lanes > 1 and II > 1) and on
  random graphs (hypothesis: random dimensions, RevIN, interface, precision and per-layer reuse
  factors) and on an S6 graph (softplus, s6_scan). The same builds are checked bit-exact against the golden
  model: reuse factors change no arithmetic.
- The reuse rule: valid factors, lanes/II, the global rounding, per-layer overrides and their errors.
- The hardware maps (DSP tiles, BRAM18 packing), the parts table, the issue's target on paper.
- The CLI: table, CSV, PNG, an owned output folder, one-line errors and nothing written on bad input.
"""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from cmamba_hls.cli import main as cli_main
from codegen.build import COUNT_LOOPS_FLAG, loop_counts, run_testbench
from codegen.estimate import ESTIMATE, PARTS, bram18, dims_of, dsp_tiles, estimate, get_part
from codegen.project import generate_project
from codegen.reuse import ReuseError, ReuseSpec, plan_for, resolve_reuse, valid_factors
from intsim import load_model
from intsim.calibrate import calibrate
from intsim.errors import CmambaError
from intsim.graph import load_graph
from intsim.synth import make_random_model
from tests.cpp_harness import ap_include_or_skip, build_project_cached

REPO = Path(__file__).resolve().parent.parent
DEFAULT = REPO / "examples" / "default"
EXAMPLES = int(os.environ.get("CMAMBA_HLS_HYPOTHESIS_EXAMPLES", "2"))
# The setting the README states for the target (stream top, 250 MHz, <= 10 us, <= 1,728 DSP).
TARGET_REUSE = ReuseSpec(32, (("head", 1440), ("*norm*", 8), ("*.dwconv", 5)))


def counted_run(model, out: Path, precision: str, interface: str, reuse: ReuseSpec, n_vectors: int):
    """Generate, build with the loop counters, run: (testbench result, counts, the estimate)."""
    if interface == "stream":
        ap_include_or_skip()  # the stream top's testbench includes hls_stream.h from the ap types
    gen = generate_project(model, out, precision=precision, n_vectors=n_vectors, interface=interface, reuse=reuse)
    build_project_cached(gen.out_dir, extra_flags=COUNT_LOOPS_FLAG)
    tb = run_testbench(gen.out_dir)
    return tb, loop_counts(tb.stdout), estimate(model.graph, precision, interface, reuse)


def assert_counts_match(counts: dict, est, what) -> None:
    expected = {k: v for k, v in est.loop_iterations().items() if v}
    names = {s.row: s.name for s in est.stages}
    diff = {
        f"{names.get(r, r)} slot {s}": (counts.get((r, s)), expected.get((r, s)))
        for r, s in set(counts) | set(expected)
        if counts.get((r, s)) != expected.get((r, s))
    }
    assert counts and not diff, (what, "counted vs estimated", diff)


# ------------------------------------------------------------------ the proof on the default model
DEFAULT_CASES = [
    ("int16", "stream", TARGET_REUSE),
    ("int8", "stream", ReuseSpec()),
    ("int16", "memory", ReuseSpec(128)),
    ("int8", "memory", ReuseSpec(16)),
]


@pytest.mark.parametrize(
    "precision, interface, reuse", DEFAULT_CASES, ids=[f"{p}-{i}-{r.default}" for p, i, r in DEFAULT_CASES]
)
def test_default_model_loop_counts_equal_the_estimate_and_stay_bit_exact(
    default_calibrated, tmp_path, precision, interface, reuse
):
    tb, counts, est = counted_run(default_calibrated, tmp_path / "p", precision, interface, reuse, 1000)
    assert (tb.passed, tb.failed) == (1000, 0), tb.first_mismatch
    assert_counts_match(counts, est, (precision, interface, reuse))
    plans = [s.plan for s in est.stages if s.plan.reuse is not None]
    assert len(plans) == 15  # 12 convolutions + 3 RMSNorms carry a factor
    if reuse.default in (16, 128):  # the settings exercise lanes > 1 and II > 1
        assert any(p.lanes > 1 for p in plans) and (reuse.default == 16 or any(p.ii > 1 for p in plans))


@st.composite
def random_cases(draw):
    patch, stride, tokens = draw(st.integers(1, 4)), draw(st.integers(1, 3)), draw(st.integers(1, 5))
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
        revin=draw(st.booleans()),
        seed=draw(st.integers(0, 2**16)),
    )
    return (
        dims,
        draw(st.sampled_from(["int16", "int8"])),
        draw(st.sampled_from(["memory", "stream"])),
        draw(st.integers(0, 2**16)),
    )


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=random_cases())
def test_random_graph_loop_counts_equal_the_estimate(case):
    """Random graphs, a random valid reuse factor per layer: counts == estimate, and bit-exact."""
    dims, precision, interface, seed = case
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        model = load_model(make_random_model(Path(tmp) / "m", **dims))
        calibrate(model, rng.standard_normal((64,) + model.graph.input_shape))
        layers = []
        for layer in model.graph.layers:
            knob = ESTIMATE.row(layer.op, layer.name).knob(dims_of(model.graph, layer))
            if knob is not None:
                layers.append((layer.name, int(rng.choice(valid_factors(knob.extent, knob.body)))))
        reuse = ReuseSpec(None, tuple(layers))
        tb, counts, est = counted_run(model, Path(tmp) / "p", precision, interface, reuse, 24)
        assert (tb.passed, tb.failed) == (24, 0), (case, tb.first_mismatch)
        assert_counts_match(counts, est, case)


# ------------------------------------------------------------------ the reuse rule
@pytest.mark.parametrize("precision, interface", [("int16", "memory"), ("int8", "stream")])
def test_s6_graph_loop_counts_equal_the_estimate(tmp_path, precision, interface):
    """An S6 graph (softplus, s6_scan): counts == estimate, and bit-exact."""
    model = load_model(
        make_random_model(tmp_path / "m", block="s6", length=16, d_model=4, d_inner=6, d_state=3, dt_rank=2, seed=3)
    )
    calibrate(model, np.random.default_rng(0).standard_normal((64,) + model.graph.input_shape))
    tb, counts, est = counted_run(model, tmp_path / "p", precision, interface, ReuseSpec(), 16)
    assert (tb.passed, tb.failed) == (16, 0), tb.first_mismatch
    assert_counts_match(counts, est, (precision, interface))


def test_valid_factors_lanes_and_ii():
    # E = 6 outputs of N = 4 multiplies: divisors of 6, or 6 times a divisor of 4
    assert valid_factors(6, 4) == [1, 2, 3, 6, 12, 24]
    assert plan_for(6, 4, 2).lanes == 3 and plan_for(6, 4, 2).ii == 1
    assert plan_for(6, 4, 12).lanes == 1 and plan_for(6, 4, 12).ii == 2
    assert plan_for(6, 4, 4) is None and plan_for(6, 4, 18) is None
    for r in valid_factors(6, 4):  # E N / R multipliers, R cycles per block
        p = plan_for(6, 4, r)
        assert p.lanes * 4 // p.ii * r == 6 * 4 and (6 // p.lanes) * p.ii == r


def test_global_reuse_takes_the_largest_valid_factor_per_layer():
    g = load_graph(DEFAULT)
    natural = resolve_reuse(g, ReuseSpec())
    assert natural["blk0.in_proj_u"].reuse == 64 and natural["head"].reuse == 144  # E: today's pragmas
    assert natural["blk0.gate"].reuse is None  # no multiplier knob
    plans = resolve_reuse(g, ReuseSpec(16))
    assert plans["blk0.dwconv"].reuse == 15  # 15 positions x 4 taps: 16 is not valid, 15 is
    assert plans["blk0.in_proj_u"].reuse == 16 and plans["blk0.in_proj_u"].lanes == 4
    over = resolve_reuse(g, ReuseSpec(16, (("*.dwconv", 5), ("blk1.dwconv", 3))))  # later ones win
    assert over["blk0.dwconv"].reuse == 5 and over["blk1.dwconv"].reuse == 3


@pytest.mark.parametrize(
    "spec, message",
    [
        (ReuseSpec(0), "--reuse: a reuse factor is a positive integer, got 0"),
        (
            ReuseSpec(None, (("head", 7),)),
            "7 is not a valid reuse factor of layer 'head' (conv_kx1, 144 output channels",
        ),
        (ReuseSpec(None, (("nope*", 4),)), "no layer matches 'nope*'"),
        (ReuseSpec(None, (("blk0.gate", 2),)), "layer 'blk0.gate' (mul) has no reuse factor"),
    ],
)
def test_invalid_reuse_is_one_clear_error(spec, message):
    with pytest.raises(ReuseError) as exc:
        resolve_reuse(load_graph(DEFAULT), spec)
    assert message in str(exc.value) and "\n" not in str(exc.value)


# ------------------------------------------------------------------ hardware maps and the target
def test_dsp_tiles_and_bram18_packing():
    us, z7 = get_part("xczu7ev"), get_part("xc7z020")
    assert [dsp_tiles(16, 16, us), dsp_tiles(9, 8, us), dsp_tiles(32, 32, us), dsp_tiles(32, 41, us)] == [1, 1, 4, 4]
    assert dsp_tiles(26, 18, z7) == 2 and dsp_tiles(26, 18, us) == 1  # DSP48E1's A port is 25 bits
    assert bram18(64, 1024) == 0  # <= 64 words: LUTs
    assert bram18(4096, 16) == 4 and bram18(1024, 18) == 1 and bram18(1440, 768) == 66
    assert set(PARTS) >= {"xczu7ev", "xcu250", "xc7z020"}
    assert (PARTS["xczu7ev"].dsp, PARTS["xczu7ev"].bram18) == (1728, 624)
    with pytest.raises(CmambaError, match=r"unknown part 'xc9' \(known: xczu7ev"):
        get_part("xc9")


def test_default_model_stream_top_meets_the_target_on_paper():
    """Issue 17's target: one window every <= 10 us at 250 MHz, <= 1,728 DSPs, everything on chip."""
    est = estimate(load_graph(DEFAULT), "int16", "stream", TARGET_REUSE, 250, "xczu7ev")
    assert est.interval_us <= 10.0 and est.dsp <= 1728 and est.bram18 <= 624
    natural = estimate(load_graph(DEFAULT), "int16", "stream")
    assert natural.interval_cycles > est.interval_cycles  # the natural factors miss it: RMSNorm, dwconv
    memory = estimate(load_graph(DEFAULT), "int16", "memory", TARGET_REUSE)
    assert memory.interval_cycles == sum(s.cycles for s in memory.stages) > est.interval_cycles
    assert memory.dsp == est.dsp  # the same layers, the same multipliers


@pytest.mark.parametrize("precision, array, width", [("int16", "int16_t xp", 16), ("int8", "centered9_t xc", 9)])
def test_dwconv_padded_copy_is_a_buffer(precision, array, width):
    """The depthwise convolution's padded input copy, as its template declares and partitions it
    (K - 1 + L rows of C words, the rows cyclic over K - 1 + PAR banks; INT8 centred codes are
    ap_int<9>), is counted in the layer's buffers beside its output buffer (memory top)."""
    text = (REPO / "templates" / precision / "dwconv.h.j2").read_text()
    name = array.split()[1]
    assert f"{array}[CFG::K - 1 + CFG::L][CFG::C];" in text
    assert "const int banks = CFG::K - 1 + lanes;" in text and f"variable={name} cyclic factor=banks dim=1" in text
    graph = load_graph(DEFAULT)
    bits = 16 if precision == "int16" else 8
    for reuse in (ReuseSpec(), TARGET_REUSE):
        stages = [s for s in estimate(graph, precision, "memory", reuse).stages if s.op == "dwconv"]
        assert len(stages) == 2
        for s in stages:
            d = dims_of(graph, graph.layer(s.name))
            (c, length), banks = d.out, d.kernel - 1 + s.plan.lanes
            rows = -(-(d.kernel - 1 + length) // banks)  # per bank
            assert s.buffer_bits == c * length * bits + banks * rows * c * width
            out_bram = s.plan.lanes * bram18(c * length // s.plan.lanes, bits)
            assert s.buffer_bram18 == out_bram + banks * bram18(rows * c, width) > out_bram


def test_readme_and_hls_doc_quote_the_estimator():
    """The default model's table in README.md and docs/hls.md ("Estimate") is the estimator's output."""
    readme = (REPO / "README.md").read_text().replace("**", "")
    hls = (REPO / "docs" / "hls.md").read_text().replace("**", "")
    graph = load_graph(DEFAULT)
    for interface in ("memory", "stream"):
        for reuse, label in ((ReuseSpec(), "natural"), (TARGET_REUSE, "target")):
            est = estimate(graph, "int16", interface, reuse)
            us = f"{est.interval_us:.1f}" if est.interval_us >= 10 else f"{est.interval_us:.2f}"
            luts = sum(s.rom_luts + s.memory_luts for s in est.stages)
            rest = f"| {est.latency_us:.1f} us | {est.dsp} | {est.bram18} | {luts:,} |"
            assert f"| {label} | {us} us ({est.interval_cycles:,} cycles) {rest}" in readme, (interface, label)
            assert f"cycles = {us} us {rest}" in hls and f"| {est.interval_cycles:,} cycles = {us} us" in hls


# ------------------------------------------------------------------ the CLI
def test_cli_estimate_writes_table_csv_and_png(tmp_path, capsys):
    out = tmp_path / "est"
    args = [
        "estimate",
        str(DEFAULT),
        "--interface",
        "stream",
        "--reuse",
        "32",
        "--reuse-layer",
        "head=1440",
        "--reuse-layer",
        "*norm*=8",
        "--reuse-layer",
        "*.dwconv=5",
        "--out",
        str(out),
    ]
    assert cli_main(args) == 0
    text = capsys.readouterr().out
    assert "interval: 2,106 cycles = 8.42 us per window" in text and "fits xczu7ev: yes" in text
    rows = list(csv.DictReader((out / "estimate.csv").open()))
    assert [r["layer"] for r in rows][:2] == ["stream_in", "patch_embed"] and rows[-1]["layer"] == "TOTAL"
    assert int(rows[-1]["dsp"]) == sum(int(r["dsp"]) for r in rows[:-1])
    assert max(int(r["cycles"]) for r in rows[:-1]) == int(rows[-1]["cycles"]) == 2106
    assert (out / "estimate.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "estimate.txt").read_text().startswith("estimate: model 'cmamba-slim', int16, stream top")
    (out / "notes.txt").write_text("mine")
    assert cli_main(["estimate", str(DEFAULT), "--out", str(out)]) == 0  # an owned folder: rewritten
    assert (out / "notes.txt").read_text() == "mine" and "memory top" in (out / "estimate.txt").read_text()


@pytest.mark.parametrize(
    "bad, message",
    [
        (["--interface", "axi"], "--interface 'axi' is not supported (known: memory, stream)"),
        (["--part", "xc9999"], "unknown part 'xc9999' (known: xczu7ev, xcu250, xc7z020)"),
        (["--reuse", "x"], "--reuse: a reuse factor is a positive integer, got 'x'"),
        (["--reuse-layer", "head=7"], "7 is not a valid reuse factor of layer 'head'"),
        (["--clock-mhz", "0"], "--clock-mhz must be a positive number"),
    ],
)
def test_cli_estimate_bad_input_one_line_nothing_written(tmp_path, capsys, bad, message):
    out = tmp_path / "est"
    assert cli_main(["estimate", str(DEFAULT), *bad, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and message in captured.err
    assert not out.exists()


@pytest.mark.parametrize(
    "bad, message",
    [
        (["--interface", "axi"], "--interface 'axi' is not supported"),
        (["--reuse", "0"], "--reuse: a reuse factor is a positive integer, got 0"),
        (
            ["--reuse-layer", "blk0.dwconv=4"],
            "4 is not a valid reuse factor of layer 'blk0.dwconv' (dwconv, 15 positions",
        ),
        (["--interface", "stream", "--weights", "external"], "--interface stream takes --weights embedded only"),
    ],
)
def test_cli_codegen_bad_interface_or_reuse_one_line_nothing_written(
    default_calibrated, tmp_path, capsys, bad, message
):
    out = tmp_path / "prj"
    assert cli_main(["codegen", str(default_calibrated.graph.path), "--out", str(out), *bad]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and message in captured.err
    assert not out.exists() and list(tmp_path.iterdir()) == []
