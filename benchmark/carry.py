"""Carry a suite's runs from one machine to the next through git.

    python -m benchmark.carry save mario       # stop the suite first; then commit benchmark/carry/mario
    python -m benchmark.carry restore mario    # on the next machine, then run the suite again to resume
    python -m benchmark.carry status mario     # where each carried run stands

A suite that takes longer than one machine lives (the `mario` suite: ~3 h per run on 2 cores) cannot
rely on benchmark/runs/, which is git-ignored and starts empty on a new machine. `save` copies every
run directory of the suite that holds a checkpoint into benchmark/carry/<suite>/<run name>/ (a
tracked folder), and `restore` copies them back, so that `python -m benchmark.run_suite <suite>`
finds them and resumes (`--resume`) from the carried step.

What is carried: the checkpoint (weights, gates, optimizers, RNGs, history; loaded with
weights_only=True like any checkpoint), the local metrics record, the runner's benchmark.json, compress
outputs, and the W&B offline run files (so `wandb sync` later uploads the whole run). What is not:
the lock, W&B's debug logs and `latest-run` link, and `env_state.pkl`: a pickle of the vector env
that only exact resume reads; loading a pickle runs code, so a file that arrived through git is never
one. Without it a resumed run starts fresh episodes, as the asynchronous Mario envs do anyway.

Neither direction ever replaces a more advanced run: `save` skips a run whose carried copy is at the
same or a later step, and `restore` skips a run already present on this machine at the same or a
later step.
"""

import argparse
import shutil
import sys
from pathlib import Path

from benchmark import suites
from benchmark.run_suite import default_runs_dir
from l0rl.errors import UsageError
from l0rl.runkit import RunError, load_checkpoint, run_cli
from l0rl.runkit.checkpoint import CHECKPOINT_NAME, ENV_STATE_NAME, LOCK_NAME, RunLock

ROOT = Path(__file__).resolve().parents[1]
PROG = "python -m benchmark.carry"
SKIPPED_NAMES = {LOCK_NAME, ENV_STATE_NAME, "latest-run"}
"""Never carried (see the module docstring), nor any `*.log` under wandb/."""
MAX_FILE_MB = 95
"""A git host refuses files of 100 MB and more: a larger file is an error, not a silent drop."""


def default_carry_dir(suite: str) -> Path:
    return ROOT / "benchmark" / "carry" / suite


def step_of(run_dir: Path) -> tuple[bool, int] | None:
    """(finished, global_step) of a run directory's checkpoint; None when it has none readable."""
    try:
        ckpt = load_checkpoint(run_dir)
    except RunError:
        return None
    return bool(ckpt["finished"]), int(ckpt["global_step"])


def carried_files(run_dir: Path) -> list[Path]:
    files = []
    for p in sorted(run_dir.rglob("*")):
        rel = p.relative_to(run_dir)
        if p.is_symlink() or not p.is_file() or any(part in SKIPPED_NAMES for part in rel.parts):
            continue
        if p.suffix == ".log" and rel.parts[0] == "wandb":
            continue  # W&B's per-run debug logs: large and of no use to a resumed run
        files.append(p)
    return files


def copy_run(src: Path, dst: Path) -> int:
    """Copy `src`'s carried files to a fresh `dst` (through a temporary folder, so an interrupted copy
    never leaves a half run where a whole one was); returns the bytes copied."""
    files = carried_files(src)
    too_big = [p for p in files if p.stat().st_size > MAX_FILE_MB * 2**20]
    if too_big:
        raise UsageError(
            f"{too_big[0]} is over {MAX_FILE_MB} MB, more than a git host accepts; "
            "carry this run another way (copy its run directory)"
        )
    tmp = dst.with_name(dst.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    for p in files:
        target = tmp / p.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(p, target)
    shutil.rmtree(dst, ignore_errors=True)
    tmp.rename(dst)
    return sum(p.stat().st_size for p in files)


def run_dirs(folder: Path) -> list[Path]:
    """Run directories under `folder` (a copy left `.partial` by an interrupted carry is not one)."""
    return sorted(
        d
        for d in folder.iterdir()
        if d.is_dir() and not d.name.endswith(".partial") and (d / CHECKPOINT_NAME).exists()
    )


def describe(state: tuple[bool, int] | None) -> str:
    if state is None:
        return "no readable checkpoint"
    return f"finished at step {state[1]:,}" if state[0] else f"at step {state[1]:,}"


def save(runs_dir: Path, carry_dir: Path, say=print) -> int:
    if not runs_dir.is_dir():
        raise UsageError(f"{runs_dir} does not exist: there is nothing to carry (run the suite first)")
    saved = 0
    for run_dir in run_dirs(runs_dir):
        state = step_of(run_dir)
        if state is None:
            say(f"[skip]  {run_dir.name}: no readable checkpoint")
            continue
        dst = carry_dir / run_dir.name
        old = step_of(dst) if dst.exists() else None
        if old is not None and old >= state:
            say(f"[skip]  {run_dir.name}: the carried copy is already {describe(old)}")
            continue
        lock = RunLock(run_dir)  # refuses a run that is training now: its checkpoint may be mid-write
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            size = copy_run(run_dir, dst)
        finally:
            lock.release()
        say(f"[saved] {run_dir.name}: {describe(state)}, {size / 2**20:.1f} MB -> {dst}")
        saved += 1
    say(f"{saved} run(s) saved; commit {carry_dir} to carry them (git add, git commit)")
    return 0


def restore(runs_dir: Path, carry_dir: Path, say=print) -> int:
    if not carry_dir.is_dir():
        raise UsageError(f"{carry_dir} does not exist: nothing was carried for this suite (see `save`)")
    restored = 0
    for carried in run_dirs(carry_dir):
        state = step_of(carried)
        if state is None:
            raise RunError(f"{carried} holds no readable checkpoint; remove it from the carry folder")
        dst = runs_dir / carried.name
        here = step_of(dst) if dst.exists() else None
        if dst.exists() and (here is None or here >= state):
            # a run directory without a checkpoint may still hold a log someone wants: never replaced
            say(f"[skip]     {carried.name}: already here, {describe(here)}")
            continue
        runs_dir.mkdir(parents=True, exist_ok=True)
        if dst.exists():
            RunLock(dst).release()  # refuses a run that is training now
        copy_run(carried, dst)
        say(f"[restored] {carried.name}: {describe(state)} -> {dst}")
        restored += 1
    say(f"{restored} run(s) restored; run `python -m benchmark.run_suite <suite>` to resume them")
    return 0


def status(carry_dir: Path, say=print) -> int:
    if not carry_dir.is_dir():
        say(f"nothing carried ({carry_dir} does not exist)")
        return 0
    for carried in run_dirs(carry_dir):
        say(f"{carried.name}: {describe(step_of(carried))}")
    return 0


def unrestored(runs_dir: Path, carry_dir: Path) -> list[str]:
    """Carried runs that are further along than their copy in `runs_dir` (or have none there): what
    the suite would otherwise retrain from scratch."""
    if not carry_dir.is_dir():
        return []
    behind = []
    for carried in run_dirs(carry_dir):
        here = step_of(runs_dir / carried.name) if (runs_dir / carried.name).exists() else None
        state = step_of(carried)
        if state is not None and (here is None or here < state):
            behind.append(f"{carried.name} ({describe(state)})")
    return behind


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("action", choices=("save", "restore", "status"))
    p.add_argument("suite", help=f"one of: {', '.join(suites.SUITES)}")
    p.add_argument(
        "--runs-dir", type=Path, help="the suite's run directories (default benchmark/runs/<suite>)"
    )
    p.add_argument("--carry-dir", type=Path, help="the tracked copy (default benchmark/carry/<suite>)")
    return p


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    suites.get(a.suite)  # an unknown suite is a one-line error naming the known ones
    runs_dir = a.runs_dir or default_runs_dir(a.suite)
    carry_dir = a.carry_dir or default_carry_dir(a.suite)
    if a.action == "save":
        return save(runs_dir, carry_dir)
    if a.action == "restore":
        return restore(runs_dir, carry_dir)
    return status(carry_dir)


if __name__ == "__main__":
    sys.exit(run_cli(main, PROG))
