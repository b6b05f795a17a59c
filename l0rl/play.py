"""`l0rl play RUN`: watch a saved policy play, episode by episode: its return and length, and the
environment's own progress figures where it reports them (Mario: how far right Mario got, and whether
he reached the flag; goal tasks: success).

    l0rl play runs/<run_name>                      # 5 episodes of the trained policy (gates folded in)
    l0rl play runs/<run_name> --compressed         # its compressed.pt (from l0rl compress)
    l0rl play runs/<run_name> --video              # also recorded to runs/<run_name>/videos/play-<time>/

Episodes are played as the run's final evaluation played them (its greedy or sampled actions, step
cap and seeds: the run's seed + 10,000 on), so `l0rl play` and `l0rl evaluate` give the same returns
for the same episodes. Files are read as plain data: nothing in a run directory runs.
"""

import argparse
import time
from pathlib import Path

import numpy as np

from l0rl import load_policy
from l0rl.errors import UsageError
from l0rl.runkit.checkpoint import CHECKPOINT_NAME, load_checkpoint
from l0rl.runkit.evaluate import evaluate_as_run, first_eval_seed
from l0rl.runkit.files import real_dir
from l0rl.runkit.run import VIDEO_DIR

PROG = "l0rl play"


def parser(prog: str = PROG) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="a run directory, e.g. runs/<run_name>")
    p.add_argument("--episodes", type=int, default=5, help="episodes to play (default 5)")
    p.add_argument(
        "--compressed", action="store_true", help="play the run's compressed.pt (from l0rl compress)"
    )
    p.add_argument(
        "--video",
        action="store_true",
        help="record episodes to RUN/videos/play-<time>/ (gymnasium's schedule: 1st, 2nd, 9th, ...)",
    )
    p.add_argument(
        "--seed", type=int, default=None, help="first episode seed (default: the run's seed + 10000)"
    )
    return p


def episode_lines(result: dict, first_seed: int) -> list[str]:
    """One line per episode: seed, return, length, and the env's progress figures it reported."""
    lines = []
    for i, (ret, length) in enumerate(zip(result["returns"], result["lengths"])):
        line = f"episode {i + 1} (seed {first_seed + i}): return {ret:.1f}, {length} steps"
        if result.get("x_pos") is not None:  # Mario
            line += f", furthest x {result['x_pos'][i]}, flag {'yes' if result['flags'][i] else 'no'}"
        if result.get("successes") is not None:
            line += f", success {'yes' if result['successes'][i] else 'no'}"
        lines.append(line)
    returns = np.asarray(result["returns"], dtype=np.float64)
    lines.append(f"mean return {returns.mean():.1f} +- {returns.std():.1f} over {len(returns)} episodes")
    return lines


def main(argv: list[str] | None = None, prog: str = PROG) -> dict:
    a = parser(prog).parse_args(argv)
    if a.episodes < 1:
        raise UsageError(f"--episodes must be >= 1, got {a.episodes}")
    run_dir = Path(a.run)
    if not (run_dir / CHECKPOINT_NAME).is_file():
        raise UsageError(f"{run_dir} is not a run directory (no {CHECKPOINT_NAME}); pass runs/<run_name>")
    ckpt = load_checkpoint(run_dir)
    policy = load_policy(str(run_dir), compressed=a.compressed)
    first = first_eval_seed(ckpt) if a.seed is None else a.seed
    videos = None
    if a.video:  # made here as real directories: the recorder would write through a symlinked videos/
        videos = real_dir(real_dir(run_dir / VIDEO_DIR) / f"play-{int(time.time())}")
    what = "compressed policy" if a.compressed else "trained policy"
    print(f"{prog}: {ckpt['env_id']}, the {what} of {run_dir}")
    result = evaluate_as_run(
        policy, ckpt, a.episodes, first, video_dir=str(videos) if videos else None, label="play"
    )
    print("\n".join(episode_lines(result, first)))
    if videos is not None:
        print(f"videos: {videos}")
    return result
