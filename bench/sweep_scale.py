"""Points per hour of `cmamba-hls sweep` (README "Design-space sweeps", docs/sweep.md).

Runs a space (default examples/sweep/space.yaml, 96 points) on the shipped model, every test
window, alternately in one process (--workers 0) and on the local Dask cluster (--workers N, default
the machine's cores), ROUNDS times each, and prints each run's points per hour and start-up time with
the load average before and after, so both are measured in the same conditions. Also checks that
every run wrote the same results apart from the run-time column.

    python bench/sweep_scale.py [--rounds 2] [--workers N] [--space FILE] [--samples N]
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def results_without_timings(path: Path) -> list[list[str]]:
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    i = rows[0].index("seconds")
    return [r[:i] + r[i + 1 :] for r in rows]


def one_run(out: Path, space: Path, workers: int, samples: int | None) -> tuple[str, list[list[str]]]:
    cmd = [
        sys.executable,
        "-m",
        "cmamba_hls.cli",
        "sweep",
        str(REPO / "examples" / "default"),
        "--space",
        str(space),
        "--out",
        str(out),
        "--workers",
        str(workers),
    ]
    if samples:
        cmd += ["--samples", str(samples)]
    load0 = os.getloadavg()[0]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    load1 = os.getloadavg()[0]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("finished"))
    rate = re.search(r"in ([\d.]+) s \(([\d,]+) points/hour; start-up ([\d.]+) s\)", line)
    text = (
        f"{rate.group(2):>7} points/hour ({rate.group(1)} s, start-up {rate.group(3)} s), load average "
        f"{load0:.1f} -> {load1:.1f}"
    )
    return text, results_without_timings(out / "results.csv")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument(
        "--space",
        type=Path,
        default=REPO / "examples" / "sweep" / "space.yaml",
        help="space file (default examples/sweep/space.yaml, 96 points; examples/sweep/large.yaml: 624)",
    )
    p.add_argument("--samples", type=int, help="a random subset of the space (default: all its points)")
    args = p.parse_args()
    reference = None
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for workers in (0, args.workers):
                out = Path(tmp) / f"r{r}w{workers}"
                text, rows = one_run(out, args.space, workers, args.samples)
                what = "one process      " if workers == 0 else f"{workers} Dask worker(s)"
                print(f"round {r + 1}, {what}: {len(rows) - 1} points, {text}", flush=True)
                reference = reference or rows
                assert rows == reference, "results differ between runs"
    print("every run wrote the same results.csv apart from the run-time column")
    return 0


if __name__ == "__main__":
    sys.exit(main())
