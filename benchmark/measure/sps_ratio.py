"""Training speed of L0 vs dense, measured in the same process and interleaved (dense, L0, dense,
L0, ...) so that machine load affects both alike.

    python -m benchmark.measure.sps_ratio --env-id CartPole-v1 --steps 50000
    python -m benchmark.measure.sps_ratio --env-id SuperMarioBros-7-1-v0 --steps 4096 --num-envs 8 --repeats 1

SPS = environment steps per second of the whole training loop (rollout + update + logging),
as CleanRL's `charts/SPS` reports it; evaluation is excluded.
"""

import argparse
import importlib
import json
import tempfile
from pathlib import Path

import numpy as np

from benchmark.measure import final_sps
from l0rl.runkit import atomic_write_json, run_cli


def measure(
    algo: str, env_id: str, l0_on: bool, steps: int, num_envs: int, granularity: str, root: str
) -> float:
    mod = importlib.import_module(f"l0rl.algos.{algo}")
    run_dir = mod.train(
        mod.Args(
            env_id=env_id,
            total_timesteps=steps,
            num_envs=num_envs,
            l0=l0_on,
            l0_granularity=granularity,
            wandb_mode="disabled",
            runs_dir=root,
            progress=False,
            eval_episodes=0,
            exp_name="l0" if l0_on else "dense",
        )
    )
    return final_sps(run_dir)


def main() -> None:
    p = argparse.ArgumentParser(
        prog="python -m benchmark.measure.sps_ratio", description=__doc__.splitlines()[0]
    )
    p.add_argument("--algo", default="ppo_l0")
    p.add_argument("--env-id", default="CartPole-v1")
    p.add_argument("--steps", type=int, default=50_000)
    p.add_argument("--num-envs", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--granularity", default="weight")
    p.add_argument("--json", help="also write the figures to this file")
    a = p.parse_args()
    sps = {"dense": [], "l0": []}
    with tempfile.TemporaryDirectory() as root:
        for _ in range(a.repeats):
            for variant in ("dense", "l0"):
                sps[variant].append(
                    measure(a.algo, a.env_id, variant == "l0", a.steps, a.num_envs, a.granularity, root)
                )
    ratio = float(np.mean(sps["l0"]) / np.mean(sps["dense"]))
    result = {"algo": a.algo, "env_id": a.env_id, "steps": a.steps, "granularity": a.granularity, "sps": sps}
    result["ratio_l0_over_dense"] = ratio
    print(json.dumps(result))
    print(
        f"{a.algo} {a.env_id}: dense {np.mean(sps['dense']):.0f} SPS, L0 ({a.granularity}) "
        f"{np.mean(sps['l0']):.0f} SPS, ratio {ratio:.2f}x over {a.repeats} interleaved repeats"
    )
    if a.json:
        atomic_write_json(Path(a.json), result)


if __name__ == "__main__":
    run_cli(main, "benchmark.measure.sps_ratio")
