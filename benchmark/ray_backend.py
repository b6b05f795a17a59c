"""Run a benchmark suite on a Ray cluster: `python -m benchmark.run_suite SUITE --backend ray`.

The `paper` suite and the frontier sweeps are hundreds of CPU-hours. This backend hands the runner's
tasks (train a run, then compress it) to Ray instead of the local process pool; everything else is the
runner's own code: the same tasks and dependencies (benchmark/tasks.py), the same skip-finished and
resume logic (each Ray task runs the local pool's code, benchmark/pool.py, for its one task on the
node Ray picks), the same logs, the same closing summary (benchmark/run_suite.py).

Start a cluster, then run the suite from any node:

    ray start --head --port=6379                       # on the head node
    ray start --address=HEAD:6379                      # on every worker node
    python -m benchmark.run_suite paper --backend ray --address HEAD:6379 --runs-dir /shared/l0rl-runs
    python -m benchmark.report paper --runs-dir /shared/l0rl-runs

`--backend ray` without --address starts a Ray on this machine only (or joins the one `ray start`
left running here): a way to try it. `--workers N` caps the tasks in flight (default: as many as the
cluster's CPUs and GPUs allow; on a Ray started here, also its CPUs).

Requirements:

- A shared runs directory. Run directories are written by whichever node trains the run and read by
  whichever node compresses it or trains the GMP run after it, so `--runs-dir` must be a path every
  node mounts (NFS, a cluster file system, ...), at the same path. Before anything runs, the driver
  writes a token file under --runs-dir and a probe task on every alive node must read it back; a
  node that does not is named and the suite is refused in one line (exit 2).
- The same code everywhere: every node runs `ray start` from a Python where l0rl is installed, with
  this checkout at the same path (simplest: the checkout on the shared file system too). Workers
  import `benchmark` from the driver's checkout (PYTHONPATH) and train with its algos/.
- Where Ray's token authentication is on (Ray 2.60 turns it on for a head started where a token
  exists, and for the Ray it starts here), the driver and every node need the same token,
  ~/.ray/auth_token (a shared home directory gives them one); see Ray's token-auth documentation.
  A driver that names the head (--address) sends the token only with RAY_AUTH_MODE=token: where a
  token exists and RAY_AUTH_MODE is unset, the suite is refused up front in one line saying so
  (exit 2), rather than after Ray's 20 s of retries.

Resources: a train task asks Ray for one CPU (a vector env stepped in the training process, which
runs with OMP_NUM_THREADS=1), or one per env for the families whose envs step in their own processes
(Mario, SurRoL); a GPU where the suite's cell asks for one (a `gpus` field of the cell), and
otherwise none: the training process then sees no GPU (CUDA_VISIBLE_DEVICES=""), so CPU tasks never
crowd a GPU that Ray has given to another. A compress task asks for one CPU and runs in the worker
process, as the local pool runs it in its own.

Retries and failures: a task that fails (non-zero exit, an exception) or is killed (its worker or its
node died) is tried again up to `--retries` times (default 2), 5 s later (RETRY_DELAY_S). A retry computes its
command afresh on the node that runs it, so a train task killed midway resumes from its last
checkpoint with `--resume` in its own run directory, and one that already finished is skipped. A run
that diverged (exit 3) is not retried: it would diverge again. Each attempt appends to the task's log
under <runs dir>/_logs/. A task that still fails, and every task that waits for it, is listed at the
end with its log, and the exit code is 1; finished work is kept, and the same command resumes the rest.

If the driver is interrupted (Ctrl-C), running tasks are cancelled: each stops its training process,
as the local pool does. A worker killed outright takes its training process with it (Ray ends the
child processes of a dead worker; checked with Ray 2.60 on one machine), and a lost node takes both.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from benchmark.layout import LOG_DIR, ROOT
from benchmark.pool import Pool, log_path
from benchmark.tasks import Outcome, Runner, Task, train_name
from l0rl.envs.registry import family
from l0rl.errors import UsageError
from l0rl.runkit.checkpoint import CHECKPOINT_NAME, RunError, load_checkpoint

ray = None
"""The ray module once require_ray() imported it: an optional extra (`pip install ray`), and some
600 modules that a local suite, which imports this module too, does without."""

DEFAULT_RETRIES = 2
RETRY_DELAY_S = 5.0
"""Wait before a failed attempt is handed back for a retry: a file another node just wrote can take
a few seconds to appear in a shared directory's listing."""
PROBE_TIMEOUT_S = 180.0
"""How long the runs-dir probe may take on all nodes together (a node starts a worker process first)."""
PROBE_WAIT_S = 10.0
"""How long a node keeps looking for the token before it says it cannot see it (NFS attribute caches)."""
ASYNC_FAMILIES = ("mario", "surrol")
"""Env families whose vector envs step in one process per env (l0rl.envs.make_vector_env)."""
NO_RETRY = ("exit 3:",)
"""Failures a retry would repeat: exit 3 is a diverged run (NonFiniteError)."""
KILL_ENV = "L0RL_RAY_TEST_KILL"
"""Test-only: the name of a train task whose first attempt is killed (its training process and its
Ray worker, SIGKILL) once the run wrote a checkpoint, as a lost node would be."""
AUTH_MODE_ENV = "RAY_AUTH_MODE"
TOKEN_ENV, TOKEN_PATH_ENV = "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"
"""Where Ray looks for its token, besides ~/.ray/auth_token: the token itself, or a file holding it."""
FORWARDED_ENV = ("WANDB_", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
"""Driver environment variables (prefixes) handed to every task, besides what the runner adds to its
own environment: W&B's settings, so runs log where the driver's would, and one thread per process
(Ray would give a worker of N CPUs N threads)."""


# --- on the driver ------------------------------------------------------------------------------


def require_ray() -> None:
    """Import Ray on first use (the driver's pool, a worker's attempt)."""
    global ray
    if ray is None:
        try:
            ray = importlib.import_module("ray")
        except ModuleNotFoundError:
            raise UsageError("--backend ray needs Ray: pip install 'ray>=2.60'") from None


def token_mismatch(address: str | None, env: Mapping[str, str] = os.environ) -> str | None:
    """Why joining the head at `address` would fail on token auth, or None. Ray turns token auth on
    for a head started where a token exists, and for a driver that finds a Ray on this machine, but
    never for a driver that names an address: without RAY_AUTH_MODE=token it sends no token, and Ray
    retries for 20 s before it fails as if no head were there."""
    address = address or env.get("RAY_ADDRESS")
    if address in (None, "", "auto", "local") or env.get(AUTH_MODE_ENV):
        return None
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    if env.get(TOKEN_ENV):
        source = TOKEN_ENV
    elif env.get(TOKEN_PATH_ENV) and Path(env[TOKEN_PATH_ENV]).is_file():
        source = env[TOKEN_PATH_ENV]
    elif (home / ".ray" / "auth_token").is_file():
        source = str(home / ".ray" / "auth_token")
    else:
        return None
    return (
        f"Ray token auth mismatch: a Ray token is set up here ({source}) but {AUTH_MODE_ENV} is not "
        f"set, so this driver would join {address} without it and a head started with that token "
        f"refuses it; set {AUTH_MODE_ENV}=token (or {AUTH_MODE_ENV}=disabled if the head runs without "
        "token auth) and run again"
    )


def pythonpath() -> str:
    """Workers import `benchmark` from this checkout, as the driver does."""
    return os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)


def connect(address: str | None, num_cpus: int | None = None) -> bool:
    """Join the Ray at `address` (None: start one here, or join the one `ray start` left here);
    True when this call connected (and the caller shuts Ray down), False when Ray was up already."""
    require_ray()
    if ray.is_initialized():
        return False
    mismatch = token_mismatch(address)
    if mismatch:
        raise UsageError(mismatch)
    options = {
        "runtime_env": {"env_vars": {"PYTHONPATH": pythonpath()}},
        "log_to_driver": False,  # each task's output goes to its log; the driver prints the outcomes
        "logging_level": logging.WARNING,
    }
    if address is None:
        options.update(include_dashboard=False, num_cpus=num_cpus)
    try:
        ray.init(address=address, **options)
    except (ConnectionError, ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        where = f"at {address}" if address else "on this machine"
        token = os.environ.get(AUTH_MODE_ENV, "").lower() == "token"  # a wrong token fails alike
        hint = (
            "; with token auth, the head's token must be this driver's (~/.ray/auth_token)" if token else ""
        )
        raise UsageError(
            f"cannot start or join Ray {where} ({first}); start the head with `ray start --head "
            f"--port=6379` and pass --address HEAD:6379{hint}"
        ) from None
    return True


def seen_as(path: Path) -> Path:
    """The path a node is asked to look at for a file the driver wrote at `path`: the same path, as
    every node must mount the runs directory at the same place. (A hook: tests map it elsewhere to
    play a node that does not see the driver's file system.)"""
    return path


def check_visible(runs_dir: Path) -> None:
    """Refuse (UsageError, one line) unless every alive node that can run tasks sees `runs_dir`: the
    driver writes a token there and a probe task pinned to each node reads it back."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [
        n
        for n in ray.nodes()
        if n.get("Alive") and (n["Resources"].get("CPU", 0) > 0 or n["Resources"].get("GPU", 0) > 0)
    ]
    if not nodes:
        raise UsageError(
            "the Ray cluster has no alive node with CPUs; start workers with `ray start --address=HEAD:6379`"
        )
    secret = uuid.uuid4().hex
    token = runs_dir / f".l0rl-visible-{secret}"
    try:
        token.write_text(secret)
    except OSError as e:
        raise UsageError(
            f"cannot write to --runs-dir {runs_dir} ({e.strerror}); pass a writable directory"
        ) from None
    probe = ray.remote(num_cpus=0, max_retries=0)(_sees)
    names = [f"{n['NodeManagerAddress']} ({n['NodeID'][:8]})" for n in nodes]
    try:
        where = [NodeAffinitySchedulingStrategy(n["NodeID"], soft=False) for n in nodes]
        path = str(seen_as(token))
        refs = [probe.options(scheduling_strategy=w).remote(path, secret, PROBE_WAIT_S) for w in where]
        try:
            seen = ray.get(refs, timeout=PROBE_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            done, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            late = [name for name, ref in zip(names, refs) if ref not in done]
            raise UsageError(
                f"node(s) {', '.join(late)} did not answer the --runs-dir probe in {PROBE_TIMEOUT_S:.0f} s; "
                "check that they are healthy (`ray status`) and try again"
            ) from None
        except ray.exceptions.RayError as e:
            raise UsageError(
                f"the --runs-dir probe failed on a node ({_message(e)}); start every node from the same "
                "l0rl checkout and Python (see benchmark/ray_backend.py)"
            ) from None
    finally:
        token.unlink(missing_ok=True)
    blind = [name for name, ok in zip(names, seen) if not ok]
    if blind:
        raise UsageError(
            f"--runs-dir {runs_dir} is not visible from node(s) {', '.join(blind)}; put it on a path "
            "every node mounts (NFS, a cluster file system, ...) and pass that path"
        )


def _message(e: BaseException) -> str:
    cause = getattr(e, "cause", None) or e
    text = str(cause).strip()
    return text.splitlines()[-1][:300] if text else type(cause).__name__


def train_cpus(spec) -> int:
    """CPUs a training run keeps busy: one, or one per env where the envs step in processes of
    their own."""
    if family(spec.cell.env_id) not in ASYNC_FAMILIES:
        return 1
    num_envs = spec.cell.args.get("num_envs")
    if num_envs is None:
        algo = importlib.import_module(f"l0rl.algos.{spec.cell.algo}")
        num_envs = getattr(algo.Args, "num_envs", 1)
    return max(1, int(num_envs))


def task_resources(runner: Runner) -> Callable[[Task], dict]:
    """Task -> Ray resources: see the module docstring."""
    specs = {train_name(s): s for s in runner.specs}

    def of(task: Task) -> dict:
        spec = specs.get(task.name)
        if spec is None:  # compress: in the worker process, one thread
            return {"num_cpus": 1, "num_gpus": 0}
        return {"num_cpus": train_cpus(spec), "num_gpus": float(spec.cell.gpus)}

    return of


@dataclass(eq=False)
class Submitted:
    """A task handed to Ray, as the pool holds it (it holds subprocesses likewise)."""

    ref: object
    attempts: Path

    def terminate(self) -> None:
        """Ctrl-C on the driver: the task gets a KeyboardInterrupt and stops its training process,
        as the local pool stops its own."""
        with contextlib.suppress(Exception):
            ray.cancel(self.ref)

    def wait(self) -> None:
        with contextlib.suppress(Exception):
            ray.wait([self.ref], timeout=30)
        self.attempts.unlink(missing_ok=True)


class RayPool(Pool):
    """The local pool's scheduling (a task starts once its dependencies succeeded; one whose
    dependency failed fails too) with each task run by Ray on some node instead of here."""

    def __init__(
        self,
        workers: int | None,
        log_dir: Path,
        env: dict | None,
        say: Callable[[str], None] = print,
        *,
        runs_dir: Path,
        resources: Callable[[Task], dict] | None = None,
        address: str | None = None,
        retries: int = DEFAULT_RETRIES,
        retry_delay_s: float = RETRY_DELAY_S,
    ):
        require_ray()
        if retries < 0:
            raise UsageError(f"--retries must be >= 0, got {retries}")
        super().__init__(workers or 1_000_000, log_dir, env, say)
        self.local_cpus = workers
        self.runs_dir, self.address = runs_dir, address
        self.retries, self.retry_delay_s = retries, retry_delay_s
        self.resources = resources or (lambda task: {"num_cpus": 1, "num_gpus": 0})
        base = os.environ if env is None else env
        self.env_overlay = {
            k: v
            for k, v in base.items()
            if (env is not None and os.environ.get(k) != v) or k.startswith(FORWARDED_ENV)
        }
        self.remote = None

    @classmethod
    def for_runner(
        cls, runner: Runner, a: argparse.Namespace, env: dict, say: Callable[[str], None]
    ) -> RayPool:
        """The pool `python -m benchmark.run_suite SUITE --backend ray` runs its tasks in."""
        return cls(
            a.workers,
            runner.runs_dir / LOG_DIR,
            env,
            say,
            runs_dir=runner.runs_dir,
            resources=task_resources(runner),
            address=a.address,
            retries=DEFAULT_RETRIES if a.retries is None else a.retries,
            retry_delay_s=RETRY_DELAY_S,
        )

    def run(self, tasks: list[Task]) -> list[Outcome]:
        started = connect(self.address, self.local_cpus)
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
            check_visible(self.runs_dir)
            if any(self.resources(t)["num_gpus"] for t in tasks) and not ray.cluster_resources().get("GPU"):
                self.say("[warn]   the suite asks for GPUs and the cluster has none: its GPU tasks wait")
            self.remote = ray.remote(max_retries=self.retries, retry_exceptions=[Retry])(_attempt)
            (self.log_dir / ATTEMPTS_DIR).mkdir(parents=True, exist_ok=True)
            return super().run(tasks)
        finally:
            self.remote = None
            if started:
                ray.shutdown()

    def _start(self, task: Task) -> None:
        resources = self.resources(task)
        attempts = self.log_dir / ATTEMPTS_DIR / uuid.uuid4().hex
        kill = os.environ.get(KILL_ENV) == task.name
        ref = self.remote.options(**resources).remote(
            replace(task, deps=[]),
            str(self.log_dir),
            {**self.env_overlay, **task.env},
            bool(resources["num_gpus"]),
            str(attempts),
            self.retries,
            self.retry_delay_s,
            kill,
        )
        self.running[Submitted(ref, attempts)] = (task, time.time(), [], log_path(self.log_dir, task))
        self.say(f"[submit] {task.name}")

    def _reap(self) -> None:
        refs = [h.ref for h in self.running]
        done = set(ray.wait(refs, num_returns=len(refs), timeout=0)[0])
        for handle in [h for h in self.running if h.ref in done]:
            task, start, _, log = self.running.pop(handle)
            handle.attempts.unlink(missing_ok=True)
            self._finish(self._outcome(handle.ref, task, log, time.time() - start))

    def _outcome(self, ref, task: Task, log: Path, seconds: float) -> Outcome:
        """The outcome of a task's last attempt; the messages of its pool are said here."""
        try:
            result = ray.get(ref)
        except ray.exceptions.RayTaskError as e:
            if not isinstance(e.cause, Retry):  # the backend failed, not the task: keep the traceback
                with contextlib.suppress(OSError), open(log, "a") as f:
                    f.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} the Ray task raised:\n{e}\n")
                return Outcome(task.name, "failed", _message(e), log, seconds)
            result = e.cause.result  # it failed on its last attempt
        except ray.exceptions.RayError as e:  # its worker or its node died, on every attempt
            detail = f"{type(e).__name__} after {self.retries + 1} attempts: {_message(e)}"
            return Outcome(task.name, "failed", detail, log, seconds)
        again = f", attempt {result.attempt}" if result.attempt > 1 else ""
        for line in result.said:
            self.say(f"{line} on {result.node}{again}")
        outcome = result.outcome
        if outcome.status == "failed" and result.attempt > 1:
            outcome = replace(outcome, detail=f"{outcome.detail} (attempt {result.attempt})")
        return outcome


# --- on a worker --------------------------------------------------------------------------------

ATTEMPTS_DIR = ".attempts"
"""Under the log directory: one file per submitted task, one byte per attempt (Ray does not tell a
task which attempt it is)."""


@dataclass
class Result:
    """What an attempt hands back: its outcome, the pool's messages, where it ran, which attempt."""

    outcome: Outcome
    said: list[str]
    node: str
    attempt: int


class Retry(Exception):
    """A failed attempt that Ray tries again (retry_exceptions); carries the attempt's result."""

    def __init__(self, result: Result):
        super().__init__(result)
        self.result = result

    def __str__(self) -> str:
        return f"{self.result.outcome.task}: {self.result.outcome.detail}"


class _WorkerPool(Pool):
    """The local pool on a worker, for one task: the driver prints the outcome, not the worker."""

    def _finish(self, o: Outcome) -> None:
        self.outcomes[o.task] = o


def _count_attempt(path: Path) -> int:
    with open(path, "ab") as f:
        f.write(b".")
    return path.stat().st_size


def _sees(path: str, secret: str, wait_s: float) -> bool:
    """The probe: does this node read `secret` from `path`?"""
    deadline = time.time() + wait_s
    while True:
        with contextlib.suppress(OSError):
            if Path(path).read_text() == secret:
                return True
        if time.time() >= deadline:
            return False
        time.sleep(0.5)


def _children() -> list[int]:
    """This process's child processes (Linux /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == os.getpid():
                out.append(int(stat.parent.name))
    return out


def _kill_after_checkpoint(runs_dir: Path, key: str, stop: threading.Event) -> None:
    """Test-only (KILL_ENV): once a run of `key` holds an unfinished checkpoint, kill the training
    process and this worker, as a lost node would."""
    while not stop.wait(0.05):
        for path in runs_dir.glob(f"{key}__*/{CHECKPOINT_NAME}"):
            try:
                ckpt = load_checkpoint(path.parent)
            except RunError:
                continue
            if not ckpt["finished"] and ckpt["global_step"] > 0:
                for pid in _children():
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
                os.kill(os.getpid(), signal.SIGKILL)


def _attempt(
    task: Task,
    log_dir: str,
    env_overlay: dict,
    gpus: bool,
    attempts: str,
    retries: int,
    retry_delay_s: float,
    kill: bool,
) -> Result:
    """One attempt at one task on this node: the local pool's code for that task. Raises Retry when
    it failed and a retry may help, so Ray tries again."""
    require_ray()
    attempt = _count_attempt(Path(attempts))
    env = {**os.environ, **env_overlay}
    if not gpus:
        env["CUDA_VISIBLE_DEVICES"] = ""
    said: list[str] = []
    stop = threading.Event()
    if kill and attempt == 1 and task.name.startswith("train "):
        key = task.name.removeprefix("train ")
        threading.Thread(
            target=_kill_after_checkpoint, args=(Path(log_dir).parent, key, stop), daemon=True
        ).start()
    try:
        (outcome,) = _WorkerPool(1, Path(log_dir), env, say=said.append).run([task])
    finally:
        stop.set()
    result = Result(outcome, said, ray.util.get_node_ip_address(), attempt)
    if outcome.status == "failed" and attempt <= retries and not outcome.detail.startswith(NO_RETRY):
        if outcome.log is not None:
            with contextlib.suppress(OSError), open(outcome.log, "a") as f:
                f.write(f"=== attempt {attempt} failed: {outcome.detail}; Ray tries it again\n")
        time.sleep(retry_delay_s)
        raise Retry(result)
    return result
