"""The tasks of a benchmark suite and the graph they form: each run of the suite is a train task, and
each finished run is compressed by one task per method. A task's command is computed when its
dependencies are done, so it reads their results from the runs directory (benchmark/layout.py); a
pool (benchmark/pool.py, or Ray: benchmark/ray_backend.py) runs the graph.

A train task skips a run that finished the suite's budget, resumes an interrupted one from its last
checkpoint (`--resume`), and starts the rest. A compress task does what
`python -m l0rl.compress RUN --method M` does, called in the pool's process (a second of work would
otherwise pay two seconds of start-up): method l0 for every run (it hardens whatever the run holds:
gates, GMP masks or nothing), and for a dense run also `magnitude` at the sparsity the matching L0
run reached (matched sparsity) and `svd`; it skips a run whose compress report answers the same
options at the same step. A GMP run whose target is the sparsity an L0 run reached depends on that
L0 run's train task.
"""

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmark import suites
from benchmark.layout import ROOT, command_line, find_run, finished_run, is_done, reached_sparsity
from benchmark.suites import RunSpec, Suite
from l0rl.compress import compress_run
from l0rl.compress.pipeline import output_names
from l0rl.compress.report import format_report
from l0rl.report.collect import BENCH_NAME, hardware
from l0rl.runkit import RESUMABLE, RunError, atomic_write_json, load_checkpoint
from l0rl.runkit.files import read_json_object
from l0rl.runkit.tracker import variant_group

NOT_COMPRESS_OPTIONS = ("method", "wandb_mode", "episodes")
"""keys of a compress call that its report keeps elsewhere than under "options" (or not at all)"""


def same_compression(old: dict, options: dict, global_step: int) -> bool:
    """Whether a compress report answers these options: the run's current checkpoint step, the same
    episode count and every option asked for (a changed suite or --episodes compresses again). An
    option asked for that the report does not record (written before compress had it) is a change,
    and so is a report of another shape (damaged, or carried in crafted): it is compressed again."""
    try:
        return _same_compression(old, options, global_step)
    except (KeyError, TypeError):
        return False


def _same_compression(old: dict, options: dict, global_step: int) -> bool:
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
        old = read_json_object(report)  # None when absent; a symlink or a non-object is one line
        if old is not None and same_compression(old, options, load_checkpoint(run_dir)["global_step"]):
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
        data = read_json_object(path) or {"sessions": []}  # a symlink or a non-object is one line
        if not isinstance(data.get("sessions"), list):  # a damaged record's sessions start afresh
            data["sessions"] = []
        data.update(suite=self.suite.name, variant=spec.variant.name, seed=spec.seed)
        data["sessions"].append(
            {"command": command_line(argv), "wall_seconds": round(seconds, 1), "hardware": hardware()}
        )
        atomic_write_json(path, data)


def train_name(spec: RunSpec) -> str:
    return f"train {spec.key}"


def threads_env(threads: int) -> dict[str, str]:
    """The variables that set a training process's torch (OpenMP / MKL) thread count."""
    return {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
