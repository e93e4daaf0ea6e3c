"""The conformance kit tests/spec_vectors/ (docs/quant-spec.md section 7).

- regenerating the kit gives exactly the committed files (a behaviour change is a kit diff);
- every committed case replays through the golden kernels / lowering to its committed outputs;
- the kit is small, plain (integer NPY, params.txt = index.json) and covers every operator of
  both precisions and every rule tag;
- a C++ program written from the spec alone (examples/spec_replay/replay.cpp) replays it under g++.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from intsim.ops import OPS
from intsim.spec_kit import CASE_LIST, INDEX, KIT_DTYPES, PARAMS, case_differences, read_kit, run_case, write_kit
from intsim.spec_vectors import DEFAULT_OUT, build_cases, main
from tests.cpp_harness import compile_program

ROOT = Path(__file__).resolve().parent.parent
KIT = ROOT / "tests" / "spec_vectors"
SPEC = ROOT / "docs" / "quant-spec.md"
RULES = {
    "spec-example",
    "ties",
    "extremes",
    "bounds",
    "saturation",
    "accumulator-bound",
    "table-construction",
    "rmsnorm-constants",
    "float-order",
    "scan-state",
    "saturation-count",
    "shift-range",
}


@pytest.fixture(scope="module")
def committed():
    return read_kit(KIT)


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_kit_regenerates_to_the_committed_files(tmp_path, committed, capsys):
    assert DEFAULT_OUT == KIT
    assert main(["--out", str(tmp_path)]) == 0
    assert f"{len(committed)} cases" in capsys.readouterr().out
    assert _files(tmp_path) == _files(KIT)
    fresh = read_kit(tmp_path)
    assert [c.id for c in fresh] == [c.id for c in committed]
    for want, got in zip(committed, fresh, strict=True):
        assert not case_differences(want, got), (want.id, case_differences(want, got))
    for name in (CASE_LIST,) + tuple(f"{c.id}/{PARAMS}" for c in committed):
        assert (tmp_path / name).read_text() == (KIT / name).read_text(), name
    assert json.loads((tmp_path / INDEX).read_text()) == json.loads((KIT / INDEX).read_text())


def test_committed_vectors_replay_through_the_golden_model(committed):
    """Each case's outputs recomputed from its committed inputs alone (kernels for device cases,
    the lowering for host cases) equal the committed outputs, saturation counts included."""
    for case, again in zip(committed, read_kit(KIT), strict=True):
        run_case(again)  # overwrites outputs, expect, saturations
        assert not case_differences(case, again), (case.id, case_differences(case, again))


def test_a_changed_output_is_caught(tmp_path, committed):
    """The comparison really looks at values: one LSB changed in one output is reported."""
    cases = build_cases()
    victim = next(c for c in cases if c.id == "int16-mul-spec-example")
    victim.outputs["y"] = victim.outputs["y"] + np.int16(1)
    write_kit(cases, tmp_path)
    bad = {c.id: c for c in read_kit(tmp_path)}["int16-mul-spec-example"]
    good = {c.id: c for c in committed}["int16-mul-spec-example"]
    assert case_differences(good, bad) == ["outputs.y: int16[1, 1, 1] vs int16[1, 1, 1], 1 value(s) differ"]
    assert int(good.outputs["y"].item()) == -268  # spec 2.8's tie to even


def test_kit_is_small_plain_and_consistent(committed):
    size = sum((KIT / f).stat().st_size for f in _files(KIT))
    assert size < 400 * 1024, f"kit is {size} bytes"
    index = json.loads((KIT / INDEX).read_text())
    assert (KIT / CASE_LIST).read_text().splitlines() == [
        f"{e['id']} {e['precision']} {e['op']}" for e in index["cases"]
    ]
    for case, entry in zip(committed, index["cases"], strict=True):
        for arr in list(case.inputs.values()) + list(case.outputs.values()):
            assert arr.dtype in KIT_DTYPES and arr.dtype.kind in "iuf", (case.id, arr.dtype)
            assert arr.dtype.kind != "f" or case.precision == "host", case.id
        lines = (KIT / case.id / PARAMS).read_text().splitlines()
        assert dict((k, int(v)) for k, v in (ln.split() for ln in lines)) == entry["params"]
        assert set(entry["rules"]) <= RULES, entry["rules"]
        assert ("saturation" in entry["rules"]) == bool(entry.get("saturations")), case.id


def test_kit_covers_every_op_both_precisions_and_every_rule(committed):
    ops = {(c.precision, c.op) for c in committed}
    for op in OPS:
        assert ("int16", op) in ops and ("int8", op) in ops, op
    for prim in ("rne_shift", "shift_round", "rne_div", "isqrt_rne", "saturate", "requantize"):
        assert ("primitive", prim) in ops
    assert set().union(*(c.rules for c in committed)) == RULES
    examples = [c.id for c in committed if "spec-example" in c.rules]
    assert len(examples) >= 12


def test_cpp_replay_from_the_spec_alone(committed):
    """examples/spec_replay/replay.cpp (plain C++, spec text + hls_tb/npy.h) replays the kit; the
    command and output line quoted in the spec are what it prints."""
    source = (ROOT / "examples" / "spec_replay" / "replay.cpp").read_text()
    exe = compile_program({"replay.cpp": source, "npy.h": (ROOT / "hls_tb" / "npy.h").read_text()}, name="spec_replay")
    run = subprocess.run([str(exe), str(KIT)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    quoted = re.search(r"\./replay tests/spec_vectors\s+# (replay: .*)", SPEC.read_text()).group(1)
    assert run.stdout.strip() == quoted
    n = sum(
        1
        for c in committed
        if c.op in ("scan", "sigmoid", "silu")
        and c.precision in ("int16", "int8")
        or c.op in ("rne_shift", "shift_round", "rne_div", "requantize")
    )
    assert f"replay: {n} cases" in run.stdout
