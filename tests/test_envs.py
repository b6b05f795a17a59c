"""envs: every family builds with the documented spaces, ids and options are checked with one-line errors,
and vector envs autoreset in the same step with episode statistics reported once per episode."""

import pickle
import sys

import gymnasium as gym
import numpy as np
import pytest
from helpers import one_line

from l0rl.envs import SUPPORTED_FAMILIES, EnvError, make_env, make_vector_env, resolve_env_id

VECTOR_IDS = [
    "CartPole-v1",
    "Acrobot-v1",
    "LunarLander-v3",
    "LunarLanderContinuous-v3",
    "NeedleReach-v0",
    "Pendulum-v1",
]


def one_line_error(call, *args, match: str, **kwargs) -> str:
    """The one-line message of the EnvError `call` raises."""
    with pytest.raises(EnvError, match=match) as err:
        call(*args, **kwargs)
    return one_line(str(err.value))


@pytest.mark.parametrize("env_id", VECTOR_IDS)
def test_vector_families_build_and_step(env_id):
    env = make_env(env_id, 0, 0, False, "")()
    space = env.observation_space
    assert isinstance(space, gym.spaces.Box) and len(space.shape) == 1
    obs, _ = env.reset(seed=0)
    assert obs.shape == space.shape and obs.dtype == space.dtype
    obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
    assert obs.shape == space.shape and np.isfinite(reward)
    env.close()


def test_action_space_seeded_by_thunk():
    samples = [
        make_env("LunarLanderContinuous-v3", 3, 0, False, "")().action_space.sample() for _ in range(2)
    ]
    np.testing.assert_array_equal(*samples)


@pytest.mark.parametrize(
    "old, new",
    [("LunarLander-v2", "LunarLander-v3"), ("LunarLanderContinuous-v2", "LunarLanderContinuous-v3")],
)
def test_v2_alias_warns_and_gives_v3(old, new):
    with pytest.warns(UserWarning, match=new) as record:
        assert resolve_env_id(old) == new
    assert len(record) == 1 and "\n" not in str(record[0].message)
    with pytest.warns(UserWarning, match=new):
        env = make_env(old, 0, 0, False, "")()
    assert env.spec.id == new


def test_unknown_id_lists_families_in_one_line():
    message = one_line_error(resolve_env_id, "CartPol-v1", match="unknown env id")
    assert "did you mean 'CartPole-v1'" in message
    for fam in SUPPORTED_FAMILIES:
        assert fam in message
    one_line_error(make_env, "NoSuchEnv-v0", 0, 0, False, "", match="unknown env id")  # eager: no thunk call
    one_line_error(make_vector_env, "NoSuchEnv-v0", 2, 0, match="unknown env id")


@pytest.mark.parametrize(
    "env_id, match",
    [
        ("FrozenLake-v1", "Discrete"),  # not a vector observation
        ("CarRacing-v3", "image observations"),  # images only for Mario
        ("SuperMarioBros-9-1-v0", "world W in 1-8"),
        ("SuperMarioBros-v0", "SuperMarioBros-<W>-<S>-v0"),
        ("", "non-empty"),
    ],
)
def test_unsupported_ids(env_id, match):
    one_line_error(resolve_env_id, env_id, match=match)


def test_mario_without_emulator(monkeypatch):
    monkeypatch.setitem(sys.modules, "gym_super_mario_bros", None)
    monkeypatch.setitem(sys.modules, "nes_py.wrappers", None)
    message = one_line_error(
        make_env, "SuperMarioBros-1-1-v0", 0, 0, False, "", match="Mario needs its emulator"
    )
    assert (
        "make setup" in message
        and "--ignore-requires-python nes-py==9.0.1 gym-super-mario-bros==9.1.0" in message
    )


def test_unknown_and_bad_options():
    one_line_error(
        make_env, "NeedleReach-v0", 0, 0, False, "", match="'foo'.*accepts only reward_type", foo=1
    )
    one_line_error(make_env, "CartPole-v1", 0, 0, False, "", match="'gravity'.*takes no options", gravity=1)
    one_line_error(make_vector_env, "NeedleReach-v0", 2, 0, match="reward_type", reward_type="shaped")


def test_video_without_moviepy(monkeypatch):
    monkeypatch.setitem(sys.modules, "moviepy", None)
    message = one_line_error(make_env, "CartPole-v1", 0, 0, True, "run", match="moviepy")
    assert 'pip install -e ".[video]"' in message
    make_env("CartPole-v1", 0, 1, True, "run")  # only idx 0 records, so only it needs moviepy


def test_num_envs_checked():
    one_line_error(make_vector_env, "CartPole-v1", 0, 0, match="num_envs")


def test_vector_env_same_step_autoreset_and_episode_stats():
    """CartPole pushed right falls within ~10 steps; compare against a single env stepped the same way."""
    num_envs, seed = 2, 7
    envs = make_vector_env("CartPole-v1", num_envs, seed)
    assert isinstance(envs.env, gym.vector.SyncVectorEnv)
    assert envs.metadata["autoreset_mode"] == gym.vector.AutoresetMode.SAME_STEP
    single = make_env("CartPole-v1", seed, 0, False, "")()
    obs, _ = envs.reset(seed=seed)
    single_obs, _ = single.reset(seed=seed)  # sub-env 0 is seeded with seed + 0
    np.testing.assert_array_equal(obs[0], single_obs)

    returns, lengths, ends = np.zeros(num_envs), np.zeros(num_envs, int), 0
    for _ in range(60):
        obs, rewards, terminations, truncations, infos = envs.step(np.ones(num_envs, int))
        single_obs, _, single_done, _, _ = single.step(1)
        returns += rewards
        lengths += 1
        dones = terminations | truncations
        if not dones.any():
            assert "episode" not in infos and "final_obs" not in infos
        else:  # each finished episode is reported once, on the step it ends
            np.testing.assert_array_equal(infos["_episode"], dones)
            np.testing.assert_array_equal(infos["_final_obs"], dones)
        for i in np.nonzero(dones)[0]:
            final = infos["final_obs"][i]
            assert abs(final[2]) > 0.2095 or abs(final[0]) > 2.4  # the true terminal state: pole fell
            assert np.all(np.abs(obs[i]) <= 0.05)  # the returned obs is a fresh reset state
            assert infos["episode"]["r"][i] == returns[i] and infos["episode"]["l"][i] == lengths[i]
            returns[i], lengths[i] = 0, 0
        assert single_done == dones[0]
        if dones[0]:
            np.testing.assert_array_equal(infos["final_obs"][0], single_obs)
            single_obs, _ = single.reset()  # the next episode continues the sub-env's own RNG
            ends += 1
        np.testing.assert_array_equal(obs[0], single_obs)
    assert ends >= 3
    envs.close()


def test_vector_env_seeding_is_deterministic_and_picklable():
    def rollout(env_id, seed):
        envs = make_vector_env(env_id, 3, seed)
        envs.action_space.seed(seed)
        trajectory = [envs.reset(seed=seed)[0]]
        for _ in range(30):
            trajectory.append(envs.step(envs.action_space.sample())[0])
        envs.close()
        return np.array(trajectory)

    for env_id in ["CartPole-v1", "NeedleReach-v0"]:
        first = rollout(env_id, 1)
        np.testing.assert_array_equal(first, rollout(env_id, 1))
        assert not np.array_equal(first[0], rollout(env_id, 2)[0])
        assert not np.array_equal(first[0, 0], first[0, 1])  # sub-envs get different seeds

    # algorithms checkpoint cheap vector envs by pickling them, to resume exactly
    envs = make_vector_env("NeedleReach-v0", 2, 0)
    envs.reset(seed=0)
    clone = pickle.loads(pickle.dumps(envs))
    actions = envs.action_space.sample()
    np.testing.assert_array_equal(envs.step(actions)[0], clone.step(actions)[0])


def test_asynchronous_override():
    envs = make_vector_env("CartPole-v1", 2, 0, asynchronous=True)
    assert isinstance(envs.env, gym.vector.AsyncVectorEnv)
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (2, 4)
    envs.close()


@pytest.mark.mario
def test_mario_pipeline():
    env = make_env("SuperMarioBros-1-1-v0", 0, 0, False, "")()
    assert env.observation_space == gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    assert env.action_space == gym.spaces.Discrete(7)
    first, _ = env.reset(seed=1)
    assert first.shape == (4, 84, 84) and first.dtype == np.uint8
    trajectory = [env.step(np.int64(a))[0] for a in [1, 1, 2, 0, 5, 1]]
    again, _ = env.reset(seed=1)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(trajectory, [env.step(np.int64(a))[0] for a in [1, 1, 2, 0, 5, 1]])
    assert not np.array_equal(trajectory[-1], first)  # Mario moved
    env.close()


@pytest.mark.mario
def test_mario_other_stage_and_skip_option():
    env = make_env("SuperMarioBros-4-2-v0", 0, 0, False, "", skip=2)()
    obs, info = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and (info["world"], info["stage"]) == (4, 2)
    env.close()
    one_line_error(
        make_env, "SuperMarioBros-1-1-v0", 0, 0, False, "", match="accepts only skip", reward_type="dense"
    )
    one_line_error(make_env, "SuperMarioBros-1-1-v0", 0, 0, False, "", match="skip", skip=1)


@pytest.mark.mario
def test_mario_vector_env_is_async():
    envs = make_vector_env("SuperMarioBros-1-1-v0", 2, 0)
    assert isinstance(envs.env, gym.vector.AsyncVectorEnv)
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
    for _ in range(10):
        obs, rewards, *_ = envs.step(envs.action_space.sample())
    assert obs.shape == (2, 4, 84, 84) and rewards.shape == (2,)
    envs.close()
