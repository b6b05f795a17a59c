"""A report's numbers: per cell one row per variant (and per other compression of its runs), the
probability of improvement between variants, and their markdown. Returns are IQMs over seeds with
stratified-bootstrap 95 % intervals (report.stats, rliable) from two seeds on; one seed shows its score
and n = 1, and enters no probability of improvement. The other columns are means over seeds.

Every text that comes from a file (run names, exp names, CPU names) goes through `md_text` or
`md_code` before it reaches REPORT.md: no HTML, link, heading or table row can be injected.
"""

import html
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from l0rl.report import stats
from l0rl.report.collect import Record

MIN_SEEDS_FOR_INTERVALS = 2


def md_text(value: Any) -> str:
    """Text from a file, safe in markdown prose and in a table cell: one line, HTML escaped, markdown's
    markup characters (emphasis, links, code, cell separators) backslash-escaped."""
    text = html.escape(" ".join(str(value).split()), quote=False)
    return re.sub(r"([\\`*_\[\]|~])", r"\\\1", text)


def md_code(value: Any) -> str:
    """Text from a file as a code span (`...`): one line, no backtick to end the span early, and no
    cell separator, so it is safe in tables too."""
    return "`" + " ".join(str(value).split()).replace("`", "'").replace("|", "/") + "`"


# --- rows ------------------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of a cell's table: a variant, or a variant's runs compressed another way. Returns are
    IQM [95 % CI] over seeds (no interval from one seed); the other figures are means over seeds (None:
    not applicable)."""

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
class CellReport:
    cell: Any
    rows: list[Row]
    comparisons: list[Comparison]
    one_seed: bool = False
    """some variant the comparisons would involve has one seed: no probability of improvement for it"""
    figures: dict[str, str] = field(default_factory=dict)
    """figure kind -> PNG file name"""


def mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def eval_return(record: Record) -> float | None:
    """The run's final evaluation return (None when it was not evaluated)."""
    return record.summary.get("eval/episodic_return")


def stage(report: dict, name: str) -> dict | None:
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

    def sparsity(r: Record) -> float | None:
        if trained:
            return r.summary.get("sparsity")
        # what pruning left (magnitude), or the hardened policy's (svd, which prunes nothing)
        found = stage(r.compress[method], "pruned") or stage(r.compress[method], "hardened") or {}
        return found.get("sparsity")

    trained_returns = [x for x in (eval_return(r) for r in records) if x is not None]
    compressed_returns = [f["return_mean"] for f in finals if f["return_mean"] is not None]
    return Row(
        label=label,
        variant=variant,
        method=method,
        seeds=[r.seed for r in (records if trained else with_report)],
        trained_return=stats.iqm(trained_returns, reps) if trained and trained_returns else None,
        compressed_return=stats.iqm(compressed_returns, reps) if compressed_returns else None,
        sparsity=mean([sparsity(r) for r in (records if trained else with_report)]),
        params=mean([f["params"] for f in finals]),
        compression_params=mean([f["compression_params"] for f in finals]),
        stored_values=mean([f["stored_values"] for f in finals]),
        bytes=mean([f["bytes"] for f in finals]),
        compression_bytes=mean([f["compression_bytes"] for f in finals]),
        latency_original_us=mean([r.compress[method]["stages"][0]["latency_us"] for r in with_report]),
        latency_us=mean([f["latency_us"] for f in finals]),
        latency_ratio=mean([f["latency_ratio"] for f in finals]),
        sps=mean([r.sps for r in records]) if trained else None,
        success_rate=mean([r.summary.get("eval/success_rate") for r in records]) if trained else None,
    )


OTHER_METHODS = {"magnitude": "one-shot magnitude", "svd": "SVD only"}


def cell_rows(cell: Any, by_variant: dict[str, list[Record]], reps: int) -> list[Row]:
    """The variants in the cell's order, then their other compressions: a suite's planned baselines
    (a final magnitude step, the dense run at its partner's sparsity, SVD alone), and any other
    compress report the runs hold."""
    plan = [(v.label, v, "l0") for v in cell.variants]
    for v in (v for v in cell.variants if v.magnitude_after is not None):
        plan.append((f"{v.label} + final one-shot magnitude (to {v.magnitude_after:.0%})", v, "magnitude"))
    for v in (v for v in cell.variants if v.matched_to is not None):
        matched = next(x for x in cell.variants if x.name == v.matched_to).label
        plan.append((f"{v.label} + one-shot magnitude (at {matched}'s sparsity)", v, "magnitude"))
        plan.append((f"{v.label} + SVD only", v, "svd"))
    planned = {(v.name, method) for _, v, method in plan}
    for v in cell.variants:
        for method, what in OTHER_METHODS.items():
            held = any(method in r.compress for r in by_variant.get(v.name, []))
            if held and (v.name, method) not in planned:
                plan.append((f"{v.label} + {what}", v, method))
    rows = [make_row(label, v.name, method, by_variant.get(v.name, []), reps) for label, v, method in plan]
    return [r for r in rows if r is not None]


def comparisons(cell: Any, by_variant: dict[str, list[Record]], reps: int) -> tuple[list[Comparison], bool]:
    """For every L0 variant: P(L0 > GMP) against its GMP counterpart (same target, or the GMP run
    pruned to its sparsity) and P(L0 > dense), where both sides have two seeds or more; and whether a
    pair was left out for having one seed."""
    out, one_seed = [], False

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
            a, b = returns(v.name), returns(w.name)
            if not a or not b:
                continue
            if min(len(a), len(b)) < MIN_SEEDS_FOR_INTERVALS:
                one_seed = True
                continue
            out.append(Comparison(v.label, w.label, stats.probability_of_improvement(a, b, reps)))
    return out, one_seed


# --- markdown --------------------------------------------------------------------------------------


def pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f} %"


def num(v: float | None, fmt: str = ",.0f") -> str:
    return "-" if v is None else format(v, fmt)


def est(e: stats.Estimate | None, fmt: str = ".1f") -> str:
    if e is None:
        return "-"
    if not e.has_interval:
        return f"{e.point:{fmt}} (n = 1)"
    return f"{e.point:{fmt}} [{e.low:{fmt}}, {e.high:{fmt}}]"


def table(rows: list[Row]) -> list[str]:
    success = any(r.success_rate is not None for r in rows)  # goal-conditioned tasks (NeedleReach)
    lines = [
        "| variant | seeds | trained return, IQM [95 % CI] | sparsity | compressed return, IQM [95 % CI] "
        "| params (compressed) | fewer params | stored values | bytes (compressed) | fewer bytes "
        "| latency us (original -> compressed, x dense) | SPS |" + (" success |" if success else ""),
        "|---" * (13 if success else 12) + "|",
    ]
    for r in rows:
        latency = (
            "-" if r.latency_us is None else f"{num(r.latency_original_us, '.1f')} -> {r.latency_us:.1f}"
        )
        if r.latency_ratio is not None:
            latency += f" ({r.latency_ratio:.2f}x)"
        lines.append(
            f"| {md_text(r.label)} | {len(r.seeds)} | {est(r.trained_return)} | {pct(r.sparsity)} | "
            f"{est(r.compressed_return)} | {num(r.params)} | {pct(r.compression_params)} | "
            f"{num(r.stored_values)} | {num(r.bytes)} | {pct(r.compression_bytes)} | {latency} | {num(r.sps)} |"
            + (f" {pct(r.success_rate)} |" if success else "")
        )
    return lines


def comparison_lines(c: CellReport) -> list[str]:
    """The probability-of-improvement table, or why it is missing (variants of one seed)."""
    lines = []
    if c.comparisons:
        lines += ["", "Probability of improvement (trained return, over seeds):", ""]
        lines += ["| comparison | P(X > Y) [95 % CI] |", "|---|---|"]
        lines += [
            f"| {md_text(x.better)} > {md_text(x.than)} | {est(x.estimate, '.2f')} |" for x in c.comparisons
        ]
    if c.one_seed:
        lines += [
            "",
            "No probability of improvement where a variant has one seed (n = 1): it needs two or more.",
        ]
    return lines
