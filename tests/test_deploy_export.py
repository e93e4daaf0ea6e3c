"""`cmamba-hls export-int` (codegen/deploy.py, docs/deploy-format.md) and `codegen --weights external`.

- The export of the default model and of random small graphs (hypothesis) reads back to exactly
  the integers of the lowered program (INT16 and INT8): every scalar, every array, every dtype.
- An external-weights project is bit-exact with the golden model, and the SAME compiled binary
  runs a perturbed copy of the model bit-exact given that copy's export (no regeneration).
- Bad input: unknown precision, uncalibrated model, foreign / unwritable --out (one line, exit
  2, nothing written); a corrupted, truncated, out-of-range or re-calibrated export given to the
  external-weights binary (one line naming the file, exit 2).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from cmamba_hls.cli import main as cli_main
from codegen.build import run_testbench
from codegen.deploy import EXPORT_DIR, check_same_as, read_export, write_export
from codegen.project import generate_project
from codegen.synth_check import check_project
from intsim import load_model
from intsim.calibrate import calibrate
from intsim.errors import ModelFormatError
from intsim.synth import make_random_model
from tests.cpp_harness import build_project_cached

HYPOTHESIS_EXAMPLES = int(os.environ.get("CMAMBA_HLS_HYPOTHESIS_EXAMPLES", "3"))
N_VECTORS = 64


def _export_cli(capsys, model, precision, out) -> tuple[int, str, str]:
    rc = cli_main(["export-int", str(model), "--precision", precision, "--out", str(out)])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


@pytest.mark.parametrize("precision", ["int16", "int8"])
def test_default_model_export_round_trips(default_calibrated, tmp_path, capsys, precision):
    out = tmp_path / "x"
    rc, stdout, _ = _export_cli(capsys, default_calibrated.graph.path, precision, out)
    assert rc == 0 and "27 layers" in stdout
    exp = read_export(out)
    check_same_as(exp, default_calibrated, precision)
    prog = default_calibrated.program if precision == "int16" else default_calibrated.program8
    assert [r.name for r in exp.layers] == [s.name for s in prog.steps]
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["format"], manifest["version"], manifest["precision"]) == (EXPORT_DIR.format, 1, precision)
    for path in out.rglob("*.npy"):  # integers only, never a pickle
        assert np.load(path, allow_pickle=False).dtype.kind in "iu", path
    by_name = {r.name: r for r in exp.layers}
    conv = by_name["blk0.in_proj_u"]
    np.testing.assert_array_equal(conv.arrays["weight"], prog.step("blk0.in_proj_u").params.weight)
    assert "shift" in (conv.arrays if precision == "int8" else dict(conv.scalars))
    assert "table" in by_name["blk0.lam"].arrays and by_name["blk0.lam"].arrays["clamped"].dtype == bool


@st.composite
def small_graphs(draw):
    patch, stride, tokens = draw(st.integers(1, 4)), draw(st.integers(1, 3)), draw(st.integers(1, 4))
    return dict(
        c_in=draw(st.integers(1, 4)),
        patch=patch,
        stride=stride,
        length=patch + stride * (tokens - 1),
        d_model=draw(st.integers(1, 8)),
        d_inner=draw(st.integers(1, 12)),
        n_blocks=draw(st.integers(1, 2)),
        d_conv=draw(st.integers(1, 4)),
        horizon=draw(st.integers(1, 3)),
        seed=draw(st.integers(0, 2**16)),
        weight_scale=draw(st.sampled_from([0.3, 1.0, 4.0])),
        revin=draw(st.booleans()),
    ), draw(st.sampled_from(["q88", "auto"]))


@settings(max_examples=HYPOTHESIS_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=small_graphs())
def test_random_graph_exports_round_trip(case):
    dims, formats = case
    with tempfile.TemporaryDirectory() as tmp:
        model = load_model(make_random_model(Path(tmp) / "m", **dims))
        calibrate(
            model, np.random.default_rng(dims["seed"]).standard_normal((32,) + model.graph.input_shape), formats=formats
        )
        for precision in ("int16", "int8"):
            write_export(model, precision, Path(tmp) / precision)
            check_same_as(read_export(Path(tmp) / precision), model, precision)


# ----------------------------------------------------------------------------- external weights in C++
def _perturbed_copy(model, dest: Path, layers_ops=("conv_kx1", "conv1x1", "dwconv")) -> Path:
    """A copy of the model directory with every convolution's weights and biases changed by a
    few percent, the quantization section (formats) kept: new weights, same architecture."""
    shutil.copytree(model.graph.path, dest)
    rng = np.random.default_rng(7)
    for layer in model.graph.layers:
        if layer.op not in layers_ops:
            continue
        for key in layer.weights:
            path = dest / "weights" / f"{layer.name}.{key}.npy"
            w = np.load(path)
            np.save(path, (w * (1 + 0.05 * rng.standard_normal(w.shape))).astype(w.dtype))
    return dest


def _golden_dir(model, project: Path, precision: str, dest: Path) -> Path:
    """tb_data for `model` on the project's own input vectors."""
    dest.mkdir()
    x = np.load(project / "tb_data" / "input.npy")
    run = model.run_int16 if precision == "int16" else model.run_int8
    y = run(x).output_q.reshape(len(x), model.graph.output_channels, model.graph.horizon).astype(x.dtype)
    np.save(dest / "input.npy", x)
    np.save(dest / "output.npy", y)
    return dest


@pytest.fixture(scope="module", params=["int16", "int8"])
def external_project(request, default_calibrated, tmp_path_factory):
    precision = request.param
    out = tmp_path_factory.mktemp(f"ext_{precision}") / "p"
    gen = generate_project(
        default_calibrated, out, precision=precision, n_vectors=N_VECTORS, layers=True, weights="external"
    )
    build_project_cached(out)
    return precision, gen.out_dir


def test_external_weights_bit_exact_and_new_weights_need_no_regeneration(
    external_project, default_calibrated, tmp_path, capsys
):
    precision, project = external_project
    assert not (project / "firmware" / "weights").exists()  # no ROMs compiled in
    assert "const Weights weights[1]" in (project / "firmware" / "top.h").read_text()
    synth = check_project(project)  # docs/hls.md: the same rules hold
    assert synth.ok, synth.summary()
    res = run_testbench(project)
    assert (res.passed, res.failed) == (N_VECTORS, 0), res.first_mismatch
    assert "per-layer checks: on" in res.stdout

    other = load_model(_perturbed_copy(default_calibrated, tmp_path / "m2"))
    assert _export_cli(capsys, other.graph.path, precision, tmp_path / "x2")[0] == 0
    data2 = _golden_dir(other, project, precision, tmp_path / "data2")
    assert not np.array_equal(np.load(data2 / "output.npy"), np.load(project / "tb_data" / "output.npy"))
    res2 = run_testbench(project, data_dir=str(data2), weights_dir=tmp_path / "x2")
    assert (res2.passed, res2.failed) == (N_VECTORS, 0), res2.first_mismatch
    stale = run_testbench(project, data_dir=str(data2))  # the old weights: the outputs differ
    assert stale.failed > 0 and stale.returncode == 1


def _tb(project: Path, weights: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(project / "build" / "tb"), "tb_data", "--weights", str(weights)],
        cwd=project,
        capture_output=True,
        text=True,
    )


def _broken_copy(project: Path, dest: Path, edit) -> Path:
    shutil.copytree(project / "export", dest)
    edit(dest)
    return dest


def test_external_binary_refuses_a_bad_export(external_project, default_calibrated, tmp_path, capsys):
    precision, project = external_project
    exp = read_export(project / "export")
    conv = next(i for i, r in enumerate(exp.layers) if r.op == "conv1x1")
    weight = next((project / "export" / "layers").glob(f"{conv:03d}_*")) / "weight.npy"
    rel = weight.relative_to(project / "export")

    def truncate(d):
        data = (d / rel).read_bytes()
        (d / rel).write_bytes(data[:-7])

    def bias_too_wide(d):
        b = d / rel.with_name("bias.npy")
        np.save(b, np.full_like(np.load(b), 1 << 40))

    def shift_changed(d):
        sc = np.load(d / "scalars.npy")
        sc[-1] += 1
        np.save(d / "scalars.npy", sc)

    cases = {
        "truncated": (truncate, f"npy: {tmp_path / 'truncated' / rel}: truncated data"),
        "garbage": (lambda d: (d / rel).write_bytes(b"not an npy file"), "bad magic"),
        "missing": (lambda d: (d / rel).unlink(), "cannot open file"),
        "range": (bias_too_wide, "does not fit"),
        "scalars": (shift_changed, "this binary was compiled with"),
        "manifest": (lambda d: (d / "manifest.json").write_text("{}"), "not a cmamba-hls integer export"),
    }
    for name, (edit, message) in cases.items():
        proc = _tb(project, _broken_copy(project, tmp_path / name, edit))
        assert proc.returncode == 2, (name, proc.stdout, proc.stderr)
        assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, (name, proc.stderr)
        assert "passed" not in proc.stdout
    # a re-calibrated model changes compile-time scalars: refused, naming the first one
    recal = tmp_path / "recal"
    shutil.copytree(default_calibrated.graph.path, recal)
    assert (
        cli_main(
            ["calibrate", str(recal), "--formats", "auto"]
            if precision == "int16"
            else ["calibrate", str(recal), "--method", "p99"]
        )
        == 0
    )
    assert _export_cli(capsys, recal, precision, tmp_path / "xr")[0] == 0
    proc = _tb(project, tmp_path / "xr")
    assert proc.returncode == 2 and "scalars.npy: '" in proc.stderr and "regenerate" in proc.stderr


# ----------------------------------------------------------------------------- bad input to export-int
def test_export_bad_input_is_one_line_and_writes_nothing(default_calibrated, tmp_path, capsys):
    model = default_calibrated.graph.path
    with pytest.raises(SystemExit) as exc:
        cli_main(["export-int", str(model), "--precision", "int4", "--out", str(tmp_path / "a")])
    assert exc.value.code == 2 and "invalid choice: 'int4'" in capsys.readouterr().err
    raw = tmp_path / "raw"
    shutil.copytree(Path(__file__).resolve().parent.parent / "examples" / "default", raw)
    rc, _, err = _export_cli(capsys, raw, "int8", tmp_path / "b")
    assert rc == 2 and "calibrate" in err and len(err.strip().splitlines()) == 1
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    rc, _, err = _export_cli(capsys, model, "int16", foreign)
    assert rc == 2 and "refusing to touch it" in err and os.listdir(foreign) == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    rc, _, err = _export_cli(capsys, model, "int16", tmp_path / "file" / "out")
    assert rc == 2 and "is a file, not a directory" in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]
    # an export is replaced in place; a corrupted one is refused by the reader naming the file
    out = tmp_path / "x"
    assert _export_cli(capsys, model, "int16", out)[0] == 0
    assert _export_cli(capsys, model, "int8", out)[0] == 0 and read_export(out).precision == "int8"
    gain = next(out.glob("layers/*_l_norm_f/gain.npy"))
    np.save(gain, np.load(gain).astype(np.int32))
    with pytest.raises(ModelFormatError, match="gain.npy: dtype <i4"):
        read_export(out)
