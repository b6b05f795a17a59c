"""Training return, Mario's furthest x and sparsity of runs side by side, per window of env steps, as a markdown table:
what a long run's notes quote while it trains (the report's curves are figures, this is their numbers).

    python -m benchmark.windows benchmark/runs/mario/*dense* benchmark/runs/mario/*ppo_l0__* --every 20000

Each row is a window (step - every, step]: the mean return of the training episodes that ended in it
(their count in brackets), for Mario their mean and best furthest x, and the sparsity last logged at or before its end, for every run that has
reached the window's end.
"""

import argparse
import math
from pathlib import Path

from l0rl.errors import UsageError
from l0rl.runkit import read_metrics
from l0rl.runkit.cli import run_cli

RETURN, X, SPARSITY = "charts/episodic_return", "charts/x_pos", ("l0/sparsity", "gmp/sparsity")


def _in(rows: list[dict], key: str, end: int, every: int) -> list[float]:
    return [r[key] for r in rows if key in r and end - every < r["global_step"] <= end]


def window_stats(rows: list[dict], end: int, every: int) -> tuple[float | None, int, float | None, str]:
    """(mean training return, episodes, sparsity, Mario's "x mean (best)" or "") of one run's record
    for the window (end - every, end]."""
    returns, xs = _in(rows, RETURN, end, every), _in(rows, X, end, every)
    logged = [r[k] for r in rows if r["global_step"] <= end for k in SPARSITY if r.get(k) is not None]
    mean = math.fsum(returns) / len(returns) if returns else None
    x = f" x {math.fsum(xs) / len(xs):,.0f} ({max(xs):,.0f})" if xs else ""
    return mean, len(returns), logged[-1] if logged else None, x


def table(runs: dict[str, list[dict]], every: int, start: int = 0) -> list[str]:
    """The markdown table: one column per run (its name), one row per window ending in (start, last step]."""
    last = max((rows[-1]["global_step"] for rows in runs.values() if rows), default=0)
    lines = ["| step | " + " | ".join(runs) + " |", "|---" * (len(runs) + 1) + "|"]
    for end in range((start // every + 1) * every, last + 1, every):
        cells = []
        for rows in runs.values():
            if not rows or rows[-1]["global_step"] < end:  # not there yet: no partial window
                cells.append("-")
                continue
            mean, n, sparsity, x = window_stats(rows, end, every)
            cell = "-" if mean is None else f"{mean:.0f} ({n}){x}"
            cells.append(cell + ("" if sparsity is None else f" / {sparsity * 100:.1f} %"))
        lines.append(f"| {end:,} | " + " | ".join(cells) + " |")
    return lines


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmark.windows", description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="run directories (each with its metrics.jsonl)")
    p.add_argument("--every", type=int, default=20_000, help="window length in env steps (default 20,000)")
    p.add_argument("--from", dest="start", type=int, default=0, help="first window ends after this step")
    return p


def main(argv: list[str] | None = None) -> list[str]:
    a = parser().parse_args(argv)
    if a.every < 1 or a.start < 0:
        raise UsageError(f"--every must be >= 1 and --from >= 0, got {a.every} and {a.start}")
    runs = {}
    for path in map(Path, a.runs):
        if not (path / "metrics.jsonl").is_file():
            raise UsageError(f"{path}: no metrics.jsonl; pass run directories (runs/<run_name>)")
        parts = path.name.split(
            "__"
        )  # <env_id>__<exp_name>__<seed>__<time>: the exp_name and seed tell runs apart
        runs[f"{parts[1]} (seed {parts[2]})" if len(parts) == 4 else path.name] = read_metrics(path)
    lines = table(runs, a.every, a.start)
    print("\n".join(lines))
    return lines


if __name__ == "__main__":
    run_cli(main, "benchmark.windows")
