"""One training run's lifecycle, the same in every algorithm: starting (or continuing, through
runkit.continuation), the run directory and its lock, logging and progress, checkpoints, the final
evaluation and the closing summary line. The arguments and their parsing are runkit.args'; an
algorithm file keeps only what is its own.

    run = Run(args, ALGO, cli)            # validates; on --resume/--fork-from loads the checkpoint
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
import os
import shutil
import signal
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from l0rl.envs.mario import FLAG, FURTHEST_X
from l0rl.errors import Interrupted, NonFiniteError, UsageError
from l0rl.policy import policy_record
from l0rl.runkit import continuation
from l0rl.runkit.args import CommandLine, check_run_args, parse_env_options, resolve_sparsity, resolve_track
from l0rl.runkit.checkpoint import (
    FORMAT_VERSION,
    RunLock,
    check_writable,
    create_run_dir,
    load_env_state,
    remove_stale_temps,
    restorable_envs,
    resume_key,
    rng_state,
    run_name,
    save_checkpoint,
)
from l0rl.runkit.cli import in_command
from l0rl.runkit.evaluate import EVAL_SEED_OFFSET, eval_metrics, evaluate
from l0rl.runkit.files import atomic_write_bytes, real_dir
from l0rl.runkit.guards import guard_step
from l0rl.runkit.progress import Progress, duration
from l0rl.runkit.tracker import Tracker, reachable_mode, resolve_wandb_mode, variant_group
from l0rl.sparsity import METHODS, SparsityMethod, sparsity_stats

VIDEO_DIR = "videos"
"""Where --capture-video records, inside the run directory."""
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
ESTIMATE_AFTER_S = 10.0
"""The time-left line comes at the first log call after this much training."""
SHORT_BUDGET = 0.5
"""Below this share of the budget the L0 defaults were tuned for, a run starts with a warning."""


def crossed(global_step: int, stride: int, every: int) -> int:
    """How many multiples of `every` going from global_step - stride to global_step passed (0 when
    none, so it reads as a bool too)."""
    return global_step // every - (global_step - stride) // every


def _calling_file(depth: int) -> str:
    """The source file `depth` frames up (an algorithm's train(), a copied or renamed one included),
    from the working directory where it lies below it: what the hints tell the user to run."""
    path = Path(sys._getframe(depth + 1).f_code.co_filename).resolve()
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd().resolve()))
    return str(path)


class Run:
    """The plumbing of one training process (see the module docstring)."""

    def __init__(self, args: Any, algo: str, cli: CommandLine | None = None):
        """`cli`: what parse_args returned beside the arguments (None: arguments built in code, a
        flag being what differs from the dataclass's defaults)."""
        self.algo, self.ckpt, self._lock, self.forked = algo, None, None, False
        self.cli = cli or CommandLine()
        self.tracker: Tracker | None = None
        self.script = _calling_file(1)
        self.run_dir: Path | None = None
        self._stop_signal: int | None = None
        self._aborting = False
        self._handlers: dict = {}
        self._checkpoint_step: int | None = None
        args = resolve_track(resolve_sparsity(args, self.cli))
        if args.resume and args.fork_from:
            raise UsageError("--resume continues a run and --fork-from starts a new one from it; pass one")
        if args.fork_from:
            args, self.ckpt = continuation.fork(args, algo, self.cli)
            self.forked = True
            self.name = run_name(args.env_id, args.exp_name, args.seed)
        elif args.resume:
            args, self.ckpt, self._lock = continuation.resume(args, algo, self.cli)
            self.name = os.path.basename(os.path.normpath(args.resume))
        else:
            if args.exp_name is None:
                args.exp_name = (
                    f"{algo.removesuffix('_l0')}_{'dense' if args.sparsity == 'none' else args.sparsity}"
                )
            self.name = run_name(args.env_id, args.exp_name, args.seed)
        check_run_args(args, self.cli)
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

    @property
    def video_dir(self) -> str:
        """Where --capture-video records: the run directory's videos/ (pass it to make_vector_env)."""
        videos = self._planned_dir / VIDEO_DIR
        if self.args.capture_video and self.ckpt is not None and not self.forked:
            real_dir(videos)  # a resumed run's videos/ may be a symlink, which the recorder would follow
        return str(videos)

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
            # read (and refused) before anything exists
            copies = continuation.fork_copies(Path(a.fork_from), self.start_step) if self.forked else {}
            self.run_dir = self._new_run_dir()
            self._lock = RunLock(self.run_dir)
            for name, data in copies.items():
                atomic_write_bytes(self.run_dir / name, data)
        else:
            self.run_dir = Path(a.resume)
            remove_stale_temps(self.run_dir)
        self.spaces, self.total_steps = (obs_space, action_space), total_steps
        try:
            self.tracker = self._start_tracker()
        except BaseException:  # W&B refused, stalled or was interrupted: a new run leaves no directory
            if self.ckpt is None or self.forked:
                self._discard_new_run_dir()
            raise
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

    def _start_tracker(self) -> Tracker:
        a = self.args
        return Tracker(
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

    def _discard_new_run_dir(self) -> None:
        """Remove the directory this Run just created (its lock, W&B's folder, a fork's copies): nothing
        in it is a result yet, and the command that failed should leave no directory behind."""
        self._release_lock()
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.run_dir = None

    def _plan(self, total_steps: int) -> str:
        """What the run will be: its budget and the defaults it runs with (which family's, named)."""
        left = f" ({total_steps - self.start_step:,} to go)" if self.start_step else ""
        budget = f"budget {total_steps:,} env steps{left}"
        if self.ckpt is not None:
            return f"{budget}, with the arguments of {'its source' if self.forked else 'the run'}"
        sources = self.cli.defaults_from
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
        a, baseline = self.args, self.cli.baseline
        if self.ckpt is not None or baseline is None or a.sparsity != "l0":
            return
        tuned = baseline.total_timesteps
        if a.total_timesteps >= SHORT_BUDGET * tuned or any(k.startswith("l0_") for k in self.cli.given(a)):
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
        if self._aborting:
            return  # the abort is unwinding: a third signal must not raise inside it (or in __del__)
        self._aborting = True
        if self._checkpoint_step is None:
            last = "no checkpoint was written yet: start the run again"
        else:
            last = f"its last checkpoint (step {self._checkpoint_step:,}) is intact: {self._resume_hint()}"
        raise Interrupted(signum, f"aborted by a second {name}; {last}")

    def _resume_hint(self) -> str:
        return f"python {self.script} --resume {self.run_dir}"

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
        continuation.restore(self.ckpt, self.forked, networks, optimizers, sparsity, schedulers or {})
        return continuation.loop_state(
            self.ckpt.get("loop"), getattr(self.args, "num_envs", None), self.spaces[0].shape
        )

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
            # an abort under a command line ends the process: a third Ctrl-C on the way out is ignored
            signal.signal(s, signal.SIG_IGN if self._aborting and in_command() else handler)
        self._handlers = {}
        self._release_lock()
        self._discard_unopened_video_dir()

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

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
