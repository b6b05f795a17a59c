"""The compression stages, as pure functions from a policy chain to a new chain (inputs never change).

- `harden`: gates folded into the weights (exact zeros), no gate parameters left.
- `magnitude_prune`: the baseline, one-shot global magnitude pruning to a given sparsity.
- `shrink`: removes output units / channels that cannot matter and the matching inputs of the next
  layer, giving smaller dense layers with the same outputs (up to float rounding).
- `low_rank`: truncated SVD of chosen layers into two thinner layers, only where it saves storage.
Ranks come from `choose_ranks` (an energy share) or `search_ranks` (smallest ranks whose evaluated
return stays above a floor). All stages but `harden` expect a gate-free chain in canonical form
(see l0rl.policy).
"""

import copy
from collections.abc import Callable

import torch
from torch import nn

from l0rl import l0
from l0rl.compress.serialize import policy_blob, to_bytes
from l0rl.policy import ACTIVATIONS, WEIGHT_LAYERS, Affine, as_chain, trace, weight_layers


def harden(policy: nn.Module, obs_shape: tuple[int, ...]) -> nn.Sequential:
    """Gate-free canonical chain with the gated policy's eval-mode outputs (l0.harden; a dense
    policy is just copied)."""
    return as_chain(l0.harden(policy).eval(), obs_shape)


def _check_gate_free(chain: nn.Sequential, stage: str) -> None:
    if any(l0.is_gated(m) for m in chain):
        raise ValueError(f"{stage} expects a hardened policy without gates; call compress.harden first")


def _new_like(layer: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Module:
    """A plain layer of `layer`'s kind and settings holding `weight` / `bias` (shapes may differ)."""
    if isinstance(layer, nn.Linear):
        new = torch.nn.utils.skip_init(nn.Linear, weight.shape[1], weight.shape[0], bias=bias is not None)
    else:
        new = torch.nn.utils.skip_init(
            nn.Conv2d,
            weight.shape[1] * layer.groups,
            weight.shape[0],
            tuple(weight.shape[2:]),
            stride=layer.stride,
            padding=layer.padding,
            dilation=layer.dilation,
            groups=layer.groups,
            bias=bias is not None,
            padding_mode=layer.padding_mode,
        )
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias)
    return new


@torch.no_grad()
def magnitude_prune(chain: nn.Sequential, sparsity: float, per_layer: bool = False) -> nn.Sequential:
    """Zero the smallest-magnitude weights of the Linear/Conv2d layers (biases untouched) so that a
    share `sparsity` of the weights is zero: with one global threshold over all layers together
    (default, the classic one-shot baseline), or with per_layer=True the same share in every layer
    (which cannot wipe out a layer whose weights are small overall, such as a policy's output layer
    initialised with std 0.01). Weights that are already zero count towards that share."""
    if not 0.0 < sparsity < 1.0:
        raise ValueError(f"--sparsity must be in (0, 1), got {sparsity}; e.g. 0.9 zeroes 90 % of the weights")
    _check_gate_free(chain, "magnitude_prune")
    pruned = copy.deepcopy(chain)
    weights = [m.weight for _, m in weight_layers(pruned)]
    for group in [[w] for w in weights] if per_layer else [weights]:
        flat = torch.cat([w.detach().abs().reshape(-1) for w in group])
        k = int(round(sparsity * flat.numel()))
        mask = torch.ones_like(flat, dtype=torch.bool)
        mask[torch.topk(flat, k, largest=False).indices] = False
        start = 0
        for w in group:
            w.mul_(mask[start : start + w.numel()].reshape(w.shape))
            start += w.numel()
    return pruned


def _shrinkable(chain: nn.Sequential, p: int, c: int) -> bool:
    """Whether units of layer p can be removed with the matching inputs of layer c, the next
    weight layer: only elementwise modules (uniform, so they do not care which units remain) and at
    most the Flatten of a conv -> linear boundary between them, and no grouped convolutions."""
    producer, consumer, between = chain[p], chain[c], list(chain[p + 1 : c])
    if any(getattr(m, "groups", 1) != 1 for m in (producer, consumer)):
        return False
    for m in between:
        elementwise = isinstance(m, ACTIVATIONS) or (isinstance(m, Affine) and m.is_uniform())
        if not elementwise and not (isinstance(m, nn.Flatten) and m.start_dim == 1 and m.end_dim == -1):
            return False
    flattens = sum(isinstance(m, nn.Flatten) for m in between)
    if isinstance(producer, nn.Conv2d):
        return flattens == (1 if isinstance(consumer, nn.Linear) else 0)
    return isinstance(consumer, nn.Linear)


def _zero_padding(conv: nn.Conv2d) -> bool:
    return conv.padding == "valid" or (not isinstance(conv.padding, str) and not any(conv.padding))


@torch.no_grad()
def shrink(chain: nn.Sequential, obs_shape: tuple[int, ...]) -> nn.Sequential:
    """Remove hidden units / channels that cannot change the output, with the next layer's inputs.

    A unit of layer k (not the last weight layer, whose outputs are the action scores) goes when
    - the next layer reads nothing from it (its input columns are all zero), or
    - its own weight row is all zero: its output is then the constant act(bias), whose contribution
      is folded into the next layer's bias. This is exact for a next Linear (also through Flatten:
      a conv channel is a block of H*W features) and for a next Conv2d without padding (padding
      would mix the constant with zeros at the borders, so such channels stay).
    Removing units can empty further rows and columns, so passes repeat until nothing changes.
    A layer always keeps at least one unit. Outputs equal the input chain's up to float rounding.
    """
    _check_gate_free(chain, "shrink")
    shapes = trace(chain, obs_shape)
    layers = weight_layers(chain)
    weights = [m.weight.detach().clone() for _, m in layers]
    biases = [None if m.bias is None else m.bias.detach().clone() for _, m in layers]
    boundaries = [k for k in range(len(layers) - 1) if _shrinkable(chain, layers[k][0], layers[k + 1][0])]
    changed = True
    while changed:
        changed = False
        for k in boundaries:
            (p, _), (c, consumer) = layers[k], layers[k + 1]
            n = weights[k].shape[0]
            out_shape = (1, n, *shapes[p][1][2:])  # spatial dims never change here
            cols = weights[k + 1].reshape(weights[k + 1].shape[0], n, -1)  # out x unit x (block or k*k)
            dead = (weights[k].reshape(n, -1) == 0).all(1)
            unread = (cols == 0).all(2).all(0)
            # what a dead unit feeds the consumer: act(bias) pushed through the modules in between
            const = (
                torch.zeros(out_shape)
                if biases[k] is None
                else biases[k].reshape(1, n, *[1] * (len(out_shape) - 2)).expand(out_shape)
            )
            for m in chain[p + 1 : c]:
                const = m(const)
            const = const.reshape(n, -1)
            foldable = dead & (biases[k + 1] is not None)
            if isinstance(consumer, nn.Conv2d):
                uniform = (const == const[:, :1]).all(1)
                foldable &= uniform & _zero_padding(consumer)
            remove = unread | foldable
            if remove.all():
                remove[0] = False
            if not remove.any():
                continue
            fold = remove & ~unread
            if fold.any():
                if isinstance(consumer, nn.Linear):
                    biases[k + 1] = biases[k + 1] + (cols[:, fold, :] * const[fold][None]).sum((1, 2))
                else:
                    biases[k + 1] = biases[k + 1] + (cols[:, fold, :].sum(2) * const[fold, 0][None]).sum(1)
            keep = ~remove
            weights[k] = weights[k][keep]
            if biases[k] is not None:
                biases[k] = biases[k][keep]
            new_cols = cols[:, keep, :]
            weights[k + 1] = new_cols.reshape(
                new_cols.shape[0],
                *((-1,) if isinstance(consumer, nn.Linear) else (-1, *consumer.kernel_size)),
            )
            changed = True
    new = {i: _new_like(m, w, b) for (i, m), w, b in zip(layers, weights, biases)}
    return nn.Sequential(*[new[i] if i in new else copy.deepcopy(m) for i, m in enumerate(chain)])


@torch.no_grad()
def round_channels(chain: nn.Sequential, obs_shape: tuple[int, ...], block: int) -> nn.Sequential:
    """Round the output channels of every hidden Conv2d down to a multiple of `block`, then shrink.

    Why: CPU convolution kernels (oneDNN) compute output channels in blocks (16 on AVX-512, 8 on
    AVX2), so a layer of 21 channels costs what one of 32 does; its latency only falls when its width
    crosses a multiple of the block. A layer of n > block channels, n not a multiple, loses its
    n mod block least salient channels: salience = the norm of the channel's own weights times the
    norm of the next layer's weights that read it (how much it can move the next layer). Their
    weights are zeroed and shrink removes them, folding their constant act(bias) into the next
    layer's bias; a layer whose channels shrink cannot remove (a padded next conv) is left alone.
    Layers of at most `block` channels and Linear layers are left alone. Unlike shrink, this changes
    the policy: evaluate it (compress does)."""
    if block < 2:
        raise ValueError(f"--channel-block must be >= 2, got {block}; e.g. 16 on an AVX-512 CPU, 8 on AVX2")
    _check_gate_free(chain, "round_channels")
    out = copy.deepcopy(chain)
    layers = weight_layers(out)
    for (p, producer), (c, consumer) in zip(layers, layers[1:]):
        n = producer.weight.shape[0]
        extra = n % block
        if not isinstance(producer, nn.Conv2d) or n <= block or extra == 0:
            continue
        if not _shrinkable(out, p, c) or (isinstance(consumer, nn.Conv2d) and not _zero_padding(consumer)):
            continue  # shrink could not remove the channels: zeroing them would only cost return
        own = producer.weight.reshape(n, -1).norm(dim=1)
        read = consumer.weight.reshape(consumer.weight.shape[0], n, -1).norm(dim=(0, 2))
        producer.weight[torch.argsort(own * read)[:extra]] = 0.0
    return shrink(out, obs_shape)


def layer_matrix(layer: nn.Module) -> torch.Tensor:
    """The weight as the matrix SVD factorises: m x n, a conv reshaped to out x (in * kh * kw)."""
    w = layer.weight.detach()
    return w.reshape(w.shape[0], -1)


def _saved_size(*layers: nn.Module) -> int:
    """Bytes of these layers saved as compress saves a policy (architecture + encoded state_dict)."""
    return len(to_bytes(policy_blob(nn.Sequential(*layers))))


def max_saving_rank(layer: nn.Module) -> int:
    """Largest rank r that saves storage, 0 when none does: r < m*n / (m + n) (fewer parameters),
    and the two factors saved as compress saves a policy take fewer bytes than the layer saved now
    (its weight dense or sparse-encoded, whichever is smaller). So a sparse layer needs a lower rank,
    and factorising never grows the file (up to torch.save's 64-byte alignment of each tensor)."""
    if isinstance(layer, nn.Conv2d) and layer.groups != 1:
        return 0
    m, n = layer_matrix(layer).shape
    now = _saved_size(layer)
    bias = None if layer.bias is None else layer.bias.detach()

    def saves(r: int) -> bool:  # factor values do not matter: dense factors of rank r, sized as saved
        return _saved_size(*_pair(layer, torch.ones(r, n), torch.ones(m, r), bias)) < now

    lo, hi = 0, min(m, n, (m * n - 1) // (m + n))
    while lo < hi:  # the factors' size grows with r: binary search the boundary
        mid = (lo + hi + 1) // 2
        if saves(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def energy_rank(layer: nn.Module, energy: float) -> int:
    """Smallest r keeping a share `energy` of the squared singular values (0 for a zero weight)."""
    s = torch.linalg.svdvals(layer_matrix(layer).double())
    total = float((s**2).sum())
    if total == 0.0:
        return 0
    kept = torch.cumsum(s**2, 0) / total
    return int((kept < energy - 1e-12).sum()) + 1


def choose_ranks(chain: nn.Sequential, energy: float = 0.99) -> dict[int, int]:
    """{position: rank} by energy share, for the layers where that rank saves storage."""
    if not 0.0 < energy <= 1.0:
        raise ValueError(f"--energy must be in (0, 1], got {energy}; e.g. 0.99 keeps 99 % of the spectrum")
    ranks = {}
    for i, m in weight_layers(chain):
        r = energy_rank(m, energy)
        if 1 <= r <= max_saving_rank(m):
            ranks[i] = r
    return ranks


@torch.no_grad()
def factorize(layer: nn.Module, rank: int) -> tuple[nn.Module, nn.Module]:
    """Truncated SVD W ~ (U_r sqrt(S_r)) (sqrt(S_r) V_r^T) as two layers: Linear n->r then r->m, or a
    conv with r output channels (the original kernel, stride, padding) then a 1x1 conv. The bias
    goes on the second layer; at full rank the pair computes the same function as the layer."""
    if isinstance(layer, nn.Conv2d) and layer.groups != 1:
        raise ValueError("grouped convolutions are not factorised")
    w = layer_matrix(layer).double()
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    root = s[:rank].sqrt()
    first_w = (root[:, None] * vh[:rank]).to(layer.weight.dtype)
    second_w = (u[:, :rank] * root[None, :]).to(layer.weight.dtype)
    return _pair(layer, first_w, second_w, None if layer.bias is None else layer.bias.detach())


@torch.no_grad()
def _pair(
    layer: nn.Module, first_w: torch.Tensor, second_w: torch.Tensor, bias: torch.Tensor | None
) -> tuple[nn.Module, nn.Module]:
    """The two layers of a factorisation from its matrices: first r x n, second m x r."""
    if isinstance(layer, nn.Linear):
        return _new_like(layer, first_w, None), _new_like(layer, second_w, bias)
    rank = first_w.shape[0]
    first = _new_like(layer, first_w.reshape(rank, *layer.weight.shape[1:]), None)
    second = torch.nn.utils.skip_init(nn.Conv2d, rank, layer.out_channels, 1, bias=bias is not None)
    second.weight.copy_(second_w[:, :, None, None])
    if bias is not None:
        second.bias.copy_(bias)
    return first, second


def low_rank(
    chain: nn.Sequential, ranks: dict[int, int] | None = None, energy: float = 0.99
) -> nn.Sequential:
    """Replace each layer at position i in `ranks` by its rank-ranks[i] factorisation, skipping any
    whose rank does not save storage (see max_saving_rank); ranks=None chooses them by `energy`."""
    _check_gate_free(chain, "low_rank")
    if ranks is None:
        ranks = choose_ranks(chain, energy)
    out: list[nn.Module] = []
    for i, m in enumerate(chain):
        r = ranks.get(i, 0)
        if isinstance(m, WEIGHT_LAYERS) and 1 <= r <= max_saving_rank(m):
            out.extend(factorize(m, r))
        else:
            out.append(copy.deepcopy(m))
    return nn.Sequential(*out)


def search_ranks(
    chain: nn.Sequential, score: Callable[[nn.Sequential], float], floor: float
) -> tuple[dict[int, int], int]:
    """Smallest ranks whose `score` (an evaluated return) stays >= floor; returns (ranks, evaluations).

    Greedy over layers in order, each fixed before the next is tried: a layer is factorised only if
    its largest saving rank passes, then a binary search finds the smallest passing rank (assuming
    the score grows with the rank). At most 1 + ceil(log2(max rank)) scores per layer."""
    ranks: dict[int, int] = {}
    evaluations = 0
    for i, m in weight_layers(chain):
        hi = max_saving_rank(m)
        if hi < 1:
            continue
        evaluations += 1
        if score(low_rank(chain, {**ranks, i: hi})) < floor:
            continue
        lo = 1
        while lo < hi:
            mid = (lo + hi) // 2
            evaluations += 1
            if score(low_rank(chain, {**ranks, i: mid})) >= floor:
                hi = mid
            else:
                lo = mid + 1
        ranks[i] = hi
    return ranks, evaluations
