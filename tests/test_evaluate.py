"""cmamba_hls.evaluate as a library (the API `cmamba-hls demo` uses): summary keys, metric
definitions, data selection, modes, and the all-or-nothing report write."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from cmamba_hls import report_plots
from cmamba_hls.evaluate import REPORT_FILES, SUMMARY_KEYS, evaluate, load_eval_data, parse_modes, resolve_data_path
from intsim import load_model
from intsim.data import load_splits
from intsim.errors import DataError, UnsupportedError
from tests.test_cli import write_series_csv

COLUMNS = ["ch0", "ch1", "ch2"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_series_csv(tmp_path_factory.mktemp("eval_data") / "series.csv", COLUMNS, seed=5)


@pytest.fixture(scope="module")
def windows(tiny_model, data):
    return load_eval_data(tiny_model, data, "test")


def test_summary_has_the_demo_keys_and_the_metric_definitions(tiny_model, windows):
    x, y = windows
    rep = evaluate(tiny_model, x, y, progress=False, batch=7)
    assert [r["mode"] for r in rep.summary] == ["fp32", "quant16", "bittrue", "quant8"]
    assert rep.files == [] and rep.out_dir is None and rep.n_samples == len(x)
    xn = tiny_model.normalize_input(x)
    ref = tiny_model.run(xn, "fp32").output
    y_norm = (y - tiny_model.graph.norm_out_mean[:, None]) / tiny_model.graph.norm_out_std[:, None]
    for row in rep.summary:
        assert tuple(row)[: len(SUMMARY_KEYS)] == SUMMARY_KEYS
        res = tiny_model.run(xn, row["mode"])
        np.testing.assert_array_equal(rep.predictions[row["mode"]], res.output)  # batching changes nothing
        pred = tiny_model.denormalize_output(res.output)
        assert row["mse"] == pytest.approx(np.mean((pred - y) ** 2), rel=1e-12)
        assert row["mae"] == pytest.approx(np.mean(np.abs(pred - y)), rel=1e-12)
        assert row["mse_norm"] == pytest.approx(np.mean((res.output - y_norm) ** 2), rel=1e-12)
        assert row["rmse_vs_fp32"] == pytest.approx(np.sqrt(np.mean((res.output - ref) ** 2)), rel=1e-12, abs=0)
        maxae = np.max(np.abs(res.output - ref))
        assert row["maxae_vs_fp32"] == maxae
        lsb = {"fp32": None, "quant16": 2.0**-8, "bittrue": res.output_lsb, "quant8": res.output_lsb}[row["mode"]]
        assert row["maxae_vs_fp32_lsb"] == (maxae / lsb if lsb else 0.0)
        assert row["saturations"] == sum(s["saturations"] for s in res.stats.values())
        assert row["samples_per_second"] > 0
    per_channel = [r for r in rep.metrics if r["mode"] == "bittrue" and r["metric"] == "mae"]
    assert [r["channel"] for r in per_channel] == COLUMNS + ["all"]
    assert np.mean([r["value"] for r in per_channel[:-1]]) == pytest.approx(per_channel[-1]["value"], rel=1e-12)


def test_parse_modes_order_duplicates_and_all():
    assert parse_modes("all") == ("fp32", "quant16", "bittrue", "quant8")
    assert parse_modes(["quant8", "bittrue", "quant8"]) == ("quant8", "bittrue")
    assert parse_modes("bittrue,all") == ("bittrue", "fp32", "quant16", "quant8")
    with pytest.raises(UnsupportedError, match="unknown mode 'q4'"):
        parse_modes("fp32,q4")


def test_load_eval_data_windows_and_max_windows(tiny_model, data):
    full = load_splits(data, COLUMNS, lookback=16, horizon=4)
    x, y = load_eval_data(tiny_model, data, "val")
    np.testing.assert_array_equal(x, full["val"][0])
    np.testing.assert_array_equal(y, full["val"][1])
    xs, ys = load_eval_data(tiny_model, data, "train", max_windows=5)
    idx = [0, 48, 95, 142, 190]  # np.rint(linspace(0, 190, 5)): evenly spaced, ends included
    np.testing.assert_array_equal(xs, full["train"][0][idx])
    np.testing.assert_array_equal(ys, full["train"][1][idx])
    with pytest.raises(DataError, match="unknown split"):
        load_eval_data(tiny_model, data, "holdout")


def test_training_data_is_found_beside_the_model(tmp_path, tiny_model, data):
    model_dir = shutil.copytree(tiny_model.graph.path, tmp_path / "m")
    model = load_model(model_dir)
    with pytest.raises(DataError, match="records no training data file"):
        resolve_data_path(model)
    model.graph.raw["training"] = {"data": {"file": "series.csv"}}
    with pytest.raises(DataError, match="pass --data"):
        resolve_data_path(model)
    shutil.copy(data, tmp_path / "series.csv")
    assert resolve_data_path(model) == tmp_path / "series.csv"


def test_bad_arrays_are_data_errors(tiny_model, windows):
    x, y = windows
    with pytest.raises(DataError, match="y_raw"):
        evaluate(tiny_model, x, y[:, :2], modes=("fp32",), progress=False)
    x = x.copy()
    x[0, 0, 0] = np.inf
    with pytest.raises(DataError, match="NaN/Inf"):
        evaluate(tiny_model, x, y, modes=("fp32",), progress=False)


def test_report_is_all_or_nothing(tmp_path, tiny_model, windows, monkeypatch):
    x, y = windows
    out_dir = tmp_path / "report"
    rep = evaluate(tiny_model, x[:6], y[:6], modes=("bittrue",), out_dir=out_dir, progress=False)
    assert rep.files == [out_dir / name for name in REPORT_FILES] and all(p.is_file() for p in rep.files)
    before = {p.name: p.read_bytes() for p in out_dir.iterdir()}

    def broken(*args, **kwargs):
        raise RuntimeError("plot failed")

    monkeypatch.setattr(report_plots, "forecast", broken)
    with pytest.raises(RuntimeError, match="plot failed"):
        evaluate(tiny_model, x[:3], y[:3], modes=("quant8",), out_dir=out_dir, progress=False)
    assert {p.name: p.read_bytes() for p in out_dir.iterdir()} == before  # old report intact
    assert [p.name for p in tmp_path.iterdir()] == ["report"]  # no temp folder left
