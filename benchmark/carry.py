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
later step. The carry folder comes from git, so a symlink in it (a run, or a `<run>.partial` left in
the way) is never followed or written through, only regular files are copied, and a run that cannot
be copied is skipped with one line while the others are (exit 1 at the end).
"""

import argparse
import os
import shutil
import sys
from pathlib import Path

from benchmark import suites
from benchmark.layout import ROOT, default_runs_dir
from l0rl.errors import UsageError
from l0rl.runkit import RunError, load_checkpoint, run_cli
from l0rl.runkit.checkpoint import CHECKPOINT_NAME, ENV_STATE_NAME, ENV_STATE_NEXT, LOCK_NAME, RunLock
from l0rl.runkit.files import MiB, read_bytes

PROG = "python -m benchmark.carry"
SKIPPED_NAMES = {LOCK_NAME, ENV_STATE_NAME, ENV_STATE_NEXT, "latest-run"}
"""Never carried (see the module docstring), nor any `*.log` under wandb/."""
MAX_FILE_MB = 95
"""A git host refuses files of 100 MB and more: a larger file is an error, not a silent drop."""


def default_carry_dir(suite: str) -> Path:
    return ROOT / "benchmark" / "carry" / suite


def checked_carry_dir(suite: str) -> Path:
    """The default carry folder, refused when it or a folder above it inside the repository is a
    symlink: it comes from git, and a committed link would send `save` to write (and `restore` to
    read) wherever it points."""
    path = default_carry_dir(suite)
    for part in (path, *path.relative_to(ROOT).parents):
        if (ROOT / part).is_symlink():
            raise UsageError(
                f"{ROOT / part} is a symlink (committed to git?); the carry folder must be a real "
                "directory: remove the link, or name a folder with --carry-dir"
            )
    return path


def step_of(run_dir: Path) -> tuple[bool, int] | None:
    """(finished, global_step) of a run directory's checkpoint; None when it has none readable."""
    try:
        ckpt = load_checkpoint(run_dir)
    except (RunError, OSError):
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


def _remove(path: Path) -> None:
    """Delete `path` itself: a symlink (say a `.partial` one in a folder from git) is unlinked, never
    followed, so nothing outside the carry folder is touched."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def _copy_file(src: Path, dst: Path) -> None:
    """Copy a regular file (refused in one line otherwise) to a new file that cannot be a link."""
    data = read_bytes(src, MAX_FILE_MB * MiB)
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    shutil.copystat(src, dst, follow_symlinks=False)


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
    _remove(tmp)
    tmp.mkdir()
    for p in files:
        target = tmp / p.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)  # below the fresh tmp: made here, not links
        _copy_file(p, target)
    _remove(dst)
    tmp.rename(dst)
    return sum(p.stat().st_size for p in files)


def run_dirs(folder: Path) -> list[Path]:
    """Run directories under `folder` (a copy left `.partial` by an interrupted carry is not one, nor
    a symlink: see linked_runs)."""
    return sorted(
        d
        for d in folder.iterdir()
        if not d.is_symlink()
        and d.is_dir()
        and not d.name.endswith(".partial")
        and (d / CHECKPOINT_NAME).exists()
    )


def linked_runs(folder: Path) -> list[Path]:
    """Symlinks under `folder`: never carried, as what they point at may be anywhere."""
    return sorted(d for d in folder.iterdir() if d.is_symlink() and not d.name.endswith(".partial"))


def describe(state: tuple[bool, int] | None) -> str:
    if state is None:
        return "no readable checkpoint"
    return f"finished at step {state[1]:,}" if state[0] else f"at step {state[1]:,}"


def transfer(src_root: Path, dst_root: Path, verb: str, live: str, say) -> tuple[int, int]:
    """Copy each run of `src_root` to `dst_root` unless the copy there is as far along or further (or
    unreadable: a run directory without a checkpoint may still hold a log someone wants). The side
    named by `live` ("src" or "dst") is a machine's run directory: it is locked for the copy, which
    refuses a run that is training now (its checkpoint may be mid-write). A run that cannot be copied
    (a symlink, a file that is not a regular one or is too big) is skipped with one line and the others
    are copied. Returns (runs copied, runs that could not be)."""
    copied = failed = 0
    for link in linked_runs(src_root):
        say(f"[skip] {link.name}: a symlink in {src_root}, not a run directory; copy the run itself there")
    for src in run_dirs(src_root):
        state, dst = step_of(src), dst_root / src.name
        if state is None:
            say(f"[skip] {src.name}: no readable checkpoint in {src_root}")
            continue
        if dst.is_symlink():
            say(f"[skip] {src.name}: {dst} is a symlink; remove it and run again")
            failed += 1
            continue
        if dst.exists() and ((here := step_of(dst)) is None or here >= state):
            say(f"[skip] {src.name}: {dst_root} already holds it, {describe(here)}")
            continue
        locked = src if live == "src" else dst
        lock = RunLock(locked) if locked.exists() else None  # a run in training stops the carry
        try:  # one run that cannot be copied leaves the others to be
            dst_root.mkdir(parents=True, exist_ok=True)
            size = copy_run(src, dst)
        except (UsageError, OSError) as e:
            say(f"[skip] {src.name}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
            failed += 1
            continue
        finally:
            if lock is not None:
                lock.release()
        say(f"[{verb}] {src.name}: {describe(state)}, {size / 2**20:.1f} MB -> {dst}")
        copied += 1
    return copied, failed


NOTHING_TO_COPY = {
    "save": "{} does not exist: there is nothing to carry (run the suite first)",
    "restore": "{} does not exist: nothing was carried for this suite (see `save`)",
}
NEXT_STEP = {
    "save": "commit {carry} to carry them (git add, git commit)",
    "restore": "run `python -m benchmark.run_suite <suite>` to resume them",
}


def carry_runs(action: str, runs_dir: Path, carry_dir: Path, say=print) -> int:
    """`save` (this machine's runs to the tracked folder) or `restore` (the other way)."""
    src, dst = (runs_dir, carry_dir) if action == "save" else (carry_dir, runs_dir)
    if not src.is_dir():
        raise UsageError(NOTHING_TO_COPY[action].format(src))
    done, failed = transfer(src, dst, f"{action}d", "src" if action == "save" else "dst", say)
    say(f"{done} run(s) {action}d; " + NEXT_STEP[action].format(carry=carry_dir))
    if failed:
        say(f"{failed} run(s) could not be {action}d (the [skip] lines above say why)")
    return 1 if failed else 0


def save(runs_dir: Path, carry_dir: Path, say=print) -> int:
    return carry_runs("save", runs_dir, carry_dir, say)


def restore(runs_dir: Path, carry_dir: Path, say=print) -> int:
    return carry_runs("restore", runs_dir, carry_dir, say)


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
    carry_dir = a.carry_dir or checked_carry_dir(a.suite)  # a folder the user names is theirs to follow
    if a.action == "status":
        return status(carry_dir)
    return carry_runs(a.action, runs_dir, carry_dir)


if __name__ == "__main__":
    sys.exit(run_cli(main, PROG))
