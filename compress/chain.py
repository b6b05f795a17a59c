"""The policy chain every compress stage works on: a flat nn.Sequential of weight layers (Linear,
Conv2d), Flatten and elementwise modules, plus the shapes that flow through it.

THE POLICY CONTRACT (every algorithm's `policy_from_checkpoint` follows it): an nn.Sequential mapping a
float32 observation batch to action scores or to the action, made only of nn.Linear, nn.Conv2d (gated
or not), nn.Flatten and parameter-free elementwise modules. `as_chain` turns such a policy into the
canonical form compress stores: nested Sequentials are flattened, ReLU/Tanh/Sigmoid/Identity are
kept, and any other parameter-free module (an algorithm's `Scale`, SAC's action rescale) is replaced
by an equivalent `Affine` after checking on random inputs that it is elementwise affine.
"""

import torch
from torch import nn

WEIGHT_LAYERS = (nn.Linear, nn.Conv2d)
ACTIVATIONS = (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.Identity)


class Affine(nn.Module):
    """y = x * scale + shift, elementwise; scale and shift are buffers (0-d when uniform)."""

    def __init__(self, scale: torch.Tensor, shift: torch.Tensor):
        super().__init__()
        self.register_buffer("scale", scale)
        self.register_buffer("shift", shift)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift

    def is_uniform(self) -> bool:
        """True when scale and shift are scalars, so removing units does not change them."""
        return self.scale.dim() == 0 and self.shift.dim() == 0


def _flat_modules(module: nn.Module) -> list[nn.Module]:
    if isinstance(module, nn.Sequential):
        return [m for child in module for m in _flat_modules(child)]
    return [module]


@torch.no_grad()
def _as_affine(module: nn.Module, shape: tuple[int, ...], position: int) -> Affine:
    """The Affine equal to a parameter-free module on inputs of `shape` (one sample, no batch dim)."""
    name = type(module).__name__
    zeros, ones = torch.zeros((1, *shape)), torch.ones((1, *shape))
    shift = module(zeros)[0]
    scale = module(ones)[0] - shift
    x = torch.randn((3, *shape), generator=torch.Generator().manual_seed(0)) * 3.0
    y = module(x)
    if y.shape != x.shape or not torch.allclose(y, x * scale + shift, rtol=1e-5, atol=1e-6):
        raise ValueError(
            f"policy module {position} ({name}) is neither Linear/Conv2d/Flatten nor elementwise affine; "
            "compress follows the policy contract in compress/chain.py"
        )
    if bool((scale == scale.flatten()[0]).all()) and bool((shift == shift.flatten()[0]).all()):
        scale, shift = scale.flatten()[0].clone(), shift.flatten()[0].clone()
    return Affine(scale.contiguous(), shift.contiguous())


@torch.no_grad()
def as_chain(policy: nn.Module, obs_shape: tuple[int, ...]) -> nn.Sequential:
    """The policy in canonical chain form (weight layers are shared with `policy`, not copied)."""
    if not isinstance(policy, nn.Sequential):
        raise ValueError(
            f"the policy is a {type(policy).__name__}, not an nn.Sequential; "
            "policy_from_checkpoint must follow the policy contract in compress/chain.py"
        )
    out: list[nn.Module] = []
    x = torch.zeros((1, *obs_shape))
    for i, m in enumerate(_flat_modules(policy)):
        if isinstance(m, (*WEIGHT_LAYERS, nn.Flatten, Affine)):
            new = m
        elif isinstance(m, ACTIVATIONS):
            new = type(m)()
        elif next(m.parameters(), None) is None:
            new = _as_affine(m, tuple(x.shape[1:]), i)
        else:
            raise ValueError(
                f"policy module {i} ({type(m).__name__}) has parameters but is not Linear/Conv2d; "
                "compress follows the policy contract in compress/chain.py"
            )
        out.append(new)
        x = new(x)
    return nn.Sequential(*out)


@torch.no_grad()
def trace(chain: nn.Sequential, obs_shape: tuple[int, ...]) -> list[tuple[torch.Size, torch.Size]]:
    """(input shape, output shape) of every module for a batch of one observation."""
    x = torch.zeros((1, *obs_shape))
    shapes = []
    for m in chain:
        y = m(x)
        shapes.append((x.shape, y.shape))
        x = y
    return shapes


def weight_layers(chain: nn.Sequential) -> list[tuple[int, nn.Module]]:
    """(position, layer) of every Linear / Conv2d in the chain."""
    return [(i, m) for i, m in enumerate(chain) if isinstance(m, WEIGHT_LAYERS)]
