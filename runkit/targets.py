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


@torch.no_grad()
def update_average(average: nn.Module, online: nn.Module, count: int) -> None:
    """Running mean of the online network's weights over `count` updates (stochastic weight
    averaging): average <- average + (online - average) / count for every weight, while the gates'
    log_alpha and every buffer (gate constants, GMP masks) are copied, so the average always has the
    online network's current sparsity map. `average` is a deep copy of `online`; count 1 copies."""
    if count < 1:
        raise ValueError(f"count is the number of updates averaged, >= 1; got {count}")
    gates = {id(p) for p in l0.gate_parameters(online)}
    params = dict(average.named_parameters())
    for name, value in online.named_parameters():
        params[name].lerp_(value, 1.0 if id(value) in gates else 1.0 / count)
    buffers = dict(average.named_buffers())
    for name, value in online.named_buffers():
        buffers[name].copy_(value)
