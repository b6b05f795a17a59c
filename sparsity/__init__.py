"""sparsity: how a training run makes its networks sparse, one small object per method behind one
interface, chosen by --sparsity through one registry (METHODS).

    from l0rl.sparsity import make_sparsity
    sparsity = make_sparsity(args, {"actor": policy, "critic": [qf1, qf2]}, lambdas={"actor": 4.0, "critic": 0.1})
    sparsity.schedule(global_step)                       # L0: each group's lambda follows the step
    loss = task_loss + sparsity.penalty()                # L0: lambda x expected share of open weights
    optimizer.step(); sparsity.after_step(global_step)   # L0: clamp log_alpha; GMP: its mask schedule
    metrics |= sparsity.log_dict()
    checkpoint["schedulers"] = sparsity.state_dict()

Methods: L0 (hard-concrete gates, l0rl.l0), GMP (gradual magnitude pruning, l0rl.gmp) and Dense, the
null object. A new method is one SparsityMethod subclass and one METHODS entry. Depends on l0rl.l0,
l0rl.gmp and torch; knows nothing of RL algorithms or run directories.
"""

from l0rl._one_name import wrong_import_name

if __name__ != "l0rl.sparsity":  # this folder installs as l0rl.sparsity only
    raise wrong_import_name("l0rl.sparsity")

from l0rl.sparsity.methods import (
    GMP,
    L0,
    METHODS,
    Dense,
    SparsityMethod,
    make_scheduler,
    make_sparsity,
    method_label,
    sparsity_stats,
)

__all__ = [
    "GMP",
    "L0",
    "METHODS",
    "Dense",
    "SparsityMethod",
    "make_scheduler",
    "make_sparsity",
    "method_label",
    "sparsity_stats",
]
