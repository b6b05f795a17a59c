"""A report's figures, as PNGs: learning curves, sparsity over training, return against sparsity (the
frontier, for cells that sweep sparsity levels) and the compress stages.

What a reader can trust: every variant has its own colour and line style (the 10-colour default cycle
repeats), titles wrap instead of running off the figure, bands and error bars appear only from two
seeds on (one seed is drawn as a line and labelled n=1), step axes read 200k / 1.5M, and the compress
stages' parameters and bytes are on a log scale, where a 98 % reduction stays visible.
"""

import textwrap
from pathlib import Path
from typing import Any

import numpy as np

from l0rl.report import stats
from l0rl.report.collect import Record
from l0rl.report.tables import MIN_SEEDS_FOR_INTERVALS, Row, mean, stage

CURVE_POINTS = 40
"""Points of a learning curve between 0 and the budget."""
CURVE_WINDOW = 10
"""A curve's value at step x: the mean return of the last CURVE_WINDOW episodes ended by x."""
STAGES = ("original", "hardened", "pruned", "shrunk", "low-rank")
LINE_STYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
TITLE_WIDTH = 60
"""Characters per title line: a 7-inch figure shows about 70 at the default title size."""


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def style(i: int, n: int) -> dict:
    """The i-th of n series' colour, line style and marker: up to 20 distinct colours (tab20 past
    10), and the line style cycling beside them, so no two series of a figure look alike."""
    plt = _pyplot()
    colors = plt.get_cmap("tab10" if n <= 10 else "tab20").colors
    return {"color": colors[i % len(colors)], "linestyle": LINE_STYLES[i % 4], "marker": MARKERS[i % 8]}


def plot_text(text: Any) -> str:
    """Text from a file as matplotlib shows it literally ($ would start mathtext)."""
    return str(text).replace("$", r"\$")


def title(text: str) -> str:
    return textwrap.fill(plot_text(text), TITLE_WIDTH)


def steps_text(x: float, _pos: Any = None) -> str:
    """An env-step count as axes read it: 500, 200k, 1.5M."""
    for size, unit in ((1e6, "M"), (1e3, "k")):
        if abs(x) >= size:
            return f"{x / size:g}{unit}"
    return f"{x:g}"


def _step_axis(ax) -> None:
    from matplotlib.ticker import FuncFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(steps_text))
    ax.set_xlabel("env steps")


def return_curve(record: Record, grid: np.ndarray) -> np.ndarray:
    """Mean return of the last CURVE_WINDOW episodes ended by each grid step (NaN before the first)."""
    episodes = [
        (m["global_step"], m["charts/episodic_return"])
        for m in record.metrics
        if m.get("charts/episodic_return") is not None
    ]
    steps = np.array([s for s, _ in episodes])
    values = np.array([v for _, v in episodes], dtype=float)
    out = np.full(len(grid), np.nan)
    for i, x in enumerate(grid):
        if record.progress_step is not None and x > record.progress_step:
            break  # a run still training has no value past its checkpoint
        n = int(np.searchsorted(steps, x, side="right"))
        if n:
            out[i] = values[max(0, n - CURVE_WINDOW) : n].mean()
    return out


def sparsity_curve(record: Record, grid: np.ndarray) -> np.ndarray:
    """The last logged policy sparsity at or before each grid step (NaN before the first log)."""
    key = f"{record.variant.sparsity}/sparsity"
    logged = [(m["global_step"], m[key]) for m in record.metrics if m.get(key) is not None]
    out = np.full(len(grid), np.nan)
    for i, x in enumerate(grid):
        if record.progress_step is not None and x > record.progress_step:
            break
        before = [v for s, v in logged if s <= x]
        if before:
            out[i] = before[-1]
    return out


def plot_curves(cell: Any, by_variant: dict[str, list[Record]], kind: str, path: Path, reps: int) -> bool:
    """Return (IQM with its bootstrap band) or sparsity (IQM with the seeds' range) against env
    steps, one line per variant (no band for one seed). False when there is nothing to draw."""
    plt = _pyplot()
    budget = max((r.args["total_timesteps"] for recs in by_variant.values() for r in recs), default=0)
    grid = np.linspace(0, budget or cell.total_timesteps, CURVE_POINTS + 1)[1:]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    drawn = False
    for i, v in enumerate(cell.variants):
        recs = by_variant.get(v.name, [])
        if not recs or (kind == "sparsity" and v.sparsity == "none"):
            continue
        curve = return_curve if kind == "return" else sparsity_curve
        m = np.stack([curve(r, grid) for r in recs])
        ok = np.isfinite(m).all(axis=0)
        if not ok.any():
            continue
        band = len(recs) >= MIN_SEEDS_FOR_INTERVALS
        if kind == "return" and band:
            mid, low, high = stats.iqm_curve(m[:, ok], min(reps, stats.CURVE_REPS))
        else:
            mid = stats.iqm_columns(m[:, ok])
            low, high = m[:, ok].min(axis=0), m[:, ok].max(axis=0)
        look = style(i, len(cell.variants))
        ax.plot(
            grid[ok],
            mid,
            label=f"{plot_text(v.label)} (n={len(recs)})",
            color=look["color"],
            linestyle=look["linestyle"],
        )
        if band:
            ax.fill_between(grid[ok], low, high, alpha=0.15, color=look["color"])
        drawn = True
    if not drawn:
        plt.close(fig)
        return False
    what = f"return (mean of last {CURVE_WINDOW} episodes)" if kind == "return" else "policy sparsity"
    ax.set(ylabel=what, title=title(f"{cell.title}: {'learning curves' if kind == 'return' else what}"))
    _step_axis(ax)
    ax.legend(fontsize="x-small", ncol=2 if len(cell.variants) > 6 else 1)
    ax.grid(alpha=0.3)
    return _save(plt, fig, path)


def _save(plt, fig, path: Path) -> bool:
    """Write a finished figure as PNG and free it; True, for the plot_* functions to return."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_frontier(cell: Any, by_variant: dict[str, list[Record]], rows: list[Row], path: Path) -> bool:
    """Trained return (IQM, 95 % CI from two seeds on) against the sparsity each variant reached, for
    L0 and GMP, with the dense return as a horizontal line; only for cells that sweep several
    sparsity levels."""
    levels = {v.level for v in cell.variants if v.level is not None}
    if len(levels) < 2:
        return False
    plt = _pyplot()
    row_of = {r.variant: r for r in rows if r.method == "l0" and r.trained_return is not None}
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, (kind, label) in enumerate((("l0", "L0"), ("gmp", "GMP"))):
        pts = [row_of[v.name] for v in cell.variants if v.sparsity == kind and v.name in row_of]
        if not pts:
            continue
        pts.sort(key=lambda r: r.sparsity)
        x = [r.sparsity for r in pts]
        y = np.array([r.trained_return.point for r in pts])
        look = style(i, 2)
        if all(r.trained_return.has_interval for r in pts):
            err = np.array(
                [
                    [r.trained_return.point - r.trained_return.low for r in pts],
                    [r.trained_return.high - r.trained_return.point for r in pts],
                ]
            )
            n = min(len(r.seeds) for r in pts)
            ax.errorbar(x, y, yerr=err, capsize=3, label=f"{label} (IQM, 95 % CI, n={n})", **look)
        else:
            ax.plot(x, y, label=f"{label} (n=1)", **look)
    dense = next((row_of[v.name] for v in cell.variants if v.sparsity == "none" and v.name in row_of), None)
    if dense is not None:
        ax.axhline(
            dense.trained_return.point, color="black", linestyle=":", label=f"dense (n={len(dense.seeds)})"
        )
        if dense.trained_return.has_interval:
            ax.axhspan(dense.trained_return.low, dense.trained_return.high, color="gray", alpha=0.15)
    ax.set(xlabel="sparsity reached", ylabel="eval return", title=title(f"{cell.title}: return vs sparsity"))
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return _save(plt, fig, path)


def plot_compress(cell: Any, by_variant: dict[str, list[Record]], rows: list[Row], path: Path) -> bool:
    """Parameters and bytes (log scale) and latency at every compress stage, per table row (means over
    seeds)."""
    plt = _pyplot()
    figures = (("params", "parameters (log)", True), ("bytes", "bytes (log)", True))
    figures += (("latency_us", "latency (us, 1 thread)", False),)
    series = []
    for row in rows:
        reports = [
            r.compress[row.method] for r in by_variant.get(row.variant, []) if row.method in r.compress
        ]
        if reports:
            series.append((row.label, reports))
    if not series:
        return False
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    width = 0.8 / len(series)
    for ax, (key, name, log) in zip(axes, figures):
        for i, (label, reports) in enumerate(series):
            means = [mean([(stage(rep, s) or {}).get(key) for rep in reports]) for s in STAGES]
            xs = [j + (i - (len(series) - 1) / 2) * width for j, m in enumerate(means) if m is not None]
            look = style(i, len(series))
            hatch = ("", "//", "..", "xx")[i % 4]
            ax.bar(
                xs,
                [m for m in means if m is not None],
                width,
                label=plot_text(label),
                color=look["color"],
                hatch=hatch,
            )
        if log:
            ax.set_yscale("log")
        ax.set_xticks(range(len(STAGES)), STAGES)
        ax.set_title(name)
        ax.grid(alpha=0.3, axis="y")
    handles, labels = axes[0].get_legend_handles_labels()
    ncol = min(len(series), 3)
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize="small")
    fig.suptitle(title(f"{cell.title}: compress stages (mean over seeds)"))
    fig.tight_layout(rect=(0, 0.06 * ((len(series) + ncol - 1) // ncol + 1), 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def draw_figures(
    cell: Any, by_variant: dict[str, list[Record]], rows: list[Row], out: Path, reps: int
) -> dict:
    """Every figure that applies to the cell, as PNGs in `out`; figure kind -> file name."""
    plots = {
        "return": lambda p: plot_curves(cell, by_variant, "return", p, reps),
        "sparsity": lambda p: plot_curves(cell, by_variant, "sparsity", p, reps),
        "frontier": lambda p: plot_frontier(cell, by_variant, rows, p),
        "compress": lambda p: plot_compress(cell, by_variant, rows, p),
    }
    names = {kind: f"{cell.slug}_{kind}.png" for kind in plots}
    return {kind: names[kind] for kind, draw in plots.items() if draw(out / names[kind])}


CAPTIONS = {
    "return": "Learning curves: mean return of the last {w} training episodes at each step; line = IQM over "
    "seeds, band = stratified-bootstrap 95 % CI (no band for a variant of one seed, n=1).",
    "sparsity": "Policy sparsity over training (L0: deterministic gates; GMP: masks); line = IQM over seeds, "
    "band = range over seeds (none for n=1).",
    "frontier": "Return vs sparsity: final evaluation return (IQM, with its 95 % CI from two seeds on) at the "
    "sparsity each variant reached; dotted line (and band): dense.",
    "compress": "Compress stages: parameters and bytes (log scale) and one-thread latency of the policy at "
    "each stage, mean over seeds.",
}


def caption(kind: str) -> str:
    return CAPTIONS[kind].format(w=CURVE_WINDOW)
