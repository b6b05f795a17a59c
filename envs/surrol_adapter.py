"""Run an old-gym-API environment, such as the real SurRoL's tasks, under the gymnasium 1.x API.

SurRoL (github.com/med-air/SurRoL, not on PyPI) is built on gym < 0.26: `reset()` takes no seed and
returns only the observation, `step()` returns (obs, reward, done, info) and gym's TimeLimit marks a
time-out with info["TimeLimit.truncated"], and its spaces are old `gym.spaces` objects. SurRoLAdapter
translates all of that; envs.make_env uses it for "SurRoL/<Task>-v0" ids when SurRoL is installed.
Spaces are converted by duck typing so this module never imports the old gym package.
"""

import importlib
import warnings
from collections.abc import Mapping

import gymnasium as gym
import numpy as np

from l0rl.envs.registry import SURROL_PREFIX, EnvError


def convert_space(space) -> gym.Space:
    """A gymnasium space equal to an old gym Box / Discrete / Dict (or a gymnasium space, unchanged)."""
    if isinstance(space, gym.Space):
        return space
    if isinstance(getattr(space, "spaces", None), Mapping):
        return gym.spaces.Dict({key: convert_space(sub) for key, sub in space.spaces.items()})
    if hasattr(space, "n"):
        return gym.spaces.Discrete(int(space.n))
    if hasattr(space, "low") and hasattr(space, "high"):
        dtype = np.dtype(space.dtype)
        low = np.broadcast_to(np.asarray(space.low, dtype), space.shape)
        high = np.broadcast_to(np.asarray(space.high, dtype), space.shape)
        return gym.spaces.Box(low, high, tuple(space.shape), dtype)
    raise EnvError(f"cannot convert the old gym space {space!r}: only Box, Discrete and Dict are supported")


class SurRoLAdapter(gym.Env):
    """A gymnasium.Env around an env with the old gym API (4-tuple step, unseeded reset, optional seed())."""

    def __init__(self, old_env, render_mode: str | None = None):
        self.old_env = old_env
        self.observation_space = convert_space(old_env.observation_space)
        self.action_space = convert_space(old_env.action_space)
        self.render_mode = render_mode
        self.metadata = {"render_modes": ["rgb_array"], "render_fps": 5}  # SurRoL steps 0.2 s of sim time
        self._warned_unseedable = False

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            if callable(getattr(self.old_env, "seed", None)):
                self.old_env.seed(seed)
            elif not self._warned_unseedable:
                warnings.warn(
                    f"{type(self.old_env).__name__} has no seed(): its resets are not reproducible",
                    stacklevel=2,
                )
                self._warned_unseedable = True
        return self.old_env.reset(), {}

    def step(self, action):
        obs, reward, done, info = self.old_env.step(action)
        # Old gym's TimeLimit sets done=True at the time limit and says so in this key.
        truncated = bool(info.get("TimeLimit.truncated", False))
        return obs, float(reward), bool(done) and not truncated, truncated, info

    def render(self):
        if self.render_mode is None:
            return None
        return self.old_env.render(mode=self.render_mode)

    def close(self):
        self.old_env.close()


def make_surrol(env_id: str, render_mode: str | None = None) -> SurRoLAdapter:
    """Build SurRoL's task for an id "SurRoL/<Task>-v0" (checked by envs.resolve_env_id) under the adapter."""
    old_gym = importlib.import_module("gym")
    importlib.import_module("surrol.gym")  # registers SurRoL's tasks with the old gym registry
    return SurRoLAdapter(old_gym.make(env_id.removeprefix(SURROL_PREFIX)), render_mode=render_mode)
