"""runkit: the plumbing every l0rl entry point shares and no algorithm owns: the run directory
contract and atomic checkpoints, the metrics record + W&B, progress display, evaluation episodes,
and one-line CLI errors."""

from runkit.checkpoint import (
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
from runkit.cli import run_cli
from runkit.evaluate import eval_metrics, evaluate
from runkit.session import env_options, open_run, resume_or_new
from runkit.tracker import WANDB_MODES, Progress, Tracker, read_metrics, resolve_wandb_mode

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
