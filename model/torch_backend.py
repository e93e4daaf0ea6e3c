"""The bit-true PyTorch back end: the INT16 and INT8 programs on integer torch tensors
(needs the 'train' extra; docs/model.md "Bit-true PyTorch back end").

    from model.torch_backend import TorchRunner
    res = TorchRunner(model, device="cpu").run(x, "bittrue")      # or "quant8"; device="cuda"
    res = model.run(x, "bittrue", backend="torch")                 # the same, through the plug-in

It runs the very lowered programs of the golden model (`Model.program`, `Model.program8`:
`intsim.int16.lower_int16`, `intsim.int8.lower_int8`), one registry row per op (TORCH16 in
model/torch_int16.py, TORCH8 in model/torch_int8.py), batched over windows (the only Python
loops are over layers and over the scan's time steps), and returns a `RunResult` equal to the
golden model's byte for byte: output, integer output, captured tensors and per-tensor
statistics (saturations, min, max, size). Host-side input quantization is the golden model's own
(`Model._quantize_input`: `quantize_q` / `quantize_act` in one jitted pass). `TorchProgram` is the
tensor-level interface QAT uses.

intsim discovers this back end through the `cmamba_hls.backends` entry point (pyproject.toml),
so `Model.run(..., backend="torch")` works without intsim importing torch or this package.
"""

from __future__ import annotations

import ctypes
import functools
import sys
from collections.abc import Iterable

import numpy as np
import torch
from numpy.typing import ArrayLike

from intsim.chunks import CHUNK_WINDOWS, run_in_chunks
from intsim.errors import UnsupportedError
from intsim.executor import Model, RunResult, _wants
from intsim.fixedpoint import dequantize
from intsim.formats import lsb
from intsim.graph import INPUT_NAME
from intsim.int8 import Int8Program, dequantize_act
from intsim.int16 import Int16Program
from intsim.modes import BITTRUE, QUANT8, Mode, get_mode
from intsim.ops import BackendTable
from model.torch_fixedpoint import min_max
from model.torch_int8 import TORCH8
from model.torch_int16 import TORCH16
from model.torch_mac import INT8_CODES_ATTR
from model.torch_rows import TorchRow

TABLES: dict[str, BackendTable[TorchRow]] = {"int16": TORCH16, "int8": TORCH8}
INT_DTYPES = {"int16": np.int16, "int8": np.int8}


class TorchProgram:
    """A lowered program (Int16Program or Int8Program) prepared on a device: each step's row
    and its parameters as device tensors. `run(x_q)` -> (tensors, saturations) by name."""

    def __init__(self, program: Int16Program | Int8Program, precision: str, device: str | torch.device):
        table = TABLES[precision]
        self.program = program
        self.precision = precision
        self.device = torch.device(device)
        self.steps = []
        for st in program.steps:
            row = table.row(st.op, st.name)
            self.steps.append((st, row.run, row.prepare(st, self.device)))

        self.last_use = {INPUT_NAME: -1}  # tensor name -> index of the last step that reads it (-1: none)
        for i, (st, _, _) in enumerate(self.steps):
            self.last_use[st.name] = -1
            self.last_use.update((s, i) for s in st.inputs)

    def run(
        self, x_q: torch.Tensor, keep: Iterable[str] | None = None
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, tuple[torch.Tensor, torch.Tensor, int]]]:
        """x_q: int32 [B, L, C_in] (channels-last) on the device, int16 / int8 codes at the input
        format -> ({tensor name: int32 [B, L, C]}, {layer name: 0-d int64 saturation count},
        {tensor name: (min, max, numel)}: every tensor's statistics). keep=None keeps every tensor;
        otherwise only the named ones stay, and each other tensor is dropped after the last step that
        reads it (its statistics taken first): a chunk's memory then stays a few layers deep, so the
        allocator hands the next layers cache-warm blocks."""
        env = {INPUT_NAME: x_q}
        sats, stats = {}, {}
        kept = None if keep is None else set(keep)

        def drop(name: str) -> None:
            t = env[name] if kept is None or name in kept else env.pop(name)
            stats[name] = (*min_max(t), t.numel())

        for i, (st, run, prepared) in enumerate(self.steps):
            env[st.name], sats[st.name] = run(prepared, [env[s] for s in st.inputs])
            for name in dict.fromkeys((*st.inputs, st.name)):  # inputs read for the last time, an unread output
                if self.last_use[name] in (i, -1) and name not in stats:
                    drop(name)
        for name in list(env):
            if name not in stats:
                drop(name)
        return env, sats, stats


CPU_CHUNK = 256  # windows per program run on CPU: each layer's tensors stay cache-sized

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters (malloc.h)
CPU_MMAP_THRESHOLD = 32 << 20  # glibc's own ceiling for its adaptive mmap threshold (DEFAULT_MMAP_THRESHOLD_MAX)


@functools.cache
def keep_freed_cpu_memory() -> bool:
    """Let glibc's malloc reuse freed blocks of up to 32 MiB instead of unmapping them (once per process;
    Linux / glibc only, else a no-op: False). A chunk's layer temporaries are 0.2-4 MB each; under glibc's
    start-up thresholds (128 KiB, adapted upwards only when a larger mapped block is freed) every one is
    a fresh mmap whose pages fault in on first touch, which doubled the back end's CPU time at batch
    1,024 (unless some other code had already freed a large block). These are the values glibc's
    adaptive rule reaches by itself after freeing a 32 MiB block: mmap above 32 MiB, trim the heap top
    above 64 MiB. Process-wide, like any allocator setting; the numbers computed do not depend on it."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (or no symbol table): leave the allocator alone
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_TRIM_THRESHOLD, 2 * CPU_MMAP_THRESHOLD)) and bool(
        mallopt(M_MMAP_THRESHOLD, CPU_MMAP_THRESHOLD)
    )


class TorchRunner:
    """`Model.run` for the integer modes, on torch (CPU by default; device="cuda" on a GPU).
    Batches run in chunks of `chunk` windows (default: 256 on CPU, where smaller tensors stay in
    cache; 1,024 on a GPU; a channel-independent model's chunk holds `chunk` series, i.e.
    `chunk // C_in` windows), merged exactly (intsim/chunks.py): the bits do not depend on it.
    On CPU it raises glibc's mmap threshold once per process (`keep_freed_cpu_memory`)."""

    def __init__(self, model: Model, device: str | torch.device | None = None, chunk: int | None = None):
        self.model = model
        self.device = torch.device(device or "cpu")
        self.chunk = chunk or (CPU_CHUNK if self.device.type == "cpu" else CHUNK_WINDOWS)
        if self.device.type == "cpu":
            keep_freed_cpu_memory()
        self._programs: dict[str, tuple[object, TorchProgram]] = {}

    def program(self, mode: str | Mode) -> TorchProgram:
        """The model's lowered program of `mode`, prepared on this runner's device (re-prepared when
        the model lowers again, e.g. after `Model.invalidate()`)."""
        mode = get_mode(mode)
        if not mode.integer:
            raise UnsupportedError(
                f"mode '{mode.name}' is float; the torch bit-true back end runs the integer "
                f"modes ({BITTRUE.name}, {QUANT8.name})"
            )
        lowered = self.model.program_of(mode)
        cached = self._programs.get(mode.precision)
        if cached is None or cached[0] is not lowered:
            cached = (lowered, TorchProgram(lowered, mode.precision, self.device))
            self._programs[mode.precision] = cached
        return cached[1]

    def run(self, x: ArrayLike, mode: str | Mode = BITTRUE, capture: bool | Iterable[str] | None = None) -> RunResult:
        """As `Model.run(x, mode, capture)` (x: float [B, C_in, L] or [C_in, L], normalised); the
        same RunResult, byte for byte, whatever `chunk`."""
        mode = get_mode(mode)
        prog = self.program(mode)
        xb, single = self.model._check_float(x)

        frac = prog.program.input_frac if mode.precision == "int16" else None

        def chunk(part):  # the golden model's own host-side quantization: one jitted pass, the same codes
            x_q, n_sat = self.model._quantize_input(part.astype(np.float64, copy=False), frac)
            res = self.run_int(x_q, mode, capture)
            res.stats[INPUT_NAME]["saturations"] = n_sat
            return res

        res = run_in_chunks(chunk, xb, self.chunk, self.model.graph.series)
        if single:
            res.output, res.output_q = res.output[0], res.output_q[0]
        return res

    def run_int(
        self, x_q: np.ndarray, mode: str | Mode = BITTRUE, capture: bool | Iterable[str] | None = None
    ) -> RunResult:
        """From integer codes: x_q int16 (bittrue) / int8 (quant8) [B, C_in, L] at the input format
        (`Model.run_int16` / `Model.run_int8`); a channel-independent graph runs as the batch of its
        series, [B*C_in, 1, L], like the golden model (`Graph.fold`)."""
        mode = get_mode(mode)
        prog = self.program(mode)
        xb = self.model.graph.fold(
            self.model._int_batch(x_q, INT_DTYPES[mode.precision])
        )  # channel-independent: series
        # channels-last [B, L, C] made contiguous on the host in the narrow type (a transposed view costs the
        # first layer's strided conversion 10x more)
        names = [INPUT_NAME] + [st.name for st in prog.program.steps]
        keep = [prog.program.output_tensor] + ([n for n in names if _wants(capture, n)] if capture else [])
        with torch.inference_mode():  # no autograd bookkeeping (version counters, views) on ~440 ops a chunk: ~10 %
            host = np.ascontiguousarray(xb.transpose(0, 2, 1))  # may keep a size-1 axis's odd stride: viewed anew
            codes = torch.as_tensor(host.reshape(-1), device=self.device).view(host.shape)  # canonical strides
            x_in = codes.to(torch.int32)
            if codes.dtype == torch.int8:  # an int8 GEMM reading the input takes these codes (`int8_codes`)
                setattr(x_in, INT8_CODES_ATTR, codes)
            env, sats, tstats = prog.run(x_in, keep)
        lo, hi = (torch.stack(v).cpu().numpy() for v in zip(*(tstats[n][:2] for n in names), strict=True))
        n_sat = [0] + torch.stack([sats[n] for n in names[1:]]).cpu().tolist()
        dtype = INT_DTYPES[mode.precision]

        def host(t: torch.Tensor) -> np.ndarray:  # [B, L, C] int32 -> numpy [B, C, L] int16 / int8
            return np.ascontiguousarray(t.transpose(1, 2).cpu().numpy().astype(dtype))

        out_q = self.model._shape_output(host(env[prog.program.output_tensor]))
        tensors = {n: host(env[n]) for n in names if _wants(capture, n)} if capture else {}
        if mode.precision == "int16":
            fracs = -np.array([prog.program.frac_of(n) for n in names])  # one vectorised pass, the same float64s
            values = zip(
                np.ldexp(lo.astype(np.float64), fracs).tolist(),
                np.ldexp(hi.astype(np.float64), fracs).tolist(),
                strict=True,
            )
            out_frac = prog.program.output_frac
            output, out_lsb = dequantize(out_q, out_frac), lsb(out_frac)
        else:
            qps = [prog.program.input_qp] + [st.out_qp for st in prog.program.steps]
            scale, zp = (np.array(v, dtype=np.float64) for v in zip(*qps, strict=True))
            values = zip(dequantize_act(lo, scale, zp).tolist(), dequantize_act(hi, scale, zp).tolist(), strict=True)
            out_frac = None
            output, out_lsb = dequantize_act(out_q, *prog.program.output_qp), float(prog.program.output_qp.scale)
        stats = {
            n: {"saturations": int(s), "min": a, "max": b, "size": tstats[n][2]}
            for n, s, (a, b) in zip(names, n_sat, values, strict=True)
        }
        return RunResult(mode.name, output, out_q, stats, tensors, out_frac, out_lsb)


def make_backend(model: Model) -> TorchRunner:
    """The `cmamba_hls.backends` entry point: `Model.run(..., backend="torch")`."""
    return TorchRunner(model)
