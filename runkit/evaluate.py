"""Evaluation episodes of a deterministic-action policy, shared by every algorithm and by compress.

A "policy" here is an nn.Module mapping a batch of raw observations (as float32) to action scores:
logits / Q-values for a discrete action space (the action is their argmax, or a sample from
softmax(logits) with greedy=False), or the action itself for a Box space (clipped to its bounds).
Episode i is seeded with seed + i, so two policies evaluated with the same seed face the same starts.
"""

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from l0rl.envs import make_env
from l0rl.envs.mario import FLAG, FURTHEST_X
from l0rl.errors import RunError
from l0rl.policy import check_fit, record_spaces
from l0rl.runkit.progress import Progress

EVAL_SEED_OFFSET = 10_000
"""A run's final evaluation, and every later evaluation of its policies (compress, benchmark.evaluate),
plays episodes seeded from the run's seed + this: apart from its training episodes, the same for all."""


@torch.no_grad()
def evaluate(
    policy: nn.Module,
    env_id: str,
    env_options: dict | None = None,
    episodes: int = 10,
    seed: int = 10_000,
    greedy: bool = True,
    max_steps: int | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
    label: str = "eval",
    video_dir: str | None = None,
    record: dict | None = None,
) -> dict:
    """Run `episodes` episodes; returns lists of returns, lengths and, where the env reports them,
    successes (goal envs) and each episode's furthest x and flag (Mario: "x_pos", "flags").
    With `video_dir`, episodes are recorded there (gymnasium's schedule: the 1st, 2nd, 9th, 28th, ...).
    With greedy=False a discrete policy samples its actions (seeded): the only source of variety in
    a deterministic emulator such as Mario's, where greedy episodes from one start are all the same.
    With `record` (the policy record of the checkpoint the policy comes from), the policy and the env
    must fit its spaces first: a damaged or crafted checkpoint is one line, not a traceback mid-episode."""
    env = make_env(env_id, seed, 0, video_dir is not None, video_dir or "", **(env_options or {}))()
    discrete = isinstance(env.action_space, gym.spaces.Discrete)
    gen = torch.Generator().manual_seed(seed)
    was_training = policy.training
    policy.eval()
    if record is not None:
        try:
            _check_fit(policy, env, record, env_id)
        except RunError:
            env.close()
            policy.train(was_training)
            raise
    returns, lengths, successes, furthest, flags = [], [], [], [], []
    shown = Progress(episodes, enabled=progress, every_s=10.0, desc=f"{label} {env_id}", unit="episode")
    try:
        for i in range(episodes):
            obs, _ = env.reset(seed=seed + i)
            total, steps, done, info = 0.0, 0, False, {}
            while not done and (max_steps is None or steps < max_steps):
                x = torch.as_tensor(np.asarray(obs), dtype=torch.float32, device=device).unsqueeze(0)
                out = policy(x).cpu()
                if discrete:
                    if greedy:
                        action = int(out.argmax(-1))
                    else:
                        action = int(torch.multinomial(torch.softmax(out, -1), 1, generator=gen))
                else:
                    action = np.clip(out[0].numpy(), env.action_space.low, env.action_space.high)
                obs, reward, terminated, truncated, info = env.step(action)
                total += float(reward)
                steps += 1
                done = terminated or truncated
            returns.append(total)
            lengths.append(steps)
            if "is_success" in info:
                successes.append(float(info["is_success"]))
            if FURTHEST_X in info:  # Mario: how far the episode got, whatever its return says
                furthest.append(int(info[FURTHEST_X]))
                flags.append(bool(info[FLAG]))
            shown.update(i + 1, ret=float(np.mean(returns)))
    finally:
        shown.close()
        env.close()
        policy.train(was_training)
    return {
        "returns": returns,
        "lengths": lengths,
        "successes": successes or None,
        "x_pos": furthest or None,
        "flags": flags or None,
    }


def _check_fit(policy: nn.Module, env: gym.Env, record: dict, env_id: str) -> None:
    """RunError unless `env` has the spaces the policy record holds and the policy fits them."""
    try:
        obs_space, action_space = record_spaces(record)
        check_fit(policy, record)
    except ValueError as e:
        raise RunError(
            f"the saved policy does not fit its own record: {e}; the checkpoint is damaged"
        ) from None
    want = (obs_space.shape, action_space.shape, getattr(action_space, "n", None))
    if (env.observation_space.shape, env.action_space.shape, getattr(env.action_space, "n", None)) != want:
        raise RunError(
            f"the saved policy takes observations {obs_space.shape} and actions {action_space}, but {env_id} "
            f"has {env.observation_space.shape} and {env.action_space}; the checkpoint is damaged or crafted"
        )


def eval_metrics(result: dict, prefix: str = "eval/") -> dict[str, float]:
    """Mean and std of an `evaluate` result, named for logging; Mario's progress as x_pos (mean furthest
    x), x_pos_max and flag_rate."""
    r = np.asarray(result["returns"], dtype=np.float64)
    out = {
        f"{prefix}episodic_return": float(r.mean()),
        f"{prefix}episodic_return_std": float(r.std()),
        f"{prefix}episodic_length": float(np.mean(result["lengths"])),
    }
    if result["successes"] is not None:
        out[f"{prefix}success_rate"] = float(np.mean(result["successes"]))
    if result.get("x_pos") is not None:
        out[f"{prefix}x_pos"] = float(np.mean(result["x_pos"]))
        out[f"{prefix}x_pos_max"] = float(np.max(result["x_pos"]))
        out[f"{prefix}flag_rate"] = float(np.mean(result["flags"]))
    return out


def evaluate_as_run(
    policy: nn.Module,
    ckpt: dict,
    episodes: int,
    seed: int | None = None,
    progress: bool = False,
    label: str = "eval",
    video_dir: str | None = None,
) -> dict:
    """`evaluate` with the evaluation settings of the run a checkpoint (dict) belongs to: its env and
    options, greedy or sampled actions, step cap, and first seed (the run's seed + EVAL_SEED_OFFSET
    unless `seed` is given): a saved policy of a run plays what the run's final evaluation played."""
    return evaluate(
        policy,
        ckpt["env_id"],
        ckpt["env_options"],
        episodes,
        first_eval_seed(ckpt) if seed is None else seed,
        **eval_settings(ckpt),
        progress=progress,
        label=label,
        video_dir=video_dir,
        record=ckpt["policy"],
    )


def eval_settings(ckpt: dict) -> dict:
    """How the run a checkpoint (dict) belongs to evaluates: greedy or sampled actions, step cap."""
    args = ckpt["args"]
    return {"greedy": args.get("eval_greedy", True), "max_steps": args.get("eval_max_steps")}


def first_eval_seed(ckpt: dict) -> int:
    """The first evaluation seed of the run a checkpoint (dict) belongs to."""
    return int(ckpt["args"].get("seed", 0)) + EVAL_SEED_OFFSET
