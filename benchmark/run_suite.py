"""Train and compress a benchmark suite (benchmark/suites.py) in a local pool of processes.

    python -m benchmark.run_suite quick                  # every run of the suite, then compress them
    python -m benchmark.run_suite quick --workers 2      # processes at once (default: CPU cores)
    python -m benchmark.run_suite quick --seeds 1 2      # fewer seeds
    python -m benchmark.run_suite mario --variants dense l0   # fewer variants
    python -m benchmark.run_suite defaults --cells CartPole-v1/dqn_l0   # fewer cells (<env_id>/<algo>)
    python -m benchmark.run_suite quick --dry-run        # say what would run, start nothing
    python -m benchmark.run_suite paper --backend ray --address HEAD:6379 --runs-dir /shared/runs
                                                         # on a Ray cluster: benchmark/ray_backend.py
    python -m benchmark.report quick                     # then: tables, statistics and figures

Each training run is a subprocess `python algos/<algo>.py ...` with OMP_NUM_THREADS=1 (one thread per
process is fastest for these small networks, and N processes on N cores never oversubscribe), W&B
grouped per variant (`<suite>__<env_id>__<exp_name>`). Runs land in benchmark/runs/<suite>/ (git-ignored), named
`<env_id>__<exp_name>__<seed>__<time>`; each subprocess's output goes to <runs dir>/_logs/.

Invoking the suite again skips finished runs, resumes interrupted ones from their last checkpoint
(`--resume`), and starts the rest; every finished run is then compressed (l0 for every run, and for
a dense run also magnitude at its L0 partner's sparsity and svd). Every failure is listed at the end
with its log, and the exit code is 1 when any task failed.

This module is the command only: where runs live is benchmark/layout.py, the task graph
benchmark/tasks.py, the local pool benchmark/pool.py, the Ray pool benchmark/ray_backend.py.
"""

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from benchmark import carry, suites
from benchmark.layout import LOG_DIR, command_line, default_runs_dir, finished_run
from benchmark.pool import Pool
from benchmark.ray_backend import RayPool
from benchmark.suites import RunSpec
from benchmark.tasks import Inline, Outcome, Runner, Task, threads_env, train_name
from l0rl.errors import UsageError
from l0rl.runkit import WANDB_MODES, run_cli

PROG = "python -m benchmark.run_suite"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Train and compress a benchmark suite (benchmark/suites.py); skips finished "
        "runs and resumes interrupted ones.",
    )
    p.add_argument("suite", help=f"one of {', '.join(suites.SUITES)}")
    p.add_argument(
        "--workers",
        type=int,
        help="tasks at once (default: CPU cores; with --backend ray, what the cluster's resources allow)",
    )
    p.add_argument("--seeds", type=int, nargs="+", help="these seeds instead of the suite's")
    p.add_argument(
        "--variants",
        nargs="+",
        help="only these variants (e.g. dense l0: the mario suite without GMP); a variant that takes "
        "its target from another needs that one too",
    )
    p.add_argument(
        "--cells",
        nargs="+",
        help="only these cells, as <env_id>/<algo> (e.g. CartPole-v1/dqn_l0: the defaults suite without its "
        "5M-step LunarLander runs)",
    )
    p.add_argument(
        "--runs-dir", type=Path, help="where the run directories go (default benchmark/runs/SUITE)"
    )
    p.add_argument(
        "--wandb-mode",
        choices=WANDB_MODES,
        default="auto",
        help="W&B mode of every run (default auto: online with an API key, else offline)",
    )
    p.add_argument(
        "--episodes", type=int, help="evaluation episodes per compress stage (default: the suite's)"
    )
    p.add_argument("--dry-run", action="store_true", help="list the tasks and their commands; start nothing")
    p.add_argument(
        "--backend",
        choices=("local", "ray"),
        default="local",
        help="local: a pool of processes here (default); ray: a Ray cluster (benchmark/ray_backend.py)",
    )
    p.add_argument(
        "--address", help="--backend ray: the Ray head, HEAD:6379 (default: a Ray on this machine only)"
    )
    p.add_argument(
        "--retries", type=int, help="--backend ray: attempts after a failed or killed one (default 2)"
    )
    return p


def _only(
    specs: list[RunSpec], wanted: list[str] | None, key: Callable[[RunSpec], str], flag: str, what: str
) -> list[RunSpec]:
    """The runs whose key(spec) is in `wanted` (all when None); refuses a name not in the suite."""
    if wanted is None:
        return specs
    known = list(dict.fromkeys(key(s) for s in specs))
    unknown = [w for w in wanted if w not in known]
    if unknown:
        raise UsageError(f"{flag}: no {what} {unknown[0]!r} in this suite; it has {', '.join(known)}")
    return [s for s in specs if key(s) in wanted]


def only_cells(specs: list[RunSpec], refs: list[str] | None) -> list[RunSpec]:
    """The runs of the cells `refs` (<env_id>/<algo>; all when None); refuses a cell not in the suite."""
    return _only(specs, refs, lambda s: s.cell.ref, "--cells", "cell")


def only_variants(specs: list[RunSpec], names: list[str] | None) -> list[RunSpec]:
    """The runs of the variants `names` (all when None); refuses an unknown name, and a variant whose
    GMP target or matched sparsity comes from a variant left out (its tasks would wait forever)."""
    kept = _only(specs, names, lambda s: s.variant.name, "--variants", "variant")
    if names is None:
        return kept
    for s in kept:
        for source in (s.gmp_source, s.magnitude_source):
            if source is not None and source.variant.name not in names:
                raise UsageError(
                    f"--variants: {s.variant.name} takes its sparsity from {source.variant.name}; "
                    f"add {source.variant.name} to --variants"
                )
    return kept


def dry_run(runner: Runner, tasks: list[Task], say: Callable[[str], None] = print) -> None:
    """What each task would do now; a task that waits for another says what it waits for."""
    done = {train_name(s) for s in runner.specs if finished_run(runner.runs_dir, s)}
    for t in tasks:
        waiting = [d for d in t.deps if d not in done]
        if waiting:
            say(f"{t.name}: after {', '.join(waiting)}")
            continue
        try:
            what, work = t.command()
        except (UsageError, OSError, ValueError) as e:
            say(f"{t.name}: cannot start: {e}")
            continue
        command = work.command if isinstance(work, Inline) else command_line(work) if work else ""
        say(f"{t.name}: {what}" + (f"\n    {command}" if command else ""))


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    suite = suites.get(a.suite)
    if a.workers is not None and a.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {a.workers}")
    if a.episodes is not None and a.episodes < 1:
        raise UsageError(f"--episodes must be >= 1, got {a.episodes}")
    if a.backend != "ray" and (a.address is not None or a.retries is not None):
        raise UsageError("--address and --retries go with --backend ray")
    runs_dir = (a.runs_dir or default_runs_dir(suite.name)).resolve()
    if runs_dir.exists() and not runs_dir.is_dir():
        raise UsageError(f"--runs-dir {runs_dir} is a file; pass a directory")
    specs = only_variants(only_cells(suites.expand(suite, a.seeds), a.cells), a.variants)
    runner = Runner(suite, specs, runs_dir, a.wandb_mode, a.episodes or suite.compress_episodes)
    if a.runs_dir is None:
        behind = carry.unrestored(runs_dir, carry.default_carry_dir(suite.name))
        if behind:
            raise UsageError(
                f"{carry.default_carry_dir(suite.name)} holds {behind[0]}, further than this machine's copy"
                f"{f' and {len(behind) - 1} more' if len(behind) > 1 else ''}; run `python -m benchmark.carry"
                f" restore {suite.name}` first to resume it, or move the carried run away to start over"
            )
    tasks = runner.tasks()
    workers = a.workers or os.cpu_count() or 1
    on = f"{workers} workers" if a.backend == "local" else f"on Ray at {a.address or 'this machine'}"
    print(f"suite {suite.name}: {len(runner.specs)} runs, {len(tasks)} tasks, {on}, in {runs_dir}")
    if suite.estimate:
        print(f"expected: {suite.estimate} (all of it; finished work is skipped)", flush=True)
    if a.dry_run:
        dry_run(runner, tasks)
        return 0
    runs_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **threads_env(1)}  # a cell may ask for more (Cell.threads)

    def say(line: str) -> None:
        print(line, flush=True)

    if a.backend == "ray":
        pool = RayPool.for_runner(runner, a, env, say)
    else:
        pool = Pool(workers, runs_dir / LOG_DIR, env, say=say)
    start = time.time()
    try:
        outcomes = pool.run(tasks)
    except KeyboardInterrupt:
        print(f"interrupted; run `{PROG} {a.suite}` again to resume", file=sys.stderr)
        return 130
    return summarize(outcomes, a, time.time() - start)


def summarize(outcomes: list[Outcome], a: argparse.Namespace, seconds: float) -> int:
    """The closing lines: counts, every failure with its log, the next command; the exit code."""
    counts = {s: sum(o.status == s for o in outcomes) for s in ("ran", "skipped", "failed")}
    print(
        f"suite {a.suite}: {counts['ran']} ran, {counts['skipped']} done already, "
        f"{counts['failed']} failed, in {seconds / 60:.1f} min"
    )
    failed = [o for o in outcomes if o.status == "failed"]
    if failed:
        print(f"{len(failed)} failed:", file=sys.stderr)
        for o in failed:
            print(f"  {o.task}: {o.detail}" + (f" (log: {o.log})" if o.log else ""), file=sys.stderr)
        print("fix the cause and run the same command again: finished work is kept", file=sys.stderr)
        return 1
    print(f"next: python -m benchmark.report {a.suite}" + (f" --runs-dir {a.runs_dir}" if a.runs_dir else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main, PROG))
