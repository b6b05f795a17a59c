"""Magnitude masks as weight parametrizations, the cubic schedule, ERK densities and the pruner."""

from collections.abc import Iterator

import torch
from torch import nn
from torch.nn.utils import parametrize

from l0rl.l0 import erk_densities
from l0rl.l0.sparsify import layers_with, weight_parametrization

MASKABLE = (nn.Linear, nn.Conv2d)
_MASK_KEY = "parametrizations.weight.0.mask"


class MagnitudeMask(nn.Module):
    """weight -> weight * mask, the mask a 0/1 buffer of the weight's shape (saved in state_dict)."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", torch.ones_like(weight))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask


def is_masked(module: nn.Module) -> bool:
    return weight_parametrization(module, MagnitudeMask) is not None


def masked_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module, MagnitudeMask]]:
    """(name, layer, mask) for every masked layer, in module order."""
    return layers_with(model, MagnitudeMask)


def attach(model: nn.Module) -> nn.Module:
    """A mask (all ones) on every nn.Linear / nn.Conv2d weight not masked yet; returns the model."""
    layers = [m for m in model.modules() if isinstance(m, MASKABLE) and not is_masked(m)]
    if not layers and not any(True for _ in masked_layers(model)):
        raise ValueError(f"no Linear/Conv2d layer in {type(model).__name__} to prune")
    for module in layers:
        parametrize.register_parametrization(module, "weight", MagnitudeMask(module.weight))
    return model


def attach_like(model: nn.Module, state_dict: dict) -> nn.Module:
    """Attach masks wherever `state_dict` (of a masked model) has them, then load it."""
    for key in state_dict:
        if not key.endswith(_MASK_KEY):
            continue
        name = key[: -len(_MASK_KEY)].rstrip(".")
        module = model.get_submodule(name) if name else model
        if not isinstance(module, MASKABLE):
            raise ValueError(
                f"state_dict masks layer {name!r}, which this model does not have as Linear/Conv2d"
            )
        if not is_masked(module):
            parametrize.register_parametrization(module, "weight", MagnitudeMask(module.weight))
    model.load_state_dict(state_dict)
    return model


def scheduled_sparsity(
    progress: float, target: float, start: float, end: float, initial: float = 0.0
) -> float:
    """s_t = s_f + (s_i - s_f) * (1 - p)^3 with p = (progress - start) / (end - start) clipped to [0, 1]."""
    p = min(max((progress - start) / (end - start), 0.0), 1.0)
    return target + (initial - target) * (1.0 - p) ** 3


@torch.no_grad()
def stats(model: nn.Module, prefix: str = "gmp/") -> dict[str, float]:
    """Masked weights, exact zeros of the effective weights, and their share."""
    n_w = n_zero = 0
    for _, module, _ in masked_layers(model):
        n_w += module.weight.numel()
        n_zero += int((module.weight == 0).sum())
    return {
        f"{prefix}masked_weights": float(n_w),
        f"{prefix}zero_weights": float(n_zero),
        f"{prefix}sparsity": n_zero / n_w if n_w else 0.0,
    }


class GradualMagnitudePruner:
    """Drives the masks of several networks (each pruned to the target on its own, ERK inside it)
    along the cubic schedule; `step(global_step)` after every optimizer step."""

    def __init__(
        self,
        models: dict[str, nn.Module],
        target: float,
        total_steps: int,
        start: float = 0.2,
        end: float = 0.8,
        every: int = 100,
        initial: float = 0.0,
    ):
        if not 0.0 < target < 1.0:
            raise ValueError(f"GMP target sparsity must be in (0, 1), got {target}")
        if not 0.0 <= start < end <= 1.0:
            raise ValueError(f"GMP needs 0 <= start < end <= 1, got start {start}, end {end}")
        if every < 1 or total_steps < 1:
            raise ValueError("GMP mask period and total steps must be >= 1")
        self.models, self.target, self.total_steps = models, target, total_steps
        self.start, self.end, self.every, self.initial = start, end, every, initial
        self.updates = 0
        self.sparsity = initial
        for name, model in models.items():
            if not any(True for _ in masked_layers(model)):
                raise ValueError(f"network {name!r} has no masks; call gmp.attach on it first")

    def step(self, global_step: int) -> bool:
        """Count one optimizer step; every `every`-th recomputes the masks. True when it did."""
        self.updates += 1
        if self.updates % self.every:
            return False
        self.apply(
            scheduled_sparsity(
                global_step / self.total_steps, self.target, self.start, self.end, self.initial
            )
        )
        return True

    @torch.no_grad()
    def apply(self, sparsity: float) -> None:
        """Each layer keeps its round(density * n) largest-magnitude effective weights."""
        self.sparsity = sparsity
        for model in self.models.values():
            layers = list(masked_layers(model))
            shapes = [tuple(m.parametrizations["weight"].original.shape) for _, m, _ in layers]
            for (_, module, mask), density in zip(layers, erk_densities(shapes, 1.0 - sparsity)):
                original = module.parametrizations["weight"].original
                effective = (original * mask.mask).abs().flatten()
                keep = round(density * effective.numel())
                new = torch.zeros_like(effective)
                if keep > 0:
                    new[torch.topk(effective, keep, sorted=False).indices] = 1.0
                mask.mask.copy_(new.view_as(mask.mask))
                original.mul_(mask.mask)

    def state_dict(self) -> dict:
        return {"updates": self.updates, "sparsity": self.sparsity}

    def load_state_dict(self, state: dict) -> None:
        """Restore what state_dict returned; another kind of state (a damaged or crafted checkpoint)
        is a ValueError, not an OverflowError or a NaN logged later."""
        updates, sparsity = state["updates"], state["sparsity"]
        number = isinstance(sparsity, int | float) and not isinstance(sparsity, bool)
        if type(updates) is not int or updates < 0 or not number or not 0 <= sparsity <= 1:
            raise ValueError(f"GMP state has updates {updates!r:.40} and sparsity {sparsity!r:.40}")
        self.updates, self.sparsity = updates, sparsity

    def log_dict(self, prefix: str = "gmp/") -> dict[str, float]:
        return {f"{prefix}scheduled_sparsity": self.sparsity}
