"""The best evaluated policy of a run: every N env steps the current policy plays a few episodes on
selection seeds of its own (apart from the training episodes and from the final evaluation's), and the
best so far is kept; the run then saves, evaluates and compresses that policy, not its last weights.

    keep = schedulers["keep_best"] = KeepBest(q_network, every=10_000, start=0.2, episodes=10, run=run)
    ...in the loop: keep.step(q_network, global_step, num_envs); policy = keep.chosen(q_network)
    run.checkpoint(..., policy=policy); return run.finish(global_step, policy, device)

Its state goes with the schedulers' (restored by --resume, started afresh by --fork-from, whose other
options train another policy).

Why: DQN's greedy return on CartPole swings between full and collapsed late in training, so its last
weights are a draw from that swing (benchmark/results/sweep-dqn-long/NOTES.md). The selection episodes
do not touch the training's random state, so a run with and without it trains the same weights.
"""

import copy
import math
from typing import Any

from torch import nn

from l0rl.runkit.evaluate import eval_metrics, evaluate

SELECT_SEED_OFFSET = 20_000
"""Selection episodes are seeded from the run's seed + this: the final evaluation (seed + 10 000) then
scores the kept policy on starts it was not chosen on."""


class KeepBest:
    """Keeps a copy of the best-scoring policy among those evaluated from `start` x the budget on.
    A later candidate replaces the kept one when it scores at least as high (ties go to the one trained
    longer)."""

    def __init__(self, policy: nn.Module, every: int, start: float, episodes: int, run: Any):
        if every < 1 or episodes < 1 or not 0.0 <= start <= 1.0:
            raise ValueError(
                f"every and episodes must be >= 1 and start in [0, 1], got {every}, {episodes}, {start}"
            )
        self.kept = copy.deepcopy(policy)
        self.every, self.episodes, self.run = every, episodes, run
        self.from_step = math.ceil(start * run.args.total_timesteps)
        self.best_return: float | None = None
        self.best_step = 0

    def chosen(self, current: nn.Module) -> nn.Module:
        """The kept policy, or `current` while none has been evaluated."""
        return current if self.best_return is None else self.kept

    def due(self, global_step: int, stride: int) -> bool:
        """At each multiple of `every` env steps from the start step on, and at the end of the budget."""
        if global_step < self.from_step:
            return False
        return global_step >= self.run.total_steps or bool(self.run.due(global_step, stride, self.every))

    def step(self, policy: nn.Module, global_step: int, stride: int) -> None:
        """Evaluate `policy` when due (and log its score); keep a copy when it is the best so far."""
        if not self.due(global_step, stride):
            return
        a = self.run.args
        result = evaluate(
            policy,
            a.env_id,
            self.run.env_options,
            self.episodes,
            a.seed + SELECT_SEED_OFFSET,
            greedy=a.eval_greedy,
            max_steps=a.eval_max_steps,
            device=next(policy.parameters()).device,
        )
        score = eval_metrics(result)["eval/episodic_return"]
        if self.best_return is None or score >= self.best_return:
            self.kept.load_state_dict(policy.state_dict())
            self.best_return, self.best_step = score, global_step
        self.run.tracker.log(
            {
                "keep_best/return": score,
                "keep_best/best_return": self.best_return,
                "keep_best/best_step": self.best_step,
            },
            global_step,
        )

    def state_dict(self) -> dict:
        return {"best_return": self.best_return, "best_step": self.best_step, "kept": self.kept.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Restore what state_dict returned; a best return or step of another kind (a damaged or
        crafted checkpoint) is a ValueError, not a TypeError at the next evaluation."""
        best, step = state["best_return"], state["best_step"]
        number = isinstance(best, int | float) and not isinstance(best, bool) and math.isfinite(best)
        if not (best is None or number) or type(step) is not int or step < 0:
            raise ValueError(f"keep-best state has best_return {best!r:.40} and best_step {step!r:.40}")
        self.best_return, self.best_step = best, step
        self.kept.load_state_dict(state["kept"])
