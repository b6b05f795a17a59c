"""gmp: gradual magnitude pruning during training, the baseline sparse-RL work treats as the one to beat.

    from l0rl import gmp
    gmp.attach(net)                                          # a mask on every Linear/Conv2d weight
    pruner = gmp.GradualMagnitudePruner({"actor": net}, target=0.9, total_steps=500_000)
    ...  # after each optimizer step:
    pruner.step(global_step)                                 # masks follow the cubic schedule

The recipe (Zhu & Gupta 2017, as used for deep RL by Graesser et al. 2022): sparsity follows
s_t = s_f + (s_i - s_f) * (1 - p)^3, p the training progress clipped between `start` and `end`;
every `every` optimizer steps each layer keeps its largest-magnitude effective weights. Masks are
parametrizations (weight -> weight * mask), so pruned weights are exactly zero in every forward
pass and Adam cannot revive them; at each mask update the pruned entries of the stored weight are
zeroed too, so a pruned weight never comes back. Hardening (l0.harden) folds the masks into plain
weights, exactly as it folds L0 gates, so compress treats a GMP run like an L0 run.

Per-layer distribution: Erdos-Renyi-Kernel (ERK), per network. A global magnitude threshold
removes the output layer first (it is initialised 100x smaller than the hidden layers), and a
uniform share starves the narrow input layer (4 x 64 weights in CartPole); ERK keeps a density
proportional to (fan_in + fan_out [+ kernel dims]) / weights, so small layers stay denser.
Depends on torch and l0rl.l0 (whose erk_score also prices L0 gates with set_costs(kind='erk')).
"""

from l0rl._one_name import wrong_import_name

if __name__ != "l0rl.gmp":  # this folder installs as l0rl.gmp only
    raise wrong_import_name("l0rl.gmp")

from l0rl.gmp.pruning import (
    GradualMagnitudePruner,
    MagnitudeMask,
    attach,
    attach_like,
    erk_densities,
    is_masked,
    masked_layers,
    scheduled_sparsity,
    stats,
)

__all__ = [
    "GradualMagnitudePruner",
    "MagnitudeMask",
    "attach",
    "attach_like",
    "erk_densities",
    "is_masked",
    "masked_layers",
    "scheduled_sparsity",
    "stats",
]
