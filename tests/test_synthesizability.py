"""Synthesizability of the generated firmware (codegen/synth_check.py; docs/hls.md,
"Synthesizability checks"), on g++'s own view of the code:

- the default model (examples/default, calibrated as `cmamba-hls calibrate` does) and random
  small graphs (hypothesis; CMAMBA_HLS_HYPOTHESIS_EXAMPLES=N for more), int16 and int8, stdint
  and ap types: every check passes, and the loop trip counts g++ finds are the layers' sizes;
- deliberately broken templates (a double in a kernel, `new`, a recursive helper, a data-
  dependent loop bound, an early loop exit, a C++ library call, a VLA, printf) and an aliasing
  call each fail the check that is meant to catch them, naming the function;
- check_project() on a generated project; clear errors on a folder that is not one.

Reports are cached in the C++ test cache (tests/cpp_harness.py) by the firmware's bytes, the
checker's source, the compiler and the ap headers: a re-run with nothing changed compiles nothing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from codegen import project as project_mod, synth_check
from codegen.build import ap_include
from codegen.names import sanitize_names
from codegen.project import generate_project
from codegen.synth_check import (
    ALLOWED_UNDEFINED,
    AP_SIM_UNDEFINED,
    AP_SYSTEM_HEADERS,
    SynthReport,
    check_firmware,
    check_project,
    render_firmware,
)
from intsim.errors import CmambaError
from tests.conftest import make_calibrated
from tests.cpp_harness import _mkcache, ap_include_or_skip, require_gxx
from tests.test_estimate import TARGET_REUSE

COMBOS = [("int16", "stdint"), ("int16", "ap"), ("int8", "stdint"), ("int8", "ap")]
KERNEL = {"int16": "conv1x1", "int8": "conv1x1_int8"}
EXAMPLES = int(os.environ.get("CMAMBA_HLS_HYPOTHESIS_EXAMPLES", "1"))


@cache
def _compiler_version(cxx: str) -> str:
    return subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout


def check_cached(firmware: Path, types: str) -> SynthReport:
    """check_firmware(), cached by everything its answer depends on."""
    cxx = require_gxx()
    ap = ap_include_or_skip() if types == "ap" else None
    h = hashlib.sha256(repr((types, str(ap), _compiler_version(cxx))).encode())
    h.update(Path(synth_check.__file__).read_bytes())
    for path in sorted(p for p in firmware.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(firmware)).encode())
        h.update(path.read_bytes())
    cached = _mkcache() / f"synth-{h.hexdigest()[:20]}.json"
    if cached.is_file():
        return SynthReport.from_json(cached.read_text())
    report = check_firmware(firmware, types, ap)
    tmp = cached.with_suffix(f".tmp{id(report)}")
    tmp.write_text(report.to_json())
    tmp.replace(cached)
    return report


def check_all(model, root: Path, interface: str = "memory", reuse=None) -> dict[tuple[str, str], SynthReport]:
    """Render and check every precision x types combination (ap ones only with the ap headers),
    two at a time."""
    combos = [c for c in COMBOS if c[1] == "stdint" or ap_include(required=False) is not None]
    dirs = {c: render_firmware(model, root / f"{c[0]}_{c[1]}", *c, interface, reuse) for c in combos}
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {c: pool.submit(check_cached, dirs[c], c[1]) for c in combos}
        return {c: f.result() for c, f in futures.items()}


def assert_synthesizable(model, rep: SynthReport, precision: str) -> None:
    assert rep.ok, rep.summary()
    assert rep.functions > 0 and rep.loops == sum(map(len, rep.trip_counts.values())) + rep.loops_removed
    # g++'s constant trip counts are the layers' sizes: the top's output copy [C_out][H], and in
    # every pointwise convolution t < L, the column copy i < C_in, o < C_out, and its dot product
    # i < C_in in mac_row<C_in, ...> (primitives.h: one or two loops that sum to C_in)
    # (a loop of one iteration is no loop for g++; ap types add constructor loops over local arrays)
    g = model.graph
    top = [n for n in (g.output_channels, g.horizon) if n > 1]
    assert sorted(rep.trip_counts.get("cmamba_top", [])) == sorted(top), rep.trip_counts.get("cmamba_top")
    names = sanitize_names(layer.name for layer in g.layers)
    convs = [layer for layer in g.layers if layer.op == "conv1x1"]
    assert convs
    for layer in convs:
        c_out, length = layer.shape
        c_in = g.tensor_shape(layer.inputs[0])[0]
        found = Counter(rep.trip_counts.get(f"{KERNEL[precision]}<cfg_{names[layer.name]}>", []))
        expected = Counter(n for n in (length, c_in, c_out) if n > 1)
        assert expected <= found, (layer.name, expected, found)
        dots = [sum(n) for name, n in rep.trip_counts.items() if name.startswith(f"mac_row<{c_in},")]
        assert c_in <= 1 or any(s in (c_in, c_in - 1) for s in dots), (layer.name, c_in, dots)
    for layer in (layer for layer in g.layers if layer.op == "rmsnorm"):
        # the 31 digit steps of the L tokens' square roots, interleaved (isqrt_rne_rows<L>)
        tokens = layer.shape[1]
        assert 31 in rep.trip_counts[f"isqrt_rne_rows<{tokens}>"], rep.trip_counts
    # the object file: nothing from a runtime library beyond memcpy/memset/memmove
    assert set(rep.undefined) - set(rep.ap_model_symbols) <= ALLOWED_UNDEFINED
    if rep.types == "stdint":
        assert "-nostdinc++" in rep.command and not rep.ap_model_symbols and not rep.std_headers
    else:
        # only the ap_int C-simulation model (heap for > 64-bit products, stderr messages, asserts,
        # <iostream>'s initialiser) reaches into the C/C++ libraries, through the documented headers
        # (the kernels keep their 32/64-bit intermediates native, so the heap may not be reached)
        assert set(rep.ap_model_symbols) <= AP_SIM_UNDEFINED and "_ZNSt8ios_base4InitC1Ev" in rep.ap_model_symbols
        assert "iostream" in rep.std_headers and set(rep.std_headers) <= AP_SYSTEM_HEADERS


@pytest.fixture(scope="module")
def default_reports(default_calibrated, tmp_path_factory):
    return check_all(default_calibrated, tmp_path_factory.mktemp("synth_default_fw"))


@pytest.mark.parametrize("precision, types", COMBOS)
def test_default_model_firmware_is_synthesizable(default_calibrated, default_reports, precision, types):
    if types == "ap":
        ap_include_or_skip()
    assert_synthesizable(default_calibrated, default_reports[(precision, types)], precision)


@pytest.fixture(scope="module")
def default_stream_reports(default_calibrated, tmp_path_factory):
    return check_all(default_calibrated, tmp_path_factory.mktemp("synth_stream_fw"), "stream", TARGET_REUSE)


@pytest.mark.parametrize("precision, types", COMBOS)
def test_default_model_stream_firmware_is_synthesizable(default_calibrated, default_stream_reports, precision, types):
    """The stream top (hls::stream ports, DATAFLOW processes) with non-trivial reuse factors (lanes,
    II > 1): every rule passes; the channel operations are the only extra undefined symbols."""
    if types == "ap":
        ap_include_or_skip()
    rep = default_stream_reports[(precision, types)]
    assert rep.ok, rep.summary()
    assert rep.channel_ops and all("hls6stream" in sym for sym in rep.channel_ops)
    assert set(rep.undefined) - set(rep.ap_model_symbols) - set(rep.channel_ops) <= ALLOWED_UNDEFINED
    g = default_calibrated.graph
    c_in, length = g.input_shape
    assert c_in * length in rep.trip_counts["stream_in"]  # the window, one value per beat
    assert g.output_channels * g.horizon in rep.trip_counts["stream_out"]
    # blk0.in_proj_u at reuse 32: 2 lanes, 32 pipelined steps of its 64 outputs
    assert 32 in rep.trip_counts[f"{KERNEL[precision]}<cfg_l_blk0_in_proj_u>"]


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    c_in=st.integers(1, 4),
    patch=st.integers(1, 5),
    stride=st.integers(1, 4),
    tokens=st.integers(1, 6),
    d_model=st.integers(1, 8),
    d_inner=st.integers(1, 8),
    n_blocks=st.integers(1, 2),
    d_conv=st.integers(1, 4),
    horizon=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_random_graph_firmware_is_synthesizable(
    tmp_path_factory, c_in, patch, stride, tokens, d_model, d_inner, n_blocks, d_conv, horizon, seed
):
    root = tmp_path_factory.mktemp("synth_rand")
    model = make_calibrated(
        root / "m",
        n_cal=64,
        seed=seed,
        c_in=c_in,
        length=patch + stride * (tokens - 1),
        patch=patch,
        stride=stride,
        d_model=d_model,
        d_inner=d_inner,
        n_blocks=n_blocks,
        d_conv=d_conv,
        horizon=horizon,
    )
    for (precision, _), rep in check_all(model, root).items():
        assert_synthesizable(model, rep, precision)


# ------------------------------------------------------------------ broken firmware is caught
MUL16 = "const i32_t prod = i32_t(a[t][c]) * i32_t(b[t][c]);"
MUL8 = "y[t][c] = requantize8(acc, CFG::M0, CFG::SHIFT, CFG::Y_ZP);"
ADD_LOOP = "for (int t = 0; t < CFG::L; t++) {"
ADD_STORE = "y[t][c] = round_sat16_32<CFG::SHIFT>(acc);"
RMS_DIV = "const i64_t m = rne_div(ss, CFG::D) + CFG::EPS_Q;"
INCLUDE = '#include "../types.h"'
ALGORITHM = ("int16/add.h.j2", INCLUDE, INCLUDE + "\n#include <algorithm>")
# name: (precision, types, [(template, old text, new text)], {rule that must fail: text of its finding})
BREAKS = {
    "double": (
        "int16",
        "stdint",
        [
            (
                "int16/mul.h.j2",
                MUL16,
                "const double gain = 0.5;\nconst i32_t prod = i32_t(double(a[t][c]) * gain) * i32_t(b[t][c]);",
            )
        ],
        {"float": "const double gain"},
    ),
    "double_implicit": (
        "int16",
        "stdint",
        [("int16/mul.h.j2", MUL16, MUL16[:-1] + " * 1.5;")],
        {"compile": "float-conversion"},
    ),
    "new": (
        "int16",
        "stdint",
        [
            (
                "int16/mul.h.j2",
                MUL16,
                "i32_t* tmp = new i32_t[1];\n"
                "tmp[0] = i32_t(a[t][c]) * i32_t(b[t][c]);\n"
                "const i32_t prod = tmp[0];\ndelete[] tmp;",
            )
        ],
        {"allocation": "operator new[]", "symbols": "undefined symbol operator new[]"},
    ),
    # tail-recursive: g++ -O2 would make it a loop; the check reads the code before that
    "recursion": (
        "int16",
        "stdint",
        [
            (
                "int16/rmsnorm.h.j2",
                "template<class CFG>",
                "static i64_t gcd_steps(i64_t a, i64_t b) "
                "{ return b == 0 ? a : gcd_steps(b, a % b); }\n\ntemplate<class CFG>",
            ),
            ("int16/rmsnorm.h.j2", RMS_DIV, RMS_DIV + "\nif (gcd_steps(ss, CFG::D) < 0) ss = 1;"),
        ],
        {"recursion": "gcd_steps -> gcd_steps"},
    ),
    "data_dependent_loop": (
        "int16",
        "stdint",
        [("int16/add.h.j2", ADD_LOOP, "for (int t = 0; t < (a[0][0] & 3) + 1; t++) {")],
        {"loop": "no constant iteration count"},
    ),
    "early_exit": (
        "int16",
        "stdint",
        [("int16/add.h.j2", ADD_STORE, ADD_STORE + "\nif (acc == 7) break;")],
        {"loop": "2 exits"},
    ),
    "std_library": (
        "int16",
        "stdint",
        [ALGORITHM, ("int16/add.h.j2", ADD_STORE, "y[t][c] = std::min<i16_t>(0, 1);")],
        # g++ 12 (Debian) stops at the include under -nostdinc++; g++ 13 (Ubuntu 24.04) still finds
        # <algorithm> through its C include path, and the headers rule names the include instead
        [{"compile": "algorithm: No such file"}, {"headers": "algorithm: firmware may include only", "compile": ""}],
    ),
    "vla": (
        "int16",
        "stdint",
        [("int16/add.h.j2", ADD_STORE, "data_t tmp[(a[t][c] & 3) + 1];\ntmp[0] = 0;\ny[t][c] = tmp[0];")],
        {"compile": "variable length array"},
    ),
    "printf": (
        "int16",
        "stdint",
        [("int16/add.h.j2", ADD_STORE, ADD_STORE + '\n__builtin_printf("%d", int(acc));')],
        {"calls": "calls printf", "symbols": "undefined symbol printf"},
    ),
    # ap types: the C++ library and heap are there (the ap_int model uses them); the firmware may not
    "new_and_std_library_ap": (
        "int8",
        "ap",
        [
            (
                "int8/mul.h.j2",
                MUL8,
                "i16_t* tmp = new i16_t[1];   // an ap_int (i32_t is native int32_t)\ndelete[] tmp;\n" + MUL8,
            ),
            ("int8/add.h.j2", "#include \"primitives_int8.h\"", "#include \"primitives_int8.h\"\n#include <algorithm>"),
            ("int8/add.h.j2", "y[t][c] = ", "y[t][c] = std::min<int>(0, 1) + "),
        ],
        # delete[] of ap_int elements runs their destructors over the count stored at run time: a loop too
        {
            "allocation": "operator new[]",
            "symbols": "undefined symbol operator new[]",
            "calls": "std::min",
            "headers": "includes /usr/include/c++/",
            "loop": "no constant iteration count",
        },
    ),
}


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, (path, old)
    path.write_text(text.replace(old, new))


@pytest.mark.parametrize("name", sorted(BREAKS))
def test_broken_template_fails_its_check(tiny_model, tmp_path, monkeypatch, name):
    precision, types, edits, expected = BREAKS[name]
    if types == "ap":
        ap_include_or_skip()
    templates = tmp_path / "templates"
    shutil.copytree(project_mod.TEMPLATES, templates)
    for template, old, new in edits:
        _edit(templates / template, old, new)
    monkeypatch.setattr(project_mod, "TEMPLATES", templates)  # render from the modified copy
    rep = check_cached(render_firmware(tiny_model, tmp_path / "p", precision, types), types)
    if isinstance(expected, list):  # compiler-dependent: one of these outcomes
        expected = next((e for e in expected if set(e) == rep.rules_failed()), expected[0])
    assert rep.rules_failed() == set(expected), rep.summary()
    for rule, text in expected.items():
        assert any(text in f.message for f in rep.findings if f.rule == rule), rep.summary()
        if rule in ("float", "allocation", "loop", "calls"):  # the finding names the kernel
            kernels = {Path(t).name.split(".")[0] for t, _, _ in edits}
            assert any(
                f.where.split("<")[0] in kernels | {k + "_int8" for k in kernels}
                for f in rep.findings
                if f.rule == rule
            ), rep.summary()


def test_aliased_buffers_in_a_call_are_caught(tiny_model, tmp_path):
    """The residual add writing into its own input: a call that passes one buffer twice."""
    fw = render_firmware(tiny_model, tmp_path / "p")
    top = fw / "top.cpp"
    call = next(ln for ln in top.read_text().splitlines() if ln.strip().startswith("add<"))
    args = call[call.index("(") + 1 : call.rindex(")")].split(", ")
    _edit(top, call, call.replace(f", {args[2]})", f", {args[1]})"))
    rep = check_cached(fw, "stdint")
    assert rep.rules_failed() == {"alias"}, rep.summary()
    assert f"passes {args[1].replace('act.', 'act->')} to add<" in rep.findings[0].message
    assert "as both 'b' and 'y' (writable: y)" in rep.findings[0].message


def test_check_project_reads_a_generated_project(tiny_model, tmp_path):
    gen = generate_project(tiny_model, tmp_path / "p", precision="int8", n_vectors=1)
    rep = check_project(gen.out_dir)
    assert rep.ok and rep.types == "stdint" and rep.firmware == str((gen.out_dir / "firmware").resolve())
    assert rep.summary().endswith("OK")
    with pytest.raises(CmambaError, match="not a generated project"):
        check_project(tmp_path)
    with pytest.raises(CmambaError, match="no top.cpp"):
        check_firmware(tmp_path, "stdint")
