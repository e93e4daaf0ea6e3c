"""Where sweep points run: in this process, on a local Dask cluster, or on the user's Dask cluster.

`open_client(scheduler, workers, timeout)` yields a `dask.distributed.Client` (or None for
`workers == 0`: no Dask at all): a `LocalCluster` of `workers` single-threaded worker processes,
or the scheduler at `scheduler` (tcp://HOST:PORT). An address that cannot be reached within
`timeout` seconds is one CmambaError line. `run_points(tasks, on_result, client)` runs every task
(cmamba_hls.sweep_point.evaluate_point) and calls `on_result(index, columns)` as each finishes,
in finishing order, with a progress bar on a terminal and, when stderr is not a terminal (a log
file, CI, `nohup`), one progress line every `LOG_EVERY_S` seconds and at the end. A task whose
worker dies records its error like any failed point.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from tqdm import tqdm

from cmamba_hls.sweep_point import Task, error_line, evaluate_point
from intsim.errors import CmambaError

if TYPE_CHECKING:
    from distributed import Client

SPAWN_ENV = "distributed.nanny.pre-spawn-environ"
LOG_EVERY_S = 30.0  # progress line interval when stderr is not a terminal
MISSING_EXTRA = "cmamba-hls sweep needs the 'sweep' extra (Dask, PyYAML): pip install 'cmamba-hls[sweep]'"


def require_dask() -> None:
    try:
        import distributed  # noqa: F401
    except ModuleNotFoundError:
        raise CmambaError(MISSING_EXTRA) from None


@contextmanager
def open_client(scheduler: str | None, workers: int, timeout: float) -> Iterator[Client | None]:
    """See the module docstring."""
    if workers == 0 and scheduler is None:
        yield None
        return
    require_dask()
    import dask
    from dask.distributed import Client, LocalCluster

    logging.getLogger("distributed").setLevel(logging.CRITICAL)  # its retries and shutdown notes are not ours
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError, ValueError, TypeError) as exc:
            raise CmambaError(f"cannot reach the Dask scheduler at {scheduler}: {error_line(exc)}") from None
        with client:
            yield client
        return
    with (
        dask.config.set({SPAWN_ENV: worker_environ()}),
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.CRITICAL,
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        yield client


def worker_environ() -> dict:
    """Dask's worker environment without MALLOC_TRIM_THRESHOLD_: setting it at all switches off glibc's
    dynamic mmap threshold, so every large array the golden model allocates is mapped and faulted in
    anew on each call; a point then costs twice the CPU time (measured: 0.34 s instead of 0.16 s of CPU
    for a default-model point)."""
    import dask

    return {k: v for k, v in (dask.config.get(SPAWN_ENV, default=None) or {}).items() if k != "MALLOC_TRIM_THRESHOLD_"}


def describe(client: Client | None) -> str:
    """'in this process' or 'on N Dask workers (ADDRESS)'."""
    if client is None:
        return "in this process (no Dask)"
    n = len(client.nthreads())
    return f"on {n} Dask worker(s) at {client.scheduler.address}"


def progress_line(finished: int, total: int, errors: int, elapsed_s: float) -> str:
    """One line of sweep progress for a log: points done, errors, elapsed and (linear) remaining time."""
    left = elapsed_s / finished * (total - finished) if finished else float("nan")
    return (
        f"sweep: {finished}/{total} points ({100 * finished / total:.1f} %), {errors} error(s), "
        f"{elapsed_s / 60:.1f} min elapsed, about {left / 60:.1f} min left"
    )


def run_points(
    tasks: list[Task], on_result: Callable[[int, dict], None], client: Client | None = None, progress: bool = True
) -> None:
    """See the module docstring."""
    with tqdm(
        total=len(tasks),
        desc="sweep",
        unit="pt",
        file=sys.stderr,
        disable=None if progress else True,
        dynamic_ncols=True,
    ) as bar:
        errors = 0
        finished = 0
        start = last_line = time.monotonic()
        log_lines = progress and bool(bar.disable)

        def done(i: int, columns: dict) -> None:
            nonlocal errors, finished, last_line
            errors += columns.get("status") != "ok"
            finished += 1
            on_result(i, columns)
            bar.update(1)
            bar.set_postfix(errors=errors, refresh=False)
            now = time.monotonic()
            if log_lines and (now - last_line >= LOG_EVERY_S or finished == len(tasks)):
                last_line = now
                print(progress_line(finished, len(tasks), errors, now - start), file=sys.stderr, flush=True)

        if client is None:
            for i, task in enumerate(tasks):
                done(i, evaluate_point(task))
            return
        from dask.distributed import as_completed

        futures = client.map(evaluate_point, tasks, pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        for future in as_completed(futures, loop=client.loop):
            try:
                columns = future.result()
            except Exception as exc:
                columns = {"status": "error", "error": error_line(exc), "seconds": ""}
            done(index[future.key], columns)
            future.release()
