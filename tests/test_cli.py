"""`cmamba-hls info | calibrate | eval` through cmamba_hls.cli.main on tiny models in tmp dirs:
files, CSV columns and values; bad arguments give one error line, exit 2, no partial files."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cmamba_hls.cli import main
from cmamba_hls.evaluate import (
    FORMATS_COLUMNS,
    LAYERS_COLUMNS,
    METRICS_COLUMNS,
    REPORT_DIR,
    REPORT_FILES,
    load_eval_data,
)
from intsim import load_model
from intsim.calibrate import calibrate
from intsim.synth import make_random_model

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "examples" / "default"
N_ROWS = 300  # train 210 / val 30 / test 60 rows: >= 1 window (16 + 4) in every split


def write_series_csv(
    path: Path, columns, n_rows: int = N_ROWS, seed: int = 0, nan_at=None, bad_value: float = np.nan
) -> Path:
    """A smooth multichannel series with a timestamp column (which loaders must skip);
    `bad_value` (default NaN) at row/column `nan_at`."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_rows)
    values = np.stack(
        [np.sin(t / (5.0 + c)) * (1 + c) + 0.1 * rng.standard_normal(n_rows) for c in range(len(columns))], axis=1
    )
    if nan_at is not None:
        values[nan_at] = bad_value
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", *columns])
        for i, row in enumerate(values):
            w.writerow([i, *(repr(float(v)) for v in row)])
    return path


def read_csv(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames), list(reader)


def cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_error_line(rc: int, err: str, *words: str) -> None:
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("cmamba-hls: error: ")
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0], lines[0]


@pytest.fixture
def tiny(tmp_path):
    """An uncalibrated random model (C_in = 3, L = 16, H = 4) and a CSV with its columns."""
    model_dir = make_random_model(tmp_path / "tiny", seed=3)
    data = write_series_csv(tmp_path / "series.csv", ["ch0", "ch1", "ch2"])
    return model_dir, data


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """The tiny model calibrated by the CLI (module-wide: tests only read it)."""
    root = tmp_path_factory.mktemp("cli_calibrated")
    model_dir = make_random_model(root / "tiny", seed=3)
    data = write_series_csv(root / "series.csv", ["ch0", "ch1", "ch2"])
    assert main(["calibrate", str(model_dir), "--data", str(data)]) == 0
    return model_dir, data


# ---------------------------------------------------------------- help, info
@pytest.mark.parametrize("command", ["info", "calibrate", "eval"])
def test_help_of_each_subcommand(capsys, command):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: cmamba-hls {command}") and "MODEL" in out


def test_info_shows_layers_totals_normalisation_and_calibration(capsys, tiny, calibrated):
    rc, out, _ = cli(capsys, "info", tiny[0])
    assert rc == 0
    graph = load_model(tiny[0]).graph
    for layer in graph.layers:
        assert f" {layer.name} " in out
    assert f"{graph.n_weights():,} weights" in out
    assert "calibration INT16: none" in out and "cmamba-hls calibrate" in out
    assert "training: not recorded" in out
    rc, out, _ = cli(capsys, "info", calibrated[0])
    assert rc == 0
    assert "calibration INT16: method maxabs, formats q88" in out and "Q8.8" in out
    assert "calibration INT8:  method maxabs, RMSNorm v2" in out


def test_info_shows_training_metrics_of_the_shipped_model(capsys):
    rc, out, _ = cli(capsys, "info", SHIPPED)
    assert rc == 0
    record = json.loads((SHIPPED / "model.json").read_text())["training"]
    assert f"model.test.mse = {record['metrics']['model']['test']['mse']:.6g}" in out
    assert "daphnet_S06R02E0.csv.gz" in out


# ----------------------------------------------------------------- calibrate
def test_calibrate_matches_the_library_and_prints_its_table(capsys, tiny):
    model_dir, data = tiny
    rc, out, _ = cli(
        capsys,
        "calibrate",
        model_dir,
        "--data",
        data,
        "--formats",
        "auto",
        "--method",
        "p99",
        "--int8-method",
        "p99.9",
        "--int8-rmsnorm",
        "v1",
        "--max-windows",
        50,
    )
    assert rc == 0
    saved = json.loads((model_dir / "model.json").read_text())["quant"]
    assert saved["int16"]["method"] == "p99" and saved["int16"]["formats"] == "auto"
    assert saved["int8"]["method"] == "p99.9" and saved["int8"]["rmsnorm"] == "v1"
    assert saved["stats"]["n_samples"] == 50
    # the same windows through the library give the same parameters
    ref = load_model(model_dir)
    x, _ = load_eval_data(ref, data, "train", max_windows=50)
    expect = calibrate(
        ref, ref.normalize_input(x), method="p99", formats="auto", save=False, int8_method="p99.9", int8_rmsnorm="v1"
    )
    assert saved["int16"]["tensors"] == expect["int16"]["tensors"]
    assert saved["int8"]["tensors"] == expect["int8"]["tensors"]
    # table: one row per tensor with its format; where it wrote
    for name, fmt in expect["int16"]["tensors"].items():
        row = next(line for line in out.splitlines() if line.startswith(name + " "))
        assert f"Q{16 - fmt['frac_bits']}.{fmt['frac_bits']}" in row
    assert f"wrote {model_dir / 'model.json'}" in out
    assert not [p for p in model_dir.iterdir() if p.name.startswith(".tmp")]


def test_calibrate_finds_the_training_data_of_the_shipped_model(capsys, tmp_path):
    model_dir = Path(shutil.copytree(SHIPPED, tmp_path / "default"))
    rc, out, _ = cli(capsys, "calibrate", model_dir, "--max-windows", 16)
    assert rc == 0
    assert f"on 16 train windows of {REPO / 'data' / 'daphnet_S06R02E0.csv.gz'}" in out
    model = load_model(model_dir)
    assert model.graph.quant["int16"]["formats"] == "q88"
    _ = model.program, model.program8


@pytest.mark.parametrize(
    "extra, words",
    [
        ((), ["records no training data file", "--data"]),  # random model: no training record
        (("--data", "missing.csv"), ["missing.csv", "not found"]),
        (("--method", "p50"), ["--method", "p50"]),
        (("--int8-rmsnorm", "v3"), ["--int8-rmsnorm"]),
        (("--max-windows", "0"), ["--max-windows"]),
    ],
)
def test_calibrate_bad_arguments_leave_the_model_untouched(capsys, tiny, extra, words):
    model_dir, _ = tiny
    before = (model_dir / "model.json").read_bytes()
    rc, _, err = cli(capsys, "calibrate", model_dir, *extra)
    assert_one_error_line(rc, err, *words)
    assert (model_dir / "model.json").read_bytes() == before


@pytest.mark.parametrize("formats, noted", [("q88", True), ("auto", False)])
def test_calibrate_says_when_method_cannot_change_the_int16_formats(capsys, tiny, formats, noted):
    model_dir, data = tiny
    rc, _, err = cli(capsys, "calibrate", model_dir, "--data", data, "--method", "p99", "--formats", formats)
    assert rc == 0
    assert ("note: --method p99 does not change the INT16 formats with --formats q88" in err) == noted
    quant = load_model(model_dir).graph.quant
    assert quant["int8"]["method"] == "p99" and quant["int16"]["formats"] == formats


@pytest.mark.parametrize("command", ["calibrate", "eval", "info", "codegen"])
def test_malformed_training_record_is_one_error_line(capsys, tmp_path, tiny, command):
    model_dir, _ = tiny
    raw = json.loads((model_dir / "model.json").read_text())
    raw["training"] = "abc"
    (model_dir / "model.json").write_text(json.dumps(raw))
    extra = ("--out", tmp_path / "o") if command == "codegen" else ()
    rc, _, err = cli(capsys, command, model_dir, *extra)
    assert_one_error_line(rc, err, "model.json", "training: 'abc' is not of type 'object'")


# ---------------------------------------------------------------------- eval
@pytest.mark.parametrize("mode", ["fp32", "quant16", "bittrue", "quant8", "all"])
def test_eval_writes_the_report(capsys, tmp_path, calibrated, mode):
    model_dir, data = calibrated
    out_dir = tmp_path / "report"
    rc, out, err = cli(
        capsys, "eval", model_dir, "--data", data, "--mode", mode, "--out", out_dir, "--max-windows", 24, "--batch", 10
    )
    assert rc == 0, err
    reported = ["fp32", "quant16", "bittrue", "quant8"] if mode == "all" else [mode]
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(REPORT_FILES + (REPORT_DIR.manifest,))
    for name in REPORT_FILES:
        if name.endswith(".png"):
            assert (out_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # stdout: one table row per reported mode (MSE and MAE, original and normalised units), the report dir
    head = next(line for line in out.splitlines() if line.startswith("mode "))
    assert head.split()[:5] == ["mode", "MSE", "MAE", "MSE(norm)", "MAE(norm)"]
    for m in reported:
        row = next(line for line in out.splitlines() if line.startswith(m + " ")).split()
        _, summary_rows = read_csv(out_dir / "metrics.csv")
        mae_norm = next(
            float(r["value"]) for r in summary_rows if (r["mode"], r["metric"], r["channel"]) == (m, "mae_norm", "all")
        )
        assert row[4] == f"{mae_norm:.4f}"
    assert f"report: {out_dir}" in out

    graph = load_model(model_dir).graph
    channels = graph.output_columns + ["all"]
    cols, rows = read_csv(out_dir / "metrics.csv")
    assert tuple(cols) == METRICS_COLUMNS
    assert [r["mode"] for r in rows if r["metric"] == "mse" and r["channel"] == "all"] == reported
    for m in reported:
        got = {(r["metric"], r["channel"]) for r in rows if r["mode"] == m}
        for metric in ("mse", "mae", "mse_norm", "mae_norm", "mse_vs_fp32", "maxae_vs_fp32", "maxae_vs_fp32_lsb"):
            assert {(metric, ch) for ch in channels} <= got
        assert {("saturations", "all"), ("samples", "all"), ("samples_per_second", "all")} <= got
    value = {(r["mode"], r["metric"], r["channel"]): float(r["value"]) for r in rows}
    assert value[(reported[0], "samples", "all")] == 24
    if "fp32" in reported:
        for metric in ("mse_vs_fp32", "mae_vs_fp32", "rmse_vs_fp32", "maxae_vs_fp32"):
            assert all(value[("fp32", metric, ch)] == 0.0 for ch in channels)
    for m in set(reported) - {"fp32"}:
        assert 0 < value[(m, "maxae_vs_fp32", "all")] < 1.0
        assert value[(m, "maxae_vs_fp32_lsb", "all")] >= 1.0

    cols, rows = read_csv(out_dir / "layers.csv")
    assert tuple(cols) == LAYERS_COLUMNS
    assert [(r["mode"], r["layer"]) for r in rows] == [(m, t) for m in reported for t in graph.tensor_names]
    cols, rows = read_csv(out_dir / "formats.csv")
    assert tuple(cols) == FORMATS_COLUMNS
    assert [r["tensor"] for r in rows if r["kind"] == "activation"] == graph.tensor_names
    assert {r["int16_format"] for r in rows} == {"Q8.8"}


def test_eval_bittrue_metrics_agree_with_model_run(capsys, tmp_path, calibrated):
    model_dir, data = calibrated
    out_dir = tmp_path / "report"
    rc, _, _ = cli(capsys, "eval", model_dir, "--data", data, "--mode", "bittrue", "--split", "val", "--out", out_dir)
    assert rc == 0
    model = load_model(model_dir)
    x, y = load_eval_data(model, data, "val")
    res = model.run(model.normalize_input(x), "bittrue")
    ref = model.run(model.normalize_input(x), "fp32")
    pred = model.denormalize_output(res.output)
    _, rows = read_csv(out_dir / "metrics.csv")
    value = {(r["metric"], r["channel"]): float(r["value"]) for r in rows}
    assert value[("samples", "all")] == len(x)
    assert value[("mse", "all")] == pytest.approx(np.mean((pred - y) ** 2), rel=1e-12)
    col1 = model.graph.output_columns[1]
    assert value[("mae", col1)] == pytest.approx(np.mean(np.abs(pred[:, 1] - y[:, 1])), rel=1e-12)
    maxae = np.max(np.abs(res.output - ref.output))
    assert value[("maxae_vs_fp32", "all")] == pytest.approx(maxae, rel=1e-12)
    assert value[("maxae_vs_fp32_lsb", "all")] == pytest.approx(maxae / res.output_lsb, rel=1e-12)
    assert value[("saturations", "all")] == sum(s["saturations"] for s in res.stats.values())
    _, layers = read_csv(out_dir / "layers.csv")
    head = next(r for r in layers if r["layer"] == "head")
    assert float(head["min"]) == res.stats["head"]["min"] and float(head["max"]) == res.stats["head"]["max"]
    assert head["format"] == "Q8.8"


def test_eval_report_has_the_same_files_every_run(capsys, tmp_path, calibrated):
    model_dir, data = calibrated
    out_dir = tmp_path / "report"
    args = ("eval", model_dir, "--data", data, "--mode", "quant8", "--out", out_dir, "--max-windows", 8)
    assert cli(capsys, *args)[0] == 0
    first = {p.name: p.read_bytes() for p in out_dir.iterdir()}
    assert cli(capsys, *args)[0] == 0
    second = {p.name: p.read_bytes() for p in out_dir.iterdir()}
    assert sorted(first) == sorted(second) == sorted(REPORT_FILES + (REPORT_DIR.manifest,))

    def stable(csv_bytes):  # everything but the measured speed
        return [line for line in csv_bytes.decode().splitlines() if "samples_per_second" not in line]

    assert stable(first["metrics.csv"]) == stable(second["metrics.csv"])
    assert first["layers.csv"] == second["layers.csv"] and first["formats.csv"] == second["formats.csv"]


def test_eval_split_sizes_and_part_together(capsys, tmp_path, calibrated):
    model_dir, data = calibrated
    argv = ("eval", model_dir, "--data", data, "--mode", "fp32", "--out", tmp_path / "r")
    rc, out, err = cli(capsys, *argv, "--split", "val", "--split", "0.5,0.25,0.25")
    assert rc == 0, err
    assert "56 val windows" in out  # 75 rows - (16 + 4) + 1
    rc, out, err = cli(capsys, *argv, "--split", "150,60,90")
    assert rc == 0, err
    assert "71 test windows" in out
    rc, _, err = cli(capsys, *argv, "--split", "val", "--split", "test")
    assert_one_error_line(rc, err, "--split given two parts (val, test)")


def test_eval_default_out_dir_is_named_after_the_model(capsys, tmp_path, calibrated, monkeypatch):
    model_dir, data = calibrated
    monkeypatch.chdir(tmp_path)
    rc, out, _ = cli(capsys, "eval", model_dir, "--data", data, "--mode", "fp32", "--max-windows", 4)
    assert rc == 0
    assert (tmp_path / "reports" / "eval" / model_dir.name / "metrics.csv").is_file()


@pytest.mark.parametrize(
    "case, words",
    [
        ("unknown_mode", ["unknown mode 'int4'", "all"]),
        ("missing_model", ["no_such_model", "no model.json"]),
        ("wrong_channels", ["ch2", "3 channel(s)"]),
        ("nan_in_data", ["line 52", "not finite"]),
        ("huge_in_data", ["column 'ch1', line 41", "'1e+300' is beyond what the float model can hold"]),
        ("uncalibrated", ["cmamba-hls calibrate"]),
        ("bad_split", ["--split", "holdout"]),
        ("out_is_a_file", ["cannot write the report", "report"]),
    ],
)
def test_eval_bad_arguments_one_error_line_no_report(capsys, tmp_path, tiny, calibrated, case, words):
    model_dir, data = calibrated
    mode = "all"
    if case == "unknown_mode":
        mode = "bittrue,int4"
    elif case == "missing_model":
        model_dir = tmp_path / "no_such_model"
    elif case == "wrong_channels":
        data = write_series_csv(tmp_path / "two.csv", ["ch0", "ch1"])
    elif case == "nan_in_data":
        data = write_series_csv(tmp_path / "nan.csv", ["ch0", "ch1", "ch2"], nan_at=(50, 2))
    elif case == "huge_in_data":
        data = write_series_csv(tmp_path / "huge.csv", ["ch0", "ch1", "ch2"], nan_at=(39, 1), bad_value=1e300)
    elif case == "uncalibrated":
        model_dir, data = tiny
        mode = "bittrue"
    extra = ("--split", "holdout") if case == "bad_split" else ()
    out_dir = tmp_path / "report"
    if case == "out_is_a_file":
        out_dir.write_text("not a directory")
    rc, out, err = cli(capsys, "eval", model_dir, "--data", data, "--mode", mode, "--out", out_dir, *extra)
    assert_one_error_line(rc, err, *words)
    if case == "out_is_a_file":
        assert out_dir.read_text() == "not a directory"
    else:
        assert not out_dir.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]
