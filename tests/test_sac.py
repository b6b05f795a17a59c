"""SAC-L0: smoke runs (Box and discrete actions, the goal env with and without hindsight), gate-free
target critics, hindsight relabelling, exact resume, the deployable policy, bad input."""

import importlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from l0rl import l0
from l0rl.envs import goal_spec
from l0rl.runkit import load_checkpoint, read_metrics

ROOT = Path(__file__).resolve().parents[1]
sac = importlib.import_module("l0rl.algos.sac_l0")


@pytest.fixture(autouse=True)
def one_torch_thread():
    # SAC makes many small updates: on busy shared cores, several intra-op threads mostly wait on each other
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_args(tmp_path: Path, **kw) -> "sac.Args":
    base = dict(
        wandb_mode="disabled",
        runs_dir=str(tmp_path),
        progress=False,
        eval_episodes=2,
        num_envs=2,
        total_timesteps=300,
        learning_starts=100,
        batch_size=32,
        hidden_size=32,
        buffer_size=1000,
        gradient_steps=1,
        log_every=100,
    )
    base.update(kw)
    return sac.Args(**base)


def check_run(run_dir: str, l0_on: bool) -> dict:
    ckpt = load_checkpoint(run_dir)
    assert ckpt["finished"] and ckpt["global_step"] == ckpt["args"]["total_timesteps"]
    policy = sac.policy_from_checkpoint(ckpt)
    assert any(True for _ in l0.gated_layers(policy)) == l0_on
    rows = read_metrics(run_dir)
    assert any("losses/qf1_loss" in r and "losses/actor_loss" in r for r in rows), (
        "no learning update was logged"
    )
    summary = json.loads((Path(run_dir) / "summary.json").read_text())
    assert math.isfinite(summary["eval/episodic_return"])
    if l0_on:
        assert 0.0 <= summary["l0/sparsity"] <= 1.0
        assert any("l0/lambda" in r and "l0/critic/sparsity" in r for r in rows)
    return summary


@pytest.mark.parametrize("her", [False, True])
@pytest.mark.parametrize("l0_on", [True, False])
def test_needle_reach_smoke(l0_on, her, tmp_path):
    run_dir = sac.train(tiny_args(tmp_path, env_id="NeedleReach-v0", l0=l0_on, her=her))
    summary = check_run(run_dir, l0_on)
    assert 0.0 <= summary["eval/success_rate"] <= 1.0
    assert any("charts/success_rate" in r for r in read_metrics(run_dir))


@pytest.mark.parametrize("env_id", ["LunarLanderContinuous-v3", "CartPole-v1"])
def test_smoke(env_id, tmp_path):
    check_run(sac.train(tiny_args(tmp_path, env_id=env_id)), True)


@pytest.mark.mario
def test_mario_smoke(tmp_path):
    args = tiny_args(
        tmp_path,
        env_id="SuperMarioBros-7-1-v0",
        total_timesteps=160,
        learning_starts=150,  # a Nature-CNN update of three gated networks takes about a second here
        log_every=80,
        batch_size=8,
        buffer_size=256,
        eval_episodes=1,
        eval_max_steps=50,
    )
    run_dir = sac.train(args)
    check_run(run_dir, True)
    policy = sac.policy_from_checkpoint(load_checkpoint(run_dir))
    assert isinstance(policy[1], torch.nn.Conv2d)
    assert not (Path(run_dir) / sac.BUFFER_NAME).exists(), "image buffers are not saved by default"


def test_target_critics_are_gate_free_and_track_the_deterministic_weights():
    obs_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    qf = l0.sparsify(
        sac.SoftQNetwork(obs_space, action_space, 16), "weight", 0.3, output_granularity="weight"
    )
    with torch.no_grad():  # spread the gates so that some are exactly closed and some partly open
        for p in l0.gate_parameters(qf):
            p.normal_(0.0, 3.0)
    target = sac.SoftQNetwork(obs_space, action_space, 16)
    old = {k: v.clone() for k, v in target.state_dict().items()}
    sac.polyak_update(target, qf, 0.25)
    assert not list(l0.gated_layers(target))
    assert not any("log_alpha" in key for key in target.state_dict())
    dense = l0.dense_state_dict(qf)
    assert any(bool((v == 0).any()) for k, v in dense.items() if k.endswith("weight"))
    for key, value in target.state_dict().items():
        torch.testing.assert_close(value, 0.75 * old[key] + 0.25 * dense[key])
    sac.polyak_update(target, qf, 1.0)
    for key, value in target.state_dict().items():
        torch.testing.assert_close(value, dense[key], rtol=0, atol=0)


def fill_goal_buffer(slots: int, lengths: list[list[int]], steps: int) -> "sac.ReplayBuffer":
    """A buffer of NeedleReach-shaped transitions whose achieved goals name (env, episode, t):
    transition t of episode ep in env e has achieved goal (e, ep, t) before and (e, ep, t + 1) after."""
    obs_space = gym.spaces.Box(-np.inf, np.inf, (13,), np.float32)
    rb = sac.ReplayBuffer(
        slots * len(lengths), len(lengths), obs_space, gym.spaces.Box(-1, 1, (5,), np.float32)
    )
    spec = goal_spec("NeedleReach-v0")
    position = [[0, 0] for _ in lengths]  # (episode, t) per env
    for _ in range(steps):
        obs, next_obs = np.full((2, len(lengths), 13), -1.0, np.float32)
        dones = np.zeros(len(lengths), bool)
        for e, (ep, t) in enumerate(position):
            obs[e, spec["achieved"]] = (e, ep, t)
            next_obs[e, spec["achieved"]] = (e, ep, t + 1)
            dones[e] = ep < len(lengths[e]) and t + 1 == lengths[e][ep]
            position[e] = [ep + 1, 0] if dones[e] else [ep, t + 1]
        rb.add(
            obs,
            next_obs,
            np.zeros((len(lengths), 5)),
            np.full(len(lengths), -1.0),
            np.zeros(len(lengths)),
            dones,
        )
    return rb


def test_her_relabels_with_a_later_achieved_goal_of_the_same_episode():
    spec = goal_spec("NeedleReach-v0")
    # 30 steps: env 0 ends episodes of 5, 9 and 3 steps, then runs a fourth; env 1 is still in its first.
    # 20 slots per env: steps 0-9 were overwritten, so episode 1 of env 0 is only partly left
    rb = fill_goal_buffer(20, [[5, 9, 3], []], steps=30)
    np.random.seed(0)
    batch = rb.sample(4000, spec, her_k=4)
    relabel = batch["relabelled"]
    assert 0.75 < relabel.mean() < 0.85
    achieved, achieved_next = batch["obs"][:, spec["achieved"]], batch["next_obs"][:, spec["achieved"]]
    goal = batch["next_obs"][:, spec["desired"]]
    np.testing.assert_array_equal(batch["obs"][:, spec["desired"]], goal)
    np.testing.assert_array_equal(batch["rewards"], spec["compute_reward"](achieved_next, goal))
    assert (goal[~relabel] == -1).all() and (batch["rewards"][~relabel] == -1).all()
    g, a = goal[relabel], achieved[relabel]
    np.testing.assert_array_equal(g[:, :2], a[:, :2])  # same env, same episode
    assert (g[:, 2] >= a[:, 2] + 1).all(), "the goal was achieved at this step or later"
    lengths = np.array([[5, 9, 3, 99][int(ep)] if env == 0 else 99 for env, ep in a[:, :2]])
    assert (g[:, 2] <= lengths).all(), "the goal lies inside the episode"
    assert (g[:, 2] > a[:, 2] + 1).any() and (batch["rewards"][relabel] == 0).any()


def test_her_needs_a_goal_env(tmp_path):
    with pytest.raises(ValueError, match="goal"):
        sac.train(tiny_args(tmp_path, env_id="CartPole-v1", her=True))
    assert not any(tmp_path.iterdir())


def test_resume_matches_uninterrupted(tmp_path):
    kw = dict(env_id="NeedleReach-v0", her=True, total_timesteps=400, eval_episodes=0)
    full = sac.train(tiny_args(tmp_path / "full", **kw))
    part = sac.train(tiny_args(tmp_path / "part", halt_after=200, **kw))
    assert not load_checkpoint(part)["finished"] and (Path(part) / sac.BUFFER_NAME).exists()
    sac.train(tiny_args(tmp_path / "ignored", resume=part))
    a, b = load_checkpoint(full), load_checkpoint(part)
    assert a["global_step"] == b["global_step"] and b["finished"]
    for net, state in a["networks"].items():
        items = state.items() if isinstance(state, dict) else [("", state)]
        for key, value in items:
            other = b["networks"][net][key] if key else b["networks"][net]
            torch.testing.assert_close(value, other, rtol=0, atol=0, msg=f"{net}.{key}")
    rows_a = [r for r in read_metrics(full) if "losses/qf1_loss" in r]
    rows_b = [r for r in read_metrics(part) if "losses/qf1_loss" in r]
    assert [r["global_step"] for r in rows_a] == [r["global_step"] for r in rows_b]
    assert rows_a[-1]["losses/qf1_loss"] == rows_b[-1]["losses/qf1_loss"]


def test_resume_without_buffer_refills_before_learning(tmp_path):
    kw = dict(total_timesteps=400, learning_starts=120, log_every=20, eval_episodes=0, save_buffer=False)
    part = sac.train(tiny_args(tmp_path, env_id="Pendulum-v1", halt_after=200, **kw))
    assert not (Path(part) / sac.BUFFER_NAME).exists()
    sac.train(tiny_args(tmp_path, resume=part))
    assert load_checkpoint(part)["finished"]
    learned = [r["global_step"] for r in read_metrics(part) if "losses/qf1_loss" in r]
    # 2 envs refill 120 transitions in 60 vector steps: no update between the resume and step 320
    assert learned and not [s for s in learned if 200 < s < 320] and 320 in learned


def test_resume_restarts_box2d_episodes_and_keeps_the_buffer(tmp_path):
    # Box2D envs pickle only their constructor arguments: they restart, the saved buffer stays
    kw = dict(env_id="LunarLanderContinuous-v3", total_timesteps=300, log_every=20, eval_episodes=0)
    part = sac.train(tiny_args(tmp_path, halt_after=200, **kw))
    ckpt = load_checkpoint(part)
    assert ckpt["loop"]["envs"] is None and (Path(part) / sac.BUFFER_NAME).exists()
    sac.train(tiny_args(tmp_path, resume=part))
    assert load_checkpoint(part)["finished"]
    learned = [r["global_step"] for r in read_metrics(part) if "losses/qf1_loss" in r]
    assert 220 in learned, "learning goes on right after the resume"


def test_policy_is_the_squashed_rescaled_mean_within_bounds(tmp_path):
    run_dir = sac.train(tiny_args(tmp_path, env_id="Pendulum-v1", total_timesteps=200, eval_episodes=1))
    ckpt = load_checkpoint(run_dir)
    policy = sac.policy_from_checkpoint(ckpt).eval()
    for m in policy:
        assert isinstance(m, torch.nn.Linear) or next(m.parameters(), None) is None, type(m).__name__
    obs_space, action_space = ckpt["spaces"]
    actor = sac.Actor(obs_space, action_space, ckpt["args"]["hidden_size"])
    l0.sparsify_like(actor, ckpt["networks"]["actor"]).eval()
    x = torch.randn(256, *obs_space.shape) * 10.0
    with torch.no_grad():
        out = policy(x)
        _, _, mean_action = actor.get_action(x)
    torch.testing.assert_close(out, mean_action)
    assert (out >= -2.0).all() and (out <= 2.0).all() and (out.abs() > 1.0).any()


@pytest.mark.parametrize(
    "argv, hint",
    [(["--l0-lambda-actor", "-1"], ">= 0"), (["--env-id", "CartPole-v1", "--her"], "goal")],
)
def test_bad_input_one_line_exit_2(argv, hint, tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "algos" / "sac_l0.py"), "--wandb-mode", "disabled", *argv],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and hint in lines[0], proc.stderr
    assert not (tmp_path / "runs").exists()
