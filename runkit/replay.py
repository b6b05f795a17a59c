"""Replay buffers of the off-policy algorithms, stored as plain arrays whose state_dict is plain tensors
(a saved buffer loads with torch.load(weights_only=True), like every file of a run directory).

`ReplayBuffer` (DQN) keeps each observation once, so a 100k buffer of Mario frames fits in memory;
`EpisodeReplayBuffer` (SAC) keeps each env's episodes contiguous in time, which hindsight experience
replay needs to relabel a transition with a goal achieved later in its own episode.

A saved buffer is read back through runkit.files (a regular file, bounded by the buffer's own size)
and must fit the buffer exactly (every array's shape and dtype): a damaged or crafted file is a
one-line RunError that says to delete it, never a traceback."""

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from l0rl.errors import RunError, UsageError
from l0rl.runkit.args import RunArgs
from l0rl.runkit.checkpoint import atomic_torch_save
from l0rl.runkit.files import MiB, load_plain

BUFFER_NAME = "replay_buffer.pt"
"""The buffer's file in a run directory, written next to each checkpoint when it is saved: plain data,
{"global_step": the checkpoint's step, "buffer": the buffer's state_dict()}, for both buffers."""


@dataclass
class ReplayArgs(RunArgs):
    """RunArgs plus what every off-policy algorithm with a replay buffer has."""

    save_buffer_max_mb: float = 200.0
    """save the replay buffer (replay_buffer.pt) with each checkpoint when it takes at most this many MB,
    so --resume is exact (vector observations yes, a 100k-frame Mario buffer of 2.8 GB no; 0: never);
    else --resume keeps weights, optimizers, schedules and step and refills the buffer first"""


def save_buffer(
    rb: "ReplayBuffer | EpisodeReplayBuffer", path: Path, global_step: int, max_mb: float
) -> bool:
    """Write `rb` to `path` for the checkpoint at `global_step` when it takes at most `max_mb` MB;
    call it before the checkpoint (a resume loads only a buffer of the checkpoint's own step). A
    buffer over the limit removes the previous file, so no stale buffer stays behind."""
    if rb.nbytes <= max_mb * 1e6:
        atomic_torch_save(path, {"global_step": global_step, "buffer": rb.state_dict()})
        return True
    path.unlink(missing_ok=True)
    return False


@contextlib.contextmanager
def fits_in_memory(buffer_size: int) -> Iterator[None]:
    """numpy's MemoryError for a buffer larger than memory (a typo, or a crafted checkpoint's
    arguments) as one line naming the option."""
    try:
        yield
    except MemoryError:
        raise UsageError(
            f"a replay buffer of --buffer-size {buffer_size:,} transitions does not fit in memory; pass a "
            "smaller --buffer-size"
        ) from None


def _unfit(path: Path, what: str) -> RunError:
    return RunError(
        f"{path} does not fit this run's replay buffer ({what}); delete it to resume with a refilled buffer"
    )


def _saved(path: Path, step: int, limit: int) -> dict | None:
    """The saved buffer file as plain data when it exists and was written at `step` (else None: a
    crash came between it and checkpoint.pt)."""
    if not os.path.lexists(path):
        return None
    saved = load_plain(path, limit, "replay buffer")
    if not isinstance(saved, dict) or type(saved.get("global_step")) is not int:
        raise _unfit(path, "no global_step")
    return saved if saved["global_step"] == step else None


def _fill(path: Path, target: np.ndarray, value: object, name: str, rows: int | None = None) -> None:
    """Copy a saved tensor into `target` (its first `rows` rows), refused unless shape and dtype fit."""
    want = target.shape if rows is None else (rows, *target.shape[1:])
    if not isinstance(value, torch.Tensor) or tuple(value.shape) != want:
        raise _unfit(path, f"{name} is not {want}")
    array = value.numpy()
    if array.dtype != target.dtype:
        raise _unfit(path, f"{name} is {array.dtype}, not {target.dtype}")
    target[: want[0]] = array


class ReplayBuffer:
    """Transitions of `num_envs` envs in a ring of rows, one row per vector step; each observation is
    stored once, in the observation space's dtype (uint8 frames stay uint8).

    The next obs of (row, env) is the obs of (row + 1, env), except where the transition ended an
    episode: SAME_STEP autoreset put the reset obs there, so the true final obs is kept in the side
    store `final_obs` (one entry per episode end in the ring). The newest row waits for its successor."""

    RINGS = ("obs", "actions", "rewards", "dones", "ended")

    def __init__(self, buffer_size: int, num_envs: int, obs_space: gym.Space):
        self.rows, self.num_envs = buffer_size // num_envs, num_envs
        shape = (self.rows, num_envs)
        with fits_in_memory(buffer_size):
            self.obs = np.zeros(shape + obs_space.shape, dtype=obs_space.dtype)
            self.actions = np.zeros(shape, dtype=np.int64)
            self.rewards = np.zeros(shape, dtype=np.float32)
            self.dones = np.zeros(shape, dtype=np.float32)  # terminated only: truncations still bootstrap
            self.ended = np.zeros(shape, dtype=bool)  # terminated or truncated: next obs is in final_obs
        self.final_obs: dict[int, np.ndarray] = {}  # row * num_envs + env -> true final observation
        self.pos, self.full = 0, False

    @property
    def nbytes(self) -> int:
        rings = sum(getattr(self, k).nbytes for k in self.RINGS)
        return rings + len(self.final_obs) * self.obs[0, 0].nbytes

    def __len__(self) -> int:
        """Number of transitions that can be sampled."""
        return max((self.rows if self.full else self.pos) - 1, 0) * self.num_envs

    def add(self, obs, actions, rewards, terminations, final_obs: dict[int, np.ndarray]) -> None:
        slot = self.pos * self.num_envs
        for env in np.nonzero(self.ended[self.pos])[0]:
            del self.final_obs[slot + env]
        self.obs[self.pos], self.actions[self.pos], self.rewards[self.pos] = obs, actions, rewards
        self.dones[self.pos], self.ended[self.pos] = terminations, False
        for env, final in final_obs.items():
            self.ended[self.pos, env] = True
            self.final_obs[slot + env] = np.array(final, dtype=self.obs.dtype)
        self.pos = (self.pos + 1) % self.rows
        self.full = self.full or self.pos == 0

    def cut(self, next_obs: np.ndarray) -> None:
        """The episodes in flight restart (resume without the env state): the newest row's next obs
        is `next_obs`, not the reset obs the next row will hold, so it goes to the side store."""
        if self.pos == 0 and not self.full:
            return
        row = (self.pos - 1) % self.rows
        for env in np.nonzero(~self.ended[row])[0]:
            self.ended[row, env] = True
            self.final_obs[row * self.num_envs + int(env)] = np.array(next_obs[env], dtype=self.obs.dtype)

    def sample(self, batch_size: int) -> tuple[np.ndarray, ...]:
        """(obs, actions, next_obs, rewards, dones), uniformly over the sampleable transitions."""
        start = self.pos if self.full else 0
        rows = (start + np.random.randint(0, len(self) // self.num_envs, batch_size)) % self.rows
        envs = np.random.randint(0, self.num_envs, batch_size)
        next_obs = self.obs[(rows + 1) % self.rows, envs]
        for i in np.nonzero(self.ended[rows, envs])[0]:
            next_obs[i] = self.final_obs[rows[i] * self.num_envs + envs[i]]
        obs, act, rew, done = (a[rows, envs] for a in (self.obs, self.actions, self.rewards, self.dones))
        return obs, act, next_obs, rew, done

    def state_dict(self) -> dict:
        """Tensors sharing the arrays' memory (torch.save writes them without a pickled copy)."""
        state = {k: torch.from_numpy(getattr(self, k)) for k in self.RINGS}
        final_obs = {k: torch.from_numpy(v) for k, v in self.final_obs.items()}
        return {**state, "final_obs": final_obs, "pos": self.pos, "full": int(self.full)}

    def load_state_dict(self, state: dict, path: Path | None = None) -> None:
        path = path or Path(BUFFER_NAME)
        if not isinstance(state, dict):
            raise _unfit(path, "not a buffer")
        for k in self.RINGS:
            _fill(path, getattr(self, k), state.get(k), k)
        final_obs, pos, full = state.get("final_obs"), state.get("pos"), state.get("full")
        if (
            type(pos) is not int
            or not 0 <= pos < self.rows
            or full not in (0, 1)
            or not isinstance(final_obs, dict)
        ):
            raise _unfit(path, "pos, full or final_obs")
        for k, v in final_obs.items():
            if type(k) is not int or not 0 <= k < self.rows * self.num_envs:
                raise _unfit(path, f"final_obs key {k!r:.20}")
            _fill(path, np.empty(self.obs.shape[2:], self.obs.dtype), v, "final_obs")
        self.final_obs = {k: v.numpy() for k, v in final_obs.items()}
        self.pos, self.full = pos, bool(full)

    def load(self, path: str | Path, step: int) -> bool:
        """Load the buffer saved at `path` when it was written at `step`; False when there is none
        (or it is older or newer: a crash came between it and checkpoint.pt)."""
        path = Path(path)
        saved = _saved(path, step, 2 * self.obs.nbytes + self.nbytes + 16 * MiB)
        if saved is None:
            return False
        self.load_state_dict(saved.get("buffer"), path)
        return True


class EpisodeReplayBuffer:
    """Transitions stored as [slot, env], so each env's episode lies contiguous in time and hindsight
    relabelling can pick an achieved goal from later in the same episode. Image observations stay uint8."""

    ARRAYS = ("obs", "next_obs", "actions", "rewards", "terminations", "step_index", "episode_end")

    def __init__(self, capacity: int, num_envs: int, obs_space: gym.Space, action_space: gym.Space):
        self.slots, self.num_envs = max(capacity // num_envs, 1), num_envs
        shape = (self.slots, num_envs)
        with fits_in_memory(capacity):
            self.obs = np.zeros(shape + obs_space.shape, obs_space.dtype)
            self.next_obs = np.zeros_like(self.obs)
            self.actions = np.zeros(shape + action_space.shape, action_space.dtype)
            self.rewards = np.zeros(shape, np.float32)
            self.terminations = np.zeros(shape, np.float32)
            self.step_index = np.zeros(shape, np.int64)  # vector step at which a transition was written
            self.episode_end = np.full(shape, -1, np.int64)  # vector step of its episode's end; -1: running
        self.episode_start = np.zeros(num_envs, np.int64)
        self.written = 0  # vector steps written so far

    @property
    def size(self) -> int:
        return min(self.written, self.slots) * self.num_envs

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, k).nbytes for k in self.ARRAYS) + self.episode_start.nbytes

    def add(self, obs, next_obs, actions, rewards, terminations, dones) -> None:
        slot = self.written % self.slots
        self.obs[slot], self.next_obs[slot], self.actions[slot] = obs, next_obs, actions
        self.rewards[slot], self.terminations[slot] = rewards, terminations
        self.step_index[slot], self.episode_end[slot] = self.written, -1
        for env in np.nonzero(dones)[0]:
            self.end_episode(env, self.written)
        self.written += 1

    def end_episode(self, env: int, last: int) -> None:
        steps = np.arange(max(self.episode_start[env], last - self.slots + 1), last + 1)
        self.episode_end[steps % self.slots, env] = last
        self.episode_start[env] = last + 1

    def end_running_episodes(self) -> None:
        """After a resume that restarted the envs, the episodes in flight ended at the last step."""
        for env in range(self.num_envs):
            if self.episode_start[env] < self.written:
                self.end_episode(env, self.written - 1)

    def sample(self, batch_size: int, her: dict | None = None, her_k: int = 0) -> dict[str, np.ndarray]:
        slot = np.random.randint(0, min(self.written, self.slots), batch_size)
        env = np.random.randint(0, self.num_envs, batch_size)
        batch = {
            k: getattr(self, k)[slot, env] for k in ("obs", "next_obs", "actions", "rewards", "terminations")
        }
        if her is not None:
            # "future" strategy: the goal becomes what was achieved at a later step of the same episode
            relabel = np.random.rand(batch_size) < her_k / (her_k + 1)
            start = self.step_index[slot, env]
            end = np.where(self.episode_end[slot, env] < 0, self.written - 1, self.episode_end[slot, env])
            future = start + (np.random.rand(batch_size) * (end - start + 1)).astype(np.int64)
            goal = self.next_obs[future % self.slots, env][relabel][:, her["achieved"]]
            for key in ("obs", "next_obs"):
                batch[key][relabel, her["desired"]] = goal
            achieved = batch["next_obs"][relabel][:, her["achieved"]]
            batch["rewards"][relabel] = her["compute_reward"](achieved, goal)
            batch["relabelled"] = relabel
        return batch

    def state_dict(self) -> dict:
        """Plain tensors and an int (the file loads with torch.load(weights_only=True))."""
        n = min(self.written, self.slots)
        state = {k: torch.from_numpy(getattr(self, k)[:n].copy()) for k in self.ARRAYS}
        return {
            **state,
            "episode_start": torch.from_numpy(self.episode_start.copy()),
            "written": self.written,
        }

    def load_state_dict(self, state: dict, path: Path | None = None) -> None:
        path = path or Path(BUFFER_NAME)
        written = state.get("written") if isinstance(state, dict) else None
        if type(written) is not int or written < 0:
            raise _unfit(path, "written")
        for key in self.ARRAYS:
            _fill(path, getattr(self, key), state.get(key), key, rows=min(written, self.slots))
        _fill(path, self.episode_start, state.get("episode_start"), "episode_start")
        self.written = written

    def load(self, path: str | Path, step: int) -> bool:
        """Load the buffer saved at `path` when it was written at `step`; False when there is none
        (or it is older or newer: a crash came between it and checkpoint.pt)."""
        path = Path(path)
        saved = _saved(path, step, self.nbytes + 16 * MiB)
        if saved is None:
            return False
        # files written before the one layout kept the state beside global_step (runs in flight resume)
        state = (
            saved["buffer"] if "buffer" in saved else {k: v for k, v in saved.items() if k != "global_step"}
        )
        self.load_state_dict(state, path)
        return True
