"""QAT (model/qat.py, model/qat_train.py, `cmamba-hls qat`): the forward is the integer program,
the straight-through gradients are the documented ones, and the exported model reproduces the
QAT network bit for bit in the golden model (eval) and in the generated C++.

torch is installed in CI (the 'train' extra); importorskip only guards a numpy-only install.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the 'train' extra (torch) is not installed")

from cmamba_hls.cli import main  # noqa: E402
from codegen.build import run_testbench  # noqa: E402
from codegen.project import generate_project  # noqa: E402
from intsim import load_model  # noqa: E402
from intsim.errors import QuantizationError, UnsupportedError  # noqa: E402
from intsim.executor import Model  # noqa: E402
from intsim.synth import make_random_model  # noqa: E402
from model import qat_train  # noqa: E402
from model.qat import QATNetwork  # noqa: E402
from model.qat_ops import fixed_point_fake, lsq_fake  # noqa: E402
from tests.cpp_harness import build_project_cached  # noqa: E402

PRECISIONS = [("int8", "quant8"), ("int16", "bittrue")]


# ------------------------------------------------------------------ straight-through estimators
def test_lsq_fake_value_and_gradients():
    """fake = s (clamp(round(v/s) + z) - z); d/dv = 1 inside, 0 clamped; d/ds = round(v/s) - v/s
    inside, q - z clamped (LSQ); d/dz = 0 inside, -s clamped."""
    v = torch.tensor([0.26, -0.74, 30.0, -30.0], requires_grad=True)
    s = torch.tensor(0.1, requires_grad=True)
    z = torch.tensor(2.2, requires_grad=True)  # rounds to 2: codes [-128 - 2, 127 - 2] real
    y = lsq_fake(v, s, z, -128, 127)
    assert torch.allclose(y, torch.tensor([0.3, -0.7, 12.5, -13.0]))
    dv, ds, dz = torch.autograd.grad(y.sum(), [v, s, z])
    assert dv.tolist() == [1.0, 1.0, 0.0, 0.0]
    want_ds = (3 - 2.6) + (-7 + 7.4) + (127 - 2) + (-128 - 2)
    assert ds.item() == pytest.approx(want_ds, abs=1e-4)
    assert dz.item() == pytest.approx(-2 * 0.1)


def test_fixed_point_fake_clips_gradient_outside_the_format():
    v = torch.tensor([0.5, 200.0, -0.0039], requires_grad=True)  # Q8.8: 200 saturates
    y = fixed_point_fake(v, 8)
    assert y.tolist() == [0.5, 32767 / 256, -1 / 256]
    (dv,) = torch.autograd.grad(y.sum(), [v])
    assert dv.tolist() == [1.0, 0.0, 1.0]


# ------------------------------------------------------------------ the forward is the integer program
@pytest.mark.parametrize("precision, mode", PRECISIONS)
def test_forward_is_the_integer_program_and_gradients_reach_every_parameter(tiny_model, precision, mode):
    net = QATNetwork(tiny_model, precision)
    x = 2.0 * np.random.default_rng(0).standard_normal((24,) + tiny_model.graph.input_shape)
    y, codes = net(x)
    golden = Model(net.snapshot()).run(x, mode)
    assert np.array_equal(codes.numpy(), golden.output_q) and codes.dtype == torch.int32
    assert np.array_equal(y.detach().double().numpy(), golden.output.astype(np.float32).astype(np.float64))
    teacher = torch.as_tensor(tiny_model.run(x, "fp32").output, dtype=torch.float32)
    torch.mean((y - teacher) ** 2).backward()
    assert [name for name, p in net.named_parameters() if p.grad is None] == []
    # zero points only learn from clipped values (d fake / d z = 0 inside the range): the others all move
    assert [
        name for name, p in net.named_parameters() if not name.startswith("zero.") and not torch.any(p.grad != 0)
    ] == []


def test_int8_export_weights_are_clipped_to_the_learned_step(tiny_model):
    net = QATNetwork(tiny_model, "int8")
    with torch.no_grad():
        net.log_step["blk0/dt_proj"] -= 1.0  # shrink the steps: the range now clips
    w = net.export_weights()["blk0.dt_proj"]["weight"]
    limit = (127 * torch.exp(net.log_step["blk0/dt_proj"])).detach().numpy()
    assert np.all(np.abs(w) <= limit[:, None]) and np.any(np.isclose(np.abs(w), limit[:, None]))


# ------------------------------------------------------------------ the command, end to end
def write_series(path, columns, n_rows=900, seed=0, nan_at=None):
    rng = np.random.default_rng(seed)
    t = np.arange(n_rows)[:, None]
    values = np.sin(t / (7.0 + np.arange(len(columns)))) + 0.1 * rng.standard_normal((n_rows, len(columns)))
    lines = [",".join(columns)] + [",".join(f"{v:.6f}" for v in row) for row in values]
    if nan_at is not None:
        lines[nan_at] = ",".join(["nan"] + lines[nan_at].split(",")[1:])
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def qat_inputs(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("qat")
    shutil.copytree(tiny_model.graph.path, root / "model")
    csv = write_series(root / "series.csv", tiny_model.graph.input_columns)
    return root, root / "model", csv


@pytest.mark.parametrize("precision, mode", PRECISIONS)
def test_qat_exports_a_model_that_eval_and_cpp_reproduce_bit_for_bit(qat_inputs, precision, mode, capsys, monkeypatch):
    root, model_dir, csv = qat_inputs
    trained = []
    real_finetune = qat_train.finetune
    monkeypatch.setattr(qat_train, "finetune", lambda *a, **k: trained.append(real_finetune(*a, **k)) or trained[-1])
    out = root / f"qat_{precision}"
    assert (
        main(
            [
                "qat",
                str(model_dir),
                "--data",
                str(csv),
                "--precision",
                precision,
                "--out",
                str(out),
                "--epochs",
                "2",
                "--lr",
                "1e-3",
                "--batch-size",
                "128",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    epochs = [line for line in text.splitlines() if line.startswith("epoch ")]
    assert len(epochs) == 3 and "calibrated start" in epochs[0] and f"wrote {out}" in text
    net = trained[0].net
    exported = load_model(out)
    record = json.loads((out / "model.json").read_text())
    assert record["training"]["qat"]["precision"] == precision and record["quant"]["int8"] and record["quant"]["int16"]
    if precision == "int8":
        assert record["quant"]["int8"]["method"] == "qat"
    qat = record["training"]["qat"]  # the kept epoch: the best validation MSE among the eligible ones
    eligible = [h for h in qat["history"] if h["eligible"]]
    assert all(h["val_saturations"] <= qat["val_saturations_start"] for h in eligible)
    assert all(
        h["eligible"]
        for h in qat["history"]
        if h["val_saturations"] <= qat["val_saturations_start"] and h["val_maxae"] <= qat["val_maxae_start"]
    )
    best = min([qat["val_loss_start"]] + [h["val_loss"] for h in eligible])
    assert qat["best_epoch"] == 0 or qat["history"][qat["best_epoch"] - 1]["eligible"]
    assert abs(qat["val_loss_best"] - best) <= 1e-7
    x = 3.0 * np.random.default_rng(1).standard_normal((40,) + exported.graph.input_shape)
    _, codes = net(x)  # the QAT network's own forward
    assert np.array_equal(exported.run(x, mode).output_q, codes.numpy())  # eval's mode == QAT, bit for bit
    gen = generate_project(exported, root / f"hls_{precision}", precision=precision, n_vectors=64, layers=True)
    build_project_cached(gen.out_dir)
    res = run_testbench(gen.out_dir)
    assert (res.passed, res.failed) == (64, 0), res.first_mismatch


def _fails_with_one_line(args, capsys, *needles):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("cmamba-hls: error:"), err
    for needle in needles:
        assert needle in err, err


def test_bad_input_is_one_line_and_writes_nothing(qat_inputs, tmp_path, capsys):
    root, model_dir, csv = qat_inputs
    out = tmp_path / "out"
    raw = tmp_path / "raw"
    shutil.copytree(model_dir, raw)
    meta = json.loads((raw / "model.json").read_text())
    meta.pop("quant")
    (raw / "model.json").write_text(json.dumps(meta))
    _fails_with_one_line(
        ["qat", str(raw), "--data", str(csv), "--precision", "int8", "--out", str(out)],
        capsys,
        "no INT8 parameters",
        "calibrate",
    )
    only16 = tmp_path / "only16"
    shutil.copytree(model_dir, only16)
    meta = json.loads((only16 / "model.json").read_text())
    del meta["quant"]["int8"]
    (only16 / "model.json").write_text(json.dumps(meta))
    _fails_with_one_line(
        ["qat", str(only16), "--data", str(csv), "--precision", "int8", "--out", str(out)], capsys, "INT8"
    )
    wrong = write_series(tmp_path / "wrong.csv", ["a", "b", "c"])
    _fails_with_one_line(
        ["qat", str(model_dir), "--data", str(wrong), "--precision", "int16", "--out", str(out)], capsys, "column"
    )
    nan = write_series(tmp_path / "nan.csv", load_model(model_dir).graph.input_columns, nan_at=50)
    _fails_with_one_line(
        ["qat", str(model_dir), "--data", str(nan), "--precision", "int16", "--out", str(out)], capsys, "line"
    )
    _fails_with_one_line(
        ["qat", str(model_dir), "--data", str(csv), "--precision", "int4", "--out", str(out)], capsys, "--precision"
    )
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["nan.csv", "only16", "raw", "wrong.csv"]


def test_interrupted_qat_leaves_no_directory(qat_inputs, tmp_path, monkeypatch, capsys):
    root, model_dir, csv = qat_inputs
    steps = []

    def interrupt(self):
        steps.append(1)
        if len(steps) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(QATNetwork, "constrain", interrupt)
    out = tmp_path / "out"
    assert (
        main(
            ["qat", str(model_dir), "--data", str(csv), "--precision", "int8", "--out", str(out), "--batch-size", "32"]
        )
        == 130
    )
    assert "interrupted" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_uncalibrated_network_error_names_calibrate(tmp_path):
    model = load_model(make_random_model(tmp_path / "m"))
    with pytest.raises(QuantizationError, match="calibrate"):
        QATNetwork(model, "int16")


def test_an_op_without_a_surrogate_is_refused_before_training(tmp_path):
    """An S6 block's scan has no QAT surrogate (backward) yet: the error names the layer, up front."""
    from tests.conftest import make_calibrated

    model = make_calibrated(tmp_path / "s6", block="s6", n_cal=32)
    with pytest.raises(UnsupportedError, match=r"layer 'blk0\.[a-z_0-9]*scan[a-z_0-9]*'.*s6"):
        QATNetwork(model, "int8")
