"""The arguments every l0rl algorithm shares, and reading them: the command line parsed with the
defaults of its env family (`parse_args`, which also returns what the command line said beyond the
values: a `CommandLine`), a checkpoint's saved arguments type-checked (`check_saved_args`), and the
checks every run's arguments pass before anything is built (`check_run_args`, `validate`). Nothing here
writes to a run directory; resume and fork are runkit.continuation's job, the run itself runkit.run's.
"""

import dataclasses
import json
import os
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from l0rl.envs.registry import family, resolve_env_id
from l0rl.errors import UsageError
from l0rl.runkit.checkpoint import RunError, check_exp_name, load_checkpoint
from l0rl.runkit.tracker import has_wandb_key
from l0rl.sparsity import METHODS


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


EVAL_DEFAULTS = {"mario": {"eval_greedy": False, "eval_max_steps": 3000}}
"""Evaluation defaults per env family (see parse_args). The Mario emulator is deterministic: greedy episodes from one
start are one episode repeated, and a greedy policy that stalls plays until the game clock ends, so
Mario is evaluated with sampled actions and at most 3000 agent steps (200 s of game time)."""

SEED_LIMIT = 2**31
"""--seed must be in [0, SEED_LIMIT): numpy seeds take 32 bits, and env seeds add offsets to it."""
FLOAT_LIMIT = 3.4e38
"""The largest magnitude of a float option: float32's range, past which torch cannot take it as a value."""


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


RETIRED = {"save_buffer": lambda v: {"save_buffer_max_mb": {True: 1e9, False: 0.0}.get(v, 200.0)}}
"""Options older checkpoints hold under a retired name, as the options that replaced them (runs in
flight resume): SAC's --save-buffer (None: unless image observations) is --save-buffer-max-mb."""


def check_saved_args(saved: dict, args_cls: type, path: Path, known_only: bool) -> dict:
    """A checkpoint's saved arguments that `args_cls` knows, each of its field's type (a crafted or
    damaged file is a RunError). known_only: refuse an option this l0rl does not know (a resume
    must use every saved option; a fork keeps only the ones it knows)."""
    hints = typing.get_type_hints(args_cls)
    names = {f.name for f in dataclasses.fields(args_cls)}
    for old, new in RETIRED.items():
        if old in saved and old not in names:
            saved = {k: v for k, v in saved.items() if k != old} | new(saved[old])
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


def source_args(saved: dict, args_cls: type, path: Path) -> dict:
    """A fork source's saved arguments that this version's Args knows (type-checked), less its own
    provenance and its runs directory (a fork lands in the command's --runs-dir)."""
    known = check_saved_args(saved, args_cls, path, known_only=False)
    return {k: v for k, v in known.items() if k not in ("resume", "fork_from", "runs_dir")}


def run_dir_arg(path: str, flag: str) -> Path:
    """The run directory `path` names, or a one-line RunError that says what to pass."""
    run_dir = Path(path)
    if not run_dir.is_dir():
        raise RunError(f"{flag} {run_dir}: not a run directory; pass runs/<run_name>")
    return run_dir


@dataclass(frozen=True)
class CommandLine:
    """What a parsed command line said beyond its values: the defaults it was parsed against (a flag
    is a value that differs from them, so a family default is no flag) and, for a new run, where those
    defaults came from (see default_sources). `CommandLine()`: arguments built in code, against the
    dataclass's own defaults."""

    baseline: Any = None
    defaults_from: list[tuple[str, dict]] | None = None

    def given(self, args: Any) -> dict[str, Any]:
        """The fields of `args` whose value differs from the baseline (else the dataclass's defaults)."""
        defaults = self.baseline if self.baseline is not None else type(args)()
        return {
            f.name: getattr(args, f.name)
            for f in dataclasses.fields(args)
            if getattr(args, f.name) != getattr(defaults, f.name)
        }


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


def resolve_sparsity(args: Any, cli: CommandLine) -> Any:
    """--no-l0 as --sparsity none (args.l0 then mirrors --sparsity); refuses another method's options."""
    given = cli.given(args)
    if not args.l0:
        if args.sparsity not in ("l0", "none"):
            raise UsageError(f"--no-l0 (dense) contradicts --sparsity {args.sparsity}; pass one of them")
        args.sparsity = "none"
    args.l0 = args.sparsity == "l0"
    own = METHODS[args.sparsity].prefix
    for name, method in METHODS.items():  # each method's own options, by their prefix
        stray = [k for k in given if method.prefix and method.prefix != own and k.startswith(method.prefix)]
        if stray:
            flags = ", ".join("--" + k.replace("_", "-") for k in stray)
            raise UsageError(
                f"{flags} appl{'y' if len(stray) > 1 else 'ies'} to --sparsity {name} only, and this run is --sparsity {args.sparsity}"
            )
    return args


def parse_env_options(text: str) -> dict:
    try:
        options = json.loads(text)
    except RecursionError:
        options = None  # nested beyond what the parser's stack holds: not an object of options
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
) -> tuple[Any, CommandLine]:
    """The command line parsed with the defaults of its --env-id's family, so that
    `python algos/ppo_l0.py --env-id SuperMarioBros-7-1-v0` alone runs the measured Mario
    configuration while every flag given explicitly still wins (and --help shows those defaults);
    with --fork-from the source run's arguments are the defaults (a flag is a change to them).
    Returns the arguments and the CommandLine they were parsed against. A malformed command line
    (unknown flag, invalid choice) is one line on stderr, exit 2."""
    argv = sys.argv[1:] if argv is None else argv
    first = _tyro_cli(args_cls, [a for a in argv if a not in ("-h", "--help")])
    if first.resume:  # the run's own arguments apply (runkit.continuation); a flag is a dataclass change
        return first, CommandLine()
    if first.fork_from:
        source = run_dir_arg(first.fork_from, "--fork-from")
        baseline = args_cls(**source_args(load_checkpoint(source)["args"], args_cls, source))
        return _tyro_cli(args_cls, argv, default=baseline), CommandLine(baseline)
    baseline = family_defaults(args_cls, first.env_id, algo_defaults)
    cli = CommandLine(baseline, default_sources(first.env_id, algo_defaults))
    return _tyro_cli(args_cls, argv, default=baseline), cli


def check_run_args(args: Any, cli: CommandLine) -> None:
    """Refuse (UsageError) what no run may have: non-finite numbers, a seed out of range, an unsafe
    experiment name, impossible budgets and cadences, and the sparsity method's own impossible options."""
    for f in dataclasses.fields(args):  # NaN passes every comparison below: refuse it (and inf) first
        value = getattr(args, f.name)
        if isinstance(value, float) and not abs(value) <= FLOAT_LIMIT:
            raise UsageError(
                f"--{f.name.replace('_', '-')} must be a finite number of magnitude at most {FLOAT_LIMIT:g}, "
                f"got {value}"
            )
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
    METHODS[args.sparsity].check_args(args, cli.given(args))


def resolve_track(args: Any) -> Any:
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
