"""Golden test vectors: which inputs the testbench sees (quantized domain).

The mix, in file order (deterministic for a given model, data file, N and seed):
  1. adversarial extremes, directly as integer codes: all +max, all -max, zeros,
     alternating +max/-max along time (opposite phase per channel);
  2. real data windows (test split of the model's CSV, evenly spaced), when a data file is
     given or the model's training record names one that `intsim.data.find_training_data`
     finds (the lookup calibrate and eval use: repository data/, model directory, beside it);
  3. random standard-normal windows at scales 0.25, 1, 4 and 16 (the large ones saturate
     inside the network: the clamps are exercised too).
Real windows take half of what remains after the extremes (as many as the split has);
random windows fill the rest. Floats are quantized by the back end (`quantize_input`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from intsim.data import find_training_data, load_splits, split_from_record

if TYPE_CHECKING:
    from codegen.emission import Emission
    from intsim.executor import Model

RANDOM_SCALES = (0.25, 1.0, 4.0, 16.0)


@dataclass
class VectorSet:
    x_q: np.ndarray  # int [N, C_in, L]
    counts: dict = field(default_factory=dict)  # kind -> number of vectors
    data_file: Path | None = None
    data_note: str = ""  # why there is no data file


def adversarial_codes(shape: tuple[int, int], lo: int, hi: int) -> np.ndarray:
    """[4, C, L]: all hi, all lo, zeros, alternating hi/lo (channel c starts with hi if c even)."""
    c, length = shape
    alt = np.where((np.arange(c)[:, None] + np.arange(length)[None, :]) % 2 == 0, hi, lo)
    return np.stack([np.full(shape, hi), np.full(shape, lo), np.zeros(shape, np.int64), alt])


def real_windows(model: Model, path: Path, n: int) -> np.ndarray:
    """n evenly spaced test-split windows of `path` (the model's recorded split), normalised
    (float [n, C, L])."""
    g = model.graph
    splits = load_splits(
        path,
        columns=g.input_columns,
        lookback=g.input_shape[1],
        horizon=g.horizon,
        fractions=split_from_record((g.raw.get("training") or {}).get("data")),
    )
    x = splits["test"][0]
    n = min(n, len(x))
    idx = np.unique(np.linspace(0, len(x) - 1, n).round().astype(int)) if n else np.zeros(0, int)
    return model.normalize_input(x[idx])


def make_vectors(model: Model, emission: Emission, n: int, data: str | Path | None = None, seed: int = 0) -> VectorSet:
    shape = tuple(model.graph.input_shape)
    dtype = emission.np_dtype
    lo, hi = emission.input_limits
    adv = adversarial_codes(shape, lo, hi)[:n]
    parts, counts = [adv.astype(dtype)], {"adversarial": len(adv)}
    data_file, note = (Path(data), "") if data is not None else find_training_data(model.graph)
    rest = n - len(adv)
    n_real = 0
    if data_file is not None and rest > 0:
        real = real_windows(model, data_file, rest // 2 if rest > 1 else rest)
        n_real = len(real)
        if n_real:
            parts.append(emission.quantize_input(real).astype(dtype))
    counts["real"] = n_real
    n_rand = rest - n_real
    if n_rand > 0:
        rng = np.random.default_rng(seed)
        scales = np.resize(np.asarray(RANDOM_SCALES), n_rand)[:, None, None]
        x = rng.standard_normal((n_rand,) + shape) * scales
        parts.append(emission.quantize_input(x).astype(dtype))
    counts["random"] = max(n_rand, 0)
    return VectorSet(np.ascontiguousarray(np.concatenate(parts)), counts, data_file, note)
