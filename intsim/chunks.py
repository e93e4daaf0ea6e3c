"""Bounded memory for large batches: run a batch in chunks of windows and merge the results.

`Model.run` keeps every intermediate tensor of a batch alive while it runs (the float modes
hold one float64 array per layer, bittrue one int16 buffer for the whole program), so memory
grows with the batch: 100,000 default-model windows took 17 GB in fp32. Splitting the batch
into chunks of CHUNK_WINDOWS windows bounds that working memory (about 150 KB per window in
fp32/quant16, 40 KB in bittrue: ~160 MB / ~40 MB per chunk) while the per-window results do not
change: every mode is batch-invariant bit for bit (docs/reports.md, Determinism). Only the
results are kept: the output, the integer output, captured tensors (all windows, so
`capture` on a huge batch still costs their full size) and per-tensor statistics, merged
exactly (saturations and sizes summed, min of minima, max of maxima). A channel-independent
model runs every window as `series` (C_in) series of its own: its chunks hold CHUNK_WINDOWS
series (CHUNK_WINDOWS // C_in windows), so the working memory per chunk stays the same, and its
captured tensors have `series` rows per window.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from intsim.executor import RunResult

CHUNK_WINDOWS = 1024


def merge_stats(total: dict, stats: dict) -> dict:
    """Fold one chunk's per-tensor stats {name: {saturations, min, max, size}} into `total`."""
    for name, st in stats.items():
        acc = total.get(name)
        if acc is None:
            total[name] = {
                "saturations": int(st["saturations"]),
                "min": float(st["min"]),
                "max": float(st["max"]),
                "size": int(st["size"]),
            }
            continue
        acc["saturations"] += int(st["saturations"])
        acc["min"] = min(acc["min"], float(st["min"]))
        acc["max"] = max(acc["max"], float(st["max"]))
        acc["size"] += int(st["size"])
    return total


def _filled(first: np.ndarray, n: int) -> np.ndarray:
    return np.empty((n,) + first.shape[1:], dtype=first.dtype)


def run_in_chunks(
    run_chunk: Callable[[np.ndarray], RunResult], x: np.ndarray, chunk: int | None = None, series: int = 1
) -> RunResult:
    """run_chunk(x[a:b]) -> RunResult for each chunk of `x` [N, ...]; one RunResult for all N.
    A chunk holds at most `chunk` (default CHUNK_WINDOWS) series, i.e. chunk // series windows (at
    least one; `series` > 1 for a channel-independent model, whose captured tensors have `series`
    rows per window); a batch that fits is a single call (no copy)."""
    chunk = max(1, (chunk or CHUNK_WINDOWS) // series)
    n = len(x)
    if n <= chunk:
        return run_chunk(x)
    result = None
    stats: dict = {}
    for start in range(0, n, chunk):
        part = run_chunk(x[start : start + chunk])
        stop = start + len(part.output)
        if result is None:
            result = dataclasses.replace(
                part,
                output=_filled(part.output, n),
                output_q=None if part.output_q is None else _filled(part.output_q, n),
                tensors={k: _filled(v, n * series) for k, v in part.tensors.items()},
            )
        result.output[start:stop] = part.output
        if part.output_q is not None:
            result.output_q[start:stop] = part.output_q
        for name, value in part.tensors.items():
            result.tensors[name][start * series : stop * series] = value
        merge_stats(stats, part.stats)
    result.stats = stats
    return result
