"""runkit: the plumbing every l0rl entry point shares and no algorithm owns: the run directory
contract and atomic checkpoints, the metrics record + W&B, progress display, evaluation episodes,
and one-line CLI errors."""

if __name__ != "l0rl.runkit":  # one file, one import name: this folder installs as l0rl.runkit
    raise ImportError(
        "import this package as l0rl.runkit (from l0rl import runkit); run 'make setup' or pip install -e ."
    )

from l0rl.runkit.checkpoint import (
    CHECKPOINT_NAME,
    FORMAT_VERSION,
    RunError,
    atomic_torch_save,
    atomic_write_json,
    create_run_dir,
    load_checkpoint,
    resolve_checkpoint,
    restorable_envs,
    rng_state,
    run_name,
    save_checkpoint,
    seed_everything,
    set_rng_state,
)
from l0rl.runkit.cli import run_cli
from l0rl.runkit.evaluate import eval_metrics, evaluate
from l0rl.runkit.session import env_options, open_run, resume_or_new
from l0rl.runkit.tracker import WANDB_MODES, Progress, Tracker, read_metrics, resolve_wandb_mode

__all__ = [
    "CHECKPOINT_NAME",
    "FORMAT_VERSION",
    "WANDB_MODES",
    "Progress",
    "RunError",
    "Tracker",
    "atomic_torch_save",
    "atomic_write_json",
    "create_run_dir",
    "env_options",
    "eval_metrics",
    "evaluate",
    "load_checkpoint",
    "open_run",
    "read_metrics",
    "resolve_checkpoint",
    "resolve_wandb_mode",
    "restorable_envs",
    "resume_or_new",
    "rng_state",
    "run_cli",
    "run_name",
    "save_checkpoint",
    "seed_everything",
    "set_rng_state",
]
