"""Tests for l0: hard-concrete gate math, sparsify/harden/stats/penalty, gate modes, state handling.

Reference formulas (docs/PAPER "The sparsity map") are recomputed here independently of l0.gates.
"""

import copy
import math

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from l0rl import gmp, l0
from l0rl.l0.gates import deterministic_gate, log_alpha_init, prob_nonzero, sample_gate

BETA, GAMMA, ZETA = 2.0 / 3.0, -0.1, 1.1  # the paper's defaults, restated on purpose


# ----------------------------------------------------------------------------------------------
# helpers


def mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3))


def cnn(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3),  # (2, 9, 9) -> (4, 7, 7)
        nn.ReLU(),
        nn.Conv2d(4, 5, 3, stride=2),  # -> (5, 3, 3)
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(45, 3),
    )


def inputs_for(model: nn.Module, n: int = 8, seed: int = 123, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    first = next(m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d))
    shape = (n, 2, 9, 9) if isinstance(first, nn.Conv2d) else (n, 6)
    return torch.randn(shape, generator=g).to(dtype)


def randomize_log_alpha(model: nn.Module, seed: int = 7, scale: float = 3.0) -> None:
    """Spread log_alpha so some gates are closed, some partly open and some fully open."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in l0.gate_parameters(model):
            p.copy_(torch.randn(p.shape, generator=g).to(p.dtype) * scale)


def gates_of(model: nn.Module) -> dict[str, "l0.HardConcreteGate"]:
    return {name: gate for name, _, gate in l0.gated_layers(model)}


def ref_sigmoid(x: torch.Tensor) -> torch.Tensor:
    return 1.0 / (1.0 + torch.exp(-x))


def ref_test_gate(log_alpha: torch.Tensor, gamma: float = GAMMA, zeta: float = ZETA) -> torch.Tensor:
    s = ref_sigmoid(log_alpha) * (zeta - gamma) + gamma
    return torch.minimum(torch.maximum(s, torch.zeros_like(s)), torch.ones_like(s))


def no_parametrizations(model: nn.Module) -> bool:
    return not any(parametrize.is_parametrized(m) for m in model.modules())


# ----------------------------------------------------------------------------------------------
# gate math


@pytest.mark.parametrize("beta", [BETA, 0.3, 1.0])
def test_prob_nonzero_matches_monte_carlo(beta):
    """Closed-form P(z > 0) (the expected-L0 summand) agrees with sampling the training gate."""
    log_alpha = torch.tensor([-3.0, -1.0, 0.0, 0.7, 3.0], dtype=torch.float64).unsqueeze(1)
    n = 200_000
    g = torch.Generator().manual_seed(0)
    u = torch.rand((log_alpha.shape[0], n), generator=g, dtype=torch.float64)
    z = sample_gate(log_alpha.expand(-1, n), u, beta=beta)
    mc = (z > 0).double().mean(dim=1)
    closed = prob_nonzero(log_alpha.squeeze(1), beta=beta)
    # independent restatement: sigmoid(log_alpha - beta * log(-gamma / zeta))
    ref = ref_sigmoid(log_alpha.squeeze(1) - beta * math.log(-GAMMA / ZETA))
    torch.testing.assert_close(closed, ref, rtol=0, atol=1e-12)
    # binomial std <= sqrt(0.25 / 2e5) ~ 1.1e-3, so 5e-3 is > 4 sigma
    torch.testing.assert_close(mc, closed, rtol=0, atol=5e-3)
    # and the same for the mass at exactly one: P(z == 1) = sigmoid(log_alpha - beta*log((1-gamma)/(zeta-1)))
    p_one = ref_sigmoid(log_alpha.squeeze(1) - beta * math.log((1 - GAMMA) / (ZETA - 1)))
    torch.testing.assert_close((z == 1).double().mean(dim=1), p_one, rtol=0, atol=5e-3)


def test_samples_hit_exact_zero_and_one():
    g = torch.Generator().manual_seed(1)
    log_alpha = torch.zeros(50_000)
    z = sample_gate(log_alpha, torch.rand(50_000, generator=g))
    frac_zero = float((z == 0).float().mean())
    frac_one = float((z == 1).float().mean())
    assert 0.05 < frac_zero < 0.3
    assert 0.05 < frac_one < 0.3
    assert float(z.min()) == 0.0 and float(z.max()) == 1.0
    assert bool(((z > 0) & (z < 1)).any())
    # noise at the very ends of [0, 1] stays finite
    ends = sample_gate(torch.zeros(2), torch.tensor([0.0, 1.0]))
    assert torch.equal(ends, torch.tensor([0.0, 1.0]))


@pytest.mark.parametrize(("gamma", "zeta"), [(GAMMA, ZETA), (-0.2, 1.3)])
def test_deterministic_gate_is_reference_rule(gamma, zeta):
    log_alpha = torch.linspace(-8, 8, 161, dtype=torch.float64)
    got = deterministic_gate(log_alpha, gamma=gamma, zeta=zeta)
    torch.testing.assert_close(got, ref_test_gate(log_alpha, gamma, zeta), rtol=0, atol=1e-12)
    assert float(got.min()) == 0.0 and float(got.max()) == 1.0


def test_log_alpha_init_and_initial_gate():
    for p in (0.1, 0.3, 0.5, 0.9):
        assert log_alpha_init(p) == pytest.approx(math.log(1 - p) - math.log(p), abs=1e-12)
    assert log_alpha_init(0.5) == 0.0
    torch.manual_seed(0)
    gate = l0.HardConcreteGate(torch.empty(64, 32), drop_rate=0.5).eval()
    z = gate.gate().detach()
    assert z.shape == (64, 32)
    assert float(z.mean()) == pytest.approx(0.5, abs=2e-3)
    assert float((z - 0.5).abs().max()) < 0.02  # init noise is N(0, 0.01) on log_alpha
    gate = l0.HardConcreteGate(torch.empty(200, 50), drop_rate=0.2)
    la = gate.log_alpha.detach()
    assert float(la.mean()) == pytest.approx(math.log(4.0), abs=2e-3)
    assert float(la.std()) == pytest.approx(0.01, rel=0.1)


def test_gradients_reach_weights_and_log_alpha():
    model = l0.sparsify(mlp(), granularity="weight")
    x = inputs_for(model)
    loss = model(x).pow(2).mean() + 0.1 * l0.penalty(model)
    loss.backward()
    for name, module, gate in l0.gated_layers(model):
        w_grad = module.parametrizations.weight.original.grad
        a_grad = gate.log_alpha.grad
        assert w_grad is not None and a_grad is not None, name
        assert torch.isfinite(w_grad).all() and torch.isfinite(a_grad).all()
        assert float(w_grad.abs().sum()) > 0 and float(a_grad.abs().sum()) > 0
        assert module.bias.grad is not None
    # the penalty alone acts on log_alpha only, never on the weights
    model.zero_grad(set_to_none=True)
    l0.penalty(model).backward()
    for _, module, gate in l0.gated_layers(model):
        assert module.parametrizations.weight.original.grad is None
        assert float(gate.log_alpha.grad.abs().sum()) > 0


# ----------------------------------------------------------------------------------------------
# sparsify


@pytest.mark.parametrize(
    ("layer", "granularity", "shape"),
    [
        (nn.Linear(5, 7), "weight", (7, 5)),
        (nn.Linear(5, 7), "unit", (7, 1)),
        (nn.Conv2d(3, 4, (3, 2)), "weight", (4, 3, 3, 2)),
        (nn.Conv2d(3, 4, (3, 2)), "unit", (4, 1, 1, 1)),
    ],
)
def test_log_alpha_shape_per_granularity(layer, granularity, shape):
    model = nn.Sequential(layer)
    assert l0.sparsify(model, granularity=granularity) is model
    (gate,) = gates_of(model).values()
    assert tuple(gate.log_alpha.shape) == shape
    assert gate.granularity == granularity
    assert model[0].bias is not None and not parametrize.is_parametrized(model[0], "bias")


def test_mixed_granularity_gates_conv_channels_per_unit_and_linear_layers_per_weight():
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 7 * 7, 6), nn.Linear(6, 3)
    )
    l0.sparsify(model, granularity="mixed", output_granularity="weight")
    shapes = {name: tuple(g.log_alpha.shape) for name, g in gates_of(model).items()}
    assert shapes == {"0": (4, 1, 1, 1), "3": (6, 196), "4": (3, 6)}
    assert [g.granularity for g in gates_of(model).values()] == ["unit", "weight", "weight"]
    # a checkpoint rebuilds the same gates from its state_dict alone
    rebuilt = l0.sparsify_like(
        nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(196, 6), nn.Linear(6, 3)),
        model.state_dict(),
    )
    assert [g.granularity for g in gates_of(rebuilt).values()] == ["unit", "weight", "weight"]
    with pytest.raises(ValueError, match="unknown granularity 'mixed'"):
        l0.HardConcreteGate(torch.zeros(3, 2), "mixed")


class Agent(nn.Module):
    def __init__(self):
        super().__init__()
        self.actor = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
        self.critic = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))

    def forward(self, x):
        return self.actor(x), self.critic(x)


@pytest.mark.parametrize(
    ("include", "exclude", "expected"),
    [
        (None, None, {"actor.0", "actor.2", "critic.0", "critic.2"}),
        (["actor.*"], None, {"actor.0", "actor.2"}),
        (None, ["*.2"], {"actor.0", "critic.0"}),
        (["actor.*"], ["actor.2"], {"actor.0"}),
        (["critic.0", "actor.2"], None, {"critic.0", "actor.2"}),
        (lambda name, m: m.out_features == 1, None, {"critic.2"}),
        (None, lambda name, m: name.startswith("critic"), {"actor.0", "actor.2"}),
    ],
)
def test_include_exclude(include, exclude, expected):
    agent = l0.sparsify(Agent(), include=include, exclude=exclude)
    assert set(gates_of(agent)) == expected
    for name, module in agent.named_modules():
        if isinstance(module, nn.Linear):
            assert l0.is_gated(module) == (name in expected)


def test_include_matching_nothing_raises():
    with pytest.raises(ValueError, match="no gateable layer"):
        l0.sparsify(Agent(), include=["policy.*"])


def test_sparsify_twice_mixes_granularities_and_leaves_gated_layers_alone():
    model = mlp()
    l0.sparsify(model, granularity="unit", exclude=["4"])
    first = {name: gate.log_alpha for name, gate in gates_of(model).items()}
    assert set(first) == {"0", "2"}
    l0.sparsify(model, granularity="weight", drop_rate=0.9)
    gates = gates_of(model)
    assert set(gates) == {"0", "2", "4"}
    assert gates["0"].granularity == gates["2"].granularity == "unit"
    assert gates["4"].granularity == "weight"
    for name, la in first.items():
        assert gates[name].log_alpha is la  # untouched, not re-initialised
        assert len(model.get_submodule(name).parametrizations.weight) == 1  # not gated twice
    # a third call changes nothing (and does not raise: the model already has gates)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    l0.sparsify(model, granularity="unit")
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("build", [mlp, cnn])
def test_model_code_unchanged(build):
    dense = build()
    x = inputs_for(dense)
    y_dense = dense(x)
    model = l0.sparsify(copy.deepcopy(dense), granularity="unit")
    assert model(x).shape == y_dense.shape
    # fully open gates (z == 1 exactly) reproduce the dense network bit for bit
    with torch.no_grad():
        for p in l0.gate_parameters(model):
            p.fill_(10.0)
    model.eval()
    assert torch.equal(model(x), y_dense)


# ----------------------------------------------------------------------------------------------
# harden


@pytest.mark.parametrize("build", [mlp, cnn])
@pytest.mark.parametrize("granularity", ["weight", "unit"])
@pytest.mark.parametrize("train_mode", [True, False])
def test_harden_matches_eval_output_and_loads_into_dense(build, granularity, train_mode):
    gated = l0.sparsify(build(), granularity=granularity)
    randomize_log_alpha(gated)
    gated.train(train_mode)
    x = inputs_for(gated)
    la_before = [p.detach().clone() for p in l0.gate_parameters(gated)]

    hard = l0.harden(gated)
    assert hard is not gated
    assert hard.training == train_mode
    assert no_parametrizations(hard)
    assert not any("parametrizations" in k or "log_alpha" in k for k in hard.state_dict())
    assert l0.stats(gated)["l0/zero_weights"] > 0  # the comparison below includes closed gates

    with torch.no_grad():
        gated.eval()
        y_gated = gated(x)
        y_hard = hard(x)  # in train mode too: a hardened model has no noise left
    torch.testing.assert_close(y_hard, y_gated, rtol=1e-6, atol=1e-6)

    fresh = build(seed=99)
    fresh.load_state_dict(hard.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(fresh.eval()(x), y_gated, rtol=1e-6, atol=1e-6)

    # hardened zeros are exact and match stats()
    n_zero = sum(int((m.weight == 0).sum()) for m in hard.modules() if isinstance(m, nn.Linear | nn.Conv2d))
    assert n_zero == l0.stats(gated)["l0/zero_weights"]
    # the input model still has its gates and log_alpha values
    assert all(torch.equal(a, b) for a, b in zip(la_before, l0.gate_parameters(gated)))


def test_harden_does_not_break_the_original_or_its_copies():
    """Regression: deepcopy shares torch's generated Parametrized* class, and removing the
    parametrization on the copy used to delete `weight` from the original's class too."""
    gated = l0.sparsify(mlp(), granularity="unit")
    randomize_log_alpha(gated)
    sibling = copy.deepcopy(gated)  # shares the generated class with `gated`
    x = inputs_for(gated)
    with torch.no_grad():
        y_eval = gated.eval()(x)
    for _ in range(2):  # hardening twice is fine too
        hard = l0.harden(gated)
    for model in (gated, sibling):
        assert all(l0.is_gated(model[i]) for i in (0, 2, 4))
        model.train()
        y1, y2 = model(x), model(x)
        assert y1.shape == y_eval.shape and not torch.equal(y1, y2)
        model.eval()
        with torch.no_grad():
            assert torch.equal(model(x), y_eval)
    # and the copy can be hardened afterwards with the same result
    with torch.no_grad():
        assert torch.equal(l0.harden(sibling).eval()(x), hard.eval()(x))


@pytest.mark.parametrize("build", [mlp, cnn])
def test_harden_unit_gates_zero_whole_rows_and_channels(build):
    gated = l0.sparsify(build(), granularity="unit")
    closed = {}
    with torch.no_grad():
        for name, _, gate in l0.gated_layers(gated):
            n_out = gate.log_alpha.shape[0]
            idx = torch.arange(0, n_out, 2)[: max(1, n_out // 3)]
            gate.log_alpha.fill_(2.0)
            gate.log_alpha[idx] = -10.0
            closed[name] = idx
    hard = l0.harden(gated)
    for name, idx in closed.items():
        w = hard.get_submodule(name).weight
        keep = torch.ones(w.shape[0], dtype=torch.bool)
        keep[idx] = False
        assert int(torch.count_nonzero(w[idx])) == 0, name  # whole rows / output channels
        per_unit = w.reshape(w.shape[0], -1).abs().sum(dim=1)
        assert bool((per_unit[keep] > 0).all()), name
        # biases are not gated
        assert torch.equal(hard.get_submodule(name).bias, gated.get_submodule(name).bias)


def test_dense_state_dict_equals_hardened_state_dict():
    gated = l0.sparsify(cnn(), granularity="unit", include=["0", "2"])
    l0.sparsify(gated, granularity="weight")
    randomize_log_alpha(gated)
    gated.train()
    with l0.frozen_gates(gated):  # gate modes do not leak into it
        sd = l0.dense_state_dict(gated)
    expected = l0.harden(gated).state_dict()
    assert set(sd) == set(expected)
    for k in expected:
        assert torch.equal(sd[k], expected[k]), k
        assert not sd[k].requires_grad
    fresh = cnn(seed=5)
    fresh.load_state_dict(sd, strict=True)
    assert all(l0.is_gated(m) for m in (gated[0], gated[2], gated[5]))


# ----------------------------------------------------------------------------------------------
# stats and penalty


def hand_built_model() -> nn.Sequential:
    """Layer 0 per weight (12 gates), layer 1 per unit (2 gates over 3 weights each)."""
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2, bias=False))
    l0.sparsify(model, granularity="weight", include=["0"])
    l0.sparsify(model, granularity="unit", include=["1"])
    with torch.no_grad():
        model[0].parametrizations.weight.original.fill_(0.5)
        model[1].parametrizations.weight.original.fill_(-0.25)
        la0 = torch.full((4, 3), 10.0)
        la0.view(-1)[:5] = -10.0  # 5 closed gates, 7 fully open
        model[0].parametrizations.weight[0].log_alpha.copy_(la0)
        model[0].parametrizations.weight.original[3, 2] = 0.0  # an open gate on a zero weight
        model[1].parametrizations.weight[0].log_alpha.copy_(torch.tensor([[-10.0], [-1.0]]))  # z = 0.22
    return model


def test_stats_on_a_hand_built_example():
    model = hand_built_model()
    st = l0.stats(model)
    assert set(st) == {
        "l0/gated_weights",
        "l0/zero_weights",
        "l0/sparsity",
        "l0/expected_l0",
        "l0/open_share",
        "l0/layer/0/sparsity",
        "l0/layer/0/open_share",
        "l0/layer/1/sparsity",
        "l0/layer/1/open_share",
    }
    assert all(isinstance(v, float) for v in st.values())
    assert st["l0/gated_weights"] == 12 + 8
    # layer 0: 5 closed gates + 1 zero weight behind an open gate; layer 1: unit 0 closed = 4 weights
    assert st["l0/zero_weights"] == 5 + 1 + 4
    assert st["l0/sparsity"] == pytest.approx(10 / 20)
    assert st["l0/open_share"] == pytest.approx((7 + 1) / (12 + 2))
    assert st["l0/layer/0/sparsity"] == pytest.approx(6 / 12)
    assert st["l0/layer/0/open_share"] == pytest.approx(7 / 12)
    assert st["l0/layer/1/sparsity"] == pytest.approx(4 / 8)
    assert st["l0/layer/1/open_share"] == pytest.approx(1 / 2)
    shift = -BETA * math.log(-GAMMA / ZETA)

    def sig(v):
        return 1 / (1 + math.exp(-v))

    expected_l0 = 5 * sig(-10 + shift) + 7 * sig(10 + shift) + 4 * sig(-10 + shift) + 4 * sig(-1 + shift)
    assert st["l0/expected_l0"] == pytest.approx(expected_l0, rel=1e-5)
    assert set(l0.stats(model, prefix="gates/")) == {k.replace("l0/", "gates/") for k in st}


def test_penalty_normalisation():
    model = hand_built_model()
    st = l0.stats(model)
    mean = l0.penalty(model)
    total = l0.penalty(model, normalize="sum")
    assert mean.requires_grad and total.requires_grad and mean.dim() == 0
    assert mean.item() == pytest.approx(st["l0/expected_l0"] / st["l0/gated_weights"], rel=1e-5)
    assert total.item() == pytest.approx(st["l0/expected_l0"], rel=1e-5)
    assert 0.0 < mean.item() < 1.0


def test_penalty_and_temperature():
    model = l0.sparsify(mlp())
    p_default = l0.penalty(model).item()
    l0.set_temperature(model, 0.2)
    assert all(float(g.beta) == pytest.approx(0.2) for g in gates_of(model).values())
    la = torch.cat([p.detach().flatten() for p in l0.gate_parameters(model)])
    expected = float(ref_sigmoid(la - 0.2 * math.log(-GAMMA / ZETA)).mean())
    assert l0.penalty(model).item() == pytest.approx(expected, rel=1e-5)
    assert l0.penalty(model).item() != pytest.approx(p_default, rel=1e-3)
    with pytest.raises(ValueError, match="beta"):
        l0.set_temperature(model, 0.0)


def test_penalty_errors():
    with pytest.raises(ValueError, match="no gates"):
        l0.penalty(mlp())
    with pytest.raises(ValueError, match="normalize"):
        l0.penalty(l0.sparsify(mlp()), normalize="max")


# ----------------------------------------------------------------------------------------------
# gate modes


def eval_reference(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Forward pass of a dense copy whose weights are original * reference test-time gate."""
    dense = copy.deepcopy(model)
    with torch.no_grad():
        for name, module, gate in l0.gated_layers(model):
            w = module.parametrizations.weight.original * ref_test_gate(gate.log_alpha)
            target = dense.get_submodule(name)
            parametrize.remove_parametrizations(target, "weight", leave_parametrized=False)
            target.weight.copy_(w)
        return dense.eval()(x)


def test_train_mode_samples_eval_mode_is_deterministic():
    model = l0.sparsify(mlp())
    randomize_log_alpha(model, scale=1.0)
    x = inputs_for(model)
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    with torch.no_grad():
        y1, y2 = model(x), model(x)
        assert torch.equal(y1, y2)
        torch.testing.assert_close(y1, eval_reference(model, x), rtol=1e-6, atol=1e-6)


def test_frozen_gates():
    model = l0.sparsify(mlp(), granularity="weight")
    randomize_log_alpha(model, scale=1.0)
    x = inputs_for(model)
    with torch.no_grad():
        y_eval = model.eval()(x)
    model.train()
    with l0.frozen_gates(model) as m:
        assert m is model
        y1 = model(x)
        y2 = model(x)
        assert torch.equal(y1, y2)
        assert not torch.equal(y1, y_eval)  # a sample, not the test-time gate
        model.zero_grad()
        y1.pow(2).sum().backward()
        assert all(float(p.grad.abs().sum()) > 0 for p in l0.gate_parameters(model))
    assert all(g.frozen_noise is None for g in gates_of(model).values())
    assert not torch.equal(model(x), model(x))
    # a generator makes the frozen draw reproducible
    with torch.no_grad():
        with l0.frozen_gates(model, generator=torch.Generator().manual_seed(3)):
            a = model(x)
        with l0.frozen_gates(model, generator=torch.Generator().manual_seed(3)):
            b = model(x)
    assert torch.equal(a, b)


def test_deterministic_gates_in_train_mode():
    model = l0.sparsify(cnn(), granularity="unit")
    randomize_log_alpha(model, scale=1.0)
    x = inputs_for(model)
    with torch.no_grad():
        y_eval = model.eval()(x)
        model.train()
        with l0.deterministic_gates(model):
            assert model.training
            assert torch.equal(model(x), y_eval)
            assert torch.equal(model(x), y_eval)
        assert not torch.equal(model(x), model(x))
        # state is restored when the block raises
        with pytest.raises(RuntimeError), l0.deterministic_gates(model):
            raise RuntimeError("boom")
        assert not any(g.force_deterministic for g in gates_of(model).values())


def test_gate_contexts_nest():
    model = l0.sparsify(mlp())
    randomize_log_alpha(model, scale=1.0)
    x = inputs_for(model)
    with torch.no_grad():
        y_eval = model.eval()(x)
        model.train()
        with l0.deterministic_gates(model):
            with l0.deterministic_gates(model):
                assert torch.equal(model(x), y_eval)
            assert torch.equal(model(x), y_eval)  # outer block still deterministic
            with l0.frozen_gates(model):
                assert torch.equal(model(x), y_eval)  # deterministic wins over frozen noise
            assert torch.equal(model(x), y_eval)
        assert not torch.equal(model(x), model(x))
        with l0.frozen_gates(model):
            y_frozen = model(x)
            with l0.deterministic_gates(model):
                assert torch.equal(model(x), y_eval)
            assert torch.equal(model(x), y_frozen)  # frozen draw is back after the inner block


def test_frozen_gates_nested_restores_outer_noise():
    """An inner frozen_gates block must not end the outer block's frozen draw."""
    model = l0.sparsify(mlp())
    randomize_log_alpha(model, scale=1.0)
    x = inputs_for(model)
    model.train()
    with torch.no_grad(), l0.frozen_gates(model):
        y_outer = model(x)
        with l0.frozen_gates(model):
            y_inner = model(x)
            assert torch.equal(model(x), y_inner)
        assert torch.equal(model(x), y_outer)
    assert all(g.frozen_noise is None for g in gates_of(model).values())


def test_cached_gates_compute_each_gate_once(monkeypatch):
    model = l0.sparsify(mlp(), granularity="unit")
    randomize_log_alpha(model, scale=1.0)
    x = inputs_for(model)
    calls = []
    for name, gate in gates_of(model).items():
        original = gate.gate
        monkeypatch.setattr(
            gate, "gate", lambda original=original, name=name: calls.append(name) or original()
        )
    model.train()
    with torch.no_grad(), l0.frozen_gates(model):
        y_ref = model(x)
        assert len(calls) == 3
        calls.clear()
        with l0.cached_gates():
            ys = [model(x) for _ in range(4)]
        assert sorted(calls) == ["0", "2", "4"]  # once per layer, not once per forward
        assert all(torch.equal(y, y_ref) for y in ys)
        calls.clear()
        model(x)
        assert len(calls) == 3  # the cache ends with the block


# ----------------------------------------------------------------------------------------------
# parameters and optimisers


def test_gate_and_weight_parameters_partition_the_model():
    model = l0.sparsify(Agent(), include=["actor.*"], granularity="unit")
    gates, weights = l0.gate_parameters(model), l0.weight_parameters(model)
    all_ids = [id(p) for p in model.parameters()]
    assert len(gates) == 2 and len(gates) + len(weights) == len(all_ids)
    assert {id(p) for p in gates} | {id(p) for p in weights} == set(all_ids)
    assert not {id(p) for p in gates} & {id(p) for p in weights}
    assert all(p.shape[1:] == (1,) for p in gates)

    opt = torch.optim.Adam(
        [{"params": weights, "lr": 1e-2, "weight_decay": 1e-4}, {"params": gates, "lr": 0.1}]
    )
    before = [p.detach().clone() for p in model.parameters()]
    x = torch.randn(16, 4)
    for _ in range(3):
        pi, v = model(x)
        loss = pi.pow(2).mean() + v.pow(2).mean() + 0.5 * l0.penalty(model)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


def test_clamp_log_alpha():
    model = l0.sparsify(mlp())
    with torch.no_grad():
        for p in l0.gate_parameters(model):
            p.copy_(torch.linspace(-50, 50, p.numel()).view_as(p))
    l0.clamp_log_alpha_(model)
    la = torch.cat([p.detach().flatten() for p in l0.gate_parameters(model)])
    assert float(la.min()) == l0.LOG_ALPHA_MIN == -10.0
    assert float(la.max()) == l0.LOG_ALPHA_MAX == 10.0
    inside = torch.linspace(-50, 50, 16 * 6)
    inside = inside[(inside > -10) & (inside < 10)]
    assert bool(torch.isin(inside, la).all())  # in-range values untouched
    l0.clamp_log_alpha_(model, -3.0, 4.0)
    la = torch.cat([p.detach().flatten() for p in l0.gate_parameters(model)])
    assert float(la.min()) == -3.0 and float(la.max()) == 4.0


# ----------------------------------------------------------------------------------------------
# state handling


def test_sparsify_like_round_trip():
    gated = l0.sparsify(mlp(), granularity="unit", exclude=["4"], beta=0.5, gamma=-0.2, zeta=1.2)
    l0.sparsify(gated, granularity="weight")
    randomize_log_alpha(gated)
    x = inputs_for(gated)
    gated.eval()
    sd = gated.state_dict()

    fresh = l0.sparsify_like(mlp(seed=42), sd)
    fresh.eval()
    with torch.no_grad():
        assert torch.equal(fresh(x), gated(x))
    got, want = gates_of(fresh), gates_of(gated)
    assert set(got) == set(want) == {"0", "2", "4"}
    for name in want:
        assert got[name].granularity == want[name].granularity
        for buf in ("beta", "gamma", "zeta"):
            assert float(getattr(got[name], buf)) == float(getattr(want[name], buf))
    assert l0.penalty(fresh).item() == l0.penalty(gated).item()
    # a checkpoint of a model with a layer this one lacks is refused
    with pytest.raises(ValueError, match="does not have"):
        l0.sparsify_like(nn.Sequential(nn.Linear(6, 16)), sd)


def test_deepcopy_is_independent():
    gated = l0.sparsify(cnn())
    x = inputs_for(gated)
    twin = copy.deepcopy(gated)
    with torch.no_grad():
        y = gated.eval()(x)
        assert torch.equal(twin.eval()(x), y)
        for p in l0.gate_parameters(twin):
            p.fill_(-10.0)
        assert torch.equal(gated(x), y)
        assert l0.stats(twin)["l0/sparsity"] == 1.0
        assert l0.stats(gated)["l0/sparsity"] == 0.0
    assert all(a is not b for a, b in zip(l0.gate_parameters(gated), l0.gate_parameters(twin)))
    twin.train()
    twin(x).sum().backward()


def test_float64():
    gated = l0.sparsify(cnn(), granularity="unit").double()
    x = inputs_for(gated, dtype=torch.float64)
    for gate in gates_of(gated).values():
        assert gate.log_alpha.dtype == torch.float64
        assert gate.beta.dtype == gate.gamma.dtype == gate.zeta.dtype == torch.float64
    gated.train()
    assert gated(x).dtype == torch.float64
    with l0.frozen_gates(gated):
        assert gated(x).dtype == torch.float64
        assert all(g.frozen_noise.dtype == torch.float64 for g in gates_of(gated).values())
    assert l0.penalty(gated).dtype == torch.float64
    with torch.no_grad():
        y = gated.eval()(x)
    assert y.dtype == torch.float64
    hard = l0.harden(gated)
    assert hard[0].weight.dtype == torch.float64
    torch.testing.assert_close(hard(x), y)
    # gates created on a float64 layer are float64 from the start
    (gate,) = gates_of(l0.sparsify(nn.Sequential(nn.Linear(3, 2).double()))).values()
    assert gate.log_alpha.dtype == gate.beta.dtype == torch.float64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_round_trip():
    gated = l0.sparsify(cnn(), granularity="unit", include=["0"])
    l0.sparsify(gated, granularity="weight")
    randomize_log_alpha(gated)
    x = inputs_for(gated)
    with torch.no_grad():
        y_cpu = gated.eval()(x)
    gated.cuda()
    for gate in gates_of(gated).values():
        assert gate.log_alpha.is_cuda and gate.beta.is_cuda and gate.gamma.is_cuda
    with torch.no_grad():
        torch.testing.assert_close(gated(x.cuda()).cpu(), y_cpu, rtol=1e-4, atol=1e-5)
    gated.train()
    with l0.frozen_gates(gated):
        loss = gated(x.cuda()).pow(2).mean() + 0.1 * l0.penalty(gated)
        loss.backward()
    assert all(p.grad is not None and p.grad.is_cuda for p in l0.gate_parameters(gated))
    assert l0.stats(gated)["l0/gated_weights"] > 0
    hard = l0.harden(gated)
    assert hard[0].weight.is_cuda
    with torch.no_grad():
        torch.testing.assert_close(hard.eval()(x.cuda()).cpu(), y_cpu, rtol=1e-4, atol=1e-5)
    gated.cpu().eval()
    with torch.no_grad():
        assert torch.equal(gated(x), y_cpu)


# ----------------------------------------------------------------------------------------------
# bad arguments


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"beta": 0.0}, "beta"),
        ({"beta": -1.0}, "beta"),
        ({"gamma": 0.0}, "gamma"),
        ({"gamma": 0.1}, "gamma"),
        ({"zeta": 1.0}, "zeta"),
        ({"zeta": 0.5}, "zeta"),
        ({"drop_rate": 0.0}, "drop_rate"),
        ({"drop_rate": 1.0}, "drop_rate"),
        ({"drop_rate": -0.1}, "drop_rate"),
        ({"drop_rate": 1.5}, "drop_rate"),
        ({"granularity": "row"}, "unknown granularity"),
    ],
)
def test_bad_gate_arguments(kwargs, match):
    model = mlp()
    with pytest.raises(ValueError, match=match):
        l0.sparsify(model, **kwargs)
    assert no_parametrizations(model)  # validated before any layer is touched
    with pytest.raises(ValueError, match=match):
        l0.HardConcreteGate(torch.empty(3, 2), **kwargs)


def test_model_without_gateable_layers():
    with pytest.raises(ValueError, match="no gateable layer"):
        l0.sparsify(nn.Sequential(nn.ReLU()))
    with pytest.raises(ValueError, match="drop_rate"):
        log_alpha_init(1.0)


# ----------------------------------------------------------------------------------------------
# end to end


def test_end_to_end_sparse_regression_stays_close_to_dense():
    """y depends on 3 of 20 inputs. A 20-64-64-1 tanh MLP with per-weight gates, trained with
    Adam on MSE + 0.2 * penalty (mean-normalised, constant lambda, log_alpha lr 0.1) for 2000
    steps, must end >= 80 % sparse under test-time gates, with a test MSE of at most
    1.5 x the same net trained dense + 0.02 absolute (the target's variance is ~1.8)."""
    g = torch.Generator().manual_seed(0)

    def data(n):
        x = torch.randn(n, 20, generator=g)
        return x, torch.sin(2 * x[:, :1]) + x[:, 1:2] * x[:, 2:3] + 0.5 * x[:, 1:2]

    x_tr, y_tr = data(2048)
    x_te, y_te = data(2048)

    def net():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(20, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1))

    def train(model, groups, lam):
        opt = torch.optim.Adam(groups)
        gen = torch.Generator().manual_seed(1)
        for _ in range(2000):
            idx = torch.randint(0, 2048, (256,), generator=gen)
            loss = (model(x_tr[idx]) - y_tr[idx]).pow(2).mean()
            if lam:
                loss = loss + lam * l0.penalty(model)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if lam:
                l0.clamp_log_alpha_(model)
        with torch.no_grad():
            return float((model.eval()(x_te) - y_te).pow(2).mean())

    dense = net()
    mse_dense = train(dense, [{"params": dense.parameters(), "lr": 3e-3}], 0.0)
    gated = l0.sparsify(net(), granularity="weight")
    groups = [
        {"params": l0.weight_parameters(gated), "lr": 3e-3},
        {"params": l0.gate_parameters(gated), "lr": 0.1},
    ]
    mse_gated = train(gated, groups, 0.2)
    st = l0.stats(gated)
    assert mse_dense < 0.1 * float(y_te.var())  # the dense reference actually learned the task
    assert st["l0/sparsity"] >= 0.8, st
    assert mse_gated <= 1.5 * mse_dense + 0.02, (mse_gated, mse_dense)
    # the first layer drops the 17 irrelevant inputs far more than the 3 relevant ones
    w0 = l0.harden(gated)[0].weight
    zero_irrelevant = float((w0[:, 3:] == 0).float().mean())
    zero_relevant = float((w0[:, :3] == 0).float().mean())
    assert zero_irrelevant >= 0.85 and zero_irrelevant > zero_relevant + 0.25, (
        zero_irrelevant,
        zero_relevant,
    )


def test_cost_weighted_penalty_equals_its_closed_form():
    """Per-parameter and per-MAC weighting against sums written out by hand."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    l0.sparsify(net, "unit", 0.3, output_granularity="weight")
    conv_gate, lin_gate = (g for _, _, g in l0.gated_layers(net))
    p_conv = prob_nonzero(conv_gate.log_alpha, conv_gate.beta, conv_gate.gamma, conv_gate.zeta)
    p_lin = prob_nonzero(lin_gate.log_alpha, lin_gate.beta, lin_gate.gamma, lin_gate.zeta)
    conv_open = p_conv.sum() * 9  # a unit gate covers its fan-in: 1 channel x 3 x 3
    lin_open = p_lin.sum()
    by_params = (conv_open + lin_open) / (18 + 96)
    torch.testing.assert_close(l0.penalty(net), by_params)
    l0.set_costs(net, "macs", torch.zeros(1, 1, 6, 6))
    assert (conv_gate.cost_per_weight, lin_gate.cost_per_weight) == (16.0, 1.0)  # 4 x 4 output positions
    by_macs = (conv_open * 16 + lin_open) / (18 * 16 + 96)
    torch.testing.assert_close(l0.penalty(net), by_macs)
    torch.testing.assert_close(l0.penalty(net, "sum"), conv_open * 16 + lin_open)
    l0.set_costs(net, "params")
    torch.testing.assert_close(l0.penalty(net), by_params)
    with pytest.raises(ValueError, match="example_input"):
        l0.set_costs(net, "macs")
    # a conv scale multiplies the conv weights' price on top of either kind
    l0.set_costs(net, "params", conv_scale=0.25)
    torch.testing.assert_close(l0.penalty(net), (conv_open * 0.25 + lin_open) / (18 * 0.25 + 96))
    l0.set_costs(net, "macs", torch.zeros(1, 1, 6, 6), conv_scale=0.5)
    assert (conv_gate.cost_per_weight, lin_gate.cost_per_weight) == (8.0, 1.0)
    torch.testing.assert_close(l0.penalty(net), (conv_open * 8 + lin_open) / (18 * 8 + 96))
    l0.set_costs(net, "params", conv_scale=0.0)  # conv gates free: the penalty is the Linear share alone
    torch.testing.assert_close(l0.penalty(net), lin_open / 96)
    with pytest.raises(ValueError, match="conv_scale"):
        l0.set_costs(net, "params", conv_scale=-1.0)
    conv_only = l0.sparsify(nn.Sequential(nn.Conv2d(1, 2, 3)), "unit", 0.3)
    with pytest.raises(ValueError, match="conv_scale 0"):
        l0.set_costs(conv_only, "params", conv_scale=0.0)
    # ERK: a weight costs prod(shape) / sum(shape) of its layer's weight, conv kernel dims included
    l0.set_costs(net, "erk")
    conv_cost, lin_cost = 18 / (2 + 1 + 3 + 3), 96 / (3 + 32)
    assert (conv_gate.cost_per_weight, lin_gate.cost_per_weight) == pytest.approx((conv_cost, lin_cost))
    by_erk = (conv_open * conv_cost + lin_open * lin_cost) / (18 * conv_cost + 96 * lin_cost)
    torch.testing.assert_close(l0.penalty(net), by_erk)
    l0.set_costs(net, "erk", conv_scale=0.5)
    torch.testing.assert_close(
        l0.penalty(net), (conv_open * conv_cost / 2 + lin_open * lin_cost) / (9 * conv_cost + 96 * lin_cost)
    )
    with pytest.raises(ValueError, match="unknown cost kind 'flops'; use one of params, macs, erk"):
        l0.set_costs(net, "flops")


def test_erk_costs_are_the_inverse_of_the_densities_gmp_gives_each_layer():
    # one ERK formula: at a budget where no layer is capped at 1, GMP's density of a layer times
    # the L0 price of its weights is the same constant for every layer
    shapes = [(120, 4), (84, 120), (2, 84)]
    net = l0.sparsify(
        nn.Sequential(nn.Linear(4, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 2))
    )
    l0.set_costs(net, "erk")
    prices = [g.cost_per_weight for _, _, g in l0.gated_layers(net)]
    assert prices == pytest.approx([480 / 124, 10080 / 204, 168 / 86])
    densities = gmp.erk_densities(shapes, 0.05)
    assert max(densities) < 1.0
    products = [d * c for d, c in zip(densities, prices)]
    assert products == pytest.approx([products[0]] * 3)


def test_close_random_closes_each_layer_by_its_erk_share_and_deterministic_training_keeps_them():
    def net() -> nn.Module:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 2))
        return l0.sparsify(model, drop_rate=0.3)

    model = net()
    l0.close_random(model, 0.9, torch.Generator().manual_seed(1))
    sizes = [480, 10080, 168]
    kept = [round(d * n) for d, n in zip(l0.erk_densities([(120, 4), (84, 120), (2, 84)], 0.1), sizes)]
    floors = [gate.log_alpha == l0.LOG_ALPHA_MIN for _, _, gate in l0.gated_layers(model)]
    assert [int(f.sum()) for f in floors] == [n - k for n, k in zip(sizes, kept)]
    assert kept[2] == 168 and kept[1] < 600, "ERK: the narrow output layer stays dense, the wide one pays"
    assert l0.stats(model)["l0/sparsity"] == pytest.approx(1 - sum(kept) / sum(sizes))
    # the map is the generator's: the same seed draws it again, another seed draws another
    again, other = net(), net()
    l0.close_random(again, 0.9, torch.Generator().manual_seed(1))
    l0.close_random(other, 0.9, torch.Generator().manual_seed(2))
    assert all(
        torch.equal(a.log_alpha, b.log_alpha)
        for (_, _, a), (_, _, b) in zip(l0.gated_layers(model), l0.gated_layers(again))
    )
    assert not torch.equal(l0.gate_parameters(model)[1], l0.gate_parameters(other)[1])
    # training with deterministic gates moves the open gates and leaves every closed one at the floor
    opt = torch.optim.Adam(l0.param_groups(model, 1e-2, 0.1))
    x, y = torch.randn(64, 4), torch.randn(64, 2)
    before = [g.clone() for g in l0.gate_parameters(model)]
    with l0.deterministic_gates(model):
        for _ in range(20):
            opt.zero_grad()
            (nn.functional.mse_loss(model(x), y) + 0.5 * l0.penalty(model)).backward()
            opt.step()
            l0.clamp_log_alpha_(model)
    after = l0.gate_parameters(model)
    for f, b, a in zip(floors, before, after):
        assert torch.equal(a[f], b[f])
        assert not torch.equal(a[~f], b[~f])
    assert all(int((l0.harden(model)[i].weight[f] != 0).sum()) == 0 for i, f in zip((0, 2, 4), floors))
    with pytest.raises(ValueError, match=r"random-start sparsity must be in \[0, 1\), got 1.0"):
        l0.close_random(model, 1.0)
