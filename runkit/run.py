"""One training run's plumbing, the same in every algorithm: the arguments they all share, starting
or resuming, the run directory and its lock, logging and progress, checkpoints, the final evaluation
and the closing summary line. An algorithm file keeps only what is its own.

    run = Run(args, ALGO)                 # validates; on --resume/--fork-from loads the checkpoint
    args = run.args
    ...build envs and networks...
    run.open(obs_space, action_space, total_steps, policy)  # checks the policy; run directory, tracker
    loop = run.restore(networks, optimizers, sparsity)   # None on a new run
    ...the loop: run.log_episodes / run.log / run.due / run.checkpoint / run.halting...
    return run.finish(global_step, policy, device)

Every cadence (--checkpoint-every, --log-every, --halt-after) counts env steps, in every algorithm.

Ctrl-C (SIGINT) or SIGTERM during training: the current iteration (vector step, for the off-policy
algorithms) finishes, a checkpoint is written atomically, the resume command is printed and the
process exits with 130 (SIGINT) or 143 (SIGTERM); run.halting() is what the loop asks, as for
--halt-after. A second Ctrl-C aborts at once (exit 130): checkpoints are written to a temporary file
and renamed, so the last complete one stays.
"""

import contextlib
import dataclasses
import json
import math
import os
import signal
import stat
import sys
import threading
import time
import types
import typing
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from l0rl.envs.mario import FLAG, FURTHEST_X
from l0rl.envs.registry import family, resolve_env_id
from l0rl.errors import Interrupted, NonFiniteError, UsageError
from l0rl.policy import policy_record
from l0rl.runkit.checkpoint import (
    CHECKPOINT_NAME,
    FORMAT_VERSION,
    RunError,
    RunLock,
    check_exp_name,
    check_writable,
    create_run_dir,
    load_checkpoint,
    load_env_state,
    remove_stale_temps,
    restorable_envs,
    resume_key,
    rng_state,
    run_name,
    save_checkpoint,
    set_rng_state,
)
from l0rl.runkit.evaluate import EVAL_SEED_OFFSET, eval_metrics, evaluate
from l0rl.runkit.files import TORCH_FILE_LIMIT, atomic_write_bytes, read_bytes
from l0rl.runkit.progress import Progress, duration
from l0rl.runkit.replay import BUFFER_NAME
from l0rl.runkit.tracker import (
    METRICS_NAME,
    Tracker,
    has_wandb_key,
    reachable_mode,
    read_metrics,
    resolve_wandb_mode,
    variant_group,
)
from l0rl.sparsity import METHODS, SparsityMethod, sparsity_stats

VIDEO_DIR = "videos"
"""Where --capture-video records, inside the run directory."""
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
ESTIMATE_AFTER_S = 10.0
"""The time-left line comes at the first log call after this much training."""
SHORT_BUDGET = 0.5
"""Below this share of the budget the L0 defaults were tuned for, a run starts with a warning."""


@dataclass
class RunArgs:
    """Arguments every l0rl algorithm has; an algorithm's Args adds its own below these."""

    exp_name: str | None = None
    """the name of this experiment (part of the run name; default <algo>_<sparsity>: ppo_l0, ppo_gmp, ppo_dense)"""
    seed: int = 1
    """seed of the experiment"""
    torch_deterministic: bool = True
    """if toggled, `torch.backends.cudnn.deterministic=True`"""
    cuda: bool = True
    """if toggled, cuda is used when available"""
    wandb_mode: Literal["auto", "online", "offline", "disabled"] = "auto"
    """W&B mode: auto (online with an API key and a reachable server, else offline), online, offline, disabled"""
    track: bool = False
    """CleanRL's spelling of W&B on: the same as --wandb-mode online (W&B logs anyway by default: online
    with an API key, else offline)"""
    wandb_project: str = "l0rl"
    """the W&B project"""
    wandb_entity: str | None = None
    """the W&B entity (team)"""
    wandb_group: str | None = None
    """the W&B group (default: <env_id>__<exp_name>, one per variant, so W&B's grouped view never
    averages dense, L0 and GMP runs together)"""
    runs_dir: str = "runs"
    """where run directories are created"""
    capture_video: bool = False
    """whether to capture videos of the agent (first env) into <run dir>/videos (and to W&B when it logs)"""
    progress: bool = True
    """show progress (a bar on a terminal, plain lines otherwise)"""
    checkpoint_every: int = 50_000
    """write a checkpoint every N env steps (and always at the end or when halting)"""
    log_every: int = 1_000
    """log losses and sparsity statistics every N env steps"""
    resume: str | None = None
    """continue the run in this directory from its checkpoint, with its saved arguments"""
    fork_from: str | None = None
    """start a new run from this run's checkpoint (weights, gates, optimizers, step, history) with other
    L0 options, e.g. a stronger lambda once the sparsity has plateaued; the source run is only read"""
    halt_after: int | None = None
    """stop this process after N more env steps (checkpointed; continue later with --resume)"""
    eval_episodes: int = 10
    """evaluation episodes at the end (deterministic gates)"""
    eval_greedy: bool = True
    """evaluate with the argmax action (else sample from the policy) for discrete actions"""
    eval_max_steps: int | None = None
    """cap on steps per evaluation episode (a greedy policy can stall until a game clock ends)"""
    env_id: str = "CartPole-v1"
    """the id of the environment"""
    env_options: str = "{}"
    """JSON dict of environment options, e.g. '{"reward_type": "dense"}' for NeedleReach-v0"""
    total_timesteps: int = 500_000
    """total timesteps of the experiments"""
    sparsity: Literal[tuple(METHODS)] = "l0"
    """how the networks become sparse: l0 (learned gates), gmp (gradual magnitude pruning), none (dense)"""
    l0: bool = True
    """--no-l0 is shorthand for --sparsity none (the dense baseline)"""
    # the L0 options every algorithm shares (its lambdas are its own)
    l0_granularity: Literal["weight", "unit", "mixed"] = "weight"
    """L0: 'weight' (unstructured), 'unit' (whole neurons/channels) or 'mixed' (conv channels per unit,
    Linear layers per weight); output layers stay per weight"""
    l0_drop_rate: float = 0.3
    """L0: initial drop rate of the gates, in (0, 1)"""
    l0_lr: float = 1e-2
    """L0: learning rate of the gate parameters log_alpha (own optimizer group, no weight decay)"""
    l0_schedule: Literal["constant", "linear", "cosine", "target"] = "linear"
    """L0: sparsity-map schedule: constant, linear, cosine (warm-up then ramp) or target (dual ascent)"""
    l0_warmup: float = 0.1
    """L0: fraction of training with lambda = 0"""
    l0_ramp_end: float = 0.5
    """L0: fraction of training at which lambda reaches its full value (linear/cosine)"""
    l0_target_sparsity: float = 0.9
    """L0: target sparsity of each gated network (target schedule)"""
    l0_target_at: float = 0.6
    """L0: fraction of training by which the target sparsity is reached (target schedule)"""
    l0_dual_lr: float = 0.05
    """L0: step size of the dual ascent on log(lambda) per scheduler step (target schedule)"""
    l0_target_hold: bool = False
    """L0: target schedule: hold lambda at its start value (not 0) until --l0-warmup, then steer from the
    sparsity reached there to the target by --l0-target-at (which may equal --l0-warmup: at once)"""
    gmp_target: float = 0.9
    """GMP: final sparsity of each pruned network, in (0, 1)"""
    gmp_start: float = 0.2
    """GMP: fraction of training at which pruning starts"""
    gmp_end: float = 0.8
    """GMP: fraction of training by which the target sparsity is reached"""
    gmp_every: int = 100
    """GMP: recompute the masks every N optimizer steps"""


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
FORK_FIXED = ("l0_granularity", "l0_drop_rate", "l0_cost", "l0_conv_cost")
"""L0 options that shape the gates or the penalty's prices (restored with the networks): fixed in a fork."""


def forkable(name: str) -> bool:
    """What --fork-from may change: the L0 schedule, strengths and gate training, and what --resume may."""
    return (
        name in RESUMABLE
        or name in ("fork_from", "exp_name", "runs_dir")
        or name.startswith("wandb_")
        or (name.startswith("l0_") and name not in FORK_FIXED)
    )


EVAL_DEFAULTS = {"mario": {"eval_greedy": False, "eval_max_steps": 3000}}
"""Evaluation defaults per env family (see parse_args). The Mario emulator is deterministic: greedy episodes from one
start are one episode repeated, and a greedy policy that stalls plays until the game clock ends, so
Mario is evaluated with sampled actions and at most 3000 agent steps (200 s of game time)."""
"""Options of one process, never taken from the run being resumed."""


SEED_LIMIT = 2**31
"""--seed must be in [0, SEED_LIMIT): numpy seeds take 32 bits, and env seeds add offsets to it."""


def _fits(value: Any, hint: Any) -> bool:
    """Whether a saved argument has the type its Args field declares (bool is not an int here)."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        return isinstance(value, str) and value in typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return type(value) in (int, float)
    return type(value) is hint


def check_saved_args(saved: dict, args_cls: type, path: Path, known_only: bool) -> dict:
    """A checkpoint's saved arguments that `args_cls` knows, each of its field's type (a crafted or
    damaged file is a RunError). known_only: refuse an option this l0rl does not know (a resume
    must use every saved option; a fork keeps only the ones it knows)."""
    hints = typing.get_type_hints(args_cls)
    names = {f.name for f in dataclasses.fields(args_cls)}
    unknown = sorted(k for k in saved if k not in names)
    if unknown and known_only:
        raise RunError(
            f"{path} was trained with --{unknown[0].replace('_', '-')}, which this l0rl does not know; "
            "resume it with the l0rl version that wrote it"
        )
    for k, v in saved.items():
        if k in names and not _fits(v, hints[k]):
            shown = repr(v) if len(repr(v)) <= 40 else repr(v)[:37] + "..."
            raise RunError(
                f"{path}: its saved --{k.replace('_', '-')} is {shown}, not {hints[k]}; the checkpoint is "
                "damaged or not l0rl's"
            )
    return {k: v for k, v in saved.items() if k in names}


def _source_args(saved: dict, args_cls: type, path: Path) -> dict:
    """A fork source's saved arguments that this version's Args knows (type-checked), less its own
    provenance and its runs directory (a fork lands in the command's --runs-dir)."""
    known = check_saved_args(saved, args_cls, path, known_only=False)
    return {k: v for k, v in known.items() if k not in ("resume", "fork_from", "runs_dir")}


def _checkpoint_dir(path: str, flag: str) -> Path:
    """The run directory `path` names, or a one-line RunError that says what to pass."""
    run_dir = Path(path)
    if not run_dir.is_dir():
        raise RunError(f"{flag} {run_dir}: not a run directory; pass runs/<run_name>")
    return run_dir


def crossed(global_step: int, stride: int, every: int) -> int:
    """How many multiples of `every` going from global_step - stride to global_step passed (0 when
    none, so it reads as a bool too)."""
    return global_step // every - (global_step - stride) // every


def check_loss(loss: torch.Tensor, global_step: int) -> None:
    """Stop (NonFiniteError) before a NaN/inf loss reaches the weights; call it before each
    optimizer step (losses are logged only every --log-every env steps)."""
    if not torch.isfinite(loss).all():
        raise NonFiniteError.at(global_step, f"the loss is {loss.detach().flatten()[0].item()}")


def validate(
    args: Any,
    positive: tuple[str, ...] = (),
    at_least_one: tuple[str, ...] = (),
    unit: tuple[str, ...] = (),
    non_negative: tuple[str, ...] = (),
):
    """Refuse (UsageError) a field <= 0 in `positive`, < 1 in `at_least_one`, outside (0, 1] in `unit`,
    < 0 in `non_negative`."""
    for name in non_negative:
        if getattr(args, name) < 0:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    for name in positive:
        if not getattr(args, name) > 0:
            raise UsageError(f"--{name.replace('_', '-')} must be > 0, got {getattr(args, name)}")
    for name in at_least_one:
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    for name in unit:
        if not 0.0 < getattr(args, name) <= 1.0:
            raise UsageError(f"--{name.replace('_', '-')} must be in (0, 1], got {getattr(args, name)}")


def _given(args: Any) -> dict[str, Any]:
    """Fields whose value differs from the defaults the command line was parsed against (those of
    its env family and env, see parse_args; else the dataclass's): what the command line set."""
    defaults = getattr(args, "_baseline", None) or type(args)()
    return {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(args)
        if getattr(args, f.name) != getattr(defaults, f.name)
    }


def _resolve_sparsity(args: Any) -> Any:
    given = _given(args)
    if not args.l0:
        if args.sparsity == "gmp":
            raise UsageError("--no-l0 (dense) contradicts --sparsity gmp; pass one of them")
        args.sparsity = "none"
    args.l0 = args.sparsity == "l0"
    for prefix, kind in (("l0_", "l0"), ("gmp_", "gmp")):
        stray = [k for k in given if k.startswith(prefix)]
        if stray and args.sparsity != kind:
            flags = ", ".join("--" + k.replace("_", "-") for k in stray)
            raise UsageError(
                f"{flags} appl{'y' if len(stray) > 1 else 'ies'} to --sparsity {kind} only, and this run is --sparsity {args.sparsity}"
            )
    return args


def parse_env_options(text: str) -> dict:
    try:
        options = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(
            f'--env-options must be a JSON object such as \'{{"reward_type": "dense"}}\' ({e})'
        ) from None
    if not isinstance(options, dict):
        raise UsageError('--env-options must be a JSON object such as \'{"reward_type": "dense"}\'')
    return options


def default_sources(env_id: str, algo_defaults: dict[str, dict] | None = None) -> list[tuple[str, dict]]:
    """Where `env_id`'s defaults differ from the dataclass's, named, in the order they apply: the
    evaluation defaults above, then the algorithm's own for the family (e.g. {"mario": {"num_envs": 8}}),
    then those of the environment itself (keyed by its canonical id, e.g. "Acrobot-v1")."""
    canonical = resolve_env_id(env_id)
    fam = family(canonical)
    own = algo_defaults or {}
    sources = [
        (f"{fam} evaluation", EVAL_DEFAULTS.get(fam, {})),
        (f"{fam} family", own.get(fam, {})),
        (canonical, own.get(canonical, {})),
    ]
    return [(name, values) for name, values in sources if values]


def family_defaults(args_cls: type, env_id: str, algo_defaults: dict[str, dict] | None = None) -> Any:
    """An Args instance holding the defaults for `env_id` (see default_sources)."""
    values = {k: v for _, part in default_sources(env_id, algo_defaults) for k, v in part.items()}
    return dataclasses.replace(args_cls(), env_id=env_id, **values)


def _tyro_cli(args_cls: type, argv: list[str], default: Any = None) -> Any:
    """tyro.cli, with its boxed error (unknown flag, invalid choice) turned into our one line."""
    import io
    from contextlib import redirect_stderr

    import tyro

    captured = io.StringIO()
    try:
        with redirect_stderr(captured):
            return tyro.cli(args_cls, args=argv, default=default)
    except SystemExit as e:
        if not e.code:
            raise
        text = [line.strip("│╭╮╰╯─ ") for line in captured.getvalue().splitlines()]
        body = []
        for line in text[1:]:  # the first line is the box title
            if not line:
                break
            body.append(line)
        message = " ".join(body) or captured.getvalue().strip()
        print(f"{os.path.basename(sys.argv[0])}: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2) from None


def parse_args(
    args_cls: type, algo_defaults: dict[str, dict] | None = None, argv: list[str] | None = None
) -> Any:
    """The command line parsed with the defaults of its --env-id's family, so that
    `python algos/ppo_l0.py --env-id SuperMarioBros-7-1-v0` alone runs the measured Mario
    configuration while every flag given explicitly still wins (and --help shows those defaults).
    A malformed command line (unknown flag, invalid choice) is one line on stderr, exit 2."""
    argv = sys.argv[1:] if argv is None else argv
    first = _tyro_cli(args_cls, [a for a in argv if a not in ("-h", "--help")])
    if first.resume:
        return first
    if first.fork_from:  # the source run's arguments are the defaults: a flag is a change to them
        source = _checkpoint_dir(first.fork_from, "--fork-from")
        baseline = args_cls(**_source_args(load_checkpoint(source)["args"], args_cls, source))
    else:
        baseline = family_defaults(args_cls, first.env_id, algo_defaults)
    args = _tyro_cli(args_cls, argv, default=baseline)
    # a family default is no flag: `--env-id SuperMarioBros-7-1-v0 --no-l0` sets no L0 option
    object.__setattr__(args, "_baseline", baseline)
    if not first.fork_from:  # named at the start of the run
        object.__setattr__(args, "_defaults_from", default_sources(first.env_id, algo_defaults))
    return args


def _check_common(args: Any) -> None:
    for f in dataclasses.fields(args):  # NaN passes every comparison below: refuse it (and inf) first
        value = getattr(args, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise UsageError(f"--{f.name.replace('_', '-')} must be a finite number, got {value}")
    if not 0 <= args.seed < SEED_LIMIT:
        raise UsageError(f"--seed must be in [0, 2**31), got {args.seed}")
    check_exp_name(args.exp_name)
    validate(args, at_least_one=("total_timesteps", "checkpoint_every", "log_every", "gmp_every"))
    if args.halt_after is not None and args.halt_after < 1:
        raise UsageError(f"--halt-after must be >= 1 env step, got {args.halt_after}")
    if args.eval_episodes < 0:
        raise UsageError(f"--eval-episodes must be >= 0, got {args.eval_episodes}")
    if args.eval_max_steps is not None and args.eval_max_steps < 1:
        raise UsageError(f"--eval-max-steps must be >= 1, got {args.eval_max_steps}")
    METHODS[args.sparsity].check_args(args, _given(args))


def _resolve_track(args: Any) -> Any:
    """--track (CleanRL's W&B switch) as the mode it means: online."""
    if args.track:
        if args.wandb_mode not in ("auto", "online"):
            raise UsageError(
                f"--track turns W&B on and contradicts --wandb-mode {args.wandb_mode}; pass one of them"
            )
        if not has_wandb_key():
            raise UsageError(
                "--track logs to W&B online and needs an API key (wandb login, or WANDB_API_KEY); without "
                "--track l0rl logs offline, for `wandb sync` later"
            )
        args.wandb_mode, args.track = "online", False
    return args


def _calling_file(depth: int) -> str:
    """The source file `depth` frames up (an algorithm's train(), a copied or renamed one included),
    from the working directory where it lies below it: what the hints tell the user to run."""
    path = Path(sys._getframe(depth + 1).f_code.co_filename).resolve()
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd().resolve()))
    return str(path)


def _first(e: BaseException) -> str:
    return str(e).splitlines()[0][:200] if str(e) else type(e).__name__


class LoopState(dict):
    """The loop state a checkpoint saved; reading a key it lacks is a RunError, not a KeyError."""

    def __missing__(self, key: str) -> Any:
        raise RunError(f"the checkpoint's loop state lacks {key!r}; it is damaged or crafted")


def guard_step(optimizer: torch.optim.Optimizer) -> None:
    """Make `optimizer.step()` stop training (NonFiniteError, exit 3) when it overflows or leaves a
    parameter NaN/inf: a learning rate such as 1e38 diverges within a step, before a loss shows it."""
    step = optimizer.step
    params = [p for g in optimizer.param_groups for p in g["params"]]

    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            out = step(*args, **kwargs)
        except RuntimeError as e:  # torch's "value cannot be converted to type float without overflow"
            if "overflow" not in str(e):
                raise
            raise NonFiniteError.at(None, f"the optimizer step overflowed ({_first(e)})") from None
        with torch.no_grad():  # one sum per tensor: inf or NaN when any element is (or when it overflows)
            finite = bool(torch.isfinite(torch.stack([p.sum() for p in params]).sum()))
        if not finite:
            raise NonFiniteError.at(None, "an optimizer step made a parameter NaN/inf")
        return out

    optimizer.step = guarded


def load_optimizer(optimizer: torch.optim.Optimizer, state: Any, key: str) -> None:
    """Load a saved optimizer state, refused (RunError) unless it fits: the same groups, hyper-
    parameters of the same types (finite numbers), per-parameter tensors shaped like their parameter."""
    kinds = [{k: type(v) for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    try:
        optimizer.load_state_dict(state)
    except (KeyError, TypeError, AttributeError, ValueError, RuntimeError, IndexError) as e:
        raise RunError(f"the checkpoint's {key} optimizer does not fit this run's: {_first(e)}") from None
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


class Run:
    """The plumbing of one training process (see the module docstring)."""

    def __init__(self, args: Any, algo: str):
        self.algo, self.ckpt, self._lock, self.forked = algo, None, None, False
        self.tracker: Tracker | None = None
        self.script = _calling_file(1)
        self.run_dir: Path | None = None
        self._stop_signal: int | None = None
        self._handlers: dict = {}
        self._checkpoint_step: int | None = None
        args = _resolve_track(_resolve_sparsity(args))
        if args.resume and args.fork_from:
            raise UsageError("--resume continues a run and --fork-from starts a new one from it; pass one")
        if args.fork_from:
            args = self._fork(args)
            self.name = run_name(args.env_id, args.exp_name, args.seed)
        elif args.resume:
            args = self._resume(args)
            self.name = os.path.basename(os.path.normpath(args.resume))
        else:
            if args.exp_name is None:
                args.exp_name = (
                    f"{algo.removesuffix('_l0')}_{'dense' if args.sparsity == 'none' else args.sparsity}"
                )
            self.name = run_name(args.env_id, args.exp_name, args.seed)
        _check_common(args)
        # before anything exists: online without a key, or without an answer, is refused (auto: offline)
        if resolve_wandb_mode(args.wandb_mode) == "online":
            reachable_mode(explicit=args.wandb_mode == "online")
        resume_key()  # a key file that breaks its rules is refused now, not at the first checkpoint
        self.env_options = parse_env_options(args.env_options)
        self.args = args
        kind = {"l0": None, "none": "dense"}.get(args.sparsity, args.sparsity)  # any registered method
        self.label = f"{algo.removesuffix('_l0')} ({kind})" if kind else algo  # closing lines: ppo (dense)
        self._planned_dir = Path(args.resume) if args.resume else Path(args.runs_dir) / self.name
        self.global_step = self.start_step = self.ckpt["global_step"] if self.ckpt else 0
        self.recent_returns: list[float] = []
        self.recent_successes: list[float] = []  # goal envs (info "is_success"): the last 20 episodes
        self.recent_x: list[int] = []  # Mario: the furthest x of the last 20 episodes

    def _fork(self, args: Any) -> Any:
        """The source run's arguments with the forkable ones this command changed (parse_args made the
        source's arguments the defaults); loads the checkpoint, which is only read."""
        source = _checkpoint_dir(args.fork_from, "--fork-from")
        ckpt = load_checkpoint(source)
        if ckpt["algo"] != self.algo:
            raise RunError(
                f"{source} was trained by {ckpt['algo']}, not {self.algo}; fork it with algos/{ckpt['algo']}.py"
            )
        saved = _source_args(ckpt["args"], type(args), source)
        given = {k: v for k, v in _given(args).items() if v != saved.get(k, v)}
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
        own = {k: getattr(args, k) for k in PER_PROCESS} | {
            "fork_from": str(source),
            "runs_dir": args.runs_dir,
        }
        args = type(args)(**{**saved, **given, **own})
        if ckpt["global_step"] >= args.total_timesteps:
            raise RunError(
                f"{source} is at step {ckpt['global_step']:,}, past this fork's --total-timesteps "
                f"{args.total_timesteps:,}; pass a larger --total-timesteps"
            )
        self.ckpt, self.forked = ckpt, True
        return args

    def _resume(self, args: Any) -> Any:
        """The saved arguments, with RESUMABLE ones taken from the command line; locks the run."""
        run_dir = _checkpoint_dir(args.resume, "--resume")
        ckpt_path = run_dir / CHECKPOINT_NAME
        self._lock = RunLock(run_dir)
        ckpt = load_checkpoint(run_dir)
        if ckpt["algo"] != self.algo:
            raise RunError(
                f"{run_dir} was trained by {ckpt['algo']}, not {self.algo}; resume it with algos/{ckpt['algo']}.py"
            )
        if not os.stat(ckpt_path).st_mode & stat.S_IWUSR or not os.access(ckpt_path, os.W_OK):
            raise RunError(
                f"{ckpt_path} is read-only, and resuming would replace it; chmod u+w it or copy the run"
            )
        check_writable(run_dir)
        saved, given = check_saved_args(ckpt["args"], type(args), run_dir, known_only=True), _given(args)
        changed = [k for k, v in given.items() if k not in RESUMABLE and k in saved and v != saved[k]]
        if changed:
            raise RunError(
                f"--resume keeps the run's own {', '.join('--' + k.replace('_', '-') for k in changed)}; "
                f"only {', '.join('--' + k.replace('_', '-') for k in RESUMABLE[1:])} may change"
            )
        if (
            ckpt["finished"]
            and given.get("total_timesteps", saved["total_timesteps"]) <= saved["total_timesteps"]
        ):
            raise RunError(
                f"{run_dir} has already finished its {saved['total_timesteps']} steps; "
                "pass a larger --total-timesteps to extend it"
            )
        self.ckpt = ckpt
        now = {k: v for k, v in given.items() if k in RESUMABLE} | {k: getattr(args, k) for k in PER_PROCESS}
        return type(args)(**{**saved, **now})

    @property
    def video_dir(self) -> str:
        """Where --capture-video records: the run directory's videos/ (pass it to make_vector_env)."""
        return str(self._planned_dir / VIDEO_DIR)

    def _check_policy(self, policy: nn.Module, obs_space: Any, action_space: Any) -> None:
        """The policy contract (l0rl/policy.py), checked before any training: one line naming the module."""
        try:
            policy_record(policy, obs_space, action_space, METHODS[self.args.sparsity].kind)
        except ValueError as e:
            raise UsageError(f"{self.script}: the deployable policy breaks the contract: {e}") from None

    def _new_run_dir(self) -> Path:
        planned = self._planned_dir
        # --capture-video: gymnasium's recorder made <run>/videos/ when the envs were built, just before
        if (
            self.args.capture_video
            and planned.is_dir()
            and [p.name for p in planned.iterdir()] == [VIDEO_DIR]
        ):
            check_writable(planned)
            return planned
        return create_run_dir(self.args.runs_dir, self.name)

    def open(
        self, obs_space: Any, action_space: Any, total_steps: int, policy: nn.Module | None = None
    ) -> None:
        """Check the deployable policy against the policy contract, create the run directory (or reuse
        the resumed one), start its tracker and the progress display, say where the run lives, what
        it will be and what a stop signal does. Call it after everything that can reject the
        arguments, so a bad command leaves no directory behind."""
        a = self.args
        if policy is not None:
            self._check_policy(policy, obs_space, action_space)
        if self.ckpt is None or self.forked:
            copies = self._fork_copies() if self.forked else {}  # read (and refused) before anything exists
            self.run_dir = self._new_run_dir()
            self._lock = RunLock(self.run_dir)
            for name, data in copies.items():
                atomic_write_bytes(self.run_dir / name, data)
        else:
            self.run_dir = Path(a.resume)
            remove_stale_temps(self.run_dir)
        self.spaces, self.total_steps = (obs_space, action_space), total_steps
        self.tracker = Tracker(
            self.run_dir,
            self.name,
            config=dataclasses.asdict(a),
            wandb_mode=a.wandb_mode,
            project=a.wandb_project,
            entity=a.wandb_entity,
            group=a.wandb_group or variant_group(a.env_id, a.exp_name),
            tags=[a.env_id, self.algo, a.sparsity],
            wandb_id=self.ckpt.get("wandb_id") if self.ckpt and not self.forked else None,
            resume_step=self.start_step if self.ckpt else None,  # a fork drops its source's later rows
            tensorboard=True,
        )
        videos = self.run_dir / VIDEO_DIR
        self._videos_logged = {p.name for p in videos.glob("*.mp4")} if videos.is_dir() else set()
        verb = f"resuming at step {self.start_step:,}" if self.ckpt else "run directory"
        if self.forked:
            verb = f"forked from {a.fork_from} at step {self.start_step:,}: run directory"
        self._catch_stop_signals()  # before the lines below: once they are out, Ctrl-C stops cleanly
        say = f"{self.label} {a.env_id}"
        print(f"{say}: {verb} {self.run_dir}", file=sys.stderr, flush=True)
        print(f"{say}: {self._plan(total_steps)}", file=sys.stderr, flush=True)
        self._warn_short_budget()
        self.progress = Progress(total_steps, self.start_step, a.progress, desc=say)
        self.start_time = time.time()
        self._estimated = False

    def _plan(self, total_steps: int) -> str:
        """What the run will be: its budget and the defaults it runs with (which family's, named)."""
        left = f" ({total_steps - self.start_step:,} to go)" if self.start_step else ""
        budget = f"budget {total_steps:,} env steps{left}"
        if self.ckpt is not None:
            return f"{budget}, with the arguments of {'its source' if self.forked else 'the run'}"
        sources = getattr(self.args, "_defaults_from", None)
        if sources is None:
            return f"{budget}, with the arguments given"
        if not sources:
            return f"{budget}; defaults: {self.algo}'s own (no family defaults for {self.args.env_id})"
        named = "; ".join(
            f"{name}: " + ", ".join(f"{k}={v}" for k, v in values.items()) for name, values in sources
        )
        return f"{budget}; defaults: {self.algo}'s, with its {named} (flags given win)"

    def _warn_short_budget(self) -> None:
        """Warn when a new L0 run with the L0 defaults has far fewer steps than they were tuned for."""
        a, baseline = self.args, getattr(self.args, "_baseline", None)
        if self.ckpt is not None or baseline is None or a.sparsity != "l0":
            return
        tuned = baseline.total_timesteps
        if a.total_timesteps >= SHORT_BUDGET * tuned or any(k.startswith("l0_") for k in _given(a)):
            return
        print(
            f"warning: --total-timesteps {a.total_timesteps:,} is {a.total_timesteps / tuned:.0%} of the {tuned:,} "
            f"steps {self.algo}'s L0 defaults for {a.env_id} were tuned for; the gates close over many updates, "
            "so expect far less sparsity (possibly none) and compare the return with a dense run of the same "
            "budget; for a short run pass a stronger --l0-lambda-* or --l0-lr, or the tuned --total-timesteps",
            file=sys.stderr,
            flush=True,
        )

    def _catch_stop_signals(self) -> None:
        """SIGINT and SIGTERM end training at the next halting() check (see the module docstring)."""
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set in the main thread; the defaults stay
        # through a weak reference: a handler holding the Run would keep a crashed run locked in-process
        method = weakref.WeakMethod(self._on_stop_signal)

        def on_signal(signum: int, frame: Any) -> None:
            if (handler := method()) is not None:
                handler(signum, frame)

        self._handlers = {s: signal.signal(s, on_signal) for s in STOP_SIGNALS}

    def _on_stop_signal(self, signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        if self._stop_signal is None:
            self._stop_signal = signum
            print(
                f"\n{self.label}: {name}: stopping after this step with a checkpoint; "
                "Ctrl-C again aborts at once (the last checkpoint stays)",
                file=sys.stderr,
                flush=True,
            )
            return
        if self._checkpoint_step is None:
            last = "no checkpoint was written yet: start the run again"
        else:
            last = f"its last checkpoint (step {self._checkpoint_step:,}) is intact: {self._resume_hint()}"
        raise Interrupted(signum, f"aborted by a second {name}; {last}")

    def _resume_hint(self) -> str:
        return f"python {self.script} --resume {self.run_dir}"

    def _fork_copies(self) -> dict[str, bytes]:
        """What a fork takes from its source besides the checkpoint: the metrics record up to the
        fork's step, and the replay buffer (plain data, checked against the step when loaded)."""
        source, copies = Path(self.args.fork_from), {}
        rows = [json.dumps(r) + "\n" for r in read_metrics(source) if r["global_step"] <= self.start_step]
        if rows:
            copies[METRICS_NAME] = "".join(rows).encode()
        if os.path.lexists(source / BUFFER_NAME):
            copies[BUFFER_NAME] = read_bytes(source / BUFFER_NAME, TORCH_FILE_LIMIT)
        return copies

    def restore(
        self,
        networks: dict[str, nn.Module],
        optimizers: dict,
        sparsity: SparsityMethod,
        schedulers: dict | None = None,
    ) -> dict | None:
        """On --resume: load networks, optimizers, the sparsity method's state, any other schedulers'
        (e.g. DQN's KeepBest) and RNGs; returns the loop state the algorithm saved (None on a new run).
        Every optimizer's step is guarded (guard_step); a checkpoint part that does not fit this run
        (damaged or crafted) is a RunError."""
        for opt in optimizers.values():
            guard_step(opt)
        if self.ckpt is None:
            return None
        ckpt = self.ckpt
        for key, module in networks.items():
            try:
                module.load_state_dict(ckpt["networks"][key])
            except (KeyError, TypeError, AttributeError, ValueError, RuntimeError) as e:
                # e.g. a fork that gates a network its source did not
                raise RunError(
                    f"the checkpoint's {key} network does not fit this run's: {_first(e)}"
                ) from None
        for key, opt in optimizers.items():
            rates = [g["lr"] for g in opt.param_groups]
            load_optimizer(opt, ckpt.get("optimizers", {}).get(key), key)
            if self.forked:  # Adam's moments carry over, the learning rates are the fork's own
                for g, lr in zip(opt.param_groups, rates):
                    g["lr"] = lr
        if not self.forked:  # a fork's schedules start afresh from its own options at the fork's step
            saved = ckpt.get("schedulers", {})
            try:
                sparsity.load_state_dict(saved)
            except (KeyError, TypeError, AttributeError, ValueError, RuntimeError) as e:
                raise RunError(
                    f"the checkpoint's sparsity schedule does not fit this run's: {_first(e)}"
                ) from None
            for key, sched in (schedulers or {}).items():
                try:
                    sched.load_state_dict(ckpt.get("schedulers", {})[key])
                except (KeyError, TypeError, AttributeError, ValueError, RuntimeError) as e:
                    raise RunError(
                        f"the checkpoint's {key} schedule does not fit this run's: {_first(e)}"
                    ) from None
        set_rng_state(ckpt.get("rng"))
        return self._loop_state(ckpt.get("loop"))

    def _loop_state(self, loop: Any) -> "LoopState":
        """The saved loop state, checked: numbers and tensors only, observation batches (`*obs`) and
        done flags (`*done`) shaped for this run's envs; a key it lacks is a RunError when read."""
        if not isinstance(loop, dict):
            raise RunError("the checkpoint holds no loop state; it is damaged or crafted")
        envs, obs_shape = getattr(self.args, "num_envs", None), self.spaces[0].shape
        for k, v in loop.items():
            want = None
            if isinstance(v, torch.Tensor) and envs is not None:
                want = (
                    (envs, *obs_shape)
                    if k.endswith("obs") and obs_shape
                    else (envs,)
                    if k.endswith("done")
                    else None
                )
            ok = isinstance(v, torch.Tensor | int | float | bool) and (want is None or tuple(v.shape) == want)
            if not ok:
                shape = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
                raise RunError(
                    f"the checkpoint's loop state {k!r} ({shape}) does not fit this run; it is damaged or crafted"
                )
        return LoopState(loop)

    def resumed_envs(self, envs: Any) -> Any:
        """The exact vector env saved with the checkpoint (closing `envs`), or None when it was not
        saved (Box2D, emulators): the algorithm then restarts the episodes in flight."""
        # a fork restarts its episodes: its source's pickled envs may come from anyone, and a pickle runs code
        saved = load_env_state(self.run_dir, self.ckpt) if self.ckpt and not self.forked else None
        if saved is not None:
            envs.close()
        return saved

    def due(self, global_step: int, stride: int, every: int) -> int:
        """How many multiples of `every` env steps this stride passed (see crossed)."""
        return crossed(global_step, stride, every)

    def halting(self, global_step: int) -> bool:
        """True once this process has run its --halt-after env steps, or a stop signal came."""
        if self._stop_signal is not None:
            return True
        return self.args.halt_after is not None and global_step - self.start_step >= self.args.halt_after

    def should_checkpoint(self, global_step: int, stride: int) -> bool:
        return bool(
            crossed(global_step, stride, self.args.checkpoint_every)
            or global_step >= self.total_steps
            or self.halting(global_step)
        )

    def log_episodes(self, infos: dict, global_step: int) -> None:
        """Log every episode that ended in this vector step (RecordEpisodeStatistics infos), for goal
        envs the success rate over the last 20 episodes, and for Mario each episode's furthest x and flag."""
        final_info = infos.get("final_info", {})
        for i in np.nonzero(final_info.get(f"_{FURTHEST_X}", []))[0]:
            x, flag = int(final_info[FURTHEST_X][i]), float(final_info[FLAG][i])
            self.recent_x = (self.recent_x + [x])[-20:]
            self.tracker.log({"charts/x_pos": x, "charts/flag_get": flag}, global_step)
        for i in np.nonzero(final_info.get("_is_success", []))[0]:
            self.recent_successes = (self.recent_successes + [float(final_info["is_success"][i])])[-20:]
            self.tracker.log({"charts/success_rate": float(np.mean(self.recent_successes))}, global_step)
        if "episode" not in infos:
            return
        for i in np.nonzero(infos["_episode"])[0]:
            ep_r, ep_l = float(infos["episode"]["r"][i]), int(infos["episode"]["l"][i])
            self.recent_returns = (self.recent_returns + [ep_r])[-20:]
            self.tracker.log({"charts/episodic_return": ep_r, "charts/episodic_length": ep_l}, global_step)

    def log(
        self, global_step: int, metrics: dict[str, float], policy: nn.Module | None = None, **shown
    ) -> None:
        """Log `metrics` (+ SPS, + the policy's sparsity figures) and update the progress display.
        A non-finite loss stops training here, before any checkpoint could store it."""
        bad = [k for k, v in metrics.items() if k.endswith("_loss") and not np.isfinite(v)]
        if bad:
            raise NonFiniteError.at(global_step, f"{bad[0]} is {metrics[bad[0]]}")
        sps = int((global_step - self.start_step) / max(time.time() - self.start_time, 1e-9))
        metrics = {**metrics, "charts/SPS": sps}
        if policy is not None and self.args.sparsity != "none":
            figures = sparsity_stats(policy, self.args.sparsity)
            metrics.update({k: v for k, v in figures.items() if k != "sparsity"})
            shown.setdefault("sparsity", figures["sparsity"])
        self.tracker.log(metrics, global_step)
        ret = float(np.mean(self.recent_returns)) if self.recent_returns else None
        if self.recent_successes:
            shown.setdefault("success", float(np.mean(self.recent_successes)))
        if self.recent_x:
            shown.setdefault("x", int(np.mean(self.recent_x)))
        self.progress.update(global_step, SPS=sps, ret=ret, **shown)
        self.global_step = global_step
        self._log_videos(global_step)
        self._estimate(global_step)

    def _estimate(self, global_step: int) -> None:
        """Once, after the first ESTIMATE_AFTER_S seconds: the time left at the speed so far."""
        elapsed = time.time() - self.start_time
        if (
            self._estimated
            or elapsed < ESTIMATE_AFTER_S
            or not self.start_step < global_step < self.total_steps
        ):
            return
        self._estimated = True
        rate = (global_step - self.start_step) / elapsed
        left = self.total_steps - global_step
        print(
            f"{self.label} {self.args.env_id}: about {duration(left / rate)} to go ({left:,} env steps at "
            f"{rate:,.0f} steps/s over the first {duration(elapsed)})",
            file=sys.stderr,
            flush=True,
        )

    def _log_videos(self, global_step: int) -> None:
        """Episodes --capture-video finished recording since the last call, to W&B."""
        videos = self.run_dir / VIDEO_DIR
        if not self.args.capture_video or self.tracker.wandb_run is None or not videos.is_dir():
            return
        for path in sorted(videos.glob("*.mp4")):
            if path.name not in self._videos_logged:
                self._videos_logged.add(path.name)
                self.tracker.log_video(path, global_step)

    def checkpoint(
        self,
        global_step: int,
        networks: dict[str, nn.Module],
        optimizers: dict,
        sparsity: SparsityMethod,
        loop: dict,
        envs: Any,
        policy: nn.Module,
        schedulers: dict | None = None,
    ) -> None:
        """Write checkpoint.pt (plain data) and, where the envs pickle faithfully, env_state.pkl."""
        a = self.args
        rng = rng_state()  # first: nothing below may change what a resumed run draws next
        payload = {
            "format_version": FORMAT_VERSION,
            "algo": self.algo,
            "env_id": a.env_id,
            "env_options": self.env_options,
            "args": dataclasses.asdict(a),
            "global_step": global_step,
            "finished": global_step >= self.total_steps,
            "policy": policy_record(policy, *self.spaces, sparsity.kind),
            "networks": {k: m.state_dict() for k, m in networks.items()},
            "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
            "schedulers": sparsity.state_dict() | {k: s.state_dict() for k, s in (schedulers or {}).items()},
            "loop": {k: torch.as_tensor(v) if isinstance(v, np.ndarray) else v for k, v in loop.items()},
            "rng": rng,
            "wandb_id": self.tracker.wandb_id,
        }
        save_checkpoint(self.run_dir, payload, envs=restorable_envs(envs))
        self._checkpoint_step = global_step

    def finish(self, global_step: int, policy: nn.Module, device: Any = "cpu") -> str:
        """Evaluate (when training is complete), write the summary, print one closing line and the
        next command; returns the run directory."""
        a = self.args
        self.progress.update(global_step)
        self.progress.close()
        finished = global_step >= self.total_steps
        final: dict[str, float] = {}
        if finished and a.eval_episodes > 0:
            result = evaluate(
                policy,
                a.env_id,
                self.env_options,
                a.eval_episodes,
                a.seed + EVAL_SEED_OFFSET,
                greedy=a.eval_greedy,
                max_steps=a.eval_max_steps,
                device=device,
                progress=a.progress,
            )
            final = {**eval_metrics(result), **sparsity_stats(policy, a.sparsity)}
            self.tracker.log(final, global_step)
            self.tracker.summary(final)
        if finished:
            self.tracker.summary({"global_step": global_step, "finished": True, "sparsity_kind": a.sparsity})
        self._log_videos(global_step)
        self.tracker.finish()
        self.close()
        print(self._closing_line(global_step, finished, final))
        if self._stop_signal is not None and not finished:
            raise Interrupted(self._stop_signal)  # the closing lines said how to resume
        return str(self.run_dir)

    def _closing_line(self, global_step: int, finished: bool, final: dict) -> str:
        if not finished:
            why = f"stopped by {signal.Signals(self._stop_signal).name}" if self._stop_signal else "halted"
            return (
                f"{self.label}: {why} at step {global_step:,} of {self.total_steps:,}, checkpointed | {self.run_dir}\n"
                f"next: {self._resume_hint()}"
            )
        parts = [f"{self.label}: finished {global_step:,} steps"]
        if "eval/episodic_return" in final:
            parts.append(
                f"eval return {final['eval/episodic_return']:.1f} +- {final['eval/episodic_return_std']:.1f}"
            )
        if "eval/x_pos" in final:
            parts.append(
                f"furthest x {final['eval/x_pos']:,.0f} (best {final['eval/x_pos_max']:,.0f}) | "
                f"flag rate {100 * final['eval/flag_rate']:.0f} %"
            )
        if "sparsity" in final and self.args.sparsity != "none":
            parts.append(f"sparsity {100 * final['sparsity']:.1f} %")
        parts.append(str(self.run_dir))
        return " | ".join(parts) + f"\nnext: python -m l0rl.compress {self.run_dir}"

    def close(self) -> None:
        for s, handler in self._handlers.items():
            signal.signal(s, handler)
        self._handlers = {}
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        self._discard_unopened_video_dir()

    def _discard_unopened_video_dir(self) -> None:
        """A command refused after --capture-video's recorder made <run>/videos/ leaves no directory."""
        args, planned = getattr(self, "args", None), getattr(self, "_planned_dir", None)
        if self.run_dir is not None or args is None or args.resume or not args.capture_video:
            return
        with contextlib.suppress(OSError):  # only empty folders go: rmdir refuses anything else
            (planned / VIDEO_DIR).rmdir()
            planned.rmdir()

    def __del__(self) -> None:  # an exception mid-training must not keep the run locked in-process
        self.close()
