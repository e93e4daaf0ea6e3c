"""The sweep's output directory: the journal of finished points, the results table, the manifest.

OUT (an owned directory, intsim/manifest.py; manifest OUT/sweep.json) holds
- points.csv   the journal: one row per finished point, appended (one write, flushed) as each
               point finishes, in finishing order. An interrupted sweep leaves every finished row
               readable; a torn last line (a killed process) is dropped when the sweep resumes.
- results.csv  every point of the space in point order (model, data, then the space's order) with
               the Pareto marks (cmamba_hls/sweep_pareto.py); written whole when the sweep ends or
               stops, so it is never half-written.
- pareto.png   the accuracy-vs-DSP, -latency and -interval plots.

Columns (docs/sweep.md): `point`, `model`, `data`, the knobs (sweep_space.KNOB_NAMES), the measured
columns (sweep_point.METRIC_COLUMNS), the Pareto marks, and last the run time (`seconds`), the
only column that differs between two runs of the same sweep.
"""

from __future__ import annotations

import csv
import io
import shutil
from collections.abc import Callable
from pathlib import Path

from cmamba_hls.sweep_pareto import COSTS
from cmamba_hls.sweep_point import METRIC_COLUMNS, TIMING_COLUMNS
from cmamba_hls.sweep_space import KNOB_NAMES
from intsim.errors import CmambaError
from intsim.manifest import DirKind, owned_files, publish, read_manifest, staged

SWEEP_DIR = DirKind("sweep.json", "cmamba-hls sweep", 1, "the sweep", "sweep")
JOURNAL, RESULTS, PLOT = "points.csv", "results.csv", "pareto.png"
ID_COLUMNS = ("model", "data")
PARETO_COLUMNS = tuple(COSTS)
JOURNAL_COLUMNS = ID_COLUMNS + KNOB_NAMES + METRIC_COLUMNS + TIMING_COLUMNS
RESULT_COLUMNS = ("point",) + ID_COLUMNS + KNOB_NAMES + METRIC_COLUMNS + PARETO_COLUMNS + TIMING_COLUMNS
KEY_COLUMNS = ID_COLUMNS + KNOB_NAMES


def cell(value: object) -> str:
    """A CSV cell: ints as ints, floats by repr (exact and the same on every machine)."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        return repr(value)
    return str(value)


def row_key(row: dict) -> tuple[str, ...]:
    return tuple(row[c] for c in KEY_COLUMNS)


def csv_line(columns: tuple[str, ...], row: dict) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([cell(row.get(c, "")) for c in columns])
    return buf.getvalue()


def check_out(out: Path, settings: dict) -> None:
    """OUT may take this sweep: absent, empty, or a sweep directory whose evaluation settings (what
    every row depends on besides its own knobs) are `settings`. One-line CmambaError otherwise."""
    if owned_files(out, SWEEP_DIR) is None:
        return
    manifest = read_manifest(out, SWEEP_DIR)
    old = (manifest or {}).get("settings")
    if manifest is not None and old != settings:
        diff = ", ".join(
            f"{k} {old.get(k)!r} there, {settings.get(k)!r} now"
            for k in settings
            if (old or {}).get(k) != settings.get(k)
        )
        raise CmambaError(
            f"{out} holds a sweep with other evaluation settings ({diff}); its rows would not "
            f"compare: choose another --out or the same settings"
        )


def read_journal(out: Path) -> list[dict]:
    """Every complete row of OUT/points.csv (a torn or malformed row is skipped)."""
    path = out / JOURNAL
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        text = fh.read()
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]  # a torn last line: the point runs again
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return []
    if tuple(rows[0]) != JOURNAL_COLUMNS:
        raise CmambaError(
            f"{path}: its columns are not this version's ({', '.join(JOURNAL_COLUMNS[:4])}, ...): choose another --out"
        )
    return [dict(zip(JOURNAL_COLUMNS, r, strict=True)) for r in rows[1:] if len(r) == len(JOURNAL_COLUMNS)]


def start(out: Path, rows: list[dict], meta: dict) -> None:
    """Claim OUT for the sweep and (re)write its journal with `rows` (the finished points kept),
    keeping the results and plot of an earlier run until this one replaces them."""
    with staged(out, SWEEP_DIR) as tmp:
        with open(tmp / JOURNAL, "w", newline="", encoding="utf-8") as fh:
            fh.write(csv_line(JOURNAL_COLUMNS, {c: c for c in JOURNAL_COLUMNS}))
            fh.writelines(csv_line(JOURNAL_COLUMNS, r) for r in rows)
        for name in (RESULTS, PLOT):
            if (out / name).is_file():
                shutil.copy2(out / name, tmp / name)
        publish(tmp, out, SWEEP_DIR, meta)


class Journal:
    """Appends finished points to OUT/points.csv, one flushed write per row."""

    def __init__(self, out: Path):
        self.path = out / JOURNAL
        self._fh = open(self.path, "a", newline="", encoding="utf-8")

    def append(self, row: dict) -> None:
        self._fh.write(csv_line(JOURNAL_COLUMNS, row))
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def finish(out: Path, rows: list[dict], meta: dict, plot: Callable[[Path], None] | None) -> None:
    """Write OUT/results.csv (`rows`, RESULT_COLUMNS) and, with `plot(path)`, OUT/pareto.png, all at
    once (staged, then moved in); the journal is carried over unchanged."""
    with staged(out, SWEEP_DIR) as tmp:
        shutil.copy2(out / JOURNAL, tmp / JOURNAL)
        with open(tmp / RESULTS, "w", newline="", encoding="utf-8") as fh:
            fh.write(csv_line(RESULT_COLUMNS, {c: c for c in RESULT_COLUMNS}))
            fh.writelines(csv_line(RESULT_COLUMNS, r) for r in rows)
        if plot is not None:
            plot(tmp / PLOT)
        publish(tmp, out, SWEEP_DIR, meta)
