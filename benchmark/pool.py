"""The local pool: runs a suite's task graph (benchmark/tasks.py) in processes on this machine, at
most `workers` at once, each task once its dependencies succeeded. A training task is a subprocess
`python algos/<algo>.py ...` whose output goes to the task's log under <runs dir>/_logs/; a compress
task runs in this process, in the slot this process holds. benchmark/ray_backend.py runs the same
scheduling with each task handed to a Ray cluster.
"""

import contextlib
import os
import subprocess
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

from benchmark.layout import ROOT, command_line
from benchmark.tasks import Inline, Outcome, Task, threads_env
from l0rl.errors import UsageError

POLL_S = 0.5


def last_line(path: Path) -> str:
    lines = [x for x in path.read_text(errors="replace").splitlines() if x.strip()] if path.exists() else []
    return lines[-1][:300] if lines else "(no output)"


def log_path(log_dir: Path, task: Task) -> Path:
    """Where the pool writes a task's log."""
    return log_dir / (task.name.replace(" ", "__") + ".log")


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
        log = log_path(self.log_dir, task)
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
