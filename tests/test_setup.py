"""The Makefile's set-up steps (issue 13 items 10 and 19), run with a fake Python so that nothing
is installed: one line per step, pip's noise only in the install log (shown when a step fails),
and the README's command for the train extra is a real target."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

FAKE_PYTHON = """#!/bin/sh
echo "$*" >> "{calls}"
if [ "$1" = "--version" ]; then echo "Python 3.11.0"; exit 0; fi
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then mkdir -p "$3/bin" && cp "$0" "$3/bin/python"; exit 0; fi
echo "WARNING: Location 'file:///opt/x' is ignored: it is neither a file nor a directory." >&2
echo "Collecting numpy"
case "$*" in *"{fail}"*) echo "ERROR: No matching distribution found" >&2; exit 1;; esac
exit 0
"""


def run_make(tmp_path, *targets, fail="no-such-step"):
    calls = tmp_path / "calls.txt"
    fake = tmp_path / "python3"
    fake.write_text(FAKE_PYTHON.format(calls=calls, fail=fail))
    fake.chmod(0o755)
    venv = tmp_path / "venv"
    proc = subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO), *targets, f"VENV={venv}", f"PYTHON={fake}"],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("MAKE")},
    )
    return proc, calls.read_text().splitlines() if calls.exists() else [], venv


def test_setup_prints_one_line_per_step_and_keeps_pip_quiet(tmp_path):
    proc, calls, venv = run_make(tmp_path, "install-test", "install-train")
    assert proc.returncode == 0, proc.stderr
    lines = (proc.stdout + proc.stderr).splitlines()
    assert [ln.split(" ", 2)[:2] for ln in lines] == [["[setup]", "creating"]] + [
        ["[setup]", w] for w in ("installing", "extracting", "installing")
    ]
    assert not [ln for ln in lines if "WARNING" in ln or "Collecting" in ln]
    installs = [c for c in calls if " install " in f" {c} "]
    assert installs and all("--quiet" in c for c in installs)
    assert "WARNING: Location" in (venv / "install.log").read_text()  # the noise is kept, not shown
    assert any("-e .[test,plot,train,sweep]" in c for c in calls) and any("-e .[plot,train]" in c for c in calls)


def test_a_failing_step_shows_the_end_of_its_log(tmp_path):
    proc, _, venv = run_make(tmp_path, "install-demo", fail=".[plot]")
    assert proc.returncode != 0
    assert f"failed: see {venv}/install.log" in proc.stderr
    assert "ERROR: No matching distribution found" in proc.stderr


def test_readme_says_how_to_install_the_train_extra(tmp_path):
    readme = (REPO / "README.md").read_text()
    assert "make install-train" in readme and "pip install -e '.[train]'" in readme
    proc, calls, _ = run_make(tmp_path, "install-train")
    assert proc.returncode == 0 and any("install --quiet -e .[plot,train]" in c for c in calls)


@pytest.mark.parametrize("target", ["demo", "test"])
def test_quick_start_targets_echo_no_raw_commands(target):
    text = (REPO / "Makefile").read_text()
    recipe = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", text, re.M).group(1)
    assert all(line.startswith("\t@") for line in recipe.splitlines())
