"""Where a suite's runs live and what a run directory of a suite has finished: the repository root,
the runs and log folders, command lines as a user types them, and reading a run's checkpoint and
summary. The bottom of benchmark/: it imports no other benchmark module but suites.

Runs land in benchmark/runs/<suite>/ (git-ignored) unless --runs-dir says otherwise, named
`<env_id>__<exp_name>__<seed>__<time>` (RunSpec.key is the part before the time); each task's output
goes to <runs dir>/_logs/.
"""

import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from benchmark.suites import RunSpec
from l0rl.runkit import RunError, load_checkpoint
from l0rl.runkit.tracker import read_summary

ROOT = Path(__file__).resolve().parents[1]
LOG_DIR = "_logs"
SPARSITY_RANGE = (0.01, 0.99)
"""--gmp-target and compress --sparsity must lie in (0, 1): an L0 run that reached 0 or 1 is clipped."""


def default_runs_dir(suite: str) -> Path:
    return ROOT / "benchmark" / "runs" / suite


def command_line(argv: list[str]) -> str:
    """argv as a user would type it from the repository root."""
    parts = ["python" if a == sys.executable else a for a in argv]
    return " ".join(os.path.relpath(p, ROOT) if p.startswith(str(ROOT) + os.sep) else p for p in parts)


@dataclass(frozen=True)
class Found:
    """A run directory of a spec and how far its checkpoint got."""

    run_dir: Path
    finished: bool
    global_step: int
    total_timesteps: int


def find_run(runs_dir: Path, spec: RunSpec) -> Found | None:
    """The most advanced run directory of `spec` (finished first, then the furthest step); None when
    none has a readable checkpoint (a run killed before its first checkpoint left nothing to resume)."""
    best = None
    for d in sorted(Path(runs_dir).glob(f"{spec.key}__*")):
        try:
            ckpt = load_checkpoint(d)
        except RunError:
            continue
        found = Found(d, bool(ckpt["finished"]), ckpt["global_step"], ckpt["args"]["total_timesteps"])
        if best is None or (found.finished, found.global_step) > (best.finished, best.global_step):
            best = found
    return best


def is_done(found: Found | None, spec: RunSpec) -> bool:
    return found is not None and found.finished and found.total_timesteps >= spec.cell.total_timesteps


def finished_run(runs_dir: Path, spec: RunSpec) -> Path | None:
    """The run directory of `spec` that has finished the suite's budget, if any."""
    found = find_run(runs_dir, spec)
    return found.run_dir if is_done(found, spec) else None


def reached_sparsity(run_dir: Path) -> float:
    """The policy sparsity the run ended with (summary.json), clipped into SPARSITY_RANGE and rounded
    so the command line that carries it stays short."""
    sparsity = read_summary(run_dir).get("sparsity")  # read as every reader of a run's files does
    if isinstance(sparsity, bool) or not isinstance(sparsity, int | float) or not math.isfinite(sparsity):
        raise RunError(f"{run_dir}/summary.json has no sparsity; was the run's final evaluation skipped?")
    low, high = SPARSITY_RANGE
    return round(min(max(float(sparsity), low), high), 4)
