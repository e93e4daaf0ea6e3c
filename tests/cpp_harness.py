"""Shared C++ helpers for the codegen tests: compile small programs with the generated
projects' flags, skip the ap variants with a clear reason, cache builds by content.

- `CXXFLAGS`, `AP_FLAGS`: exactly what a generated Makefile uses (stdint / extra for ap).
- `ap_include_or_skip()`: the ap headers folder, or pytest.skip naming CMAMBA_HLS_AP_INCLUDE.
- `compile_program(sources, types, includes)`: g++ one translation unit per source, link,
  return the executable; cached in a per-session folder keyed on the sources' bytes + flags.
- `render_primitives(types)`, `render_template(name, **ctx)`: framework templates alone.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from codegen.build import ap_include
from codegen.project import make_env

CXXFLAGS = ["-std=c++14", "-O2", "-Wall", "-Wextra", "-Wno-unknown-pragmas", "-Werror"]
AP_FLAGS = ["-Wno-uninitialized", "-Wno-maybe-uninitialized"]  # see templates/common/Makefile.j2
_CACHE = Path(tempfile.gettempdir()) / f"cmamba-hls-test-builds-{os.getuid()}"
SKIP_AP_REASON = (
    "--types ap needs the Vitis ap_int.h headers: set CMAMBA_HLS_AP_INCLUDE to a folder with "
    "ap_int.h (`make test` extracts them from the hls4ml 1.3.0 wheel into .venv/ap_types)"
)


def ap_include_or_skip() -> Path:
    path = ap_include(required=False)
    if path is None:
        pytest.skip(SKIP_AP_REASON)
    return path


def require_gxx() -> str:
    cxx = os.environ.get("CXX") or "g++"
    if shutil.which(cxx) is None:
        pytest.skip(f"C++ compiler '{cxx}' not found")
    return cxx


def compile_program(sources: dict[str, str], types: str = "stdint", includes=(), name: str = "prog") -> Path:
    """sources: file name -> text (.cpp compiled, .h only written). Returns the executable."""
    cxx = require_gxx()
    flags = list(CXXFLAGS)
    inc = [f"-I{p}" for p in includes]
    if types == "ap":
        flags += AP_FLAGS
        inc.append(f"-isystem{ap_include_or_skip()}")
    h = hashlib.sha256(repr((sorted(sources.items()), flags, inc, cxx)).encode()).hexdigest()[:16]
    folder = _CACHE / f"{name}-{h}"
    exe = folder / name
    if exe.is_file():
        return exe
    tmp = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=_mkcache()))
    for fname, text in sources.items():
        (tmp / fname).parent.mkdir(parents=True, exist_ok=True)
        (tmp / fname).write_text(text)
    cpps = [str(tmp / f) for f in sources if f.endswith(".cpp")]
    proc = subprocess.run([cxx, *flags, f"-I{tmp}", *inc, *cpps, "-o", str(tmp / name)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(f"g++ failed for {name}:\n{proc.stderr[:4000]}")
    if folder.exists():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        os.replace(tmp, folder)
    return exe


def _mkcache() -> Path:
    _CACHE.mkdir(parents=True, exist_ok=True)
    return _CACHE


def render_primitives(types: str) -> str:
    return make_env().get_template("common/primitives.h.j2").render(types=types)


def render_template(name: str, **ctx) -> str:
    return make_env().get_template(name).render(**ctx)


def build_project_cached(out_dir, jobs: int = 2, extra_flags: str = "") -> float:
    """codegen.build.build(), but a project whose sources (firmware/, tb/, Makefile) were built
    before in this machine's test cache (with the same extra flags) reuses that executable.
    Returns compile seconds (0 when reused)."""
    from codegen.build import build, project_types

    out_dir = Path(out_dir)
    h = hashlib.sha256()
    for path in sorted(p for d in ("firmware", "tb") for p in (out_dir / d).rglob("*") if p.is_file()):
        h.update(str(path.relative_to(out_dir)).encode())
        h.update(path.read_bytes())
    h.update((out_dir / "Makefile").read_bytes())
    h.update(project_types(out_dir).encode())
    h.update(extra_flags.encode())
    cached = _mkcache() / f"project-{h.hexdigest()[:20]}" / "tb"
    target = out_dir / "build" / "tb"
    if cached.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(cached, target)
        return 0.0
    seconds = build(out_dir, jobs, extra_flags)
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".tmp")
    shutil.copy2(target, tmp)
    os.replace(tmp, cached)
    return seconds
