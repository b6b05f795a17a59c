"""DQN-L0: smoke runs on every discrete env family, the gate-free target network, the replay buffer
(true final observations, uint8 frames, stated size), exact resume, and bad input."""

import json
import math
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from l0rl import l0
from l0rl.algos import dqn_l0 as dqn
from l0rl.runkit import load_checkpoint, read_metrics

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def one_torch_thread():
    # two intra-op threads on two busy cores make each tiny update ~30x slower
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_args(tmp_path: Path, **kw) -> dqn.Args:
    base = dict(
        wandb_mode="disabled",
        runs_dir=str(tmp_path),
        progress=False,
        eval_episodes=2,
        num_envs=2,
        total_timesteps=600,
        learning_starts=200,
        buffer_size=400,
        batch_size=32,
        train_frequency=4,
        target_network_frequency=100,
        log_every=100,
    )
    base.update(kw)
    return dqn.Args(**base)


def check_run(run_dir: str, l0_on: bool) -> dict:
    ckpt = load_checkpoint(run_dir)
    assert ckpt["finished"] and ckpt["algo"] == "dqn_l0"
    assert ckpt["global_step"] == ckpt["args"]["total_timesteps"]
    policy = dqn.policy_from_checkpoint(ckpt)
    assert isinstance(policy, torch.nn.Sequential)
    assert any(True for _ in l0.gated_layers(policy)) == l0_on
    rows = read_metrics(run_dir)
    assert any("losses/td_loss" in r and "losses/q_values" in r for r in rows), "no update was logged"
    assert any("charts/epsilon" in r and "charts/SPS" in r for r in rows)
    assert rows[0]["charts/replay_buffer_bytes"] > 0
    summary = json.loads((Path(run_dir) / "summary.json").read_text())
    assert math.isfinite(summary["eval/episodic_return"])
    if l0_on:
        assert 0.0 <= summary["l0/sparsity"] <= 1.0
        assert any("l0/lambda" in r and "losses/l0_penalty" in r for r in rows)
    return summary


@pytest.mark.parametrize(
    "env_id, l0_on, kw",
    [
        ("CartPole-v1", True, {}),
        ("CartPole-v1", False, {}),
        ("Acrobot-v1", True, {"double_dqn": False, "tau": 0.5, "l0_schedule": "target"}),
        ("LunarLander-v3", True, {"l0_granularity": "unit"}),
    ],
)
def test_smoke(env_id, l0_on, kw, tmp_path):
    check_run(dqn.train(tiny_args(tmp_path, env_id=env_id, l0=l0_on, **kw)), l0_on)


@pytest.mark.mario
def test_mario_smoke(tmp_path):
    args = tiny_args(
        tmp_path,
        env_id="SuperMarioBros-7-1-v0",
        num_envs=1,
        total_timesteps=120,
        learning_starts=40,
        buffer_size=60,
        batch_size=8,
        log_every=40,
        eval_episodes=1,
        eval_max_steps=50,
    )
    run_dir = dqn.train(args)
    check_run(run_dir, True)
    assert isinstance(dqn.policy_from_checkpoint(load_checkpoint(run_dir))[1], torch.nn.Conv2d)
    buffer = torch.load(Path(run_dir) / dqn.BUFFER_NAME, weights_only=True)["buffer"]
    assert buffer["obs"].dtype == torch.uint8 and tuple(buffer["obs"].shape) == (60, 1, 4, 84, 84)


SPACES = (gym.spaces.Box(-np.inf, np.inf, (4,), np.float32), gym.spaces.Discrete(2))


@pytest.mark.parametrize("tau", [1.0, 0.25])
def test_target_network_is_gate_free_copy_of_effective_weights(tau):
    torch.manual_seed(0)
    q, target = dqn.QNetwork(*SPACES), dqn.QNetwork(*SPACES)
    l0.sparsify(q, "unit", 0.5, output_granularity="weight")
    with torch.no_grad():
        for p in l0.gate_parameters(q):
            p.uniform_(-3, 3)  # some gates closed, some open
    before = {k: v.clone() for k, v in target.state_dict().items()}
    dqn.update_target(target, q, tau)
    assert not any(isinstance(m, l0.HardConcreteGate) for m in target.modules())
    assert not any("log_alpha" in k for k in target.state_dict())
    dense = l0.dense_state_dict(q)
    assert set(dense) == set(target.state_dict())
    for k, v in target.state_dict().items():
        torch.testing.assert_close(
            v, tau * dense[k] + (1 - tau) * before[k], rtol=0, atol=0 if tau == 1 else 1e-6
        )
    if tau == 1.0:  # the target acts exactly like the online network with deterministic gates
        x = torch.randn(16, 4)
        with l0.deterministic_gates(q):
            torch.testing.assert_close(target(x), q(x))


def test_trained_target_has_no_gates(tmp_path):
    ckpt = load_checkpoint(dqn.train(tiny_args(tmp_path, eval_episodes=0)))
    assert not any("log_alpha" in k for k in ckpt["networks"]["target_network"])
    assert any("log_alpha" in k for k in ckpt["networks"]["q_network"])


def fill(rb: dqn.ReplayBuffer, steps: int, end_env1_at: set[int]) -> None:
    """Two envs (action = env index, reward = step) whose obs encode 10 * step + env; env 1 ends
    its episode at the given steps, and the next row then holds a reset obs (7), as SAME_STEP
    autoreset does."""
    shape, dtype = rb.obs.shape[2:], rb.obs.dtype
    obs = np.stack([np.full(shape, e, dtype) for e in range(2)])
    for t in range(steps):
        nxt = np.stack([np.full(shape, (t + 1) * 10 + e, dtype) for e in range(2)])
        final = {1: nxt[1].copy()} if t in end_env1_at else {}
        if final:
            nxt[1] = 7
        rb.add(obs, np.array([0, 1]), np.full(2, t), np.array([False, t in end_env1_at]), final)
        obs = nxt


@pytest.mark.parametrize("steps", [6, 23])  # within the ring, and wrapped around it twice
def test_replay_buffer_returns_true_final_obs(steps):
    space = gym.spaces.Box(0, 255, (4, 3, 3), np.uint8)
    rb = dqn.ReplayBuffer(20, 2, space)
    end_at = {2, 4, 17, 19}
    fill(rb, steps, end_at)
    assert rb.obs.dtype == np.uint8
    assert len(rb.final_obs) == int(rb.ended.sum())  # episode ends overwritten in the ring are gone
    np.random.seed(0)
    obs, actions, next_obs, rewards, dones = rb.sample(500)
    assert obs.dtype == next_obs.dtype == np.uint8
    t, env = rewards.astype(int), actions
    first = obs[:, 0, 0, 0]
    assert ((first == t * 10 + env) | ((first == 7) & np.isin(t - 1, list(end_at)))).all()
    # every sampled next obs is the true one, never the reset obs, and the newest row is not sampled
    np.testing.assert_array_equal(next_obs[:, 0, 0, 0], (t + 1) * 10 + env)
    assert (t < steps - 1).all() and (t >= steps - rb.rows).all()
    finished = [e == 1 and ti in end_at for ti, e in zip(t, env)]
    np.testing.assert_array_equal(dones, finished)
    assert any(finished), "the sample should contain finished transitions"


class ParityEnv(gym.Env):
    """obs = (t, parity): even episodes terminate at t = 3, odd ones run on and are truncated at
    t = 4 by the TimeLimit of the registration."""

    def __init__(self, render_mode=None):
        self.observation_space = gym.spaces.Box(0, 10, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.t, self.episode = 0, -1

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.episode = 0, self.episode + 1
        return np.array([0, self.episode % 2], np.float32), {}

    def step(self, action):
        self.t += 1
        return (
            np.array([self.t, self.episode % 2], np.float32),
            1.0,
            self.t == 3 and self.episode % 2 == 0,
            False,
            {},
        )


gym.register("l0rlParity-v0", entry_point=ParityEnv, max_episode_steps=4)


def test_training_stores_true_final_obs_and_bootstraps_truncations(tmp_path):
    args = tiny_args(tmp_path, env_id="l0rlParity-v0", eval_episodes=0, total_timesteps=300, buffer_size=200)
    run_dir = dqn.train(args)
    rb = dqn.ReplayBuffer(200, 2, ParityEnv().observation_space)
    rb.load_state_dict(torch.load(Path(run_dir) / dqn.BUFFER_NAME, weights_only=True)["buffer"])
    obs, _, next_obs, _, dones = rb.sample(1000)
    # never the reset obs (t = 0) as a next obs; the done flag only where an episode terminated
    np.testing.assert_array_equal(next_obs[:, 0], obs[:, 0] + 1)
    np.testing.assert_array_equal(dones, (next_obs[:, 0] == 3) & (obs[:, 1] == 0))
    assert ((next_obs[:, 0] == 4) & (dones == 0)).any(), "truncated transitions must be stored, not done"


def test_replay_buffer_size_in_bytes():
    obs_bytes = 4 * 84 * 84
    rb = dqn.ReplayBuffer(100_000, 4, gym.spaces.Box(0, 255, (4, 84, 84), np.uint8))  # lazily zeroed
    # per transition: the uint8 frame stack once + int64 action + float32 reward + float32 done + bool end
    assert rb.nbytes == 100_000 * (obs_bytes + 8 + 4 + 4 + 1) == 2_824_100_000  # as the module docstring says
    small = dqn.ReplayBuffer(20, 2, gym.spaces.Box(0, 255, (4, 3, 3), np.uint8))
    fill(small, 6, {2, 4})
    assert small.nbytes == 20 * (36 + 17) + 2 * 36  # plus one stored final obs per episode end


def test_resume_matches_uninterrupted(tmp_path):
    kw = dict(total_timesteps=1000, eval_episodes=0)
    full = dqn.train(tiny_args(tmp_path / "full", **kw))
    part = dqn.train(tiny_args(tmp_path / "part", halt_after=400, **kw))
    ckpt = load_checkpoint(part)
    assert not ckpt["finished"] and ckpt["global_step"] == 400 and ckpt["loop"]["buffer_step"] == 400
    dqn.train(tiny_args(tmp_path / "ignored", resume=part))
    a, b = load_checkpoint(full), load_checkpoint(part)
    assert a["global_step"] == b["global_step"] and b["finished"]
    for net in ("q_network", "target_network"):
        for key, value in a["networks"][net].items():
            torch.testing.assert_close(value, b["networks"][net][key], rtol=0, atol=0, msg=key)
    steps_a = [(r["global_step"], r["losses/td_loss"]) for r in read_metrics(full) if "losses/td_loss" in r]
    steps_b = [(r["global_step"], r["losses/td_loss"]) for r in read_metrics(part) if "losses/td_loss" in r]
    assert steps_a == steps_b, "resumed record must not repeat or skip steps"


def test_resume_without_saved_buffer_refills_it(tmp_path, capsys):
    args = tiny_args(tmp_path, total_timesteps=1000, eval_episodes=0, save_buffer_max_mb=0, halt_after=400)
    part = dqn.train(args)
    assert load_checkpoint(part)["loop"]["buffer_step"] is None
    assert not (Path(part) / dqn.BUFFER_NAME).exists()
    dqn.train(tiny_args(tmp_path, resume=part))
    assert "refilling" in capsys.readouterr().out
    updates = [r["global_step"] for r in read_metrics(part) if "losses/td_loss" in r]
    # learning stops at the resume step and starts again learning_starts (200) steps later
    assert 400 in updates and not [s for s in updates if 400 < s <= 600] and max(updates) == 1000


def run_script(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "algos" / "dqn_l0.py"), "--wandb-mode", "disabled", *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "argv, hint",
    [
        (["--l0-lambda", "-1"], "--l0-lambda must be >= 0"),
        (["--env-id", "NoSuchEnv-v9"], "NoSuchEnv-v9"),
        (["--env-id", "Pendulum-v1"], "DQN needs a discrete action space; use sac_l0.py"),
    ],
)
def test_bad_input_one_line_exit_2(argv, hint, tmp_path):
    proc = run_script(*argv, "--total-timesteps", "256", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and hint in lines[0], proc.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
