"""Divergence guards every algorithm uses: training stops (NonFiniteError, exit 3) before a NaN/inf
reaches the weights, whether it shows in a loss (check_loss, before each optimizer step) or only in
the step itself (guard_step, which runkit.run's Run.restore puts on every optimizer)."""

from typing import Any

import torch

from l0rl.errors import NonFiniteError, first_line


def check_loss(loss: torch.Tensor, global_step: int) -> None:
    """Stop (NonFiniteError) before a NaN/inf loss reaches the weights; call it before each
    optimizer step (losses are logged only every --log-every env steps)."""
    if not torch.isfinite(loss).all():
        raise NonFiniteError.at(global_step, f"the loss is {loss.detach().flatten()[0].item()}")


def guard_step(optimizer: torch.optim.Optimizer) -> None:
    """Make `optimizer.step()` stop training (NonFiniteError, exit 3) when it overflows or leaves a
    parameter NaN/inf: a learning rate such as 1e38 diverges within a step, before a loss shows it."""
    step = optimizer.step
    params = [p for g in optimizer.param_groups for p in g["params"]]

    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            out = step(*args, **kwargs)
        except RuntimeError as e:  # torch's "value cannot be converted to type float without overflow"
            if "overflow" not in str(e):
                raise
            raise NonFiniteError.at(None, f"the optimizer step overflowed ({first_line(e, 200)})") from None
        with torch.no_grad():  # one sum per tensor: inf or NaN when any element is (or when it overflows)
            finite = bool(torch.isfinite(torch.stack([p.sum() for p in params]).sum()))
        if not finite:
            raise NonFiniteError.at(None, "an optimizer step made a parameter NaN/inf")
        return out

    optimizer.step = guarded
