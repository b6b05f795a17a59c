"""Starting or resuming a training run: the steps every algorithm file shares around its loop."""

import dataclasses
import json
import os
from typing import Any

from l0rl.runkit.checkpoint import RunError, create_run_dir, load_checkpoint, run_name
from l0rl.runkit.tracker import Tracker

PROCESS_OPTIONS = ("resume", "halt_after", "progress")
"""Arguments that belong to one process, so --resume takes them from the command line, not the run."""


def resume_or_new(args: Any, algo: str) -> tuple[Any, dict | None, str]:
    """Returns (args, checkpoint or None, run name). With --resume, the run's saved arguments come
    back (except PROCESS_OPTIONS) and the checkpoint is validated for this algorithm."""
    if not args.resume:
        return args, None, run_name(args.env_id, args.exp_name, args.seed)
    ckpt = load_checkpoint(args.resume)
    if ckpt["algo"] != algo:
        raise RunError(
            f"{args.resume} was trained by {ckpt['algo']}, not {algo}; resume it with algos/{ckpt['algo']}.py"
        )
    if ckpt.get("finished"):
        raise RunError(
            f"{args.resume} has already finished its {ckpt['args']['total_timesteps']} steps; nothing to resume"
        )
    overrides = {k: getattr(args, k) for k in PROCESS_OPTIONS}
    args = type(args)(**{**ckpt["args"], **overrides})
    return args, ckpt, os.path.basename(os.path.normpath(args.resume))


def env_options(args: Any) -> dict:
    try:
        options = json.loads(args.env_options)
    except json.JSONDecodeError as e:
        raise ValueError(
            f'--env-options must be a JSON object such as \'{{"reward_type": "dense"}}\' ({e})'
        ) from e
    if not isinstance(options, dict):
        raise ValueError('--env-options must be a JSON object such as \'{"reward_type": "dense"}\'')
    return options


def open_run(args: Any, algo: str, name: str, ckpt: dict | None) -> tuple[str, Tracker]:
    """Create the run directory (or reuse the resumed one) and start its tracker; call it after
    everything that can reject the arguments, so a bad command leaves no directory behind."""
    run_dir = args.resume if ckpt else str(create_run_dir(args.runs_dir, name))
    tracker = Tracker(
        run_dir,
        name,
        config=dataclasses.asdict(args),
        wandb_mode=args.wandb_mode,
        project=args.wandb_project,
        entity=args.wandb_entity,
        group=args.wandb_group or args.env_id,
        tags=[args.env_id, algo, "l0" if args.l0 else "dense"],
        wandb_id=ckpt.get("wandb_id") if ckpt else None,
        resume_step=ckpt["global_step"] if ckpt else None,
    )
    return run_dir, tracker
