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
from benchmark.baselines import baselines, merge_rows
from benchmark.layout import ROOT, default_runs_dir, find_run, is_done
from benchmark.suites import RunSpec, Suite
from l0rl.envs.registry import family
from l0rl.errors import UsageError
from l0rl.report import stats
from l0rl.report.collect import Record, is_number, read_json, read_run
from l0rl.report.document import as_json, build, by_variant, cell_body, header_lines, validate_reps, write
from l0rl.report.publish import publish
from l0rl.report.tables import CellReport, md_text, num, pct
from l0rl.runkit import run_cli
from l0rl.runkit.args import EVAL_DEFAULTS
from l0rl.runkit.evaluate import EVAL_SEED_OFFSET

PROG = "python -m benchmark.report"
BASELINES_NAME = "baselines.json"
"""Baselines measured beforehand (`python -m benchmark.baselines ENV --json OUT/baselines.json`), read
for the envs whose episodes are too slow to play while reporting (Mario: minutes per policy)."""
MEASURED_ONLY = ("mario",)
BASELINE_KEYS = ("path", "episodes", "first_seed", "return_mean", "return_sem", "x_pos", "flags")


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
    x_pos: float | None = None
    """Mario: the mean furthest x of the final evaluation's episodes"""


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
                    x_pos=r.summary.get("eval/x_pos"),
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
    x = any(r.x_pos is not None for r in rows)
    lines += [
        f"| variant | seed | {score} | {'furthest x | ' if x else ''}sparsity | compressed params | "
        f"compressed bytes | compressed {score} | meets target |",
        "|---" * (9 if x else 8) + "|",
    ]
    for r in rows:
        met = "-" if r.met is None else ("yes" if r.met else "no")
        lines.append(
            f"| {r.variant} | {r.seed} | {fmt(r.score)} | {num(r.x_pos) + ' | ' if x else ''}{pct(r.sparsity)} | "
            f"{num(r.params)} | {num(r.bytes)} | {fmt(r.compressed_score)} | {met} |"
        )
    return lines


def cell_baselines(cell: suites.Cell, records: list[Record], out: Path) -> tuple[list[dict], str]:
    """The trivial baselines of a cell (random, and scripted where one exists) on the evaluation seeds
    of its finished runs (each run's seed + 10,000, the cell's episodes), and where they come from.
    Envs in MEASURED_ONLY are read from OUT/baselines.json."""
    env_id, fam = cell.env_id, family(cell.env_id)
    if fam in MEASURED_ONLY:
        path = out / BASELINES_NAME
        saved = read_json(path)
        rows = [r for r in saved if baseline_row(r, env_id)] if isinstance(saved, list) else []
        if not rows:
            return [], f"not measured yet: `python -m benchmark.baselines {env_id} --json {path}`"
        return rows, f"from `{BASELINES_NAME}` (episode seeds from {rows[0]['first_seed']:,})"
    seeds = sorted({r.seed for r in records if r.cell == cell and r.progress_step is None})
    if not seeds:
        return [], "no finished run yet"
    episodes = int(cell.args.get("eval_episodes", 10))
    max_steps = cell.args.get("eval_max_steps", EVAL_DEFAULTS.get(fam, {}).get("eval_max_steps"))
    by_policy: dict[str, list[dict]] = {}
    try:
        for seed in seeds:
            for row in baselines(env_id, episodes, seed + EVAL_SEED_OFFSET, max_steps):
                by_policy.setdefault(row["path"], []).append(row)
    except UsageError as e:  # continuous actions
        return [], str(e)
    where = (
        f"played now on the runs' evaluation episodes: {episodes} per run seed ({', '.join(map(str, seeds))}), "
        "from seed + 10,000"
    )
    return [merge_rows(rows) for rows in by_policy.values()], where


def baseline_row(row: object, env_id: str) -> bool:
    """Whether a baselines.json entry is one of env_id's with the figures the table shows."""
    if not isinstance(row, dict) or row.get("env_id") != env_id or not isinstance(row.get("path"), str):
        return False
    lists = [row.get(k) or [] for k in ("x_pos", "flags", "successes")]
    return (
        is_number(row.get("return_mean"))
        and type(row.get("episodes")) is int
        and type(row.get("first_seed")) is int
        and (row.get("return_sem") is None or is_number(row.get("return_sem")))
        and all(isinstance(v, list) and all(is_number(x) for x in v) for v in lists)
    )


def baseline_table(rows: list[dict], where: str) -> list[str]:
    """A cell's trivial baselines as markdown: a trained figure means something only well above these."""
    if not rows:
        return ["", f"Trivial baselines: {where}."]
    lines = ["", f"Trivial baselines, {where}; a trained return means something only well above them:", ""]
    x = any(r.get("x_pos") for r in rows)
    goal = any(r.get("successes") for r in rows)
    lines += [
        f"| policy | episodes | return, mean +- sem{' | furthest x, mean (best) | flags' if x else ''}"
        + (" | success rate" if goal else "")
        + " |",
        "|---" * (3 + 2 * x + goal) + "|",
    ]
    for r in rows:
        sem = "" if r.get("return_sem") is None else f" +- {r['return_sem']:.1f}"
        row = f"| {md_text(r['path'])} | {r['episodes']} | {r['return_mean']:.1f}{sem}"
        if x:
            xs = r.get("x_pos") or []
            best = f"{sum(xs) / len(xs):,.0f} ({max(xs):,.0f})" if xs else "-"
            row += f" | {best} | {sum(r.get('flags') or [])}"
        if goal:
            successes = r.get("successes") or []
            row += f" | {sum(successes) / len(successes):.2f}" if successes else " | -"
        lines.append(row + " |")
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
    trivial: list[str] = (),
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
    return lines + cell_body(c, report_command, [*trivial, *per_seed])


def markdown(
    suite: Suite, cells: list[CellReport], records, missing, commands: dict, seeds, reps, trivial: list
) -> str:
    lines = header(suite, records, missing, commands, seeds, reps)
    for c, (rows_b, where) in zip(cells, trivial, strict=True):
        of_cell = [s for s in suites.expand(suite, seeds) if s.cell == c.cell]
        specs = [s for s in of_cell if s.seed == of_cell[0].seed]  # one run per variant, for its command
        flags = " ".join(suites.to_flags(suite.compress_options))
        rows = seed_rows(c.cell, records)
        baseline = baseline_table(rows_b, where)
        lines += cell_section(c, specs, commands["report"], f" {flags}" if flags else "", rows, baseline)
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
    trivial = [cell_baselines(c.cell, records, out) for c in cells]
    for c, entry, (rows_b, where) in zip(cells, data["cells"], trivial, strict=True):
        entry.update(target_json(c.cell, seed_rows(c.cell, records)))
        entry["baselines"] = {"source": where, "rows": [{k: r.get(k) for k in BASELINE_KEYS} for r in rows_b]}
    write(
        out,
        markdown(suite, cells, records, missing, commands, seeds, a.reps, trivial),
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
