"""Evaluation as every algorithm and compress run it: Mario's family defaults (sampled actions, a
step cap), different episodes for different seeds, and compress evaluating as its run did."""

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from helpers import tiny_args

from l0rl.algos import ppo_l0
from l0rl.compress import compress_run
from l0rl.errors import UsageError
from l0rl.runkit import evaluate
from l0rl.runkit.args import parse_args as parse_with_cli
from l0rl.runkit.args import resolve_sparsity


def parse_args(*a, **kw):
    """The parsed arguments alone (the tests below read values, not the CommandLine)."""
    return parse_with_cli(*a, **kw)[0]


MARIO = "SuperMarioBros-7-1-v0"


def test_mario_family_defaults_and_explicit_flags_win():
    args = parse_args(ppo_l0.Args, ppo_l0.FAMILY_DEFAULTS, ["--env-id", MARIO])
    assert (args.eval_greedy, args.eval_max_steps, args.num_envs, args.l0_granularity) == (
        False,
        3000,
        8,
        "mixed",
    )
    args = parse_args(
        ppo_l0.Args, ppo_l0.FAMILY_DEFAULTS, ["--env-id", MARIO, "--eval-greedy", "--num-envs", "4"]
    )
    assert (args.eval_greedy, args.num_envs) == (True, 4)
    plain = parse_args(ppo_l0.Args, ppo_l0.FAMILY_DEFAULTS, [])
    assert (plain.eval_greedy, plain.eval_max_steps, plain.num_envs) == (True, None, 4)
    # Mario keeps the L0 configuration it was measured with, not CartPole's sweep winner
    mario = parse_args(ppo_l0.Args, ppo_l0.FAMILY_DEFAULTS, ["--env-id", MARIO])
    got = (mario.l0_schedule, mario.l0_lr, mario.l0_anneal_lr, mario.l0_lambda_actor, mario.l0_lambda_critic)
    assert got == ("constant", 1e-2, False, 100.0, 0.5)
    assert plain.l0_granularity == "weight"
    assert (plain.l0_schedule, plain.l0_lr, plain.l0_anneal_lr) == ("constant", 2.5e-3, True)
    # an environment's own defaults (by canonical id) apply to it alone, and flags still win
    acrobot = parse_args(ppo_l0.Args, ppo_l0.FAMILY_DEFAULTS, ["--env-id", "Acrobot-v1"])
    assert (acrobot.l0_schedule, acrobot.l0_lambda_actor, plain.l0_lambda_actor) == ("linear", 3.5, 3.75)
    flagged = ["--env-id", "Acrobot-v1", "--l0-schedule", "cosine"]
    assert parse_args(ppo_l0.Args, ppo_l0.FAMILY_DEFAULTS, flagged).l0_schedule == "cosine"
    # LunarLander's own rollout shape, reached through the old id too; a flag still wins
    for old_or_new in ("LunarLander-v3", "LunarLander-v2"):
        lunar = parse_args(ppo_l0.Args, ppo_l0.FAMILY_DEFAULTS, ["--env-id", old_or_new])
        assert (lunar.num_envs, lunar.num_steps, lunar.gamma, lunar.l0_lr) == (16, 1024, 0.999, 6e-4)
        assert (lunar.l0_schedule, lunar.l0_train_gates, lunar.total_timesteps) == (
            "linear",
            "deterministic",
            5_000_000,
        )
    flagged = ["--env-id", "LunarLander-v2", "--num-steps", "128"]
    assert parse_args(ppo_l0.Args, ppo_l0.FAMILY_DEFAULTS, flagged).num_steps == 128


@pytest.mark.parametrize("env_id", [MARIO, "Acrobot-v1"])
@pytest.mark.parametrize("sparsity", [["--no-l0"], ["--sparsity", "gmp"]])
def test_family_and_env_defaults_of_l0_options_are_no_flags(env_id, sparsity):
    """Their L0 defaults do not count as L0 flags given to a dense or GMP run; a real flag still does."""
    argv = ["--env-id", env_id, *sparsity, "--wandb-mode", "disabled"]
    args = resolve_sparsity(*parse_with_cli(ppo_l0.Args, ppo_l0.FAMILY_DEFAULTS, argv))
    assert args.sparsity == ("none" if sparsity == ["--no-l0"] else "gmp")
    with pytest.raises(UsageError, match="--l0-lr applies to --sparsity l0 only"):
        resolve_sparsity(*parse_with_cli(ppo_l0.Args, ppo_l0.FAMILY_DEFAULTS, [*argv, "--l0-lr", "0.1"]))


@pytest.mark.mario
def test_mario_sampled_evaluation_varies_with_the_seed_and_honours_the_cap():
    torch.manual_seed(0)
    obs_space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    policy = ppo_l0.Agent(obs_space, gym.spaces.Discrete(7)).actor
    runs = {s: evaluate(policy, MARIO, {}, episodes=1, seed=s, greedy=False, max_steps=40) for s in (1, 2)}
    assert all(r["lengths"] == [40] for r in runs.values())
    first = evaluate(policy, MARIO, {}, episodes=1, seed=1, greedy=False, max_steps=40)
    assert first["returns"] == runs[1]["returns"]  # the same seed replays the same episode
    again = evaluate(policy, MARIO, {}, episodes=1, seed=2, greedy=False, max_steps=40)
    assert again["returns"] == runs[2]["returns"]
    assert runs[1]["returns"] != runs[2]["returns"], "sampled actions must vary with the seed"


def test_compress_evaluates_as_its_run_did(tmp_path):
    kw = dict(total_timesteps=512, num_steps=64, num_minibatches=4, update_epochs=4)
    run_dir = ppo_l0.train(tiny_args("ppo", tmp_path, eval_episodes=2, eval_max_steps=15, **kw))
    summary = json.loads((Path(run_dir) / "summary.json").read_text())
    assert summary["eval/episodic_length"] <= 15
    report = compress_run(run_dir, episodes=2, wandb_mode="disabled")
    assert report["stages"][0]["return_mean"] == summary["eval/episodic_return"]  # same seeds, same cap
    assert all(stage["return_mean"] <= 15 for stage in report["stages"])


def test_capture_video_works_after_setup(tmp_path, monkeypatch):
    """make setup installs moviepy: --capture-video writes real MP4 files of the first env."""
    monkeypatch.chdir(tmp_path)
    kw = dict(total_timesteps=256, num_steps=64, num_minibatches=4, update_epochs=4)
    run_dir = ppo_l0.train(tiny_args("ppo", Path("."), eval_episodes=0, capture_video=True, **kw))
    videos = sorted((Path(run_dir) / "videos").glob("*.mp4"))  # inside the run directory
    assert videos and all(v.read_bytes()[4:8] == b"ftyp" for v in videos)  # the MP4 container header
