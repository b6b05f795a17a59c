"""Unit tests of compress's stages and measurements on hand-built policies (no env, no training)."""

import copy
import io
import math
import time

import pytest
import torch
from torch import nn

from l0rl import l0
from l0rl.compress import (
    Affine,
    as_chain,
    choose_ranks,
    counts,
    factorize,
    harden,
    load_compressed,
    low_rank,
    macs,
    magnitude_prune,
    policy_bytes,
    search_ranks,
    shrink,
)
from l0rl.compress.measure import dense_reference, interleaved_latency_us, stage_figures, torch_latencies_us
from l0rl.compress.serialize import (
    compressed_bytes,
    decode_tensor,
    encode_tensor,
    payload_bytes,
    policy_blob,
    to_bytes,
)
from l0rl.compress.stages import max_saving_rank, round_channels
from l0rl.policy import FrameScale

OBS_MLP = (5,)
OBS_CNN = (2, 9, 9)


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 3))
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.Linear):
                m.bias.uniform_(-0.5, 0.5)  # non-zero biases, so removed units leave a constant to fold
    return net


def cnn(padding: int = 0) -> nn.Sequential:
    torch.manual_seed(1)
    net = nn.Sequential(
        FrameScale(),
        nn.Conv2d(2, 6, 3),
        nn.ReLU(),
        nn.Conv2d(6, 5, 3, padding=padding),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(5 * (7 if padding else 5) ** 2, 8),
        nn.ReLU(),
        nn.Linear(8, 3),
    )
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.Linear | nn.Conv2d):
                m.bias.uniform_(0.1, 0.5)  # positive, so ReLU(bias) of a closed channel is not 0
    return net


def close_units(net: nn.Sequential, closed: dict[int, list[int]]) -> nn.Sequential:
    """Unit-gate every Linear/Conv2d, open all gates, then close the listed units (log_alpha = -10)."""
    l0.sparsify(net, "unit")
    with torch.no_grad():
        for _, _, gate in l0.gated_layers(net):
            gate.log_alpha.fill_(10.0)
        for i, units in closed.items():
            gate = next(g for name, _, g in l0.gated_layers(net) if name == str(i))
            gate.log_alpha[units] = -10.0
    return net.eval()


def batch(shape, n=7, scale=1.0):
    return torch.randn((n, *shape), generator=torch.Generator().manual_seed(3)) * scale


def sizes(chain):
    return [tuple(m.weight.shape) for m in chain if isinstance(m, nn.Linear | nn.Conv2d)]


# ---------------------------------------------------------------- harden


def test_harden_equals_gated_eval_on_mlp():
    net = close_units(mlp(), {0: [1, 4], 2: [0]})
    x = batch(OBS_MLP)
    hard = harden(net, OBS_MLP)
    assert not any(l0.is_gated(m) for m in hard)
    assert not any("log_alpha" in k for k in hard.state_dict())
    with torch.no_grad():
        assert torch.equal(hard(x), net(x))
    assert torch.count_nonzero(hard[0].weight[[1, 4]]) == 0
    assert l0.is_gated(net[0])  # the input is not modified


def test_harden_equals_gated_eval_on_cnn_with_scale_and_flatten():
    net = cnn()
    l0.sparsify(net, "weight", drop_rate=0.5)
    with torch.no_grad():
        for _, _, gate in l0.gated_layers(net):
            gate.log_alpha.normal_(0.0, 3.0, generator=torch.Generator().manual_seed(4))
    net.eval()
    x = batch(OBS_CNN, scale=255.0)
    hard = harden(net, OBS_CNN)
    assert isinstance(hard[0], Affine) and hard[0].is_uniform()
    with torch.no_grad():
        assert torch.equal(hard(x), net(x))
    assert counts(hard)["nonzero_weights"] < counts(hard)["weights"]  # exact zeros came out of the gates


def test_as_chain_rejects_what_the_contract_excludes():
    class Square(nn.Module):
        def forward(self, x):
            return x * x

    with pytest.raises(ValueError, match="Square"):
        as_chain(nn.Sequential(nn.Linear(5, 4), Square()), OBS_MLP)
    with pytest.raises(ValueError, match="LayerNorm"):
        as_chain(nn.Sequential(nn.Linear(5, 4), nn.LayerNorm(4)), OBS_MLP)
    with pytest.raises(ValueError, match="Sequential"):
        as_chain(nn.Linear(5, 4), OBS_MLP)


def test_as_chain_turns_an_affine_rescale_into_affine():
    class Rescale(nn.Module):  # e.g. SAC's tanh-squashed action mapped onto [low, high]
        def __init__(self):
            super().__init__()
            self.register_buffer("scale", torch.tensor([2.0, 0.5]))
            self.register_buffer("bias", torch.tensor([1.0, -1.0]))

        def forward(self, x):
            return x * self.scale + self.bias

    net = nn.Sequential(nn.Linear(5, 2), nn.Tanh(), Rescale())
    chain = as_chain(net, OBS_MLP)
    assert isinstance(chain[2], Affine) and not chain[2].is_uniform()
    x = batch(OBS_MLP)
    with torch.no_grad():
        torch.testing.assert_close(chain(x), net(x))


# ---------------------------------------------------------------- shrink


def test_shrink_mlp_with_closed_unit_gates_folds_their_constant():
    net = close_units(mlp(), {0: [1, 4, 9], 2: [0, 5]})
    hard = harden(net, OBS_MLP)
    small = shrink(hard, OBS_MLP)
    assert sizes(small) == [(13, 5), (10, 13), (3, 10)]
    x = batch(OBS_MLP)
    with torch.no_grad():
        torch.testing.assert_close(small(x), hard(x), rtol=1e-5, atol=1e-6)
        # the closed units emit tanh(bias) != 0: dropping them without folding would change the output
        cut = hard[2].weight[:, [1, 4, 9]] @ torch.tanh(hard[0].bias[[1, 4, 9]])
    assert cut.abs().max() > 1e-3
    assert l0.is_gated(net[0]) and sizes(hard)[0] == (16, 5)  # inputs untouched


def test_shrink_cnn_folds_through_conv_and_flatten():
    net = close_units(cnn(), {1: [0, 3], 3: [2]})
    hard = harden(net, OBS_CNN)
    small = shrink(hard, OBS_CNN)
    assert sizes(small) == [(4, 2, 3, 3), (4, 4, 3, 3), (8, 100), (3, 8)]
    x = batch(OBS_CNN, scale=255.0)
    with torch.no_grad():
        torch.testing.assert_close(small(x), hard(x), rtol=1e-5, atol=1e-5)


def test_shrink_keeps_closed_channels_before_a_padded_conv_unless_unread():
    net = close_units(cnn(padding=1), {1: [0, 3]})
    hard = harden(net, OBS_CNN)
    assert sizes(shrink(hard, OBS_CNN))[:2] == [(6, 2, 3, 3), (5, 6, 3, 3)]
    with torch.no_grad():
        hard[3].weight[:, 3] = 0.0  # nobody reads channel 3 any more: it can go, padding or not
    small = shrink(hard, OBS_CNN)
    assert sizes(small)[:2] == [(5, 2, 3, 3), (5, 5, 3, 3)]
    x = batch(OBS_CNN, scale=255.0)
    with torch.no_grad():
        torch.testing.assert_close(small(x), hard(x), rtol=1e-5, atol=1e-5)


def test_shrink_drops_unread_units_and_cascades_but_keeps_every_output():
    hard = as_chain(mlp(), OBS_MLP)
    with torch.no_grad():
        hard[2].weight[:, [2, 7]] = 0.0  # layer 0 units 2 and 7 are read by nobody
        hard[4].weight[:, 3] = 0.0  # layer 2 unit 3 is read by nobody ...
        hard[4].weight[1] = 0.0  # ... and an output row that is all zero stays (it is an action)
    small = shrink(hard, OBS_MLP)
    assert sizes(small) == [(14, 5), (11, 14), (3, 11)]
    x = batch(OBS_MLP)
    with torch.no_grad():
        torch.testing.assert_close(small(x), hard(x), rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        hard[2].weight.zero_()  # layer 2 is constant: all of layer 0 goes but one, cascading
    assert sizes(shrink(hard, OBS_MLP))[:2] == [(1, 5), (1, 1)]


def test_shrink_refuses_a_gated_chain():
    with pytest.raises(ValueError, match="harden"):
        shrink(as_chain(close_units(mlp(), {}), OBS_MLP), OBS_MLP)


# ---------------------------------------------------------------- low rank


def test_factorize_at_full_rank_equals_the_layer():
    x_lin, x_conv = batch(OBS_MLP), batch(OBS_CNN)
    lin = nn.Linear(5, 16)
    conv = nn.Conv2d(2, 6, 3, stride=2, padding=1)
    with torch.no_grad():
        for layer, x, r in ((lin, x_lin, 5), (conv, x_conv, 6)):
            first, second = factorize(layer, r)
            torch.testing.assert_close(second(first(x)), layer(x), rtol=1e-5, atol=1e-5)
        assert factorize(conv, 2)[0].out_channels == 2 and factorize(conv, 2)[1].kernel_size == (1, 1)


def test_low_rank_at_full_energy_returns_an_equal_chain():
    hard = as_chain(mlp(), OBS_MLP)
    same = low_rank(hard, energy=1.0)  # full rank never saves storage, so nothing is factorised
    assert sizes(same) == sizes(hard)
    x = batch(OBS_MLP)
    with torch.no_grad():
        assert torch.equal(same(x), hard(x))


def test_low_rank_is_applied_only_where_it_saves():
    torch.manual_seed(5)
    net = nn.Sequential(nn.Linear(4, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 2))
    with torch.no_grad():
        net[2].weight.copy_(torch.randn(64, 2) @ torch.randn(2, 64))  # rank 2: 2 * 128 < 64 * 64
    assert choose_ranks(net, 0.99) == {2: 2}  # 4x64 needs rank 4 > 256 / 68; 64x2 needs rank 2 > 128 / 66
    small = low_rank(net, energy=0.99)
    assert sizes(small) == [(64, 4), (2, 64), (64, 2), (2, 64)]
    assert sizes(low_rank(net, {0: 4, 4: 2})) == sizes(net)  # explicit ranks that do not save are skipped
    x = batch((4,))
    with torch.no_grad():
        torch.testing.assert_close(small(x), net(x), rtol=1e-4, atol=1e-5)
    assert counts(small)["params"] < counts(net)["params"]


def test_low_rank_never_grows_a_sparse_layer():
    layer = nn.Linear(64, 64, bias=False)
    with torch.no_grad():
        layer.weight.mul_(torch.rand(64, 64, generator=torch.Generator().manual_seed(6)) < 0.05)
    nnz = int(torch.count_nonzero(layer.weight))
    stored = 64 * 64 // 8 + 4 * nnz  # bitmask + values, cheaper than 16384 dense bytes
    assert payload_bytes(layer.weight) == stored
    r = max_saving_rank(layer)
    assert 1 <= r <= (stored - 1) // (4 * 128) < 64 * 64 // 128  # far below the dense rule's 31

    def saved(*layers):
        return policy_bytes(nn.Sequential(*layers))

    assert saved(*factorize(layer, r)) < saved(layer) <= saved(*factorize(layer, r + 1))


def test_search_ranks_finds_the_smallest_passing_ranks():
    torch.manual_seed(7)
    net = nn.Sequential(nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 2))

    def score(chain):  # "return" 1 when every factorised layer keeps rank >= 5, else 0
        ranks = [m.out_features for m in chain if isinstance(m, nn.Linear) and m.bias is None]
        return float(all(r >= 5 for r in ranks))

    ranks, evaluations = search_ranks(net, score, floor=0.5)
    assert ranks == {0: 5, 2: 5}  # the 2x32 output layer's only saving rank, 1, fails
    assert evaluations <= 2 * (1 + math.ceil(math.log2(15))) + 1
    assert search_ranks(net, lambda c: 0.0, floor=0.5)[0] == {}


# ---------------------------------------------------------------- magnitude pruning


def test_magnitude_prune_zeroes_the_smallest_weights_globally():
    hard = as_chain(mlp(), OBS_MLP)
    pruned = magnitude_prune(hard, 0.75)
    before = torch.cat([m.weight.detach().abs().flatten() for m in hard if isinstance(m, nn.Linear)])
    after = torch.cat([m.weight.detach().abs().flatten() for m in pruned if isinstance(m, nn.Linear)])
    assert int((after == 0).sum()) == round(0.75 * before.numel())
    assert after[after > 0].min() >= before[after == 0].max()
    assert torch.equal(after[after > 0], before[after > 0])
    assert torch.equal(pruned[0].bias, hard[0].bias)
    assert int(torch.count_nonzero(hard[0].weight)) == hard[0].weight.numel()  # input untouched
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="sparsity"):
            magnitude_prune(hard, bad)


def test_round_channels_removes_the_least_salient_channels_down_to_a_block():
    """5 and 6 conv channels become 4 and 4 (block 4): the channels removed are those with the
    smallest own-weight norm x read-weight norm, and the result is the policy with exactly those
    channels zeroed, shrunk. A layer already a multiple of the block, and Linear units, stay."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(2, 5, 3), nn.ReLU(), nn.Conv2d(5, 6, 3), nn.ReLU(), nn.Conv2d(6, 4, 3), nn.ReLU(),
        nn.Flatten(), nn.Linear(4 * 3 * 3, 7), nn.Tanh(), nn.Linear(7, 3),
    )  # fmt: skip
    with torch.no_grad():
        net[0].weight[3] *= 1e-3  # conv 1 (5 -> 4): channel 3 is the least salient
        net[2].weight[4] *= 1e-3  # conv 2 (6 -> 4): channel 4 (tiny own weights) and channel 0
        net[4].weight[:, 0] *= 1e-3  # (hardly read by conv 3) are the least salient
    blocked = round_channels(net, OBS_CNN, 4)
    assert sizes(blocked) == [(4, 2, 3, 3), (4, 4, 3, 3), (4, 4, 3, 3), (7, 36), (3, 7)]
    by_hand = copy.deepcopy(net)
    with torch.no_grad():
        by_hand[0].weight[3] = 0.0
        by_hand[2].weight[[0, 4]] = 0.0
    x = batch(OBS_CNN)
    with torch.no_grad():
        torch.testing.assert_close(blocked(x), shrink(by_hand, OBS_CNN)(x))
        assert not torch.allclose(blocked(x), net(x))  # it changes the policy (compress evaluates it)
    assert sizes(round_channels(net, OBS_CNN, 8)) == sizes(shrink(net, OBS_CNN))  # <= block: untouched
    padded = nn.Sequential(nn.Conv2d(2, 5, 3), nn.ReLU(), nn.Conv2d(5, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                           nn.Linear(4 * 7 * 7, 3))  # fmt: skip
    assert sizes(round_channels(padded, OBS_CNN, 4))[0] == (5, 2, 3, 3)  # shrink could not remove one
    with pytest.raises(ValueError, match="channel-block"):
        round_channels(net, OBS_CNN, 1)


# ---------------------------------------------------------------- figures


def hand_built() -> nn.Sequential:
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.arange(1.0, 13.0).reshape(4, 3))
        net[0].weight[1] = 0.0  # unit 1 closed: constant tanh(bias[1]) = tanh(0.5)
        net[0].weight[2, 0] = 0.0
        net[0].bias.copy_(torch.tensor([0.1, 0.5, 0.0, 0.2]))  # one bias exactly zero
        net[2].weight.copy_(torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, -1.0, 0.5, 0.0]]))
        net[2].bias.copy_(torch.tensor([0.3, -0.3]))
    return net


def test_figures_match_a_hand_built_example():
    hard = hand_built()
    dense = dense_reference(hard)
    assert dense["params"] == 3 * 4 + 4 + 4 * 2 + 2 == 26
    assert dense["weights"] == 12 + 8
    assert dense["bytes"] == len(to_bytes(policy_blob(hard, force_dense=True)))
    f = stage_figures(hard, (3,), dense)
    # zeros: 3 (row 1) + 1 in layer 0's weights, 2 in layer 2's, 1 bias
    assert (f["params"], f["nonzeros"], f["macs"]) == (26, 26 - 4 - 2 - 1, 12 + 8)
    assert f["sparsity"] == pytest.approx(6 / 20)
    assert f["compression_params"] == 0.0
    small = shrink(hard, (3,))
    g = stage_figures(small, (3,), dense)
    # unit 1 goes: Linear(3, 3) + Linear(3, 2) = 9 + 3 + 6 + 2 stored numbers
    assert (g["params"], g["macs"]) == (20, 9 + 6)
    assert g["compression_params"] == pytest.approx(1 - 20 / 26)
    assert g["sparsity"] == pytest.approx(1 - (8 + 4) / 20)  # 8 of 9 and 4 of 6 weights are non-zero
    assert g["bytes"] == len(to_bytes(policy_blob(small)))
    assert g["compression_bytes"] == pytest.approx(1 - g["bytes"] / dense["bytes"])
    with torch.no_grad():
        x = batch((3,))
        torch.testing.assert_close(small(x), hard(x))
        assert small[2].bias[0] == pytest.approx(0.3 + 2.0 * math.tanh(0.5))  # the folded constant


def test_stored_values_count_what_the_file_holds():
    """A large, mostly zero weight is saved as bitmask + values: only its non-zeros are stored numbers;
    the small dense tensors store every element, zeros included."""
    net = nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.arange(1.0, 4097.0).reshape(64, 64))
        net[0].weight.view(-1)[torch.arange(4096) % 10 != 0] = 0.0  # 410 of 4096 left
        net[2].weight[0, :5] = 0.0  # zeros inside a tensor saved dense still take space
    f = stage_figures(net, (64,), dense_reference(net))
    assert f["stored_values"] == 410 + 64 + 128 + 2
    assert f["nonzeros"] == 410 + 64 + 123 + 2 < f["stored_values"] < f["params"] == 4096 + 64 + 128 + 2
    blob = torch.load(io.BytesIO(to_bytes(policy_blob(net))), weights_only=True)
    held = sum(v["values"].numel() if isinstance(v, dict) else v.numel() for v in blob["state"].values())
    assert held == f["stored_values"]


def _busy(us: float):
    """A call that spins for `us` microseconds of wall time."""

    def call():
        end = time.perf_counter_ns() + us * 1e3
        while time.perf_counter_ns() < end:
            pass

    return call


def test_interleaved_latency_times_every_call_equally_and_ratios_to_the_reference():
    counts_: dict[str, int] = {"short": 0, "long": 0}

    def counted(name, call):
        def wrapped():
            counts_[name] += 1
            call()

        return wrapped

    timed = interleaved_latency_us(
        {"short": counted("short", _busy(100)), "long": counted("long", _busy(400))},
        reference="short",
        budget_s=0.3,
        rounds=6,
    )
    assert counts_["short"] == counts_["long"]  # the same number of calls each, warm-up included
    assert timed["short"]["latency_ratio"] == 1.0
    assert timed["short"]["latency_ratio_q25"] == timed["short"]["latency_ratio_q75"] == 1.0
    assert timed["long"]["latency_us"] >= 400 and timed["short"]["latency_us"] >= 100
    # 4x the spin: a shared machine can stretch either side, not below the spun ratio's half
    assert 2.0 < timed["long"]["latency_ratio"] < 8.0
    q = timed["long"]
    assert q["latency_ratio_q25"] <= q["latency_ratio"] <= q["latency_ratio_q75"]
    with pytest.raises(ValueError, match="reference"):
        interleaved_latency_us({"a": _busy(1)}, reference="b")


def test_torch_latencies_restore_threads_and_training_flags():
    net, threads = mlp(), torch.get_num_threads()
    net.train()
    timed = torch_latencies_us({"a": net, "b": net}, batch(OBS_MLP)[:1], "a", budget_s=0.05)
    assert set(timed) == {"a", "b"} and timed["a"]["latency_ratio"] == 1.0
    assert net.training and torch.get_num_threads() == threads


def test_macs_of_a_cnn_by_hand():
    chain = as_chain(cnn(), OBS_CNN)
    # conv 2->6 k3 on 9x9 -> 7x7; conv 6->5 k3 -> 5x5; linear 125->8; linear 8->3
    assert macs(chain, OBS_CNN) == 6 * 2 * 9 * 49 + 5 * 6 * 9 * 25 + 125 * 8 + 8 * 3


def test_bytes_store_each_tensor_in_its_cheaper_encoding():
    w = torch.zeros(64, 64)
    w[::8, ::4] = 1.5  # 128 non-zeros
    assert payload_bytes(w) == 64 * 64 // 8 + 128 * 4 < 64 * 64 * 4
    enc = encode_tensor(w)
    assert isinstance(enc, dict) and enc["values"].numel() == 128 and enc["mask"].numel() == 512
    assert torch.equal(decode_tensor(enc), w)
    dense_w = torch.randn(8, 8)
    assert torch.equal(encode_tensor(dense_w), dense_w) and payload_bytes(dense_w) == 256
    tiny = torch.zeros(4, 4)
    tiny[0, 0] = 1.0  # fewer payload bytes as bitmask + value, but the extra records cost more
    assert payload_bytes(tiny) == 2 + 4 and isinstance(encode_tensor(tiny), torch.Tensor)
    sparse_net, dense_net = nn.Sequential(nn.Linear(64, 64)), nn.Sequential(nn.Linear(64, 64))
    with torch.no_grad():
        sparse_net[0].weight.copy_(w)
    saved = 64 * 64 * 4 - payload_bytes(w)
    # the sparse form costs one more zip record and a small dict: a few hundred bytes at most
    assert saved - 512 <= policy_bytes(dense_net) - policy_bytes(sparse_net) <= saved
    assert policy_bytes(sparse_net, force_dense=True) == policy_bytes(dense_net)


def test_compressed_file_round_trips_with_plain_torch(tmp_path):
    net = close_units(cnn(), {1: [0]})
    chain = low_rank(shrink(harden(net, OBS_CNN), OBS_CNN), energy=0.9)
    path = tmp_path / "compressed.pt"
    path.write_bytes(compressed_bytes(chain, {"env_id": "X-v0", "figures": {"params": 3}}))
    loaded, meta = load_compressed(path, with_meta=True)
    assert meta["env_id"] == "X-v0"
    assert not loaded.training
    x = batch(OBS_CNN, scale=255.0)
    with torch.no_grad():
        assert torch.equal(loaded(x), chain(x))
    blob = torch.load(io.BytesIO(path.read_bytes()), weights_only=True)
    assert set(blob) == {"format", "version", "arch", "state", "meta"}
    (tmp_path / "bad.pt").write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="not a readable compressed policy"):
        load_compressed(tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="does not exist"):
        load_compressed(tmp_path / "missing.pt")


def test_per_layer_magnitude_prunes_every_layer_to_the_same_share():
    chain = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 4))
    with torch.no_grad():
        chain[2].weight.mul_(0.001)  # a small output layer: a global threshold would erase it
    glob = magnitude_prune(chain, 0.5)
    layer = magnitude_prune(chain, 0.5, per_layer=True)
    assert float((glob[2].weight == 0).float().mean()) == 1.0
    for i in (0, 2):
        assert float((layer[i].weight == 0).float().mean()) == pytest.approx(0.5, abs=0.01)
