"""`cmamba-hls sweep MODEL... --space SPACE --out DIR`: design-space sweep, accuracy against
hardware cost (docs/sweep.md).

Every point of the space (cmamba_hls/sweep_space.py) on every (model, data) pair: calibrate a
copy in memory, evaluate its integer mode on the test split, estimate cycles and resources
(cmamba_hls/sweep_point.py), on Dask or in this process (cmamba_hls/sweep_runner.py); one row per
point in OUT/points.csv as it finishes, then OUT/results.csv with the Pareto marks and
OUT/pareto.png (cmamba_hls/sweep_results.py, sweep_pareto.py). Finished points are kept: the
same command resumes. Everything the input could get wrong is checked before anything is written.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from intsim.errors import CmambaError

if TYPE_CHECKING:
    from cmamba_hls.sweep_point import Context

DEFAULT_TIMEOUT = 10.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    from cmamba_hls.sweep_pareto import OBJECTIVES

    p.add_argument(
        "models",
        nargs="+",
        metavar="MODEL",
        help="model directories (model.json + weights/; calibration not needed: every point calibrates)",
    )
    p.add_argument(
        "--data",
        nargs="+",
        metavar="CSV",
        help="CSV file(s); every model runs on every file (default: each model's training data)",
    )
    p.add_argument(
        "--space",
        required=True,
        metavar="SPACE.yaml|json",
        help="the knobs and their values (docs/sweep.md; examples/sweep/space.yaml)",
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="sweep directory: points.csv, results.csv, pareto.png; an existing one resumes",
    )
    p.add_argument("--samples", type=int, metavar="N", help="N random distinct points of the grid (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of --samples (default 0)")
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help=f"local Dask cluster of N worker processes (default: the machine's cores, "
        f"{os.cpu_count()}); 0 runs every point in this process without Dask",
    )
    p.add_argument(
        "--scheduler",
        metavar="tcp://HOST:PORT",
        help="run on the Dask cluster of this scheduler instead of a local one (its workers need "
        "cmamba-hls installed and the same paths to the models and data)",
    )
    p.add_argument(
        "--connect-timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="S",
        help=f"seconds to reach --scheduler (default {DEFAULT_TIMEOUT:g})",
    )
    p.add_argument(
        "--split",
        default="test",
        metavar="val|test",
        help="the part of each model's chronological split to evaluate on (default test; val to choose "
        "points on data the test split then confirms); calibration uses the train part",
    )
    p.add_argument(
        "--max-windows", type=int, metavar="N", help="evaluate N windows evenly spaced over the split (default: all)"
    )
    p.add_argument(
        "--objective",
        default="mse",
        metavar="|".join(OBJECTIVES),
        help="the error the Pareto marks and plot minimise (default mse, against the truth)",
    )
    p.add_argument(
        "--retry-failed",
        action="store_true",
        help="run the points that failed in an earlier run again (default: keep their error)",
    )


def _check_numbers(args: argparse.Namespace) -> None:
    from cmamba_hls.cli_args import check_choice
    from cmamba_hls.sweep_pareto import OBJECTIVES

    check_choice("--objective", args.objective, OBJECTIVES)
    check_choice("--split", args.split, ("val", "test"))
    for flag, value, low in (
        ("--samples", args.samples, 1),
        ("--workers", args.workers, 0),
        ("--max-windows", args.max_windows, 1),
    ):
        if value is not None and value < low:
            raise CmambaError(f"{flag} must be >= {low}, got {value}")
    if args.scheduler is not None and args.workers is not None:
        raise CmambaError("--workers sizes the local cluster; with --scheduler the cluster's own workers run")
    if not args.connect_timeout > 0:
        raise CmambaError(f"--connect-timeout must be > 0, got {args.connect_timeout}")


def _contexts(args: argparse.Namespace, space: dict[str, list[str]]) -> list[tuple[str, str, Context]]:
    """(model as given, data as given or found, Context) of every (model, data) pair, checked:
    the model loads, the data has its columns and windows, the space's patterns fit it."""
    from cmamba_hls.evaluate import load_eval_data, resolve_data_path
    from cmamba_hls.sweep_point import Context
    from cmamba_hls.sweep_space import check_patterns
    from intsim.executor import load_model

    pairs = []
    for m in args.models:
        model = load_model(Path(m))
        check_patterns(space, model.graph)
        for d in args.data or [str(resolve_data_path(model, None))]:
            for split in ("train", args.split):  # both exist and have windows (calibration, evaluation)
                load_eval_data(model, resolve_data_path(model, d), split, 1)
            pairs.append((m, d, Context(str(Path(m).resolve()), str(Path(d).resolve()), args.max_windows, args.split)))
    return pairs


def run(args: argparse.Namespace) -> int:
    from cmamba_hls import sweep_pareto, sweep_results
    from cmamba_hls.report_plots import require_matplotlib
    from cmamba_hls.sweep_point import Task
    from cmamba_hls.sweep_runner import describe, open_client, require_dask, run_points
    from cmamba_hls.sweep_space import KNOB_NAMES, expand, parse_space, read_space_file

    _check_numbers(args)
    workers = (os.cpu_count() or 1) if args.workers is None else args.workers
    if workers or args.scheduler:
        require_dask()
    require_matplotlib()
    space = parse_space(read_space_file(Path(args.space)))
    pairs = _contexts(args, space)
    points = expand(space, args.samples, args.seed)
    out = Path(args.out)
    settings = {"split": args.split, "max_windows": args.max_windows}
    sweep_results.check_out(out, settings)
    finished = {sweep_results.row_key(r): r for r in sweep_results.read_journal(out)}
    tasks, keys, todo = [], [], []
    for model, data, ctx in pairs:
        for values in points:
            key = (model, data) + values
            tasks.append(Task(ctx, values))
            keys.append(key)
            old = finished.get(key)
            if old is None or (args.retry_failed and old["status"] != "ok"):
                todo.append(len(tasks) - 1)
    meta = {
        "settings": settings,
        "models": list(args.models),
        "data": [p[1] for p in pairs],
        "space": space,
        "samples": args.samples,
        "seed": args.seed,
    }
    print(
        f"sweep: {len(points)} point(s) x {len(pairs)} model/data pair(s) = {len(tasks)}; "
        f"{len(tasks) - len(todo)} already in {out / sweep_results.JOURNAL}, {len(todo)} to run"
    )

    t_start = time.perf_counter()
    with open_client(args.scheduler, workers, args.connect_timeout) as client:
        t_ready = time.perf_counter()
        print(f"running {describe(client)}")
        sweep_results.start(out, list(finished.values()), meta)
        ran = 0
        try:
            with sweep_results.Journal(out) as journal:

                def on_result(i: int, columns: dict) -> None:
                    nonlocal ran
                    row = dict(zip(sweep_results.KEY_COLUMNS, keys[todo[i]], strict=True)) | columns
                    journal.append(row)
                    finished[keys[todo[i]]] = row
                    ran += 1

                run_points([tasks[i] for i in todo], on_result, client)
        finally:
            seconds = time.perf_counter() - t_ready
            rows = [finished[k] | {"point": n + 1} for n, k in enumerate(keys) if k in finished]
            sweep_pareto.mark(rows, args.objective)
            sweep_results.finish(out, rows, meta, lambda path: sweep_pareto.plot(path, rows, args.objective))
    failed = sum(r["status"] != "ok" for r in rows)
    rate = f"{3600.0 * ran / seconds:,.0f} points/hour" if ran and seconds > 0 else "nothing run"
    print(
        f"finished {len(rows)} of {len(tasks)} point(s), {failed} failed; this run: {ran} point(s) in "
        f"{seconds:.1f} s ({rate}; start-up {t_ready - t_start:.1f} s)"
    )
    best = [r for r in rows if r.get("pareto_dsp") == "1"]
    for r in sorted(best, key=lambda r: int(r["dsp"]))[:8]:
        knobs = ", ".join(f"{k}={r[k]}" for k in KNOB_NAMES if r[k] not in ("-", "") and r[k] != "0")
        print(
            f"  Pareto (DSP): {args.objective} {float(r[args.objective]):.6g}, {r['dsp']} DSP, "
            f"{float(r['latency_us']):.2f} us: {knobs}"
        )
    print(f"wrote {out / sweep_results.RESULTS}, {out / sweep_results.PLOT} and {out / sweep_results.JOURNAL}")
    return 0 if failed == 0 else 1
