"""Codegen INT16 end to end: generate -> g++ -> testbench, bit-exact with the golden model.

- the shipped default model (calibrated on real train windows): 1000 vectors (adversarial,
  real, random), every output and every intermediate tensor, stdint and ap; --formats auto;
- a deliberately broken rounding (RNE -> round half up) is caught (non-zero exit);
- random small graphs (hypothesis; CMAMBA_HLS_HYPOTHESIS_EXAMPLES for more);
- names: hostile names sanitised or rejected; colliding names end to end; determinism;
- the CLI (codegen, compare), the project layout, errors that name what is wrong.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from cmamba_hls.cli import main as cli_main
from cmamba_hls.compare_cli import compare
from codegen import project as project_mod
from codegen.build import build, build_and_run, find_tools, run_testbench
from codegen.names import NameError_, base_identifier, sanitize_names
from codegen.project import generate_project, load_backend
from intsim import load_model
from intsim.calibrate import calibrate
from intsim.errors import CmambaError, UnsupportedError
from intsim.graph import save_quant, write_json_atomic
from intsim.synth import make_random_model
from tests.cpp_harness import ap_include_or_skip, build_project_cached

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = REPO / "examples" / "default"
DATA = REPO / "data" / "daphnet_S06R02E0.csv.gz"
EXAMPLES = int(os.environ.get("CMAMBA_HLS_HYPOTHESIS_EXAMPLES", "4"))
C_IDENT = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def calibrated_default(path: Path, formats: str):
    from intsim.data import load_splits

    shutil.copytree(DEFAULT_MODEL, path)
    model = load_model(path)
    g = model.graph
    splits = load_splits(DATA, columns=g.input_columns, lookback=g.input_shape[1], horizon=g.horizon)
    calibrate(model, model.normalize_input(splits["train"][0][::4]), formats=formats)
    return load_model(path)


@pytest.fixture(scope="module")
def default_q88(tmp_path_factory):
    return calibrated_default(tmp_path_factory.mktemp("codegen") / "default_q88", "q88")


def run_project(model, out, types="stdint", n=1000, layers=True, **kw):
    gen = generate_project(model, out, types=types, n_vectors=n, layers=layers, **kw)
    seconds = build_project_cached(gen.out_dir)
    tb = run_testbench(gen.out_dir)
    tb.compile_seconds = seconds
    return gen, tb


# ------------------------------------------------------------------ the default model
@pytest.mark.parametrize("types", ["stdint", "ap"])
def test_default_model_bit_exact_1000_vectors(default_q88, tmp_path, types):
    if types == "ap":
        ap_include_or_skip()
    gen, tb = run_project(default_q88, tmp_path / types, types=types)
    # the vector mix: extremes, real test-split windows (the training record's CSV), random
    assert gen.vector_counts == {"adversarial": 4, "real": 498, "random": 498}
    assert gen.data_file is not None and gen.data_file.name == DATA.name
    assert (tb.passed, tb.failed, tb.returncode) == (1000, 0, 0), tb.stdout
    assert "per-layer checks: on" in tb.stdout
    assert "output mismatches: 0 of 144000 elements" in tb.stdout
    assert tb.stdout.rstrip().endswith("1000 passed, 0 failed")


def test_default_model_auto_formats_bit_exact(tmp_path):
    model = calibrated_default(tmp_path / "auto", "auto")
    fracs = {t["frac_bits"] for t in model.graph.quant["int16"]["tensors"].values()}
    assert len(fracs) > 2 and fracs != {8}  # per-tensor, non-Q8.8 formats
    _, tb = run_project(model, tmp_path / "prj")
    assert (tb.passed, tb.failed) == (1000, 0), tb.stdout


def test_default_model_accumulators_are_int32(default_q88, tmp_path):
    """The exact width analysis lets the default model accumulate in int32 (fast, exact)."""
    gen = generate_project(default_q88, tmp_path / "p", n_vectors=1)
    bits = [int(b) for b in re.findall(r"ACC_BITS = (\d+);", (gen.out_dir / "firmware/params.h").read_text())]
    assert len(bits) == 12 and max(bits) <= 32


# ------------------------------------------------------------------ a broken kernel is caught
# both flavours share shift_round_c, the biased-shift RNE every hot loop rounds with (the ap one
# computes on native int64): ties round up instead of to even (RNE -> round half up)
_TIES_UP = (
    "(x + ((INT64_C(1) << (N > 0 ? N - 1 : 0)) - 1) + ((x >> (N > 0 ? N : 0)) & 1))",
    "(x + (INT64_C(1) << (N > 0 ? N - 1 : 0)))",
)
BREAKS = {"stdint": _TIES_UP, "ap": _TIES_UP}


@pytest.mark.parametrize("types", ["stdint", "ap"])
def test_broken_rounding_is_caught(tiny_model, tmp_path, types):
    if types == "ap":
        ap_include_or_skip()
    gen = generate_project(tiny_model, tmp_path / "p", types=types, n_vectors=200)
    prim = gen.out_dir / "firmware" / "primitives.h"
    text = prim.read_text()
    old, new = BREAKS[types]
    assert text.count(old) == 1
    prim.write_text(text.replace(old, new))
    tb = build_and_run(gen.out_dir)
    assert tb.failed > 0 and tb.returncode == 1
    assert tb.first_mismatch.startswith("first mismatch: vector ")
    assert re.search(r"^\d+ passed, [1-9]\d* failed$", tb.stdout, re.M)
    # `make test` fails too
    proc = subprocess.run(
        ["make", "-C", str(gen.out_dir), "test"],
        capture_output=True,
        text=True,
        env=dict(os.environ, CMAMBA_HLS_AP_INCLUDE=os.environ.get("CMAMBA_HLS_AP_INCLUDE", "")),
    )
    assert proc.returncode != 0
    # and compare shows the differences (a non-zero bar, the first mismatching layer)
    res = compare(tiny_model, tmp_path / "cmp", project=gen.out_dir)
    assert res.mismatches > 0 and set(res.hist) - {0}
    assert all(abs(k) <= 64 for k in res.hist)


# ------------------------------------------------------------------ random graphs
def randomize_formats(model, rng):
    """Legal random INT16 formats: activations f in [4, 12] (sigmoid outputs [6, 14]), weights
    [6, 14], conv outputs f_y <= f_x + f_w. Saturation and shifts of both signs everywhere."""
    q = model.graph.quant["int16"]
    frac = {"input": int(rng.integers(4, 13))}
    q["tensors"]["input"]["frac_bits"] = frac["input"]
    for layer in model.graph.layers:
        if "weight" in layer.weights:
            q["weights"][f"{layer.name}.weight"]["frac_bits"] = int(rng.integers(6, 15))
        f = int(rng.integers(6, 15)) if layer.op == "sigmoid" else int(rng.integers(4, 13))
        if layer.op in ("conv_kx1", "conv1x1", "dwconv"):
            f = min(f, frac[layer.inputs[0]] + q["weights"][f"{layer.name}.weight"]["frac_bits"])
        q["tensors"][layer.name]["frac_bits"] = frac[layer.name] = f
    save_quant(model.graph)
    model.invalidate()


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    c_in=st.integers(1, 4),
    patch=st.integers(1, 5),
    stride=st.integers(1, 4),
    tokens=st.integers(1, 6),
    d_model=st.integers(1, 8),
    d_inner=st.integers(1, 8),
    n_blocks=st.integers(1, 2),
    d_conv=st.integers(1, 4),
    horizon=st.integers(1, 3),
    seed=st.integers(0, 2**16),
    weight_scale=st.sampled_from([0.25, 1.0, 4.0]),
    formats=st.sampled_from(["q88", "auto", "random"]),
    block=st.sampled_from(["simple", "s6"]),
    d_state=st.integers(1, 4),
    dt_rank=st.integers(1, 3),
)
def test_random_graphs_bit_exact(
    tmp_path_factory,
    c_in,
    patch,
    stride,
    tokens,
    d_model,
    d_inner,
    n_blocks,
    d_conv,
    horizon,
    seed,
    weight_scale,
    formats,
    block,
    d_state,
    dt_rank,
):
    root = tmp_path_factory.mktemp("rand")
    length = patch + stride * (tokens - 1)
    make_random_model(
        root / "m",
        c_in=c_in,
        length=length,
        patch=patch,
        stride=stride,
        d_model=d_model,
        d_inner=d_inner,
        n_blocks=n_blocks,
        d_conv=d_conv,
        horizon=horizon,
        seed=seed,
        weight_scale=weight_scale,
        block=block,
        d_state=d_state,
        dt_rank=dt_rank,
    )
    model = load_model(root / "m")
    x = np.random.default_rng(seed).standard_normal((64, c_in, length))
    calibrate(model, x, formats="q88" if formats == "random" else formats)
    if formats == "random":
        randomize_formats(model, np.random.default_rng(seed + 1))
    model = load_model(root / "m")
    _, tb = run_project(model, root / "p", n=80)
    assert (tb.passed, tb.failed) == (80, 0), tb.stdout


# ------------------------------------------------------------------ names
@pytest.mark.parametrize(
    "name, expected",
    [
        ("blk0.in_proj_u", "l_blk0_in_proj_u"),
        ("int", "l_int"),  # keyword: prefixed, never shadowed
        ("class", "l_class"),
        ("a;system(\"rm -rf /\");", "l_a_system_rm_rf"),
        ("x */ #include <evil>\n", "l_x_include_evil"),
        ("données.ñ", "l_donn_es"),  # unicode -> '_' runs, trailing '_' dropped
        ("__init__", "l_init"),  # no reserved double underscore
        ("9lives", "l_9lives"),
    ],
)
def test_sanitizer_renames_deterministically(name, expected):
    assert base_identifier(name) == expected
    ident = sanitize_names([name])[name]
    assert ident == expected and C_IDENT.match(ident) and "__" not in ident


@pytest.mark.parametrize("bad", ["", "...", ";;", "\u00e9\u00e8"])
def test_sanitizer_rejects_names_without_letters_or_digits(bad):
    with pytest.raises(NameError_, match="C identifier"):
        sanitize_names([bad])


def test_sanitizer_collisions_hashed_order_independent():
    names = ["a.b", "a_b", "a-b", "c", "x" * 80 + "1", "x" * 80 + "2"]
    out = sanitize_names(names)
    assert len(set(out.values())) == len(names)
    assert out["c"] == "l_c"
    for n in ("a.b", "a_b", "a-b"):
        assert re.match(r"^l_a_b_[0-9a-f]{8}$", out[n])
    assert all(C_IDENT.match(v) and len(v) <= 48 for v in out.values())
    assert sanitize_names(list(reversed(names))) == out
    with pytest.raises(NameError_, match="duplicate"):
        sanitize_names(["a", "a"])


def test_colliding_and_keyword_layer_names_end_to_end(tmp_path):
    """A graph whose names collide after sanitising (blk0.silu_u / blk0.silu.u) and use keywords
    (int, class) generates, compiles and stays bit-exact; names in C strings are escaped."""
    make_random_model(tmp_path / "m", n_blocks=1)
    raw = json.loads((tmp_path / "m" / "model.json").read_text())
    rename = {"blk0.silu_z": "blk0.silu.u", "blk0.gate": "int", "blk0.norm": "class"}
    for layer in raw["layers"]:
        layer["name"] = rename.get(layer["name"], layer["name"])
        layer["inputs"] = [rename.get(s, s) for s in layer["inputs"]]
    write_json_atomic(tmp_path / "m" / "model.json", raw)
    model = load_model(tmp_path / "m")
    calibrate(model, np.random.default_rng(0).standard_normal((64, 3, 16)))
    gen, tb = run_project(load_model(tmp_path / "m"), tmp_path / "p", n=50)
    assert (tb.passed, tb.failed) == (50, 0), tb.stdout
    manifest = json.loads((gen.out_dir / "project.json").read_text())["layers_map"]
    assert manifest["int"] == "l_int" and manifest["class"] == "l_class"
    assert manifest["blk0.silu_u"] != manifest["blk0.silu.u"]
    assert all(re.match(r"^l_blk0_silu_u_[0-9a-f]{8}$", manifest[n]) for n in ("blk0.silu_u", "blk0.silu.u"))


# ------------------------------------------------------------------ project contents
def test_project_layout_and_constants_from_lowering(tiny_model, tmp_path):
    gen = generate_project(tiny_model, tmp_path / "p", n_vectors=10)
    d = gen.out_dir
    ops = sorted(p.name for p in (d / "firmware" / "ops").iterdir())
    assert ops == [
        "add.h",
        "conv1x1.h",
        "conv_kx1.h",
        "dwconv.h",
        "lut_activation.h",
        "mul.h",
        "revin.h",
        "rmsnorm.h",
        "s6_scan.h",
        "scan.h",
    ]
    for rel in (
        "firmware/primitives.h",
        "firmware/params.h",
        "firmware/top.h",
        "firmware/top.cpp",
        "firmware/weights/luts.h",
        "tb/tb_main.cpp",
        "tb/npy.h",
        "tb_data/input.npy",
        "tb_data/output.npy",
        "Makefile",
        "build_prj.tcl",
        "project.json",
    ):
        assert (d / rel).is_file(), rel
    firmware = "\n".join(p.read_text() for p in (d / "firmware").rglob("*.h")) + (d / "firmware/top.cpp").read_text()
    code = re.sub(r"//[^\n]*", "", firmware)
    assert not re.search(r"\b(float|double|malloc|new|delete)\b", code)
    assert "#pragma HLS INTERFACE" in firmware and "#pragma HLS PIPELINE" in firmware
    tcl = (d / "build_prj.tcl").read_text()
    for cmd in (
        "open_project",
        "set_top cmamba_top",
        "add_files",
        "csim_design",
        "csynth_design",
        "cosim_design",
        "set_part",
        "create_clock",
    ):
        assert cmd in tcl
    # every weight value in the header is the lowering's integer (never recomputed)
    step = tiny_model.program.step("blk0.in_proj_u")
    header = (d / "firmware/weights/l_blk0_in_proj_u.h").read_text()
    body = header.split("w_l_blk0_in_proj_u[16][8] = ")[1].split(";")[0]
    assert [int(v) for v in re.findall(r"-?\d+", body)] == step.params.weight.ravel().tolist()
    assert f"static const int SHIFT = {step.params.shift};" in (d / "firmware/params.h").read_text()
    vin, vout = np.load(d / "tb_data/input.npy"), np.load(d / "tb_data/output.npy")
    assert vin.dtype == np.dtype("<i2") and vin.shape == (10, 3, 16) and vout.shape == (10, 3, 4)
    np.testing.assert_array_equal(vout, tiny_model.run_int16(vin).output_q)


def test_generation_is_byte_identical(tiny_model_auto, tmp_path):
    a = generate_project(tiny_model_auto, tmp_path / "a", n_vectors=30, layers=True)
    b = generate_project(tiny_model_auto, tmp_path / "b", n_vectors=30, layers=True)
    rel = lambda res: sorted(p.relative_to(res.out_dir) for p in res.files)  # noqa: E731
    assert rel(a) == rel(b) and len(rel(a)) > 30
    for r in rel(a):
        assert (a.out_dir / r).read_bytes() == (b.out_dir / r).read_bytes(), r


def test_refuses_to_overwrite_a_foreign_directory(tiny_model, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(CmambaError, match="not written by cmamba-hls codegen"):
        generate_project(tiny_model, out, n_vectors=5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no temporary left behind
    assert (out / "notes.txt").read_text() == "keep me"
    generate_project(tiny_model, tmp_path / "gen", n_vectors=5)
    generate_project(tiny_model, tmp_path / "gen", n_vectors=7)  # a generated project is replaced
    assert np.load(tmp_path / "gen" / "tb_data" / "input.npy").shape[0] == 7


def test_unknown_precision_types_and_missing_backend(tiny_model, tmp_path, monkeypatch):
    with pytest.raises(UnsupportedError, match="int4"):
        generate_project(tiny_model, tmp_path / "p", precision="int4")
    with pytest.raises(UnsupportedError, match="--types"):
        generate_project(tiny_model, tmp_path / "p", types="verilog")
    monkeypatch.setattr(project_mod, "PRECISIONS", project_mod.PRECISIONS + ("int4",))
    with pytest.raises(UnsupportedError, match="codegen/emit_int4.py.*not available"):
        load_backend("int4")
    assert not (tmp_path / "p").exists()


def test_missing_compiler_and_ap_headers_are_clear_errors(tiny_model, tmp_path, monkeypatch):
    gen = generate_project(tiny_model, tmp_path / "p", types="ap", n_vectors=5)
    monkeypatch.delenv("CMAMBA_HLS_AP_INCLUDE", raising=False)
    with pytest.raises(CmambaError, match="CMAMBA_HLS_AP_INCLUDE is not set"):
        build(gen.out_dir)
    env = {k: v for k, v in os.environ.items() if k not in ("AP_INCLUDE", "CMAMBA_HLS_AP_INCLUDE")}
    proc = subprocess.run(["make", "-C", str(gen.out_dir), "test"], capture_output=True, text=True, env=env)
    assert proc.returncode == 2 and "set AP_INCLUDE (or CMAMBA_HLS_AP_INCLUDE)" in proc.stderr
    monkeypatch.setenv("CXX", "/nonexistent/g++")
    with pytest.raises(CmambaError, match="'/nonexistent/g\\+\\+' not found"):
        find_tools()


def test_testbench_rejects_bad_vector_files(tiny_model, tmp_path):
    gen, tb = run_project(tiny_model, tmp_path / "p", n=20, layers=False)
    assert tb.passed == 20
    out = gen.out_dir / "tb_data" / "output.npy"
    np.save(out, np.load(out).astype(np.int32))
    proc = subprocess.run(["./build/tb", "tb_data"], cwd=gen.out_dir, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "npy: tb_data/output.npy: dtype '<i4', expected '<i2'"
    with pytest.raises(CmambaError, match="without its summary line"):
        run_testbench(gen.out_dir)


HOSTILE_NAME = '50% %s%n "quoted" back\\slash\nnext line ??/ end'


@pytest.fixture(scope="module")
def hostile_name_project(tiny_model, tmp_path_factory):
    """tiny_model renamed HOSTILE_NAME (printf conversions, quotes, backslash, newline, trigraph),
    generated and built with the project's own -Wall -Werror."""
    root = tmp_path_factory.mktemp("hostile_name")
    model_dir = shutil.copytree(tiny_model.graph.path, root / "m")
    raw = json.loads((model_dir / "model.json").read_text())
    raw["name"] = HOSTILE_NAME
    write_json_atomic(model_dir / "model.json", raw)
    gen, tb = run_project(load_model(model_dir), root / "p", n=20, layers=False)
    return gen, tb


def test_model_name_is_printed_verbatim_never_used_as_a_format(hostile_name_project):
    gen, tb = hostile_name_project
    assert (tb.passed, tb.failed, tb.returncode) == (20, 0, 0), tb.stdout
    assert f"(model '{HOSTILE_NAME}', int16, stdint types)" in tb.stdout


def test_testbench_with_zero_vectors_fails(hostile_name_project, tmp_path):
    gen, _ = hostile_name_project
    data = tmp_path / "empty"
    data.mkdir()
    for name in ("input", "output"):
        arr = np.load(gen.out_dir / "tb_data" / f"{name}.npy")
        np.save(data / f"{name}.npy", arr[:0])
    proc = subprocess.run([str(gen.out_dir / "build" / "tb"), str(data)], capture_output=True, text=True)
    assert proc.returncode == 2 and "0 passed" not in proc.stdout
    assert proc.stderr.strip() == f"tb: {data}/input.npy holds no vectors: at least one is needed"
    with pytest.raises(CmambaError, match="holds no vectors"):
        run_testbench(gen.out_dir, data_dir=str(data))


def test_testbench_is_clean_under_address_and_undefined_behaviour_sanitizers(tiny_model_auto, tmp_path):
    gen = generate_project(tiny_model_auto, tmp_path / "p", n_vectors=40, layers=True)
    build(gen.out_dir, extra_flags="-fsanitize=address,undefined -fno-sanitize-recover=all -g")
    tb = run_testbench(gen.out_dir)
    assert (tb.passed, tb.failed, tb.returncode) == (40, 0, 0), tb.stdout


# ------------------------------------------------------------------ CLI
def test_cli_codegen_then_make_test(tiny_model, tmp_path, capsys):
    out = tmp_path / "prj"
    assert cli_main(["codegen", str(tiny_model.graph.path), "--out", str(out), "--vectors", "25"]) == 0
    printed = capsys.readouterr().out
    assert "25 golden vectors (4 adversarial, 0 real, 21 random)" in printed
    assert (
        f"real windows: none (model '{tiny_model.graph.path}' records no training data file: pass --data CSV)"
        in printed
    )
    proc = subprocess.run(["make", "-s", "-C", str(out), "test"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.rstrip().splitlines()[-1] == "25 passed, 0 failed"
    with pytest.raises(SystemExit):  # argparse: --precision is one of int16, int8
        cli_main(["codegen", str(tiny_model.graph.path), "--out", str(out), "--precision", "int4"])


def test_codegen_finds_the_training_data_as_calibrate_and_eval_do(tiny_model, tmp_path, capsys):
    from tests.test_cli import write_series_csv

    model_dir = shutil.copytree(tiny_model.graph.path, tmp_path / "m")
    data = write_series_csv(tmp_path / "series.csv", ["ch0", "ch1", "ch2"])  # beside the model, not in data/
    raw = json.loads((model_dir / "model.json").read_text())
    raw["training"] = {"data": {"file": "series.csv"}}
    write_json_atomic(model_dir / "model.json", raw)
    assert cli_main(["codegen", str(model_dir), "--out", str(tmp_path / "prj"), "--vectors", "25"]) == 0
    printed = capsys.readouterr().out
    assert "25 golden vectors (4 adversarial, 10 real, 11 random)" in printed
    assert f"real windows: 10 from the test split of {data}" in printed


def test_cli_compare_reports_zero_mismatches(tiny_model_auto, tmp_path, capsys):
    out = tmp_path / "cmp"
    args = ["compare", str(tiny_model_auto.graph.path), "--vectors", "60", "--out", str(out)]
    assert cli_main(args) == 0
    text = capsys.readouterr().out
    assert "mismatches: 0 of" in text and "histogram of all differences (LSB): {0: " in text
    assert "testbench: 60 passed, 0 failed" in text
    assert "real windows: none (model " in text and "records no training data file" in text
    rows = (out / "compare.csv").read_text().splitlines()
    assert rows[0] == "layer,diff_lsb,count,elements,mismatches"
    layers = [r.split(",") for r in rows[1:]]
    assert len(layers) == len(tiny_model_auto.graph.layers)  # one row per layer: diff 0 only
    assert all(r[1] == "0" and r[2] == r[3] and r[4] == "0" for r in layers)
    assert (out / "compare_hist.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cli_main(args) == 0  # second run reuses the project
    assert "(reused)" in capsys.readouterr().out
