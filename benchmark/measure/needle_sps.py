"""NeedleReach-v0 speed: random-action environment steps per second, single env and vectorized.

    python -m benchmark.measure.needle_sps [--steps 20000] [--num-envs 8]

Both use the pipelines algorithms use (envs.make_env / envs.make_vector_env: flat observation,
50-step TimeLimit, same-step autoreset, episode statistics). Actions are drawn up front so only the
environment is timed. A vector step counts as num_envs steps.
"""

import argparse
import time

import numpy as np

from l0rl.envs import make_env, make_vector_env
from l0rl.runkit.cli import run_cli

ENV_ID = "NeedleReach-v0"


def single_env_sps(steps: int, seed: int) -> float:
    env = make_env(ENV_ID, seed, 0, False, "")()
    actions = np.random.default_rng(seed).uniform(-1, 1, (steps, 5)).astype(np.float32)
    env.reset(seed=seed)
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    elapsed = time.perf_counter() - start
    env.close()
    return steps / elapsed


def vector_env_sps(steps: int, num_envs: int, seed: int) -> float:
    envs = make_vector_env(ENV_ID, num_envs, seed)
    iterations = max(1, steps // num_envs)
    actions = np.random.default_rng(seed).uniform(-1, 1, (iterations, num_envs, 5)).astype(np.float32)
    envs.reset(seed=seed)
    start = time.perf_counter()
    for action in actions:
        envs.step(action)
    elapsed = time.perf_counter() - start
    envs.close()
    return iterations * num_envs / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmark.measure.needle_sps", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--steps", type=int, default=20_000, help="environment steps per measurement")
    parser.add_argument("--num-envs", type=int, default=8, help="sub-envs of the vector env")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    single = single_env_sps(args.steps, args.seed)
    vector = vector_env_sps(args.steps, args.num_envs, args.seed)
    print(f"{ENV_ID} random actions, {args.steps} steps each:")
    print(f"  {'single env (make_env)':<34}{single:10,.0f} steps/s")
    print(f"  {f'make_vector_env, {args.num_envs} sync envs':<34}{vector:10,.0f} steps/s")


if __name__ == "__main__":
    run_cli(main, "benchmark.measure.needle_sps")
