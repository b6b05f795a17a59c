"""What compress measures for each stage: counts, stored bytes, multiply-accumulates, CPU latency.

DEFINITIONS. The dense architecture is the trained policy's architecture without gates: all weights and
biases of its Linear/Conv2d layers, before anything is zeroed, removed or factorised.
- parameters: numbers a stage stores in Linear/Conv2d weights and biases. Gate parameters never
  count; a zero inside a stored tensor still counts (see non-zeros), removed units do not.
- non-zeros: stored parameters (weights and biases) that are not exactly zero.
- stored values: the numbers the stage's saved policy file holds (see bytes): every element of a
  tensor saved dense, only the non-zeros of one saved as bitmask + values. For a gate-free stage it
  lies between non-zeros and parameters; the original (gated) policy also stores its gate parameters.
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
- latency: wall time of one forward pass on one observation on the CPU with torch.set_num_threads(1),
  after a warm-up. All stages of one compress call are timed together, interleaved: in each of
  several rounds every stage runs the same number of calls in a shuffled order, and each stage's
  latency is the median over rounds of its per-round median. The latency ratio of a stage is the
  median over rounds of (its round median / the hardened policy's round median), so load that comes
  and goes during the measurement touches both sides of every ratio alike; its interquartile range
  over rounds says how precise it is. (Timing stages one after the other left 30-60 % between
  identical networks on a shared 2-core VM, more than the effects being measured.)
"""

import math
import random
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from l0rl import l0
from l0rl.compress.serialize import encode_state, policy_blob, to_bytes
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


def stored_values(chain: nn.Sequential) -> int:
    """How many numbers the saved policy file holds: every tensor of its state_dict in the encoding
    compress saves it in (dense: all of it; bitmask + values: its non-zeros)."""
    total = 0
    for enc in encode_state(chain.state_dict()).values():
        total += enc["values"].numel() if isinstance(enc, dict) else enc.numel()
    return total


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


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def interleaved_latency_us(
    calls: dict[str, Callable[[], object]],
    reference: str,
    budget_s: float = 1.0,
    rounds: int = 15,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Time several calls against each other (see the module docstring): per name, "latency_us" (the
    median over rounds of the round medians), "latency_ratio" (the median over rounds of its round
    median / reference's), "latency_ratio_q25" and "latency_ratio_q75" (quartiles of those ratios).

    Every call runs the same number of times per round, chosen from a first timing so that all
    rounds together take about budget_s (at least 3 and at most 500 calls per name and round)."""
    if reference not in calls:
        raise ValueError(f"reference {reference!r} is not one of the timed calls {sorted(calls)}")
    first = {}
    for name, call in calls.items():
        for _ in range(5):  # warm-up: allocator, caches, lazy initialisation
            call()
        t0 = time.perf_counter()
        for _ in range(5):
            call()
        first[name] = (time.perf_counter() - t0) / 5
    per_round = max(3, min(500, int(budget_s / rounds / max(sum(first.values()), 1e-9))))
    rng = random.Random(seed)
    names = list(calls)
    medians: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(rounds):
        rng.shuffle(names)
        for name in names:
            call, times = calls[name], []
            for _ in range(per_round):
                t0 = time.perf_counter_ns()
                call()
                times.append((time.perf_counter_ns() - t0) / 1e3)
            medians[name].append(statistics.median(times))
    out = {}
    for name in calls:
        ratios = [m / r for m, r in zip(medians[name], medians[reference])]
        out[name] = {
            "latency_us": statistics.median(medians[name]),
            "latency_ratio": statistics.median(ratios),
            "latency_ratio_q25": _quantile(ratios, 0.25),
            "latency_ratio_q75": _quantile(ratios, 0.75),
        }
    return out


def torch_latencies_us(
    modules: dict[str, nn.Module], example: torch.Tensor, reference: str, budget_s: float = 1.0
) -> dict[str, dict[str, float]]:
    """interleaved_latency_us of module(example) for every module, on one thread, in eval mode and
    without autograd (the thread setting and training flags are restored afterwards)."""
    threads = torch.get_num_threads()
    was_training = {name: m.training for name, m in modules.items()}
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            for m in modules.values():
                m.eval()
            calls = {name: (lambda m=m: m(example)) for name, m in modules.items()}
            return interleaved_latency_us(calls, reference, budget_s)
    finally:
        torch.set_num_threads(threads)
        for name, m in modules.items():
            m.train(was_training[name])


def stage_figures(chain: nn.Sequential, obs_shape: tuple[int, ...], dense: dict[str, int]) -> dict:
    """Every size figure of one stage relative to the dense reference (see the module docstring)."""
    c = counts(chain)
    size = policy_bytes(chain)
    return {
        "params": c["params"],
        "nonzeros": c["nonzeros"],
        "stored_values": stored_values(chain),
        "sparsity": 1.0 - c["nonzero_weights"] / dense["weights"],
        "compression_params": 1.0 - c["params"] / dense["params"],
        "bytes": size,
        "compression_bytes": 1.0 - size / dense["bytes"],
        "macs": macs(chain, obs_shape),
    }
