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
(`--resume`), and starts the rest. Every finished run is then compressed (what
`python -m l0rl.compress RUN --method M` does, called in this process: a second of work would
otherwise pay two seconds of start-up): method l0 for every run (it hardens whatever the run holds:
gates, GMP masks or nothing), and for a dense run also `magnitude` at the sparsity the matching L0
run reached (matched sparsity) and `svd`. A GMP run whose target is the sparsity an L0 run reached
starts once that L0 run has finished. Every failure is listed at the end with its log, and the exit
code is 1 when any task failed.
"""

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from benchmark import suites
from benchmark.suites import RunSpec, Suite
from l0rl.compress import compress_run
from l0rl.compress.pipeline import output_names
from l0rl.compress.report import format_report
from l0rl.errors import UsageError
from l0rl.report.collect import BENCH_NAME, hardware
from l0rl.runkit import RESUMABLE, WANDB_MODES, RunError, atomic_write_json, load_checkpoint, run_cli
from l0rl.runkit.tracker import variant_group

ROOT = Path(__file__).resolve().parents[1]
PROG = "python -m benchmark.run_suite"
LOG_DIR = "_logs"
POLL_S = 0.5
SPARSITY_RANGE = (0.01, 0.99)
"""--gmp-target and compress --sparsity must lie in (0, 1): an L0 run that reached 0 or 1 is clipped."""


def default_runs_dir(suite: str) -> Path:
    return ROOT / "benchmark" / "runs" / suite


def command_line(argv: list[str]) -> str:
    """argv as a user would type it from the repository root."""
    parts = ["python" if a == sys.executable else a for a in argv]
    return " ".join(os.path.relpath(p, ROOT) if p.startswith(str(ROOT) + os.sep) else p for p in parts)


# --- runs on disk -------------------------------------------------------------------------------


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
    summary = json.loads((Path(run_dir) / "summary.json").read_text())
    if summary.get("sparsity") is None:
        raise RunError(f"{run_dir}/summary.json has no sparsity; was the run's final evaluation skipped?")
    low, high = SPARSITY_RANGE
    return round(min(max(float(summary["sparsity"]), low), high), 4)


NOT_COMPRESS_OPTIONS = ("method", "wandb_mode", "episodes")
"""keys of a compress call that its report keeps elsewhere than under "options" (or not at all)"""


def same_compression(old: dict, options: dict, global_step: int) -> bool:
    """Whether a compress report answers these options: the run's current checkpoint step, the same
    episode count and every option asked for (a changed suite or --episodes compresses again). An
    option asked for that the report does not record (written before compress had it) is a change."""
    if old["global_step"] != global_step or old["episodes"] != options["episodes"]:
        return False
    for name, value in options.items():
        if name in NOT_COMPRESS_OPTIONS or value is None:
            continue
        if name not in old["options"]:
            return False
        if isinstance(value, float) and old["options"][name] is not None:
            if abs(old["options"][name] - value) > 1e-9:
                return False
        elif old["options"][name] != value:
            return False
    return True


# --- tasks --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Inline:
    """Work done in this process: `call()` returns the text for the log."""

    command: str
    """the equivalent command line, for the log"""
    call: Callable[[], str]


Work = list[str] | Inline | None
"""A subprocess's argv, work done in this process, or None when it is done already."""


@dataclass
class Task:
    """One unit of the suite: training a run, or compressing it with one method."""

    name: str
    deps: list[str]
    command: Callable[[], tuple[str, Work]]
    """-> (what happens, the work). Called once the deps are done, so it can read their results."""
    priority: int
    after: Callable[[float, list[str]], None] | None = None
    """called with (wall seconds, argv) after the subprocess succeeded"""
    env: dict[str, str] = field(default_factory=dict)
    """environment variables of this task's subprocess, over the pool's (OMP_NUM_THREADS of its cell)"""


@dataclass
class Outcome:
    task: str
    status: str  # "ran", "skipped" (done already) or "failed"
    detail: str = ""
    log: Path | None = None
    seconds: float = 0.0


@dataclass
class Runner:
    """The suite's tasks and the command of each (see the module docstring)."""

    suite: Suite
    specs: list[RunSpec]
    runs_dir: Path
    wandb_mode: str
    episodes: int

    def tasks(self) -> list[Task]:
        sources = {s.key for spec in self.specs for s in (spec.gmp_source, spec.magnitude_source) if s}
        out = []
        for spec in self.specs:
            train = train_name(spec)
            out.append(
                Task(
                    train,
                    [train_name(spec.gmp_source)] if spec.gmp_source else [],
                    lambda spec=spec: self.train_command(spec),
                    priority=1 if spec.key in sources else 2,  # what others wait for goes first
                    after=lambda seconds, argv, spec=spec: self.record(spec, seconds, argv),
                    env=threads_env(spec.cell.threads),
                )
            )
            methods = ["l0"] + (["magnitude", "svd"] if spec.magnitude_source else [])
            methods += ["magnitude"] if spec.variant.magnitude_after is not None else []
            for method in methods:
                source = spec.magnitude_source if method == "magnitude" else None
                deps = [train] + ([train_name(source)] if source else [])
                out.append(
                    Task(
                        f"compress-{method} {spec.key}",
                        deps,
                        lambda spec=spec, method=method: self.compress_command(spec, method),
                        priority=0,  # short, and the report can use them as soon as they exist
                    )
                )
        return out

    def train_command(self, spec: RunSpec) -> tuple[str, Work]:
        found = find_run(self.runs_dir, spec)
        if is_done(found, spec):
            return f"finished: {found.run_dir}", None
        script = [sys.executable, str(ROOT / "algos" / f"{spec.cell.algo}.py")]
        process = ["--wandb-mode", self.wandb_mode, "--no-progress"]
        if found is not None:  # interrupted, or finished with a smaller budget: continue it
            resumable = {k: v for k, v in spec.cell.args.items() if k in RESUMABLE}
            flags = suites.to_flags({"total_timesteps": spec.cell.total_timesteps, **resumable})
            return (
                f"resume at step {found.global_step:,}: {found.run_dir}",
                [*script, "--resume", str(found.run_dir), *flags, *process],
            )
        gmp_target = reached_sparsity(self.finished(spec.gmp_source)) if spec.gmp_source else None
        group = f"{self.suite.name}__{variant_group(spec.cell.env_id, spec.exp_name)}"  # one per variant
        where = ["--runs-dir", str(self.runs_dir), "--wandb-group", group]
        return "new run", [*script, *spec.train_args(gmp_target), *where, *process]

    def compress_command(self, spec: RunSpec, method: str) -> tuple[str, Work]:
        run_dir = self.finished(spec)
        sparsity = self.magnitude_sparsity(spec) if method == "magnitude" else None
        options = {
            "method": method,
            "sparsity": sparsity,
            "episodes": self.episodes,
            "wandb_mode": self.wandb_mode,
            **(self.suite.compress_options if method == "l0" else {}),
        }
        report = run_dir / output_names(method)["report"]
        if report.exists() and same_compression(
            json.loads(report.read_text()), options, load_checkpoint(run_dir)["global_step"]
        ):
            return f"compressed: {report.name}", None
        flags = suites.to_flags({k: v for k, v in options.items() if v is not None})
        return "compress", Inline(
            command_line([sys.executable, "-m", "l0rl.compress", str(run_dir), *flags]),
            lambda: format_report(compress_run(run_dir, progress=False, **options)),
        )

    def magnitude_sparsity(self, spec: RunSpec) -> float:
        """--sparsity of the run's magnitude compression: its own final step, or for a dense run the
        sparsity its L0 partner is deployed at (reached by the gates, or its final step if higher)."""
        if spec.variant.magnitude_after is not None:
            return spec.variant.magnitude_after
        source = spec.magnitude_source
        reached = reached_sparsity(self.finished(source))
        return max(reached, source.variant.magnitude_after or 0.0)

    def finished(self, spec: RunSpec) -> Path:
        run_dir = finished_run(self.runs_dir, spec)
        if run_dir is None:
            raise RunError(f"no finished run of {spec.key} in {self.runs_dir}")
        return run_dir

    def record(self, spec: RunSpec, seconds: float, argv: list[str]) -> None:
        """Append this process's command, wall time and hardware to the run's benchmark.json."""
        path = self.finished(spec) / BENCH_NAME
        data = json.loads(path.read_text()) if path.exists() else {"sessions": []}
        data.update(suite=self.suite.name, variant=spec.variant.name, seed=spec.seed)
        data["sessions"].append(
            {"command": command_line(argv), "wall_seconds": round(seconds, 1), "hardware": hardware()}
        )
        atomic_write_json(path, data)


def train_name(spec: RunSpec) -> str:
    return f"train {spec.key}"


# --- the pool -----------------------------------------------------------------------------------


def last_line(path: Path) -> str:
    lines = [x for x in path.read_text(errors="replace").splitlines() if x.strip()] if path.exists() else []
    return lines[-1][:300] if lines else "(no output)"


def threads_env(threads: int) -> dict[str, str]:
    """The variables that set a training process's torch (OpenMP / MKL) thread count."""
    return {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


class Pool:
    """Runs tasks, at most `workers` at once, each once its dependencies succeeded. A task whose
    dependency failed fails too, with the reason: nothing is dropped silently."""

    def __init__(
        self,
        workers: int,
        log_dir: Path,
        env: dict,
        say: Callable[[str], None] = print,
        cpus: int | None = None,
    ):
        self.workers, self.log_dir, self.env, self.say = workers, log_dir, env, say
        # a cell's thread count is what suits it alone: runs side by side share the cores (2 Mario
        # runs with 2 threads each on 2 cores made ~46 SPS together, with 1 thread each ~96)
        self.threads_cap = max(1, (cpus or os.cpu_count() or 1) // workers)
        self.running: dict[subprocess.Popen, tuple[Task, float, list[str], Path]] = {}
        self.outcomes: dict[str, Outcome] = {}

    def run(self, tasks: list[Task]) -> list[Outcome]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        pending = sorted(tasks, key=lambda t: t.priority)  # stable: suite order within a priority
        try:
            while pending or self.running:
                self._fail_orphans(pending)
                ready = [t for t in pending if all(d in self.outcomes for d in t.deps)]
                while ready and len(self.running) < self.workers:
                    task = ready.pop(0)
                    pending.remove(task)
                    self._start(task)
                if self.running:
                    time.sleep(POLL_S)
                    self._reap()
                elif pending and not any(all(d in self.outcomes for d in t.deps) for t in pending):
                    for t in pending:  # waits for a task that is not part of this invocation
                        self._finish(Outcome(t.name, "failed", f"not run: waits for {t.deps}"))
                    pending.clear()
        except KeyboardInterrupt:
            for proc in self.running:
                proc.terminate()
            for proc in self.running:
                proc.wait()
            raise
        return [self.outcomes[t.name] for t in tasks]

    def _fail_orphans(self, pending: list[Task]) -> None:
        for t in list(pending):
            failed = [d for d in t.deps if d in self.outcomes and self.outcomes[d].status == "failed"]
            if failed:
                pending.remove(t)
                self._finish(Outcome(t.name, "failed", f"not run: {failed[0]} failed"))

    def _start(self, task: Task) -> None:
        try:
            what, work = task.command()
        except (UsageError, OSError, ValueError) as e:
            self._finish(Outcome(task.name, "failed", f"cannot start: {e}"))
            return
        if work is None:
            self._finish(Outcome(task.name, "skipped", what))
            return
        log = self.log_dir / (task.name.replace(" ", "__") + ".log")
        with open(log, "a") as f:
            command = work.command if isinstance(work, Inline) else command_line(work)
            f.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {command}\n")
            f.flush()
            if isinstance(work, Inline):
                self.say(f"[start]  {task.name} ({what})")
                self._finish(self._inline(task, work, f, log))
                return
            try:
                env = {**(os.environ if self.env is None else self.env), **task.env}
                if "OMP_NUM_THREADS" in task.env:
                    env |= threads_env(min(int(task.env["OMP_NUM_THREADS"]), self.threads_cap))
                proc = subprocess.Popen(work, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
            except OSError as e:
                self._finish(Outcome(task.name, "failed", f"cannot start: {e}", log))
                return
        self.running[proc] = (task, time.time(), work, log)
        self.say(f"[start]  {task.name} ({what})")

    def _inline(self, task: Task, work: Inline, log_file, log: Path) -> Outcome:
        """Runs while the subprocesses go on; its slot is the one this process holds."""
        start = time.time()
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as the subprocesses: one thread each
        try:
            with contextlib.redirect_stdout(log_file), contextlib.redirect_stderr(log_file):
                log_file.write(work.call() + "\n")
        except Exception as e:  # any failure of one task is reported with the others, not raised
            traceback.print_exc(file=log_file)
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            return Outcome(task.name, "failed", first, log, time.time() - start)
        finally:
            torch.set_num_threads(threads)
        return Outcome(task.name, "ran", "", log, time.time() - start)

    def _reap(self) -> None:
        for proc in [p for p in self.running if p.poll() is not None]:
            task, start, argv, log = self.running.pop(proc)
            seconds = time.time() - start
            outcome = Outcome(task.name, "ran", "", log, seconds)
            if proc.returncode != 0:
                outcome = Outcome(
                    task.name, "failed", f"exit {proc.returncode}: {last_line(log)}", log, seconds
                )
            elif task.after is not None:
                try:
                    task.after(seconds, argv)
                except (UsageError, OSError, ValueError) as e:
                    outcome = Outcome(task.name, "failed", f"finished, but: {e}", log, seconds)
            self._finish(outcome)

    def _finish(self, o: Outcome) -> None:
        self.outcomes[o.task] = o
        if o.status == "skipped":
            self.say(f"[skip]   {o.task} ({o.detail})")
        elif o.status == "ran":
            self.say(f"[done]   {o.task} ({o.seconds:.0f} s)")
        else:
            self.say(f"[failed] {o.task}: {o.detail}")


# --- the command --------------------------------------------------------------------------------


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


def only_cells(specs: list[RunSpec], refs: list[str] | None) -> list[RunSpec]:
    """The runs of the cells `refs` (<env_id>/<algo>; all when None); refuses a cell not in the suite."""
    if refs is None:
        return specs
    known = list(dict.fromkeys(s.cell.ref for s in specs))
    unknown = [r for r in refs if r not in known]
    if unknown:
        raise UsageError(f"--cells: no cell {unknown[0]!r} in this suite; it has {', '.join(known)}")
    return [s for s in specs if s.cell.ref in refs]


def only_variants(specs: list[RunSpec], names: list[str] | None) -> list[RunSpec]:
    """The runs of the variants `names` (all when None); refuses an unknown name, and a variant whose
    GMP target or matched sparsity comes from a variant left out (its tasks would wait forever)."""
    if names is None:
        return specs
    known = list(dict.fromkeys(s.variant.name for s in specs))
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UsageError(f"--variants: no variant {unknown[0]!r} in this suite; it has {', '.join(known)}")
    kept = [s for s in specs if s.variant.name in names]
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
        from benchmark.carry import default_carry_dir, unrestored

        behind = unrestored(runs_dir, default_carry_dir(suite.name))
        if behind:
            raise UsageError(
                f"{default_carry_dir(suite.name)} holds {behind[0]}, further than this machine's copy"
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
        from benchmark.ray_backend import RayPool

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
    # as benchmark.run_suite, not __main__: --backend ray ships tasks to workers that import it by name
    from benchmark import run_suite

    raise SystemExit(run_cli(run_suite.main, PROG))
