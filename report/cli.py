"""`l0rl report RUN_DIR...`: compare any runs, started by hand or by a suite, from their run directories.

    l0rl report runs/CartPole-v1__ppo_dense__1__* runs/CartPole-v1__ppo_l0__1__*
    l0rl report runs                          # every run in runs/
    l0rl report runs --out my-report --publish

Runs are grouped into cells (environment x algorithm) and variants (sparsity kind x exp name); per
cell a table, the probability of improvement between variants of two seeds or more, and figures.
Writes REPORT.md, report.json and PNGs to --out (default ./l0rl-report), a new or empty folder or an
earlier report's; runs still training are shown at their last checkpoint. --publish also saves a W&B
report of exactly these runs.
"""

import argparse
import os
import sys
from pathlib import Path

from l0rl.errors import UsageError
from l0rl.report import stats
from l0rl.report.collect import Record, find_run_dirs, group_runs, read_run
from l0rl.report.document import as_json, build, cell_body, check_out, header_lines, validate_reps, write
from l0rl.report.publish import publish
from l0rl.report.tables import md_code, md_text
from l0rl.sparsity import method_label

PROG = "l0rl report"
DEFAULT_OUT = "l0rl-report"


def parser(prog: str = PROG) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="run directories, glob patterns or folders of runs")
    p.add_argument(
        "--out",
        type=Path,
        default=Path(DEFAULT_OUT),
        help=f"where REPORT.md and the figures go (default ./{DEFAULT_OUT})",
    )
    p.add_argument(
        "--reps", type=int, default=stats.REPS, help=f"bootstrap repetitions (default {stats.REPS})"
    )
    p.add_argument("--publish", action="store_true", help="also save the comparison as a W&B report")
    return p


def markdown(cells: list, reports: list, records: list[Record], command: str, reps: int) -> str:
    unfinished = sum(r.progress_step is not None for r in records)
    variants = sum(len(c.variants) for c in cells)
    lines = [
        f"# l0rl report: {len(records)} runs, {variants} variants",
        "",
        f"- This report, every table and figure: {md_code(command)}.",
        f"- Runs: {len(records) - unfinished} finished"
        + (
            f", {unfinished} still training, shown at their last checkpoint (curves end there; no final "
            "evaluation or compress yet)."
            if unfinished
            else "."
        ),
        *header_lines(records, reps),
    ]
    for c in reports:
        lines += [
            "",
            f"## {md_text(c.cell.title)}",
            "",
            f"Budget up to {c.cell.total_timesteps:,} env steps. Runs:",
            "",
        ]
        for v in c.cell.variants:
            runs = [r for r in records if r.cell == c.cell and r.variant == v]
            seeds = ", ".join(str(r.seed) for r in runs)
            names = ", ".join(md_code(r.name) for r in runs)
            lines.append(f"- {md_text(v.label)} ({method_label(v.sparsity)}; seeds {seeds}): {names}")
        lines += cell_body(c, command)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None, prog: str = PROG) -> Path:
    argv = sys.argv[1:] if argv is None else argv
    a = parser(prog).parse_args(argv)
    validate_reps(a.reps)
    read = [r for r in (read_run(d) for d in find_run_dirs(a.runs)) if r is not None]
    if not read:
        raise UsageError("none of the runs given can be reported (see the warnings above)")
    cells, records = group_runs(read)
    out = check_out(Path(os.path.abspath(a.out)))
    command = " ".join([prog, *argv])
    reports = build(cells, records, out, a.reps)
    data = {"runs": [str(r.run_dir) for r in records], **as_json(reports, a.reps)}
    write(out, markdown(cells, reports, records, command, a.reps), data)
    print(f"report: {out / 'REPORT.md'} ({len(records)} runs in {len(cells)} cells)")
    if a.publish:
        title = f"l0rl report: {len(records)} runs"
        description = f"Produced by `{command}` from the run directories it names."
        url = publish(
            title, description, [(c.cell, [r for r in records if r.cell == c.cell]) for c in reports], command
        )
        print(f"W&B report: {url}")
    return out


if __name__ == "__main__":
    from l0rl.runkit.cli import run_cli

    run_cli(main, PROG)
