"""Gradual magnitude pruning: the cubic schedule, ERK densities, masks that keep pruned weights at
exactly zero through optimizer updates, and hardening/rebuilding like L0 gates."""

import math

import pytest
import torch
from torch import nn

from l0rl import gmp, l0


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 2))


def zero_share(model: nn.Module) -> float:
    weights = [m.weight for _, m, _ in gmp.masked_layers(model)]
    return sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)


@pytest.mark.parametrize(
    "progress, expected",
    [(0.0, 0.0), (0.2, 0.0), (0.5, 0.9 * (1 - 0.5**3)), (0.8, 0.9), (1.0, 0.9), (0.35, 0.9 * (1 - 0.75**3))],
)
def test_cubic_schedule(progress, expected):
    assert gmp.scheduled_sparsity(progress, 0.9, 0.2, 0.8) == pytest.approx(expected)


def test_erk_densities_meet_the_budget_and_favour_small_layers():
    shapes = [(64, 4), (64, 64), (2, 64)]
    dens = gmp.erk_densities(shapes, 0.05)
    sizes = [math.prod(s) for s in shapes]
    assert sum(d * n for d, n in zip(dens, sizes)) == pytest.approx(0.05 * sum(sizes))
    assert dens[1] < dens[0] and dens[1] < dens[2]
    capped = gmp.erk_densities([(2, 2), (512, 512)], 0.5)  # the tiny layer would exceed 1: kept dense
    assert capped[0] == 1.0 and sum(d * n for d, n in zip(capped, [4, 512 * 512])) == pytest.approx(
        0.5 * (4 + 512 * 512)
    )


def test_masks_follow_the_schedule_during_training_and_pruned_weights_stay_zero():
    net = gmp.attach(mlp())
    total, every = 1000, 10
    pruner = gmp.GradualMagnitudePruner({"net": net}, target=0.9, total_steps=total, every=every)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    x = torch.randn(64, 4)
    pruned_before: torch.Tensor | None = None
    for step in range(1, total + 1):
        loss = net(x).pow(2).mean() - net(x)[:, 0].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if pruner.step(step):
            expected = gmp.scheduled_sparsity(step / total, 0.9, 0.2, 0.8)
            assert pruner.sparsity == expected
            # per layer, round(density * n) weights stay: the total share matches to rounding
            assert abs(zero_share(net) - expected) < 4 / 4480
        if step in (500, 900):  # middle and end: every weight pruned earlier is still exactly zero
            layer = net[2]
            zeros = layer.weight == 0
            if pruned_before is not None:
                assert bool(zeros[pruned_before].all())
            pruned_before = zeros.clone()
    assert zero_share(net) == pytest.approx(0.9, abs=4 / 4480)


def test_harden_folds_masks_and_attach_like_rebuilds_them():
    net = gmp.attach(mlp())
    gmp.GradualMagnitudePruner({"net": net}, 0.8, total_steps=10).apply(0.8)
    x = torch.randn(5, 4)
    hard = l0.harden(net)
    assert not any("parametrizations" in k for k in hard.state_dict())
    assert torch.equal(hard(x), net(x))
    assert l0.dense_state_dict(net).keys() == hard.state_dict().keys()
    again = gmp.attach_like(mlp(), net.state_dict())
    assert torch.equal(again(x), net(x)) and gmp.stats(again) == gmp.stats(net)


def test_bad_settings_are_refused():
    net = gmp.attach(mlp())
    for kw in (dict(target=1.0), dict(target=0.5, start=0.8, end=0.2), dict(target=0.5, every=0)):
        with pytest.raises(ValueError):
            gmp.GradualMagnitudePruner({"net": net}, total_steps=10, **kw)
    with pytest.raises(ValueError, match="no masks"):
        gmp.GradualMagnitudePruner({"plain": mlp()}, 0.5, total_steps=10)
