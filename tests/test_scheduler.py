"""Tests for l0.SparsityMapScheduler: lambda trajectories, temperature, resume, target controller."""

import math
import pickle

import pytest
import torch
from torch import nn

from l0rl import l0
from l0rl.l0 import SparsityMapScheduler


def test_constant():
    sch = SparsityMapScheduler(100, mode="constant", lam=0.3)
    assert sch.lam == 0.3  # usable before the first step
    assert [sch.step(s) for s in (0, 1, 50, 100, 500)] == [0.3] * 5
    assert sch.log_dict() == {"l0/lambda": 0.3}
    assert sch.log_dict(prefix="x/") == {"x/lambda": 0.3}


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        # total 100, warmup 0.2, ramp_end 0.6, lam 0.4: frac = (p - 0.2) / 0.4
        (
            "linear",
            {0: 0.0, 10: 0.0, 20: 0.0, 30: 0.1, 40: 0.2, 50: 0.3, 60: 0.4, 80: 0.4, 100: 0.4, 250: 0.4},
        ),
        (
            "cosine",
            {
                0: 0.0,
                20: 0.0,
                30: 0.2 * (1 - math.cos(math.pi / 4)),
                40: 0.2,
                50: 0.2 * (1 - math.cos(3 * math.pi / 4)),
                60: 0.4,
                100: 0.4,
                250: 0.4,
            },
        ),
    ],
)
def test_ramps(mode, expected):
    sch = SparsityMapScheduler(100, mode=mode, lam=0.4, warmup=0.2, ramp_end=0.6)
    assert sch.lam == 0.0
    for step, lam in expected.items():
        assert sch.step(step) == pytest.approx(lam, abs=1e-12), (mode, step)
    lams = [sch.step(s) for s in range(0, 101)]
    assert all(b >= a for a, b in zip(lams, lams[1:]))


def test_cosine_differs_from_linear_off_the_midpoint():
    lin = SparsityMapScheduler(100, mode="linear", lam=1.0, ramp_end=1.0)
    cos = SparsityMapScheduler(100, mode="cosine", lam=1.0, ramp_end=1.0)
    assert cos.step(25) < lin.step(25)
    assert cos.step(75) > lin.step(75)
    assert cos.step(50) == pytest.approx(lin.step(50))


def test_temperature_anneal():
    sch = SparsityMapScheduler(200, beta_start=1.0, beta_end=0.5)
    assert sch.temperature(0) == pytest.approx(1.0)
    assert sch.temperature(100) == pytest.approx(0.75)
    assert sch.temperature(150) == pytest.approx(0.625)
    assert sch.temperature(200) == pytest.approx(0.5)
    assert sch.temperature(1000) == pytest.approx(0.5)
    assert SparsityMapScheduler(200).temperature(100) is None
    model = l0.sparsify(nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)))
    l0.set_temperature(model, sch.temperature(100))
    assert all(float(gate.beta) == pytest.approx(0.75) for _, _, gate in l0.gated_layers(model))
    with pytest.raises(ValueError, match="beta_start and beta_end"):
        SparsityMapScheduler(200, beta_start=1.0)
    with pytest.raises(ValueError, match="> 0"):
        SparsityMapScheduler(200, beta_start=1.0, beta_end=0.0)


def target_scheduler(**kw) -> SparsityMapScheduler:
    args = dict(
        total_steps=100, mode="target", target_sparsity=0.8, target_at=0.5, warmup=0.1, lam=0.01, dual_lr=0.1
    )
    args.update(kw)
    return SparsityMapScheduler(**args)


def test_target_ramp():
    sch = target_scheduler()
    assert sch.target_at_step(0) == 0.0
    assert sch.target_at_step(10) == 0.0
    assert sch.target_at_step(30) == pytest.approx(0.4)
    assert sch.target_at_step(50) == pytest.approx(0.8)
    assert sch.target_at_step(90) == pytest.approx(0.8)
    assert sch.target_at_step(500) == pytest.approx(0.8)


def test_target_mode_dual_ascent():
    sch = target_scheduler()
    # warm-up: penalty off whatever the measured sparsity
    assert sch.step(0, 0.0) == 0.0 and sch.step(5, 0.0) == 0.0
    assert sch.log_dict()["l0/lambda"] == 0.0
    # too dense: lambda rises every step, by dual_lr * log(density / target density) in log space
    prev = 0.01
    for step in range(50, 60):
        lam = sch.step(step, 0.6)
        assert lam > prev
        assert math.log(lam) - math.log(prev) == pytest.approx(0.1 * math.log(0.4 / 0.2))
        prev = lam
    assert sch.log_dict() == {"l0/lambda": lam, "l0/target_sparsity": pytest.approx(0.8)}
    # too sparse: lambda falls every step
    for step in range(60, 70):
        lam = sch.step(step, 0.9)
        assert lam < prev
        assert math.log(lam) - math.log(prev) == pytest.approx(0.1 * math.log(0.1 / 0.2))
        prev = lam
    # on target: lambda holds
    assert sch.step(70, 0.8) == pytest.approx(prev)


def test_target_hold_keeps_lambda_then_ramps_from_the_plateau():
    sch = target_scheduler(hold=True, warmup=0.3, target_at=0.7)
    assert sch.lam == 0.01  # usable before the first step, like the constant mode
    # the warm-up holds lambda at its start value whatever the sparsity, and the controller waits
    assert [sch.step(s, x) for s, x in ((0, 0.0), (10, 0.9), (29, 0.2))] == [0.01] * 3
    # past the warm-up the target starts at the sparsity measured there (0.6), reaching 0.8 at 70 %
    lam = sch.step(30, 0.6)
    assert (
        sch.start_sparsity == 0.6 and sch.current_target == pytest.approx(0.6) and lam == pytest.approx(0.01)
    )
    assert sch.target_at_step(50) == pytest.approx(0.7) and sch.target_at_step(90) == pytest.approx(0.8)
    lam = sch.step(50, 0.6)  # too dense for 0.7: lambda rises by dual_lr * log(0.4 / 0.3)
    assert math.log(lam / 0.01) == pytest.approx(0.1 * math.log(0.4 / 0.3))


def test_target_hold_at_once_and_from_past_the_target():
    # target_at = warmup: the full target at once (refused without hold: there is no ramp from 0 then)
    sch = target_scheduler(hold=True, warmup=0.5, target_at=0.5)
    assert sch.step(40, 0.5) == 0.01 and sch.step(50, 0.5) > 0.01 and sch.current_target == 0.8
    with pytest.raises(ValueError, match="target_at"):
        target_scheduler(warmup=0.5, target_at=0.5)
    # a warm-up that ends sparser than the target aims at the target, not back down to the plateau
    sch = target_scheduler(hold=True, warmup=0.3, target_at=0.7)
    assert sch.step(30, 0.9) < 0.01 and sch.start_sparsity == 0.8 and sch.current_target == 0.8
    with pytest.raises(ValueError, match="target mode only"):
        SparsityMapScheduler(100, mode="constant", hold=True)


def test_target_mode_error_is_a_density_ratio_clipped_to_one():
    """Near the top, a point short is many times too dense: 98 % against a 99 % target pushes as
    hard as 80 % against 90 %; a far bigger gap steps no further than an error of 1 (the gates lag
    lambda, and big steps overshoot)."""
    steps = []
    for sparsity, target in ((0.98, 0.99), (0.8, 0.9), (0.0, 0.99), (0.999, 0.5)):
        sch = target_scheduler(target_sparsity=target, warmup=0.0, target_at=0.01, lam=1.0, dual_lr=0.1)
        sch.step(1, sparsity)  # the target has finished its ramp at step 1
        steps.append(math.log(sch.lam))
    assert steps[0] == pytest.approx(steps[1]) == pytest.approx(0.1 * math.log(2))
    assert steps[2:] == [pytest.approx(0.1), pytest.approx(-0.1)]


def test_target_mode_clips_lambda():
    sch = target_scheduler(lam=0.5, lam_min=1e-3, lam_max=1.0, dual_lr=1.0)
    for step in range(50, 80):
        sch.step(step, 0.0)
    assert sch.lam == pytest.approx(1.0)
    for step in range(80, 200):
        sch.step(step, 1.0)
    assert sch.lam == pytest.approx(1e-3)
    # and recovers from the floor straight away (no wind-up below lam_min)
    assert sch.step(200, 0.0) > 1e-3


def test_target_mode_bounds_default_to_a_tenfold_around_lam():
    """An early overshoot cannot park lambda far below where it started, nor a lagging sparsity
    drive it far above: it stays within [lam / 10, lam * 10] unless told otherwise."""
    sch = target_scheduler(lam=2.0, dual_lr=1.0)
    for step in range(10, 60):
        sch.step(step, 0.99)  # far sparser than the ramping target
    assert sch.lam == pytest.approx(0.2)
    for step in range(60, 200):
        sch.step(step, 0.0)
    assert sch.lam == pytest.approx(20.0)


def test_target_mode_needs_sparsity():
    with pytest.raises(ValueError, match="sparsity"):
        target_scheduler().step(50)


def sparsity_signal(step: int) -> float:
    return 0.5 + 0.45 * math.sin(step / 7.0)


@pytest.mark.parametrize("mode", ["target", "target-hold", "cosine"])
def test_state_dict_round_trip_resumes_identically(mode):
    kw = dict(beta_start=1.0, beta_end=0.3)
    kw |= {"mode": "cosine"} if mode == "cosine" else {"hold": True} if mode == "target-hold" else {}

    def make():
        return target_scheduler(**kw)

    straight, first_half = make(), make()
    expected = [(straight.step(s, sparsity_signal(s)), straight.temperature(s)) for s in range(100)]
    got = [(first_half.step(s, sparsity_signal(s)), first_half.temperature(s)) for s in range(50)]
    saved = pickle.loads(pickle.dumps(first_half.state_dict()))  # what a checkpoint would hold
    first_half.step(50, 0.0)  # the saved state is a snapshot, not a live view
    resumed = make()
    resumed.load_state_dict(saved)
    got += [(resumed.step(s, sparsity_signal(s)), resumed.temperature(s)) for s in range(50, 100)]
    assert got == expected
    assert resumed.log_dict() == straight.log_dict()
    if mode != "cosine":  # the state matters: a fresh scheduler would not continue the same way
        fresh = make()
        assert [fresh.step(s, sparsity_signal(s)) for s in range(50, 100)] != [
            lam for lam, _ in expected[50:]
        ]


def test_load_state_dict_rejects_unknown_keys():
    sch = SparsityMapScheduler(100)
    state = sch.state_dict()
    state["mystery"] = 1
    with pytest.raises(ValueError, match="unknown keys"):
        sch.load_state_dict(state)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lam": -0.1}, "lambda"),
        ({"mode": "exponential"}, "unknown scheduler mode"),
        ({"mode": "target"}, "target_sparsity"),
        ({"mode": "target", "target_sparsity": 1.0}, "target_sparsity"),
        ({"mode": "target", "target_sparsity": 0.0}, "target_sparsity"),
        ({"total_steps": 0}, "total_steps"),
        ({"warmup": 1.0}, "warmup"),
        ({"mode": "linear", "warmup": 0.5, "ramp_end": 0.5}, "ramp_end"),
        ({"mode": "target", "target_sparsity": 0.5, "warmup": 0.5, "target_at": 0.4}, "target_at"),
        ({"mode": "target", "target_sparsity": 0.5, "lam": 0.0}, "lam_min"),
        ({"mode": "target", "target_sparsity": 0.5, "dual_lr": 0.0}, "dual_lr"),
    ],
)
def test_bad_arguments(kwargs, match):
    args = {"total_steps": 100, **kwargs}
    with pytest.raises(ValueError, match=match):
        SparsityMapScheduler(**args)


def test_end_to_end_target_mode_reaches_target():
    """An 8-64-64-1 tanh MLP with per-weight gates, Adam (weights lr 3e-3, log_alpha lr 0.1),
    loss = MSE + scheduler.step(step, stats sparsity) * penalty, 3000 steps, target 0.8 reached
    by 70 % of training (dual_lr 0.02): the final sparsity under test-time gates is 0.8 +- 0.05."""
    total, target = 3000, 0.8
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2048, 8, generator=g)
    y = torch.sin(x[:, :1]) + 0.5 * x[:, 1:2] * x[:, 2:3]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1))
    l0.sparsify(model, granularity="weight")
    opt = torch.optim.Adam(
        [
            {"params": l0.weight_parameters(model), "lr": 3e-3},
            {"params": l0.gate_parameters(model), "lr": 0.1},
        ]
    )
    sch = SparsityMapScheduler(
        total, mode="target", target_sparsity=target, target_at=0.7, lam=0.01, dual_lr=0.02
    )
    lams, sparsities = [], []
    for step in range(total):
        idx = torch.randint(0, x.shape[0], (128,), generator=g)
        sparsity = l0.stats(model)["l0/sparsity"]
        lam = sch.step(step, sparsity)
        loss = (model(x[idx]) - y[idx]).pow(2).mean() + lam * l0.penalty(model)
        opt.zero_grad()
        loss.backward()
        opt.step()
        l0.clamp_log_alpha_(model)
        lams.append(lam)
        sparsities.append(sparsity)
    final = l0.stats(model)["l0/sparsity"]
    assert abs(final - target) <= 0.05, final
    assert sparsities[total // 10] < final  # it got there during training, not from the start
    # early on the gates close faster than the target ramps (lambda falls), then lambda must climb
    assert lams[-1] > 10 * min(lams)
    with torch.no_grad():
        assert float((model.eval()(x) - y).pow(2).mean()) < 0.2 * float(y.var())  # still fits
