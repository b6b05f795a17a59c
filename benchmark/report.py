"""Report a benchmark suite from its run directories alone: tables, statistics and figures, and on
request the same comparison as a W&B report. The numbers, figures and W&B report are `l0rl report`'s
(l0rl.report); this adds what a suite knows: its runs by spec, each variant's command, the runs still
missing, and the planned baselines (the dense run compressed at the sparsity its L0 run reached, SVD
alone, a final one-shot magnitude step where a variant sets `magnitude_after`).

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
from pathlib import Path

from benchmark import suites
from benchmark.run_suite import ROOT, default_runs_dir, find_run, is_done
from benchmark.suites import RunSpec, Suite
from l0rl.errors import UsageError
from l0rl.report import stats
from l0rl.report.collect import Record, read_run
from l0rl.report.document import as_json, build, by_variant, cell_body, header_lines, validate_reps, write
from l0rl.report.publish import publish
from l0rl.report.tables import CellReport
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
    return lines + cell_body(c, report_command)


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
    write(
        out,
        markdown(suite, cells, records, missing, commands, seeds, a.reps),
        {"suite": suite.name, **as_json(cells, a.reps), "missing": [s.key for s in missing]},
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
