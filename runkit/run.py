"""One training run's plumbing, the same in every algorithm: the arguments they all share, starting
or resuming, the run directory and its lock, logging and progress, checkpoints, the final evaluation
and the closing summary line. An algorithm file keeps only what is its own.

    run = Run(args, ALGO)                 # validates; on --resume/--fork-from loads the checkpoint
    args = run.args
    ...build envs and networks...
    run.open(obs_space, action_space, total_steps)       # run directory, tracker, progress
    loop = run.restore(networks, optimizers, sparsity)   # None on a new run
    ...the loop: run.log_episodes / run.log / run.due / run.checkpoint / run.halting...
    return run.finish(global_step, policy, device)

Every cadence (--checkpoint-every, --log-every, --halt-after) counts env steps, in every algorithm.
"""

import dataclasses
import json
import os
import stat
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from l0rl.envs.mario import FLAG, FURTHEST_X
from l0rl.envs.registry import family, resolve_env_id
from l0rl.errors import NonFiniteError, UsageError
from l0rl.policy import policy_record
from l0rl.runkit.checkpoint import (
    CHECKPOINT_NAME,
    FORMAT_VERSION,
    RunError,
    RunLock,
    atomic_write_bytes,
    check_exp_name,
    check_writable,
    create_run_dir,
    load_checkpoint,
    load_env_state,
    remove_stale_temps,
    restorable_envs,
    rng_state,
    run_name,
    save_checkpoint,
    set_rng_state,
)
from l0rl.runkit.evaluate import EVAL_SEED_OFFSET, eval_metrics, evaluate
from l0rl.runkit.progress import Progress
from l0rl.runkit.replay import BUFFER_NAME
from l0rl.runkit.tracker import METRICS_NAME, Tracker, resolve_wandb_mode
from l0rl.sparsity import METHODS, SparsityMethod, sparsity_stats


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
    wandb_project: str = "l0rl"
    """the W&B project"""
    wandb_entity: str | None = None
    """the W&B entity (team)"""
    wandb_group: str | None = None
    """the W&B group (default: env id)"""
    runs_dir: str = "runs"
    """where run directories are created"""
    capture_video: bool = False
    """whether to capture videos of the agent (first env) into videos/<run_name>"""
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


def _source_args(saved: dict, args_cls: type) -> dict:
    """A fork source's saved arguments that this version's Args knows, less its own provenance."""
    names = {f.name for f in dataclasses.fields(args_cls)} - {"resume", "fork_from"}
    return {k: v for k, v in saved.items() if k in names}


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


def family_defaults(args_cls: type, env_id: str, algo_defaults: dict[str, dict] | None = None) -> Any:
    """An Args instance holding the defaults for `env_id`'s family: the evaluation defaults above,
    then the algorithm's own where a family differs from CartPole's (e.g. {"mario": {"num_envs": 8}}),
    then those of the environment itself (keyed by its canonical id, e.g. "Acrobot-v1")."""
    canonical = resolve_env_id(env_id)
    fam = family(canonical)
    own = algo_defaults or {}
    values = {**EVAL_DEFAULTS.get(fam, {}), **own.get(fam, {}), **own.get(canonical, {})}
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
        saved = load_checkpoint(_checkpoint_dir(first.fork_from, "--fork-from"))["args"]
        baseline = args_cls(**_source_args(saved, args_cls))
    else:
        baseline = family_defaults(args_cls, first.env_id, algo_defaults)
    args = _tyro_cli(args_cls, argv, default=baseline)
    # a family default is no flag: `--env-id SuperMarioBros-7-1-v0 --no-l0` sets no L0 option
    object.__setattr__(args, "_baseline", baseline)
    return args


def _check_common(args: Any) -> None:
    validate(args, at_least_one=("total_timesteps", "checkpoint_every", "log_every", "gmp_every"))
    if args.halt_after is not None and args.halt_after < 1:
        raise UsageError(f"--halt-after must be >= 1 env step, got {args.halt_after}")
    if args.eval_episodes < 0:
        raise UsageError(f"--eval-episodes must be >= 0, got {args.eval_episodes}")
    if args.eval_max_steps is not None and args.eval_max_steps < 1:
        raise UsageError(f"--eval-max-steps must be >= 1, got {args.eval_max_steps}")
    METHODS[args.sparsity].check_args(args, _given(args))


class Run:
    """The plumbing of one training process (see the module docstring)."""

    def __init__(self, args: Any, algo: str):
        self.algo, self.ckpt, self._lock, self.forked = algo, None, None, False
        self.tracker: Tracker | None = None
        args = _resolve_sparsity(args)
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
            check_exp_name(args.exp_name)
            self.name = run_name(args.env_id, args.exp_name, args.seed)
        _check_common(args)
        resolve_wandb_mode(args.wandb_mode)  # online without a key is refused before anything exists
        self.env_options = parse_env_options(args.env_options)
        self.args = args
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
        saved = _source_args(ckpt["args"], type(args))
        given = {k: v for k, v in _given(args).items() if v != saved.get(k, v)}
        # a lambda of 0 leaves a network ungated in some algorithms: a fork keeps which networks carry gates
        fixed = [
            k
            for k in given
            if not forkable(k) or (k.startswith("l0_lambda") and (given[k] > 0) != (saved[k] > 0))
        ]
        if fixed:
            raise RunError(
                f"--fork-from keeps the source run's {', '.join('--' + k.replace('_', '-') for k in fixed)}; "
                "a fork may change the L0 options (except its gates' shape and prices), the budget and the bookkeeping"
            )
        own = {k: getattr(args, k) for k in PER_PROCESS} | {"fork_from": str(source)}
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
        saved, given = ckpt["args"], _given(args)
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

    def open(self, obs_space: Any, action_space: Any, total_steps: int) -> None:
        """Create the run directory (or reuse the resumed one), start its tracker and the progress
        display, and say where the run lives. Call it after everything that can reject the
        arguments, so a bad command leaves no directory behind."""
        a = self.args
        if self.ckpt is None or self.forked:
            self.run_dir = create_run_dir(a.runs_dir, self.name)
            self._lock = RunLock(self.run_dir)
            if self.forked:  # its source's record up to the fork (the tracker drops later rows) and replay
                for name in (METRICS_NAME, BUFFER_NAME):  # buffer (plain data, checked against the step)
                    if (Path(a.fork_from) / name).is_file():
                        atomic_write_bytes(self.run_dir / name, (Path(a.fork_from) / name).read_bytes())
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
            group=a.wandb_group or a.env_id,
            tags=[a.env_id, self.algo, a.sparsity],
            wandb_id=self.ckpt.get("wandb_id") if self.ckpt and not self.forked else None,
            resume_step=self.start_step if self.ckpt else None,  # a fork drops its source's later rows
        )
        verb = f"resuming at step {self.start_step:,}" if self.ckpt else "run directory"
        if self.forked:
            verb = f"forked from {a.fork_from} at step {self.start_step:,}: run directory"
        print(f"{self.algo} {a.env_id} ({a.sparsity}): {verb} {self.run_dir}", file=sys.stderr, flush=True)
        self.progress = Progress(total_steps, self.start_step, a.progress, desc=f"{self.algo} {a.env_id}")
        self.start_time = time.time()

    def restore(
        self,
        networks: dict[str, nn.Module],
        optimizers: dict,
        sparsity: SparsityMethod,
        schedulers: dict | None = None,
    ) -> dict | None:
        """On --resume: load networks, optimizers, the sparsity method's state, any other schedulers'
        (e.g. DQN's KeepBest) and RNGs; returns the loop state the algorithm saved (None on a new run)."""
        if self.ckpt is None:
            return None
        for key, module in networks.items():
            try:
                module.load_state_dict(self.ckpt["networks"][key])
            except (KeyError, RuntimeError) as e:  # a fork that gates a network its source did not
                raise RunError(
                    f"the checkpoint's {key} network does not fit this run's: {str(e).splitlines()[0]}"
                ) from None
        for key, opt in optimizers.items():
            rates = [g["lr"] for g in opt.param_groups]
            opt.load_state_dict(self.ckpt["optimizers"][key])
            if self.forked:  # Adam's moments carry over, the learning rates are the fork's own
                for g, lr in zip(opt.param_groups, rates):
                    g["lr"] = lr
        if not self.forked:  # a fork's schedules start afresh from its own options at the fork's step
            sparsity.load_state_dict(self.ckpt["schedulers"])
            for key, sched in (schedulers or {}).items():
                sched.load_state_dict(self.ckpt["schedulers"][key])
        set_rng_state(self.ckpt["rng"])
        return self.ckpt["loop"]

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
        """True once this process has run its --halt-after env steps."""
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
        self.tracker.finish()
        self.close()
        print(self._closing_line(global_step, finished, final))
        return str(self.run_dir)

    def _closing_line(self, global_step: int, finished: bool, final: dict) -> str:
        if not finished:
            return (
                f"{self.algo}: halted at step {global_step:,} of {self.total_steps:,} | {self.run_dir}\n"
                f"next: python algos/{self.algo}.py --resume {self.run_dir}"
            )
        parts = [f"{self.algo}: finished {global_step:,} steps"]
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
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __del__(self) -> None:  # an exception mid-training must not keep the run locked in-process
        self.close()
