"""Which environment ids l0rl accepts, their canonical names, and the one-line error a user sees otherwise.

Everything here is cheap and runs in the parent process, so a bad id fails before any worker
process is spawned or any run directory is created. The pipelines that build the accepted ids live
in envs/factory.py.
"""

import difflib
import functools
import importlib
import re
import warnings

import gymnasium as gym

from l0rl.errors import UsageError, first_line


class EnvError(UsageError):
    """A mistake the user can fix (id, option, missing extra); the message is one line saying how."""


NEEDLE_REACH_ID = "NeedleReach-v0"
SURROL_PREFIX = "SurRoL/"
MARIO_PREFIX = "SuperMarioBros"
MARIO_ID = re.compile(r"SuperMarioBros-[1-8]-[1-4]-v0")
MARIO_INSTALL = (
    "run 'make setup' or pip install --ignore-requires-python nes-py==9.0.1 gym-super-mario-bros==9.1.0"
)
# Vector-observation envs l0rl is tested on; any other registered vector env is checked by building it.
TESTED_VECTOR_IDS = ("CartPole-v1", "Acrobot-v1", "LunarLander-v3", "LunarLanderContinuous-v3")
# Gymnasium 1.x removed these versions; their successors are the same tasks.
ALIASES = {"LunarLander-v2": "LunarLander-v3", "LunarLanderContinuous-v2": "LunarLanderContinuous-v3"}

SUPPORTED_FAMILIES = (
    *TESTED_VECTOR_IDS,
    "SuperMarioBros-<W>-<S>-v0 (world 1-8, stage 1-4)",
    NEEDLE_REACH_ID,
    f"{SURROL_PREFIX}<Task>-v0 (needs SurRoL installed)",
    "any installed gymnasium id with a vector (1-D Box or Dict-of-Box) observation",
)


def family(env_id: str) -> str:
    """The pipeline family of a canonical id: "needle", "mario", "surrol" or "gym"."""
    if env_id == NEEDLE_REACH_ID:
        return "needle"
    if env_id.startswith(SURROL_PREFIX):
        return "surrol"
    if MARIO_ID.fullmatch(env_id):
        return "mario"
    return "gym"


def resolve_env_id(env_id: str) -> str:
    """The canonical id for `env_id`, or EnvError when l0rl cannot run it.

    Old LunarLander versions map to v3 with a warning. Mario and SurRoL ids are accepted only when
    their packages import. Any other registered gymnasium id is built once (and the answer cached) to
    check that its observation is a vector.
    """
    if not isinstance(env_id, str) or not env_id:
        raise EnvError(f"env id must be a non-empty string, got {env_id!r}; supported: {_families()}")
    if env_id in ALIASES:
        new_id = ALIASES[env_id]
        warnings.warn(f"{env_id} no longer exists in gymnasium 1.x; using {new_id} instead", stacklevel=2)
        env_id = new_id
    if env_id == NEEDLE_REACH_ID or env_id in TESTED_VECTOR_IDS:
        return env_id
    if env_id.startswith(SURROL_PREFIX):
        _check_surrol(env_id)
        return env_id
    if env_id.startswith(MARIO_PREFIX):
        _check_mario(env_id)
        return env_id
    if env_id not in gym.registry:
        raise EnvError(f"unknown env id {env_id!r}{_suggestion(env_id)}; supported: {_families()}")
    problem = _observation_problem(env_id)
    if problem:
        raise EnvError(problem)
    return env_id


def _families() -> str:
    return ", ".join(SUPPORTED_FAMILIES)


def _suggestion(env_id: str) -> str:
    known = [*gym.registry, NEEDLE_REACH_ID, "SuperMarioBros-1-1-v0"]
    close = difflib.get_close_matches(env_id, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_mario(env_id: str) -> None:
    if not MARIO_ID.fullmatch(env_id):
        raise EnvError(
            f"unsupported Mario id {env_id!r}: use SuperMarioBros-<W>-<S>-v0 with world W in 1-8 and "
            "stage S in 1-4, e.g. SuperMarioBros-1-1-v0"
        )
    try:
        importlib.import_module("nes_py.wrappers")
        importlib.import_module("gym_super_mario_bros")
    except ImportError as e:
        raise EnvError(f"Mario needs its emulator: {MARIO_INSTALL} ({e})") from None


def _check_surrol(env_id: str) -> None:
    task = env_id.removeprefix(SURROL_PREFIX)
    try:
        old_gym = importlib.import_module("gym")
        importlib.import_module("surrol.gym")  # registers SurRoL's tasks with the old gym registry
    except ImportError:
        raise EnvError(
            f"{env_id} needs SurRoL, which is not installed (it is not on PyPI: see github.com/med-air/SurRoL); "
            f"{NEEDLE_REACH_ID} is l0rl's built-in re-implementation of NeedleReach"
        ) from None
    try:
        old_gym.spec(task)
    except Exception as e:
        raise EnvError(
            f"SurRoL has no task {task!r} ({first_line(e)}); e.g. {SURROL_PREFIX}NeedleReach-v0"
        ) from None


@functools.cache
def _observation_problem(env_id: str) -> str | None:
    """Why a registered gymnasium env cannot be used (one line), or None when its observation is a vector."""
    try:
        env = gym.make(env_id)
    except Exception as e:
        return f"{env_id} cannot be built: {first_line(e)}"
    space = env.observation_space
    env.close()
    if _is_vector(space):
        return None
    if isinstance(space, gym.spaces.Box) and len(space.shape) in (2, 3):
        return (
            f"{env_id} has image observations {space.shape}: l0rl supports images only for "
            f"SuperMarioBros-<W>-<S>-v0; use an env with a vector observation"
        )
    return f"{env_id} has observation space {space}: l0rl needs a 1-D Box or a Dict of 1-D Boxes"


def _is_vector(space: gym.Space) -> bool:
    if isinstance(space, gym.spaces.Dict):
        return len(space) > 0 and all(
            _is_vector(s) and not isinstance(s, gym.spaces.Dict) for s in space.values()
        )
    return isinstance(space, gym.spaces.Box) and len(space.shape) == 1
