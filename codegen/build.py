"""Build a generated project with g++ (through its Makefile) and run its testbench.

`build_and_run(out_dir, jobs=2) -> TestbenchResult` (.passed, .failed, .compile_seconds,
.run_seconds, .samples_per_second, .stdout). A failed build raises CmambaError with the
compiler's first error lines; a missing g++/make or (for `--types ap`) missing ap headers
raise a CmambaError that says what to install or set. A testbench that runs but finds
mismatches is not an error: the result says how many vectors failed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from intsim.errors import CmambaError

AP_ENV = "CMAMBA_HLS_AP_INCLUDE"
_SUMMARY = re.compile(r"^(\d+) passed, (\d+) failed$", re.M)
_RATE = re.compile(r"^timing: \d+ vectors in [0-9.]+ s \(([0-9.]+) samples/s\)$", re.M)
_FIRST = re.compile(r"^first (?:layer )?mismatch: .*$", re.M)
_LOOP_COUNT = re.compile(r"^loop count: row (\d+) slot (\d+) = (\d+)$", re.M)
COUNT_LOOPS_FLAG = "-DCMAMBA_COUNT_LOOPS"  # the testbench then prints its loop counters


@dataclass
class TestbenchResult:
    passed: int
    failed: int
    compile_seconds: float
    run_seconds: float
    samples_per_second: float  # cmamba_top calls only (measured inside the testbench)
    stdout: str
    returncode: int = 0
    first_mismatch: str | None = None

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.passed > 0


def loop_counts(stdout: str) -> dict[tuple[int, int], int]:
    """(counter row, slot) -> iterations in the first window, from a testbench built with
    COUNT_LOOPS_FLAG (rows: the layers in graph order, then the top; codegen/estimate.py)."""
    return {(int(r), int(s)): int(n) for r, s, n in _LOOP_COUNT.findall(stdout)}


def find_tools() -> tuple[str, str]:
    """(compiler, make) or CmambaError. The compiler is $CXX or g++."""
    cxx = os.environ.get("CXX") or "g++"
    if shutil.which(cxx) is None:
        raise CmambaError(f"C++ compiler '{cxx}' not found: install g++ (e.g. apt-get install g++) or set CXX")
    if shutil.which("make") is None:
        raise CmambaError("'make' not found: install make (the generated project builds with its Makefile)")
    return cxx, "make"


def ap_include(required: bool = True) -> Path | None:
    """The folder with ap_int.h from $CMAMBA_HLS_AP_INCLUDE (None, or an error when required)."""
    value = os.environ.get(AP_ENV, "")
    path = Path(value) if value else None
    if path is not None and (path / "ap_int.h").is_file():
        return path
    if not required:
        return None
    why = f"{AP_ENV} is not set" if path is None else f"{AP_ENV}={value} has no ap_int.h"
    raise CmambaError(
        f"--types ap and --interface stream need the Vitis ap_int.h/ap_fixed.h/hls_stream.h headers: "
        f"{why} (`make test` in the repository extracts them to .venv/ap_types; "
        f"or point {AP_ENV} at $XILINX_HLS/include)"
    )


def project_option(out_dir: Path, key: str, default: Any = None) -> Any:
    """One generation option from the project's project.json (`default` when an older project lacks it)."""
    try:
        options = json.loads((Path(out_dir) / "project.json").read_text())
        return options[key] if default is None else options.get(key, default)
    except (OSError, ValueError, KeyError, AttributeError) as exc:
        raise CmambaError(f"{out_dir}: not a generated project (no readable project.json): {exc}") from exc


def project_types(out_dir: Path) -> str:
    return project_option(out_dir, "types")


def needs_ap_include(out_dir: Path) -> bool:
    """ap types need ap_int.h; the stream interface needs hls_stream.h (same folder)."""
    return project_types(out_dir) == "ap" or project_option(out_dir, "interface", "memory") == "stream"


def _first_errors(text: str, n: int = 12) -> str:
    lines = text.splitlines()
    idx = next((i for i, ln in enumerate(lines) if "error" in ln.lower()), 0)
    return "\n".join(lines[idx : idx + n])


def build(out_dir: str | Path, jobs: int = 2, extra_flags: str = "") -> float:
    """Compile the testbench (make build); returns the wall time in seconds."""
    out_dir = Path(out_dir)
    cxx, make = find_tools()
    cmd = [make, "-C", str(out_dir), f"-j{max(1, int(jobs))}", "build", f"CXX={cxx}"]
    if needs_ap_include(out_dir):
        cmd.append(f"AP_INCLUDE={ap_include()}")
    if extra_flags:
        cmd.append(f"EXTRA_CXXFLAGS={extra_flags}")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise CmambaError(f"g++ build of {out_dir} failed:\n{_first_errors(proc.stderr + proc.stdout)}")
    return seconds


def run_testbench(
    out_dir: str | Path,
    data_dir: str = "tb_data",
    dump_dir: str | Path | None = None,
    timeout: float = 3600,
    weights_dir: str | Path | None = None,
) -> TestbenchResult:
    """Run build/tb in `out_dir` (after build()). Raises CmambaError when it cannot read its
    vectors or ends without its summary line (a crash). `weights_dir`: the integer export a
    `--weights external` build loads (default: its own export/)."""
    out_dir = Path(out_dir)
    exe = out_dir / "build" / "tb"
    if not exe.is_file():
        raise CmambaError(f"{exe} does not exist: build the project first (make -C {out_dir} build)")
    cmd = [str(exe.resolve()), data_dir]
    if dump_dir is not None:
        cmd += ["--dump", str(Path(dump_dir).resolve())]
    if weights_dir is not None:
        cmd += ["--weights", str(Path(weights_dir).resolve())]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=out_dir, timeout=timeout)
    seconds = time.perf_counter() - t0
    summary = _SUMMARY.search(proc.stdout)
    if summary is None:
        raise CmambaError(
            f"testbench {exe} ended without its summary line (exit {proc.returncode}):\n"
            f"{(proc.stderr or proc.stdout).strip()[-2000:]}"
        )
    rate = _RATE.search(proc.stdout)
    first = _FIRST.search(proc.stdout)
    return TestbenchResult(
        int(summary.group(1)),
        int(summary.group(2)),
        0.0,
        seconds,
        float(rate.group(1)) if rate else 0.0,
        proc.stdout,
        proc.returncode,
        first.group(0) if first else None,
    )


def build_and_run(out_dir: str | Path, jobs: int = 2) -> TestbenchResult:
    """make build, then run the testbench on tb_data/. See the module docstring."""
    compile_seconds = build(out_dir, jobs)
    res = run_testbench(out_dir)
    res.compile_seconds = compile_seconds
    return res
