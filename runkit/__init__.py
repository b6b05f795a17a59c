"""runkit: the plumbing every l0rl entry point shares and no algorithm owns: the arguments every
algorithm has and their parsing (args), resume and fork (continuation), divergence guards (guards),
`Run` (one run's lifecycle: start, logging, checkpoints, final evaluation), the run directory on disk
(checkpoint format, atomic writes, lock), the metrics record + W&B, progress display, evaluation
episodes, the best evaluated policy of a run, the return formulas of the on-policy algorithms, the off-policy replay buffers, and
one-line CLI errors."""

from l0rl._one_name import wrong_import_name

if __name__ != "l0rl.runkit":  # this folder installs as l0rl.runkit only
    raise wrong_import_name("l0rl.runkit")

from l0rl.errors import NonFiniteError, UsageError
from l0rl.runkit.args import CommandLine, RunArgs, family_defaults, parse_args, validate
from l0rl.runkit.checkpoint import (
    CHECKPOINT_NAME,
    ENV_STATE_NAME,
    FORMAT_VERSION,
    RunError,
    atomic_torch_save,
    atomic_write_bytes,
    atomic_write_json,
    load_checkpoint,
    resolve_checkpoint,
    seed_everything,
    to_bytes,
)
from l0rl.runkit.cli import run_cli
from l0rl.runkit.continuation import RESUMABLE
from l0rl.runkit.evaluate import eval_metrics, evaluate, evaluate_as_run, first_eval_seed
from l0rl.runkit.guards import check_loss
from l0rl.runkit.keep_best import KeepBest
from l0rl.runkit.progress import Progress
from l0rl.runkit.replay import BUFFER_NAME, EpisodeReplayBuffer, ReplayArgs, ReplayBuffer, save_buffer
from l0rl.runkit.returns import bootstrap_truncations, gae
from l0rl.runkit.run import Run, crossed
from l0rl.runkit.targets import update_average, update_target
from l0rl.runkit.tracker import WANDB_MODES, Tracker, read_metrics, resolve_wandb_mode

__all__ = [
    "BUFFER_NAME",
    "CommandLine",
    "RESUMABLE",
    "CHECKPOINT_NAME",
    "ENV_STATE_NAME",
    "FORMAT_VERSION",
    "WANDB_MODES",
    "NonFiniteError",
    "EpisodeReplayBuffer",
    "KeepBest",
    "Progress",
    "ReplayArgs",
    "ReplayBuffer",
    "Run",
    "RunArgs",
    "RunError",
    "Tracker",
    "UsageError",
    "atomic_torch_save",
    "bootstrap_truncations",
    "atomic_write_bytes",
    "atomic_write_json",
    "check_loss",
    "crossed",
    "eval_metrics",
    "family_defaults",
    "gae",
    "evaluate",
    "evaluate_as_run",
    "first_eval_seed",
    "load_checkpoint",
    "parse_args",
    "read_metrics",
    "resolve_checkpoint",
    "resolve_wandb_mode",
    "run_cli",
    "save_buffer",
    "seed_everything",
    "update_average",
    "update_target",
    "to_bytes",
    "validate",
]
