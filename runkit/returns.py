"""Return formulas the on-policy algorithms share (PPO, A2C): one definition of each, so a fix or a
check lands in every algorithm at once."""

from collections.abc import Callable

import numpy as np
import torch


@torch.no_grad()
def bootstrap_truncations(
    reward: torch.Tensor,
    terminations: np.ndarray,
    truncations: np.ndarray,
    infos: dict,
    critic: Callable[[torch.Tensor], torch.Tensor],
    gamma: float,
    obs_dtype: torch.dtype = torch.float32,
) -> None:
    """Add gamma * V(final obs) to the reward of every env whose episode was truncated, not
    terminated, this step (in place).

    Under gymnasium's SAME_STEP autoreset the next observation of a finished env is already its
    reset observation, so the rollout would otherwise treat a time-limit cut as a true end and
    bootstrap nothing. `critic` maps a batch of observations (obs_dtype, on reward's device) to values."""
    trunc_only = np.logical_and(truncations, np.logical_not(terminations))
    if trunc_only.any():
        final = torch.as_tensor(
            np.stack(infos["final_obs"][trunc_only]), dtype=obs_dtype, device=reward.device
        )
        reward[torch.as_tensor(trunc_only)] += gamma * critic(final).flatten()


@torch.no_grad()
def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    next_value: torch.Tensor,
    next_done: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over a rollout of shape (num_steps, num_envs).

    dones[t] says the episode ended just before step t (the obs at t is a reset obs); next_value and
    next_done describe the step after the rollout. Returns (advantages, returns = advantages + values);
    gae_lambda = 1 gives Monte-Carlo returns bootstrapped from next_value."""
    advantages = torch.zeros_like(rewards)
    lastgaelam = 0
    for t in reversed(range(rewards.shape[0])):
        if t == rewards.shape[0] - 1:
            nextnonterminal, nextvalues = 1.0 - next_done, next_value
        else:
            nextnonterminal, nextvalues = 1.0 - dones[t + 1], values[t + 1]
        delta = rewards[t] + gamma * nextvalues * nextnonterminal - values[t]
        advantages[t] = lastgaelam = delta + gamma * gae_lambda * nextnonterminal * lastgaelam
    return advantages, advantages + values
