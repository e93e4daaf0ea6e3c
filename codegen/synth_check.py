"""Synthesizability checks of a generated project's firmware, on g++'s own view of the code.

`check_firmware(firmware_dir, types, ap_dir=None) -> SynthReport` compiles `firmware/top.cpp` (the
HLS translation unit; the testbench is not part of it) ONCE with g++ and reads what the compiler
wrote about it; `check_project(out_dir)` does the same for a generated project (types from its
project.json, ap headers from $CMAMBA_HLS_AP_INCLUDE). Every rule, its method and its limits are
in docs/hls.md, "Synthesizability checks". In short, `SynthReport.findings` lists, per rule:

  compile     the firmware compiles with -fno-exceptions -fno-rtti -Werror=double-promotion
              -Werror=float-conversion -Werror=vla, and (stdint types) -nostdinc++: no C++ library
              header at all
  headers     (-H include tree) firmware files include only firmware headers, <stdint.h> and
              the ap headers; the libstdc++ headers that the ap headers pull in are listed and
              must be among AP_SYSTEM_HEADERS
  symbols     `nm -u` of the object: nothing beyond ALLOWED_UNDEFINED (stdint); for ap types the
              rest must be AP_SIM_UNDEFINED, referenced only by the ap_int C-simulation model
  calls       (GIMPLE, before any optimisation) a firmware function calls only functions defined
              in the firmware or the ap headers, or ALLOWED_CALLS; no indirect calls
  allocation  no call to operator new/delete, malloc & co., alloca (VLAs) from firmware code
  float       no float/double/_FloatN value (a typed SSA name, variable, cast or constant) in
              any function reachable from the firmware, ap_int internals included
  loop        every loop of a firmware function has one exit, and GCC's iteration analysis
              (ivcanon, compiled without inlining or IPA constant propagation, so a bound must
              be constant inside the function: a literal, constexpr or template parameter)
              finds a constant iteration count
  recursion   no cycle in the call graph of the reachable functions (before tail-call removal)
  alias       the top's ports are distinct array parameters (or, for the stream top, hls::stream
              references: FIFO interfaces); no call inside the firmware passes one buffer both to
              a writable pointer parameter and to another parameter

hls::stream (the stream top, `codegen --interface stream`): the check compiles against the
synthesis view hls_tb/synth/hls_stream.h (SYNTH_VIEW), which only declares the channel
operations: Vitis turns them into FIFO port operations. Calls to them and their undefined
symbols (CHANNEL_OPS) are accepted; the testbench builds with the real C-simulation header.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from intsim.errors import CmambaError

if TYPE_CHECKING:
    from codegen.reuse import ReuseSpec
    from intsim.executor import Model

TOP = "cmamba_top"
# The only library functions firmware may call (g++ also turns array copies and fills into them),
# and the undefined symbols its object may have: those, and the linker's GOT (position-independent code).
ALLOWED_CALLS = frozenset(
    {
        "memcpy",
        "memset",
        "memmove",
        "__builtin_memcpy",
        "__builtin_memset",
        "__builtin_memmove",
        "__builtin_unreachable",
        "__builtin_expect",
    }
)
ALLOWED_UNDEFINED = frozenset({"memcpy", "memset", "memmove", "_GLOBAL_OFFSET_TABLE_"})
# What the open-source ap_int/ap_fixed headers (hls4ml 1.3.0 copy of Xilinx's C-simulation model)
# reference when compiled without __SYNTHESIS__: heap buffers in the >64-bit multiply and divide,
# range-check messages on stderr, asserts, and <iostream>'s static initialiser. Vitis replaces this
# model by its own bit-level operators when it synthesizes; the firmware itself calls none of them.
AP_SIM_UNDEFINED = frozenset(
    {
        "malloc",
        "free",
        "_Znam",
        "_ZdaPv",
        "_Znwm",
        "_ZdlPv",
        "_ZdlPvm",
        "fprintf",
        "fputc",
        "fwrite",
        "fputs",
        "puts",
        "printf",
        "stderr",
        "stdout",
        "abort",
        "exit",
        "__assert_fail",
        "_ZNSt8ios_base4InitC1Ev",
        "_ZNSt8ios_base4InitD1Ev",
        "__cxa_atexit",
        "__dso_handle",
    }
)
# The system headers the ap headers include themselves (ap_common.h, ap_int_base.h, ap_fixed_base.h,
# ap_fixed_ref.h, ap_int_ref.h, ap_int_special.h, ap_fixed_special.h, etc/ap_private.h): libstdc++'s
# <iostream> <sstream> <string> <iomanip> <limits> <cassert> <cstdlib> <cstring> <cstdio> <cfenv> and
# its <math.h>/<stdlib.h> wrappers, and the C library's <assert.h> <stdio.h> <string.h> <stdint.h>.
# They pull in more of libstdc++ in turn; the firmware itself names none of it.
AP_SYSTEM_HEADERS = frozenset(
    {
        "iostream",
        "sstream",
        "string",
        "iomanip",
        "limits",
        "cassert",
        "cstdlib",
        "cstring",
        "cstdio",
        "cmath",
        "cfenv",
        "math.h",
        "stdlib.h",
        "assert.h",
        "stdio.h",
        "string.h",
        "stdint.h",
    }
)
FIRMWARE_SYSTEM_HEADERS = frozenset({"stdint.h"})  # C header, typedefs only
AP_TOP_HEADERS = frozenset({"ap_int.h", "ap_fixed.h"})
# The synthesis view of hls::stream (module docstring) and its channel operations (mangled
# hls::stream<T> members: constructors, read, write, empty, full, ...).
SYNTH_VIEW = Path(__file__).resolve().parent.parent / "hls_tb" / "synth"
TOOL_HEADERS = frozenset({"hls_stream.h"})
CHANNEL_OPS = re.compile(r"^_ZN3hls6streamI.*E(?:C[12]E.*|[0-9]+(?:read|write|read_nb|write_nb|empty|full)E.*)$")
ALLOCATORS = re.compile(
    r"^(?:malloc|calloc|realloc|free|aligned_alloc|posix_memalign|valloc|memalign|strdup|alloca"
    r"|__builtin_alloca\w*|_Zn[wa]\w*|_Zd[la]\w*)$"
)
CXXFLAGS = [
    "-std=c++14",
    "-O1",
    "-fno-exceptions",
    "-fno-rtti",
    "-Wall",
    "-Wextra",
    "-Wno-unknown-pragmas",
    "-Werror",
    "-Werror=double-promotion",
    "-Werror=float-conversion",
    "-Werror=vla",
    # a call passing one buffer to two __restrict parameters of a kernel: the `alias` rule reports
    # it in its own words (which call, which parameters), so g++'s -Wrestrict does not stop the compile
    "-Wno-restrict",
    # distributions' g++ defaults (Ubuntu: -fstack-protector-strong) add calls to a runtime that no
    # HLS tool has; the symbols rule judges the firmware's own calls, so they are turned off here
    "-fno-stack-protector",
]
# -O1 (above): the fewest rewrites that still run GCC's loop iteration analysis; and no inlining, no
# cloning, no interprocedural constants, no tail-call or complete-unroll rewriting: every function
# keeps its own loops and calls, and a loop bound must be a constant in its own body.
ANALYSIS_FLAGS = [
    "-fno-inline",
    "-fno-ipa-cp",
    "-fno-ipa-sra",
    "-fno-ipa-icf",
    "-fno-partial-inlining",
    "-fno-optimize-sibling-calls",
    "--param",
    "max-completely-peel-times=0",
]
DUMP_FLAGS = ["-H", "-fdump-tree-cfg-lineno-asmname", "-fdump-tree-ssa-lineno-asmname", "-fdump-tree-ivcanon-details"]
AP_FLAGS = ["-Wno-uninitialized", "-Wno-maybe-uninitialized"]  # as the projects' Makefile (docs/hls.md)

_LOC = re.compile(r"\[([^\[\]\s]+):(\d+):(\d+)\] ?")
_FUNC = re.compile(r"^;; Function (.*) \(([^\s,()]+), funcdef_no=")
_CALL = re.compile(r"^(?:.+? = )?([A-Za-z_.$][\w.$]*) \((.*)\);$")
_ADDR = re.compile(r"^(\w[\w.]*) = &(.+);$")
_FLOAT = re.compile(r"\b(?:float|double|_Float\d+x?|__fp16|__bf16|__float128|_Complex)\b|\b\d+\.\d+e[+-]\d+\b")
_SSA_NAME = re.compile(r"\b([A-Za-z]\w*?)_\d+\(D\)")
_CLONE = re.compile(r"\.(?:isra|constprop|part|cold|localalias)(?:\.\d+)?$")
_KEYWORDS = {"if", "goto", "return", "switch", "else"}


@dataclass
class Finding:
    rule: str  # compile headers symbols calls allocation float loop recursion alias
    where: str  # function (demangled) and/or file:line
    message: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.where}: {self.message}"


@dataclass
class SynthReport:
    firmware: str
    types: str
    findings: list[Finding] = field(default_factory=list)
    functions: int = 0  # firmware functions checked (template instances counted each)
    loops: int = 0  # their loops (in the source's control flow graph)
    loops_removed: int = 0  # of which the optimiser removed before the analysis
    trip_counts: dict = field(default_factory=dict)  # function -> [iterations of each loop]
    undefined: list[str] = field(default_factory=list)  # nm -u of the object
    ap_model_symbols: list[str] = field(default_factory=list)  # undefined, referenced by ap_int only
    std_headers: list[str] = field(default_factory=list)  # system headers the ap headers include
    channel_ops: list[str] = field(default_factory=list)  # undefined hls::stream operations (FIFO ports)
    command: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.findings

    def rules_failed(self) -> set[str]:
        return {f.rule for f in self.findings}

    def summary(self) -> str:
        head = (
            f"synthesizability ({self.types}): {self.functions} firmware functions, {self.loops} loops "
            f"({self.loops_removed} removed by the optimiser), undefined symbols "
            f"{sorted(set(self.undefined) - set(self.ap_model_symbols) - set(self.channel_ops))}"
        )
        if self.channel_ops:
            head += f"; hls::stream channel operations: {len(self.channel_ops)}"
        if self.types == "ap":
            head += (
                f"; ap_int C-simulation model only: {len(self.ap_model_symbols)} symbols, "
                f"system headers they include: {', '.join(self.std_headers)}"
            )
        lines = [head] + [str(f) for f in self.findings]
        lines.append("OK" if self.ok else f"{len(self.findings)} finding(s)")
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SynthReport:
        data = json.loads(text)
        data["findings"] = [Finding(**f) for f in data["findings"]]
        return cls(**data)


# ----------------------------------------------------------------------------- the dumps
@dataclass
class Function:
    mangled: str
    name: str
    signature: str = ""
    files: Counter = field(default_factory=Counter)  # location file -> statements
    loops: dict = field(default_factory=dict)  # loop number -> (header bb, set of bbs)
    succs: dict = field(default_factory=dict)  # bb -> [bb]
    bb_line: dict = field(default_factory=dict)  # bb -> "file:line" of its first statement
    calls: list = field(default_factory=list)  # (callee, args text, "file:line")
    addr: dict = field(default_factory=dict)  # temporary -> object whose address it holds
    float_line: str | None = None  # first statement naming a floating type
    origin: str = "generated"  # firmware | ap | system | generated

    @property
    def file(self) -> str | None:
        return self.files.most_common(1)[0][0] if self.files else None


def _sections(text: str):
    """(demangled, mangled, lines) per ';; Function' section of a GCC tree dump."""
    name = mangled = None
    lines: list[str] = []
    for line in text.splitlines():
        m = _FUNC.match(line)
        if m:
            if mangled is not None:
                yield name, mangled, lines
            name, mangled, lines = m.group(1), _CLONE.sub("", m.group(2)), []
        elif mangled is not None:
            lines.append(line)
    if mangled is not None:
        yield name, mangled, lines


def parse_cfg_dump(text: str) -> dict[str, Function]:
    """The `-fdump-tree-cfg-lineno-asmname` dump (GIMPLE, right after the CFG is built, before any
    optimisation): per function its header, loops (header, nodes), CFG successors, and the source
    location of every basic block and statement."""
    funcs: dict[str, Function] = {}
    for name, mangled, lines in _sections(text):
        fn = funcs.setdefault(mangled, Function(mangled, name))
        loop = None
        bb = None
        in_body = False
        for raw in lines:
            if not in_body:
                m = re.match(r"^;; Loop (\d+)$", raw)
                if m:
                    loop = int(m.group(1))
                    continue
                m = re.match(r"^;;  header (\d+), latch", raw)
                if m and loop is not None:
                    fn.loops[loop] = (int(m.group(1)), set())
                    continue
                m = re.match(r"^;;  nodes: ([\d ]+)$", raw)
                if m and loop is not None:
                    fn.loops[loop][1].update(int(n) for n in m.group(1).split())
                    continue
                m = re.match(r"^;; (\d+) succs \{([\d ]*)\}$", raw)
                if m:
                    fn.succs[int(m.group(1))] = [int(n) for n in m.group(2).split()]
                    continue
                if _LOC.sub("", raw).strip() == "{":
                    in_body = True
                elif raw and not raw.startswith(";;"):
                    fn.signature = _LOC.sub("", raw)  # the line before the body's "{"
                continue
            m = re.match(r"^\s*<bb (\d+)> :", raw)
            if m:
                bb = int(m.group(1))
                continue
            locs = _LOC.findall(raw)
            if locs:
                path = os.path.normpath(locs[0][0])
                fn.files[path] += 1
                if bb is not None:
                    fn.bb_line.setdefault(bb, f"{path}:{locs[0][1]}")
    return funcs


def parse_ssa_dump(text: str, funcs: dict[str, Function]) -> None:
    """The `-fdump-tree-ssa-lineno-asmname` dump (the same GIMPLE in SSA form, still before any
    optimisation; every callee by its mangled name, every value declared with its type): adds
    to `funcs` the calls, the temporaries that hold an address, and the first floating-point line."""
    for name, mangled, lines in _sections(text):
        fn = funcs.setdefault(mangled, Function(mangled, name))
        for raw in lines:
            locs = _LOC.findall(raw)
            stmt = _SSA_NAME.sub(r"\1", _LOC.sub("", raw)).strip()
            if not stmt or stmt.startswith(";;"):
                continue
            if fn.float_line is None and _FLOAT.search(stmt):
                fn.float_line = stmt
            m = _ADDR.match(stmt)
            if m:
                fn.addr[m.group(1)] = m.group(2).strip()
            m = _CALL.match(stmt)
            if m and m.group(1) not in _KEYWORDS:
                where = f"{os.path.normpath(locs[0][0])}:{locs[0][1]}" if locs else None
                fn.calls.append((m.group(1), m.group(2), where))
    for fn in funcs.values():
        fn.calls = [(_resolve(c, funcs), args, where) for c, args, where in fn.calls]


def parse_ivcanon_dump(text: str) -> dict[str, dict[int, int | None]]:
    """`-fdump-tree-ivcanon-details`: function -> {loop: constant iteration count or None}."""
    out: dict[str, dict[int, int | None]] = {}
    for _, mangled, lines in _sections(text):
        loops = out.setdefault(mangled, {})
        for line in lines:
            m = re.match(r"^(?:Estimating|Analyzing) # of iterations of loop (\d+)$", line) or re.match(
                r"^Loop (\d+) (?:likely )?iterates", line
            )
            if m:
                loops.setdefault(int(m.group(1)), None)
            m = re.match(r"^Loop (\d+) iterates (\d+) times\.$", line)
            if m:
                # latch executions; the body runs once more
                loops[int(m.group(1))] = int(m.group(2)) + 1
    return out


def parse_include_tree(stderr: str) -> list[tuple[str | None, str]]:
    """(includer or None for the main file, included) pairs from g++ -H."""
    edges: list[tuple[str | None, str]] = []
    stack: list[str] = []
    for line in stderr.splitlines():
        m = re.match(r"^(\.+) (\S.*)$", line)
        if not m:
            continue
        depth, path = len(m.group(1)), os.path.normpath(m.group(2))
        del stack[depth - 1 :]
        edges.append((stack[-1] if stack else None, path))
        stack.append(path)
    return edges


# ----------------------------------------------------------------------------- the rules
class _Checker:
    def __init__(self, fw: Path, types: str, ap_dir: Path | None):
        self.fw, self.types, self.ap_dir = fw, types, ap_dir
        self.report = SynthReport(str(fw), types)

    def add(self, rule: str, where: str, message: str) -> None:
        self.report.findings.append(Finding(rule, where, message))

    def origin(self, path: str | None) -> str:
        if path is None:
            return "generated"
        if not os.path.isabs(path):
            return "firmware" if not path.startswith("..") else "system"
        resolved = Path(path).resolve()
        if resolved.is_relative_to(SYNTH_VIEW):
            return "tool"
        if self.ap_dir is not None and resolved.is_relative_to(self.ap_dir.resolve()):
            return "ap"
        if resolved.is_relative_to(self.fw.resolve()):
            return "firmware"
        return "system"

    # -- headers
    def headers(self, edges) -> None:
        std: set[str] = set()
        for parent, child in edges:
            p_origin = "firmware" if parent is None else self.origin(parent)
            c_origin = self.origin(child)
            name = os.path.basename(child)
            if p_origin == "firmware" and c_origin != "firmware":
                ok = (
                    (c_origin == "ap" and name in AP_TOP_HEADERS)
                    or (c_origin == "system" and name in FIRMWARE_SYSTEM_HEADERS)
                    or (c_origin == "tool" and name in TOOL_HEADERS)
                )
                if not ok:
                    self.add(
                        "headers",
                        parent or "top.cpp",
                        f"includes {child}: firmware may include only firmware "
                        f"headers, {', '.join(sorted(FIRMWARE_SYSTEM_HEADERS | AP_TOP_HEADERS | TOOL_HEADERS))}",
                    )
            elif p_origin == "ap" and c_origin == "system":
                std.add(name)
        self.report.std_headers = sorted(std)
        extra = std - AP_SYSTEM_HEADERS
        if extra:
            self.add(
                "headers",
                "ap headers",
                f"include {', '.join(sorted(extra))}, beyond the documented "
                f"{', '.join(sorted(AP_SYSTEM_HEADERS))} (a different ap_types version?)",
            )

    # -- calls, allocation, recursion, floats, aliasing
    def functions(self, funcs: dict[str, Function]) -> list[Function]:
        for fn in funcs.values():
            fn.origin = self.origin(fn.file)
        firmware = [fn for fn in funcs.values() if fn.origin == "firmware"]
        for fn in firmware:
            for callee, _, where in self.own_calls(fn):
                at = f"{fn.name} ({where})"
                if callee in funcs:
                    if funcs[callee].origin == "system":
                        self.add(
                            "calls", at, f"calls {funcs[callee].name}, a C++ library function ({funcs[callee].file})"
                        )
                elif ALLOCATORS.match(callee):
                    self.add("allocation", at, f"dynamic allocation: calls {_demangle(callee)}")
                elif callee.startswith("_") and not callee.startswith(("_Z", "__builtin")) and callee[1:2].isdigit():
                    self.add("calls", at, f"indirect call through {callee} (function pointer)")
                elif CHANNEL_OPS.match(callee):
                    continue  # a FIFO read/write: Vitis's channel operation
                elif callee not in ALLOWED_CALLS:
                    self.add(
                        "calls",
                        at,
                        f"calls {_demangle(callee)}, which the firmware does not define "
                        f"(allowed: {', '.join(sorted(ALLOWED_CALLS))})",
                    )
        # everything the firmware can reach: the ap_int operators it uses included
        reach = {fn.mangled for fn in firmware}
        todo = list(reach)
        while todo:
            for callee, _, _ in funcs[todo.pop()].calls:
                if callee in funcs and callee not in reach:
                    reach.add(callee)
                    todo.append(callee)
        for mangled in sorted(reach):
            fn = funcs[mangled]
            if fn.float_line is not None:
                self.add("float", f"{fn.name} ({fn.file})", f"floating-point value: {fn.float_line}")
        for cycle in _cycles({m: [c for c, _, _ in funcs[m].calls if c in reach] for m in reach}):
            self.add(
                "recursion",
                funcs[cycle[0]].name,
                "recursive call chain: " + " -> ".join(funcs[m].name for m in cycle + [cycle[0]]),
            )
        self.aliasing(funcs, firmware)
        return firmware

    def own_calls(self, fn: Function) -> list:
        """The calls of a firmware function written in the firmware: not those that a header
        puts there (the static initialiser runs <iostream>'s `__ioinit` constructor, located in
        <iostream>)."""
        return [c for c in fn.calls if c[2] is None or self.origin(c[2].rsplit(":", 1)[0]) == "firmware"]

    def aliasing(self, funcs: dict[str, Function], firmware: list[Function]) -> None:
        top = next((fn for fn in firmware if fn.mangled == TOP or fn.name == TOP), None)
        if top is None:
            self.add("alias", TOP, "top function not found in the firmware")
        else:
            streams = "N3hls6stream" in top.mangled  # hls::stream ports are printed as `struct stream &`
            for param in _params(top.signature):
                if streams and param[0] == "struct stream &":
                    continue
                # a fixed-size array decays to `T (*)[N]`; `const Weights weights[1]` (codegen
                # --weights external: one read-only m_axi memory of constant tables) to
                # `const struct Weights *`: read-only, so no writable port can alias it
                if not re.search(r"\[\d+\] \*$", param[0]) and param[0] != "const struct Weights *":
                    self.add(
                        "alias",
                        TOP,
                        f"port '{param[1]}' ({param[0]}) is not a fixed-size array: "
                        "top-level ports must be distinct arrays",
                    )
        for fn in firmware:
            for callee, args, where in self.own_calls(fn):
                target = funcs.get(callee)
                if target is None:
                    continue
                params = _params(target.signature)
                objs = [_base_object(fn.addr.get(a, a)) for a in _split_args(args)]
                for i in range(len(objs)):
                    for j in range(i + 1, len(objs)):
                        if objs[i] is None or objs[i] != objs[j] or max(i, j) >= len(params):
                            continue
                        writable = [params[k][1] for k in (i, j) if _writable(params[k][0])]
                        if writable:
                            self.add(
                                "alias",
                                f"{fn.name} ({where})",
                                f"passes {objs[i]} to {target.name} as both '{params[i][1]}' and "
                                f"'{params[j][1]}' (writable: {', '.join(writable)})",
                            )

    # -- loops
    def loops(self, firmware: list[Function], counts: dict[str, dict[int, int | None]]) -> None:
        for fn in firmware:
            found = counts.get(fn.mangled, {})
            for num, (header, nodes) in sorted(fn.loops.items()):
                if num == 0:
                    continue
                self.report.loops += 1
                where = f"{fn.name} ({fn.bb_line.get(header) or fn.file})"
                exits = sorted({(a, b) for a in nodes for b in fn.succs.get(a, []) if b not in nodes})
                if len(exits) != 1:
                    self.add(
                        "loop",
                        where,
                        f"loop {num} has {len(exits)} exits (break, return or goto inside "
                        "it): its trip count depends on the data",
                    )
                if num in found and found[num] is None:
                    self.add(
                        "loop",
                        where,
                        f"loop {num}: g++ finds no constant iteration count (the bound is "
                        "not a compile-time constant of this function)",
                    )
                elif num in found:
                    self.report.trip_counts.setdefault(fn.name, []).append(found[num])
                elif fn.mangled not in counts:
                    self.add("loop", where, f"loop {num}: the function is missing from g++'s loop analysis")
                else:
                    self.report.loops_removed += 1
            self.report.functions += 1

    # -- undefined symbols
    def symbols(self, undefined: list[str], funcs: dict[str, Function], firmware: list[Function]) -> None:
        self.report.undefined = undefined
        called_by_firmware = {c for fn in firmware for c, _, _ in self.own_calls(fn)}
        model = []
        for sym in undefined:
            if sym in ALLOWED_UNDEFINED:
                continue
            if CHANNEL_OPS.match(sym):
                self.report.channel_ops.append(sym)
                continue
            if self.types == "ap" and sym in AP_SIM_UNDEFINED and sym not in called_by_firmware:
                model.append(sym)
                continue
            self.add(
                "symbols",
                "top.o",
                f"undefined symbol {_demangle(sym)} (allowed: "
                f"{', '.join(sorted(ALLOWED_UNDEFINED))}"
                + (", and the ap_int C-simulation model's documented list" if self.types == "ap" else "")
                + ")",
            )
        self.report.ap_model_symbols = model


def _cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """One representative cycle per strongly connected component with a cycle (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, []):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, []):
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _resolve(callee: str, funcs: dict[str, Function]) -> str:
    """The dumped function a call reaches: g++ emits the complete-object constructor/destructor
    (C1/D1) as an alias of the base-object one (C2/D2), so a call to one finds the other."""
    if callee in funcs or not callee.startswith("_Z"):
        return callee
    for a, b in (("C1", "C2"), ("C2", "C1"), ("D1", "D2"), ("D2", "D1")):
        for m in re.finditer(a + r"(?=[EI])", callee):
            alias = callee[: m.start()] + b + callee[m.end() :]
            if alias in funcs:
                return alias
    return callee


def _split_args(args: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for ch in args:
        if ch in "([<":
            depth += 1
        elif ch in ")]>":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


def _params(signature: str) -> list[tuple[str, str]]:
    """(type, name) of each parameter in a dump's function header `ret name (T a, U b)`."""
    m = re.search(r"\((.*)\)\s*$", signature)
    if not m:
        return []
    out = []
    for p in _split_args(m.group(1)):
        ty, _, name = p.rpartition(" ")
        out.append((ty.strip(), name.strip()))
    return out


def _writable(ptype: str) -> bool:
    """A pointer or reference to non-const (`short int[64] * restrict`: the kernels' __restrict rows)."""
    ptype = re.sub(r"\s*\b(?:__)?restrict\b", "", ptype).strip()
    return ptype.endswith(("*", "&")) and not ptype.startswith("const ")


def _base_object(arg: str) -> str | None:
    """`&act->l_x`, `&w_l_x`, `act->l_x`, a parameter name -> the object; None for values."""
    arg = arg.strip().lstrip("&").strip()
    if re.fullmatch(r"[A-Za-z_]\w*(?:->\w+|\.\w+)*", arg) and not re.fullmatch(r"_\d+|D\.\d+", arg):
        return arg
    return None


def _demangle(sym: str) -> str:
    if not sym.startswith("_Z") or shutil.which("c++filt") is None:
        return sym
    proc = subprocess.run(["c++filt", sym], capture_output=True, text=True)
    return proc.stdout.strip() or sym


# ----------------------------------------------------------------------------- entry points
def _compiler() -> str:
    cxx = os.environ.get("CXX") or "g++"
    if shutil.which(cxx) is None:
        raise CmambaError(f"C++ compiler '{cxx}' not found: install g++ or set CXX")
    if shutil.which("nm") is None:
        raise CmambaError("'nm' not found: install binutils (the undefined-symbol check reads the object with nm -u)")
    return cxx


def check_firmware(
    firmware_dir: str | Path, types: str, ap_dir: str | Path | None = None, workdir: str | Path | None = None
) -> SynthReport:
    """Compile firmware_dir/top.cpp once with the check flags and apply every rule (module
    docstring). ap_dir: the folder with ap_int.h (types == "ap"). workdir: where the object and
    dumps go (a temporary folder, removed afterwards, by default)."""
    t0 = time.perf_counter()
    fw = Path(firmware_dir).resolve()
    if not (fw / "top.cpp").is_file():
        raise CmambaError(f"{fw}: no top.cpp (not the firmware/ folder of a generated project)")
    if types not in ("stdint", "ap"):
        raise CmambaError(f"unknown types {types!r} (stdint or ap)")
    if types == "ap" and (ap_dir is None or not (Path(ap_dir) / "ap_int.h").is_file()):
        raise CmambaError(f"--types ap needs the ap headers: {ap_dir} has no ap_int.h")
    cxx = _compiler()
    ap = Path(ap_dir).resolve() if types == "ap" else None
    chk = _Checker(fw, types, ap)
    tmp = Path(tempfile.mkdtemp(prefix="synth-check-")) if workdir is None else Path(workdir)
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        flags = (
            CXXFLAGS
            + ANALYSIS_FLAGS
            + ["-I", str(SYNTH_VIEW)]
            + (["-nostdinc++"] if ap is None else ["-isystem", str(ap)] + AP_FLAGS)
        )
        cmd = [cxx, *flags, *DUMP_FLAGS, "-I.", "-c", "top.cpp", "-o", str(tmp / "top.o"), "-dumpdir", f"{tmp}/"]
        chk.report.command = [c for c in cmd if c not in DUMP_FLAGS]
        proc = subprocess.run(cmd, cwd=fw, capture_output=True, text=True)
        chk.headers(parse_include_tree(proc.stderr))
        if proc.returncode != 0:
            errors = [ln for ln in proc.stderr.splitlines() if re.search(r"\b(?:error|fatal error)\b", ln)]
            shown = CXXFLAGS + (["-nostdinc++"] if ap is None else [])
            chk.add("compile", "top.cpp", f"does not compile with {' '.join(shown)}:\n" + "\n".join(errors[:8]))
            return chk.report

        def dump(kind: str) -> str:
            files = sorted(tmp.glob(f"*.{kind}"))
            if not files:
                raise CmambaError(f"{cxx} wrote no -fdump-tree-{kind} dump (GCC 10 or newer is needed)")
            return files[0].read_text(errors="replace")

        funcs = parse_cfg_dump(dump("cfg"))
        parse_ssa_dump(dump("ssa"), funcs)
        firmware = chk.functions(funcs)
        chk.loops(firmware, parse_ivcanon_dump(dump("ivcanon")))
        nm = subprocess.run(["nm", "-u", str(tmp / "top.o")], capture_output=True, text=True, check=True)
        chk.symbols(sorted(ln.split()[-1] for ln in nm.stdout.splitlines() if ln.strip()), funcs, firmware)
    finally:
        if workdir is None:
            shutil.rmtree(tmp, ignore_errors=True)
    chk.report.seconds = time.perf_counter() - t0
    return chk.report


def render_firmware(
    model: Model | str | Path,
    out_dir: str | Path,
    precision: str = "int16",
    types: str = "stdint",
    interface: str = "memory",
    reuse: ReuseSpec | None = None,
) -> Path:
    """Write only the firmware/ folder that generate_project() would write for these options (no
    golden vectors, testbench or Makefile: nothing runs the golden model), for check_firmware().
    Returns out_dir/firmware."""
    from codegen.names import sanitize_names
    from codegen.project import as_model, emit_with_reuse, load_backend, render_files

    model = as_model(model)
    names = sanitize_names(layer.name for layer in model.graph.layers)
    files = render_files(
        model, emit_with_reuse(model, load_backend(precision), names, types, reuse), types, interface=interface
    )
    for rel, text in files.items():
        if rel.startswith("firmware/"):
            path = Path(out_dir) / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    return Path(out_dir) / "firmware"


def check_project(out_dir: str | Path, workdir: str | Path | None = None) -> SynthReport:
    """check_firmware() on a generated project: its types from project.json, ap headers from
    $CMAMBA_HLS_AP_INCLUDE."""
    from codegen.build import ap_include, project_types

    out_dir = Path(out_dir)
    types = project_types(out_dir)
    return check_firmware(out_dir / "firmware", types, ap_include() if types == "ap" else None, workdir)
