"""Pareto marking and the Pareto plot of a sweep (docs/sweep.md).

Within each (model, data) pair, a finished point is Pareto-optimal against a cost (DSPs, the
latency or the interval between windows, in microseconds) when no other point of the pair has a
lower-or-equal error and a lower-or-equal cost with one of the two strictly lower. The error is the `--objective` column
(default `mse`, against the truth). Failed points are never marked.
"""

from __future__ import annotations

from pathlib import Path

OBJECTIVES = ("mse", "mae", "mse_vs_fp32", "maxae_vs_fp32_lsb")
COSTS = {
    "pareto_dsp": ("dsp", "DSP slices"),
    "pareto_latency": ("latency_us", "latency (us, window in to forecast out)"),
    "pareto_interval": ("interval_us", "interval (us between windows)"),
}


def pareto_front(points: list[tuple[float, float]]) -> list[bool]:
    """For (cost, error) pairs, whether each is Pareto-optimal (both minimised); O(n log n)."""
    order = sorted(range(len(points)), key=lambda i: points[i])
    optimal = [False] * len(points)
    best = float("inf")  # the lowest error among strictly cheaper points
    k = 0
    while k < len(order):
        j = k
        while j < len(order) and points[order[j]][0] == points[order[k]][0]:
            j += 1
        low = points[order[k]][1]  # sorted: the lowest error of this cost first
        if low < best:
            for i in order[k:j]:
                optimal[i] = points[i][1] == low
            best = low
        k = j
    return optimal


def mark(rows: list[dict], objective: str) -> None:
    """Set PARETO columns ("1"/"0"; "" for failed points) on `rows` in place."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        for col in COSTS:
            r[col] = ""
        if r.get("status") == "ok":
            groups.setdefault((r["model"], r["data"]), []).append(r)
    for members in groups.values():
        for col, (cost, _) in COSTS.items():
            flags = pareto_front([(float(r[cost]), float(r[objective])) for r in members])
            for r, f in zip(members, flags, strict=True):
                r[col] = "1" if f else "0"


def plot(path: Path, rows: list[dict], objective: str) -> None:
    """One row of three panels per (model, data) pair: error against DSPs, latency and interval, every
    finished point grey, the Pareto-optimal ones joined as a staircase."""
    from cmamba_hls.report_plots import _figure, _note, _save

    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        if r.get("status") == "ok":
            groups.setdefault((r["model"], r["data"]), []).append(r)
    fig = _figure(15.0, 3.8 * max(1, len(groups)))
    axes = fig.subplots(max(1, len(groups)), len(COSTS), squeeze=False)
    if not groups:
        for ax in axes[0]:
            _note(ax, "no finished point")
    for (model, data), ax_row in zip(groups, axes, strict=False):
        members = groups[(model, data)]
        for ax, (col, (cost, label)) in zip(ax_row, COSTS.items(), strict=True):
            xs = [float(r[cost]) for r in members]
            ys = [float(r[objective]) for r in members]
            colors = ["tab:blue" if r["precision"] == "int16" else "tab:orange" for r in members]
            ax.scatter(xs, ys, s=14, c=colors, alpha=0.45, linewidths=0)
            front = sorted((x, y) for x, y, r in zip(xs, ys, members, strict=True) if r[col] == "1")
            if front:
                ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="tab:red", linewidth=1.2)
                ax.scatter(
                    [p[0] for p in front],
                    [p[1] for p in front],
                    s=28,
                    color="tab:red",
                    zorder=3,
                    label=f"Pareto-optimal ({len(front)})",
                )
            ax.scatter([], [], s=14, color="tab:blue", label="int16 (bittrue)")
            ax.scatter([], [], s=14, color="tab:orange", label="int8 (quant8)")
            ax.set_xlabel(label)
            ax.set_ylabel(objective)
            if min(ys) > 0 and max(ys) / min(ys) > 100:
                ax.set_yscale("log")
            ax.legend(fontsize=7)
            ax.set_title(f"{Path(model).name} on {Path(data).name}: {len(members)} points", fontsize=9)
    _save(fig, path)
