"""`cmamba-hls sweep` end to end on a tiny random model: rows, Pareto marks, resume, failed points,
bad input (one line, exit 2, nothing written), and the same bytes on a 2-worker Dask cluster."""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import pytest

from cmamba_hls import sweep_point
from cmamba_hls.cli import main
from cmamba_hls.sweep_point import METRIC_COLUMNS
from cmamba_hls.sweep_results import JOURNAL, KEY_COLUMNS, RESULT_COLUMNS
from intsim.synth import make_random_model
from tests.test_cli import write_series_csv

SPACE = {
    "precision": ["int16", "int8"],
    "formats": ["q88", "auto"],
    "calib_windows": 16,
    "interface": ["memory", "stream"],
}
N_POINTS = 6  # int16: 2 formats x 2 interfaces; int8: 2 interfaces


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    model = make_random_model(root / "tiny", seed=3)
    data = write_series_csv(root / "series.csv", ["ch0", "ch1", "ch2"])
    space = root / "space.json"
    space.write_text(json.dumps(SPACE))
    return model, data, space


def sweep(capsys, model, data, space, out, *extra):
    rc = main(
        [
            "sweep",
            str(model),
            "--data",
            str(data),
            "--space",
            str(space),
            "--out",
            str(out),
            "--max-windows",
            "8",
            *map(str, extra),
        ]
    )
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def without_timings(path: Path) -> list[list[str]]:
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    keep = [i for i, c in enumerate(rows[0]) if c != "seconds"]
    return [[r[i] for i in keep] for r in rows]


@pytest.fixture(scope="module")
def in_process(setup, tmp_path_factory):
    model, data, space = setup
    out = tmp_path_factory.mktemp("in_process") / "sweep"
    rc = main(
        [
            "sweep",
            str(model),
            "--data",
            str(data),
            "--space",
            str(space),
            "--out",
            str(out),
            "--max-windows",
            "8",
            "--workers",
            "0",
        ]
    )
    assert rc == 0
    return out


def test_one_row_per_point_with_metrics_estimate_and_pareto_marks(in_process):
    rows = read_rows(in_process / "results.csv")
    assert list(rows[0]) == list(RESULT_COLUMNS)
    assert len(rows) == N_POINTS and [r["point"] for r in rows] == [str(i) for i in range(1, N_POINTS + 1)]
    assert all(r["status"] == "ok" and r["error"] == "" and r["windows"] == "8" for r in rows)
    for r in rows:
        assert float(r["mse"]) > 0 and float(r["mse_vs_fp32"]) >= 0 and float(r["maxae_vs_fp32_lsb"]) >= 0
        assert int(r["dsp"]) > 0 and int(r["cycles"]) > 0 and int(r["bram18"]) >= 0 and float(r["seconds"]) > 0
    by_interface = {(r["precision"], r["formats"], r["interface"]): r for r in rows}
    mem, stream = by_interface[("int16", "q88", "memory")], by_interface[("int16", "q88", "stream")]
    assert mem["mse"] == stream["mse"] and int(stream["cycles"]) < int(mem["cycles"])  # same numbers, other top
    assert {r["formats"] for r in rows if r["precision"] == "int8"} == {"-"}
    for col, cost in (("pareto_dsp", "dsp"), ("pareto_latency", "latency_us"), ("pareto_interval", "interval_us")):
        marked = [r for r in rows if r[col] == "1"]
        assert marked and all(r[col] in "01" for r in rows)
        for r in marked:  # nothing is at least as good on both axes and better on one
            assert not any(
                float(q["mse"]) <= float(r["mse"])
                and float(q[cost]) <= float(r[cost])
                and (float(q["mse"]), float(q[cost])) != (float(r["mse"]), float(r[cost]))
                for q in rows
            )
    assert (in_process / "pareto.png").stat().st_size > 0
    assert len(read_rows(in_process / JOURNAL)) == N_POINTS


def test_points_agree_with_eval_of_a_calibrated_copy(setup, in_process, tmp_path, capsys):
    """A point's numbers are `calibrate` + `eval` of the same knobs on a copy of the model."""
    model, data, _ = setup
    row = next(r for r in read_rows(in_process / "results.csv") if r["precision"] == "int16" and r["formats"] == "auto")
    copy = Path(shutil.copytree(model, tmp_path / "copy"))
    assert main(["calibrate", str(copy), "--data", str(data), "--formats", "auto", "--max-windows", "16"]) == 0
    assert (
        main(
            [
                "eval",
                str(copy),
                "--data",
                str(data),
                "--mode",
                "bittrue",
                "--max-windows",
                "8",
                "--out",
                str(tmp_path / "eval"),
            ]
        )
        == 0
    )
    capsys.readouterr()
    metrics = {(r["mode"], r["metric"], r["channel"]): r["value"] for r in read_rows(tmp_path / "eval" / "metrics.csv")}
    for name in ("mse", "mae", "mse_vs_fp32", "maxae_vs_fp32_lsb", "saturations"):
        assert metrics[("bittrue", name, "all")] == row[name], name


def test_resume_runs_only_unfinished_points_and_keeps_failed_ones(setup, in_process, tmp_path, capsys, monkeypatch):
    model, data, space = setup
    out = tmp_path / "sweep"
    shutil.copytree(in_process, out)
    lines = (out / JOURNAL).read_text().splitlines(keepends=True)
    (out / JOURNAL).write_text("".join(lines[:3]) + lines[3][:20])  # 2 rows kept, a torn third one
    real = sweep_point._measure

    def flaky(entry, ctx, values):
        if values["interface"] == "stream" and values["precision"] == "int8":
            raise ValueError("synthetic failure\nsecond line")
        return real(entry, ctx, values)

    monkeypatch.setattr(sweep_point, "_measure", flaky)
    rc, stdout, _ = sweep(capsys, model, data, space, out, "--workers", 0)
    assert rc == 1 and f"2 already in {out / JOURNAL}, {N_POINTS - 2} to run" in stdout
    rows = read_rows(out / "results.csv")
    failed = [r for r in rows if r["status"] == "error"]
    assert len(rows) == N_POINTS and len(failed) == 1
    assert failed[0]["error"] == "ValueError: synthetic failure" and failed[0]["mse"] == failed[0]["pareto_dsp"] == ""
    measured = ("point",) + KEY_COLUMNS + METRIC_COLUMNS
    before = {r["point"]: [r[c] for c in measured] for r in read_rows(in_process / "results.csv")}
    assert all([r[c] for c in measured] == before[r["point"]] for r in rows if r["status"] == "ok")
    monkeypatch.setattr(sweep_point, "_measure", real)
    rc, stdout, _ = sweep(capsys, model, data, space, out, "--workers", 0)
    assert rc == 1 and f"{N_POINTS} already in" in stdout and ", 0 to run" in stdout
    rc, stdout, err = sweep(capsys, model, data, space, out, "--workers", 0, "--retry-failed")
    assert rc == 0 and ", 1 to run" in stdout
    # stderr is not a terminal here: one progress line at the end instead of a bar
    assert "sweep: 1/1 points (100.0 %), 0 error(s)," in err and "min left" in err
    assert without_timings(out / "results.csv") == without_timings(in_process / "results.csv")


def test_an_interrupted_sweep_leaves_readable_results_and_resumes(setup, in_process, tmp_path, capsys, monkeypatch):
    model, data, space = setup
    out = tmp_path / "sweep"
    real, calls = sweep_point._measure, []

    def interrupted(entry, ctx, values):
        calls.append(values)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(entry, ctx, values)

    monkeypatch.setattr(sweep_point, "_measure", interrupted)
    rc, _, err = sweep(capsys, model, data, space, out, "--workers", 0)
    lines = err.strip().splitlines()  # progress lines (stderr is not a terminal) may come first
    assert rc == 130 and lines[-1] == "cmamba-hls: interrupted"
    assert all(line.startswith("sweep: ") for line in lines[:-1]), err
    rows = read_rows(out / "results.csv")
    assert len(rows) == 2 == len(read_rows(out / JOURNAL)) and all(r["status"] == "ok" for r in rows)
    monkeypatch.setattr(sweep_point, "_measure", real)
    rc, stdout, _ = sweep(capsys, model, data, space, out, "--workers", 0)
    assert rc == 0 and f", {N_POINTS - 2} to run" in stdout
    assert without_timings(out / "results.csv") == without_timings(in_process / "results.csv")


def test_a_sweep_directory_with_other_settings_is_refused(setup, in_process, tmp_path, capsys):
    model, data, space = setup
    out = tmp_path / "sweep"
    shutil.copytree(in_process, out)
    before = (out / "results.csv").read_bytes()
    rc, _, err = sweep(capsys, model, data, space, out, "--workers", 0, "--split", "val")
    assert rc == 2 and "other evaluation settings" in err and "split 'test' there, 'val' now" in err
    assert (out / "results.csv").read_bytes() == before


@pytest.mark.parametrize(
    "case, words",
    [
        ({"colour": [1]}, ["unknown knob", "colour"]),
        ({"interface": ["axi"]}, ["interface", "axi"]),
        ({}, ["empty"]),
        ({"precision": []}, ["empty"]),
        ({"reuse_layer": ["nolayer=2"]}, ["reuse_layer", "nolayer"]),
        ({"frac_offset_layer": ["nothing*=1"]}, ["frac_offset_layer", "nothing*"]),
        ("no-calibration-data", ["records no training data file", "--data"]),
        ("unreachable", ["cannot reach the Dask scheduler", "tcp://127.0.0.1:9"]),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(setup, tmp_path, capsys, case, words):
    model, data, space = setup
    out = tmp_path / "out"
    args = ["sweep", str(model), "--space", str(space), "--out", str(out)]
    if case == "no-calibration-data":  # a random model names no training data: --data is needed
        pass
    elif case == "unreachable":
        args += ["--data", str(data), "--scheduler", "tcp://127.0.0.1:9", "--connect-timeout", "1"]
    else:
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps(case))
        args = ["sweep", str(model), "--data", str(data), "--space", str(bad), "--out", str(out)]
    rc = main(args)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and all(w in lines[0] for w in words), err
    assert not out.exists()


def test_without_the_extra_one_line_names_it(setup, tmp_path, capsys, monkeypatch):
    model, data, space = setup
    monkeypatch.setitem(sys.modules, "distributed", None)
    rc, _, err = sweep(capsys, model, data, space, tmp_path / "out")
    assert rc == 2 and err.strip() == (
        "cmamba-hls: error: cmamba-hls sweep needs the 'sweep' extra (Dask, PyYAML): pip install 'cmamba-hls[sweep]'"
    )
    monkeypatch.setitem(sys.modules, "yaml", None)
    yaml_space = tmp_path / "s.yaml"
    yaml_space.write_text("precision: int16\n")
    rc, _, err = sweep(capsys, model, data, yaml_space, tmp_path / "out", "--workers", 0)
    assert rc == 2 and "'sweep' extra" in err and not (tmp_path / "out").exists()


def test_a_two_worker_cluster_gives_the_same_bytes_and_loads_once_per_worker(setup, in_process, tmp_path, capsys):
    from dask.distributed import Client, LocalCluster

    model, data, space = setup
    out = tmp_path / "sweep"
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        rc, stdout, _ = sweep(capsys, model, data, space, out, "--scheduler", cluster.scheduler_address)
        loads = client.run(sweep_point.cache_loads)
    assert rc == 0 and "on 2 Dask worker(s)" in stdout
    assert without_timings(out / "results.csv") == without_timings(in_process / "results.csv")
    assert len(loads) == 2 and all(set(n.values()) <= {1} for n in loads.values())
    assert sum(len(n) for n in loads.values()) >= 1
