"""Golden-model speed, measured side by side in one run (issue 4's benchmark).

Prints samples/s of the bittrue INT16 golden model, the quant8 INT8 path, the fp32 numpy
reference and (if torch and the `model` package are installed) the PyTorch eager float model, at
batch 1 and batch 64, single-threaded, with the ratios (two interleaved rounds of every path, the
better round of each kept). JIT compile time is reported separately (first call in a fresh cache
dir vs cached load). Then the bit-true PyTorch back end (model/torch_backend.py, CPU, one thread)
beside the Numba golden model on the same windows, INT16 and INT8, batch 1 and 1024 (each pair
measured back to back, the better of two rounds kept).

Usage: python bench/golden_speed.py [MODEL_DIR] [--seconds S]
Default model: examples/default (calibrated into a temp copy if needed); if it is
not there, a random model with the default dimensions.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Single-threaded everywhere, set before numpy/torch load their thread pools.
for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from intsim import load_model  # noqa: E402
from intsim.calibrate import calibrate  # noqa: E402
from intsim.synth import make_random_model  # noqa: E402

DEFAULT_DIMS = dict(c_in=9, length=64, patch=8, stride=4, d_model=32, d_inner=64, n_blocks=2, d_conv=4, horizon=16)


def prepare_model(model_dir: str | None, work: Path):
    src = Path(model_dir) if model_dir else REPO / "examples" / "default"
    dst = work / "model"
    if (src / "model.json").is_file():
        shutil.copytree(src, dst)
        label = str(src.relative_to(REPO)) if src.is_relative_to(REPO) else str(src)
    else:
        make_random_model(dst, **DEFAULT_DIMS)
        label = "random model, default dimensions"
    model = load_model(dst)
    if "int16" not in model.graph.quant or "int8" not in model.graph.quant:
        rng = np.random.default_rng(0)
        calibrate(model, rng.standard_normal((512,) + model.graph.input_shape))
    return load_model(dst), label


def macs_per_window(graph) -> int:
    """Multiply-accumulates of one window, from the graph: conv_kx1 C_out*C_in*K*T_out,
    conv1x1 C_out*C_in*L, dwconv C*K*L (the element-wise ops are not counted)."""
    total = 0
    for layer in graph.layers:
        w = layer.weights.get("weight")
        if layer.op in ("conv_kx1", "conv1x1", "dwconv"):
            total += int(w.size) * int(layer.shape[1])
    return total


def machine_limit(graph) -> tuple[float, str]:
    """(windows/s, how): the graph's MACs per window against one core's peak int16 MAC rate:
    MACs per cycle from the ISA (AVX-512 VNNI vpdpwssd: 32 int16 MACs per instruction, one per
    cycle; AVX2 vpmaddwd: 16; else SSE2 pmaddwd: 8) times the clock (/proc/cpuinfo 'cpu MHz')."""
    flags, mhz = "", 0.0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags") and not flags:
                flags = line
            if line.startswith("cpu MHz") and not mhz:
                mhz = float(line.split(":")[1])
    except OSError:
        pass
    per_cycle, isa = (
        (32, "avx512_vnni") if "avx512_vnni" in flags else (16, "avx2") if " avx2" in flags else (8, "sse2")
    )
    mhz = mhz or 3000.0
    macs = macs_per_window(graph)
    mac_rate = per_cycle * mhz * 1e6
    return mac_rate / macs, (
        f"{macs:,} MACs/window vs {per_cycle} int16 MACs/cycle ({isa}) x {mhz:.0f} MHz "
        f"= {mac_rate / 1e9:.0f} G MAC/s on one core"
    )


ROUNDS = 2  # interleaved measuring rounds per cell of the first table (best kept, as in bittrue_rates)


def rate(fn, batch: int, seconds: float) -> float:
    """Samples per CPU-second of this process (time.process_time: every path here is single-threaded,
    so time the machine gives other jobs does not count) of fn() processing `batch` samples, over
    >= `seconds` of it."""
    fn()  # warm
    n, start = 0, time.process_time()
    while True:
        fn()
        n += batch
        elapsed = time.process_time() - start
        if elapsed >= seconds:
            return n / elapsed


def torch_runner(model_dir: Path):
    """A callable running the PyTorch eager model, or (None, reason)."""
    try:
        import torch

        from model.load import load_torch_model
    except ImportError as exc:
        return None, f"not measured ({exc.name or exc} not installed)"
    torch.set_num_threads(1)
    module = load_torch_model(model_dir).eval()

    def run(x):
        with torch.no_grad():
            return module(torch.from_numpy(x.astype(np.float32)))

    return run, ""


def torch_bittrue(model):
    """The bit-true PyTorch back end on the CPU (one thread), or (None, reason)."""
    try:
        import torch

        from model.torch_backend import TorchRunner
    except ImportError as exc:
        return None, f"not measured ({exc.name or exc} not installed)"
    torch.set_num_threads(1)
    return TorchRunner(model, "cpu"), ""


def bittrue_rates(model, runner, x, seconds: float) -> dict:
    """(mode, back end, batch) -> samples/s; Numba and torch measured back to back, best of 2 rounds."""
    rates: dict = {}
    for batch in (1, 1024):
        xb = x[:batch]
        for mode in ("bittrue", "quant8"):
            for _ in range(2):
                for backend, fn in (
                    ("numba", lambda xb=xb, mode=mode: model.run(xb, mode)),
                    ("torch", lambda xb=xb, mode=mode: runner.run(xb, mode)),
                ):
                    value = rate(fn, batch, seconds)
                    rates[(mode, backend, batch)] = max(rates.get((mode, backend, batch), 0.0), value)
    return rates


def jit_times() -> tuple[float, float]:
    """Compile time with an empty Numba cache vs load time with a warm cache (subprocesses)."""
    code = (
        f"import time,sys,numpy as np; sys.path.insert(0, {str(REPO)!r}); t=time.perf_counter();"
        "from intsim.synth import make_random_model; from intsim import load_model;"
        "from intsim.calibrate import calibrate; import tempfile;"
        "d=make_random_model(tempfile.mkdtemp()); m=load_model(d);"
        "calibrate(m, np.zeros((4,)+m.graph.input_shape), save=False);"
        "t=time.perf_counter(); m.run(np.zeros(m.graph.input_shape),'bittrue');"
        "m.run(np.zeros(m.graph.input_shape),'quant8'); print(time.perf_counter()-t)"
    )
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        cold = float(
            subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
            ).stdout.split()[-1]
        )
        warm = float(
            subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
            ).stdout.split()[-1]
        )
    return cold, warm


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", help="model directory (default: examples/default)")
    ap.add_argument("--seconds", type=float, default=1.5, help="measuring time per cell")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        model, label = prepare_model(args.model, Path(tmp))
        c_in, length = model.graph.input_shape
        x = np.random.default_rng(1).standard_normal((64, c_in, length))
        torch_run, torch_note = torch_runner(model.graph.path)
        rows: dict = {}
        for _ in range(ROUNDS):  # every path once per round, interleaved; the best round of each kept
            for batch in (1, 64):
                xb = x[:batch]
                paths = {
                    "bittrue": lambda xb=xb: model.run(xb, "bittrue"),
                    "quant8": lambda xb=xb: model.run(xb, "quant8"),
                    "fp32 numpy": lambda xb=xb: model.run(xb, "fp32"),
                }
                if torch_run is not None:
                    paths["torch eager"] = lambda xb=xb: torch_run(xb)
                for path, fn in paths.items():
                    rows[(path, batch)] = max(rows.get((path, batch), 0.0), rate(fn, batch, args.seconds))
        runner, bit_note = torch_bittrue(model)
        bit = {}
        if runner is not None:
            big = np.random.default_rng(2).standard_normal((1024, c_in, length))
            bit = bittrue_rates(model, runner, big, args.seconds)
    cold, warm = jit_times()
    print(
        f"golden-model speed on {label}: {model.graph.n_weights()} weights, input [{c_in}, {length}], "
        f"single-threaded (samples/s)"
    )
    ref = "torch eager" if torch_run is not None else "fp32 numpy"
    limit, how = machine_limit(model.graph)
    print(f"machine limit: {limit:,.0f} windows/s ({how})")
    print(
        f"{'path':<14}{'batch 1':>12}{'batch 64':>12}{'x ' + ref + ' @1':>22}{'x ' + ref + ' @64':>22}"
        f"{'x limit @1':>12}{'x limit @64':>13}"
    )
    for path in ("bittrue", "quant8", "fp32 numpy", "torch eager"):
        if (path, 1) not in rows:
            print(f"{path:<14}{torch_note:>12}")
            continue
        r1, r64 = rows[(path, 1)], rows[(path, 64)]
        print(
            f"{path:<14}{r1:>12.0f}{r64:>12.0f}{r1 / rows[(ref, 1)]:>22.2f}{r64 / rows[(ref, 64)]:>22.2f}"
            f"{r1 / limit:>12.3f}{r64 / limit:>13.3f}"
        )
    print(f"JIT: first run with an empty Numba cache {cold:.1f} s; with the cache (cache=True) {warm:.2f} s")
    for batch in (1, 64):
        bittrue_rate = rows[("bittrue", batch)]
        print(
            f"target bittrue >= 10,000 samples/s at batch {batch}: "
            f"{'met' if bittrue_rate >= 10_000 else 'NOT met'} ({bittrue_rate:.0f})"
        )
    if torch_run is not None:
        for batch, want in ((1, 10), (64, 2)):
            ratio = rows[("bittrue", batch)] / rows[("torch eager", batch)]
            print(
                f"target bittrue >= {want}x torch eager at batch {batch}: "
                f"{'met' if ratio >= want else 'NOT met'} ({ratio:.2f}x)"
            )
    for batch in (1, 64):
        q8, bt = rows[("quant8", batch)], rows[("bittrue", batch)]
        print(f"target quant8 >= bittrue at batch {batch}: {'met' if q8 >= bt else 'NOT met'} ({q8 / bt:.2f}x)")
    print()
    print("bit-true PyTorch back end (CPU, 1 thread) beside the Numba golden model, same windows (samples/s)")
    if not bit:
        print(f"  {bit_note}")
        return 0
    print(f"{'mode':<10}{'Numba @1':>11}{'torch @1':>11}{'ratio':>8}{'Numba @1024':>14}{'torch @1024':>14}{'ratio':>8}")
    for mode in ("bittrue", "quant8"):
        n1, t1 = bit[(mode, "numba", 1)], bit[(mode, "torch", 1)]
        n2, t2 = bit[(mode, "numba", 1024)], bit[(mode, "torch", 1024)]
        print(f"{mode:<10}{n1:>11.0f}{t1:>11.0f}{t1 / n1:>8.2f}{n2:>14.0f}{t2:>14.0f}{t2 / n2:>8.2f}")
        print(
            f"target torch bit-true ({mode}) >= 1x Numba at batch 1024: "
            f"{'met' if t2 >= n2 else 'NOT met'} ({t2 / n2:.2f}x)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
