"""Frames per second of l0rl's Mario env pipeline beside the bare emulator and gymnasium's wrappers,
measured in one process in interleaved rounds (so machine load affects all alike), one core.

    python -m benchmark.measure.mario_pipeline --steps 2000 --rounds 5 --json benchmark/results/mario/pipeline.json

Four ways to run SuperMarioBros-7-1-v0, each over the same seeded random actions (held for `skip`
frames in the bare cases, as the pipelines do):
- bare nes-py: `nes_py.NESEnv` on the game's ROM, no game logic (what `python -m nes_py.speedtest` times);
- game env: gym-super-mario-bros' env (its per-frame Python reward and info) with its wrappers;
- reference: JoypadSpace -> gymnasium's MaxAndSkip -> Grayscale -> Resize -> FrameStack;
- l0rl: JoypadSpace -> envs.mario.MarioFrames, what make_env builds (same observations as the reference).
Prints the median frames/s of each and its ratio to the bare emulator.
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from l0rl.runkit.cli import run_cli

ENV_ID = "SuperMarioBros-7-1-v0"


def _game_env():
    import gym_super_mario_bros

    return gym_super_mario_bros.make(ENV_ID)


def _joypad(env):
    from gym_super_mario_bros.actions import SIMPLE_MOVEMENT
    from nes_py.wrappers import JoypadSpace

    return JoypadSpace(env, SIMPLE_MOVEMENT)


def builders(skip: int) -> dict:
    """name -> (make the env, frames per step, action encoder)."""
    from gym_super_mario_bros._roms import smb1_rom_path
    from gym_super_mario_bros.actions import SIMPLE_MOVEMENT
    from nes_py import NESEnv
    from nes_py.wrappers import JoypadSpace

    from l0rl.envs.mario import MarioFrames, reference_frames

    # the byte each SIMPLE_MOVEMENT action presses, for the envs without a joypad wrapper
    bytes_ = JoypadSpace(_game_env(), SIMPLE_MOVEMENT)._action_map
    return {
        "bare nes-py": (lambda: NESEnv(smb1_rom_path()), 1, lambda a: bytes_[a]),
        "game env": (_game_env, 1, lambda a: bytes_[a]),
        "reference pipeline": (lambda: reference_frames(_joypad(_game_env()), skip), skip, int),
        "l0rl pipeline": (lambda: MarioFrames(_joypad(_game_env()), skip), skip, int),
    }


def frames_per_second(make, frames_per_step: int, encode, steps: int, skip: int, seed: int) -> float:
    """Frames/s over `steps` agent steps of one env (resets included, creation excluded)."""
    env = make()
    actions = np.random.default_rng(seed).integers(0, 7, size=steps)
    env.reset(seed=seed)
    calls = steps * skip // frames_per_step  # every env runs steps x skip emulator frames
    start = time.perf_counter()
    for n in range(calls):
        _, _, terminated, truncated, _ = env.step(encode(int(actions[n * frames_per_step // skip])))
        if terminated or truncated:
            env.reset()
    elapsed = time.perf_counter() - start
    env.close()
    return steps * skip / elapsed


def measure(steps: int, rounds: int, skip: int) -> dict:
    table = builders(skip)
    results = {name: [] for name in table}
    for r in range(rounds):
        for name, (make, per_step, encode) in table.items():
            results[name].append(frames_per_second(make, per_step, encode, steps, skip, seed=r))
    bare = statistics.median(results["bare nes-py"])
    return {
        name: {
            "frames_per_s": statistics.median(v),
            "agent_steps_per_s": statistics.median(v) / skip,
            "vs_bare": statistics.median(v) / bare,
            "rounds": v,
        }
        for name, v in results.items()
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(
        prog="python -m benchmark.measure.mario_pipeline", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--steps", type=int, default=2000, help="agent steps per measurement (default 2000)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--skip", type=int, default=4, help="frames per agent step (default 4)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    a = p.parse_args(argv)
    from l0rl.envs.mario import grey_table

    grey_table()  # built once per process (~1 s), before any timing
    out = measure(a.steps, a.rounds, a.skip)
    print("| env | frames/s (median) | agent steps/s | vs bare nes-py |\n|---|---|---|---|")
    for name, f in out.items():
        print(f"| {name} | {f['frames_per_s']:,.0f} | {f['agent_steps_per_s']:,.0f} | {f['vs_bare']:.2f}x |")
    if a.json is not None:
        a.json.write_text(
            json.dumps({"steps": a.steps, "rounds": a.rounds, "skip": a.skip, **out}, indent=1) + "\n"
        )
    return out


if __name__ == "__main__":
    run_cli(main, "benchmark.measure.mario_pipeline")
