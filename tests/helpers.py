"""What many test files need: tiny runs of each algorithm, running an algorithm or an entry point as
a user does (in a subprocess or in this process), checking one-line errors, and reading a run back the
way compress and l0rl.load_policy do."""

import contextlib
import importlib
import io
import json
import os
import runpy
import signal
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import torch

from l0rl import gmp, l0
from l0rl.policy import build_policy
from l0rl.runkit import load_checkpoint, run_cli
from l0rl.runkit.checkpoint import KEY_FILE_ENV

ROOT = Path(__file__).resolve().parents[1]

TINY = {
    "ppo": dict(num_envs=2, num_steps=16, num_minibatches=2, update_epochs=2, total_timesteps=128),
    "a2c": dict(num_envs=2, num_steps=5, total_timesteps=100),
    "dqn": dict(
        num_envs=2,
        total_timesteps=400,
        learning_starts=100,
        buffer_size=400,
        batch_size=32,
        train_frequency=4,
        target_network_frequency=100,
        log_every=100,
    ),
    "sac": dict(
        num_envs=2,
        total_timesteps=300,
        learning_starts=100,
        batch_size=32,
        hidden_size=32,
        buffer_size=1000,
        gradient_steps=1,
        log_every=100,
    ),
}
"""Each algorithm's budget for a run of seconds: PPO 4 iterations of 32 steps, A2C 10 of 10, DQN 75
gradient steps from step 104 on (target updates at 200, 300, 400), SAC 100 updates from step 100 on."""


def algo(name: str) -> ModuleType:
    """The algorithm module (ppo, a2c, dqn, sac) as installed: l0rl.algos.<name>_l0."""
    return importlib.import_module(f"l0rl.algos.{name}_l0")


def tiny_args(name: str, root: Path, **kw):
    """Arguments of a tiny run (TINY) under root/runs, without W&B or a progress display."""
    base = dict(wandb_mode="disabled", runs_dir=str(root / "runs"), progress=False, eval_episodes=2)
    return algo(name).Args(**{**base, **TINY[name], **kw})


def checkpointed_ppo(root: Path, **kw):
    """A PPO run with its own update sizes, 16 iterations of 32 steps and a checkpoint every 64, no
    evaluation: halts, crashes and resumes land between checkpoints (tiny_args otherwise)."""
    base = dict(num_steps=32, total_timesteps=512, checkpoint_every=64, eval_episodes=0)
    return tiny_args("ppo", root, **{**base, "num_minibatches": 4, "update_epochs": 4, **kw})


def make_key(path: Path, size: int = 32, mode: int = 0o600) -> Path:
    """A resume key as a user makes one: 32 random bytes, mode 0600 (other sizes and modes: keys a run
    refuses)."""
    path.write_bytes(os.urandom(size))
    path.chmod(mode)
    return path


@contextlib.contextmanager
def signing_with(key: Path):
    """Runs started inside sign their env state with `key` (for module-scoped fixtures, which have no
    monkeypatch); the previous key setting comes back after."""
    old = os.environ.get(KEY_FILE_ENV)
    os.environ[KEY_FILE_ENV] = str(key)
    try:
        yield key
    finally:
        os.environ.pop(KEY_FILE_ENV)
        if old is not None:
            os.environ[KEY_FILE_ENV] = old


def resume(name: str, run_dir: str | Path, **kw) -> str:
    """Resume in-process with the run's own arguments (only per-process options given)."""
    module = algo(name)
    return module.train(module.Args(resume=str(run_dir), wandb_mode="disabled", progress=False, **kw))


def invoke(fn, *argv, prog: str = "test") -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of an entry point `fn(argv)` called as its command line would, in
    this process (run_cli's error handling included)."""
    out, err = io.StringIO(), io.StringIO()
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = run_cli(lambda: fn([str(a) for a in argv]), prog)
        except SystemExit as e:
            code = e.code
        finally:  # an interrupted command ignores stop signals on its way out: not this process's
            for s, h in handlers.items():
                signal.signal(s, h)
    return (code if isinstance(code, int) else 0), out.getvalue(), err.getvalue()


def cli(name: str, *argv: str, cwd: Path) -> subprocess.CompletedProcess:
    """`python algos/<name>_l0.py --wandb-mode disabled ARGV` in `cwd`, but in this process: the script's
    own __main__ (tyro + run_cli) without the seconds a new interpreter takes to import torch."""
    script = str(ROOT / "algos" / f"{name}_l0.py")
    out, err, code = io.StringIO(), io.StringIO(), 0
    saved_argv, sys.argv = sys.argv, [script, "--wandb-mode", "disabled", *argv]
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with contextlib.chdir(cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            runpy.run_path(script, run_name="__main__")
    except SystemExit as e:
        code = e.code
    finally:
        sys.argv = saved_argv
        for s, h in handlers.items():
            signal.signal(s, h)
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


def one_line(text: str) -> str:
    """The only line of an error output (asserting that there is exactly one)."""
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def run_script(algo: str, *argv: str, cwd: Path, timeout: int = 180, env: dict | None = None):
    """`python algos/<algo>_l0.py --wandb-mode disabled ARGV` in `cwd`, output captured."""
    return subprocess.run(
        [sys.executable, str(ROOT / "algos" / f"{algo}_l0.py"), "--wandb-mode", "disabled", *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, code: int, hint: str) -> None:
    """The process failed with `code` and exactly one stderr line containing `hint`."""
    assert proc.returncode == code, proc.stderr
    assert hint in one_line(proc.stderr), proc.stderr


def run_dirs(root: Path) -> list[Path]:
    """Run directories under `root/runs` (none when a command was refused)."""
    runs = root / "runs"
    return sorted(p for p in runs.iterdir() if p.is_dir()) if runs.exists() else []


def trained_policy(run_dir: str | Path) -> torch.nn.Module:
    """The policy as stored in the checkpoint (gated or masked), rebuilt as compress rebuilds it."""
    return build_policy(load_checkpoint(run_dir)["policy"])


def closed_share(policy: torch.nn.Module) -> float:
    """Share of the policy's gated (or masked) weights that are exactly zero, counted directly."""
    hard = l0.harden(policy)
    names = {n for n, _, _ in l0.gated_layers(policy)} | {n for n, _, _ in gmp.masked_layers(policy)}
    weights = [hard.get_submodule(n).weight for n in names]
    return sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)


def summary(run_dir: str | Path) -> dict:
    return json.loads((Path(run_dir) / "summary.json").read_text())


def assert_same_state(a: dict, b: dict) -> None:
    """Two state_dicts hold bit-identical tensors."""
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"{len(differ)} of {len(a)} tensors differ, e.g. {differ[:3]}"
