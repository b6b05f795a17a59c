"""The benchmark matrix: dense vs L0 vs pruning/SVD baselines, side by side, over seeds.

    python -m benchmark.run_suite cartpole-ppo               # a named suite (see SUITES)
    python -m benchmark.run_suite cartpole-ppo --seeds 1 2   # fewer seeds
    python -m benchmark.run_suite --report-only cartpole-ppo # re-aggregate finished runs

For every (algo, env, seed): train dense (--no-l0) and L0 with the same arguments; compress the L0
run with the L0 method, and the dense run with one-shot magnitude pruning (global threshold, and
per-layer threshold) at the sparsity the L0 run reached (matched sparsity) and with SVD alone. Runs land in benchmark/runs/<suite>/ (ignored by
git); the aggregated table goes to benchmark/results/<suite>.md and .json. A run that already has
its outputs is reused, so an interrupted suite continues where it stopped.
"""

import argparse
import importlib
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from l0rl.compress import compress_run
from l0rl.runkit import atomic_write_json, load_checkpoint, run_cli

ROOT = Path(__file__).resolve().parent
SUITES = {
    "cartpole-ppo": {
        "algo": "ppo_l0",
        "env_id": "CartPole-v1",
        "seeds": [1, 2, 3],
        "args": {"total_timesteps": 500_000},
    },
    "cartpole-a2c": {
        "algo": "a2c_l0",
        "env_id": "CartPole-v1",
        "seeds": [1, 2, 3],
        "args": {"total_timesteps": 500_000},
    },
    "acrobot-ppo": {
        "algo": "ppo_l0",
        "env_id": "Acrobot-v1",
        "seeds": [1, 2, 3],
        "args": {"total_timesteps": 500_000},
    },
    "lunarlander-ppo": {
        "algo": "ppo_l0",
        "env_id": "LunarLander-v3",
        "seeds": [1, 2, 3],
        "args": {"total_timesteps": 1_000_000},
    },
    "cartpole-dqn": {
        "algo": "dqn_l0",
        "env_id": "CartPole-v1",
        "seeds": [1, 2, 3],
        "args": {"total_timesteps": 500_000},
    },
    "needlereach-sac": {
        "algo": "sac_l0",
        "env_id": "NeedleReach-v0",
        "seeds": [1, 2, 3],
        "args": {"total_timesteps": 30_000},
    },
    "mario-ppo-short": {
        "algo": "ppo_l0",
        "env_id": "SuperMarioBros-7-1-v0",
        "seeds": [1],
        "args": {"total_timesteps": 100_000, "num_envs": 8, "eval_episodes": 3, "eval_max_steps": 2000},
    },
}


def find_run(suite_dir: Path, variant: str, seed: int) -> Path | None:
    """The finished run of this variant and seed, if any."""
    for d in sorted(suite_dir.glob(f"*__{variant}__{seed}__*")):
        try:
            if load_checkpoint(d).get("finished"):
                return d
        except ValueError:
            continue
    return None


def train(suite: dict, suite_dir: Path, variant: str, seed: int, wandb_mode: str) -> Path:
    done = find_run(suite_dir, variant, seed)
    if done is not None:
        return done
    mod = importlib.import_module(f"l0rl.algos.{suite['algo']}")
    args = mod.Args(
        env_id=suite["env_id"],
        seed=seed,
        l0=variant == "l0",
        exp_name=variant,
        runs_dir=str(suite_dir),
        wandb_mode=wandb_mode,
        wandb_group=f"bench-{suite_dir.name}",
        progress=False,
        **suite["args"],
    )
    t0 = time.time()
    run_dir = Path(mod.train(args))
    (run_dir / "bench_time.json").write_text(json.dumps({"train_seconds": time.time() - t0}))
    return run_dir


def compressed(run_dir: Path, method: str, episodes: int, wandb_mode: str, **kw) -> dict:
    name = "compress.json" if method == "l0" else f"compress_{method}.json"
    path = run_dir / name
    if path.exists():
        return json.loads(path.read_text())
    return compress_run(run_dir, method=method, episodes=episodes, wandb_mode=wandb_mode, **kw)


def row_of(run_dir: Path, report: dict) -> dict:
    """One result row: training figures, then each compress stage's figures."""
    summary = json.loads((run_dir / "summary.json").read_text())
    metrics = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    sps = [m["charts/SPS"] for m in metrics if "charts/SPS" in m]
    bench = (
        json.loads((run_dir / "bench_time.json").read_text())
        if (run_dir / "bench_time.json").exists()
        else {}
    )
    row = {
        "run": run_dir.name,
        "eval_return": summary.get("eval/episodic_return"),
        "success_rate": summary.get("eval/success_rate"),
        "sps": sps[-1] if sps else None,
        "train_seconds": bench.get("train_seconds"),
        "stages": {},
    }
    for st in report["stages"]:
        row["stages"][st["stage"]] = {
            k: st.get(k)
            for k in (
                "return_mean",
                "success_rate",
                "sparsity",
                "compression_params",
                "compression_bytes",
                "params",
                "bytes",
                "macs",
                "latency_us",
            )
        }
    return row


def mean_std(values: list) -> str:
    v = [x for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not v:
        return "-"
    return f"{np.mean(v):.3g} ± {np.std(v):.2g}" if len(v) > 1 else f"{v[0]:.3g}"


def aggregate(name: str, suite: dict, results: dict) -> str:
    """Markdown: one line per (variant, stage) with mean ± std over seeds (population std)."""
    lines = [
        f"# Benchmark suite `{name}`: {suite['algo']} on {suite['env_id']}",
        "",
        f"Command: `python -m benchmark.run_suite {name}`; seeds {suite['seeds']}; training args {suite['args']}.",
        "Values are mean ± std over seeds (population std). Returns are evaluation returns with deterministic",
        "gates and greedy actions, on the same evaluation seeds for every stage. Sparsity and compression are",
        "defined in README.md (compress section).",
        "",
        "| variant | stage | eval return | success | sparsity | compression (params) | compression (bytes) | MACs | latency (us) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for variant, rows in results.items():
        stages = list(rows[0]["stages"]) if rows else []
        for stage in stages:
            col = {k: [r["stages"][stage][k] for r in rows] for k in rows[0]["stages"][stage]}
            lines.append(
                f"| {variant} | {stage} | {mean_std(col['return_mean'])} | {mean_std(col['success_rate'])} | "
                f"{mean_std(col['sparsity'])} | {mean_std(col['compression_params'])} | "
                f"{mean_std(col['compression_bytes'])} | {mean_std(col['macs'])} | {mean_std(col['latency_us'])} |"
            )
    lines += [
        "",
        "| variant | training eval return | SPS (last iteration) | training seconds |",
        "|---|---|---|---|",
    ]
    for variant in ("dense", "l0"):
        rows = results.get(f"{variant}", [])
        if rows:
            lines.append(
                f"| {variant} | {mean_std([r['eval_return'] for r in rows])} | {mean_std([r['sps'] for r in rows])} | "
                f"{mean_std([r['train_seconds'] for r in rows])} |"
            )
    dense_sps = [r["sps"] for r in results.get("dense", []) if r["sps"]]
    l0_sps = [r["sps"] for r in results.get("l0", []) if r["sps"]]
    if dense_sps and l0_sps:
        lines.append(f"\nSPS ratio L0 / dense (means): {np.mean(l0_sps) / np.mean(dense_sps):.2f}x")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description="Run a benchmark suite: dense vs L0 vs baselines over seeds.")
    p.add_argument("suite", choices=sorted(SUITES))
    p.add_argument("--seeds", type=int, nargs="*", help="override the suite's seeds")
    p.add_argument("--episodes", type=int, default=10, help="evaluation episodes per compress stage")
    p.add_argument("--wandb-mode", default="auto")
    p.add_argument("--report-only", action="store_true", help="aggregate existing runs, train nothing")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for small MLPs)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    suite = dict(SUITES[a.suite])
    if a.seeds:
        suite["seeds"] = a.seeds
    suite_dir = ROOT / "runs" / a.suite
    suite_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, list] = {
        "l0": [],
        "dense": [],
        "dense+magnitude": [],
        "dense+magnitude-layer": [],
        "dense+svd": [],
    }
    for seed in suite["seeds"]:
        runs = {}
        for variant in ("l0", "dense"):
            runs[variant] = (
                find_run(suite_dir, variant, seed)
                if a.report_only
                else train(suite, suite_dir, variant, seed, a.wandb_mode)
            )
        if runs["l0"] is None or runs["dense"] is None:
            continue
        l0_report = compressed(runs["l0"], "l0", a.episodes, a.wandb_mode)
        results["l0"].append(row_of(runs["l0"], l0_report))
        reached = next(s["sparsity"] for s in l0_report["stages"] if s["stage"] == "hardened")
        dense_mag = compressed(
            runs["dense"], "magnitude", a.episodes, a.wandb_mode, sparsity=min(max(reached, 0.01), 0.99)
        )
        results["dense+magnitude"].append(row_of(runs["dense"], dense_mag))
        matched = min(max(reached, 0.01), 0.99)
        layer_mag = compressed(runs["dense"], "magnitude-layer", a.episodes, a.wandb_mode, sparsity=matched)
        results["dense+magnitude-layer"].append(row_of(runs["dense"], layer_mag))
        results["dense+svd"].append(
            row_of(runs["dense"], compressed(runs["dense"], "svd", a.episodes, a.wandb_mode))
        )
        results["dense"].append(row_of(runs["dense"], dense_mag))
        results["dense"][-1]["stages"] = {"original": results["dense"][-1]["stages"]["original"]}
    out = ROOT / "results"
    out.mkdir(exist_ok=True)
    atomic_write_json(out / f"{a.suite}.json", {"suite": a.suite, "config": suite, "results": results})
    text = aggregate(a.suite, suite, results)
    (out / f"{a.suite}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    run_cli(main, "run_suite")
