"""Continuing a run: --resume (the same run, its own arguments, locked) and --fork-from (a new run
from another's checkpoint, which is only read), and restoring what a checkpoint saved into this
process's networks, optimizers, schedules, RNGs and loop. What may change on each is stated once here
(RESUMABLE, forkable); every part read from a checkpoint is checked before use (a crafted or damaged
file is a one-line RunError). runkit.run's `Run` calls these; the run directory's files are
runkit.checkpoint's.
"""

import json
import math
import os
import stat
from pathlib import Path
from typing import Any

import torch
from torch import nn

from l0rl.errors import first_line
from l0rl.runkit.args import CommandLine, check_saved_args, run_dir_arg, source_args
from l0rl.runkit.checkpoint import (
    CHECKPOINT_NAME,
    RunError,
    RunLock,
    check_writable,
    load_checkpoint,
    set_rng_state,
)
from l0rl.runkit.files import TORCH_FILE_LIMIT, read_bytes
from l0rl.runkit.replay import BUFFER_NAME
from l0rl.runkit.tracker import METRICS_NAME, read_metrics
from l0rl.sparsity import SparsityMethod

RESUMABLE = (
    "resume",
    "halt_after",
    "progress",
    "wandb_mode",
    "total_timesteps",
    "eval_episodes",
    "eval_max_steps",
    "checkpoint_every",
    "log_every",
)
"""What --resume may change: everything else comes from the run and may not be given differently."""
PER_PROCESS = ("resume", "halt_after", "progress")
"""Options of one process, never taken from the run being resumed."""
FORK_FIXED = ("l0_granularity", "l0_drop_rate", "l0_cost", "l0_conv_cost")
"""L0 options that shape the gates or the penalty's prices (restored with the networks): fixed in a fork."""
LOAD_ERRORS = (KeyError, TypeError, AttributeError, ValueError, RuntimeError)
"""What torch's load_state_dict raises on a state that does not fit."""


def forkable(name: str) -> bool:
    """What --fork-from may change: the L0 schedule, strengths and gate training, and what --resume may."""
    return (
        name in RESUMABLE
        or name in ("fork_from", "exp_name", "runs_dir")
        or name.startswith("wandb_")
        or (name.startswith("l0_") and name not in FORK_FIXED)
    )


def _same_algo(ckpt: dict, algo: str, path: Path, verb: str) -> None:
    if ckpt["algo"] != algo:
        raise RunError(
            f"{path} was trained by {ckpt['algo']}, not {algo}; {verb} it with algos/{ckpt['algo']}.py"
        )


def fork(args: Any, algo: str, cli: CommandLine) -> tuple[Any, dict]:
    """The fork's arguments (the source run's, with the forkable ones this command changed) and the
    source's checkpoint, which is only read."""
    source = run_dir_arg(args.fork_from, "--fork-from")
    ckpt = load_checkpoint(source)
    _same_algo(ckpt, algo, source, "fork")
    saved = source_args(ckpt["args"], type(args), source)
    given = {k: v for k, v in cli.given(args).items() if v != saved.get(k, v)}
    defaults = type(args)()
    # a lambda of 0 leaves a network ungated in some algorithms: a fork keeps which networks carry gates
    fixed = [
        k
        for k in given
        if not forkable(k)
        or (k.startswith("l0_lambda") and (given[k] > 0) != (saved.get(k, getattr(defaults, k)) > 0))
    ]
    if fixed:
        raise RunError(
            f"--fork-from keeps the source run's {', '.join('--' + k.replace('_', '-') for k in fixed)}; "
            "a fork may change the L0 options (except its gates' shape and prices), the budget and the bookkeeping"
        )
    own = {k: getattr(args, k) for k in PER_PROCESS} | {"fork_from": str(source), "runs_dir": args.runs_dir}
    args = type(args)(**{**saved, **given, **own})
    if ckpt["global_step"] >= args.total_timesteps:
        raise RunError(
            f"{source} is at step {ckpt['global_step']:,}, past this fork's --total-timesteps "
            f"{args.total_timesteps:,}; pass a larger --total-timesteps"
        )
    return args, ckpt


def resume(args: Any, algo: str, cli: CommandLine) -> tuple[Any, dict, RunLock]:
    """The run's saved arguments with the RESUMABLE ones this command gave, its checkpoint, and the
    lock that keeps a second process from resuming it at the same time."""
    run_dir = run_dir_arg(args.resume, "--resume")
    ckpt_path = run_dir / CHECKPOINT_NAME
    lock = RunLock(run_dir)
    try:
        ckpt = load_checkpoint(run_dir)
        _same_algo(ckpt, algo, run_dir, "resume")
        if not os.stat(ckpt_path).st_mode & stat.S_IWUSR or not os.access(ckpt_path, os.W_OK):
            raise RunError(
                f"{ckpt_path} is read-only, and resuming would replace it; chmod u+w it or copy the run"
            )
        check_writable(run_dir)
        saved, given = check_saved_args(ckpt["args"], type(args), run_dir, known_only=True), cli.given(args)
        changed = [k for k, v in given.items() if k not in RESUMABLE and k in saved and v != saved[k]]
        if changed:
            raise RunError(
                f"--resume keeps the run's own {', '.join('--' + k.replace('_', '-') for k in changed)}; "
                f"only {', '.join('--' + k.replace('_', '-') for k in RESUMABLE[1:])} may change"
            )
        total = given.get("total_timesteps", saved["total_timesteps"])
        if not ckpt["finished"] and ckpt["global_step"] >= total:  # a crafted step: the loop would not run
            raise RunError(
                f"{run_dir} is at step {ckpt['global_step']:,}, past its --total-timesteps {total:,}; pass a "
                "larger --total-timesteps"
            )
        if ckpt["finished"] and total <= saved["total_timesteps"]:
            raise RunError(
                f"{run_dir} has already finished its {saved['total_timesteps']} steps; "
                "pass a larger --total-timesteps to extend it"
            )
    except BaseException:
        lock.release()
        raise
    now = {k: v for k, v in given.items() if k in RESUMABLE} | {k: getattr(args, k) for k in PER_PROCESS}
    return type(args)(**{**saved, **now}), ckpt, lock


def fork_copies(source: Path, step: int) -> dict[str, bytes]:
    """What a fork takes from its source besides the checkpoint: the metrics record up to the fork's
    step, and the replay buffer (plain data, checked against the step when loaded)."""
    copies = {}
    rows = [json.dumps(r) + "\n" for r in read_metrics(source) if r["global_step"] <= step]
    if rows:
        copies[METRICS_NAME] = "".join(rows).encode()
    if os.path.lexists(source / BUFFER_NAME):
        copies[BUFFER_NAME] = read_bytes(source / BUFFER_NAME, TORCH_FILE_LIMIT)
    return copies


class LoopState(dict):
    """The loop state a checkpoint saved; reading a key it lacks is a RunError, not a KeyError."""

    def __missing__(self, key: str) -> Any:
        raise RunError(f"the checkpoint's loop state lacks {key!r}; it is damaged or crafted")


def load_optimizer(optimizer: torch.optim.Optimizer, state: Any, key: str) -> None:
    """Load a saved optimizer state, refused (RunError) unless it fits: the same groups, hyper-
    parameters of the same types (finite numbers), per-parameter tensors shaped like their parameter."""
    kinds = [{k: type(v) for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    # its switches (capturable, foreach, fused, maximize, ...) are this run's own, never the file's
    fixed = [{k: v for k, v in g.items() if v is None or type(v) is bool} for g in optimizer.param_groups]
    try:
        optimizer.load_state_dict(state)
    except (*LOAD_ERRORS, IndexError) as e:
        raise RunError(
            f"the checkpoint's {key} optimizer does not fit this run's: {first_line(e, 200)}"
        ) from None
    for group, flags in zip(optimizer.param_groups, fixed):
        changed = [name for name, v in flags.items() if group.get(name) != v]
        if changed:  # e.g. capturable=True asserts on a CPU at the first step
            raise RunError(
                f"the checkpoint's {key} optimizer has {changed[0]} {group.get(changed[0])!r:.40}, not this "
                "run's; it is damaged or crafted"
            )
    for group, kind in zip(optimizer.param_groups, kinds):
        for name, t in kind.items():
            v = group.get(name)
            numbers = [v] if isinstance(v, int | float) else list(v) if isinstance(v, tuple) else []
            if not (isinstance(v, t) or t is float and type(v) is int) or not all(
                isinstance(x, int | float) and math.isfinite(x) for x in numbers
            ):
                raise RunError(
                    f"the checkpoint's {key} optimizer has {name} {v!r:.40}; it is damaged or crafted"
                )
        for p in group["params"]:
            for name, v in optimizer.state.get(p, {}).items():
                if not isinstance(v, torch.Tensor) or v.dim() > 0 and v.shape != p.shape:
                    raise RunError(
                        f"the checkpoint's {key} optimizer state {name} does not fit its parameter; "
                        "it is damaged or crafted"
                    )


def _fits_loop(key: str, value: Any, want: tuple | None) -> bool:
    """Whether one saved loop value is what a loop saves: a count (an int >= 0), or a batch (`*obs`,
    `*done`): a tensor of finite values (observations floats or uint8 frames), shaped `want` when known."""
    if not key.endswith(("obs", "done")):  # the loops' counters: steps, updates, averaged weights
        return type(value) is int and value >= 0
    if not isinstance(value, torch.Tensor):
        return False
    if value.is_floating_point() and not torch.isfinite(value).all():
        return False
    if key.endswith("obs") and not (value.is_floating_point() or value.dtype == torch.uint8):
        return False
    return want is None or tuple(value.shape) == want


def loop_state(loop: Any, num_envs: int | None, obs_shape: tuple) -> LoopState:
    """The saved loop state, checked (_fits_loop): observation batches (`*obs`) and done flags
    (`*done`) shaped for this run's envs; a key it lacks is a RunError when read."""
    if not isinstance(loop, dict):
        raise RunError("the checkpoint holds no loop state; it is damaged or crafted")
    for k, v in loop.items():
        want = None
        if isinstance(v, torch.Tensor) and num_envs is not None:
            if k.endswith("obs") and obs_shape:
                want = (num_envs, *obs_shape)
            elif k.endswith("done"):
                want = (num_envs,)
        if not _fits_loop(k, v, want):
            shape = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            raise RunError(
                f"the checkpoint's loop state {k!r} ({shape}) does not fit this run; it is damaged or crafted"
            )
    return LoopState(loop)


def restore(
    ckpt: dict,
    forked: bool,
    networks: dict[str, nn.Module],
    optimizers: dict,
    sparsity: SparsityMethod,
    schedulers: dict,
) -> None:
    """Load a checkpoint's networks, optimizers and (not in a fork, whose schedules start afresh from
    its own options at the fork's step) the sparsity method's and other schedulers' state, then the
    RNGs. A part that does not fit this run (damaged or crafted) is a RunError."""
    for key, module in networks.items():
        try:
            module.load_state_dict(ckpt["networks"][key])
        except LOAD_ERRORS as e:  # e.g. a fork that gates a network its source did not
            raise RunError(
                f"the checkpoint's {key} network does not fit this run's: {first_line(e, 200)}"
            ) from None
    for key, opt in optimizers.items():
        rates = [g["lr"] for g in opt.param_groups]
        load_optimizer(opt, ckpt.get("optimizers", {}).get(key), key)
        if forked:  # Adam's moments carry over, the learning rates are the fork's own
            for g, lr in zip(opt.param_groups, rates):
                g["lr"] = lr
    if not forked:
        saved = ckpt.get("schedulers", {})
        try:
            sparsity.load_state_dict(saved)
        except LOAD_ERRORS as e:
            raise RunError(
                f"the checkpoint's sparsity schedule does not fit this run's: {first_line(e, 200)}"
            ) from None
        for key, sched in schedulers.items():
            try:
                sched.load_state_dict(saved[key])
            except LOAD_ERRORS as e:
                raise RunError(
                    f"the checkpoint's {key} schedule does not fit this run's: {first_line(e, 200)}"
                ) from None
    set_rng_state(ckpt.get("rng"))
