"""Mario PPO training speed with gymnasium's reference frame pipeline against l0rl's, in one process,
interleaved (reference, l0rl, reference, l0rl, ...) so that machine load affects both alike.

    python -m benchmark.measure.mario_sps --steps 8192 --rounds 2 --json benchmark/results/mario/sps_pipeline.json

Each measurement trains `algos/ppo_l0.py --env-id SuperMarioBros-7-1-v0` with its family defaults
(8 async envs, L0 gates) for `--steps` env steps and reads its last `charts/SPS`. The reference run
builds its envs with `envs.mario.reference_frames` instead of `MarioFrames`: everything else is the
same code. Extra flags after `--` go to the algorithm (e.g. `-- --num-steps 512 --update-epochs 10`).
"""

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from benchmark.measure import final_sps
from l0rl.runkit import parse_args, run_cli

ENV_ID = "SuperMarioBros-7-1-v0"


def _reference_pipeline(env_id: str, video_dir: str | None, skip: int = 4):
    import gym_super_mario_bros
    from gym_super_mario_bros.actions import SIMPLE_MOVEMENT
    from nes_py.wrappers import JoypadSpace

    from l0rl.envs.mario import reference_frames

    return reference_frames(JoypadSpace(gym_super_mario_bros.make(env_id), SIMPLE_MOVEMENT), skip)


def train_sps(pipeline: str, steps: int, extra: list[str], root: str) -> float:
    """charts/SPS at the end of one short training run with the named pipeline."""
    from l0rl.algos import ppo_l0
    from l0rl.envs import factory

    own = factory.PIPELINES["mario"]
    if pipeline == "reference":  # the async workers are forked from this process and inherit the swap
        factory.PIPELINES["mario"] = _reference_pipeline
    try:
        argv = ["--env-id", ENV_ID, "--total-timesteps", str(steps), "--eval-episodes", "0"]
        argv += ["--wandb-mode", "disabled", "--runs-dir", root, "--no-progress", "--exp-name", pipeline]
        run_dir = ppo_l0.train(*parse_args(ppo_l0.Args, ppo_l0.FAMILY_DEFAULTS, argv + extra))
    finally:
        factory.PIPELINES["mario"] = own
    return final_sps(run_dir)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(
        prog="python -m benchmark.measure.mario_sps", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--steps", type=int, default=8192, help="env steps per measurement (default 8192)")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds (default 2)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    p.add_argument("extra", nargs="*", help="flags for algos/ppo_l0.py, after --")
    a = p.parse_args(argv)
    sps = {"reference": [], "l0rl": []}
    with tempfile.TemporaryDirectory() as root:
        for _ in range(a.rounds):
            for pipeline in sps:
                sps[pipeline].append(train_sps(pipeline, a.steps, a.extra, root))
    ref, new = statistics.median(sps["reference"]), statistics.median(sps["l0rl"])
    out = {"steps": a.steps, "extra": a.extra, "sps": sps, "median": {"reference": ref, "l0rl": new}}
    out["speedup"] = new / ref
    print(
        f"Mario PPO SPS: reference pipeline {sps['reference']} (median {ref:.0f}), "
        f"l0rl pipeline {sps['l0rl']} (median {new:.0f}): {new / ref:.2f}x"
    )
    if a.json is not None:
        a.json.write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    run_cli(main, "benchmark.measure.mario_sps")
