"""Peak memory of `Model.run` on a large batch, every mode (issue 13 item 5).

Runs each mode in its own subprocess on N random windows (default 100,000) of the default
model and prints the process's peak RSS, the part of it that is the input array itself, and
the target: below 1 GB in every mode (run chunks batches of CHUNK_WINDOWS windows,
intsim/chunks.py).

Usage: python bench/run_memory.py [MODEL_DIR] [--windows N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

TARGET_MB = 1024
CHILD = """
import os, resource, sys, time
import numpy as np
sys.path.insert(0, {repo!r})
from intsim import load_model
m = load_model({model!r})
m.run(np.zeros((2,) + m.graph.input_shape), {mode!r})          # JIT load, programs lowered
x = np.random.default_rng(0).standard_normal(({n},) + m.graph.input_shape)
t = time.perf_counter()
m.run(x, {mode!r})
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, x.nbytes / 2**20, time.perf_counter() - t)
"""


def main(argv=None) -> int:
    from golden_speed import prepare_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", help="model directory (default: examples/default)")
    ap.add_argument("--windows", type=int, default=100_000, help="batch size (default 100000)")
    args = ap.parse_args(argv)
    env = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    with tempfile.TemporaryDirectory() as tmp:
        model, label = prepare_model(args.model, Path(tmp))
        print(f"Model.run peak memory on {args.windows:,} windows of {label} (one process per mode)")
        print(f"{'mode':<9}{'peak RSS MB':>12}{'input MB':>10}{'seconds':>9}  target < {TARGET_MB} MB")
        worst = 0.0
        for mode in ("fp32", "quant16", "bittrue", "quant8"):
            code = CHILD.format(repo=str(REPO), model=str(model.graph.path), mode=mode, n=args.windows)
            out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
            peak, x_mb, seconds = (float(v) for v in out.stdout.split())
            worst = max(worst, peak)
            print(f"{mode:<9}{peak:>12.0f}{x_mb:>10.0f}{seconds:>9.1f}  {'met' if peak < TARGET_MB else 'NOT met'}")
    print(f"target peak < {TARGET_MB} MB in every mode: {'met' if worst < TARGET_MB else 'NOT met'} ({worst:.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
