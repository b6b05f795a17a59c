"""Training-step cost of L0 gates: forward + backward time, dense vs gated, on CPU.

    python -m benchmark.measure.l0_overhead [--repeats 500] [--cnn-repeats 40] [--threads 1] [--json PATH]

Two networks: (a) a 64-64 tanh MLP, 8-d input, 2 outputs, batch 64; (b) the Nature CNN
(conv 32 8x8 s4, 64 4x4 s2, 64 3x3 s1, linear 3136->512, ->7) at batch 32 on (4, 84, 84) float
inputs. Each runs dense, with per-weight gates and with per-unit gates (l0.sparsify, train mode,
so every forward samples its gates; the gated loss includes lam * l0.penalty). One step is
`zero_grad; loss = out.pow(2).mean() [+ 0.01 * penalty]; loss.backward()`. Variants of one network
are timed round-robin (one step of each in turn) so that load changes on the machine hit them
alike; the figure is the median over repeats after warm-up, all in this one process.
--profile adds a torch.profiler table of the gated MLP step (where the extra time goes).
"""

import argparse
import copy
import json
import platform
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from l0rl import l0
from l0rl.runkit.cli import run_cli

VARIANTS = ("dense", "gated/weight", "gated/unit")


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(8, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 2))


def nature_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(4, 32, 8, stride=4),
        nn.ReLU(),
        nn.Conv2d(32, 64, 4, stride=2),
        nn.ReLU(),
        nn.Conv2d(64, 64, 3, stride=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(3136, 512),
        nn.ReLU(),
        nn.Linear(512, 7),
    )


def variants(build: Callable[[], nn.Module]) -> dict[str, nn.Module]:
    torch.manual_seed(0)
    dense = build()
    out = {"dense": dense}
    for granularity in ("weight", "unit"):
        out[f"gated/{granularity}"] = l0.sparsify(copy.deepcopy(dense), granularity=granularity)
    for model in out.values():
        model.train()
    return out


def make_step(model: nn.Module, x: torch.Tensor, lam: float = 0.01) -> Callable[[], None]:
    gated = any(True for _ in l0.gated_layers(model))

    def step() -> None:
        model.zero_grad(set_to_none=True)
        loss = model(x).pow(2).mean()
        if gated:
            loss = loss + lam * l0.penalty(model)
        loss.backward()

    return step


def time_round_robin(steps: dict[str, Callable[[], None]], repeats: int, warmup: int) -> dict[str, float]:
    """Median milliseconds per step of each callable, timed in turn so drift affects all alike."""
    for _ in range(warmup):
        for fn in steps.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, fn in steps.items():
            start = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(values) for name, values in samples.items()}


def measure(
    name: str, build: Callable[[], nn.Module], x: torch.Tensor, repeats: int, warmup: int
) -> list[dict]:
    models = variants(build)
    medians = time_round_robin({v: make_step(m, x) for v, m in models.items()}, repeats, warmup)
    dense = medians["dense"]
    return [
        {
            "model": name,
            "variant": v,
            "median_ms": medians[v],
            "ratio": medians[v] / dense,
            "repeats": repeats,
        }
        for v in VARIANTS
    ]


def profile_gated_mlp(x: torch.Tensor, steps: int = 200) -> str:
    from torch.profiler import ProfilerActivity, profile

    models = variants(mlp)
    rows = []
    for v in ("dense", "gated/weight"):
        fn = make_step(models[v], x)
        for _ in range(20):
            fn()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                fn()
        rows.append(f"--- {v}: {steps} steps ---")
        rows.append(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmark.measure.l0_overhead", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--repeats", type=int, default=500, help="timed MLP steps per variant")
    parser.add_argument("--cnn-repeats", type=int, default=40, help="timed Nature-CNN steps per variant")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps per variant first")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--json", metavar="PATH", help="also write the figures to this JSON file")
    parser.add_argument("--profile", action="store_true", help="print a profile of the gated MLP step")
    parser.add_argument("--skip-cnn", action="store_true", help="only the MLP")
    args = parser.parse_args()
    if args.repeats < 1 or args.cnn_repeats < 1 or args.warmup < 0 or args.threads < 1:
        parser.error("--repeats, --cnn-repeats and --threads must be >= 1, --warmup >= 0")
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)

    results = measure(
        "mlp 8-64-64-2, batch 64", mlp, torch.randn(64, 8, generator=gen), args.repeats, args.warmup
    )
    if not args.skip_cnn:
        x = torch.rand(32, 4, 84, 84, generator=gen)
        results += measure("nature cnn, batch 32", nature_cnn, x, args.cnn_repeats, max(3, args.warmup // 5))

    print(
        f"forward+backward, train mode, torch {torch.__version__}, {args.threads} thread(s), median of repeats"
    )
    print(f"{'model':<26}{'variant':<15}{'median ms':>11}{'gated/dense':>13}")
    for r in results:
        print(f"{r['model']:<26}{r['variant']:<15}{r['median_ms']:>11.3f}{r['ratio']:>12.2f}x")
    if args.profile:
        print(profile_gated_mlp(torch.randn(64, 8, generator=gen)))
    if args.json:
        meta = {
            "torch": torch.__version__,
            "threads": args.threads,
            "warmup": args.warmup,
            "machine": platform.machine(),
            "processor": platform.processor(),
        }
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    run_cli(main, "benchmark.measure.l0_overhead")
