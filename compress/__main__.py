"""`python -m l0rl.compress RUN_DIR` (also `l0rl compress`, `l0rl-compress`): make a run's policy
physically smaller, prove it still plays, report. Exit 0 on success, 2 for a usage error.

python -m l0rl.compress runs/<run_name>                              # harden -> shrink -> low rank (energy 0.99)
python -m l0rl.compress runs/<run_name> --rank-search --tolerance 0.05
python -m l0rl.compress runs/<run_name> --method magnitude --sparsity 0.9   # baseline: magnitude pruning
python -m l0rl.compress runs/<run_name> --method svd                  # baseline: low rank alone
python -m l0rl.compress runs/<run_name> --onnx                        # also export and check ONNX
"""

import argparse
import sys

from l0rl.compress.pipeline import METHODS, compress_run
from l0rl.compress.report import format_report
from l0rl.runkit import WANDB_MODES, run_cli

PROG = "python -m l0rl.compress"


def parser(prog: str = PROG) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Harden, shrink and low-rank a trained policy, re-evaluate every stage on the same "
        "seeds, and report sizes (parameters, bytes), MACs, CPU latency and returns. Writes "
        "compressed[_METHOD].pt and compress[_METHOD].json next to the run's checkpoint.pt.",
    )
    p.add_argument("run_dir", help="a run directory written by algos/*.py, e.g. runs/<run_name>")
    p.add_argument(
        "--method",
        choices=METHODS,
        default="l0",
        help="l0: the trained (L0) policy hardened, shrunk, low-ranked (default); magnitude: baseline, "
        "global magnitude pruning to --sparsity first; magnitude-layer: the same with one threshold per layer; "
        "svd: baseline, low rank alone",
    )
    p.add_argument(
        "--sparsity",
        type=float,
        default=None,
        help="--method magnitude / magnitude-layer: share of weights to zero, in (0, 1) (default 0.9)",
    )
    p.add_argument(
        "--energy",
        type=float,
        default=None,
        help="low rank: each layer keeps the smallest rank holding this share of its squared singular "
        "values, in (0, 1] (default 0.99); a layer is factorised only where that saves storage",
    )
    p.add_argument(
        "--rank-search",
        action="store_true",
        help="low rank: instead of --energy, search the smallest ranks whose evaluated return stays "
        "within --tolerance of the hardened policy's (greedy per layer, binary search)",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=None,
        help="--rank-search: allowed relative drop of the return, in [0, 1] (default 0.05)",
    )
    p.add_argument(
        "--channel-block",
        type=int,
        default=None,
        help="after shrink, round every hidden conv layer's channels down to a multiple of this by removing "
        "the least salient ones (a 'blocked' stage): CPU conv kernels work in blocks of channels (16 on "
        "AVX-512, 8 on AVX2), so only whole blocks save latency. Changes the policy; off by default",
    )
    p.add_argument("--episodes", type=int, default=10, help="evaluation episodes per stage (default 10)")
    p.add_argument(
        "--seed", type=int, default=None, help="first evaluation seed (default: the run's seed + 10000)"
    )
    p.add_argument(
        "--latency-seconds",
        type=float,
        default=1.0,
        help="seconds spent timing every stage together, interleaved, on one thread (default 1; "
        "longer gives a tighter latency ratio, e.g. 20 for a Mario policy)",
    )
    p.add_argument(
        "--onnx",
        action="store_true",
        help="also export compressed[_METHOD].onnx, check it against torch with onnxruntime and time it",
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="show evaluation progress on stderr (default on; --no-progress for quiet runs)",
    )
    p.add_argument(
        "--wandb-mode",
        choices=WANDB_MODES,
        default="auto",
        help="W&B mode of the compress run (default auto: online with an API key, else offline)",
    )
    return p


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """The command: prints the report table; 0 on success (an installed script's exit status)."""
    a = parser(prog).parse_args(argv)
    report = run_cli(
        lambda: compress_run(
            a.run_dir,
            method=a.method,
            energy=a.energy,
            rank_search=a.rank_search,
            tolerance=a.tolerance,
            sparsity=a.sparsity,
            episodes=a.episodes,
            seed=a.seed,
            onnx=a.onnx,
            wandb_mode=a.wandb_mode,
            progress=a.progress,
            latency_s=a.latency_seconds,
            channel_block=a.channel_block,
        ),
        prog,
    )
    print(format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
