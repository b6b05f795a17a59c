"""NeedleReach (SurRoL-like, re-implemented): move a surgical tool tip to a point above a needle.

This is l0rl's own gymnasium-native re-implementation of SurRoL's NeedleReach-v0 task, written from
the task facts measured on SurRoL (docs PAPER.md, "The surgical environment"); it is not SurRoL and
has no physics engine. Lengths are in SurRoL's scene units (1 unit = 0.2 m).

- observation: Dict of float32 Boxes. `observation` (7) = wrist position (tip + (0, 0, 0.051)), the
  tool's Euler angles (fixed at (-pi/2, 0, pi/2): the task never rotates it) and the jaw angle (0);
  `achieved_goal` (3) = tip position; `desired_goal` (3) = goal, fixed within an episode.
- action: Box(-1, 1, (5,)). a[:3] moves the tip by STEP_SIZE * clip(a, -1, 1); a[3] (yaw) and a[4]
  (jaw) have no effect, as in SurRoL.
- the tip stays inside the workspace box and above the tray pad.
- reward: "sparse" (default) 0 when ||tip - goal|| < SUCCESS_DISTANCE else -1; "dense" -||tip - goal||.
  info["is_success"] is 1.0 exactly when the sparse reward is 0.
- episodes: 50 steps, ended by truncation only. The limit comes from the TimeLimit that the
  `NeedleReach-v0` registration adds (gym.make and envs.make_env); the class on its own never ends an
  episode, just as SurRoL's task relied on gym's TimeLimit.

State and goal are float32, and the step reward is computed from the same float32 values that the
observation carries, so `compute_reward` on observations reproduces step rewards bit for bit
(hindsight relabelling depends on that).
"""

import gymnasium as gym
import numpy as np

from l0rl.envs.registry import EnvError

MAX_EPISODE_STEPS = 50
STEP_SIZE = 0.04965  # nominal 0.05 per unit action; SurRoL's arm achieves 0.993 of it
SUCCESS_DISTANCE = 0.025
REWARD_TYPES = ("sparse", "dense")

TIP_START = (2.5, 0.25, 3.725)
WORKSPACE_LOW = (2.48, -0.27, 3.375)
WORKSPACE_HIGH = (3.02, 0.27, 3.805)
TRAY_PAD_Z = 3.4067  # the tip cannot go below the pad, which lies above the workspace's floor
WRIST_OFFSET = (0.0, 0.0, 0.051)
ORIENTATION = (-np.pi / 2, 0.0, np.pi / 2, 0.0)  # Euler angles, then the jaw angle

# The goal is a point above a randomly placed needle: x, y normal and clipped, z fixed.
GOAL_MEAN_XY = (2.685, 0.0)
GOAL_STD_XY = (0.041, 0.076)
GOAL_LOW_XY = (2.60, -0.145)
GOAL_HIGH_XY = (2.79, 0.145)
GOAL_Z = 3.43558


def goal_distance(achieved_goal: np.ndarray, desired_goal: np.ndarray) -> np.ndarray:
    """Euclidean distance over the last axis, in float32 like the observations."""
    diff = np.asarray(achieved_goal, dtype=np.float32) - np.asarray(desired_goal, dtype=np.float32)
    return np.linalg.norm(diff, axis=-1)


def reward_from_distance(distance: np.ndarray, reward_type: str) -> np.ndarray:
    if reward_type == "dense":
        return -distance
    return -(distance >= SUCCESS_DISTANCE).astype(np.float32)


def goal_reward(
    achieved_goal: np.ndarray, desired_goal: np.ndarray, reward_type: str = "sparse"
) -> np.ndarray:
    """NeedleReach's reward for goals of shape (..., 3): the one formula that step() also uses."""
    return reward_from_distance(goal_distance(achieved_goal, desired_goal), reward_type)


def _box(low, high) -> gym.spaces.Box:
    return gym.spaces.Box(np.asarray(low, np.float32), np.asarray(high, np.float32), dtype=np.float32)


class NeedleReach(gym.Env):
    """NeedleReach (SurRoL-like, re-implemented); see the module docstring for the task."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, reward_type: str = "sparse", render_mode: str | None = None):
        if reward_type not in REWARD_TYPES:
            raise EnvError(f"NeedleReach reward_type must be one of {REWARD_TYPES}, got {reward_type!r}")
        if render_mode not in (None, "rgb_array"):
            raise EnvError(f"NeedleReach render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.reward_type = reward_type
        self.render_mode = render_mode
        self._low = np.array(WORKSPACE_LOW, np.float32)
        self._low[2] = max(self._low[2], TRAY_PAD_Z)
        self._high = np.array(WORKSPACE_HIGH, np.float32)
        self._wrist_offset = np.array(WRIST_OFFSET, np.float32)
        # True bounds (the workspace; angles in [-pi, pi]) so that bound-based normalisation and checks mean
        # something; the goal's fixed z would give a zero-width box, which gymnasium's checker rejects.
        angles = np.full(len(ORIENTATION), np.pi, np.float32)
        self.observation_space = gym.spaces.Dict(
            {
                "observation": _box(
                    np.concatenate((self._low + self._wrist_offset, -angles)),
                    np.concatenate((self._high + self._wrist_offset, angles)),
                ),
                "achieved_goal": _box(self._low, self._high),
                "desired_goal": _box(self._low, self._high),
            }
        )
        self.action_space = gym.spaces.Box(-1.0, 1.0, (5,), np.float32)
        self._orientation = np.array(ORIENTATION, np.float32)
        self._move = np.zeros(3, np.float32)
        self._tip = np.array(TIP_START, np.float32)
        self._goal = np.array((*GOAL_MEAN_XY, GOAL_Z), np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._tip[:] = TIP_START
        xy = np.clip(self.np_random.normal(GOAL_MEAN_XY, GOAL_STD_XY), GOAL_LOW_XY, GOAL_HIGH_XY)
        self._goal[:2] = xy
        self._goal[2] = GOAL_Z
        return self._observation(), {}

    def step(self, action):
        np.clip(np.asarray(action, dtype=np.float32)[:3], -1.0, 1.0, out=self._move)
        self._move *= STEP_SIZE
        self._tip += self._move
        np.clip(self._tip, self._low, self._high, out=self._tip)
        distance = goal_distance(self._tip, self._goal)
        reward = float(reward_from_distance(distance, self.reward_type))
        info = {"is_success": float(distance < SUCCESS_DISTANCE)}
        return self._observation(), reward, False, False, info

    def compute_reward(self, achieved_goal: np.ndarray, desired_goal: np.ndarray, info=None) -> np.ndarray:
        """Rewards for goals of shape (..., 3), as step() would give them (gymnasium-robotics GoalEnv API)."""
        return goal_reward(achieved_goal, desired_goal, self.reward_type)

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        frame = _BACKGROUND.copy()
        _mark(frame, self._goal, 3, (40, 200, 80))
        _mark(frame, self._tip, 2, (230, 60, 50))
        return frame

    def _observation(self) -> dict[str, np.ndarray]:
        return {
            "observation": np.concatenate((self._tip + self._wrist_offset, self._orientation)),
            "achieved_goal": self._tip.copy(),
            "desired_goal": self._goal.copy(),
        }


# Rendering: a 128x128 frame, top view (x right, y down) in the upper half and side view (x right,
# z up) in the lower half, each spanning the workspace. Drawn with numpy so videos need no GL.
_SIZE, _HALF = 128, 64


def _pixel(point: np.ndarray, view: int) -> tuple[int, int]:
    lo, hi = WORKSPACE_LOW, WORKSPACE_HIGH
    col = (point[0] - lo[0]) / (hi[0] - lo[0]) * (_SIZE - 1)
    if view == 0:
        row = (point[1] - lo[1]) / (hi[1] - lo[1]) * (_HALF - 1)
    else:
        row = _HALF + (hi[2] - point[2]) / (hi[2] - lo[2]) * (_HALF - 1)
    return int(round(row)), int(round(col))


def _mark(frame: np.ndarray, point: np.ndarray, radius: int, color: tuple[int, int, int]) -> None:
    for view in (0, 1):
        row, col = _pixel(point, view)
        top = max(row - radius, view * _HALF)
        frame[top : min(row + radius + 1, (view + 1) * _HALF), max(col - radius, 0) : col + radius + 1] = (
            color
        )


def _draw_background() -> np.ndarray:
    frame = np.full((_SIZE, _SIZE, 3), 30, np.uint8)
    frame[_HALF - 1 : _HALF + 1] = 90  # divider between the two views
    pad_row, _ = _pixel(np.array((0.0, 0.0, TRAY_PAD_Z)), 1)
    frame[pad_row:] = (70, 60, 45)  # the tray pad, below which the tip cannot go
    return frame


_BACKGROUND = _draw_background()
