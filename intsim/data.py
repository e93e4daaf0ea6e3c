"""Time-series data: CSV loading, chronological split, windows, normalisation, baselines.

numpy only (no torch): the eval, calibration and demo code use this without the
'train' extra. The single data entry point is :func:`load_splits`.

Conventions
- A series is ``float64[N, C]`` (rows = time, columns = channels).
- Windows are channel-major: ``X[b, c, t]`` is channel ``c`` at step ``t`` of the
  look-back window ``b``; ``Y[b, c, h]`` the ``h``-th step after it.
- The series is split chronologically FIRST (contiguous train / val / test row
  blocks) and each part is windowed on its own, so no window straddles two splits.
- Normalisation statistics and baselines are fitted on the train part only.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import numpy as np
from numpy.typing import ArrayLike, NDArray

from intsim.errors import DataError

if TYPE_CHECKING:
    from intsim.graph import Graph

# Columns never used as channels when `columns=None` (case-insensitive).
EXCLUDED_COLUMNS = ("timestamp", "is_anomaly")
SPLITS = ("train", "val", "test")
STD_FLOOR = 1e-8
REPO_DATA = Path(__file__).resolve().parent.parent / "data"  # the repository's shipped data sets
FLOAT32_MAX = float(np.finfo(np.float32).max)  # the float model (trained and exported in float32)


# ------------------------------------------------------------------ loading
def find_training_data(graph: Graph) -> tuple[Path | None, str]:
    """The CSV a model was trained on, for every command that reads a model's data without
    --data (calibrate, eval, codegen, compare): the file named by its training record
    (`training.data.file`), looked up in the repository's data/, in the model directory and
    beside it. Returns (path, "") or (None, why not, ending in ': pass --data CSV')."""
    record = (graph.raw.get("training") or {}).get("data") or {}
    name = record.get("file") if isinstance(record, dict) else None
    where = graph.path or graph.name
    if not isinstance(name, str) or not name:
        return None, f"model '{where}' records no training data file: pass --data CSV"
    base = Path(name).name
    places = [REPO_DATA]
    if graph.path is not None:
        places += [Path(graph.path), Path(graph.path).parent]
    for place in places:
        if (place / base).is_file():
            return place / base, ""
    return None, (
        f"model '{where}' was trained on '{base}', which is not in {', '.join(str(p) for p in places)}: pass --data CSV"
    )


def open_text(path: Path) -> TextIO:
    """A text handle on a .csv or .csv.gz file (utf-8, csv-module newlines)."""
    if path.name.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _parse_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _csv_source(path, columns) -> tuple[Path, list[str] | None]:
    """The data file (DataError when it is missing) and the column list ("a,b" or a list) it is read with."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: data file not found")
    if isinstance(columns, str):
        columns = [c.strip() for c in columns.split(",") if c.strip()]
    return path, columns


def load_csv(
    path: str | Path, columns: str | Sequence[str] | None = None, min_rows: int = 1
) -> tuple[NDArray[np.float64], list[str]]:
    """Read a .csv or .csv.gz with a header row.

    columns: list of column names (or a comma-separated string); None means every
    numeric column except ``timestamp`` / ``is_anomaly``. A column counts as numeric
    when its first data row parses as a number; any later value that does not is an
    error (never silently dropped).

    Returns ``(values float64[N, C], names list[str])``. Raises DataError naming the
    file, column and row (1-based line number in the file, header = line 1) for a
    missing/unreadable file, unknown column, non-numeric or NaN/Inf values, values beyond
    float32's range (the float model's), or fewer than `min_rows` rows.
    """
    path, columns = _csv_source(path, columns)
    try:
        with open_text(path) as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                raise DataError(f"{path}: file is empty (expected a header row)")
            header = [h.strip() for h in header]
            rows = [r for r in reader if r and any(cell.strip() for cell in r)]
    except (OSError, UnicodeDecodeError, EOFError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read CSV: {exc}") from exc
    if len(set(header)) != len(header):
        dup = sorted({h for h in header if header.count(h) > 1})
        raise DataError(f"{path}: duplicate column name(s) in header: {', '.join(dup)}")
    if not rows:
        raise DataError(f"{path}: no data rows after the header")

    idx = _choose_columns(path, header, rows[0], columns)
    names = [header[i] for i in idx]

    values = np.empty((len(rows), len(idx)), dtype=np.float64)
    for r, row in enumerate(rows):
        line = r + 2
        if len(row) != len(header):
            raise DataError(f"{path}: line {line}: {len(row)} fields, header has {len(header)}")
        for j, i in enumerate(idx):
            cell = row[i].strip()
            v = _parse_float(cell)
            if v is None:
                raise DataError(f"{path}: column '{header[i]}', line {line}: non-numeric value {cell!r}")
            if not math.isfinite(v):
                raise DataError(f"{path}: column '{header[i]}', line {line}: value {cell!r} is not finite (NaN/Inf)")
            if abs(v) > FLOAT32_MAX:
                raise DataError(
                    f"{path}: column '{header[i]}', line {line}: value {cell!r} is beyond "
                    f"what the float model can hold (|x| <= {FLOAT32_MAX:.4g}, float32)"
                )
            values[r, j] = v
    if len(values) < min_rows:
        raise DataError(f"{path}: {len(values)} data rows, need at least {min_rows}")
    return values, names


def _choose_columns(path: Path, header: list[str], first: list[str], columns) -> list[int]:
    """Indices of the channel columns: `columns` by name, or (None) every column whose first
    data row is a number, except EXCLUDED_COLUMNS."""
    if columns is None:
        idx = [
            i
            for i, h in enumerate(header)
            if h.lower() not in EXCLUDED_COLUMNS and i < len(first) and _parse_float(first[i].strip()) is not None
        ]
        if not idx:
            raise DataError(f"{path}: no numeric columns found (header: {', '.join(header)})")
        return idx
    columns = list(columns)
    if not columns:
        raise DataError(f"{path}: empty column list")
    unknown = [c for c in columns if c not in header]
    if unknown:
        raise DataError(
            f"{path}: unknown column(s) {', '.join(repr(c) for c in unknown)} (available: {', '.join(header)})"
        )
    if len(set(columns)) != len(columns):
        raise DataError(f"{path}: column(s) listed twice in {columns}")
    return [header.index(c) for c in columns]


def column_choice(path: str | Path, columns: str | Sequence[str] | None = None) -> tuple[list[str], dict[str, str]]:
    """(the channel columns load_csv takes, {ignored column: why}) from the header and the
    first data row only: what `train` prints so that no column is dropped silently."""
    path, columns = _csv_source(path, columns)
    try:
        with open_text(path) as fh:
            reader = csv.reader(fh)
            header = [h.strip() for h in next(reader, [])]
            first = next((r for r in reader if r and any(cell.strip() for cell in r)), [])
    except (OSError, UnicodeDecodeError, EOFError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read CSV: {exc}") from exc
    idx = _choose_columns(path, header, first, columns)
    ignored = {}
    for i, h in enumerate(header):
        if i in idx:
            continue
        if columns is not None:
            ignored[h] = "not in --columns"
        elif h.lower() in EXCLUDED_COLUMNS:
            ignored[h] = "excluded by name"
        else:
            ignored[h] = f"not numeric (first value {first[i].strip()!r})" if i < len(first) else "empty"
    return [header[i] for i in idx], ignored


# ----------------------------------------------------------- split, windows
@dataclass(frozen=True)
class Split:
    """How a series is cut, chronologically, into train / val / test: three fractions of the
    rows (the last part takes the rounding rest) or three row counts (rows after them unused)."""

    fractions: tuple[float, float, float] | None = None
    row_counts: tuple[int, int, int] | None = None

    def counts(self, n: int) -> tuple[int, int, int]:
        if self.row_counts is not None:
            if sum(self.row_counts) > n:
                raise DataError(f"--split {self.text()} asks for {sum(self.row_counts)} rows; the data has {n}")
            return self.row_counts
        n_train = int(math.floor(n * self.fractions[0]))
        n_val = int(math.floor(n * self.fractions[1]))
        return n_train, n_val, n - n_train - n_val

    def text(self) -> str:
        return ",".join(f"{v:g}" for v in (self.fractions or self.row_counts))

    def record(self) -> dict:
        """The model.json form (training.data.split): {"fractions": [...]} or {"row_counts": [...]}."""
        if self.row_counts is not None:
            return {"row_counts": list(self.row_counts)}
        return {"fractions": list(self.fractions)}


DEFAULT_SPLIT = Split(fractions=(0.7, 0.1, 0.2))


def _check_fractions(fractions) -> tuple[float, float, float]:
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not math.isclose(sum(fractions), 1.0):
        raise DataError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    return tuple(float(f) for f in fractions)


def parse_split(text: str) -> Split:
    """'0.7,0.1,0.2' (fractions summing to 1) or '8640,2880,2880' (row counts: integers)."""
    items = [t.strip() for t in str(text).split(",")]
    if len(items) != 3:
        raise DataError(
            f"--split {text!r}: give three sizes, train,val,test: fractions (0.7,0.1,0.2) "
            f"or row counts (8640,2880,2880)"
        )
    if all(t.isdigit() for t in items):
        return Split(row_counts=tuple(int(t) for t in items))
    try:
        numbers = [float(t) for t in items]
    except ValueError:
        raise DataError(f"--split {text!r}: not numbers") from None
    return Split(fractions=_check_fractions(numbers))


def split_from_record(record: dict | None) -> Split:
    """The split a model was trained with (model.json training.data.split), else the default."""
    split = record.get("split") if isinstance(record, dict) else None
    if isinstance(split, dict):
        if isinstance(split.get("row_counts"), list):
            return Split(row_counts=tuple(int(v) for v in split["row_counts"]))
        if isinstance(split.get("fractions"), list):
            return Split(fractions=_check_fractions(split["fractions"]))
    return DEFAULT_SPLIT


def chronological_split(values: np.ndarray, fractions: Sequence[float] | Split = (0.7, 0.1, 0.2)) -> dict:
    """Contiguous row blocks {"train", "val", "test"} in time order.

    `fractions`: three fractions (train gets floor(N * f_train) rows, val floor(N * f_val),
    test the rest) or a Split (fractions, or row counts: the rows after them are unused).
    """
    values = np.asarray(values)
    split = fractions if isinstance(fractions, Split) else Split(fractions=_check_fractions(fractions))
    n_train, n_val, n_test = split.counts(len(values))
    return {
        "train": values[:n_train],
        "val": values[n_train : n_train + n_val],
        "test": values[n_train + n_val : n_train + n_val + n_test],
    }


def n_windows(n_rows: int, lookback: int, horizon: int, stride: int = 1) -> int:
    if n_rows < lookback + horizon:
        return 0
    return (n_rows - lookback - horizon) // stride + 1


def make_windows(
    values: ArrayLike, lookback: int, horizon: int, stride: int = 1
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Sliding windows of a series [N, C].

    Returns ``X float64[B, C, lookback]``, ``Y float64[B, C, horizon]`` with window b
    starting at row ``b * stride``: ``X[b, c, t] = values[b*stride + t, c]`` and
    ``Y[b, c, h] = values[b*stride + lookback + h, c]``.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise DataError(f"series must be 2-D [rows, channels], got shape {values.shape}")
    for name, v in (("lookback", lookback), ("horizon", horizon), ("stride", stride)):
        if int(v) != v or v <= 0:
            raise DataError(f"{name} must be a positive integer, got {v}")
    b = n_windows(len(values), lookback, horizon, stride)
    if b == 0:
        raise DataError(
            f"series has {len(values)} rows, fewer than one window "
            f"(lookback {lookback} + horizon {horizon} = {lookback + horizon})"
        )
    total = lookback + horizon
    win = np.lib.stride_tricks.sliding_window_view(values, total, axis=0)[::stride][:b]  # [B, C, total]
    win = np.ascontiguousarray(win)
    return np.ascontiguousarray(win[:, :, :lookback]), np.ascontiguousarray(win[:, :, lookback:])


def load_splits(
    path: str | Path,
    columns: str | Sequence[str] | None = None,
    lookback: int = 64,
    horizon: int = 16,
    stride: int = 1,
    fractions: Sequence[float] | Split = (0.7, 0.1, 0.2),
    train_stride: int | None = None,
) -> dict:
    """The data entry point: CSV -> chronological split -> windows, ORIGINAL units.

    Returns ``{"train": (X, Y), "val": (X, Y), "test": (X, Y), "columns": names,
    "series": {"train": rows, "val": rows, "test": rows}, "n_rows": rows in the file}``.
    `fractions`: three fractions or a Split (chronological_split). `stride` applies to every
    split unless `train_stride` is given for the train part.
    """
    values, names = load_csv(path, columns, min_rows=lookback + horizon)
    parts = chronological_split(values, fractions)
    out: dict = {"columns": names, "series": parts, "n_rows": len(values)}
    for split in SPLITS:
        rows = parts[split]
        if len(rows) < lookback + horizon:
            raise DataError(
                f"{path}: {split} split has {len(rows)} rows, fewer than one window "
                f"(lookback {lookback} + horizon {horizon}); the file has {len(values)} rows"
            )
        s = train_stride if (split == "train" and train_stride) else stride
        out[split] = make_windows(rows, lookback, horizon, s)
    return out


# ------------------------------------------------------------ normalisation
def fit_normalization(train_values: ArrayLike) -> dict:
    """Per-channel mean/std (population std, floored at 1e-8) of a [N, C] series."""
    v = np.asarray(train_values, dtype=np.float64)
    if v.ndim != 2 or len(v) == 0:
        raise DataError(f"normalisation needs a non-empty [rows, channels] series, got shape {v.shape}")
    mean = v.mean(axis=0)
    std = np.maximum(v.std(axis=0), STD_FLOOR)
    return {"mean": [float(m) for m in mean], "std": [float(s) for s in std]}


def _channel_view(values, stats, channel_axis):
    v = np.asarray(values, dtype=np.float64)
    if channel_axis is None:
        channel_axis = -1 if v.ndim <= 2 else 1
    mean = np.asarray(stats["mean"], dtype=np.float64)
    std = np.asarray(stats["std"], dtype=np.float64)
    if v.shape[channel_axis] != len(mean):
        raise DataError(
            f"normalisation has {len(mean)} channels, data has {v.shape[channel_axis]} "
            f"(shape {v.shape}, channel axis {channel_axis})"
        )
    shape = [1] * v.ndim
    shape[channel_axis] = len(mean)
    return v, mean.reshape(shape), std.reshape(shape)


def normalize(values: ArrayLike, stats: dict, channel_axis: int | None = None) -> NDArray[np.float64]:
    """(x - mean) / std per channel. Channel axis: last for [N, C], 1 for [B, C, L]."""
    v, mean, std = _channel_view(values, stats, channel_axis)
    return (v - mean) / std


def denormalize(values: ArrayLike, stats: dict, channel_axis: int | None = None) -> NDArray[np.float64]:
    """Inverse of :func:`normalize`: x * std + mean per channel."""
    v, mean, std = _channel_view(values, stats, channel_axis)
    return v * std + mean


# ---------------------------------------------------------------- baselines
def repeat_last(X: np.ndarray, horizon: int) -> np.ndarray:
    """Forecast every future step as the last observed value: [B, C, L] -> [B, C, H]."""
    X = np.asarray(X, dtype=np.float64)
    return np.repeat(X[:, :, -1:], horizon, axis=2)


class LinearForecaster:
    """Per-channel linear least squares: the H next values of channel c from that
    channel's L past values plus an intercept (one lstsq per channel).

    Fit on train windows only. `ridge` > 0 adds an L2 penalty on the lag weights
    (not the intercept); the default 0 is plain least squares.
    """

    def __init__(self, ridge: float = 0.0):
        self.ridge = float(ridge)
        self.coef: np.ndarray | None = None  # [C, L, H]
        self.intercept: np.ndarray | None = None  # [C, H]

    def fit(self, X: ArrayLike, Y: ArrayLike) -> LinearForecaster:
        X = np.asarray(X, dtype=np.float64)
        Y = np.asarray(Y, dtype=np.float64)
        if X.ndim != 3 or Y.ndim != 3 or X.shape[:2] != Y.shape[:2]:
            raise DataError(f"LinearForecaster.fit: X [B, C, L] and Y [B, C, H] expected, got {X.shape} and {Y.shape}")
        b, c, n_lag = X.shape
        h = Y.shape[2]
        self.coef = np.empty((c, n_lag, h))
        self.intercept = np.empty((c, h))
        for ch in range(c):
            A = np.concatenate([X[:, ch, :], np.ones((b, 1))], axis=1)  # [B, L+1]
            rhs = Y[:, ch, :]
            if self.ridge > 0:
                pen = np.sqrt(self.ridge) * np.eye(n_lag + 1)[:n_lag]  # no penalty on intercept
                A = np.concatenate([A, pen], axis=0)
                rhs = np.concatenate([rhs, np.zeros((n_lag, h))], axis=0)
            w, *_ = np.linalg.lstsq(A, rhs, rcond=None)  # [L+1, H]
            self.coef[ch] = w[:n_lag]
            self.intercept[ch] = w[n_lag]
        return self

    def predict(self, X: ArrayLike) -> NDArray[np.float64]:
        if self.coef is None:
            raise DataError("LinearForecaster.predict called before fit")
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 3 or X.shape[1:] != self.coef.shape[:2]:
            raise DataError(
                f"LinearForecaster.predict: expected [B, {self.coef.shape[0]}, {self.coef.shape[1]}], got {X.shape}"
            )
        return np.einsum("bcl,clh->bch", X, self.coef) + self.intercept[None]


# ------------------------------------------------------------------ metrics
def mse(pred: ArrayLike, target: ArrayLike) -> float:
    return float(np.mean((np.asarray(pred, dtype=np.float64) - np.asarray(target, dtype=np.float64)) ** 2))


def mae(pred: ArrayLike, target: ArrayLike) -> float:
    return float(np.mean(np.abs(np.asarray(pred, dtype=np.float64) - np.asarray(target, dtype=np.float64))))
