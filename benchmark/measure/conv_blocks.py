"""Batch-1, one-thread latency of the Nature CNN's convolutions as their channel counts shrink: where
the steps are says which `python -m l0rl.compress --channel-block` suits this CPU (oneDNN computes
output channels in blocks, 16 on AVX-512, 8 on AVX2, so widths between two multiples cost the same).

    python -m benchmark.measure.conv_blocks                # first conv (4x84x84, 8x8 stride 4), 1..32 channels
    python -m benchmark.measure.conv_blocks --layer 2      # second conv (32->64 at 20x20, 4x4 stride 2)

Prints a markdown table of median microseconds per width (the medians of several interleaved rounds).
"""

import argparse
import statistics
import time

import torch
from torch import nn

from l0rl.errors import UsageError
from l0rl.runkit.cli import run_cli

# (input channels, input size, kernel, stride, dense output channels) of the Nature CNN's convolutions
LAYERS = {1: (4, 84, 8, 4, 32), 2: (32, 20, 4, 2, 64), 3: (64, 9, 3, 1, 64)}


def median_us(call, calls: int) -> float:
    times = []
    for _ in range(calls):
        t0 = time.perf_counter_ns()
        call()
        times.append((time.perf_counter_ns() - t0) / 1e3)
    return statistics.median(times)


def widths_latency(layer: int, widths: list[int], rounds: int = 5, calls: int = 200) -> dict[int, float]:
    """Median over rounds of each width's median call time (us); widths interleaved in every round."""
    cin, size, kernel, stride, _ = LAYERS[layer]
    torch.manual_seed(0)
    x = torch.randn(1, cin, size, size)
    convs = {w: nn.Conv2d(cin, w, kernel, stride).eval() for w in widths}
    per_round: dict[int, list[float]] = {w: [] for w in widths}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            for conv in convs.values():
                for _ in range(20):
                    conv(x)
            for _ in range(rounds):
                for w, conv in convs.items():
                    per_round[w].append(median_us(lambda conv=conv: conv(x), calls))
    finally:
        torch.set_num_threads(threads)
    return {w: statistics.median(v) for w, v in per_round.items()}


def main(argv: list[str] | None = None) -> dict[int, float]:
    p = argparse.ArgumentParser(
        prog="python -m benchmark.measure.conv_blocks", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--layer", type=int, default=1, help="which Nature CNN conv: 1, 2 or 3 (default 1)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    a = p.parse_args(argv)
    if a.layer not in LAYERS:
        raise UsageError(f"--layer must be 1, 2 or 3, got {a.layer}")
    if a.rounds < 1:
        raise UsageError(f"--rounds must be >= 1, got {a.rounds}")
    dense = LAYERS[a.layer][4]
    widths = sorted({1, 4, 8, 9, 12, 16, 17, 24, 32, 33, 48, dense} & set(range(1, dense + 1)))
    result = widths_latency(a.layer, widths, a.rounds)
    print(f"| conv {a.layer} output channels | latency us (batch 1, 1 thread) |\n|---|---|")
    for w, us in result.items():
        print(f"| {w} | {us:.1f} |")
    return result


if __name__ == "__main__":
    run_cli(main, "benchmark.measure.conv_blocks")
