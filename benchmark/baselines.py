"""Trivial baselines for an environment, evaluated like a run's policy: a uniform random policy and a
scripted one, on the same episode seeds, step cap and action mode as the runs they stand beside.
A trained policy's figure means something only when it beats these by a wide margin.

    python -m benchmark.baselines SuperMarioBros-7-1-v0 --episodes 100 --json benchmark/results/mario/baselines.json

Defaults follow a run of that env with seed 1: first episode seed 10,001 (a run's seed + 10,000), and
the env family's evaluation defaults (Mario: sampled actions, at most 3,000 agent steps). The scripted
policies: Mario runs right holding B and A, releasing A every 8th step so that Mario jumps again
(holding A alone jumps once); CartPole pushes the cart towards where the pole is falling; NeedleReach
moves the tip straight at the goal. With continuous actions the random policy draws each action
uniformly from the action space.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from l0rl.envs import make_env, resolve_env_id
from l0rl.envs.factory import goal_spec
from l0rl.envs.needle_reach import STEP_SIZE
from l0rl.envs.registry import family
from l0rl.errors import UsageError
from l0rl.runkit.args import EVAL_DEFAULTS
from l0rl.runkit.cli import run_cli
from l0rl.runkit.evaluate import EVAL_SEED_OFFSET, evaluate

MARIO_RUN_JUMP, MARIO_RUN = 4, 3  # SIMPLE_MOVEMENT: right+A+B, right+B
JUMP_PERIOD = 8


class UniformRandom(nn.Module):
    """Equal logits: with sampled actions, a uniform draw from evaluate's seeded generator."""

    def __init__(self, n_actions: int):
        super().__init__()
        self.n_actions = n_actions

    def forward(self, x):
        return torch.zeros(x.shape[0], self.n_actions)


class MarioRunJump(nn.Module):
    """Right+A+B, with right+B every JUMP_PERIOD-th step; one instance per episode (it counts steps)."""

    def __init__(self):
        super().__init__()
        self.steps = 0

    def forward(self, x):
        action = MARIO_RUN if self.steps % JUMP_PERIOD == JUMP_PERIOD - 1 else MARIO_RUN_JUMP
        self.steps += 1
        logits = torch.full((x.shape[0], 7), -1e9)
        logits[:, action] = 0.0
        return logits


class CartPoleLean(nn.Module):
    """Push right when the pole leans or falls to the right (angle + 0.5 x angular velocity > 0)."""

    def forward(self, x):
        right = (x[:, 2] + 0.5 * x[:, 3]) > 0
        return torch.stack([(~right).float(), right.float()], dim=1)


class UniformBox(nn.Module):
    """Actions drawn uniformly from a Box action space, from its own seeded generator."""

    def __init__(self, low: np.ndarray, high: np.ndarray, seed: int):
        super().__init__()
        self.low, self.high = torch.as_tensor(low), torch.as_tensor(high)
        self.gen = torch.Generator().manual_seed(seed)

    def forward(self, x):
        u = torch.rand((x.shape[0], *self.low.shape), generator=self.gen)
        return self.low + u * (self.high - self.low)


class ReachToward(nn.Module):
    """A goal env's tip moved straight at the goal at full speed (the needle's yaw and jaw left still):
    the task's closed-form solution, so a learned policy ties it at best."""

    def __init__(self, achieved: slice, desired: slice, step_size: float, n_actions: int):
        super().__init__()
        self.achieved, self.desired, self.step_size, self.n_actions = achieved, desired, step_size, n_actions

    def forward(self, x):
        move = ((x[:, self.desired] - x[:, self.achieved]) / self.step_size).clamp(-1, 1)
        return torch.cat([move, torch.zeros(x.shape[0], self.n_actions - move.shape[1])], dim=1)


def _reach_toward(env_id: str, space) -> ReachToward:
    goals = goal_spec(env_id)
    return ReachToward(goals["achieved"], goals["desired"], STEP_SIZE, int(space.shape[0]))


SCRIPTED = {
    "mario": ("run-jump", lambda env_id, space: MarioRunJump()),
    "CartPole-v1": ("lean", lambda env_id, space: CartPoleLean()),
    "needle": ("reach toward the goal", _reach_toward),
}
"""One scripted policy per env family or env id: (name, maker(env_id, action_space)), made anew for
every episode."""


def _row(name: str, env_id: str, first_seed: int, result: dict, greedy: bool, max_steps: int | None) -> dict:
    returns = np.asarray(result["returns"], dtype=np.float64)
    n = len(returns)
    return {
        "path": name,
        "env_id": env_id,
        "episodes": n,
        "first_seed": first_seed,
        "greedy": greedy,
        "max_steps": max_steps,
        "return_mean": float(returns.mean()),
        "return_std": float(returns.std()),
        "return_sem": float(returns.std(ddof=1) / np.sqrt(n)) if n > 1 else None,
        "returns": returns.tolist(),
        "lengths": [int(v) for v in result["lengths"]],
        "x_pos": result["x_pos"],
        "flags": result["flags"],
        "successes": result.get("successes"),
    }


def _merge(results: list[dict]) -> dict:
    merged = {k: [] for k in ("returns", "lengths", "x_pos", "flags", "successes")}
    for r in results:
        for k in merged:
            merged[k] += r.get(k) or []
    return {k: v or None for k, v in merged.items()}


def merge_rows(rows: list[dict]) -> dict:
    """One row from rows of the same policy played on other seeds: all their episodes together."""
    first = rows[0]
    return _row(
        first["path"], first["env_id"], first["first_seed"], _merge(rows), first["greedy"], first["max_steps"]
    )


def baselines(env_id: str, episodes: int, first_seed: int, max_steps: int | None) -> list[dict]:
    """Rows (benchmark.evaluate's schema, plus each episode's success where the env reports one) for
    the random policy (discrete: sampled actions, as greedy over equal logits would always pick action
    0; continuous: uniform draws) and, where one exists, the scripted one (deterministic)."""
    env_id = resolve_env_id(env_id)
    env = make_env(env_id, first_seed, 0, False, "")()
    space = env.action_space
    env.close()
    discrete = hasattr(space, "n")
    uniform = UniformRandom(int(space.n)) if discrete else UniformBox(space.low, space.high, first_seed)
    result = evaluate(uniform, env_id, {}, episodes, first_seed, greedy=not discrete, max_steps=max_steps)
    rows = [_row("random", env_id, first_seed, result, not discrete, max_steps)]
    name, make = SCRIPTED.get(env_id) or SCRIPTED.get(family(env_id)) or (None, None)
    if make is not None:
        per_episode = [
            evaluate(make(env_id, space), env_id, {}, 1, first_seed + i, greedy=True, max_steps=max_steps)
            for i in range(episodes)
        ]
        rows.append(_row(f"scripted ({name})", env_id, first_seed, _merge(per_episode), True, max_steps))
    return rows


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmark.baselines", description=__doc__.split("\n\n")[0])
    p.add_argument("env_id", help="the environment, e.g. SuperMarioBros-7-1-v0")
    p.add_argument("--episodes", type=int, default=100, help="episodes per policy (default 100)")
    p.add_argument(
        "--seed", type=int, default=1 + EVAL_SEED_OFFSET, help="first episode seed (default 10001)"
    )
    p.add_argument("--max-steps", type=int, default=None, help="step cap (default: the env family's)")
    p.add_argument("--json", type=Path, default=None, help="also write the rows to this JSON file (new)")
    return p


def main(argv: list[str] | None = None) -> list[dict]:
    from l0rl.evaluate import table

    a = parser().parse_args(argv)
    if a.episodes < 1:
        raise UsageError(f"--episodes must be >= 1, got {a.episodes}")
    if a.json is not None and a.json.exists():
        raise UsageError(f"{a.json} exists; pass a new --json path (results are never overwritten)")
    defaults = EVAL_DEFAULTS.get(family(resolve_env_id(a.env_id)), {})
    max_steps = a.max_steps if a.max_steps is not None else defaults.get("eval_max_steps")
    rows = baselines(a.env_id, a.episodes, a.seed, max_steps)
    print("\n".join(table(rows)))
    if a.json is not None:
        a.json.write_text(json.dumps(rows, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    run_cli(main, "benchmark.baselines")
