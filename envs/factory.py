"""Environment pipelines: the one definition of how each family is built, single and vectorized.

Families (see envs.registry): vector-observation gymnasium envs (CartPole, Acrobot, LunarLander, ...),
Super Mario Bros (NES emulator, preprocessed to 4 stacked 84x84 grey frames), NeedleReach-v0 (the
built-in SurRoL-like task) and the real SurRoL through its adapter. Dict observations are flattened
into one float32 vector, goal envs in the order observation | achieved_goal | desired_goal.
"""

import importlib.util
import multiprocessing
import signal
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import gymnasium as gym
import numpy as np

from l0rl.envs.mario import MarioFrames, grey_table
from l0rl.envs.needle_reach import REWARD_TYPES, NeedleReach, goal_reward
from l0rl.envs.registry import EnvError, family, resolve_env_id
from l0rl.envs.surrol_adapter import make_surrol

GOAL_KEYS = ("observation", "achieved_goal", "desired_goal")


def _check_reward_type(value) -> None:
    if value not in REWARD_TYPES:
        raise EnvError(f"option reward_type must be one of {REWARD_TYPES}, got {value!r}")


def _check_skip(value) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 2:
        raise EnvError(f"option skip must be an integer >= 2 (frames per agent step), got {value!r}")


# The options each family accepts, with their checks; defaults live in the pipeline signatures.
OPTIONS: dict[str, dict[str, Callable]] = {
    "gym": {},
    "needle": {"reward_type": _check_reward_type},
    "mario": {"skip": _check_skip},
    "surrol": {},
}


def check_options(env_id: str, options: dict) -> None:
    """EnvError for an option the family of (canonical) `env_id` does not accept, or a bad value."""
    accepted = OPTIONS[family(env_id)]
    for name, value in options.items():
        if name not in accepted:
            takes = f"accepts only {', '.join(accepted)}" if accepted else "takes no options"
            raise EnvError(f"unknown env option {name!r} for {env_id}: it {takes}")
        accepted[name](value)


class FlattenDictObservation(gym.ObservationWrapper):
    """A Dict of 1-D Box observations as one float32 vector, the parts concatenated in a fixed key order."""

    def __init__(self, env: gym.Env, keys: tuple[str, ...]):
        super().__init__(env)
        self.keys = keys
        parts = [env.observation_space[key] for key in keys]
        low = np.concatenate([np.broadcast_to(p.low, p.shape) for p in parts]).astype(np.float32)
        high = np.concatenate([np.broadcast_to(p.high, p.shape) for p in parts]).astype(np.float32)
        self.observation_space = gym.spaces.Box(low, high, dtype=np.float32)

    def observation(self, observation: dict) -> np.ndarray:
        return np.concatenate([observation[key] for key in self.keys], dtype=np.float32)


def flat_slices(space: gym.spaces.Dict, keys: tuple[str, ...]) -> dict[str, slice]:
    """Where each part of a FlattenDictObservation(keys) lies in the flat vector."""
    slices, start = {}, 0
    for key in keys:
        size = space[key].shape[0]
        slices[key] = slice(start, start + size)
        start += size
    return slices


def _flatten_keys(space: gym.spaces.Dict) -> tuple[str, ...]:
    # Goal envs get the documented layout; any other Dict keeps gymnasium's (sorted) key order.
    return GOAL_KEYS if set(space.keys()) == set(GOAL_KEYS) else tuple(space.keys())


def _record(env: gym.Env, video_dir: str | None) -> gym.Env:
    # Right after the base env, so a video shows every raw frame, not the agent's preprocessed view.
    return env if video_dir is None else gym.wrappers.RecordVideo(env, video_dir)


def _flatten_if_dict(env: gym.Env) -> gym.Env:
    space = env.observation_space
    return FlattenDictObservation(env, _flatten_keys(space)) if isinstance(space, gym.spaces.Dict) else env


def _gym_pipeline(env_id: str, video_dir: str | None, **options) -> gym.Env:
    """Registered gymnasium envs, NeedleReach-v0 included (its options go to its constructor)."""
    render_mode = "rgb_array" if video_dir else None
    return _flatten_if_dict(_record(gym.make(env_id, render_mode=render_mode, **options), video_dir))


def _mario_pipeline(env_id: str, video_dir: str | None, skip: int = 4) -> gym.Env:
    """The NES emulator with the 7 SIMPLE_MOVEMENT actions, then Nature-DQN style frames (envs.mario)."""
    # Optional packages, imported only when a Mario env is built (envs.registry checked them).
    import gym_super_mario_bros
    from gym_super_mario_bros.actions import SIMPLE_MOVEMENT
    from nes_py.wrappers import JoypadSpace

    env = gym_super_mario_bros.make(env_id, render_mode="rgb_array" if video_dir else None)
    return MarioFrames(_record(JoypadSpace(env, SIMPLE_MOVEMENT), video_dir), skip=skip)


def _surrol_pipeline(env_id: str, video_dir: str | None) -> gym.Env:
    return _flatten_if_dict(_record(make_surrol(env_id, "rgb_array" if video_dir else None), video_dir))


PIPELINES: dict[str, Callable[..., gym.Env]] = {
    "gym": _gym_pipeline,
    "needle": _gym_pipeline,
    "mario": _mario_pipeline,
    "surrol": _surrol_pipeline,
}


@dataclass(frozen=True)
class EnvThunk:
    """Builds one env of a family pipeline when called. A class, not a closure, so that a SyncVectorEnv
    (which keeps its thunks) can be pickled into a checkpoint."""

    env_id: str
    seed: int
    video_dir: str | None
    options: dict

    def __call__(self) -> gym.Env:
        if multiprocessing.parent_process() is not None:  # an async vector env's worker: Ctrl-C is the
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # trainer's to handle (it stops cleanly), not ours
        env = PIPELINES[family(self.env_id)](self.env_id, self.video_dir, **self.options)
        env.action_space.seed(self.seed)
        return env


def make_env(env_id: str, seed: int, idx: int, capture_video: bool, video_dir: str, **options) -> EnvThunk:
    """A CleanRL-style thunk building one env of `env_id`'s family pipeline.

    The id, the options and (for videos) moviepy are checked now, so mistakes surface before any
    worker process starts. The thunk seeds the action space with `seed`; the env itself is seeded by
    the first `reset(seed=...)`. With capture_video, the env with idx 0 records to `video_dir` (the
    algorithms pass their run directory's videos/).
    Observations: a 1-D vector for vector envs (float32 for Dict observations, flattened), uint8
    (4, 84, 84) for Mario.
    """
    env_id = resolve_env_id(env_id)
    check_options(env_id, options)
    if family(env_id) == "mario":
        grey_table()  # built here, once: forked vector-env workers share the parent's copy
    video_dir = video_dir if capture_video and idx == 0 else None
    if video_dir and importlib.util.find_spec("moviepy") is None:
        raise EnvError('capture_video needs moviepy: pip install -e ".[video]"')
    return EnvThunk(env_id, seed, video_dir, dict(options))


def make_vector_env(
    env_id: str,
    num_envs: int,
    seed: int,
    capture_video: bool = False,
    video_dir: str = "",
    asynchronous: bool | None = None,
    **options,
) -> gym.vector.VectorEnv:
    """`num_envs` envs of one family (thunk i seeded with seed + i), autoresetting in the same step.

    Sync for cheap envs; async (one process per env) for Mario and SurRoL unless `asynchronous`
    says otherwise (SurRoL's PyBullet tasks share one physics server per process).

    How an algorithm reads it:
    - call `envs.reset(seed=seed)` once: gymnasium seeds sub-env i with seed + i on that first reset.
    - `obs, rewards, terminations, truncations, infos = envs.step(actions)`. Autoreset is SAME_STEP:
      when sub-env i ends, the obs[i] returned is already the first obs of its next episode, and no
      later step is a fake reset transition, so every transition is a real one.
    - the true last obs of an episode that ended: `infos["final_obs"][i]` (object array of length
      num_envs holding single-env observations; valid where the bool mask `infos["_final_obs"][i]`),
      e.g. to bootstrap a truncated episode or store (obs, action, final_obs) in a replay buffer. The
      step info of that last step is `infos["final_info"]` (a dict of arrays with "_key" masks, e.g.
      `infos["final_info"]["is_success"][i]` for NeedleReach); top-level info keys of a reset sub-env
      come from its reset.
    - finished episodes: `infos["episode"]["r"][i]` (return, float64) and `infos["episode"]["l"][i]`
      (length, int), arrays of length num_envs valid where `infos["_episode"][i]`; the keys are only
      present on steps where some episode ended. Each episode is reported exactly once.
    """
    if isinstance(num_envs, bool) or not isinstance(num_envs, int | np.integer) or num_envs < 1:
        raise EnvError(f"num_envs must be an integer >= 1, got {num_envs!r}")
    env_id = resolve_env_id(env_id)
    thunks = [make_env(env_id, seed + i, i, capture_video, video_dir, **options) for i in range(num_envs)]
    if asynchronous is None:
        asynchronous = family(env_id) in ("mario", "surrol")
    vector_cls = gym.vector.AsyncVectorEnv if asynchronous else gym.vector.SyncVectorEnv
    envs = vector_cls(thunks, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    return gym.wrappers.vector.RecordEpisodeStatistics(envs)


def goal_spec(env_id: str, **options) -> dict | None:
    """Where the goals lie in make_env's flat observation, and the vectorized reward, for hindsight relabelling.

    For NeedleReach-v0: {"achieved": slice(7, 10), "desired": slice(10, 13), "compute_reward": fn}
    with fn(achieved[N, 3], desired[N, 3]) -> rewards[N] (float32), identical to the env's step reward
    for the same `options` (reward_type). None for envs that are not goal-conditioned (SurRoL's tasks
    through the adapter included).
    """
    env_id = resolve_env_id(env_id)
    if family(env_id) != "needle":
        return None
    check_options(env_id, options)
    reward_type = options.get("reward_type", "sparse")
    slices = flat_slices(NeedleReach(reward_type).observation_space, GOAL_KEYS)
    return {
        "achieved": slices["achieved_goal"],
        "desired": slices["desired_goal"],
        "compute_reward": partial(goal_reward, reward_type=reward_type),
    }
