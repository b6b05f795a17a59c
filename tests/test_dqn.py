"""DQN-L0: smoke runs (L0, GMP, dense) checked against what the run directory holds, the target network
(effective weights of the online one), the replay buffer (true final observations, uint8 frames,
stated size, episodes cut on resume), bit-exact resume, and bad input / divergence at the CLI."""

import copy
import dataclasses
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from helpers import (
    TINY,
    assert_one_line_error,
    assert_same_state,
    cli,
    closed_share,
    resume,
    run_dirs,
    run_script,
    summary,
    tiny_args,
    trained_policy,
)

import l0rl
from l0rl import gmp, l0
from l0rl.algos import dqn_l0 as dqn
from l0rl.runkit import (
    BUFFER_NAME,
    ReplayBuffer,
    UsageError,
    eval_metrics,
    evaluate,
    load_checkpoint,
    parse_args,
    read_metrics,
    update_average,
    update_target,
)
from l0rl.sparsity import make_sparsity

KEEP = dict(keep_best_every=100, keep_best_from=0.25, keep_best_episodes=2)
"""Candidates at steps 100, 200, 300 and 400 (the first at 25 % of the budget), 2 episodes each."""

PLAIN_L0 = dict(l0_random_closed=0.0, l0_schedule="constant", l0_freeze_sparsity=1.0)
"""Every gate free, a constant lambda, no freeze: the gate mechanics tests isolate (not the defaults)."""


def td_losses(run_dir: str) -> list[tuple[int, float]]:
    return [(r["global_step"], r["losses/td_loss"]) for r in read_metrics(run_dir) if "losses/td_loss" in r]


SMOKE = {
    "l0": dict(l0_drop_rate=0.5, l0_lr=0.05),  # half-open gates, fast gate lr: some close in 75 updates
    "gmp": dict(gmp_target=0.8, gmp_every=5),
    "none": {},
}


@pytest.mark.parametrize("sparsity", SMOKE)
def test_smoke_run_directory_holds_what_was_trained(sparsity, tmp_path):
    run_dir = dqn.train(tiny_args("dqn", tmp_path, sparsity=sparsity, **SMOKE[sparsity]))
    ckpt, s = load_checkpoint(run_dir), summary(run_dir)
    assert ckpt["finished"] and ckpt["global_step"] == 400 and ckpt["policy"]["sparsity"] == sparsity
    # the checkpoint alone (no algorithm code) rebuilds the policy that gave the final evaluation
    result = evaluate(l0rl.load_policy(run_dir), "CartPole-v1", {}, 2, seed=1 + 10_000, greedy=True)
    assert eval_metrics(result)["eval/episodic_return"] == s["eval/episodic_return"]
    policy = trained_policy(run_dir)
    if sparsity == "none":
        assert (
            s["sparsity"] == 0.0 and not list(l0.gated_layers(policy)) and not list(gmp.masked_layers(policy))
        )
    else:
        assert s["sparsity"] == closed_share(policy) > 0.0
    if sparsity == "gmp":  # pruned to the requested sparsity by the end (gmp_end = 0.8 of training)
        assert abs(closed_share(policy) - 0.8) <= 0.02
    # the last target update (step 400, after that step's gradient steps) copied the effective weights
    assert_same_state(ckpt["networks"]["target_network"], l0.dense_state_dict(policy))
    rows = read_metrics(run_dir)
    assert [step for step, _ in td_losses(run_dir)] == [200, 300, 400]
    # 400 transitions x (16 obs + 8 action + 4 reward + 4 done + 1 ended) + 16 per episode end held
    sizes = [r["charts/replay_buffer_bytes"] - 13_200 for r in rows if "charts/replay_buffer_bytes" in r]
    assert len(sizes) == 4 and all(b > 0 and b % 16 == 0 for b in sizes)
    if sparsity == "l0":
        # the defaults: 90 % closed at random, the target schedule's penalty closes the next 5 % and the
        # map freezes there: the gates' rate ends at 0 (lambda still logged, its penalty term 0)
        assert s["sparsity"] >= 0.95 and any(r.get("l0/lambda", 0) > 0 for r in rows)
        assert ckpt["optimizers"]["q_network"]["param_groups"][1]["lr"] == 0.0
    if sparsity == "gmp":
        assert any(r.get("gmp/scheduled_sparsity", 0) > 0 for r in rows)


@pytest.mark.mario
def test_mario_smoke(tmp_path):
    kw = dict(num_envs=1, total_timesteps=120, learning_starts=40, buffer_size=60, batch_size=8, log_every=40)
    run_dir = dqn.train(
        tiny_args("dqn", tmp_path, env_id="SuperMarioBros-7-1-v0", eval_episodes=1, eval_max_steps=50, **kw)
    )
    assert load_checkpoint(run_dir)["finished"]
    assert isinstance(trained_policy(run_dir)[1], torch.nn.Conv2d)
    buffer = torch.load(Path(run_dir) / BUFFER_NAME, weights_only=True)["buffer"]
    assert buffer["obs"].dtype == torch.uint8 and tuple(buffer["obs"].shape) == (60, 1, 4, 84, 84)


SPACES = (gym.spaces.Box(-np.inf, np.inf, (4,), np.float32), gym.spaces.Discrete(2))


@pytest.mark.parametrize("kind", ["l0", "gmp"])
def test_weight_average_is_the_mean_of_the_weights_with_the_latest_map(kind):
    torch.manual_seed(0)
    q = dqn.QNetwork(*SPACES)
    pruner = None
    if kind == "l0":
        l0.sparsify(q, "weight", 0.5)
    else:
        pruner = gmp.GradualMagnitudePruner({"q": gmp.attach(q)}, 0.5, 1)
    average = copy.deepcopy(q)
    seen = []
    for count in (1, 2, 3):
        with torch.no_grad():
            for p in q.parameters():
                p.uniform_(-3, 3)  # new weights, and for l0 new gates (some closed, some open)
        if pruner is not None:
            pruner.apply(0.3 * count)  # a new mask each time
        seen.append({k: v.clone() for k, v in q.state_dict().items()})
        update_average(average, q, count)
    for key, value in average.state_dict().items():
        if key.endswith("original") or key.endswith("bias"):  # weights: the mean of the three
            torch.testing.assert_close(value, sum(s[key] for s in seen) / 3, rtol=0, atol=1e-6)
        else:  # log_alpha, gate constants, masks: the latest
            assert torch.equal(value, seen[-1][key]), key
    assert (
        l0.stats(average) == l0.stats(q)
        and gmp.stats(average)["gmp/sparsity"] == gmp.stats(q)["gmp/sparsity"]
    )
    with pytest.raises(ValueError, match="count is the number of updates averaged"):
        update_average(average, q, 0)


def test_swa_run_saves_and_evaluates_the_weight_average(tmp_path):
    kw = dict(swa_start=0.5, l0_train_gates="deterministic", l0_random_closed=0.5)
    halfway = load_checkpoint(
        dqn.train(tiny_args("dqn", tmp_path / "half", halt_after=200, eval_episodes=0, **kw))
    )
    run_dir = dqn.train(tiny_args("dqn", tmp_path / "full", **kw))
    ckpt = load_checkpoint(run_dir)
    average, online = ckpt["networks"]["average"], ckpt["networks"]["q_network"]
    assert ckpt["loop"]["averaged"] == optimizer_steps(ckpt) - optimizer_steps(halfway) > 20
    assert_same_state(ckpt["policy"]["state"], average)
    assert all(not torch.equal(average[k], online[k]) for k in online if k.endswith("original"))
    assert all(torch.equal(average[k], online[k]) for k in online if k.endswith("log_alpha"))
    # the closing evaluation played the saved average, and its sparsity is the online network's map
    result = evaluate(l0rl.load_policy(run_dir), "CartPole-v1", {}, 2, seed=1 + 10_000, greedy=True)
    assert eval_metrics(result)["eval/episodic_return"] == summary(run_dir)["eval/episodic_return"]
    assert summary(run_dir)["l0/sparsity"] == closed_share(trained_policy(run_dir)) > 0


def test_keep_best_saves_and_evaluates_the_best_candidate_and_trains_the_same_weights(tmp_path):
    # a seed and rate whose candidates score 8.5 / 10 / 10 / 8.5: the best is not the last, and tied
    kw = dict(**SMOKE["l0"], seed=2, learning_rate=0.03)
    kept_dir = dqn.train(tiny_args("dqn", tmp_path / "kept", **KEEP, **kw))
    last_dir = dqn.train(tiny_args("dqn", tmp_path / "last", keep_best_every=0, **kw))
    kept, last = load_checkpoint(kept_dir), load_checkpoint(last_dir)
    # the selection episodes draw none of the training's randomness: both runs trained the same weights
    for net in ("q_network", "target_network"):
        assert_same_state(kept["networks"][net], last["networks"][net])
    assert "keep_best" not in last["schedulers"]
    scores = [
        (r["global_step"], r["keep_best/return"]) for r in read_metrics(kept_dir) if "keep_best/return" in r
    ]
    assert [step for step, _ in scores] == [100, 200, 300, 400]
    best = max(score for _, score in scores)
    state = kept["schedulers"]["keep_best"]
    assert state["best_return"] == best and state["best_step"] == max(t for t, v in scores if v == best) < 400
    # the saved policy is that candidate, not the last weights; it plays its selection score again on the
    # selection seeds (seed + 20 000) and the final evaluation (seed + 10 000) played it
    assert_same_state(kept["policy"]["state"], state["kept"])
    assert not all(torch.equal(state["kept"][k], v) for k, v in kept["networks"]["q_network"].items())
    policy = l0rl.load_policy(kept_dir)
    for seed, expected in ((2 + 20_000, best), (2 + 10_000, summary(kept_dir)["eval/episodic_return"])):
        assert (
            eval_metrics(evaluate(policy, "CartPole-v1", {}, 2, seed=seed))["eval/episodic_return"]
            == expected
        )
    assert summary(kept_dir)["l0/sparsity"] == closed_share(trained_policy(kept_dir)) > 0
    # benchmark.evaluate --network q_network plays the last weights: what the run without a kept policy saved
    from benchmark.evaluate import main as evaluate_main

    (row,) = evaluate_main([kept_dir, "--network", "q_network", "--episodes", "2"])
    assert (
        row["return_mean"]
        == summary(last_dir)["eval/episodic_return"]
        != summary(kept_dir)["eval/episodic_return"]
    )
    with pytest.raises(
        UsageError, match="no network 'online' in the checkpoint; it has q_network, target_network"
    ):
        evaluate_main([kept_dir, "--network", "online"])


@pytest.mark.parametrize("kind", ["l0", "gmp"])
@pytest.mark.parametrize("tau", [1.0, 0.25])
def test_target_network_tracks_effective_weights(kind, tau):
    torch.manual_seed(0)
    q, target = dqn.QNetwork(*SPACES), dqn.QNetwork(*SPACES)
    if kind == "l0":
        l0.sparsify(q, "unit", 0.5, output_granularity="weight")
        with torch.no_grad():
            for p in l0.gate_parameters(q):
                p.uniform_(-3, 3)  # some gates closed, some open
    else:
        gmp.GradualMagnitudePruner({"q": gmp.attach(q)}, 0.5, 1).apply(0.5)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    update_target(target, q, tau)
    dense = l0.dense_state_dict(q)
    assert set(dense) == set(target.state_dict())
    assert any((v == 0).any() for k, v in dense.items() if k.endswith("weight")), (
        "no gate closed, no weight pruned"
    )
    for k, v in target.state_dict().items():
        torch.testing.assert_close(
            v, tau * dense[k] + (1 - tau) * before[k], rtol=0, atol=0 if tau == 1 else 1e-6
        )
    if tau == 1.0:  # the target acts exactly like the online network with deterministic gates
        x = torch.randn(16, 4)
        with l0.deterministic_gates(q):
            torch.testing.assert_close(target(x), q(x), rtol=0, atol=0)


def fill(rb: ReplayBuffer, steps: int, end_env1_at: set[int]) -> np.ndarray:
    """Two envs (action = env index, reward = step) whose obs encode 10 * step + env; env 1 ends
    its episode at the given steps, and the next row then holds a reset obs (7), as SAME_STEP
    autoreset does. Returns the obs after the last step."""
    shape, dtype = rb.obs.shape[2:], rb.obs.dtype
    obs = np.stack([np.full(shape, e, dtype) for e in range(2)])
    for t in range(steps):
        nxt = np.stack([np.full(shape, (t + 1) * 10 + e, dtype) for e in range(2)])
        final = {1: nxt[1].copy()} if t in end_env1_at else {}
        if final:
            nxt[1] = 7
        rb.add(obs, np.array([0, 1]), np.full(2, t), np.array([False, t in end_env1_at]), final)
        obs = nxt
    return obs


def check_sample(rb: ReplayBuffer, steps: int, end_at: set[int]) -> None:
    np.random.seed(0)
    obs, actions, next_obs, rewards, dones = rb.sample(500)
    assert obs.dtype == next_obs.dtype == np.uint8
    t, env = rewards.astype(int), actions
    first = obs[:, 0, 0, 0]
    assert ((first == t * 10 + env) | ((first == 7) & np.isin(t - 1, list(end_at)))).all()
    # every sampled next obs is the true one, never the reset obs, and the newest row is not sampled
    np.testing.assert_array_equal(next_obs[:, 0, 0, 0], (t + 1) * 10 + env)
    assert (t < steps - 1).all() and (t >= steps - rb.rows).all()
    finished = [e == 1 and ti in end_at for ti, e in zip(t, env)]
    np.testing.assert_array_equal(dones, finished)
    assert any(finished), "the sample should contain finished transitions"


SPACE_U8 = gym.spaces.Box(0, 255, (4, 3, 3), np.uint8)


@pytest.mark.parametrize("steps", [6, 23])  # within the ring, and wrapped around it twice
def test_replay_buffer_returns_true_final_obs(steps):
    rb = ReplayBuffer(20, 2, SPACE_U8)
    end_at = {2, 4, 17, 19}
    fill(rb, steps, end_at)
    assert rb.obs.dtype == np.uint8
    assert len(rb.final_obs) == int(rb.ended.sum())  # episode ends overwritten in the ring are gone
    check_sample(rb, steps, end_at)


def test_replay_buffer_cut_keeps_the_true_next_obs():
    """Resuming without the env state restarts the episodes in flight: the newest transitions must
    keep the obs the env was in, not the reset obs the next row holds."""
    rb = ReplayBuffer(20, 2, SPACE_U8)
    rb.cut(np.zeros((2, 4, 3, 3), np.uint8))  # an empty buffer: nothing to cut
    assert not rb.final_obs and not rb.ended.any()
    end_at = {4, 8}
    last = fill(rb, 9, end_at)  # env 1 ended at the newest step (8): its final obs is already kept
    rb.cut(last)
    rb.add(np.full_like(last, 7), np.array([0, 1]), np.full(2, 9), np.array([False, False]), {})
    assert rb.ended[8].all() and len(rb.final_obs) == 3
    assert rb.dones[8, 0] == 0, "a cut episode is truncated, not terminated: it still bootstraps"
    check_sample(rb, 10, end_at)


class ParityEnv(gym.Env):
    """obs = (t, parity): even episodes terminate at t = 3, odd ones run on and are truncated at
    t = 4 by the TimeLimit of the registration."""

    def __init__(self, render_mode=None):
        self.observation_space = gym.spaces.Box(0, 10, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.t, self.episode = 0, -1

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.episode = 0, self.episode + 1
        return np.array([0, self.episode % 2], np.float32), {}

    def step(self, action):
        self.t += 1
        obs = np.array([self.t, self.episode % 2], np.float32)
        return obs, 1.0, self.t == 3 and self.episode % 2 == 0, False, {}


gym.register("l0rlParity-v0", entry_point=ParityEnv, max_episode_steps=4)


def test_training_stores_true_final_obs_and_bootstraps_truncations(tmp_path):
    args = tiny_args(
        "dqn", tmp_path, env_id="l0rlParity-v0", eval_episodes=0, total_timesteps=300, buffer_size=200
    )
    run_dir = dqn.train(args)
    rb = ReplayBuffer(200, 2, ParityEnv().observation_space)
    rb.load_state_dict(torch.load(Path(run_dir) / BUFFER_NAME, weights_only=True)["buffer"])
    obs, _, next_obs, _, dones = rb.sample(1000)
    # never the reset obs (t = 0) as a next obs; the done flag only where an episode terminated
    np.testing.assert_array_equal(next_obs[:, 0], obs[:, 0] + 1)
    np.testing.assert_array_equal(dones, (next_obs[:, 0] == 3) & (obs[:, 1] == 0))
    assert ((next_obs[:, 0] == 4) & (dones == 0)).any(), "truncated transitions must be stored, not done"


def test_replay_buffer_size_in_bytes():
    obs_bytes = 4 * 84 * 84
    rb = ReplayBuffer(100_000, 4, gym.spaces.Box(0, 255, (4, 84, 84), np.uint8))  # lazily zeroed
    # per transition: the uint8 frame stack once + int64 action + float32 reward + float32 done + bool end
    assert rb.nbytes == 100_000 * (obs_bytes + 8 + 4 + 4 + 1) == 2_824_100_000  # as the module docstring says
    small = ReplayBuffer(20, 2, SPACE_U8)
    fill(small, 6, {2, 4})
    assert small.nbytes == 20 * (36 + 17) + 2 * 36  # plus one stored final obs per episode end


def optimizer_steps(ckpt: dict) -> int:
    return int(ckpt["optimizers"]["q_network"]["state"][0]["step"])


@pytest.mark.parametrize("anneal_weights", [True, False])
@pytest.mark.parametrize("anneal_gates", [True, False])
def test_each_learning_rate_is_annealed_to_zero_only_when_asked(anneal_weights, anneal_gates, tmp_path):
    kw = dict(eval_episodes=0, learning_rate=1e-3, l0_lr=0.01)
    run_dir = dqn.train(tiny_args("dqn", tmp_path, anneal_lr=anneal_weights, l0_anneal_lr=anneal_gates, **kw))
    weights, gates = [g["lr"] for g in load_checkpoint(run_dir)["optimizers"]["q_network"]["param_groups"]]
    # the last gradient step is taken at env step 400 of 400: 1 - 399/400 of the rate is left
    assert weights == pytest.approx(1e-3 / 400 if anneal_weights else 1e-3)
    assert gates == pytest.approx(0.01 / 400 if anneal_gates else 0.01)


def gate_logits(ckpt: dict) -> torch.Tensor:
    state = ckpt["networks"]["q_network"]
    return torch.cat([v.flatten() for k, v in sorted(state.items()) if k.endswith("log_alpha")])


@pytest.mark.parametrize(
    ("train_gates", "drop_rate", "gates_learn"),
    [("sampled", 0.05, True), ("deterministic", 0.05, False), ("deterministic", 0.3, True)],
)
def test_deterministic_training_gates_pass_td_gradient_only_to_gates_not_fully_open(
    train_gates, drop_rate, gates_learn, tmp_path
):
    # lambda 0, so only the TD loss moves log_alpha. Drop rate 0.05 starts every gate at log_alpha
    # ~2.94, where the deterministic gate is exactly 1 (from log 11 = 2.40 on): no TD gradient can
    # reach it, while sampled gates fall below 1 on ~21 % of draws. At drop rate 0.3 (log_alpha ~0.85)
    # the deterministic gate is ~0.74 and learns.
    kw = dict(eval_episodes=0, l0_lambda=0.0, l0_drop_rate=drop_rate, l0_train_gates=train_gates, **PLAIN_L0)
    before = gate_logits(
        load_checkpoint(dqn.train(tiny_args("dqn", tmp_path / "a", learning_starts=400, **kw)))
    )
    after_ckpt = load_checkpoint(dqn.train(tiny_args("dqn", tmp_path / "b", **kw)))
    assert optimizer_steps(after_ckpt) > 50
    moved = gate_logits(after_ckpt) != before
    if gates_learn:
        assert moved.float().mean() > 0.5
    else:
        assert not moved.any()


@pytest.mark.parametrize(
    ("cost", "prices"), [("params", [1, 1, 1]), ("erk", [480 / 124, 10080 / 204, 168 / 86])]
)
def test_l0_cost_prices_each_layer_of_the_q_network(cost, prices, tmp_path):
    # erk: fan_in x fan_out / (fan_in + fan_out) per weight of the 4-120-84-2 CartPole network, so the
    # penalty's gradient on one input weight is 12.8x smaller than on one hidden weight
    args, _ = parse_args(dqn.Args, argv=["--l0-cost", cost])
    q_network = dqn.QNetwork(gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2))
    make_sparsity(args, {"q_network": q_network}, {"q_network": args.l0_lambda})
    dqn.gate(q_network, args, torch.zeros((1, 4)))
    assert [g.cost_per_weight for _, _, g in l0.gated_layers(q_network)] == pytest.approx(prices)
    # the loop's penalty is lambda x the share of open weights at these prices: the last update's,
    # recomputed from the checkpoint (the gates' rate is annealed to 1/400 by then, so they hardly move)
    kw = dict(eval_episodes=0, l0_cost=cost, l0_lambda=5.0, l0_lr=0.05, l0_drop_rate=0.5, l0_anneal_lr=True)
    kw |= PLAIN_L0
    run_dir = dqn.train(tiny_args("dqn", tmp_path, **kw))
    rows = [r for r in read_metrics(run_dir) if r["global_step"] == 400 and "losses/l0_penalty" in r]
    logged = rows[0]["losses/l0_penalty"]
    net = trained_policy(run_dir)
    l0.set_costs(net, cost)
    assert logged == pytest.approx(5.0 * float(l0.penalty(net).detach()), rel=5e-4)  # measured: 5e-5
    # and not at the other prices (the hidden layer dominates both shares: they differ by 0.5 %)
    l0.set_costs(net, "erk" if cost == "params" else "params")
    assert logged != pytest.approx(5.0 * float(l0.penalty(net).detach()), rel=2e-3)


@pytest.mark.parametrize("freeze_at", [0.5, 1.0])
def test_freeze_fixes_the_sparsity_map_but_not_the_weights(freeze_at, tmp_path):
    # gradient steps past env step freeze_at x 400 leave log_alpha as the halt at step 200 saw it
    kw = dict(
        eval_episodes=0, l0_lr=0.05, l0_drop_rate=0.5, l0_lambda=5.0, l0_freeze_at=freeze_at, **PLAIN_L0
    )
    part = dqn.train(tiny_args("dqn", tmp_path, halt_after=200, **kw))
    halted = load_checkpoint(part)
    end = load_checkpoint(resume("dqn", part))
    assert optimizer_steps(end) > optimizer_steps(halted) + 20
    before, after = halted["networks"]["q_network"], end["networks"]["q_network"]
    assert all(not torch.equal(before[k], after[k]) for k in after if k.endswith("weight.original"))
    assert torch.equal(gate_logits(halted), gate_logits(end)) == (freeze_at < 1.0)
    gates_lr = end["optimizers"]["q_network"]["param_groups"][1]["lr"]
    assert gates_lr == (0.0 if freeze_at < 1.0 else 0.05)


def test_freeze_at_a_sparsity_holds_the_map_from_the_step_it_is_reached(tmp_path):
    def sparsity(run_dir: str) -> float:  # as the training loop measures it
        return l0.stats(trained_policy(run_dir))["l0/sparsity"]

    kw = dict(eval_episodes=0, l0_lr=0.1, l0_drop_rate=0.5, l0_lambda=20.0)
    reached = sparsity(dqn.train(tiny_args("dqn", tmp_path / "free", halt_after=200, **kw)))
    assert 0.0 < reached < 1.0, "the free run closed some gates by step 200"
    # the same seed follows the free run's path until it first reaches that sparsity, by step 200
    part = dqn.train(tiny_args("dqn", tmp_path / "frozen", halt_after=200, l0_freeze_sparsity=reached, **kw))
    halted, at_halt = load_checkpoint(part), sparsity(part)
    end = load_checkpoint(resume("dqn", part))
    assert optimizer_steps(end) > optimizer_steps(halted) + 20
    assert torch.equal(gate_logits(halted), gate_logits(end))
    assert sparsity(part) == at_halt >= reached
    assert end["optimizers"]["q_network"]["param_groups"][1]["lr"] == 0.0


def test_gates_closed_at_random_before_training_stay_closed_to_the_end(tmp_path):
    # the map drawn before the first gradient step (the checkpoint of a halt at step 100) holds the
    # ERK shares, and deterministic training gates keep every one of those gates at the floor
    kw = dict(eval_episodes=0, l0_random_closed=0.9, l0_train_gates="deterministic", l0_drop_rate=0.3)
    part = dqn.train(tiny_args("dqn", tmp_path, halt_after=100, l0_lr=0.05, **kw))
    halted = gate_logits(load_checkpoint(part))
    start = halted == l0.LOG_ALPHA_MIN
    sizes = [480, 10080, 168]
    kept = [round(d * n) for d, n in zip(l0.erk_densities([(120, 4), (84, 120), (2, 84)], 0.1), sizes)]
    assert int(start.sum()) == sum(sizes) - sum(kept)
    end = load_checkpoint(resume("dqn", part))
    assert optimizer_steps(end) > 50
    logits = gate_logits(end)
    assert bool((logits[start] == l0.LOG_ALPHA_MIN).all())
    assert not torch.equal(logits[~start], halted[~start])
    assert closed_share(trained_policy(part)) >= 1 - sum(kept) / sum(sizes)


MODES = ["constant", "linear", "cosine", "target", "gmp", "anneal", "deterministic", "swa", "keep"]


@pytest.mark.parametrize("mode", MODES)
def test_resume_is_bit_exact(mode, tmp_path):
    kw = dict(sparsity="gmp", gmp_every=5) if mode == "gmp" else dict(l0_schedule=mode)
    kw = dict(swa_start=0.3) if mode == "swa" else kw  # the mean spans the halt at 200
    kw = dict(l0_anneal_lr=True, anneal_lr=True) if mode == "anneal" else kw
    kw = dict(l0_train_gates="deterministic", l0_schedule="linear") if mode == "deterministic" else kw
    kw = KEEP if mode == "keep" else kw  # candidates on both sides of the halt at 200
    kw |= dict(eval_episodes=0, target_network_frequency=50)
    full = dqn.train(tiny_args("dqn", tmp_path / "full", **kw))
    part = dqn.train(tiny_args("dqn", tmp_path / "part", halt_after=200, **kw))
    halted = load_checkpoint(part)
    assert not halted["finished"] and halted["global_step"] == 200
    assert torch.load(Path(part) / BUFFER_NAME, weights_only=True)["global_step"] == 200
    resume("dqn", part)
    a, b = load_checkpoint(full), load_checkpoint(part)
    assert b["finished"] and a["global_step"] == b["global_step"] == 400
    assert 0 < optimizer_steps(halted) < optimizer_steps(b), "learning both before and after the halt"
    for net in ("q_network", "target_network") + (("average",) if mode == "swa" else ()):
        assert_same_state(a["networks"][net], b["networks"][net])
    # the defaults keep a policy too (one candidate here, at the end): every mode compares it
    kept_a, kept_b = a["schedulers"].pop("keep_best"), b["schedulers"].pop("keep_best")
    assert_same_state(kept_a.pop("kept"), kept_b.pop("kept"))
    assert kept_a == kept_b and kept_a["best_return"] is not None
    assert_same_state(a["policy"]["state"], b["policy"]["state"])
    assert a["schedulers"] == b["schedulers"]
    assert td_losses(full) == td_losses(part), "resumed record must not repeat or skip steps"


def test_resume_without_saved_buffer_refills_it(tmp_path, capsys):
    args = tiny_args(
        "dqn", tmp_path, total_timesteps=600, eval_episodes=0, save_buffer_max_mb=0, halt_after=300
    )
    part = dqn.train(args)
    assert load_checkpoint(part)["loop"]["learn_from"] == 100
    assert not (Path(part) / BUFFER_NAME).exists()
    resume("dqn", part)
    assert "refilling" in capsys.readouterr().out
    # learning stops at the resume step (300) and starts again learning_starts (100) steps later
    assert [step for step, _ in td_losses(part)] == [200, 300, 500, 600]


def test_refill_wait_survives_another_halt(tmp_path):
    """A lost buffer file is refilled; a halt during the refill keeps the wait: the buffer saved
    then holds fewer than learning_starts steps."""
    part = dqn.train(tiny_args("dqn", tmp_path, total_timesteps=600, eval_episodes=0, halt_after=300))
    (Path(part) / BUFFER_NAME).unlink()
    resume("dqn", part, halt_after=50)
    assert load_checkpoint(part)["loop"]["learn_from"] == 400
    resume("dqn", part)
    assert [step for step, _ in td_losses(part)] == [200, 300, 500, 600]


def test_resume_box2d_restarts_episodes_and_cuts_the_buffer(tmp_path):
    """LunarLander (Box2D) pickles only its constructor arguments: resume restarts the episodes in
    flight, and the transitions of the halt step keep the obs the envs were in."""
    part = dqn.train(tiny_args("dqn", tmp_path, env_id="LunarLander-v3", eval_episodes=0, halt_after=200))
    halted = load_checkpoint(part)
    assert halted["env_state_step"] is None
    before = torch.load(Path(part) / BUFFER_NAME, weights_only=True)["buffer"]
    resume("dqn", part)
    after = torch.load(Path(part) / BUFFER_NAME, weights_only=True)["buffer"]
    row = 99  # the halt step's row: vector step 100 of 200 rows
    assert after["ended"][row].all() and bool(after["full"])
    for env in range(2):
        expected = (
            before["final_obs"][row * 2 + env] if before["ended"][row, env] else halted["loop"]["obs"][env]
        )
        torch.testing.assert_close(after["final_obs"][row * 2 + env], expected, rtol=0, atol=0)


@pytest.mark.parametrize(
    "argv, hint",
    [
        (["--learning-rate", "0"], "--learning-rate must be > 0"),
        (["--l0-lr", "-1"], "--l0-lr must be > 0"),
        (["--gamma", "0"], "--gamma must be in (0, 1]"),
        (["--gamma", "1.5"], "--gamma must be in (0, 1]"),
        (["--tau", "0"], "--tau must be in (0, 1]"),
        (["--batch-size", "0"], "--batch-size must be >= 1"),
        (["--buffer-size", "1"], "--buffer-size must be >= 2 x --num-envs"),
        (["--end-e", "1.5"], "--start-e and --end-e must be in [0, 1]"),
        (["--l0-lambda", "-1"], "--l0-lambda must be >= 0"),
        (["--l0-drop-rate", "1"], "--l0-drop-rate must be in (0, 1)"),
        (["--l0-freeze-at", "0"], "--l0-freeze-at must be in (0, 1]"),
        (["--l0-freeze-sparsity", "1.5"], "--l0-freeze-sparsity must be in (0, 1]"),
        (["--l0-random-closed", "1"], "--l0-random-closed must be in [0, 1), got 1.0"),
        (["--keep-best-from", "1.5"], "--keep-best-from must be in [0, 1], got 1.5"),
        (["--keep-best-episodes", "0"], "--keep-best-episodes must be >= 1"),
        (["--keep-best-every", "-1"], "--keep-best-every must be >= 0"),
        (
            ["--l0-schedule", "linear", "--l0-warmup", "0.1", "--l0-ramp-end", "0.05"],
            "--l0-schedule linear: ramp_end",
        ),
        (["--env-id", "Pendulum-v1"], "Pendulum-v1: DQN needs a discrete action space; use sac_l0.py"),
        (["--no-l0", "--l0-lambda", "5"], "--l0-lambda applies to --sparsity l0 only"),
        (["--sparsity", "gmp", "--l0-schedule", "linear"], "--l0-schedule applies to --sparsity l0 only"),
    ],
)
def test_bad_input_one_line_exit_2(argv, hint, tmp_path, capsys):
    assert_one_line_error(cli("dqn", "--no-progress", *argv, cwd=tmp_path), 2, hint)
    assert run_dirs(tmp_path) == [] and not (tmp_path / "runs").exists()


def test_bad_choice_is_one_line_and_leaves_no_run_dir(tmp_path, capsys):
    proc = cli("dqn", "--wandb-mode", "bogus", cwd=tmp_path)  # tyro's parser rejects it: still one line
    assert_one_line_error(proc, 2, "invalid choice 'bogus' for argument '--wandb-mode'")
    assert not (tmp_path / "runs").exists()


def test_divergence_exits_3_and_keeps_a_finite_checkpoint(tmp_path):
    """An absurd learning rate blows the TD loss up within a few updates: the run stops with exit 3
    and one error line, and the checkpoint on disk is the last finite one."""
    argv = [f"--{k.replace('_', '-')}={v}" for k, v in TINY["dqn"].items()]
    proc = run_script(
        "dqn", *argv, "--learning-rate", "1e10", "--checkpoint-every", "50", "--no-progress", cwd=tmp_path
    )
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert proc.returncode == 3 and "Traceback" not in proc.stderr, proc.stderr
    assert len(errors) == 1 and "diverged" in errors[0], proc.stderr
    [run_dir] = run_dirs(tmp_path)
    ckpt = load_checkpoint(run_dir)
    assert 100 <= ckpt["global_step"] < 400 and not ckpt["finished"]
    for net in ckpt["networks"].values():
        assert all(torch.isfinite(v).all() for v in net.values() if v.is_floating_point())
    assert not (run_dir / "summary.json").exists() or "eval/episodic_return" not in summary(run_dir)


def test_a_fork_keeps_its_sources_replay_buffer_and_learns_on(tmp_path, capsys):
    source = Path(
        dqn.train(tiny_args("dqn", tmp_path / "src", total_timesteps=600, eval_episodes=0, halt_after=300))
    )
    before = {p.name: p.read_bytes() for p in source.iterdir() if p.is_file() and p.name != ".lock"}
    args = tiny_args("dqn", tmp_path / "fork", total_timesteps=600, eval_episodes=0, l0_schedule="target")
    fork = Path(dqn.train(dataclasses.replace(args, fork_from=str(source))))
    after = {p.name: p.read_bytes() for p in source.iterdir() if p.is_file() and p.name != ".lock"}
    assert after == before and "refilling" not in capsys.readouterr().out
    ckpt = load_checkpoint(fork)
    assert ckpt["finished"] and ckpt["schedulers"]["q_network"]["mode"] == "target"
    # the copied buffer let it learn from the fork's first step: no learning_starts wait again
    assert [step for step, _ in td_losses(fork)] == [200, 300, 400, 500, 600]
