"""One report from its parts: per cell its rows, comparisons and figures (report.tables, report.figures);
the header lines every report has (statistics, how the returns were evaluated, hardware, versions);
report.json; and the folder they are written to, which never holds anything but a report.
"""

import json
import platform
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

from l0rl.errors import UsageError
from l0rl.report import stats
from l0rl.report.collect import Record, hardware
from l0rl.report.figures import caption, draw_figures
from l0rl.report.tables import CellReport, cell_rows, comparison_lines, comparisons, md_text, table

VERSIONED = ("l0rl", "torch", "gymnasium", "numpy", "rliable", "matplotlib", "wandb", "wandb-workspaces")
REPORT_NAME = "REPORT.md"
JSON_NAME = "report.json"


def by_variant(cell: Any, records: list[Record]) -> dict[str, list[Record]]:
    """The cell's runs, per variant name."""
    out: dict[str, list[Record]] = {}
    for r in records:
        if r.cell == cell:
            out.setdefault(r.variant.name, []).append(r)
    return out


def build(cells: list[Any], records: list[Record], out: Path, reps: int) -> list[CellReport]:
    """Every cell's table, comparisons and figures (written to `out`)."""
    out.mkdir(parents=True, exist_ok=True)
    reports = []
    for cell in cells:
        runs = by_variant(cell, records)
        rows = cell_rows(cell, runs, reps)
        found, one_seed = comparisons(cell, runs, reps)
        report = CellReport(cell, rows, found, one_seed)
        report.figures = draw_figures(cell, runs, rows, out, reps)
        reports.append(report)
    return reports


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def trained_on(records: list[Record]) -> list[str]:
    """Every distinct machine that trained one of the runs, from the benchmark runner's benchmark.json."""
    seen = {}
    for r in records:
        for s in r.bench.get("sessions", []):
            hw = s["hardware"]
            seen[f"{hw['cpu']} ({hw['cores']} cores)"] = True
    return list(seen)


def evaluation(records: list[Record]) -> str:
    """How the trained returns were evaluated: greedy or sampled actions, per environment where both occur."""
    greedy = {r.args["env_id"]: r.args.get("eval_greedy", True) is not False for r in records}
    sampled = sorted(env for env, g in greedy.items() if not g)
    if not sampled:
        return "deterministic gates, greedy actions"
    if len(sampled) == len(greedy):
        return "deterministic gates, actions sampled from the policy"
    return (
        f"deterministic gates, greedy actions ({', '.join(map(md_text, sampled))}: sampled from the policy)"
    )


def header_lines(records: list[Record], reps: int) -> list[str]:
    """What every report says about its numbers: statistics, evaluation, hardware, versions."""
    hw = hardware()
    return [
        f"- Statistics (rliable): returns are interquartile means over seeds with stratified-bootstrap 95 % "
        f"confidence intervals ({reps} repetitions, seed {stats.BOOTSTRAP_SEED}) from two seeds on; a "
        "variant of one seed shows its score marked n = 1, with no interval and no probability of "
        "improvement. Other columns are means over seeds. Trained return: the run's final evaluation "
        f"({evaluation(records)}). Compressed return: the same policy after the final compress stage (low "
        "rank), on the compress evaluation seeds. Fewer params / bytes: relative to the dense architecture. "
        "Stored values: the numbers the compressed file holds (a tensor saved as bitmask + values stores "
        "only its non-zeros). Latency: one observation, one thread; x dense: the compressed policy's "
        "latency over the hardened (dense-architecture) policy's, timed interleaved in the same compress "
        "call (median over rounds).",
        f"- Hardware: report built on {md_text(hw['cpu'])} ({hw['cores']} cores); runs trained on "
        + (", ".join(map(md_text, trained_on(records))) or "unknown (no benchmark.json)")
        + ".",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()) + ".",
    ]


def cell_body(c: CellReport, report_command: str, extra: list[str] = ()) -> list[str]:
    """A cell's table, comparisons, `extra` lines (a suite's per-seed targets) and figures with their captions."""
    lines = [""] + (table(c.rows) if c.rows else ["No finished runs yet."])
    lines += comparison_lines(c) + list(extra)
    for kind, name in c.figures.items():
        lines += [
            "",
            f"![{md_text(c.cell.title)} {kind}]({name})",
            "",
            f"*{caption(kind)} Command: `{report_command}`.*",
        ]
    return lines


def as_json(cells: list[CellReport], reps: int) -> dict:
    return {
        "bootstrap": {"reps": reps, "seed": stats.BOOTSTRAP_SEED, "confidence": stats.CONFIDENCE},
        "cells": [
            {
                "env_id": c.cell.env_id,
                "algo": c.cell.algo,
                "total_timesteps": c.cell.total_timesteps,
                "rows": [asdict(r) for r in c.rows],
                "comparisons": [asdict(x) for x in c.comparisons],
                "figures": c.figures,
            }
            for c in cells
        ],
    }


def check_out(out: Path) -> Path:
    """The folder a report goes to: new, empty, or holding an earlier report (which it replaces);
    anything else is refused, so a report never writes among other files."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; pass a folder for the report")
    if out.is_dir() and any(out.iterdir()) and not (out / REPORT_NAME).is_file():
        raise UsageError(
            f"--out {out} holds other files; pass a new or empty folder (or an earlier report's)"
        )
    return out


def write(out: Path, markdown: str, data: dict) -> None:
    (out / REPORT_NAME).write_text(markdown)
    (out / JSON_NAME).write_text(json.dumps(data, indent=2) + "\n")


def validate_reps(reps: int) -> None:
    if reps < 10:
        raise UsageError(f"--reps must be >= 10, got {reps}")
