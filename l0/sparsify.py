"""Attach hard-concrete gates to a model's layers with torch parametrizations, and read them back.

The model's own code does not change: each gated layer's `weight` becomes `original * z` through a
`HardConcreteGate` parametrization. Gates follow the module's mode:
- `.train()`: a fresh gate sample on every forward (unless frozen, see `frozen_gates`);
- `.eval()`: the deterministic test-time gate;
and `deterministic_gates(model)` forces the test-time gate whatever the mode.
The gate's log_alpha and its constants live in `state_dict()`, move with `.to()`, and
`harden()` is exactly torch's "remove parametrization, keep the parametrized value".
"""

import contextlib
import copy
import fnmatch
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize

from l0rl.l0.gates import (
    BETA,
    GAMMA,
    LOG_ALPHA_MAX,
    LOG_ALPHA_MIN,
    ZETA,
    check_gate_hparams,
    deterministic_gate,
    log_alpha_init,
    prob_nonzero,
    sample_gate,
)

GRANULARITIES = ("weight", "unit", "mixed")
"""'weight': one gate per weight (unstructured). 'unit': one gate per output unit / conv channel
(structured), so whole neurons and filters close and can be removed by compress. 'mixed': conv
channels per unit (where a CNN's multiply-accumulates are, so closing them cuts latency) and Linear
layers per weight (where its parameters are: a wide fully-connected layer thins out far more
readily weight by weight than whole unit by unit)."""
_GATE_GRANULARITIES = ("weight", "unit")  # what one layer's gate can be; 'mixed' picks per layer
GATEABLE = (nn.Linear, nn.Conv2d)
_LOG_ALPHA_KEY = "parametrizations.weight.0.log_alpha"

LayerFilter = Sequence[str] | Callable[[str, nn.Module], bool] | None


class HardConcreteGate(nn.Module):
    """Parametrization `weight -> weight * z` with z a hard-concrete gate per weight or per unit."""

    def __init__(
        self,
        weight: torch.Tensor,
        granularity: str = "weight",
        drop_rate: float = 0.5,
        beta: float = BETA,
        gamma: float = GAMMA,
        zeta: float = ZETA,
    ):
        super().__init__()
        if granularity not in _GATE_GRANULARITIES:
            raise ValueError(
                f"unknown granularity {granularity!r}; use one of {', '.join(_GATE_GRANULARITIES)}"
            )
        check_gate_hparams(beta, gamma, zeta)
        shape = weight.shape if granularity == "weight" else (weight.shape[0],) + (1,) * (weight.dim() - 1)
        init = torch.empty(shape, dtype=weight.dtype, device=weight.device).normal_(
            log_alpha_init(drop_rate), 0.01
        )
        self.log_alpha = nn.Parameter(init)
        # Constants are buffers so a state_dict alone is enough to rebuild the gate (see sparsify_like).
        self.register_buffer("beta", torch.tensor(float(beta), dtype=weight.dtype, device=weight.device))
        self.register_buffer("gamma", torch.tensor(float(gamma), dtype=weight.dtype, device=weight.device))
        self.register_buffer("zeta", torch.tensor(float(zeta), dtype=weight.dtype, device=weight.device))
        self.granularity = granularity
        self.force_deterministic = False
        self.frozen_noise: torch.Tensor | None = None
        self.cost_per_weight = 1.0  # what one open weight costs the penalty (see set_costs)

    def gate(self) -> torch.Tensor:
        """The gate values this forward pass uses (mode rules in the module docstring)."""
        if self.force_deterministic or not self.training:
            return deterministic_gate(self.log_alpha, self.gamma, self.zeta)
        u = self.frozen_noise if self.frozen_noise is not None else torch.rand_like(self.log_alpha)
        return sample_gate(self.log_alpha, u, self.beta, self.gamma, self.zeta)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.gate()

    def expected_l0(self, weight_numel: int) -> torch.Tensor:
        """Expected number of non-zero weights this gate leaves (a unit gate covers its fan-in)."""
        group = weight_numel // self.log_alpha.numel()
        return prob_nonzero(self.log_alpha, self.beta, self.gamma, self.zeta).sum() * group


def _selected(name: str, module: nn.Module, include: LayerFilter, exclude: LayerFilter) -> bool:
    def matches(flt: LayerFilter) -> bool:
        if callable(flt):
            return bool(flt(name, module))
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in flt)

    if not isinstance(module, GATEABLE):
        return False
    if include is not None and not matches(include):
        return False
    return not (exclude is not None and matches(exclude))


def sparsify(
    model: nn.Module,
    granularity: str = "weight",
    drop_rate: float = 0.5,
    include: LayerFilter = None,
    exclude: LayerFilter = None,
    beta: float = BETA,
    gamma: float = GAMMA,
    zeta: float = ZETA,
    output_granularity: str | None = None,
) -> nn.Module:
    """Gate the weights of the model's nn.Linear / nn.Conv2d layers in place; returns the model.

    include / exclude: glob patterns on module names (as in `named_modules()`, e.g. ["actor.*"]) or
    a predicate `(name, module) -> bool`. Layers already gated are left as they are, so a model can
    be sparsified in several calls (e.g. hidden layers per unit, the output layer per weight).
    output_granularity: granularity of the last selected layer (in module order) when it should
    differ, e.g. "weight" for a policy's output layer, where a unit gate would delete an action.
    Biases are not gated. Gate tensors take the weight's device and dtype.
    """
    if granularity not in GRANULARITIES:
        raise ValueError(f"unknown granularity {granularity!r}; use one of {', '.join(GRANULARITIES)}")
    check_gate_hparams(beta, gamma, zeta)
    log_alpha_init(drop_rate)  # validates drop_rate before any layer is touched
    targets = [
        (name, m)
        for name, m in model.named_modules()
        if _selected(name, m, include, exclude) and not is_gated(m)
    ]
    if not targets and not any(is_gated(m) for _, m in model.named_modules()):
        kinds = ", ".join(t.__name__ for t in GATEABLE)
        raise ValueError(
            f"no gateable layer ({kinds}) matched in {type(model).__name__}; check include/exclude"
        )
    if output_granularity is not None and output_granularity not in GRANULARITIES:
        raise ValueError(f"unknown granularity {output_granularity!r}; use one of {', '.join(GRANULARITIES)}")
    for i, (_, module) in enumerate(targets):
        last = i == len(targets) - 1 and output_granularity is not None
        chosen = output_granularity if last else granularity
        if chosen == "mixed":
            chosen = "unit" if isinstance(module, nn.Conv2d) else "weight"
        gate = HardConcreteGate(module.weight, chosen, drop_rate, beta, gamma, zeta)
        parametrize.register_parametrization(module, "weight", gate)
    return model


def sparsify_like(model: nn.Module, state_dict: dict) -> nn.Module:
    """Attach gates to `model` wherever `state_dict` (of a gated model) has them, then load it.

    Granularity and gate constants are read from the state_dict itself, so a checkpoint needs no
    separate gate config to be rebuilt."""
    for key, log_alpha in state_dict.items():
        if not key.endswith(_LOG_ALPHA_KEY):
            continue
        name = key[: -len(_LOG_ALPHA_KEY)].rstrip(".")
        # get_submodule, not named_modules(): the latter hides modules registered under two names
        try:
            module = model.get_submodule(name)
        except AttributeError:
            module = None
        if module is None or not isinstance(module, GATEABLE):
            raise ValueError(
                f"state_dict gates layer {name!r}, which this model does not have as Linear/Conv2d"
            )
        if is_gated(module):
            continue
        granularity = "weight" if log_alpha.shape == module.weight.shape else "unit"
        parametrize.register_parametrization(module, "weight", HardConcreteGate(module.weight, granularity))
    model.load_state_dict(state_dict)
    return model


def weight_parametrization(module: nn.Module, kind: type[nn.Module]) -> nn.Module | None:
    """The first parametrization of type `kind` on the module's weight (a gate, a mask), or None."""
    if not parametrize.is_parametrized(module, "weight"):
        return None
    return next((p for p in module.parametrizations["weight"] if isinstance(p, kind)), None)


def layers_with(model: nn.Module, kind: type[nn.Module]) -> Iterator[tuple[str, nn.Module, nn.Module]]:
    """(name, layer, parametrization) for every layer whose weight carries a `kind`, in module order."""
    for name, module in model.named_modules():
        found = weight_parametrization(module, kind)
        if found is not None:
            yield name, module, found


def is_gated(module: nn.Module) -> bool:
    """True when the module's weight carries a HardConcreteGate."""
    return weight_parametrization(module, HardConcreteGate) is not None


def gated_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module, HardConcreteGate]]:
    """(name, layer, gate) for every gated layer, in module order."""
    return layers_with(model, HardConcreteGate)


def gate_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The log_alpha parameters: give them their own optimizer group (own lr, no weight decay)."""
    return [gate.log_alpha for _, _, gate in gated_layers(model)]


def weight_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Every parameter that is not a gate's log_alpha."""
    gate_ids = {id(p) for p in gate_parameters(model)}
    return [p for p in model.parameters() if id(p) not in gate_ids]


def param_groups(model: nn.Module, lr: float, gate_lr: float) -> list[dict]:
    """Optimizer parameter groups: the weights at `lr`, the gates' log_alpha at `gate_lr` in a group
    of their own with no weight decay (decay would pull every gate towards half open). Group 0 is the
    weights and group 1 the gates, so a schedule can set each rate: `param_groups[1]["lr"] = ...`."""
    return [
        {"params": weight_parameters(model), "lr": lr},
        {"params": gate_parameters(model), "lr": gate_lr, "weight_decay": 0.0},
    ]


@torch.no_grad()
def clamp_log_alpha_(model: nn.Module, low: float = LOG_ALPHA_MIN, high: float = LOG_ALPHA_MAX) -> None:
    """Clamp every log_alpha into [low, high] in place; call after each optimizer step."""
    for p in gate_parameters(model):
        p.clamp_(low, high)


def set_temperature(model: nn.Module, beta: float) -> None:
    """Set every gate's temperature (used by the scheduler's optional temperature anneal)."""
    check_gate_hparams(beta, GAMMA, ZETA)
    for _, _, gate in gated_layers(model):
        gate.beta.fill_(beta)


COST_KINDS = ("params", "macs", "erk")


def erk_score(shape: Sequence[int]) -> float:
    """Erdos-Renyi-Kernel score of a weight of this shape, sum(shape) / prod(shape): the density
    ERK gives a layer is proportional to it, so a wide layer ends sparser than a narrow one."""
    return sum(shape) / torch.Size(shape).numel()


def erk_densities(shapes: list[tuple[int, ...]], density: float) -> list[float]:
    """Per-layer densities whose weighted mean is `density`, each proportional to the ERK score
    sum(shape) / prod(shape); layers that would exceed 1 stay dense and the rest are rescaled."""
    sizes = [float(torch.Size(s).numel()) for s in shapes]
    scores = [erk_score(s) for s in shapes]
    dense: set[int] = set()
    while True:
        budget = density * sum(sizes) - sum(sizes[i] for i in dense)
        free = [i for i in range(len(shapes)) if i not in dense]
        scale = budget / sum(scores[i] * sizes[i] for i in free) if free else 0.0
        over = [i for i in free if scale * scores[i] > 1.0]
        if not over:
            return [1.0 if i in dense else scale * scores[i] for i in range(len(shapes))]
        dense.update(over)


@torch.no_grad()
def close_random(model: nn.Module, sparsity: float, generator: torch.Generator | None = None) -> None:
    """Close a random share `sparsity` of the gates before training: each layer keeps a random
    round(density x gates) of its gates as they are, with ERK densities (erk_densities), and the
    rest get log_alpha = LOG_ALPHA_MIN. The penalty and the RL loss then choose among the open ones.
    A closed gate stays closed under deterministic gates (its gate is clamped at 0, so the loss has
    no gradient for it, and clamp_log_alpha_ holds it at the floor); sampled gates can reopen one
    only through noise rarer than 1 in 4 000 per forward. Why: a wide random map keeps more units
    alive at the same sparsity than the penalty alone, which concentrates on the units in use."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"random-start sparsity must be in [0, 1), got {sparsity}; 0 closes nothing")
    layers = [(m, gate) for _, m, gate in gated_layers(model)]
    shapes = [tuple(m.parametrizations["weight"].original.shape) for m, _ in layers]
    for (_, gate), density in zip(layers, erk_densities(shapes, 1.0 - sparsity)):
        flat = gate.log_alpha.view(-1)
        order = torch.randperm(flat.numel(), generator=generator).to(flat.device)
        flat[order[round(density * flat.numel()) :]] = LOG_ALPHA_MIN


@torch.no_grad()
def set_costs(
    model: nn.Module,
    kind: str = "params",
    example_input: torch.Tensor | None = None,
    conv_scale: float = 1.0,
) -> None:
    """Weight each gate in `penalty` by what keeping its weights costs.

    "params" (default): every weight costs 1, the penalty is the expected share of open weights.
    "macs": a weight costs the multiply-accumulates it takes per observation in the architecture as
    built (1 for a Linear weight on a vector, H_out x W_out for a Conv2d weight), measured on
    `example_input` (a batch of one); the penalty is then the expected share of the gated layers'
    MACs, which pushes the optimiser to close conv channels, where CPU latency is. The cost is
    static: it does not shrink when a neighbouring unit closes.
    "erk": a weight costs 1 / erk_score(its layer's weight shape), fan_in x fan_out / (fan_in +
    fan_out) for a Linear layer, so the penalty's balance matches the per-layer densities of
    Erdos-Renyi-Kernel pruning: a narrow input or output layer is cheap to keep and stays denser,
    while the wide hidden layers carry the sparsity.
    conv_scale multiplies the cost of every Conv2d weight on top of `kind` (below 1: the penalty
    closes Linear weights first and leaves the features the convolutions extract; 0 prices conv
    gates at nothing, so only the RL loss moves them)."""
    if kind not in COST_KINDS:
        raise ValueError(f"unknown cost kind {kind!r}; use one of {', '.join(COST_KINDS)}")
    if not conv_scale >= 0:
        raise ValueError(f"conv_scale must be >= 0, got {conv_scale}")
    layers = {id(m): (m, gate) for _, m, gate in gated_layers(model)}
    costs: dict[int, float] = {}
    if kind == "macs":
        costs = _mac_costs(model, example_input)
    elif kind == "erk":
        costs = {
            key: 1.0 / erk_score(m.parametrizations["weight"].original.shape)
            for key, (m, _) in layers.items()
        }
    for key, (module, gate) in layers.items():
        scale = conv_scale if isinstance(module, nn.Conv2d) else 1.0
        gate.cost_per_weight = costs.get(key, 1.0) * scale
    if layers and not any(gate.cost_per_weight > 0 for _, gate in layers.values()):
        raise ValueError("conv_scale 0 prices every gate of this model at nothing; use a conv_scale > 0")


def _mac_costs(model: nn.Module, example_input: torch.Tensor | None) -> dict[int, float]:
    """id(layer) -> multiply-accumulates per weight of each gated layer, for one observation."""
    if example_input is None:
        raise ValueError("set_costs(kind='macs') needs example_input, a batch of one observation")
    costs: dict[int, float] = {}

    def hook(module: nn.Module, _inputs, output: torch.Tensor) -> None:
        positions = output[0].numel() // output.shape[1] if output.dim() > 2 else 1
        costs[id(module)] = float(positions)

    handles = [m.register_forward_hook(hook) for _, m, _ in gated_layers(model)]
    try:
        with deterministic_gates(model):
            model(example_input)
    finally:
        for h in handles:
            h.remove()
    return costs


def penalty(model: nn.Module, normalize: str = "mean") -> torch.Tensor:
    """Expected L0 of the model's gated weights, to add to the loss as `lam * penalty(model)`.

    normalize="mean" (default) divides by the number of gated weights: the penalty is then the
    expected share of gated weights that are non-zero, in [0, 1], so lambda means the same thing
    for a 4k-weight MLP and a 1.7M-weight CNN. normalize="sum" gives the paper's raw sum.
    Each weight counts with its gate's cost (1 unless `set_costs` chose another kind): with MAC
    costs the penalty is the expected share of MACs left open.
    """
    if normalize not in ("mean", "sum"):
        raise ValueError(f"unknown normalize {normalize!r}; use 'mean' or 'sum'")
    layers = list(gated_layers(model))
    if not layers:
        raise ValueError(f"{type(model).__name__} has no gates; call l0.sparsify(model) first")
    numel = [m.parametrizations["weight"].original.numel() for _, m, _ in layers]
    total = sum(gate.expected_l0(n) * gate.cost_per_weight for (_, _, gate), n in zip(layers, numel))
    if normalize == "sum":
        return total
    return total / sum(n * gate.cost_per_weight for (_, _, gate), n in zip(layers, numel))


@torch.no_grad()
def stats(model: nn.Module, prefix: str = "l0/") -> dict[str, float]:
    """Per-layer and total gate statistics under deterministic gates, named ready to log.

    Totals: `{prefix}gated_weights`, `zero_weights` (exact zeros of weight * z), `sparsity`
    (zero_weights / gated_weights), `expected_l0` (closed form, in weights), `open_share` (share
    of gates with z > 0). Per layer: `{prefix}layer/<name>/sparsity` and `.../open_share`."""
    out: dict[str, float] = {}
    n_w = n_zero = n_gates = n_open = 0
    exp_l0 = 0.0
    for name, module, gate in gated_layers(model):
        original = module.parametrizations["weight"].original
        z = deterministic_gate(gate.log_alpha, gate.gamma, gate.zeta)
        zeros = int(((original * z) == 0).sum())
        n_w += original.numel()
        n_zero += zeros
        n_gates += z.numel()
        n_open += int((z > 0).sum())
        exp_l0 += float(gate.expected_l0(original.numel()))
        out[f"{prefix}layer/{name}/sparsity"] = zeros / original.numel()
        out[f"{prefix}layer/{name}/open_share"] = float((z > 0).float().mean())
    out[f"{prefix}gated_weights"] = float(n_w)
    out[f"{prefix}zero_weights"] = float(n_zero)
    out[f"{prefix}sparsity"] = n_zero / n_w if n_w else 0.0
    out[f"{prefix}expected_l0"] = exp_l0
    out[f"{prefix}open_share"] = n_open / n_gates if n_gates else 0.0
    return out


@torch.no_grad()
def dense_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state_dict `harden(model)` would have (deterministic gated weights under plain `weight`
    keys, no gate entries), computed without copying the model.

    Use it to update a gate-free target network, e.g. Polyak averaging in DQN/SAC: the target
    tracks the effective weights and log_alpha is never averaged as if it were a weight. Other
    weight parametrizations (e.g. gmp masks) are folded in the same way."""
    out = {}
    gated = {name: module for name, module in _parametrized_layers(model)}
    for key, value in model.state_dict().items():
        if ".parametrizations.weight." not in f".{key}":
            out[key] = value
    with deterministic_gates(model):
        for name, module in gated.items():
            out[f"{name}.weight" if name else "weight"] = module.weight.detach()
    return out


def _parametrized_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """Every layer whose weight is parametrized: L0 gates, and any other mask (such as
    l0rl.gmp's magnitude masks) that hardening folds in the same way."""
    for name, module in model.named_modules():
        if parametrize.is_parametrized(module, "weight"):
            yield name, module


def harden(model: nn.Module) -> nn.Module:
    """A gate-free copy whose weights are the deterministic gated weights (exact zeros included).
    Other weight parametrizations (e.g. gmp masks) are folded in too.

    Its outputs equal the gated model's eval-mode outputs, and its state_dict loads into the
    original dense architecture. The input model is not modified."""
    hard = copy.deepcopy(model)
    was_training = hard.training
    hard.eval()
    for _, module in list(_parametrized_layers(hard)):
        # deepcopy shares torch's generated Parametrized* class with the original, and removing a
        # parametrization deletes the property from that class: give the copy a class of its own.
        cls = type(module)
        module.__class__ = type(cls.__name__, cls.__bases__, dict(cls.__dict__))
        parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    return hard.train(was_training)


@contextlib.contextmanager
def deterministic_gates(model: nn.Module) -> Iterator[nn.Module]:
    """Use test-time gates inside the block even in train mode (acting, target networks, eval)."""
    with _gates_set(model, "force_deterministic", lambda g: True):
        yield model


@contextlib.contextmanager
def frozen_gates(model: nn.Module, generator: torch.Generator | None = None) -> Iterator[nn.Module]:
    """Draw one gate sample at entry and reuse its noise for every forward inside the block.

    The noise, not z, is frozen: z is recomputed from log_alpha each forward, so gradients still
    reach log_alpha while a PPO rollout and its update see the same sampled sparsity pattern."""

    def draw(g: HardConcreteGate) -> torch.Tensor:
        a = g.log_alpha
        return torch.rand(a.shape, generator=generator, dtype=a.dtype, device=a.device)

    with _gates_set(model, "frozen_noise", draw):
        yield model


@contextlib.contextmanager
def _gates_set(
    model: nn.Module, attribute: str, value: Callable[[HardConcreteGate], object]
) -> Iterator[None]:
    """Set `attribute` of every gate in the model to value(gate) inside the block, then restore it."""
    gates = [gate for _, _, gate in gated_layers(model)]
    previous = [getattr(g, attribute) for g in gates]
    for g in gates:
        setattr(g, attribute, value(g))
    try:
        yield
    finally:
        for g, p in zip(gates, previous):
            setattr(g, attribute, p)


@contextlib.contextmanager
def cached_gates() -> Iterator[None]:
    """Compute each gated weight once inside the block (torch's parametrization cache).

    Only for stretches where neither weights nor gate noise change, such as a rollout under
    `frozen_gates` or `deterministic_gates`: it removes the per-forward gate cost while acting."""
    with parametrize.cached():
        yield
