"""model/: torch forward == numpy fp32 reference, export/load round trips, the train CLI.

torch is installed in CI (the 'train' extra); importorskip is only a guard for a
numpy-only install.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the 'train' extra (torch) is not installed")

from cmamba_hls.cli import main  # noqa: E402
from intsim import data as D, load_model  # noqa: E402
from model.cmamba import CMambaSlim  # noqa: E402
from model.export import export_model  # noqa: E402
from model.load import load_torch_model  # noqa: E402
from tests.torch_models import tiny_revin_cmamba  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = REPO / "examples" / "default"
TOL = 1e-5


def torch_forward(module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module.eval()(torch.from_numpy(x.astype(np.float32))).double().numpy()


def randomise_(module, seed: int) -> None:
    """Non-default gains and biases, so RMSNorm gains and every bias are exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim == 1:
                base = 1.0 if name.endswith("norm.weight") or name == "norm_f.weight" else 0.0
                p.copy_(base + 0.3 * torch.randn(p.shape, generator=g))


def identity_norm(c: int) -> dict:
    return {"mean": [0.0] * c, "std": [1.0] * c}


# ------------------------------------------------------- shipped model
def test_shipped_model_reexports_identically_and_matches_fp32(tmp_path):
    """examples/default -> torch -> export: the same graph and weights, and the torch
    forward equals the numpy fp32 reference on the exported copy."""
    shipped = json.loads((DEFAULT_MODEL / "model.json").read_text())
    module = load_torch_model(DEFAULT_MODEL)
    assert module.n_weights() == shipped["training"]["n_weights"] == 93264
    out = export_model(
        module,
        tmp_path / "re",
        shipped["normalization"],
        shipped["input"]["columns"],
        shipped["training"],
        name=shipped["name"],
    )
    again = json.loads((out / "model.json").read_text())
    assert again["layers"] == shipped["layers"]
    for key in ("input", "output", "normalization", "hyper"):
        assert again[key] == shipped[key]
    for f in sorted((DEFAULT_MODEL / "weights").glob("*.npy")):
        np.testing.assert_array_equal(np.load(out / "weights" / f.name), np.load(f), err_msg=f.name)

    x = 1.5 * np.random.default_rng(0).standard_normal((32, 9, 64))
    y_torch = torch_forward(module, x)
    y_ref = load_model(out).run(x, "fp32").output
    assert y_ref.shape == (32, 9, 16)
    assert np.max(np.abs(y_torch - y_ref)) < TOL


# ------------------------------------------------ fresh random modules
DIMS = [
    # odd channel counts, a patch grid that leaves samples over ((L-P) % S != 0), K = 1, 3 blocks
    dict(c_in=3, c_out=3, length=16, patch=4, stride=4, d_model=8, d_inner=16, n_blocks=1, d_conv=4, horizon=4),
    dict(c_in=5, c_out=5, length=23, patch=5, stride=3, d_model=7, d_inner=13, n_blocks=3, d_conv=3, horizon=3),
    dict(c_in=1, c_out=1, length=9, patch=9, stride=2, d_model=6, d_inner=5, n_blocks=2, d_conv=1, horizon=1),
    dict(c_in=2, c_out=2, length=40, patch=3, stride=1, d_model=4, d_inner=9, n_blocks=2, d_conv=5, horizon=7),
    # Mamba-1 (S6) blocks: N states, R = dt_rank (default ceil(D / 16))
    dict(
        c_in=3,
        c_out=3,
        length=16,
        patch=4,
        stride=4,
        d_model=8,
        d_inner=16,
        n_blocks=2,
        d_conv=4,
        horizon=4,
        block="s6",
        d_state=3,
        dt_rank=2,
    ),
    dict(
        c_in=2,
        c_out=2,
        length=21,
        patch=5,
        stride=2,
        d_model=5,
        d_inner=7,
        n_blocks=1,
        d_conv=3,
        horizon=2,
        block="s6",
        d_state=1,
    ),
]


@pytest.mark.parametrize(
    "dims",
    DIMS,
    ids=lambda d: (
        "C{c_in}L{length}P{patch}S{stride}D{d_model}E{d_inner}N{n_blocks}K{d_conv}H{horizon}".format(**d)
        + d.get("block", "")
    ),
)
def test_random_module_export_load_round_trip(tmp_path, dims):
    torch.manual_seed(len(tmp_path.name))
    module = CMambaSlim(**dims)
    randomise_(module, seed=dims["length"])
    cols = [f"ch{i}" for i in range(dims["c_in"])]
    norm = {"mean": list(range(dims["c_in"])), "std": [2.0] * dims["c_in"]}
    export_model(module, tmp_path / "m", norm, cols)

    model = load_model(tmp_path / "m")
    tokens = (dims["length"] - dims["patch"]) // dims["stride"] + 1
    assert model.graph.input_shape == (dims["c_in"], dims["length"])
    assert model.graph.layer("head").shape == (dims["c_out"] * dims["horizon"], 1)
    assert model.graph.layer("patch_embed").shape == (dims["d_model"], tokens)
    assert model.graph.n_weights() == module.n_weights()
    assert len(model.graph.layers) == 3 + (15 if dims.get("block") == "s6" else 12) * dims["n_blocks"]

    x = 2.0 * np.random.default_rng(1).standard_normal((16, dims["c_in"], dims["length"]))
    y_torch = torch_forward(module, x)
    y_ref = model.run(x, "fp32").output
    assert y_ref.shape == (16, dims["c_out"], dims["horizon"])
    assert np.abs(y_ref).max() > 0.1  # a real signal, not all ~0
    assert np.max(np.abs(y_torch - y_ref)) < TOL
    # Host-side normalisation comes from the export.
    np.testing.assert_allclose(
        model.predict(x * 2.0 + np.arange(dims["c_in"])[:, None], "fp32"),
        y_ref * 2.0 + np.arange(dims["c_in"])[:, None],
        rtol=1e-9,
        atol=1e-9,
    )

    # Back into torch: the same function, bit for bit.
    back = load_torch_model(tmp_path / "m")
    np.testing.assert_array_equal(torch_forward(back, x), y_torch)


def test_export_replaces_a_model_and_keeps_other_files(tmp_path):
    dims = DIMS[0]
    out = tmp_path / "m"
    export_model(CMambaSlim(**dims), out, identity_norm(3), ["a", "b", "c"])
    (out / "README.md").write_text("notes")
    second = CMambaSlim(**dims)
    randomise_(second, seed=5)
    export_model(second, out, identity_norm(3), ["a", "b", "c"])
    assert (out / "README.md").read_text() == "notes"
    x = np.random.default_rng(2).standard_normal((4, 3, 16))
    assert np.max(np.abs(load_model(out).run(x).output - torch_forward(second, x))) < TOL
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temp dirs left over


def test_export_refuses_non_finite_weights_and_writes_nothing(tmp_path):
    module = CMambaSlim(**DIMS[0])
    with torch.no_grad():
        module.blocks[0].dt_proj.weight[0, 0, 0] = float("nan")
    with pytest.raises(Exception, match=r"layer 'blk0.dt_proj': weight has non-finite values"):
        export_model(module, tmp_path / "m", identity_norm(3), ["a", "b", "c"])
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------- the train CLI
TINY = [
    "--lookback",
    "16",
    "--horizon",
    "4",
    "--patch",
    "4",
    "--stride",
    "2",
    "--d-model",
    "8",
    "--d-inner",
    "8",
    "--n-blocks",
    "1",
    "--d-conv",
    "3",
    "--epochs",
    "2",
    "--batch-size",
    "32",
    "--threads",
    "1",
]


@pytest.fixture(autouse=True)
def _restore_torch_globals():
    """train() sets torch's thread count and deterministic mode process-wide; put them back."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)


@pytest.fixture(scope="module")
def tiny_csv(tmp_path_factory) -> Path:
    """3 channels of noisy sines (300 rows) + a timestamp and a label column."""
    t = np.arange(300)
    rng = np.random.default_rng(0)
    cols = np.stack([np.sin(t / 5), 10 * np.cos(t / 9) + 3, 0.1 * np.sin(t / 3 + 1)], axis=1)
    cols += 0.05 * rng.standard_normal(cols.shape) * cols.std(axis=0)
    lines = ["timestamp,x,y,z,is_anomaly"]
    lines += [f"{i},{a!r},{b!r},{c!r},0" for i, (a, b, c) in enumerate(cols.tolist())]
    path = tmp_path_factory.mktemp("data") / "tiny.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_train_cli_tiny_model(tmp_path, tiny_csv, capsys):
    out = tmp_path / "model"
    assert main(["train", "--data", str(tiny_csv), "--out", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    assert "CMamba-slim" in printed and "repeat-last" in printed and f"wrote {out}" in printed

    model = load_model(out)
    rec = model.graph.raw["training"]
    assert rec["seed"] == 0 and rec["epochs_run"] == 2 and rec["best_epoch"] in (1, 2)
    assert rec["data"]["columns"] == ["x", "y", "z"]
    assert rec["data"]["split"]["rows"] == {"train": 210, "val": 30, "test": 60}
    assert rec["data"]["split"]["windows"] == {"train": 191, "val": 11, "test": 41}
    assert rec["n_weights"] == model.graph.n_weights()
    m = rec["metrics"]
    values = [m["test_mse"], m["test_mae"], m["test_mse_orig"], m["test_mae_orig"], m["val_mse"]]
    values += [v for b in m["baselines"].values() for split in b.values() for v in split.values()]
    assert all(math.isfinite(v) and v >= 0 for v in values)
    assert all(math.isfinite(g) for g in rec["block_gains"])
    assert rec["command_full"].startswith("cmamba-hls train --data ")

    # The exported model is the trained torch model: fp32 reference == torch forward.
    x = np.random.default_rng(3).standard_normal((8, 3, 16))
    assert np.max(np.abs(model.run(x, "fp32").output - torch_forward(load_torch_model(out), x))) < TOL
    # Normalisation = train-split statistics of the three columns.
    train_rows = np.loadtxt(tiny_csv, delimiter=",", skiprows=1, usecols=(1, 2, 3))[:210]
    np.testing.assert_allclose(model.graph.norm_in_mean, train_rows.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(model.graph.norm_in_std, train_rows.std(axis=0), rtol=1e-12)


def test_train_cli_s6_blocks(tmp_path, tiny_csv, capsys):
    """--block s6: Mamba-1 blocks (docs/model.md), exported as x_proj_dt/B/C, dt_proj, softplus,
    s6_scan; the float reference equals the trained torch module; the integer paths run."""
    out = tmp_path / "s6"
    assert main(["train", "--data", str(tiny_csv), "--out", str(out), *TINY, "--block", "s6", "--d-state", "4"]) == 0
    assert "S6 blocks: N=4 states, R=1" in capsys.readouterr().out
    model = load_model(out)
    hyper = model.graph.raw["hyper"]
    assert (hyper["block"], hyper["d_state"], hyper["dt_rank"]) == ("s6", 4, 1)
    assert [layer.op for layer in model.graph.layers].count("s6_scan") == 1
    assert "--block s6 --d-state 4" in model.graph.raw["training"]["command_full"]
    x = np.random.default_rng(3).standard_normal((8, 3, 16))
    assert np.max(np.abs(model.run(x, "fp32").output - torch_forward(load_torch_model(out), x))) < TOL


def test_train_split_rows_columns_printed_and_reused_by_eval(tmp_path, capsys):
    from cmamba_hls.evaluate import load_eval_data

    lines = ["date,x,y,z,is_anomaly"] + [
        f"2024-01-{1 + i % 28:02d},{math.sin(i / 5)!r},{math.cos(i / 7)!r},{math.sin(i / 3)!r},0" for i in range(300)
    ]
    data = tmp_path / "dated.csv"
    data.write_text("\n".join(lines) + "\n")
    out = tmp_path / "m"
    assert main(["train", "--data", str(data), "--out", str(out), *TINY, "--split", "150,50,80"]) == 0
    printed = capsys.readouterr().out
    assert (
        "data dated.csv: 3 column(s): x, y, z; ignored: date (not numeric (first value '2024-01-01')), "
        "is_anomaly (excluded by name)"
    ) in printed
    assert "split 150,50,80: rows train/val/test = 150/50/80 of 300 (20 rows after the test part unused)" in printed
    model = load_model(out)
    split = model.graph.raw["training"]["data"]["split"]
    assert split["row_counts"] == [150, 50, 80] and split["rows"] == {"train": 150, "val": 50, "test": 80}
    assert "fractions" not in split
    x, _ = load_eval_data(model, data, "test")  # eval and calibrate reuse the recorded split
    assert len(x) == 80 - 16 - 4 + 1
    np.testing.assert_array_equal(x[0, 0], np.sin(np.arange(200, 216) / 5))
    x, _ = load_eval_data(model, data, "test", sizes=D.parse_split("0.5,0.25,0.25"))
    assert len(x) == 75 - 16 - 4 + 1


def _csv(tmp_path, text: str) -> str:
    path = tmp_path / "in.csv"
    path.write_text(text)
    return str(path)


def _rows(n: int, second: str | None = None) -> str:
    return "a,b\n" + "".join(f"{i % 7},{second if second is not None else i % 5}\n" for i in range(n))


BAD = [
    ("missing file", lambda tp: ["--data", str(tp / "nope.csv")], "data file not found"),
    ("unknown column", lambda tp: ["--data", _csv(tp, _rows(200)), "--columns", "a,q"], "unknown column(s) 'q'"),
    (
        "lookback < patch",
        lambda tp: ["--data", _csv(tp, _rows(200)), "--patch", "32"],
        "--patch 32 is longer than --lookback 16",
    ),
    (
        "NaN-only column",
        lambda tp: ["--data", _csv(tp, _rows(200, "nan"))],
        "column 'b', line 2: value 'nan' is not finite",
    ),
    (
        "non-numeric cell",
        lambda tp: ["--data", _csv(tp, _rows(200).replace("\n3,3\n", "\n3,oops\n"))],
        "non-numeric value 'oops'",
    ),
    ("too few rows", lambda tp: ["--data", _csv(tp, _rows(60))], "val split has 6 rows, fewer than one window"),
    (
        "out is a file",
        lambda tp: ["--data", _csv(tp, _rows(200)), "--out", str(tp / "in.csv")],
        "exists and is not a directory",
    ),
    ("zero epochs", lambda tp: ["--data", _csv(tp, _rows(200)), "--epochs", "0"], "--epochs must be positive"),
    ("negative lr", lambda tp: ["--data", _csv(tp, _rows(200)), "--lr", "-1"], "--lr must be positive"),
    ("dropout 1", lambda tp: ["--data", _csv(tp, _rows(200)), "--dropout", "1"], "--dropout must be in [0, 1)"),
    (
        "lookback off the patch grid",
        lambda tp: ["--data", _csv(tp, _rows(200)), "--lookback", "17"],
        "--lookback 17 with --patch 4 --stride 2: the newest 1 sample(s) of every window would never be used",
    ),
    ("split of two", lambda tp: ["--data", _csv(tp, _rows(200)), "--split", "0.5,0.5"], "give three sizes"),
    ("split fractions", lambda tp: ["--data", _csv(tp, _rows(200)), "--split", "0.5,0.3,0.3"], "summing to 1"),
    (
        "split rows",
        lambda tp: ["--data", _csv(tp, _rows(200)), "--split", "150,40,30"],
        "--split 150,40,30 asks for 220 rows; the data has 200",
    ),
]


@pytest.mark.parametrize("case, args, message", BAD, ids=[b[0] for b in BAD])
def test_train_cli_bad_arguments(tmp_path, capsys, case, args, message):
    out = tmp_path / "out"
    rc = main(["train", *TINY, "--out", str(out), *args(tmp_path)])  # a later --out wins
    err = capsys.readouterr().err
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cmamba-hls: error: "), err
    assert message in lines[0]
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no temp dirs


def test_train_cli_refuses_a_foreign_directory_and_keeps_an_old_model(tmp_path, tiny_csv, capsys):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert main(["train", "--data", str(tiny_csv), "--out", str(foreign), *TINY, "--epochs", "1"]) == 2
    captured = capsys.readouterr()
    assert "refusing to write a model into a non-empty directory" in captured.err
    assert captured.out == ""  # refused before training, not after
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    (foreign / "model.json").write_text('{"my": "settings"}')  # merely named model.json
    (foreign / "weights").mkdir()
    (foreign / "weights" / "mine.npy").write_bytes(b"mine")
    assert main(["train", "--data", str(tiny_csv), "--out", str(foreign), *TINY, "--epochs", "1"]) == 2
    assert "no model.json of format 'cmamba-hls-model'" in capsys.readouterr().err
    assert (foreign / "weights" / "mine.npy").read_bytes() == b"mine"

    # A bad run aimed at an existing model leaves it byte for byte as it was.
    model_dir = tmp_path / "m"
    export_model(CMambaSlim(**DIMS[0]), model_dir, identity_norm(3), ["x", "y", "z"])
    before = {p.name: p.read_bytes() for p in sorted(model_dir.rglob("*")) if p.is_file()}
    assert main(["train", "--data", str(tiny_csv), "--out", str(model_dir), "--columns", "x,nope", *TINY]) == 2
    assert {p.name: p.read_bytes() for p in sorted(model_dir.rglob("*")) if p.is_file()} == before


def test_revin_model_exports_and_matches_the_float_reference(tmp_path):
    """RevIN on and a head projection: the exported graph (revin_norm ... head_proj, head, revin_denorm)
    computes module.eval()(x), loads back into torch, and a window shifted and scaled per channel gives
    the forecast shifted and scaled the same way."""
    module = tiny_revin_cmamba(0, head_dim=4)
    export_model(module, tmp_path / "m", None, ["a", "b", "c"])
    model = load_model(tmp_path / "m")
    assert [layer.op for layer in model.graph.layers][:: len(model.graph.layers) - 1] == ["revin_norm", "revin_denorm"]
    x = np.random.default_rng(0).standard_normal((5, 3, 16))
    with torch.no_grad():
        want = module(torch.from_numpy(x).float()).double().numpy()
    got = model.run(x, "fp32").output
    assert np.allclose(got, want, atol=1e-4)
    scale, shift = np.array([2.0, 0.5, 3.0])[None, :, None], np.array([10.0, -4.0, 0.0])[None, :, None]
    moved = model.run(x * scale + shift, "fp32").output.reshape(got.shape)
    assert np.allclose(moved, got * scale + shift, atol=1e-3)
    assert model.graph.layer("head_proj").weights["weight"].shape == (4, 8)
    with torch.no_grad():
        again = load_torch_model(tmp_path / "m")(torch.from_numpy(x).float()).double().numpy()
    assert np.allclose(again, want, atol=1e-6)


@pytest.mark.parametrize("independent", [False, True])
def test_revin_affine_is_folded_into_patch_embed_and_head(tmp_path, independent):
    """A learned RevIN affine has no op: export folds it into the convs around it, and the graph
    (plain revin_norm / revin_denorm) computes the module's function (channel-independent: one
    affine shared by every series)."""
    module = tiny_revin_cmamba(1, head_dim=4, revin_affine=True, channel_independent=independent)
    gain, bias = ([0.5], [0.3]) if independent else ([0.5, 2.0, -1.5], [0.3, -1.0, 0.0])
    with torch.no_grad():
        module.revin.weight.copy_(torch.tensor(gain))
        module.revin.bias.copy_(torch.tensor(bias))
    export_model(module, tmp_path / "m", None, ["a", "b", "c"])
    x = np.random.default_rng(1).standard_normal((4, 3, 16))
    with torch.no_grad():
        want = module(torch.from_numpy(x).float()).double().numpy()
    assert np.allclose(load_model(tmp_path / "m").run(x, "fp32").output, want, atol=1e-4)
    with pytest.raises(ValueError, match="needs --revin"):
        CMambaSlim(c_in=3, c_out=3, length=16, patch=4, stride=4, revin=False, revin_affine=True)


def test_train_cli_channel_independent_end_to_end(tmp_path, tiny_csv, capsys):
    """--channels independent: one series through shared weights (graph input.channel_independent);
    the float reference equals the torch module, a channel's forecast depends on that channel only,
    and calibrate, eval (every mode) and QAT run on it."""
    out = tmp_path / "ci"
    assert main(["train", "--data", str(tiny_csv), "--out", str(out), *TINY, "--channels", "independent"]) == 0
    assert "channels independent" in capsys.readouterr().out
    model = load_model(out)
    assert model.graph.channel_independent and model.graph.body_input_shape == (1, 16)
    assert model.graph.raw["training"]["command_full"].endswith("--channels independent")
    module = load_torch_model(out)
    x = np.random.default_rng(3).standard_normal((8, 3, 16))
    y = torch_forward(module, x)
    assert np.max(np.abs(model.run(x, "fp32").output - y)) < TOL
    x2 = x.copy()
    x2[:, 1] = 5.0 * x2[:, 1] + 1.0  # channel 1 changed: channels 0 and 2 keep their forecasts
    y2 = torch_forward(module, x2)
    assert np.array_equal(y2[:, [0, 2]], y[:, [0, 2]]) and not np.allclose(y2[:, 1], y[:, 1])

    data = ["--data", str(tiny_csv)]
    assert main(["calibrate", str(out), *data]) == 0
    assert main(["eval", str(out), *data, "--mode", "all", "--out", str(tmp_path / "eval")]) == 0
    metrics = (tmp_path / "eval" / "metrics.csv").read_text()
    assert all(mode in metrics for mode in ("fp32", "quant16", "bittrue", "quant8"))
    assert main(["qat", str(out), *data, "--precision", "int8", "--out", str(tmp_path / "qat"), "--epochs", "1"]) == 0
    qat = load_model(tmp_path / "qat")
    assert qat.graph.channel_independent
    res, res_t = qat.run(x, "quant8"), qat.run(x, "quant8", backend="torch")
    assert res_t.output_q.tobytes() == res.output_q.tobytes()
