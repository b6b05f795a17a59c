"""Environments for l0rl: one make_env / make_vector_env for every supported family, and NeedleReach.

Importing this package registers NeedleReach-v0 with gymnasium (50-step episodes), so
`gym.make("NeedleReach-v0")` works too. See envs.factory for how algorithms read vector env infos.
"""

from l0rl._one_name import wrong_import_name

if __name__ != "l0rl.envs":  # this folder installs as l0rl.envs only
    raise wrong_import_name("l0rl.envs")

import gymnasium as gym

from l0rl.envs.factory import goal_spec, make_env, make_vector_env
from l0rl.envs.needle_reach import MAX_EPISODE_STEPS, NeedleReach
from l0rl.envs.registry import NEEDLE_REACH_ID, SUPPORTED_FAMILIES, EnvError, resolve_env_id

if NEEDLE_REACH_ID not in gym.registry:
    gym.register(id=NEEDLE_REACH_ID, entry_point=NeedleReach, max_episode_steps=MAX_EPISODE_STEPS)

__all__ = ["SUPPORTED_FAMILIES", "EnvError", "goal_spec", "make_env", "make_vector_env", "resolve_env_id"]
