"""l0: learnable hard-concrete gates ("sparsity map") for PyTorch models, and their scheduler.

    from l0rl import l0
    l0.sparsify(model, granularity="unit")           # gate Linear/Conv2d weights in place
    loss = task_loss + lam * l0.penalty(model)        # expected share of non-zero gated weights
    l0.stats(model)                                   # {"l0/sparsity": ..., ...} under test-time gates
    small = l0.harden(model)                          # plain model, gates folded in, exact zeros

Which gate mode to use in RL:
- on-policy (PPO, A2C): `with l0.frozen_gates(agent):` around one iteration's rollout and update,
  so the data and the update see the same sampled policy;
- off-policy acting and evaluation: `agent.eval()` or `with l0.deterministic_gates(net):`;
- target networks: plain (gate-free) copies updated from `l0.dense_state_dict(online)`;
- off-policy learning updates: train mode (a fresh sample per forward).
Depends on torch only.
"""

from l0rl._one_name import wrong_import_name

if __name__ != "l0rl.l0":  # this folder installs as l0rl.l0 only
    raise wrong_import_name("l0rl.l0")

from l0rl.l0.gates import BETA, GAMMA, LOG_ALPHA_MAX, LOG_ALPHA_MIN, ZETA
from l0rl.l0.scheduler import MODES as SCHEDULER_MODES
from l0rl.l0.scheduler import SparsityMapScheduler
from l0rl.l0.sparsify import (
    COST_KINDS,
    GRANULARITIES,
    HardConcreteGate,
    cached_gates,
    clamp_log_alpha_,
    close_random,
    dense_state_dict,
    deterministic_gates,
    erk_densities,
    erk_score,
    frozen_gates,
    gate_parameters,
    gated_layers,
    harden,
    is_gated,
    param_groups,
    penalty,
    set_costs,
    set_temperature,
    sparsify,
    sparsify_like,
    stats,
    weight_parameters,
)

__all__ = [
    "BETA",
    "GAMMA",
    "ZETA",
    "LOG_ALPHA_MIN",
    "LOG_ALPHA_MAX",
    "COST_KINDS",
    "GRANULARITIES",
    "SCHEDULER_MODES",
    "HardConcreteGate",
    "SparsityMapScheduler",
    "cached_gates",
    "erk_densities",
    "erk_score",
    "clamp_log_alpha_",
    "close_random",
    "dense_state_dict",
    "deterministic_gates",
    "frozen_gates",
    "gate_parameters",
    "param_groups",
    "gated_layers",
    "harden",
    "is_gated",
    "penalty",
    "set_costs",
    "set_temperature",
    "sparsify",
    "sparsify_like",
    "stats",
    "weight_parameters",
]
