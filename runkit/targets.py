"""Target networks of the off-policy algorithms (DQN, SAC): gate- and mask-free copies of an online
network's effective weights."""

import torch
from torch import nn

from l0rl import l0


@torch.no_grad()
def update_target(target: nn.Module, online: nn.Module, tau: float) -> None:
    """target <- (1 - tau) * target + tau * online, from the online network's effective weights
    (deterministic gates or GMP masks folded in by `l0.dense_state_dict`), so no log_alpha is ever
    averaged as if it were a weight. tau = 1 is an exact copy (hard update)."""
    source = l0.dense_state_dict(online)
    for key, value in target.state_dict().items():
        value.lerp_(source[key], tau)
