"""Mario's observation pipeline and progress figures: the fast pipeline yields the reference pipeline's
arrays exactly, each episode's furthest x and flag equal the emulator's own info, and the trivial
baselines are reproducible by seed."""

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from helpers import tiny_args

from benchmark.baselines import MarioRunJump, baselines
from l0rl.envs import make_env
from l0rl.envs.mario import GREY_WEIGHTS, MarioFrames, grey_table, pixel_buffer, reference_frames
from l0rl.runkit import evaluate

pytestmark = pytest.mark.mario
MARIO = "SuperMarioBros-7-1-v0"


def _game(env_id=MARIO):
    import gym_super_mario_bros
    from gym_super_mario_bros.actions import SIMPLE_MOVEMENT
    from nes_py.wrappers import JoypadSpace

    return JoypadSpace(gym_super_mario_bros.make(env_id), SIMPLE_MOVEMENT)


def test_grey_table_is_gymnasiums_float64_formula():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (50_000, 3), dtype=np.uint8)
    rgb[:8] = [
        [0, 0, 0],
        [255, 255, 255],
        [255, 0, 0],
        [0, 255, 0],
        [0, 0, 255],
        [1, 2, 3],
        [7, 7, 7],
        [8, 9, 250],
    ]
    keys = (rgb[:, 0].astype(np.uint32) << 16) | (rgb[:, 1].astype(np.uint32) << 8) | rgb[:, 2]
    expected = np.sum(np.multiply(rgb, GREY_WEIGHTS), axis=-1).astype(np.uint8)
    np.testing.assert_array_equal(grey_table()[keys], expected)


def test_pixel_buffer_is_the_screen():
    env = _game()
    env.reset(seed=0)
    for _ in range(60):
        env.step(1)
    screen, pixels = env.unwrapped.screen, pixel_buffer(env.unwrapped.screen)
    np.testing.assert_array_equal((pixels >> 16) & 0xFF, screen[..., 0])
    np.testing.assert_array_equal((pixels >> 8) & 0xFF, screen[..., 1])
    np.testing.assert_array_equal(pixels & 0xFF, screen[..., 2])
    assert pixels.max() < 1 << 24  # the fourth byte is 0, so a pixel is its own 24-bit colour key
    env.close()


@pytest.mark.parametrize("skip", [4, 3])
def test_fast_pipeline_equals_gymnasiums_wrappers_on_recorded_episodes(skip):
    """Same observations, rewards and ends, step by step, across episode ends (an episode ending early
    in a step pools with the previous step's frames in both)."""
    reference, fast = reference_frames(_game(), skip), MarioFrames(_game(), skip)
    assert fast.observation_space == reference.observation_space
    obs_ref, _ = reference.reset(seed=3)
    obs_fast, _ = fast.reset(seed=3)
    np.testing.assert_array_equal(obs_fast, obs_ref)
    actions, ends = np.random.default_rng(skip).integers(0, 7, 400), 0
    for n, a in enumerate(actions):
        *ref, _ = reference.step(int(a))
        *new, _ = fast.step(int(a))
        np.testing.assert_array_equal(new[0], ref[0], err_msg=f"step {n}")
        assert new[1:] == ref[1:], f"step {n}"
        if ref[2] or ref[3]:
            ends += 1
            np.testing.assert_array_equal(fast.reset()[0], reference.reset()[0])
    assert ends >= 2, "the recording must cross episode ends"
    fast.close()
    reference.close()


def test_episode_progress_equals_the_emulators_info_for_a_scripted_episode():
    """make_env's furthest_x / flag_get at an episode's end, and evaluate's x_pos / flags, equal the
    max x_pos and the flag of the same actions replayed frame by frame on the bare game env."""
    env = make_env(MARIO, 0, 0, False, "")()
    policy, actions = MarioRunJump(), []
    env.reset(seed=5)
    done, info = False, {}
    while not done:
        actions.append(int(policy(np.zeros((1, 1))).argmax()))
        _, _, terminated, truncated, info = env.step(actions[-1])
        done = terminated or truncated
    env.close()
    game = _game()
    _, first = game.reset(seed=5)
    xs, flag = [first["x_pos"]], False
    for a in actions:
        for _ in range(4):
            _, _, terminated, truncated, frame = game.step(a)
            xs.append(frame["x_pos"])
            flag = frame["flag_get"]
            if terminated or truncated:
                break
    game.close()
    assert info["furthest_x"] == max(xs) and info["flag_get"] == flag
    assert max(xs) > first["x_pos"]  # it moved
    result = evaluate(MarioRunJump(), MARIO, {}, episodes=1, seed=5, greedy=True)
    assert result["x_pos"] == [max(xs)] and result["flags"] == [flag]
    assert result["lengths"] == [len(actions)]


def test_random_baseline_is_reproducible_by_seed(tmp_path):
    first = baselines(MARIO, 2, 101, max_steps=60)
    again = baselines(MARIO, 2, 101, max_steps=60)
    other = baselines(MARIO, 2, 202, max_steps=60)
    assert [r["path"] for r in first] == ["random", "scripted (run-jump)"]
    assert first[0]["returns"] == again[0]["returns"] and first[0]["x_pos"] == again[0]["x_pos"]
    assert first[0]["returns"] != other[0]["returns"], "the random policy must vary with the seed"
    assert first[1]["returns"] == other[1]["returns"], (
        "the scripted policy ignores the seed (the emulator is deterministic)"
    )
    assert all(len(r["x_pos"]) == 2 and max(r["lengths"]) <= 60 for r in first)


def test_training_logs_each_episodes_furthest_x_and_flag(tmp_path):
    from l0rl.algos import ppo_l0

    kw = dict(num_steps=128, total_timesteps=512, num_minibatches=4, update_epochs=1, eval_max_steps=30)
    args = tiny_args("ppo", tmp_path, env_id=MARIO, eval_episodes=1, sparsity="none", eval_greedy=False, **kw)
    run_dir = Path(ppo_l0.train(args))
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    episodes = [r for r in rows if "charts/episodic_return" in r]
    progress = [r for r in rows if "charts/x_pos" in r]
    assert episodes and len(progress) == len(episodes)  # one progress record per finished episode
    assert all(r["charts/flag_get"] == 0.0 and 40 <= r["charts/x_pos"] < 3000 for r in progress)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["eval/x_pos"] == summary["eval/x_pos_max"] >= 40 and summary["eval/flag_rate"] == 0.0


def test_make_env_builds_the_fast_pipeline():
    env = make_env(MARIO, 0, 0, False, "")()
    assert isinstance(env, MarioFrames) and env.observation_space == gym.spaces.Box(
        0, 255, (4, 84, 84), np.uint8
    )
    env.close()
