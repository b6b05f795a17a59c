"""What compress measures for each stage: counts, stored bytes, multiply-accumulates, CPU latency.

DEFINITIONS. The dense architecture is the trained policy's architecture without gates: all weights and
biases of its Linear/Conv2d layers, before anything is zeroed, removed or factorised.
- parameters: numbers a stage stores in Linear/Conv2d weights and biases. Gate parameters never
  count; a zero inside a stored tensor still counts (see non-zeros), removed units do not.
- non-zeros: stored parameters (weights and biases) that are not exactly zero.
- sparsity % = share of the dense architecture's weights (not biases) that are exactly zero or
  removed = 1 - non-zero stored weights / dense architecture weights (for a factorised layer its
  two factors' non-zero weights stand in for it).
- compression % (params) = 1 - stored parameters / dense architecture parameters (weights + biases).
- compression % (bytes) = 1 - file size of the stage's saved policy / file size of the dense policy
  saved the same way. A saved policy is the architecture description plus the state_dict with every
  floating tensor in whichever of dense float32 or (bitmask + non-zero float32 values) saves to fewer
  bytes; sizes are the length of torch.save into a bytes buffer (see compress.serialize). The
  dense policy is the dense architecture with every tensor stored dense. The original (gated)
  policy also stores the gate parameters it needs to run, so its byte compression is usually
  negative.
- MACs: multiply-accumulates of the Linear/Conv2d layers per action (one observation), as dense
  kernels compute them: unstructured zeros are still multiplied, removed units and low rank are not.
- latency: median wall time of one forward pass on one observation on the CPU with
  torch.set_num_threads(1), after a warm-up.
"""

import math
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from l0rl import l0
from l0rl.compress.serialize import policy_blob, to_bytes
from l0rl.policy import trace, weight_layers


@torch.no_grad()
def counts(chain: nn.Sequential) -> dict[str, int]:
    """Stored parameters and weights, and how many are non-zero (gates at their test-time value)."""
    out = {"params": 0, "weights": 0, "nonzeros": 0, "nonzero_weights": 0}
    with l0.deterministic_gates(chain):
        for _, m in weight_layers(chain):
            w = m.weight
            nz_w = int(torch.count_nonzero(w))
            out["weights"] += w.numel()
            out["nonzero_weights"] += nz_w
            out["params"] += w.numel()
            out["nonzeros"] += nz_w
            if m.bias is not None:
                out["params"] += m.bias.numel()
                out["nonzeros"] += int(torch.count_nonzero(m.bias))
    return out


def policy_bytes(chain: nn.Sequential, force_dense: bool = False) -> int:
    """Size of the chain saved as compress saves a policy (architecture + encoded state_dict)."""
    return len(to_bytes(policy_blob(chain, force_dense)))


def dense_reference(hardened: nn.Sequential) -> dict[str, int]:
    """The dense architecture's parameters, weights and saved bytes (every tensor stored dense)."""
    c = counts(hardened)
    return {"params": c["params"], "weights": c["weights"], "bytes": policy_bytes(hardened, force_dense=True)}


def macs(chain: nn.Sequential, obs_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of the Linear/Conv2d layers for one observation."""
    shapes = trace(chain, obs_shape)
    total = 0
    for i, m in weight_layers(chain):
        out_shape = shapes[i][1]
        if isinstance(m, nn.Linear):
            total += m.in_features * m.out_features
        else:
            per_output = (m.in_channels // m.groups) * math.prod(m.kernel_size)
            total += per_output * math.prod(out_shape[1:])
    return total


def latency_us(
    call: Callable[[], object], budget_s: float = 0.3, min_calls: int = 30, max_calls: int = 2000
) -> float:
    """Median wall time of call() in microseconds, after a warm-up, over as many calls as fit in
    budget_s (at least min_calls, at most max_calls)."""
    for _ in range(5):
        call()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_calls or (len(times) < max_calls and time.perf_counter() - start < budget_s):
        t0 = time.perf_counter_ns()
        call()
        times.append((time.perf_counter_ns() - t0) / 1e3)
    return statistics.median(times)


def torch_latency_us(module: nn.Module, example: torch.Tensor) -> float:
    """CPU latency of module(example) on one thread (the thread setting is restored afterwards)."""
    threads = torch.get_num_threads()
    was_training = module.training
    module.eval()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            return latency_us(lambda: module(example))
    finally:
        torch.set_num_threads(threads)
        module.train(was_training)


def stage_figures(chain: nn.Sequential, obs_shape: tuple[int, ...], dense: dict[str, int]) -> dict:
    """Every size figure of one stage relative to the dense reference (see the module docstring)."""
    c = counts(chain)
    size = policy_bytes(chain)
    return {
        "params": c["params"],
        "nonzeros": c["nonzeros"],
        "sparsity": 1.0 - c["nonzero_weights"] / dense["weights"],
        "compression_params": 1.0 - c["params"] / dense["params"],
        "bytes": size,
        "compression_bytes": 1.0 - size / dense["bytes"],
        "macs": macs(chain, obs_shape),
    }
