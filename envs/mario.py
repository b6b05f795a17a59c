"""The Super Mario Bros observation pipeline: 4 stacked 84x84 grey frames, every `skip`-th frame, and
each episode's progress (furthest x, flag) in its step info.

Two definitions of the same observations:
- `reference_frames`: gymnasium's wrappers (MaxAndSkipObservation -> GrayscaleObservation ->
  ResizeObservation -> FrameStackObservation), the readable definition, about 55 % of the bare
  emulator's frame rate because it max-pools full RGB frames and greys them in float64;
- `MarioFrames`: one wrapper that yields the same arrays bit for bit (tests/test_mario.py checks
  it on recorded episodes) at close to the emulator's own rate: it copies the emulator's 32-bit
  pixel buffer, max-pools the two last frames byte-wise, and greys them through a lookup table that
  holds gymnasium's float64 formula for every 24-bit colour.
`make_env` builds MarioFrames; `reference_frames` is kept for the tests and the pipeline benchmark.
"""

import functools
import sys

import gymnasium as gym
import numpy as np

FRAME_SIZE = (84, 84)
STACK = 4
GREY_WEIGHTS = np.array([0.2125, 0.7154, 0.0721])
"""gymnasium's GrayscaleObservation weights (R, G, B), applied in float64 and truncated to uint8."""
FURTHEST_X, FLAG = "furthest_x", "flag_get"
"""Info keys of an episode's progress: at its last step, the furthest x reached and whether Mario got the flag."""
_SCREEN = (240, 256)
_LUT_CHUNK = 1 << 20


def reference_frames(env: gym.Env, skip: int) -> gym.Env:
    """The observation pipeline as gymnasium's own wrappers define it (no progress figures)."""
    env = gym.wrappers.MaxAndSkipObservation(env, skip=skip)
    env = gym.wrappers.GrayscaleObservation(env)
    env = gym.wrappers.ResizeObservation(env, FRAME_SIZE)
    return gym.wrappers.FrameStackObservation(env, STACK)


@functools.cache
def grey_table() -> np.ndarray:
    """uint8[2**24]: the grey value of colour 0xRRGGBB, computed with GrayscaleObservation's own
    expression so that a lookup equals its float64 multiply-sum exactly (built once per process, ~1 s)."""
    table = np.empty(1 << 24, dtype=np.uint8)
    for start in range(0, 1 << 24, _LUT_CHUNK):
        keys = np.arange(start, start + _LUT_CHUNK, dtype=np.uint32)
        rgb = np.stack([(keys >> 16) & 0xFF, (keys >> 8) & 0xFF, keys & 0xFF], axis=-1).astype(np.uint8)
        table[start : start + _LUT_CHUNK] = np.sum(np.multiply(rgb, GREY_WEIGHTS), axis=-1).astype(np.uint8)
    return table


def pixel_buffer(screen: np.ndarray) -> np.ndarray:
    """The emulator's 32-bit pixels (0x00RRGGBB) as a uint32 (240, 256) view of nes-py's RGB screen view.

    nes-py exposes its native pixel buffer as a uint8 view starting at byte 2 of each little-endian
    pixel with strides (1024, 4, -1); reversing the channels gives the pixel's first byte."""
    if sys.byteorder != "little" or screen.shape != (*_SCREEN, 3) or screen.strides != (1024, 4, -1):
        raise RuntimeError(f"unexpected nes-py screen layout {screen.shape} {screen.strides}")
    bgrx = np.lib.stride_tricks.as_strided(screen[:, :, ::-1], shape=(*_SCREEN, 4), strides=(1024, 4, 1))
    return bgrx.view(np.uint32)[..., 0]


class MarioFrames(gym.Wrapper):
    """`skip` emulator frames per agent step, rewards summed, the two last frames max-pooled, greyed,
    resized to 84x84 and stacked 4 deep (oldest first): `reference_frames`' observations, faster.

    Every step's info also carries `furthest_x`, the largest `x_pos` of any frame of the episode so
    far (Mario can walk back; the episode's progress is the furthest point), next to the env's own
    `flag_get`: at an episode's last step these are its progress figures."""

    def __init__(self, env: gym.Env, skip: int = 4):
        import cv2  # a core dependency, but only Mario needs it: vector-env users skip its import

        super().__init__(env)
        self.skip, self._resize, self._area = skip, cv2.resize, cv2.INTER_AREA
        self.observation_space = gym.spaces.Box(0, 255, (STACK, *FRAME_SIZE), dtype=np.uint8)
        self._pixels = pixel_buffer(env.unwrapped.screen)
        self._lut = grey_table()
        # the two last frames of a step; like MaxAndSkipObservation's buffer they outlive steps and
        # resets, so an episode ending early in a step pools with the previous step's frames
        self._last = np.zeros((2, *_SCREEN), dtype=np.uint32)
        self._pooled = np.empty(_SCREEN, dtype=np.uint32)
        self._grey = np.empty(_SCREEN, dtype=np.uint8)
        self._stack = np.zeros(self.observation_space.shape, dtype=np.uint8)
        self._furthest = 0

    def _frame(self, pixels: np.ndarray) -> np.ndarray:
        np.take(self._lut, pixels, out=self._grey)
        return self._resize(self._grey, FRAME_SIZE[::-1], interpolation=self._area)

    def reset(self, **kwargs):
        _, info = self.env.reset(**kwargs)
        self._furthest = int(info["x_pos"])
        self._stack[:] = self._frame(self._pixels)
        return self._stack.copy(), {**info, FURTHEST_X: self._furthest}

    def step(self, action):
        total, terminated, truncated, info = 0.0, False, False, {}
        for i in range(self.skip):
            _, reward, terminated, truncated, info = self.env.step(action)
            self._furthest = max(self._furthest, int(info["x_pos"]))
            if i >= self.skip - 2:
                np.copyto(self._last[i - self.skip + 2], self._pixels)
            total += float(reward)
            if terminated or truncated:
                break
        # a byte-wise max of 0x00RRGGBB pixels is the channel-wise max of their RGB
        np.maximum(
            self._last[0].view(np.uint8), self._last[1].view(np.uint8), out=self._pooled.view(np.uint8)
        )
        self._stack[:-1] = self._stack[1:]
        self._stack[-1] = self._frame(self._pooled)
        return self._stack.copy(), total, terminated, truncated, {**info, FURTHEST_X: self._furthest}
