"""Output directories (intsim/manifest.py): a command writes only into a directory that is new,
empty or proven its own by a manifest; a re-run replaces exactly the files it wrote before and
leaves everything else (issue 13, item 1). codegen, eval, compare and demo all follow it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cmamba_hls.cli import main
from cmamba_hls.evaluate import REPORT_DIR, REPORT_FILES, evaluate, load_eval_data
from codegen.project import MARKER, PROJECT_DIR, generate_project
from intsim.manifest import DirKind, OutputDirError, claim, owned_files, publish, read_manifest, staged
from tests.test_cli import assert_one_error_line, cli, write_series_csv

KIND = DirKind("out.json", "test output", 1, "the test output", "test")


def write(out, files: dict, kind=KIND):
    with staged(out, kind) as tmp:
        for rel, text in files.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_text(text)
        return publish(tmp, out, kind, {"note": "meta"})


def tree(root) -> dict:
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def test_new_directory_gets_the_files_and_a_manifest_listing_them(tmp_path):
    written = write(tmp_path / "o", {"a.txt": "1", "sub/b.txt": "2"})
    assert written == [tmp_path / "o" / "a.txt", tmp_path / "o" / "sub" / "b.txt", tmp_path / "o" / "out.json"]
    manifest = read_manifest(tmp_path / "o", KIND)
    assert manifest == {"format": "test output", "version": 1, "files": ["a.txt", "sub/b.txt"], "note": "meta"}
    assert [p.name for p in tmp_path.iterdir()] == ["o"]  # no temporary left


def test_rewrite_replaces_only_its_own_files(tmp_path):
    out = tmp_path / "o"
    write(out, {"a.txt": "1", "old/stale.txt": "x", "sub/b.txt": "2"})
    (out / "notes.txt").write_text("mine")
    (out / "sub" / "user.txt").write_text("mine too")
    (out / "vitis_prj").mkdir()
    (out / "vitis_prj" / "x.log").write_text("log")
    write(out, {"a.txt": "new", "sub/b.txt": "new", "c.txt": "3"})
    assert tree(out) == {
        "a.txt": "new",
        "c.txt": "3",
        "notes.txt": "mine",
        "out.json": (out / "out.json").read_text(),
        "sub/b.txt": "new",
        "sub/user.txt": "mine too",
        "vitis_prj/x.log": "log",
    }
    assert not (out / "old").exists()  # its emptied folder goes too
    assert read_manifest(out, KIND)["files"] == ["a.txt", "c.txt", "sub/b.txt"]


def test_an_empty_directory_is_used(tmp_path):
    (tmp_path / "o").mkdir()
    write(tmp_path / "o", {"a.txt": "1"})
    assert owned_files(tmp_path / "o", KIND) == ["a.txt"]


@pytest.mark.parametrize(
    "manifest",
    [
        None,  # no manifest at all
        "{}",  # a file merely named like it
        "not json",
        json.dumps({"format": "test output", "version": 1}),  # no file list
        json.dumps({"format": "test output", "version": 99, "files": []}),  # unknown version
        json.dumps({"format": "other tool", "version": 1, "files": []}),
        json.dumps({"format": "test output", "version": 1, "files": ["../escape.txt"]}),
        json.dumps({"format": "test output", "version": 1, "files": ["/etc/passwd"]}),
    ],
)
def test_a_directory_without_a_proving_manifest_is_refused(tmp_path, manifest):
    out = tmp_path / "o"
    out.mkdir()
    (out / "a.txt").write_text("user's")
    if manifest is not None:
        (out / "out.json").write_text(manifest)
    before = tree(out)
    with pytest.raises(OutputDirError, match="not written by cmamba-hls test.*refusing to touch it"):
        write(out, {"a.txt": "ours"})
    assert tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o"]


def test_a_file_it_did_not_write_is_never_overwritten(tmp_path):
    out = tmp_path / "o"
    write(out, {"a.txt": "1"})
    (out / "b.txt").write_text("user's")
    with pytest.raises(OutputDirError, match="b.txt exist.*did not write it"):
        write(out, {"a.txt": "2", "b.txt": "ours"})
    assert (out / "b.txt").read_text() == "user's" and (out / "a.txt").read_text() == "1"


def test_claim_then_nested_writer(tmp_path):
    out = tmp_path / "o"
    claim(out, KIND)
    write(out / "inner", {"x.txt": "1"}, DirKind("in.json", "inner", 1, "the inner", "inner"))
    write(out, {"a.txt": "1"})
    assert owned_files(out, KIND) == ["a.txt"] and (out / "inner" / "x.txt").is_file()


# ------------------------------------------------------------------ the commands
def test_codegen_refuses_a_directory_that_merely_holds_a_project_json(tiny_model, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / MARKER).write_text(json.dumps({"name": "my own project", "types": "stdint"}))
    (out / "design.cpp").write_text("// my code")
    rc = main(["codegen", str(tiny_model.graph.path), "--out", str(out), "--vectors", "5"])
    assert rc == 2
    assert tree(out) == {MARKER: json.dumps({"name": "my own project", "types": "stdint"}), "design.cpp": "// my code"}


def test_codegen_regeneration_keeps_user_files_and_drops_its_stale_ones(tiny_model, tmp_path):
    out = tmp_path / "prj"
    generate_project(tiny_model, out, n_vectors=5, layers=True)
    assert (out / "tb_data" / "layers").is_dir()
    (out / "NOTES.md").write_text("my notes")
    (out / "cmamba_int16_prj" / "solution1").mkdir(parents=True)
    (out / "cmamba_int16_prj" / "solution1" / "csynth.rpt").write_text("report")
    gen = generate_project(tiny_model, out, n_vectors=7, layers=False)
    assert (out / "NOTES.md").read_text() == "my notes"
    assert (out / "cmamba_int16_prj" / "solution1" / "csynth.rpt").read_text() == "report"
    assert not (out / "tb_data" / "layers").exists()  # written by the first run only
    assert np.load(out / "tb_data" / "input.npy").shape[0] == 7
    manifest = read_manifest(out, PROJECT_DIR)
    assert sorted(out / f for f in manifest["files"] + [MARKER]) == sorted(gen.files)
    assert manifest["n_vectors"] == 7 and manifest["types"] == "stdint"


def test_eval_never_overwrites_a_users_metrics_csv(capsys, tiny_model, tmp_path):
    data = write_series_csv(tmp_path / "series.csv", ["ch0", "ch1", "ch2"])
    mine = tmp_path / "analysis"
    mine.mkdir()
    (mine / "metrics.csv").write_text("my,own\n1,2\n")
    rc, out, err = cli(
        capsys, "eval", tiny_model.graph.path, "--data", data, "--mode", "fp32", "--out", mine, "--max-windows", 4
    )
    assert_one_error_line(rc, err, "cannot write the report", "not written by cmamba-hls eval", "report.json")
    assert tree(mine) == {"metrics.csv": "my,own\n1,2\n"}
    # a report directory of its own is rewritten in place, extra files kept
    x, y = load_eval_data(tiny_model, data, "test", max_windows=4)
    report_dir = tmp_path / "report"
    evaluate(tiny_model, x, y, modes=("fp32",), out_dir=report_dir, progress=False)
    (report_dir / "README.txt").write_text("kept")
    evaluate(tiny_model, x, y, modes=("fp32",), out_dir=report_dir, progress=False)
    assert sorted(p.name for p in report_dir.iterdir()) == sorted(REPORT_FILES + (REPORT_DIR.manifest, "README.txt"))


@pytest.mark.parametrize("command", ["demo", "compare"])
def test_demo_and_compare_refuse_a_foreign_out_directory(capsys, tiny_model, tmp_path, command):
    mine = tmp_path / "mine"
    (mine / "model").mkdir(parents=True)
    (mine / "model" / "model.json").write_text("my file")
    argv = ["demo", "--skip-hls"] if command == "demo" else ["compare", tiny_model.graph.path]
    rc, _, err = cli(capsys, *argv, "--out", mine)
    assert_one_error_line(rc, err, f"not written by cmamba-hls {command}")
    assert tree(mine) == {"model/model.json": "my file"}


@pytest.mark.parametrize("command", ["codegen", "eval", "compare"])
@pytest.mark.parametrize("where", ["/proc/x", "FILE/sub", "FILE"])
def test_unwritable_out_is_one_error_line(capsys, tiny_model, tmp_path, command, where):
    data = write_series_csv(tmp_path / "series.csv", ["ch0", "ch1", "ch2"])
    (tmp_path / "FILE").write_text("a file")
    out = where if where.startswith("/") else tmp_path / where
    extra = {
        "codegen": ["--vectors", 3],
        "eval": ["--data", data, "--mode", "fp32", "--max-windows", 4],
        "compare": ["--vectors", 3],
    }[command]
    rc, _, err = cli(capsys, command, tiny_model.graph.path, "--out", out, *extra)
    reason = {
        "/proc/x": "to '/proc/x': ",
        "FILE/sub": "is a file, not a directory",
        "FILE": "exists and is not a directory",
    }[where]
    what = {"codegen": "the project", "eval": "the report", "compare": "the compare report"}[command]
    assert_one_error_line(rc, err, f"cannot write {what}", reason)
    assert (tmp_path / "FILE").read_text() == "a file"
