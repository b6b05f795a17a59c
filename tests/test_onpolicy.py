"""PPO-L0 and A2C-L0: smoke runs on every env family, autoreset handling, resume, reproducibility."""

import importlib
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
from l0rl.runkit import load_checkpoint, read_metrics

ROOT = Path(__file__).resolve().parents[1]
ALGOS = {
    "ppo": importlib.import_module("l0rl.algos.ppo_l0"),
    "a2c": importlib.import_module("l0rl.algos.a2c_l0"),
}


def tiny_args(algo: str, tmp_path: Path, **kw):
    mod = ALGOS[algo]
    base = dict(wandb_mode="disabled", runs_dir=str(tmp_path), progress=False, eval_episodes=2, num_envs=2)
    base.update({"num_steps": 32, "total_timesteps": 256} if algo == "ppo" else {"total_timesteps": 200})
    base.update(kw)
    return mod.Args(**base)


def check_run(run_dir: str, l0_on: bool) -> dict:
    ckpt = load_checkpoint(run_dir)
    assert ckpt["finished"] and ckpt["global_step"] > 0
    policy = ALGOS[ckpt["algo"][:3]].policy_from_checkpoint(ckpt)
    assert any(True for _ in l0.gated_layers(policy)) == l0_on
    rows = read_metrics(run_dir)
    assert any("losses/value_loss" in r for r in rows), "no learning update was logged"
    summary = json.loads((Path(run_dir) / "summary.json").read_text())
    assert math.isfinite(summary["eval/episodic_return"])
    if l0_on:
        assert 0.0 <= summary["l0/sparsity"] <= 1.0
        assert any("l0/lambda" in r and "l0/expected_l0" in r for r in rows)
    return summary


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Acrobot-v1", "LunarLander-v3"])
@pytest.mark.parametrize("l0_on", [True, False])
def test_smoke(algo, env_id, l0_on, tmp_path):
    run_dir = ALGOS[algo].train(tiny_args(algo, tmp_path, env_id=env_id, l0=l0_on))
    check_run(run_dir, l0_on)


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_continuous_actions(algo, tmp_path):
    run_dir = ALGOS[algo].train(tiny_args(algo, tmp_path, env_id="NeedleReach-v0"))
    summary = check_run(run_dir, True)
    assert 0.0 <= summary["eval/success_rate"] <= 1.0


@pytest.mark.mario
@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_mario_smoke(algo, tmp_path):
    args = tiny_args(
        algo, tmp_path, env_id="SuperMarioBros-7-1-v0", num_steps=16, total_timesteps=64, eval_episodes=1
    )
    args.eval_max_steps = 100
    run_dir = ALGOS[algo].train(args)
    check_run(run_dir, True)
    policy = ALGOS[algo].policy_from_checkpoint(load_checkpoint(run_dir))
    assert isinstance(policy[1], torch.nn.Conv2d)


class CountingEnv(gym.Env):
    """Episodes of 3 steps; counts real step() calls so a test can tell real transitions from
    autoreset filler (NEXT_STEP autoreset would put transitions in the batch that no step() made)."""

    real_steps = 0
    episodes = 0

    def __init__(self, render_mode=None):
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(-1, 10, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0, 1.0], np.float32), {}

    def step(self, action):
        type(self).real_steps += 1
        self.t += 1
        done = self.t >= 3
        type(self).episodes += int(done)
        return np.array([self.t, 1.0], np.float32), 1.0, done, False, {}


gym.register("l0rlCounting-v0", entry_point=CountingEnv)


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_no_autoreset_transition_reaches_the_update(algo, tmp_path):
    CountingEnv.real_steps = CountingEnv.episodes = 0
    run_dir = ALGOS[algo].train(tiny_args(algo, tmp_path, env_id="l0rlCounting-v0", eval_episodes=0))
    ckpt = load_checkpoint(run_dir)
    # every transition the update consumed came from a real env.step(), and every finished
    # episode was logged exactly once with its true length and return
    assert CountingEnv.real_steps == ckpt["global_step"]
    episodes = [r for r in read_metrics(run_dir) if "charts/episodic_return" in r]
    assert len(episodes) == CountingEnv.episodes > 0
    assert all(r["charts/episodic_length"] == 3 and r["charts/episodic_return"] == 3.0 for r in episodes)


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_resume_matches_uninterrupted(algo, tmp_path):
    kw = dict(total_timesteps=512 if algo == "ppo" else 400, eval_episodes=0)
    full = ALGOS[algo].train(tiny_args(algo, tmp_path / "full", **kw))
    part = ALGOS[algo].train(tiny_args(algo, tmp_path / "part", halt_after=3, **kw))
    assert not load_checkpoint(part)["finished"]
    ALGOS[algo].train(tiny_args(algo, tmp_path / "ignored", resume=part))
    a, b = load_checkpoint(full), load_checkpoint(part)
    assert a["global_step"] == b["global_step"] and b["finished"]
    for key, value in a["networks"]["agent"].items():
        torch.testing.assert_close(value, b["networks"]["agent"][key], rtol=0, atol=0, msg=key)
    steps_a = [r["global_step"] for r in read_metrics(full) if "losses/value_loss" in r]
    steps_b = [r["global_step"] for r in read_metrics(part) if "losses/value_loss" in r]
    assert steps_a == steps_b, "resumed record must not repeat or skip steps"


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_same_seed_same_first_losses(algo, tmp_path):
    rows = []
    for i in range(2):
        run_dir = ALGOS[algo].train(tiny_args(algo, tmp_path / str(i), eval_episodes=0))
        rows.append(next(r for r in read_metrics(run_dir) if "losses/value_loss" in r))
    for key in ("losses/value_loss", "losses/policy_loss", "losses/entropy", "losses/l0_penalty"):
        assert rows[0][key] == rows[1][key], key


def run_script(algo: str, *argv: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "algos" / f"{algo}_l0.py"), "--wandb-mode", "disabled", *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "argv, hint",
    [
        (["--env-id", "NoSuchEnv-v9"], "NoSuchEnv-v9"),
        (["--l0-lambda-actor", "-1"], ">= 0"),
        (["--l0-drop-rate", "1.5"], "drop_rate"),
        (["--env-options", "not json"], "JSON"),
        (["--resume", "runs/missing_run"], "does not exist"),
    ],
)
def test_bad_input_one_line_exit_2(argv, hint, tmp_path):
    proc = run_script("ppo", *argv, "--total-timesteps", "1024", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and hint in lines[0], proc.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_resume_corrupt_checkpoint_leaves_files_untouched(tmp_path):
    run_dir = Path(ALGOS["ppo"].train(tiny_args("ppo", tmp_path, eval_episodes=0, halt_after=1)))
    ckpt = run_dir / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    proc = run_script("a2c", "--resume", str(run_dir), cwd=tmp_path)
    assert proc.returncode == 2 and "corrupt" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before


def test_resume_with_another_algorithm_is_refused(tmp_path):
    run_dir = ALGOS["ppo"].train(tiny_args("ppo", tmp_path, eval_episodes=0, halt_after=1))
    proc = run_script("a2c", "--resume", run_dir, cwd=tmp_path)
    assert proc.returncode == 2 and "ppo_l0" in proc.stderr


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_resume_box2d_restarts_episodes(algo, tmp_path):
    """Box2D envs pickle only their constructor arguments: resume must restart their episodes
    instead of restoring a never-reset env (regression: LunarLander resume used to crash)."""
    run_dir = ALGOS[algo].train(
        tiny_args(algo, tmp_path, env_id="LunarLander-v3", eval_episodes=0, halt_after=1)
    )
    assert load_checkpoint(run_dir)["loop"]["envs"] is None
    ALGOS[algo].train(tiny_args(algo, tmp_path / "x", resume=run_dir))
    assert load_checkpoint(run_dir)["finished"]
