"""Report a benchmark suite from its run directories alone: tables, statistics and figures, and on
request the same comparison as a W&B report.

    python -m benchmark.report quick                     # benchmark/results/quick/REPORT.md + PNGs
    python -m benchmark.report quick --runs-dir DIR --out DIR
    python -m benchmark.report quick --publish           # also a W&B report (needs an API key)
    python -m benchmark.report mario --in-progress       # also runs still training, at their checkpoint

Reads only what the runs wrote (checkpoint args, metrics.jsonl, summary.json, compress*.json and the
runner's benchmark.json): no cloud needed. Per cell (environment x algorithm) one table with a row
per variant (dense, L0, GMP) plus the dense run compressed two other ways: one-shot magnitude pruning
at the sparsity the L0 run reached, and SVD alone; and where a variant sets `magnitude_after`, its
runs with a final one-shot magnitude step. Where a cell has a target (benchmark/suites.py), a per-seed
table follows, with the share of seeds whose run meets it. Returns are IQMs over seeds with stratified-
bootstrap 95 % intervals (benchmark/stats.py, rliable); the other columns are means over seeds.
report.json next to REPORT.md holds every number of the tables.

`--publish` saves a W&B report (wandb_workspaces.reports.v2) of the suite's W&B runs (group = suite):
per cell, line plots grouped by variant (return, sparsity, lambda) and a table of the compress runs.
Without an API key or network it says so in one line (exit 2), after writing the local report.
"""

import argparse
import json
import platform
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from benchmark import stats, suites
from benchmark.run_suite import BENCH_NAME, ROOT, default_runs_dir, find_run, hardware, is_done
from benchmark.suites import Cell, RunSpec, Suite
from l0rl.compress.pipeline import output_names
from l0rl.errors import UsageError
from l0rl.runkit import load_checkpoint, read_metrics, run_cli
from l0rl.runkit.tracker import has_wandb_key

PROG = "python -m benchmark.report"
CURVE_POINTS = 40
"""Points of a learning curve between 0 and the budget."""
CURVE_WINDOW = 10
"""A curve's value at step x: the mean return of the last CURVE_WINDOW episodes ended by x."""
STAGES = ("original", "hardened", "pruned", "shrunk", "low-rank")
VERSIONED = ("l0rl", "torch", "gymnasium", "numpy", "rliable", "matplotlib", "wandb", "wandb-workspaces")


def default_out(suite: str) -> Path:
    return ROOT / "benchmark" / "results" / suite


# --- what the runs wrote ------------------------------------------------------------------------


@dataclass
class Record:
    """One finished run as the report reads it (or, with --in-progress, one still training)."""

    spec: RunSpec
    run_dir: Path
    args: dict
    summary: dict
    metrics: list[dict]
    compress: dict[str, dict]
    """compress method -> its compress*.json"""
    bench: dict
    progress_step: int | None = None
    """an unfinished run's checkpoint step (its curves stop there; it has no final evaluation)"""

    @property
    def sps(self) -> float | None:
        values = [m["charts/SPS"] for m in self.metrics if m.get("charts/SPS") is not None]
        return float(values[-1]) if values else None


def collect(
    suite: Suite, runs_dir: Path, seeds: list[int] | None = None, in_progress: bool = False
) -> tuple[list[Record], list[RunSpec]]:
    """The finished runs of the suite (and with in_progress, those still training, at their last
    checkpoint), and the specs without one."""
    records, missing = [], []
    for spec in suites.expand(suite, seeds):
        found = find_run(runs_dir, spec)
        if not is_done(found, spec):
            if in_progress and found is not None:
                records.append(unfinished_record(spec, found.run_dir, found.global_step))
            else:
                missing.append(spec)
            continue
        d = found.run_dir
        compress = {}
        for method in ("l0", "magnitude", "svd"):
            path = d / output_names(method)["report"]
            if path.exists():
                compress[method] = json.loads(path.read_text())
        bench = json.loads((d / BENCH_NAME).read_text()) if (d / BENCH_NAME).exists() else {}
        summary = json.loads((d / "summary.json").read_text())
        records.append(Record(spec, d, load_checkpoint(d)["args"], summary, read_metrics(d), compress, bench))
    return records, missing


def unfinished_record(spec: RunSpec, run_dir: Path, step: int) -> Record:
    """A run still training: its metrics up to its checkpoint, and as summary only the sparsity it
    last logged (no final evaluation, no compress report)."""
    metrics = [m for m in read_metrics(run_dir) if m.get("global_step", 0) <= step]
    key = f"{spec.variant.sparsity}/sparsity"
    logged = [m[key] for m in metrics if m.get(key) is not None]
    summary = {"sparsity": logged[-1] if logged else 0.0}
    args = load_checkpoint(run_dir)["args"]
    bench = json.loads((run_dir / BENCH_NAME).read_text()) if (run_dir / BENCH_NAME).exists() else {}
    return Record(spec, run_dir, args, summary, metrics, {}, bench, progress_step=step)


# --- tables -------------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of a cell's table: a variant, or the dense run compressed another way. Returns are
    IQM [95 % CI] over seeds; the other figures are means over seeds (None: not applicable)."""

    label: str
    variant: str
    method: str
    """the compress method its compression columns come from"""
    seeds: list[int]
    trained_return: stats.Estimate | None
    compressed_return: stats.Estimate | None
    sparsity: float | None
    params: float | None
    compression_params: float | None
    stored_values: float | None
    """numbers the compressed policy's file holds (zeros of bitmask-encoded tensors are not stored;
    None for compress reports written before compress counted them)"""
    bytes: float | None
    compression_bytes: float | None
    latency_original_us: float | None
    latency_us: float | None
    latency_ratio: float | None
    """the compressed policy's latency / the hardened (dense-architecture) policy's, timed interleaved
    in the same compress call (None for reports written before compress measured it)"""
    sps: float | None
    success_rate: float | None


@dataclass
class Comparison:
    """P(a run of `better` scores higher than a run of `than`), on trained evaluation returns."""

    better: str
    than: str
    estimate: stats.Estimate


@dataclass
class SeedRow:
    """One run of a cell as its target reads it (final evaluation and sparsity), with its compressed
    size and score (the final stage of its `--method l0` compression)."""

    variant: str
    seed: int
    score: float | None
    """final evaluation return, or success rate where the target reads success"""
    sparsity: float
    params: float | None
    bytes: float | None
    compressed_score: float | None
    met: bool | None
    """None: the cell has no target, or the run is dense"""


@dataclass
class CellReport:
    cell: Cell
    rows: list[Row]
    comparisons: list[Comparison]
    seeds: list[SeedRow] = field(default_factory=list)
    figures: dict[str, str] = field(default_factory=dict)
    """figure kind -> PNG file name"""


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def eval_return(record: Record) -> float | None:
    """The run's final evaluation return (None when it was not evaluated)."""
    return record.summary.get("eval/episodic_return")


def _stage(report: dict, name: str) -> dict | None:
    return next((s for s in report["stages"] if s["stage"] == name), None)


def make_row(label: str, variant: str, method: str, records: list[Record], reps: int) -> Row | None:
    """A table row from the runs of one variant: trained figures from summary.json and metrics, the
    compression figures from the final stage of their compress report of `method`."""
    trained = method == "l0"  # the magnitude and svd rows describe a trained run after compression
    with_report = [r for r in records if method in r.compress]
    if not records or (not trained and not with_report):
        return None
    finals = [r.compress[method]["stages"][-1] for r in with_report]
    unfinished = [r.progress_step for r in records if r.progress_step is not None]
    if trained and unfinished:
        label += f" (in progress: step {min(unfinished):,} of {records[0].args['total_timesteps']:,})"

    def sparsity(r: Record) -> float:
        if trained:
            return r.summary["sparsity"]
        # what pruning left (magnitude), or the hardened policy's (svd, which prunes nothing)
        return (_stage(r.compress[method], "pruned") or _stage(r.compress[method], "hardened"))["sparsity"]

    trained_returns = [x for x in (eval_return(r) for r in records) if x is not None]
    return Row(
        label=label,
        variant=variant,
        method=method,
        seeds=[r.spec.seed for r in (records if trained else with_report)],
        trained_return=stats.iqm(trained_returns, reps) if trained and trained_returns else None,
        compressed_return=stats.iqm([f["return_mean"] for f in finals], reps) if finals else None,
        sparsity=_mean([sparsity(r) for r in (records if trained else with_report)]),
        params=_mean([f["params"] for f in finals]),
        compression_params=_mean([f["compression_params"] for f in finals]),
        stored_values=_mean([f["stored_values"] for f in finals if "stored_values" in f]),
        bytes=_mean([f["bytes"] for f in finals]),
        compression_bytes=_mean([f["compression_bytes"] for f in finals]),
        latency_original_us=_mean([r.compress[method]["stages"][0]["latency_us"] for r in with_report]),
        latency_us=_mean([f["latency_us"] for f in finals]),
        latency_ratio=_mean([f["latency_ratio"] for f in finals if "latency_ratio" in f]),
        sps=_mean([r.sps for r in records]) if trained else None,
        success_rate=_mean([r.summary.get("eval/success_rate") for r in records]) if trained else None,
    )


def cell_rows(cell: Cell, by_variant: dict[str, list[Record]], reps: int) -> list[Row]:
    """The variants in suite order, then the dense run's other compressions (the baselines)."""
    rows = [make_row(v.label, v.name, "l0", by_variant.get(v.name, []), reps) for v in cell.variants]
    for v in (v for v in cell.variants if v.magnitude_after is not None):
        label = f"{v.label} + final one-shot magnitude (to {v.magnitude_after:.0%})"
        rows.append(make_row(label, v.name, "magnitude", by_variant.get(v.name, []), reps))
    for v in (v for v in cell.variants if v.matched_to is not None):
        recs = by_variant.get(v.name, [])
        matched = next(x for x in cell.variants if x.name == v.matched_to).label
        rows.append(
            make_row(
                f"{v.label} + one-shot magnitude (at {matched}'s sparsity)", v.name, "magnitude", recs, reps
            )
        )
        rows.append(make_row(f"{v.label} + SVD only", v.name, "svd", recs, reps))
    return [r for r in rows if r is not None]


def comparisons(cell: Cell, by_variant: dict[str, list[Record]], reps: int) -> list[Comparison]:
    """For every L0 variant: P(L0 > GMP) against its GMP counterpart (same target or the GMP run
    pruned to its sparsity) and P(L0 > dense)."""
    out = []

    def returns(name: str) -> list[float]:
        return [x for x in (eval_return(r) for r in by_variant.get(name, [])) if x is not None]

    for v in (v for v in cell.variants if v.sparsity == "l0"):
        rivals = [
            w
            for w in cell.variants
            if (
                w.sparsity == "gmp"
                and (w.gmp_target_from == v.name or (w.level is not None and w.level == v.level))
            )
            or w.sparsity == "none"
        ]
        for w in sorted(rivals, key=lambda w: w.sparsity != "gmp"):  # GMP first, then dense
            if returns(v.name) and returns(w.name):
                p = stats.probability_of_improvement(returns(v.name), returns(w.name), reps)
                out.append(Comparison(v.label, w.label, p))
    return out


def seed_rows(cell: Cell, by_variant: dict[str, list[Record]]) -> list[SeedRow]:
    """Every finished run of the cell, variant by variant, seed by seed, against the cell's target."""
    success = cell.target is not None and cell.target.metric == "success"
    out = []
    for v in cell.variants:
        for r in sorted(by_variant.get(v.name, []), key=lambda r: r.spec.seed):
            if r.progress_step is not None:
                continue
            final = r.compress["l0"]["stages"][-1] if "l0" in r.compress else {}
            score = r.summary.get("eval/success_rate" if success else "eval/episodic_return")
            judged = cell.target is not None and v.sparsity != "none"
            out.append(
                SeedRow(
                    variant=v.label,
                    seed=r.spec.seed,
                    score=score,
                    sparsity=r.summary["sparsity"],
                    params=final.get("params"),
                    bytes=final.get("bytes"),
                    compressed_score=final.get("success_rate" if success else "return_mean"),
                    met=cell.target.met(r.summary["sparsity"], score) if judged else None,
                )
            )
    return out


def met_counts(rows: list[SeedRow]) -> dict[str, tuple[int, int]]:
    """variant -> (seeds meeting the target, seeds judged)."""
    out: dict[str, tuple[int, int]] = {}
    for r in (r for r in rows if r.met is not None):
        met, n = out.get(r.variant, (0, 0))
        out[r.variant] = (met + r.met, n + 1)
    return out


# --- figures ------------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def return_curve(record: Record, grid: np.ndarray) -> np.ndarray:
    """Mean return of the last CURVE_WINDOW episodes ended by each grid step (NaN before the first)."""
    episodes = [
        (m["global_step"], m["charts/episodic_return"])
        for m in record.metrics
        if "charts/episodic_return" in m
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
    key = f"{record.spec.variant.sparsity}/sparsity"
    logged = [(m["global_step"], m[key]) for m in record.metrics if m.get(key) is not None]
    out = np.full(len(grid), np.nan)
    for i, x in enumerate(grid):
        if record.progress_step is not None and x > record.progress_step:
            break
        before = [v for s, v in logged if s <= x]
        if before:
            out[i] = before[-1]
    return out


def plot_curves(cell: Cell, by_variant: dict[str, list[Record]], kind: str, path: Path, reps: int) -> bool:
    """Return (IQM with its bootstrap band) or sparsity (IQM with the seeds' range) against env
    steps, one line per variant. False when there is nothing to draw."""
    plt = _pyplot()
    budget = max((r.args["total_timesteps"] for recs in by_variant.values() for r in recs), default=0)
    grid = np.linspace(0, budget or cell.total_timesteps, CURVE_POINTS + 1)[1:]
    fig, ax = plt.subplots(figsize=(7, 4))
    drawn = False
    for v in cell.variants:
        recs = by_variant.get(v.name, [])
        if not recs or (kind == "sparsity" and v.sparsity == "none"):
            continue
        curve = return_curve if kind == "return" else sparsity_curve
        m = np.stack([curve(r, grid) for r in recs])
        ok = np.isfinite(m).all(axis=0)
        if not ok.any():
            continue
        if kind == "return":
            mid, low, high = stats.iqm_curve(m[:, ok], min(reps, stats.CURVE_REPS))
        else:
            mid = stats.iqm_columns(m[:, ok])
            low, high = m[:, ok].min(axis=0), m[:, ok].max(axis=0)
        (line,) = ax.plot(grid[ok], mid, label=f"{v.label} (n={len(recs)})")
        ax.fill_between(grid[ok], low, high, alpha=0.2, color=line.get_color())
        drawn = True
    if not drawn:
        plt.close(fig)
        return False
    band = "IQM, 95 % bootstrap CI" if kind == "return" else "IQM, range over seeds"
    what = f"episodic return (last {CURVE_WINDOW} episodes)" if kind == "return" else "policy sparsity"
    ax.set(xlabel="env steps", ylabel=what, title=f"{cell.title}: {what} ({band})")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return _save(plt, fig, path)


def _save(plt, fig, path: Path) -> bool:
    """Write a finished figure as PNG and free it; True, for the plot_* functions to return."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_frontier(cell: Cell, by_variant: dict[str, list[Record]], rows: list[Row], path: Path) -> bool:
    """Trained return (IQM, 95 % CI) against the sparsity each variant reached, for L0 and GMP, with
    the dense return as a horizontal line; only for cells that sweep several sparsity levels."""
    levels = {v.level for v in cell.variants if v.level is not None}
    if len(levels) < 2:
        return False
    plt = _pyplot()
    row_of = {r.variant: r for r in rows if r.method == "l0" and r.trained_return is not None}
    fig, ax = plt.subplots(figsize=(7, 4))
    for kind, marker in (("l0", "o"), ("gmp", "s")):
        pts = [row_of[v.name] for v in cell.variants if v.sparsity == kind and v.name in row_of]
        if not pts:
            continue
        pts.sort(key=lambda r: r.sparsity)
        x = [r.sparsity for r in pts]
        y = np.array([r.trained_return.point for r in pts])
        err = np.array(
            [
                [r.trained_return.point - r.trained_return.low for r in pts],
                [r.trained_return.high - r.trained_return.point for r in pts],
            ]
        )
        ax.errorbar(x, y, yerr=err, marker=marker, capsize=3, label=kind.upper() if kind == "l0" else "GMP")
    dense = next((row_of[v.name] for v in cell.variants if v.sparsity == "none" and v.name in row_of), None)
    if dense is not None:
        ax.axhline(dense.trained_return.point, color="gray", linestyle="--", label="dense (IQM)")
        ax.axhspan(dense.trained_return.low, dense.trained_return.high, color="gray", alpha=0.15)
    ax.set(
        xlabel="sparsity reached",
        ylabel="eval return (IQM, 95 % CI)",
        title=f"{cell.title}: return vs sparsity",
    )
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return _save(plt, fig, path)


def plot_compress(cell: Cell, by_variant: dict[str, list[Record]], rows: list[Row], path: Path) -> bool:
    """Parameters, bytes and latency at every compress stage, per table row (means over seeds)."""
    plt = _pyplot()
    figures = (("params", "parameters"), ("bytes", "bytes"), ("latency_us", "latency (us, 1 thread)"))
    series = []
    for row in rows:
        reports = [
            r.compress[row.method] for r in by_variant.get(row.variant, []) if row.method in r.compress
        ]
        if reports:
            series.append((row.label, reports))
    if not series:
        return False
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    width = 0.8 / len(series)
    for ax, (key, title) in zip(axes, figures):
        for i, (label, reports) in enumerate(series):
            means = [_mean([(_stage(rep, s) or {}).get(key) for rep in reports]) for s in STAGES]
            xs = [j + (i - (len(series) - 1) / 2) * width for j, m in enumerate(means) if m is not None]
            ax.bar(xs, [m for m in means if m is not None], width, label=label)
        ax.set_xticks(range(len(STAGES)), STAGES)
        ax.set_title(title)
        ax.grid(alpha=0.3, axis="y")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(series), 3), fontsize="small")
    fig.suptitle(f"{cell.title}: compress stages (mean over seeds)")
    fig.tight_layout(rect=(0, 0.06 * ((len(series) + 2) // 3 + 1), 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# --- the report ---------------------------------------------------------------------------------


def draw_figures(
    cell: Cell, by_variant: dict[str, list[Record]], rows: list[Row], out: Path, reps: int
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


def build(suite: Suite, records: list[Record], out: Path, reps: int) -> list[CellReport]:
    """Every cell's table, comparisons and figures (written to `out`)."""
    out.mkdir(parents=True, exist_ok=True)
    cells = []
    for cell in suite.cells:
        by_variant: dict[str, list[Record]] = {}
        for r in records:
            if r.spec.cell == cell:
                by_variant.setdefault(r.spec.variant.name, []).append(r)
        rows = cell_rows(cell, by_variant, reps)
        report = CellReport(cell, rows, comparisons(cell, by_variant, reps), seed_rows(cell, by_variant))
        report.figures = draw_figures(cell, by_variant, rows, out, reps)
        cells.append(report)
    return cells


CAPTIONS = {
    "return": "Learning curves: mean return of the last {w} training episodes at each step; line = IQM over "
    "seeds, band = stratified-bootstrap 95 % CI.",
    "sparsity": "Policy sparsity over training (L0: deterministic gates; GMP: masks); line = IQM over seeds, "
    "band = range over seeds.",
    "frontier": "Return vs sparsity: final evaluation return (IQM, 95 % CI) at the sparsity each variant "
    "reached; dashed line and band: dense.",
    "compress": "Compress stages: parameters, bytes and one-thread latency of the policy at each stage, "
    "mean over seeds.",
}


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f} %"


def _num(v: float | None, fmt: str = ",.0f") -> str:
    return "-" if v is None else format(v, fmt)


def _est(e: stats.Estimate | None, fmt: str = ".1f") -> str:
    return "-" if e is None else f"{e.point:{fmt}} [{e.low:{fmt}}, {e.high:{fmt}}]"


def table(rows: list[Row]) -> list[str]:
    success = any(r.success_rate is not None for r in rows)  # goal-conditioned tasks (NeedleReach)
    lines = [
        "| variant | seeds | trained return, IQM [95 % CI] | sparsity | compressed return, IQM [95 % CI] "
        "| params (compressed) | fewer params | stored values | bytes (compressed) | fewer bytes "
        "| latency us (original -> compressed, x dense) | SPS |" + (" success |" if success else ""),
        "|---" * (13 if success else 12) + "|",
    ]
    for r in rows:
        latency = "-" if r.latency_us is None else f"{r.latency_original_us:.1f} -> {r.latency_us:.1f}"
        if r.latency_ratio is not None:
            latency += f" ({r.latency_ratio:.2f}x)"
        lines.append(
            f"| {r.label} | {len(r.seeds)} | {_est(r.trained_return)} | {_pct(r.sparsity)} | "
            f"{_est(r.compressed_return)} | {_num(r.params)} | {_pct(r.compression_params)} | "
            f"{_num(r.stored_values)} | {_num(r.bytes)} | {_pct(r.compression_bytes)} | {latency} | {_num(r.sps)} |"
            + (f" {_pct(r.success_rate)} |" if success else "")
        )
    return lines


def seed_table(cell: Cell, rows: list[SeedRow]) -> list[str]:
    """The target, how many seeds of each variant meet it, and the per-seed table."""
    success = cell.target is not None and cell.target.metric == "success"
    score = "success rate" if success else "eval return"
    fmt = _pct if success else (lambda v: _num(v, ".1f"))
    lines = []
    if cell.target is not None:
        counts = ", ".join(f"{v} on {m} of {n} seeds" for v, (m, n) in met_counts(rows).items())
        lines += [f"Target {cell.target}: {counts or 'no finished run yet'}.", ""]
    lines += [
        f"| variant | seed | {score} | sparsity | compressed params | compressed bytes | compressed {score} "
        "| meets target |",
        "|---" * 8 + "|",
    ]
    for r in rows:
        met = "-" if r.met is None else ("yes" if r.met else "no")
        lines.append(
            f"| {r.variant} | {r.seed} | {fmt(r.score)} | {_pct(r.sparsity)} | {_num(r.params)} | "
            f"{_num(r.bytes)} | {fmt(r.compressed_score)} | {met} |"
        )
    return lines


def command_text(spec: RunSpec) -> str:
    """The training command of a variant, seed left as S and GMP's dependency named."""
    gmp = "<sparsity the L0 run reached>" if spec.variant.gmp_target_from else None
    args = " ".join(spec.train_args(gmp)).replace(f"--seed {spec.seed}", "--seed S")
    return f"python algos/{spec.cell.algo}.py {args}"


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def trained_on(records: list[Record]) -> list[str]:
    """Every distinct machine that trained a run of the suite, from the runner's benchmark.json."""
    seen = {}
    for r in records:
        for s in r.bench.get("sessions", []):
            hw = s["hardware"]
            seen[f"{hw['cpu']} ({hw['cores']} cores)"] = True
    return list(seen)


def header(
    suite: Suite, records: list[Record], missing: list[RunSpec], commands: dict, seeds, reps
) -> list[str]:
    """What produced the report: commands, seeds, statistics, hardware, versions."""
    hw = hardware()
    unfinished = [r for r in records if r.progress_step is not None]
    lines = [
        f"# Benchmark suite `{suite.name}`",
        "",
        suite.description,
        "",
        f"- Runs: `{commands['runs']}`; this report, every table and figure: `{commands['report']}`.",
        f"- Seeds: {', '.join(map(str, sorted({s.seed for s in suites.expand(suite, seeds)})))}; "
        f"{sum(r.progress_step is None for r in records)} finished runs"
        + (f", {len(missing)} missing (listed at the end)" if missing else "")
        + (
            f", {len(unfinished)} still training, shown at their last checkpoint (curves end there; no "
            "final evaluation or compress yet)."
            if unfinished
            else "."
        ),
        f"- Statistics (rliable): returns are interquartile means over seeds with stratified-bootstrap 95 % "
        f"confidence intervals ({reps} repetitions, seed {stats.BOOTSTRAP_SEED}); other columns are means "
        "over seeds. Trained return: the run's final evaluation (deterministic gates, greedy actions). "
        "Compressed return: the same policy after the final compress stage (low rank), on the compress "
        "evaluation seeds. Fewer params / bytes: relative to the dense architecture. Stored values: the "
        "numbers the compressed file holds (a tensor saved as bitmask + values stores only its non-zeros). "
        "Latency: one "
        "observation, one thread; x dense: the compressed policy's latency over the hardened (dense-"
        "architecture) policy's, timed interleaved in the same compress call (median over rounds).",
        f"- Hardware: report built on {hw['cpu']} ({hw['cores']} cores); runs trained on "
        + (", ".join(trained_on(records)) or "unknown (no benchmark.json)")
        + ".",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()) + ".",
    ]
    if suite.estimate:
        lines.append(f"- Expected wall time: {suite.estimate}.")
    return lines


def cell_section(
    c: CellReport, specs: list[RunSpec], report_command: str, compress_flags: str = ""
) -> list[str]:
    """A cell's commands, table, comparisons and figures; `specs`: one run of each variant."""
    lines = [
        "",
        f"## {c.cell.title}",
        "",
        f"Budget {c.cell.total_timesteps:,} env steps. Commands (S = seed):",
        "",
    ]
    lines += [f"- {s.variant.label}: `{command_text(s)}`" for s in specs]
    lines += [
        f"- compress: `python -m l0rl.compress RUN --method l0{compress_flags}` for every run; the dense runs also "
        "`--method magnitude --sparsity <sparsity the matching L0 run reached>` and `--method svd`.",
    ]
    lines += [
        f"- {v.label}'s runs also `--method magnitude --sparsity {v.magnitude_after}` (a final magnitude "
        "step; the dense runs are then pruned to this sparsity where it is higher)."
        for v in c.cell.variants
        if v.magnitude_after is not None
    ]
    lines.append("")
    lines += table(c.rows) if c.rows else ["No finished runs yet."]
    if c.comparisons:
        lines += ["", "Probability of improvement (trained return, over seeds):", ""]
        lines += ["| comparison | P(X > Y) [95 % CI] |", "|---|---|"]
        lines += [f"| {x.better} > {x.than} | {_est(x.estimate, '.2f')} |" for x in c.comparisons]
    if c.cell.target is not None and c.seeds:
        lines += ["", "Per seed (final evaluation; compressed: the `--method l0` report's last stage):", ""]
        lines += seed_table(c.cell, c.seeds)
    for kind, name in c.figures.items():
        caption = CAPTIONS[kind].format(w=CURVE_WINDOW)
        lines += ["", f"![{c.cell.title} {kind}]({name})", "", f"*{caption} Command: `{report_command}`.*"]
    return lines


def markdown(suite: Suite, cells: list[CellReport], records, missing, commands: dict, seeds, reps) -> str:
    lines = header(suite, records, missing, commands, seeds, reps)
    for c in cells:
        of_cell = [s for s in suites.expand(suite, seeds) if s.cell == c.cell]
        specs = [s for s in of_cell if s.seed == of_cell[0].seed]  # one run per variant, for its command
        flags = " ".join(suites.to_flags(suite.compress_options))
        lines += cell_section(c, specs, commands["report"], f" {flags}" if flags else "")
    if missing:
        lines += ["", "## Missing runs", "", f"Not finished yet (run `{commands['runs']}`):", ""]
        lines += [f"- {s.key}" for s in missing]
    return "\n".join(lines) + "\n"


def as_json(suite: Suite, cells: list[CellReport], missing: list[RunSpec], reps: int) -> dict:
    return {
        "suite": suite.name,
        "bootstrap": {"reps": reps, "seed": stats.BOOTSTRAP_SEED, "confidence": stats.CONFIDENCE},
        "cells": [
            {
                "env_id": c.cell.env_id,
                "algo": c.cell.algo,
                "total_timesteps": c.cell.total_timesteps,
                "rows": [asdict(r) for r in c.rows],
                "comparisons": [asdict(x) for x in c.comparisons],
                "target": None
                if c.cell.target is None
                else {**asdict(c.cell.target), "text": str(c.cell.target)},
                "met": {v: {"met": m, "seeds": n} for v, (m, n) in met_counts(c.seeds).items()},
                "seeds": [asdict(r) for r in c.seeds],
                "figures": c.figures,
            }
            for c in cells
        ],
        "missing": [s.key for s in missing],
    }


# --- W&B ----------------------------------------------------------------------------------------

TRAIN_PANELS = (
    ("episodic return", ["charts/episodic_return"]),
    ("sparsity", ["l0/sparsity", "gmp/sparsity"]),
    ("L0 lambda", ["l0/lambda"]),
)
COMPRESS_COLUMNS = [
    "run:displayName",
    "config:method.value",
    "config:sparsity.value",
    "summary:compress/original/return_mean",
    "summary:compress/low-rank/return_mean",
    "summary:compress/low-rank/params",
    "summary:compress/low-rank/compression_params",
    "summary:compress/low-rank/bytes",
    "summary:compress/low-rank/compression_bytes",
    "summary:compress/original/latency_us",
    "summary:compress/low-rank/latency_us",
]
GROUP_BY = "config.exp_name"
"""W&B groups a cell's runs by exp_name: one name per variant (ppo_l0, ppo_gmp, ...)."""


def wandb_report(suite: Suite, entity: str, project: str, command: str):
    """The W&B report of the suite (not saved): one section per cell, with line plots of its
    training runs grouped by variant and a runs table of their compress runs; every runset is
    filtered to the suite's W&B group and the cell's environment and algorithm (run tags)."""
    import wandb_workspaces.reports.v2 as wr
    from wandb_workspaces import expr

    blocks = [
        wr.P(
            f"{suite.description} Produced by `{command}` from the runs of `python -m benchmark.run_suite {suite.name}`."
        )
    ]
    for cell in suite.cells:
        where = [
            expr.Metric("Group") == suite.name,
            expr.Tags().isin([cell.env_id]),
            expr.Tags().isin([cell.algo]),
        ]
        train = wr.Runset(
            entity=entity,
            project=project,
            name=f"{cell.title}: training",
            filters=expr.And(*where, expr.Metric("JobType") == "train"),
            groupby=[GROUP_BY],
        )
        panels = [
            wr.LinePlot(
                title=title,
                x="global_step",
                y=list(y),
                groupby=GROUP_BY,
                groupby_aggfunc="mean",
                groupby_rangefunc="stderr",
            )
            for title, y in TRAIN_PANELS
        ]
        compress = wr.Runset(
            entity=entity,
            project=project,
            name=f"{cell.title}: compress",
            filters=expr.And(*where, expr.Metric("JobType") == "compress"),
            visible_columns=COMPRESS_COLUMNS,
        )
        blocks += [
            wr.H2(cell.title),
            wr.PanelGrid(runsets=[train], panels=panels),
            wr.H3("compression (one compress run per run and method)"),
            wr.PanelGrid(runsets=[compress], panels=[]),
        ]
    return wr.Report(
        project=project,
        entity=entity,
        title=f"l0rl benchmark: {suite.name}",
        description=suite.description,
        blocks=blocks,
        width="fluid",
    )


def publish(suite: Suite, records: list[Record], command: str, runs_dir: Path) -> str:
    """Save the W&B report; returns its URL. UsageError (one line) without a key or network."""
    offline = f"{runs_dir}/*/wandb/offline-run-* {runs_dir}/*/compress_*/wandb/offline-run-*"
    later = f"upload the offline runs with `wandb sync {offline}`, then run `{command}` again"
    if not has_wandb_key():
        raise UsageError(
            f"no W&B API key (wandb login, or WANDB_API_KEY): local report only; to publish, {later}"
        )
    args = records[0].args if records else {}
    try:
        import wandb

        entity = args.get("wandb_entity") or wandb.Api(timeout=20).default_entity
        report = wandb_report(suite, entity, args.get("wandb_project", "l0rl"), command)
        report.save()
    except Exception as e:  # no network, server refused: the local report stands
        first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise UsageError(f"cannot reach W&B ({first}): local report only; to publish, {later}") from None
    return report.url


# --- the command --------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Report a benchmark suite from its run directories.")
    p.add_argument("suite", help=f"one of {', '.join(suites.SUITES)}")
    p.add_argument("--runs-dir", type=Path, help="where the suite's runs are (default benchmark/runs/SUITE)")
    p.add_argument(
        "--out", type=Path, help="where REPORT.md and the figures go (default benchmark/results/SUITE)"
    )
    p.add_argument("--seeds", type=int, nargs="+", help="report these seeds only")
    p.add_argument(
        "--reps", type=int, default=stats.REPS, help=f"bootstrap repetitions (default {stats.REPS})"
    )
    p.add_argument("--publish", action="store_true", help="also save the comparison as a W&B report")
    p.add_argument(
        "--in-progress",
        action="store_true",
        help="also report runs still training, at their last checkpoint (curves and sparsity so far)",
    )
    return p


def main(argv: list[str] | None = None) -> Path:
    a = parser().parse_args(argv)
    suite = suites.get(a.suite)
    if a.reps < 10:
        raise UsageError(f"--reps must be >= 10, got {a.reps}")
    runs_dir = (a.runs_dir or default_runs_dir(suite.name)).resolve()
    if not runs_dir.is_dir():
        raise UsageError(f"{runs_dir} holds no runs; run `python -m benchmark.run_suite {suite.name}` first")
    out = (a.out or default_out(suite.name)).resolve()
    seeds = a.seeds  # None: each cell's own (the suite's unless the cell names others)
    runs_flag = f" --runs-dir {a.runs_dir}" if a.runs_dir else ""
    extra = (
        runs_flag
        + (f" --out {a.out}" if a.out else "")
        + (f" --seeds {' '.join(map(str, a.seeds))}" if a.seeds else "")
        + (f" --reps {a.reps}" if a.reps != stats.REPS else "")
        + (" --in-progress" if a.in_progress else "")
    )
    commands = {
        "runs": f"python -m benchmark.run_suite {suite.name}{runs_flag}",
        "report": f"{PROG} {suite.name}{extra}",
    }
    records, missing = collect(suite, runs_dir, seeds, a.in_progress)
    if a.publish and a.in_progress:
        raise UsageError("--publish reports finished runs only; drop --in-progress to publish")
    cells = build(suite, records, out, a.reps)
    (out / "REPORT.md").write_text(markdown(suite, cells, records, missing, commands, seeds, a.reps))
    (out / "report.json").write_text(json.dumps(as_json(suite, cells, missing, a.reps), indent=2) + "\n")
    print(f"report: {out / 'REPORT.md'} ({len(records)} runs, {len(missing)} missing)")
    if a.publish:
        url = publish(suite, records, f"{commands['report']} --publish", runs_dir)
        print(f"W&B report: {url}")
    return out


if __name__ == "__main__":
    run_cli(main, PROG)
