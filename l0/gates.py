"""Hard-concrete gate math (Louizos, Welling & Kingma 2018): the one place every formula lives.

A gate z in [0, 1] multiplies a weight (or a whole output unit). Its distribution is a binary
concrete stretched to (gamma, zeta) and clamped back to [0, 1], so exact zeros and ones have
non-zero probability while the expected number of non-zero gates stays differentiable.
"""

import math

import torch

BETA = 2.0 / 3.0
"""Default temperature of the concrete distribution."""
GAMMA = -0.1
"""Default lower stretch limit (must be < 0 so that z == 0 has mass)."""
ZETA = 1.1
"""Default upper stretch limit (must be > 1 so that z == 1 has mass)."""
LOG_ALPHA_MIN, LOG_ALPHA_MAX = -10.0, 10.0
"""Safe range for log_alpha: beyond it the gate is saturated and gradients only add noise."""
_EPS = 1e-6  # keeps log(u) and log(1 - u) finite for u drawn at the ends of [0, 1)


def check_gate_hparams(beta: float, gamma: float, zeta: float) -> None:
    """Raise ValueError unless (beta, gamma, zeta) describe a valid hard-concrete gate."""
    if not beta > 0:
        raise ValueError(f"beta (gate temperature) must be > 0, got {beta}; the usual value is 2/3")
    if not gamma < 0:
        raise ValueError(f"gamma (lower stretch limit) must be < 0, got {gamma}; the usual value is -0.1")
    if not zeta > 1:
        raise ValueError(f"zeta (upper stretch limit) must be > 1, got {zeta}; the usual value is 1.1")


def log_alpha_init(drop_rate: float) -> float:
    """Mean of the log_alpha init for an initial drop rate p: log(1 - p) - log(p)."""
    if not 0.0 < drop_rate < 1.0:
        raise ValueError(
            f"drop_rate must be in (0, 1), got {drop_rate}; e.g. 0.5 starts every gate half open"
        )
    return math.log(1.0 - drop_rate) - math.log(drop_rate)


def sample_gate(
    log_alpha: torch.Tensor, u: torch.Tensor, beta: float = BETA, gamma: float = GAMMA, zeta: float = ZETA
) -> torch.Tensor:
    """Training-time gate from uniform noise u ~ U(0, 1) of log_alpha's shape (reparameterised)."""
    u = u.clamp(_EPS, 1.0 - _EPS)
    s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + log_alpha) / beta)
    return (s * (zeta - gamma) + gamma).clamp(0.0, 1.0)


def deterministic_gate(log_alpha: torch.Tensor, gamma: float = GAMMA, zeta: float = ZETA) -> torch.Tensor:
    """Test-time gate, the reference rule: clamp(sigmoid(log_alpha) * (zeta - gamma) + gamma, 0, 1).

    This is the rule of the paper's reference code; it ignores beta on purpose (it is the stretched
    median-like estimate, not the mean of the training distribution)."""
    return (torch.sigmoid(log_alpha) * (zeta - gamma) + gamma).clamp(0.0, 1.0)


def prob_nonzero(
    log_alpha: torch.Tensor, beta: float = BETA, gamma: float = GAMMA, zeta: float = ZETA
) -> torch.Tensor:
    """P(z != 0) for each gate; summed, this is the closed-form expected L0 norm."""
    return torch.sigmoid(log_alpha - beta * math.log(-gamma / zeta))
