"""The deployable policy as data: the canonical chain form, its description as plain dicts, and the
record a checkpoint stores so that compress and `l0rl.load_policy` rebuild the policy without
importing any algorithm file (a user's modified copy of an algorithm still compresses).

THE POLICY CONTRACT (every algorithm's deployable policy follows it): an nn.Sequential mapping a
float32 observation batch to action scores or to the action, made only of nn.Linear, nn.Conv2d (gated
or not), nn.Flatten and parameter-free elementwise modules. `as_chain` turns such a policy into the
canonical form compress stores: nested Sequentials are flattened, ReLU/Tanh/Sigmoid/Identity are
kept, and any other parameter-free module (`FrameScale`, which every image policy starts with) is
replaced by an equivalent `Affine` after checking on random inputs that it is elementwise affine.
"""

import gymnasium as gym
import numpy as np
import torch
from torch import nn

WEIGHT_LAYERS = (nn.Linear, nn.Conv2d)
ACTIVATIONS = (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.Identity)


class FrameScale(nn.Module):
    """uint8 frames -> floats in [0, 1], inside the policy so that the deployed policy takes raw frames.
    Parameter-free: it adds nothing to a state_dict, and as_chain stores it as a uniform Affine."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (1.0 / 255.0)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # SAC's image checkpoints of format 2 held this constant as an Affine's two buffers
        for key in ("scale", "shift"):
            state_dict.pop(prefix + key, None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


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
            "l0rl follows the policy contract in l0rl/policy.py"
        )
    if bool((scale == scale.flatten()[0]).all()) and bool((shift == shift.flatten()[0]).all()):
        scale, shift = scale.flatten()[0].clone(), shift.flatten()[0].clone()
    return Affine(scale.contiguous(), shift.contiguous())


@torch.no_grad()
def as_chain(policy: nn.Module, obs_shape: tuple[int, ...]) -> nn.Sequential:
    """The policy in canonical chain form (weight layers are shared with `policy`, not copied).

    The policy is traced in eval mode (deterministic gates), so describing a training policy never
    draws from the RNG that training uses, and on the device its parameters live on."""
    if not isinstance(policy, nn.Sequential):
        raise ValueError(
            f"the policy is a {type(policy).__name__}, not an nn.Sequential; "
            "the deployable policy must follow the policy contract in l0rl/policy.py"
        )
    first = next(policy.parameters(), None)
    was_training = policy.training
    policy.eval()
    try:
        return _trace_chain(
            policy, torch.zeros((1, *obs_shape), device=first.device if first is not None else "cpu")
        )
    finally:
        policy.train(was_training)


def _trace_chain(policy: nn.Sequential, x: torch.Tensor) -> nn.Sequential:
    out: list[nn.Module] = []
    for i, m in enumerate(_flat_modules(policy)):
        if isinstance(m, (*WEIGHT_LAYERS, nn.Flatten, Affine)):
            new = m
        elif isinstance(m, ACTIVATIONS):
            new = type(m)()
        elif next(m.parameters(), None) is None:
            new = _as_affine(m, tuple(x.shape[1:]), i).to(x.device)
        else:
            raise ValueError(
                f"policy module {i} ({type(m).__name__}) has parameters but is not Linear/Conv2d; "
                "l0rl follows the policy contract in l0rl/policy.py"
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


def _describe(m: nn.Module) -> dict:
    if isinstance(m, nn.Linear):
        return {
            "type": "Linear",
            "in_features": m.in_features,
            "out_features": m.out_features,
            "bias": m.bias is not None,
        }
    if isinstance(m, nn.Conv2d):
        return {
            "type": "Conv2d",
            "in_channels": m.in_channels,
            "out_channels": m.out_channels,
            "kernel_size": list(m.kernel_size),
            "stride": list(m.stride),
            "padding": m.padding if isinstance(m.padding, str) else list(m.padding),
            "dilation": list(m.dilation),
            "groups": m.groups,
            "bias": m.bias is not None,
            "padding_mode": m.padding_mode,
        }
    if isinstance(m, nn.Flatten):
        return {"type": "Flatten", "start_dim": m.start_dim, "end_dim": m.end_dim}
    if isinstance(m, Affine):
        return {"type": "Affine", "scale_shape": list(m.scale.shape), "shift_shape": list(m.shift.shape)}
    if isinstance(m, ACTIVATIONS):
        return {"type": type(m).__name__}
    raise ValueError(f"cannot describe {type(m).__name__}; pass the policy through compress.as_chain first")


def describe(chain: nn.Sequential) -> list[dict]:
    """The architecture of a canonical chain as a list of plain dicts."""
    return [_describe(m) for m in chain]


def _build(spec: dict, device: str) -> nn.Module:
    kind = spec["type"]
    if kind == "Linear":
        return torch.nn.utils.skip_init(
            nn.Linear, spec["in_features"], spec["out_features"], bias=spec["bias"], device=device
        )
    if kind == "Conv2d":
        padding = spec["padding"] if isinstance(spec["padding"], str) else tuple(spec["padding"])
        return torch.nn.utils.skip_init(
            nn.Conv2d,
            spec["in_channels"],
            spec["out_channels"],
            tuple(spec["kernel_size"]),
            stride=tuple(spec["stride"]),
            padding=padding,
            dilation=tuple(spec["dilation"]),
            groups=spec["groups"],
            bias=spec["bias"],
            padding_mode=spec["padding_mode"],
            device=device,
        )
    if kind == "Flatten":
        return nn.Flatten(spec["start_dim"], spec["end_dim"])
    if kind == "Affine":
        return Affine(
            torch.zeros(spec["scale_shape"], device=device), torch.zeros(spec["shift_shape"], device=device)
        )
    activations = {cls.__name__: cls for cls in ACTIVATIONS}
    if kind in activations:
        return activations[kind]()
    raise ValueError(f"unknown layer type {kind!r} in a compressed policy; was it written by a newer l0rl?")


def build(arch: list[dict], device: str = "cpu") -> nn.Sequential:
    """An uninitialised chain with the described architecture (load a state_dict into it); on the
    "meta" device it allocates nothing (see check_size)."""
    return nn.Sequential(*[_build(spec, device) for spec in arch])


def check_size(arch: list[dict], state: dict) -> None:
    """Raise ValueError unless `arch` is a list of layers that together hold no more numbers than
    `state` does: a record read from a file must not make build() allocate what the file never held."""
    if not isinstance(arch, list) or not all(isinstance(spec, dict) for spec in arch):
        raise ValueError("its architecture is not a list of layers")
    if not isinstance(state, dict):
        raise ValueError("its state is not a dict of tensors")
    try:
        need = sum(t.numel() for t in build(arch, "meta").state_dict().values())
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise ValueError(f"a layer it describes cannot be built ({type(e).__name__}: {e})") from None
    have = sum(t.numel() for t in state.values() if isinstance(t, torch.Tensor))
    if need > have:
        raise ValueError(f"its layers declare {need:,} numbers but its state holds {have:,}")


def describe_space(space: gym.Space) -> dict:
    """A Discrete or Box space as plain data (bounds as tensors), for weights-only checkpoints."""
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.Box):
        return {
            "type": "Box",
            "shape": list(space.shape),
            "dtype": np.dtype(space.dtype).name,
            "low": torch.as_tensor(np.asarray(space.low, dtype=np.float64)),
            "high": torch.as_tensor(np.asarray(space.high, dtype=np.float64)),
        }
    raise ValueError(
        f"cannot describe a {type(space).__name__} space; l0rl policies take Box or Discrete spaces"
    )


def build_space(spec: dict) -> gym.Space:
    if spec["type"] == "Discrete":
        return gym.spaces.Discrete(spec["n"], start=spec.get("start", 0))
    if spec["type"] == "Box":
        dtype = np.dtype(spec["dtype"])
        return gym.spaces.Box(
            spec["low"].numpy().astype(dtype), spec["high"].numpy().astype(dtype), dtype=dtype
        )
    raise ValueError(f"unknown space type {spec['type']!r}; was it written by a newer l0rl?")


SPARSITY_KINDS = ("l0", "gmp", "none")


def policy_record(policy: nn.Module, obs_space: gym.Space, action_space: gym.Space, sparsity: str) -> dict:
    """What a checkpoint stores of the deployable policy: its architecture as plain dicts, how it was
    sparsified ("l0" gates, "gmp" masks or "none") and its state_dict (gates or masks included).
    The weight tensors are the training network's own, so torch.save stores them once."""
    if sparsity not in SPARSITY_KINDS:
        raise ValueError(f"unknown sparsity kind {sparsity!r}; use one of {', '.join(SPARSITY_KINDS)}")
    chain = as_chain(policy, tuple(obs_space.shape))
    return {
        "arch": describe(chain),
        "sparsity": sparsity,
        "state": chain.state_dict(),
        "observation_space": describe_space(obs_space),
        "action_space": describe_space(action_space),
    }


def build_policy(record: dict) -> nn.Sequential:
    """The policy of a `policy_record`, gated or masked as it was trained, in eval mode."""
    from l0rl import gmp, l0  # local: l0rl.policy is imported by the packages these import

    check_size(record["arch"], record["state"])
    chain = build(record["arch"])
    kind = record["sparsity"]
    if kind == "l0":
        l0.sparsify_like(chain, record["state"])
    elif kind == "gmp":
        gmp.attach_like(chain, record["state"])
    else:
        chain.load_state_dict(record["state"])
    check_fit(chain.eval(), record)
    return chain


def record_spaces(record: dict) -> tuple[gym.Space, gym.Space]:
    """The observation and action spaces a policy record holds; ValueError when they are not spaces."""
    try:
        return build_space(record["observation_space"]), build_space(record["action_space"])
    except (KeyError, TypeError, AttributeError, ValueError, OverflowError) as e:
        raise ValueError(
            f"its observation or action space is not one l0rl writes ({type(e).__name__})"
        ) from None


@torch.no_grad()
def check_fit(chain: nn.Module, record: dict) -> None:
    """ValueError unless the policy maps one observation of its record's space to one action of its
    action space (logits of Discrete(n), or a Box's action): a record from a file may say otherwise."""
    obs_space, action_space = record_spaces(record)
    if isinstance(action_space, gym.spaces.Discrete):
        want = (1, int(action_space.n))
    else:
        want = (1, *action_space.shape)
    try:
        out = chain(torch.zeros((1, *obs_space.shape)))
    except RuntimeError as e:
        raise ValueError(
            f"it cannot take an observation of shape {obs_space.shape} ({str(e)[:100]})"
        ) from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != want:
        raise ValueError(f"it maps an observation to shape {tuple(getattr(out, 'shape', ()))}, not {want}")
