"""Report a benchmark suite from its run directories alone: tables, statistics and figures, and on
request the same comparison as a W&B report. The numbers, figures and W&B report are `l0rl report`'s
(l0rl.report); this adds what a suite knows: its runs by spec, each variant's command, the runs still
missing, and the planned baselines (the dense run compressed at the sparsity its L0 run reached, SVD
alone, a final one-shot magnitude step where a variant sets `magnitude_after`), and where a cell has a
target (benchmark/suites.py) a per-seed table with the share of seeds whose run meets it.

    python -m benchmark.report quick                     # benchmark/results/quick/REPORT.md + PNGs
    python -m benchmark.report quick --runs-dir DIR --out DIR
    python -m benchmark.report quick --publish           # also a W&B report (needs an API key)
    python -m benchmark.report mario --in-progress       # also runs still training, at their checkpoint

report.json next to REPORT.md holds every number of the tables. `--publish` saves a W&B report of the
suite's runs (selected by name); without an API key or network it says so in one line (exit 2),
after writing the local report.
"""

import argparse
import dataclasses
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmark import suites
from benchmark.layout import ROOT, default_runs_dir, find_run, is_done
from benchmark.suites import RunSpec, Suite
from l0rl.errors import UsageError
from l0rl.report import stats
from l0rl.report.collect import Record, read_run
from l0rl.report.document import as_json, build, by_variant, cell_body, header_lines, validate_reps, write
from l0rl.report.publish import publish
from l0rl.report.tables import CellReport, num, pct
from l0rl.runkit import run_cli

PROG = "python -m benchmark.report"


def default_out(suite: str) -> Path:
    return ROOT / "benchmark" / "results" / suite


def collect(
    suite: Suite, runs_dir: Path, seeds: list[int] | None = None, in_progress: bool = False
) -> tuple[list[Record], list[RunSpec]]:
    """The finished runs of the suite (and with in_progress, those still training, at their last
    checkpoint), and the specs without one."""
    records, missing = [], []
    for spec in suites.expand(suite, seeds):
        found = find_run(runs_dir, spec)
        done = is_done(found, spec)
        record = read_run(found.run_dir, partial=not done) if done or (in_progress and found) else None
        if record is None:
            missing.append(spec)
            continue
        records.append(dataclasses.replace(record, cell=spec.cell, variant=spec.variant))
    return records, missing


@dataclass
class SeedRow:
    """One run of a cell as its target reads it (final evaluation and sparsity), with its compressed
    size and score (the final stage of its `--method l0` compression)."""

    variant: str
    seed: int
    score: float | None
    """final evaluation return, or success rate where the target reads success"""
    sparsity: float | None
    params: float | None
    bytes: float | None
    compressed_score: float | None
    met: bool | None
    """None: the cell has no target, or the run is dense"""


def seed_rows(cell: suites.Cell, records: list[Record]) -> list[SeedRow]:
    """Every finished run of the cell, variant by variant, seed by seed, against the cell's target."""
    success = cell.target is not None and cell.target.metric == "success"
    runs = by_variant(cell, records)
    out = []
    for v in cell.variants:
        for r in sorted(runs.get(v.name, []), key=lambda r: r.seed):
            if r.progress_step is not None:
                continue
            final = r.compress["l0"]["stages"][-1] if "l0" in r.compress else {}
            score = r.summary.get("eval/success_rate" if success else "eval/episodic_return")
            sparsity = r.summary.get("sparsity")
            judged = cell.target is not None and v.sparsity != "none" and sparsity is not None
            out.append(
                SeedRow(
                    variant=v.label,
                    seed=r.seed,
                    score=score,
                    sparsity=sparsity,
                    params=final.get("params"),
                    bytes=final.get("bytes"),
                    compressed_score=final.get("success_rate" if success else "return_mean"),
                    met=cell.target.met(sparsity, score) if judged else None,
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


def seed_table(cell: suites.Cell, rows: list[SeedRow]) -> list[str]:
    """The target, how many seeds of each variant meet it, and the per-seed table."""
    success = cell.target is not None and cell.target.metric == "success"
    score = "success rate" if success else "eval return"
    fmt = pct if success else (lambda v: num(v, ".1f"))
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
            f"| {r.variant} | {r.seed} | {fmt(r.score)} | {pct(r.sparsity)} | {num(r.params)} | "
            f"{num(r.bytes)} | {fmt(r.compressed_score)} | {met} |"
        )
    return lines


def target_json(cell: suites.Cell, rows: list[SeedRow]) -> dict:
    """What report.json holds of a cell's target: the target, the seeds meeting it, the per-seed rows."""
    target = None if cell.target is None else {**asdict(cell.target), "text": str(cell.target)}
    met = {v: {"met": m, "seeds": n} for v, (m, n) in met_counts(rows).items()}
    return {"target": target, "met": met, "seeds": [asdict(r) for r in rows]}


def command_text(spec: RunSpec) -> str:
    """The training command of a variant, seed left as S and GMP's dependency named."""
    gmp = "<sparsity the L0 run reached>" if spec.variant.gmp_target_from else None
    args = " ".join(spec.train_args(gmp)).replace(f"--seed {spec.seed}", "--seed S")
    return f"python algos/{spec.cell.algo}.py {args}"


def header(
    suite: Suite, records: list[Record], missing: list[RunSpec], commands: dict, seeds, reps
) -> list[str]:
    """What produced the report: commands, seeds, statistics, hardware, versions."""
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
        *header_lines(records, reps),
    ]
    if suite.estimate:
        lines.append(f"- Expected wall time: {suite.estimate}.")
    return lines


def cell_section(
    c: CellReport,
    specs: list[RunSpec],
    report_command: str,
    compress_flags: str = "",
    seeds: list[SeedRow] = (),
) -> list[str]:
    """A cell's commands, table, comparisons, per-seed targets and figures; `specs`: one run of each variant."""
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
    per_seed = []
    if c.cell.target is not None and seeds:
        per_seed = ["", "Per seed (final evaluation; compressed: the `--method l0` report's last stage):", ""]
        per_seed += seed_table(c.cell, seeds)
    return lines + cell_body(c, report_command, per_seed)


def markdown(suite: Suite, cells: list[CellReport], records, missing, commands: dict, seeds, reps) -> str:
    lines = header(suite, records, missing, commands, seeds, reps)
    for c in cells:
        of_cell = [s for s in suites.expand(suite, seeds) if s.cell == c.cell]
        specs = [s for s in of_cell if s.seed == of_cell[0].seed]  # one run per variant, for its command
        flags = " ".join(suites.to_flags(suite.compress_options))
        rows = seed_rows(c.cell, records)
        lines += cell_section(c, specs, commands["report"], f" {flags}" if flags else "", rows)
    if missing:
        lines += ["", "## Missing runs", "", f"Not finished yet (run `{commands['runs']}`):", ""]
        lines += [f"- {s.key}" for s in missing]
    return "\n".join(lines) + "\n"


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
    validate_reps(a.reps)
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
    cells = build(list(suite.cells), records, out, a.reps)
    data = as_json(cells, a.reps)
    for c, entry in zip(cells, data["cells"], strict=True):
        entry.update(target_json(c.cell, seed_rows(c.cell, records)))
    write(
        out,
        markdown(suite, cells, records, missing, commands, seeds, a.reps),
        {"suite": suite.name, **data, "missing": [s.key for s in missing]},
    )
    print(f"report: {out / 'REPORT.md'} ({len(records)} runs, {len(missing)} missing)")
    if a.publish:
        command = f"{commands['report']} --publish"
        description = (
            f"{suite.description} Produced by `{command}` from the runs of "
            f"`python -m benchmark.run_suite {suite.name}`."
        )
        sections = [(c.cell, [r for rs in by_variant(c.cell, records).values() for r in rs]) for c in cells]
        url = publish(f"l0rl benchmark: {suite.name}", description, sections, command)
        print(f"W&B report: {url}")
    return out


if __name__ == "__main__":
    run_cli(main, PROG)
