"""NeedleReach (SurRoL-like, re-implemented): task facts, rewards, episodes, goal_spec, and the SurRoL adapter.

Task constants (PAPER.md, "The surgical environment") are restated here on purpose, so a change in
envs/needle_reach.py that breaks the task is caught.
"""

import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from l0rl.envs import EnvError, goal_spec, make_env, make_vector_env
from l0rl.envs.factory import FlattenDictObservation
from l0rl.envs.needle_reach import NeedleReach
from l0rl.envs.surrol_adapter import SurRoLAdapter, convert_space

STEP = 0.04965
TIP_START = np.array([2.5, 0.25, 3.725], np.float32)
GOAL_Z = 3.43558


def make(**options) -> gym.Env:
    """The env as algorithms get it: flat 13-d observation, 50-step TimeLimit."""
    return make_env("NeedleReach-v0", 0, 0, False, "", **options)()


def tip_goal(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return obs[7:10], obs[10:13]


def move_to(goal: np.ndarray, tip: np.ndarray) -> np.ndarray:
    """The scripted policy: full speed towards the goal, exact on the last step."""
    return np.concatenate([np.clip((goal - tip) / 0.05, -1, 1), [0.3, -0.7]]).astype(np.float32)


def test_spaces_and_gymnasium_checker():
    env = NeedleReach()
    check_env(env, skip_render_check=True)
    space = env.observation_space
    assert isinstance(space, gym.spaces.Dict)
    assert {k: s.shape for k, s in space.items()} == {
        "observation": (7,),
        "achieved_goal": (3,),
        "desired_goal": (3,),
    }
    assert all(s.dtype == np.float32 for s in space.values())
    assert env.action_space == gym.spaces.Box(-1.0, 1.0, (5,), np.float32)
    flat = make()
    assert flat.observation_space.shape == (13,) and flat.observation_space.dtype == np.float32


def test_reset_facts_and_observation_layout():
    env = NeedleReach()
    goals = []
    for seed in range(300):
        obs, info = env.reset(seed=seed)
        assert info == {}
        np.testing.assert_array_equal(obs["achieved_goal"], TIP_START)
        np.testing.assert_allclose(obs["observation"][:3], TIP_START + [0, 0, 0.051], atol=1e-6)
        np.testing.assert_allclose(obs["observation"][3:], [-np.pi / 2, 0, np.pi / 2, 0], atol=1e-6)
        goals.append(obs["desired_goal"])
    goals = np.array(goals)
    assert goals[:, 0].min() >= np.float32(2.60) and goals[:, 0].max() <= np.float32(2.79)
    assert np.abs(goals[:, 1]).max() <= np.float32(0.145)
    np.testing.assert_allclose(goals[:, 2], GOAL_Z)
    assert abs(goals[:, 0].mean() - 2.685) < 0.01 and abs(goals[:, 0].std() - 0.041) < 0.008
    assert abs(goals[:, 1].mean()) < 0.015 and abs(goals[:, 1].std() - 0.076) < 0.012
    distance = np.linalg.norm(goals - TIP_START, axis=1)
    assert abs(distance.mean() - 0.43) < 0.02

    flat, _ = make().reset(seed=3)
    obs, _ = env.reset(seed=3)
    np.testing.assert_array_equal(
        flat, np.concatenate([obs["observation"], obs["achieved_goal"], obs["desired_goal"]])
    )


def test_seeding_is_deterministic():
    def rollout(seed):
        env = make()
        obs, _ = env.reset(seed=seed)
        env.action_space.seed(seed)
        trajectory = [obs]
        for _ in range(20):
            trajectory.append(env.step(env.action_space.sample())[0])
        return np.array(trajectory)

    np.testing.assert_array_equal(rollout(5), rollout(5))
    assert not np.array_equal(rollout(5)[0], rollout(6)[0])


def test_action_moves_tip_and_extra_dims_do_nothing():
    env = make()
    obs, _ = env.reset(seed=0)
    after, *_ = env.step(np.array([1.0, -0.5, 2.0, 0.9, -0.9], np.float32))  # 2.0 is clipped to 1
    np.testing.assert_allclose(after[7:10] - obs[7:10], [STEP, -0.5 * STEP, STEP], atol=1e-6)
    env.reset(seed=0)
    same, *_ = env.step(np.array([1.0, -0.5, 1.0, -1.0, 1.0], np.float32))
    np.testing.assert_array_equal(same, after)


def test_reward_at_goal_and_far_away():
    env = make()
    obs, _ = env.reset(seed=1)
    _, reward, terminated, truncated, info = env.step(np.zeros(5, np.float32))
    assert reward == -1.0 and info["is_success"] == 0.0 and not terminated and not truncated
    tip, goal = tip_goal(obs)
    for _ in range(15):
        obs, reward, *_, info = env.step(move_to(goal, tip))
        tip = obs[7:10]
    assert np.linalg.norm(tip - goal) < 0.025
    assert reward == 0.0 and info["is_success"] == 1.0


def test_dense_reward_is_minus_distance():
    env = make(reward_type="dense")
    obs, _ = env.reset(seed=2)
    obs, reward, *_ = env.step(np.array([0.3, -0.2, -0.4, 0, 0], np.float32))
    tip, goal = tip_goal(obs)
    assert reward == pytest.approx(-np.linalg.norm(tip - goal), abs=1e-6)
    assert reward < -0.3


def test_bad_reward_type():
    with pytest.raises(EnvError, match="reward_type"):
        make(reward_type="shaped")
    with pytest.raises(EnvError, match="reward_type"):
        NeedleReach(reward_type="shaped")


def test_truncation_at_exactly_50_steps_never_terminated():
    env = make()
    env.reset(seed=0)
    for step in range(1, 51):
        *_, terminated, truncated, _ = env.step(env.action_space.sample())
        assert not terminated
        assert truncated == (step == 50)


def test_workspace_clipping():
    env = make()
    env.reset(seed=0)
    for _ in range(50):
        obs, *_ = env.step(np.array([1, 0, 0, 0, 0], np.float32))
    assert obs[7] == pytest.approx(3.02)
    env.reset(seed=0)
    for _ in range(50):
        obs, *_ = env.step(np.array([-1, -1, -1, 0, 0], np.float32))
        assert obs[9] >= np.float32(3.4067)
    assert obs[7:10] == pytest.approx([2.48, -0.27, 3.4067])
    env.reset(seed=0)
    for _ in range(50):
        obs, *_ = env.step(np.array([0, 1, 1, 0, 0], np.float32))
    assert obs[8:10] == pytest.approx([0.27, 3.805])


def test_scripted_policy_succeeds():
    env = make()
    successes = []
    for seed in range(100):
        obs, _ = env.reset(seed=seed)
        truncated = False
        while not truncated:
            tip, goal = tip_goal(obs)
            obs, _, _, truncated, info = env.step(move_to(goal, tip))
        successes.append(info["is_success"])
    assert np.mean(successes) >= 0.95


@pytest.mark.parametrize("reward_type", ["sparse", "dense"])
def test_compute_reward_and_goal_spec_agree_with_steps(reward_type):
    spec = goal_spec("NeedleReach-v0", reward_type=reward_type)
    assert spec["achieved"] == slice(7, 10) and spec["desired"] == slice(10, 13)
    env = make(reward_type=reward_type)
    obs, _ = env.reset(seed=4)
    env.action_space.seed(4)
    observations, rewards, successes = [], [], []
    for step in range(50):
        # random moves, then the scripted policy, so both rewards (and the threshold) occur
        tip, goal = tip_goal(obs)
        action = env.action_space.sample() if step < 10 else move_to(goal, tip)
        obs, reward, *_, info = env.step(action)
        observations.append(obs)
        rewards.append(reward)
        successes.append(info["is_success"])
    observations = np.array(observations)
    achieved, desired = observations[:, spec["achieved"]], observations[:, spec["desired"]]
    relabelled = spec["compute_reward"](achieved, desired)
    assert relabelled.shape == (50,)
    np.testing.assert_array_equal(relabelled, np.array(rewards, np.float32))
    np.testing.assert_array_equal(env.unwrapped.compute_reward(achieved, desired, None), relabelled)
    if reward_type == "sparse":
        assert set(rewards) == {-1.0, 0.0}
        np.testing.assert_array_equal(np.array(rewards) == 0.0, np.array(successes) == 1.0)
    # hindsight: the goal actually reached is a success
    assert np.all(spec["compute_reward"](achieved, achieved) == 0.0)


def test_goal_spec_is_none_for_other_envs():
    assert goal_spec("CartPole-v1") is None
    with pytest.raises(EnvError, match="reward_type"):
        goal_spec("NeedleReach-v0", reward_type="bad")


def test_gym_make_and_render():
    env = gym.make("NeedleReach-v0", render_mode="rgb_array")
    assert env.spec.max_episode_steps == 50
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (128, 128, 3) and frame.dtype == np.uint8
    env.step(np.array([1, -1, -1, 0, 0], np.float32))
    assert not np.array_equal(env.render(), frame)  # the tip marker moved


def test_vector_env_reports_success_in_final_info():
    envs = make_vector_env("NeedleReach-v0", 2, seed=0)
    obs, _ = envs.reset(seed=0)
    for step in range(1, 51):
        actions = np.stack([move_to(o[10:13], o[7:10]) for o in obs])
        obs, _, terminations, truncations, infos = envs.step(actions)
        assert truncations.all() == (step == 50) and not terminations.any()
    assert infos["_final_obs"].all() and infos["final_obs"][0].shape == (13,)
    np.testing.assert_array_equal(infos["final_info"]["is_success"], [1.0, 1.0])
    np.testing.assert_array_equal(infos["episode"]["l"], [50, 50])
    np.testing.assert_array_equal(obs[:, 7:10], np.tile(TIP_START, (2, 1)))  # already reset
    envs.close()


# ----------------------------------------------------------------------------------------------
# The SurRoL adapter, against a small stand-in written here with the old gym API that SurRoL uses


class OldBox:
    def __init__(self, low, high, shape):
        self.low, self.high, self.shape, self.dtype = low, high, shape, np.float32


class OldDict:
    def __init__(self, spaces):
        self.spaces = spaces


class OldApiEnv:
    """reset() without seed returning obs only, 4-tuple step, seed(), TimeLimit-style truncation info."""

    def __init__(self, limit=3):
        self.observation_space = OldDict(
            {
                "achieved_goal": OldBox(-1, 1, (3,)),
                "desired_goal": OldBox(-1, 1, (3,)),
                "observation": OldBox(-2, 2, (7,)),
            }
        )
        self.action_space = OldBox(-1.0, 1.0, (5,))
        self.limit, self.rng, self.seeds, self.closed = limit, np.random.default_rng(), [], False

    def seed(self, seed=None):
        self.seeds.append(seed)
        self.rng = np.random.default_rng(seed)
        return [seed]

    def reset(self):
        self.t = 0
        return self._obs()

    def step(self, action):
        self.t += 1
        at_goal = action[0] > 0.5
        info = {"is_success": float(at_goal)}
        if self.t >= self.limit and not at_goal:
            info["TimeLimit.truncated"] = True
        return self._obs(), 0.0 if at_goal else -1.0, at_goal or self.t >= self.limit, info

    def render(self, mode="human"):
        return np.zeros((4, 4, 3), np.uint8) if mode == "rgb_array" else None

    def close(self):
        self.closed = True

    def _obs(self):
        return {
            "observation": self.rng.random(7),
            "achieved_goal": np.full(3, 0.1 * self.t),
            "desired_goal": np.array([0.1, 0.2, 0.3]),
        }


def test_surrol_adapter_spaces():
    env = SurRoLAdapter(OldApiEnv())
    assert env.action_space == gym.spaces.Box(-1.0, 1.0, (5,), np.float32)
    assert isinstance(env.observation_space, gym.spaces.Dict)
    assert env.observation_space["observation"] == gym.spaces.Box(-2.0, 2.0, (7,), np.float32)

    class OldDiscrete:
        n = 4

    assert convert_space(OldDiscrete()) == gym.spaces.Discrete(4)
    with pytest.raises(EnvError, match="cannot convert"):
        convert_space(object())


def test_surrol_adapter_seeding_and_steps():
    old = OldApiEnv(limit=3)
    env = SurRoLAdapter(old, render_mode="rgb_array")
    first, info = env.reset(seed=7)
    assert old.seeds == [7] and info == {}
    again, _ = env.reset(seed=7)
    np.testing.assert_array_equal(first["observation"], again["observation"])
    env.reset()
    assert old.seeds == [7, 7]  # no seed given: the old env keeps its RNG

    obs, reward, terminated, truncated, info = env.step(np.zeros(5))
    assert (reward, terminated, truncated) == (-1.0, False, False)
    *_, terminated, truncated, _ = env.step(np.zeros(5))
    *_, terminated, truncated, _ = env.step(np.zeros(5))
    assert (terminated, truncated) == (False, True)  # time limit: truncated, not terminated

    env.reset(seed=1)
    _, reward, terminated, truncated, info = env.step(np.ones(5))
    assert (reward, terminated, truncated, info["is_success"]) == (0.0, True, False, 1.0)
    assert env.render().shape == (4, 4, 3)
    env.close()
    assert old.closed


def test_surrol_adapter_flattens_like_needle_reach():
    env = FlattenDictObservation(SurRoLAdapter(OldApiEnv()), ("observation", "achieved_goal", "desired_goal"))
    obs, _ = env.reset(seed=0)
    assert obs.shape == (13,) and obs.dtype == np.float32
    np.testing.assert_allclose(obs[10:13], [0.1, 0.2, 0.3])


def test_surrol_adapter_without_seed_method_warns():
    class Unseedable(OldApiEnv):
        seed = None

    env = SurRoLAdapter(Unseedable())
    with pytest.warns(UserWarning, match="not reproducible"):
        env.reset(seed=0)


def test_surrol_id_without_surrol(monkeypatch):
    monkeypatch.setitem(sys.modules, "surrol", None)
    with pytest.raises(EnvError, match="SurRoL.*not installed.*NeedleReach-v0") as err:
        make_env("SurRoL/NeedleReach-v0", 0, 0, False, "")
    assert "\n" not in str(err.value)


def test_the_baselines_fail_and_solve_the_reach_on_the_same_episodes():
    """A learned figure beside its trivial baselines: a uniform random policy never reaches the goal
    within the 50 steps, the scripted one (straight at the goal) always does, and both replay by seed."""
    from benchmark.baselines import baselines

    random_row, scripted = baselines("NeedleReach-v0", 5, 10_011, None)
    assert random_row["path"] == "random" and random_row["successes"] == [0.0] * 5
    assert random_row["returns"] == [-50.0] * 5  # the sparse reward: -1 on every step short of the goal
    assert scripted["path"].startswith("scripted") and scripted["successes"] == [1.0] * 5
    assert max(scripted["lengths"]) == 50 and -10 < scripted["return_mean"] < 0
    assert baselines("NeedleReach-v0", 5, 10_011, None) == [random_row, scripted]
