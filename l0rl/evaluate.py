"""`l0rl evaluate`: saved policies of runs over many episodes, each with its run's own evaluation settings
(greedy or sampled actions, step cap) and on the seeds compress uses (the run's seed + 10,000 on), so
every policy of one comparison plays the same episode seeds: what a noisy final figure (Mario's
sampled episodes spread by +-250 around ~500) needs more of than compress's 10-20 episodes.

    l0rl evaluate benchmark/runs/mario/*dense*/compressed.pt \
        benchmark/runs/mario/*ppo_l0__*/compressed_magnitude.pt --episodes 100 --json out.json

    l0rl evaluate benchmark/runs/defaults/CartPole-v1__dqn_l0__* --network q_network \
        --episodes 20     # DQN's last weights, where the run saved its best evaluated policy instead

A path is a run directory (its trained policy: checkpoint.pt with the gates folded in), a run's
checkpoint.pt or one of its compressed*.pt files. Every file is read as plain data (weights_only):
nothing in it runs. Prints one markdown row per policy: mean, std, standard error, and the episodes.
`python -m benchmark.evaluate` is the same command.
"""

import argparse
import json
import math
from pathlib import Path

import numpy as np
from torch import nn

from l0rl import l0, load_policy
from l0rl.errors import UsageError
from l0rl.policy import build_policy
from l0rl.runkit.checkpoint import CHECKPOINT_NAME, load_checkpoint
from l0rl.runkit.cli import run_cli
from l0rl.runkit.evaluate import eval_settings, evaluate_as_run, first_eval_seed


def run_dir_of(path: Path) -> Path:
    """The run directory a policy path belongs to (itself, or the folder of its .pt file)."""
    return path if path.is_dir() else path.parent


def network_policy(path: Path, ckpt: dict, name: str) -> nn.Module:
    """The saved policy's architecture with the weights of the checkpoint's network `name` (hardened)."""
    if path.name.startswith("compressed"):
        raise UsageError(f"--network reads a checkpoint's networks; pass the run directory, not {path.name}")
    if name not in ckpt["networks"]:
        raise UsageError(
            f"{path}: no network {name!r} in the checkpoint; it has {', '.join(ckpt['networks'])}"
        )
    policy = build_policy(ckpt["policy"])
    try:
        policy.load_state_dict(ckpt["networks"][name])
    except RuntimeError:
        raise UsageError(f"{path}: network {name!r} is not the policy's own network; pick another") from None
    return l0.harden(policy).eval()


def evaluate_path(path: Path, episodes: int, seed: int | None, network: str | None = None) -> dict:
    """One policy's returns over `episodes` episodes, evaluated as its run's final evaluation was;
    with `network`, the checkpoint's network of that name in the policy's place."""
    if not path.exists():
        raise UsageError(
            f"{path} does not exist; pass a run directory, its checkpoint.pt or a compressed*.pt"
        )
    if path.is_file() and not (path.name == CHECKPOINT_NAME or path.name.startswith("compressed")):
        raise UsageError(f"{path} is not a policy file; pass a run's checkpoint.pt or compressed*.pt")
    ckpt = load_checkpoint(run_dir_of(path))
    policy = load_policy(str(path)) if network is None else network_policy(path, ckpt, network)
    first = first_eval_seed(ckpt) if seed is None else seed
    result = evaluate_as_run(policy, ckpt, episodes, first, progress=True, label=f"evaluate {path.name}")
    returns = np.asarray(result["returns"], dtype=np.float64)
    return {
        "path": str(path) + (f":{network}" if network else ""),
        "env_id": ckpt["env_id"],
        "episodes": episodes,
        "first_seed": first,
        **eval_settings(ckpt),
        "return_mean": float(returns.mean()),
        "return_std": float(returns.std()),
        "return_sem": float(returns.std(ddof=1) / math.sqrt(episodes)) if episodes > 1 else None,
        "returns": returns.tolist(),
        "lengths": [int(n) for n in result["lengths"]],
        "x_pos": result["x_pos"],
        "flags": result["flags"],
        "successes": result["successes"],
    }


def table(rows: list[dict]) -> list[str]:
    mario = any(r["x_pos"] is not None for r in rows)  # Mario: how far it got, beside the return
    head = "| policy | episodes | return mean | std | standard error |"
    lines = [head + (" furthest x (mean) | best | flags |" if mario else ""), "|---|---|---|---|---|"]
    lines[1] += "---|---|---|" if mario else ""
    goal = any(r.get("successes") for r in rows)  # goal envs: the share of episodes that succeeded
    if goal:
        lines[0] += " success rate |"
        lines[1] += "---|"
    for r in rows:
        sem = "-" if r["return_sem"] is None else f"{r['return_sem']:.1f}"
        name = (
            f"{Path(r['path']).parent.name}/{Path(r['path']).name}"
            if r["path"].endswith(".pt")
            else r["path"]
        )
        line = f"| {name} | {r['episodes']} | {r['return_mean']:.1f} | {r['return_std']:.1f} | {sem} |"
        if mario and r["x_pos"] is None:
            line += " - | - | - |"
        elif mario:
            line += f" {np.mean(r['x_pos']):.0f} | {max(r['x_pos'])} | {sum(r['flags'])} |"
        if goal:
            line += f" {np.mean(r['successes']):.2f} |" if r.get("successes") else " - |"
        lines.append(line)
    return lines


PROG = "l0rl evaluate"


def parser(prog: str = PROG) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("policies", nargs="+", help="run directories, checkpoint.pt or compressed*.pt files")
    p.add_argument("--episodes", type=int, default=100, help="episodes per policy (default 100)")
    p.add_argument(
        "--seed", type=int, default=None, help="first episode seed (default: each run's seed + 10000)"
    )
    p.add_argument(
        "--network",
        help="evaluate the checkpoint's network of this name instead of the saved policy (q_network: DQN's "
        "last weights where the run kept its best evaluated policy)",
    )
    p.add_argument("--json", type=Path, default=None, help="also write every return to this JSON file")
    return p


def main(argv: list[str] | None = None, prog: str = PROG) -> list[dict]:
    a = parser(prog).parse_args(argv)
    if a.episodes < 1:
        raise UsageError(f"--episodes must be >= 1, got {a.episodes}")
    if a.json is not None and a.json.exists():
        raise UsageError(f"{a.json} exists; pass a new --json path (results are never overwritten)")
    rows = [evaluate_path(Path(p), a.episodes, a.seed, a.network) for p in a.policies]
    print("\n".join(table(rows)))
    if a.json is not None:
        a.json.write_text(json.dumps(rows, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    run_cli(main, PROG)
