"""Where a training loop's time goes, next to what the environments alone allow.

    python -m benchmark.measure.loop_profile --env-id SuperMarioBros-7-1-v0 --steps 8192 --num-envs 8
    python -m benchmark.measure.loop_profile --env-id SuperMarioBros-7-1-v0 --steps 8192 --num-envs 8 --torch-threads 1

1. env-only: the algorithm's own env pipeline (`make_vector_env`, same number of envs) stepped with
   random actions: the ceiling for any training loop on this machine.
2. training: `algos/<algo>.py` with its defaults for the env family, for --steps env steps under
   cProfile (no evaluation, W&B disabled);
   its SPS is measured over the whole loop (rollout + update + logging), as charts/SPS reports it.
3. the profile: cumulative seconds of the calls that make up an iteration (env stepping, the
   policy's forward passes, backward, optimizer), as shares of the loop.
Prints one JSON object (and writes it with --json) and a small table.
"""

import argparse
import cProfile
import importlib
import json
import os
import pstats
import tempfile
import time
from pathlib import Path

import torch

from benchmark.measure import final_sps
from l0rl.envs import make_vector_env
from l0rl.runkit import atomic_write_json, run_cli
from l0rl.sparsity import METHODS

BUCKETS = {
    "env step: wait for the workers": ("step_wait", "async_vector_env"),
    "env step: send actions": ("step_async", "async_vector_env"),
    "env step (in process)": ("step", "/sync_vector_env"),
    "policy forward (rollout + update)": ("get_action_and_value", ""),
    "value forward (bootstrap)": ("get_value", ""),
    "backward": ("backward", "_tensor.py"),
    "optimizer step": ("step", "optim/adam.py"),
}
"""Report bucket -> (function name, a fragment of its file name)."""


def env_only_sps(env_id: str, num_envs: int, steps: int, seed: int = 0) -> float:
    envs = make_vector_env(env_id, num_envs, seed)
    envs.reset(seed=seed)
    envs.action_space.seed(seed)
    start = time.perf_counter()
    for _ in range(steps // num_envs):
        envs.step(envs.action_space.sample())
    sps = (steps // num_envs) * num_envs / (time.perf_counter() - start)
    envs.close()
    return sps


def profile_training(algo: str, args: dict, root: str) -> tuple[float, pstats.Stats]:
    mod = importlib.import_module(f"l0rl.algos.{algo}")
    profiler = cProfile.Profile()
    profiler.enable()
    run_dir = mod.train(
        mod.Args(**args, runs_dir=root, wandb_mode="disabled", progress=False, eval_episodes=0)
    )
    profiler.disable()
    sps = final_sps(run_dir)
    return sps, pstats.Stats(profiler)


def buckets(stats: pstats.Stats) -> dict[str, float]:
    """Cumulative seconds per bucket."""
    out = dict.fromkeys(BUCKETS, 0.0)
    for (filename, _, func), (_, _, _, cumtime, _) in stats.stats.items():
        for name, (fn, fragment) in BUCKETS.items():
            if func == fn and fragment in filename.replace("\\", "/"):
                out[name] = max(out[name], cumtime)
    return out


def main() -> None:
    p = argparse.ArgumentParser(
        prog="python -m benchmark.measure.loop_profile", description=__doc__.splitlines()[0]
    )
    p.add_argument("--algo", default="ppo_l0")
    p.add_argument("--env-id", default="SuperMarioBros-7-1-v0")
    p.add_argument("--steps", type=int, default=8192)
    p.add_argument("--num-envs", type=int, default=8)
    p.add_argument("--sparsity", default="l0", choices=tuple(METHODS))
    p.add_argument(
        "--torch-threads", type=int, default=None, help="torch threads in the trainer (default: torch's)"
    )
    p.add_argument("--json", help="also write the figures to this file")
    a = p.parse_args()
    if a.torch_threads:
        torch.set_num_threads(a.torch_threads)
    env_sps = env_only_sps(a.env_id, a.num_envs, a.steps)
    args = {"env_id": a.env_id, "total_timesteps": a.steps, "num_envs": a.num_envs, "sparsity": a.sparsity}
    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        sps, stats = profile_training(a.algo, args, root)
        wall = time.perf_counter() - start
    shares = buckets(stats)
    result = {
        "algo": a.algo,
        "env_id": a.env_id,
        "steps": a.steps,
        "num_envs": a.num_envs,
        "sparsity": a.sparsity,
        "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "env_only_sps": round(env_sps, 1),
        "training_sps": sps,
        "ratio_training_over_env_only": round(sps / env_sps, 3),
        "profiled_wall_s": round(wall, 1),
        "profile_s": {k: round(v, 2) for k, v in shares.items()},
    }
    print(json.dumps(result))
    print(
        f"env only {env_sps:.0f} SPS | training {sps} SPS | ratio {sps / env_sps:.2f}x (profiled run: {wall:.0f} s)"
    )
    for name, secs in shares.items():
        print(f"  {name:38s} {secs:7.1f} s  {100 * secs / wall:5.1f} %")
    if a.json:
        atomic_write_json(Path(a.json), result)


if __name__ == "__main__":
    run_cli(main, "benchmark.measure.loop_profile")
