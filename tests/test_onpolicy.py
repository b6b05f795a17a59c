"""PPO-L0 and A2C-L0: every env family with L0, GMP and dense, the checkpoint being the policy that was
evaluated; every transition real; bit-exact resume for every L0 schedule and for GMP; bad input and
divergence ending in one line with their exit codes."""

import dataclasses
import math
import pickle
import shutil
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from helpers import (
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
from l0rl.algos import a2c_l0, ppo_l0
from l0rl.errors import NonFiniteError
from l0rl.runkit import eval_metrics, evaluate, load_checkpoint, read_metrics
from l0rl.sparsity import make_sparsity

ALGOS = {"ppo": ppo_l0, "a2c": a2c_l0}
BATCH = {"ppo": 32, "a2c": 10}  # env steps per iteration of a tiny_args() run


def files(run_dir: Path) -> dict[str, bytes]:
    """The run's files (the lock file holds the pid of whoever locked it last, so it is left out)."""
    return {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file() and p.name != ".lock"}


def logged_losses(run_dir) -> list[tuple]:
    return [
        (r["global_step"], r["losses/value_loss"], r["losses/policy_loss"], r["losses/l0_penalty"])
        for r in read_metrics(run_dir)
        if "losses/value_loss" in r
    ]


def check_run(run_dir: str, sparsity: str, mixed: bool = True) -> None:
    ckpt = load_checkpoint(run_dir)
    args, s = ckpt["args"], summary(run_dir)
    assert ckpt["finished"] and ckpt["global_step"] == args["total_timesteps"] == s["global_step"]
    assert ckpt["policy"]["sparsity"] == args["sparsity"] == s["sparsity_kind"] == sparsity
    losses = logged_losses(run_dir)
    assert losses and all(math.isfinite(v) for row in losses for v in row[1:])
    # the checkpoint is the policy that was evaluated: rebuilt from data alone (no algorithm file),
    # it earns exactly the summary's figures on the same episodes
    result = evaluate(
        l0rl.load_policy(run_dir),
        args["env_id"],
        ckpt["env_options"],
        args["eval_episodes"],
        args["seed"] + 10_000,
        greedy=args["eval_greedy"],
        max_steps=args["eval_max_steps"],
    )
    again = eval_metrics(result)
    assert again["eval/episodic_return"] == s["eval/episodic_return"]
    assert again == {k: s[k] for k in again}
    policy = trained_policy(run_dir)
    gated, masked = list(l0.gated_layers(policy)), list(gmp.masked_layers(policy))
    assert (bool(gated), bool(masked)) == (sparsity == "l0", sparsity == "gmp")
    if sparsity == "none":
        assert s["sparsity"] == 0.0
        return
    # the summary's sparsity is the share of weights the stored policy really has at zero
    assert s["sparsity"] == closed_share(policy)
    assert not mixed or 0.0 < s["sparsity"] < 1.0, "the settings must close some weights, not all"
    key = "l0/lambda" if sparsity == "l0" else "gmp/scheduled_sparsity"
    assert any(key in r for r in read_metrics(run_dir))


# Gate settings that close some but not all of a tiny run's weights, so that the sparsity compared
# above counts real zeros (the share closed moves steeply with --l0-lr; these land mid-way).
SPARSE = {
    "l0": {"l0_schedule": "constant", "l0_lambda_actor": 0.1, "l0_drop_rate": 0.9, "l0_anneal_lr": False},
    "gmp": {"gmp_every": 1},  # tiny runs make too few updates for the default mask period of 100
    "none": {},
}
L0_LR = {"ppo": 0.04, "a2c": 0.045}


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Acrobot-v1", "LunarLander-v3", "NeedleReach-v0"])
@pytest.mark.parametrize("sparsity", ["l0", "gmp", "none"])
def test_smoke(algo, env_id, sparsity, tmp_path):
    kw = {**SPARSE[sparsity], **({"l0_lr": L0_LR[algo]} if sparsity == "l0" else {})}
    check_run(ALGOS[algo].train(tiny_args(algo, tmp_path, env_id=env_id, sparsity=sparsity, **kw)), sparsity)


@pytest.mark.mario
@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_mario_smoke(algo, tmp_path):
    budget = {"ppo": dict(num_steps=8, update_epochs=1, total_timesteps=16), "a2c": dict(total_timesteps=10)}
    kw = dict(env_id="SuperMarioBros-7-1-v0", num_envs=1, eval_episodes=1, eval_max_steps=20, **budget[algo])
    run_dir = ALGOS[algo].train(tiny_args(algo, tmp_path, **kw))
    check_run(run_dir, "l0", mixed=False)
    assert isinstance(trained_policy(run_dir)[1], torch.nn.Conv2d)


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_the_shared_cnn_torso_runs_once_with_both_heads_outputs_and_gradients(algo):
    # get_action_and_value runs the torso once for actor and critic (it holds ~all the MACs); it
    # must give what the two networks give on their own, in outputs and in every gradient
    torch.manual_seed(0)
    obs = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    agent = ALGOS[algo].Agent(obs, gym.spaces.Discrete(7)).to(memory_format=torch.channels_last)
    for net in (agent.actor, agent.critic_own):
        l0.sparsify(net, "mixed", output_granularity="weight")
    calls = []
    agent.actor[1].register_forward_hook(lambda *_: calls.append(1))
    x, actions = torch.randint(0, 256, (5, *obs.shape), dtype=torch.uint8), torch.randint(0, 7, (5,))
    with l0.frozen_gates(agent):  # one gate draw for both computations
        _, logprob, entropy, value = agent.get_action_and_value(x, actions)
        assert len(calls) == 1
        (logprob.sum() + entropy.sum() + value.sum()).backward()
        once = {name: p.grad.clone() for name, p in agent.named_parameters()}
        agent.zero_grad()
        dist = torch.distributions.Categorical(logits=agent.actor(x))
        ref_value = agent.critic(x)
        assert len(calls) == 3
        assert torch.equal(logprob, dist.log_prob(actions)) and torch.equal(value, ref_value)
        (dist.log_prob(actions).sum() + dist.entropy().sum() + ref_value.sum()).backward()
    gated = [name for name in once if name.endswith("log_alpha")]
    assert len(gated) == 6 and all(once[n].abs().sum() > 0 for n in once)
    for name, p in agent.named_parameters():
        torch.testing.assert_close(once[name], p.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_mac_costs_with_a_gated_critic_on_the_shared_cnn(tmp_path):
    # Mario's defaults gate the critic's head, which sits on the torso's 512 features: the MACs of
    # every gate are counted from the observation through the whole network (20x20, 9x9 and 7x7
    # output positions for the three convolutions, 1 for every Linear weight)
    obs = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    agent = ppo_l0.Agent(obs, gym.spaces.Discrete(7))
    args = ppo_l0.Args(l0_cost="macs", l0_granularity="unit")
    make_sparsity(args, {"actor": agent.actor, "critic": agent.critic_own}, {"actor": 1.0, "critic": 0.5})
    ppo_l0.gate(agent, args, torch.zeros((1, *obs.shape)))
    costs = {name: g.cost_per_weight for name, _, g in l0.gated_layers(agent)}
    assert costs == {
        "actor.1": 400,
        "actor.3": 81,
        "actor.5": 49,
        "actor.8": 1,
        "actor.10": 1,
        "critic.10": 1,
    }
    kw = dict(env_id="SuperMarioBros-7-1-v0", num_envs=1, num_steps=8, update_epochs=1, total_timesteps=16)
    run_dir = ppo_l0.train(
        tiny_args("ppo", tmp_path, eval_episodes=0, l0_cost="macs", l0_lambda_critic=0.5, **kw)
    )
    assert load_checkpoint(run_dir)["global_step"] == 16


class CountingEnv(gym.Env):
    """Episodes of 3 steps; counts real step() calls so a test can tell real transitions from
    autoreset filler (NEXT_STEP autoreset would put transitions in the batch that no step() made)."""

    real_steps = 0
    episodes = 0

    def __init__(self, render_mode=None):
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(-1, 10, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0, 1.0], np.float32), {}

    def step(self, action):
        type(self).real_steps += 1
        self.t += 1
        done = self.t >= 3
        type(self).episodes += int(done)
        return np.array([self.t, 1.0], np.float32), 1.0, done, False, {}


gym.register("l0rlCounting-v0", entry_point=CountingEnv)


@pytest.mark.parametrize("algo, log_every", [("ppo", 50), ("a2c", 25)])
def test_every_transition_is_real_and_logging_counts_env_steps(algo, log_every, tmp_path):
    CountingEnv.real_steps = CountingEnv.episodes = 0
    args = tiny_args(algo, tmp_path, env_id="l0rlCounting-v0", eval_episodes=0, log_every=log_every)
    run_dir = ALGOS[algo].train(args)
    ckpt = load_checkpoint(run_dir)
    # every transition the update consumed came from a real env.step(), and every finished
    # episode was logged exactly once with its true length and return
    assert CountingEnv.real_steps == ckpt["global_step"] == args.total_timesteps
    episodes = [r for r in read_metrics(run_dir) if "charts/episodic_return" in r]
    assert len(episodes) == CountingEnv.episodes > 0
    assert all(r["charts/episodic_length"] == 3 and r["charts/episodic_return"] == 3.0 for r in episodes)
    # losses are logged at the first iteration past each multiple of --log-every env steps, and at the end
    b, total = BATCH[algo], args.total_timesteps
    expected = [s for s in range(b, total + 1, b) if s // log_every > (s - b) // log_every or s == total]
    assert [row[0] for row in logged_losses(run_dir)] == expected


RESUME_CASES = [("l0", mode) for mode in ("constant", "linear", "cosine", "target")] + [("gmp", None)]


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
@pytest.mark.parametrize("sparsity, schedule", RESUME_CASES, ids=[m or s for s, m in RESUME_CASES])
def test_resume_is_bit_exact(algo, sparsity, schedule, tmp_path):
    b = BATCH[algo]
    kw = dict(sparsity=sparsity, total_timesteps=4 * b, eval_episodes=0, log_every=b)
    kw.update({"l0_schedule": schedule} if sparsity == "l0" else {"gmp_every": 1, "gmp_start": 0.0})
    full = ALGOS[algo].train(tiny_args(algo, tmp_path / "full", **kw))
    part = ALGOS[algo].train(tiny_args(algo, tmp_path / "part", halt_after=2 * b, **kw))
    halted = load_checkpoint(part)
    assert not halted["finished"] and halted["global_step"] == 2 * b
    assert halted["env_state_step"] == 2 * b  # classic control: the exact envs travel with the run
    resume(algo, part)
    a, z = load_checkpoint(full), load_checkpoint(part)
    assert z["finished"] and z["global_step"] == a["global_step"] == 4 * b
    assert_same_state(a["networks"]["agent"], z["networks"]["agent"])
    gated = {"actor"} | ({"critic"} if ALGOS[algo].Args.l0_lambda_critic > 0 else set())
    assert a["schedulers"] == z["schedulers"] and set(a["schedulers"]) == (
        gated if sparsity == "l0" else {"gmp"}
    )
    # the resumed record neither repeats nor skips a step, and holds the same losses
    assert logged_losses(full) == logged_losses(part) and len(logged_losses(part)) == 4


def test_target_hold_trains_at_the_constant_lambda_then_steers(tmp_path):
    kw = dict(l0_schedule="target", l0_target_hold=True, l0_warmup=0.5, l0_target_at=0.5, log_every=32)
    run_dir = ppo_l0.train(tiny_args("ppo", tmp_path, eval_episodes=0, l0_target_sparsity=0.99, **kw))
    logged = [(r["global_step"], r["l0/lambda"]) for r in read_metrics(run_dir) if "l0/lambda" in r]
    # lambda is set at the start of each 32-step iteration from the step reached (0, 32, 64, 96 of 128)
    assert [lam for _, lam in logged[:2]] == [ppo_l0.Args.l0_lambda_actor] * 2
    assert all(lam > ppo_l0.Args.l0_lambda_actor for _, lam in logged[2:]) and len(logged) == 4
    assert load_checkpoint(run_dir)["schedulers"]["actor"]["start_sparsity"] is not None


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_the_seed_decides_the_run(algo, tmp_path):
    states = [
        load_checkpoint(ALGOS[algo].train(tiny_args(algo, tmp_path / name, seed=seed, eval_episodes=0)))
        for name, seed in (("a", 1), ("b", 1), ("c", 2))
    ]
    assert_same_state(states[0]["networks"]["agent"], states[1]["networks"]["agent"])
    other = states[2]["networks"]["agent"]
    assert any(not torch.equal(v, other[k]) for k, v in states[0]["networks"]["agent"].items())


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_resume_restarts_box2d_episodes(algo, tmp_path):
    """Box2D envs pickle only their constructor arguments: resume must restart their episodes
    instead of restoring a never-reset env (regression: LunarLander resume used to crash)."""
    args = tiny_args(algo, tmp_path, env_id="LunarLander-v3", eval_episodes=0, halt_after=BATCH[algo])
    run_dir = Path(ALGOS[algo].train(args))
    halted = load_checkpoint(run_dir)
    assert halted["env_state_step"] is None and not (run_dir / "env_state.pkl").exists()
    resume(algo, run_dir)
    ckpt = load_checkpoint(run_dir)
    assert ckpt["finished"] and ckpt["global_step"] == args.total_timesteps


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
@pytest.mark.parametrize("critic_lambda", [0.0, 0.5])
def test_the_critic_is_gated_only_with_a_positive_lambda(algo, critic_lambda, tmp_path):
    run_dir = ALGOS[algo].train(tiny_args(algo, tmp_path, l0_lambda_critic=critic_lambda, eval_episodes=0))
    ckpt = load_checkpoint(run_dir)
    critic_gates = [k for k in ckpt["networks"]["agent"] if k.startswith("critic.") and "log_alpha" in k]
    actor_gates = [k for k in ckpt["networks"]["agent"] if k.startswith("actor.") and "log_alpha" in k]
    assert len(actor_gates) == 3 and len(critic_gates) == (3 if critic_lambda else 0)
    assert set(ckpt["schedulers"]) == ({"actor", "critic"} if critic_lambda else {"actor"})
    logged = set().union(*read_metrics(run_dir))
    assert ("l0/critic/lambda" in logged) == bool(critic_lambda)


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_the_gates_learning_rate_is_annealed_with_the_weights_unless_told_not_to(algo, tmp_path):
    def last_rates(**kw):
        args = tiny_args(algo, tmp_path / str(len(kw)), eval_episodes=0, l0_lr=0.01, **kw)
        ckpt = load_checkpoint(ALGOS[algo].train(args))
        return [g["lr"] for g in ckpt["optimizers"]["agent"]["param_groups"]]

    weights, gates = last_rates()
    frac = weights / ALGOS[algo].Args.learning_rate  # the weights' anneal factor of the last iteration
    assert 0 < frac < 1 and gates == pytest.approx(0.01 * frac)
    assert last_rates(l0_anneal_lr=False)[1] == 0.01


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
@pytest.mark.parametrize(
    ("train_gates", "drop_rate", "least", "most"),
    [("sampled", 0.01, 0.01, 0.9), ("deterministic", 0.01, 0.0, 0.0), ("deterministic", 0.3, 0.99, 1.0)],
)
def test_deterministic_training_gates_reach_only_gates_not_fully_open(
    algo, train_gates, drop_rate, least, most, tmp_path
):
    # lambda 0, so only the policy gradient moves log_alpha. Drop rate 0.01 starts every gate at
    # log_alpha ~4.6, where the test-time gate is exactly 1 (from log 11 = 2.40 on): no gradient can
    # reach it, while a sampled gate falls below 1 on ~5 % of draws (one draw per iteration). At drop
    # rate 0.3 (log_alpha ~0.85) the test-time gate is ~0.74, and every gate learns.
    def actor_log_alpha(l0_lr: float, root: Path) -> torch.Tensor:
        kw = dict(eval_episodes=0, l0_lambda_actor=0.0, l0_drop_rate=drop_rate, l0_train_gates=train_gates)
        state = load_checkpoint(ALGOS[algo].train(tiny_args(algo, root, l0_lr=l0_lr, **kw)))["networks"][
            "agent"
        ]
        return torch.cat(
            [v.flatten() for k, v in sorted(state.items()) if k.startswith("actor.") and "log_alpha" in k]
        )

    start = actor_log_alpha(
        1e-30, tmp_path / "still"
    )  # same seed, same initial gates; steps below float32's ulp
    moved = (actor_log_alpha(0.01, tmp_path / "learn") != start).float().mean().item()
    assert least <= moved <= most


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_gmp_reaches_its_target_and_pruned_weights_are_zero(algo, tmp_path):
    run_dir = ALGOS[algo].train(
        tiny_args(algo, tmp_path, sparsity="gmp", gmp_target=0.8, gmp_every=1, eval_episodes=0)
    )
    policy = trained_policy(run_dir)
    assert abs(closed_share(policy) - 0.8) <= 0.02
    plain = l0rl.load_policy(run_dir)
    for name, layer, mask in gmp.masked_layers(policy):  # ERK may leave the narrow input layer dense
        pruned = mask.mask == 0
        assert (layer.parametrizations.weight.original[pruned] == 0).all()  # so a pruned weight stays pruned
        assert (plain.get_submodule(name).weight[pruned] == 0).all()
        assert (plain.get_submodule(name).weight[~pruned] != 0).all()
    # the critic is pruned too, to the same target
    state = load_checkpoint(run_dir)["networks"]["agent"]
    masks = [v for k, v in state.items() if k.startswith("critic.") and k.endswith(".mask")]
    assert (
        masks and abs(1.0 - float(sum(m.sum() for m in masks)) / sum(m.numel() for m in masks) - 0.8) <= 0.02
    )


BAD_INPUT = [
    (["--learning-rate", "0"], "--learning-rate must be > 0"),
    (["--l0-lr", "-1"], "--l0-lr must be > 0"),
    (["--gamma", "0"], "--gamma must be in (0, 1]"),
    (["--gamma", "1.5"], "--gamma must be in (0, 1]"),
    (["--max-grad-norm", "0"], "--max-grad-norm must be > 0"),
    (["--l0-lambda-actor", "-1"], "must be >= 0"),
    (["--l0-drop-rate", "1.5"], "--l0-drop-rate must be in (0, 1)"),
    (["--eval-episodes", "-1"], "--eval-episodes must be >= 0"),
    (["--halt-after", "0"], "--halt-after must be >= 1"),
    (["--checkpoint-every", "0"], "--checkpoint-every must be >= 1"),
    (["--log-every", "0"], "--log-every must be >= 1"),
    (["--exp-name", "x/../../escape"], "--exp-name 'x/../../escape' must be"),
    (["--no-l0", "--l0-lr", "0.1"], "--l0-lr applies to --sparsity l0 only"),
    (["--sparsity", "gmp", "--gmp-target", "1.5"], "--gmp-target must be in (0, 1)"),
    (["--env-id", "NoSuchEnv-v9"], "unknown env id 'NoSuchEnv-v9'"),
    (["--env-options", "not json"], "--env-options must be a JSON object"),
    (["--resume", "runs/missing_run"], "not a run directory"),
]
ALGO_BAD_INPUT = [
    ("ppo", ["--num-minibatches", "3"], "divisible by --num-minibatches"),
    ("ppo", ["--l0-conv-cost", "-0.5"], "--l0-conv-cost must be >= 0"),
    ("ppo", ["--l0-target-hold"], "--l0-schedule constant: hold applies to the target mode only"),
    ("a2c", ["--rms-alpha", "1"], "--rms-alpha must be in [0, 1)"),
]


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
@pytest.mark.parametrize("argv, hint", BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_input_one_line_exit_2(algo, argv, hint, tmp_path):
    assert_one_line_error(cli(algo, *argv, "--total-timesteps", "1024", cwd=tmp_path), 2, hint)
    assert not run_dirs(tmp_path) and not any(tmp_path.iterdir())  # nothing at all, nor an escaped name


@pytest.mark.parametrize("algo, argv, hint", ALGO_BAD_INPUT)
def test_bad_algorithm_input_one_line_exit_2(algo, argv, hint, tmp_path):
    assert_one_line_error(cli(algo, *argv, cwd=tmp_path), 2, hint)
    assert not run_dirs(tmp_path)


@pytest.mark.parametrize(
    "algo, argv, hint",
    [
        ("ppo", ["--env-id", "NoSuchEnv-v9"], "unknown env id 'NoSuchEnv-v9'"),
        ("a2c", ["--gamma", "1.5"], "--gamma must be in (0, 1]"),
    ],
)
def test_bad_input_in_a_real_process(algo, argv, hint, tmp_path):
    """What the in-process runs cannot show: nothing else reaches stderr (warnings, import noise)."""
    assert_one_line_error(run_script(algo, *argv, cwd=tmp_path), 2, hint)
    assert not run_dirs(tmp_path)


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_a_bad_choice_is_refused_by_the_parser(algo, tmp_path):
    proc = cli(algo, "--wandb-mode", "bogus", cwd=tmp_path)
    assert_one_line_error(proc, 2, "invalid choice 'bogus' for argument '--wandb-mode'")
    assert not run_dirs(tmp_path)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """made(algo, finished): a tiny run of that algorithm, finished or halted after one iteration
    (trained once per module; the tests below must leave it as it is)."""
    cache: dict[tuple[str, bool], Path] = {}

    def get(algo: str, finished: bool) -> Path:
        if (algo, finished) not in cache:
            root = tmp_path_factory.mktemp(f"{algo}_{'finished' if finished else 'halted'}")
            halt = {} if finished else {"halt_after": BATCH[algo]}
            cache[algo, finished] = Path(ALGOS[algo].train(tiny_args(algo, root, eval_episodes=0, **halt)))
        return cache[algo, finished]

    return get


@pytest.mark.parametrize(
    "algo, finished, argv, hint",
    [
        ("ppo", False, ["--learning-rate", "0.1"], "--resume keeps the run's own --learning-rate"),
        ("a2c", False, ["--learning-rate", "0.1"], "--resume keeps the run's own --learning-rate"),
        ("ppo", True, [], "has already finished its 128 steps"),
        ("a2c", True, ["--total-timesteps", "100"], "has already finished its 100 steps"),
    ],
)
def test_resume_refusals_leave_the_run_untouched(made, algo, finished, argv, hint, tmp_path):
    run_dir = made(algo, finished)
    before = files(run_dir)
    assert_one_line_error(cli(algo, "--resume", str(run_dir), *argv, cwd=tmp_path), 2, hint)
    assert files(run_dir) == before and not run_dirs(tmp_path)


@pytest.mark.parametrize("algo, other", [("ppo", "a2c"), ("a2c", "ppo")])
def test_resume_with_another_algorithm_is_refused(made, algo, other, tmp_path):
    run_dir = made(algo, False)
    before = files(run_dir)
    proc = cli(other, "--resume", str(run_dir), cwd=tmp_path)
    assert_one_line_error(proc, 2, f"was trained by {algo}_l0, not {other}_l0")
    assert files(run_dir) == before


def test_resume_corrupt_checkpoint_leaves_files_untouched(made, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(made("ppo", False), run_dir)
    ckpt = run_dir / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    before = files(run_dir)
    assert_one_line_error(cli("a2c", "--resume", str(run_dir), cwd=tmp_path), 2, "corrupt")
    assert files(run_dir) == before


class _Planted:
    """Loading this pickle creates the file `path`: proof that something executed it."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def adam_steps(ckpt: dict) -> set[float]:
    return {float(s["step"]) for s in ckpt["optimizers"]["agent"]["state"].values()}


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_a_fork_continues_its_source_with_its_own_l0_options(algo, tmp_path):
    b = BATCH[algo]
    source = Path(
        ALGOS[algo].train(tiny_args(algo, tmp_path / "src", halt_after=b, eval_episodes=0, log_every=b))
    )
    src = load_checkpoint(source)
    # the source's envs pickle faithfully; a fork must not load that pickle (a run may come from anyone)
    witness = tmp_path / "executed"
    (source / "env_state.pkl").write_bytes(pickle.dumps({"global_step": b, "envs": _Planted(witness)}))
    before = files(source)
    kw = dict(l0_schedule="target", l0_target_sparsity=0.5, l0_target_at=0.5, l0_lr=0.02, l0_anneal_lr=False)
    args = ALGOS[algo].Args(
        **{**vars(tiny_args(algo, tmp_path / "fork", eval_episodes=0, log_every=b)), **kw}
    )
    fork = Path(ALGOS[algo].train(dataclasses.replace(args, fork_from=str(source))))
    assert files(source) == before and not witness.exists() and fork.parent == tmp_path / "fork" / "runs"
    ckpt = load_checkpoint(fork)
    assert ckpt["finished"] and ckpt["global_step"] == args.total_timesteps
    assert ckpt["args"]["fork_from"] == str(source) and ckpt["args"]["l0_schedule"] == "target"
    # the schedule is the fork's own, started afresh (the source's was constant), and the gates' rate is its own
    assert (
        src["schedulers"]["actor"]["mode"] == "constant" and ckpt["schedulers"]["actor"]["mode"] == "target"
    )
    assert ckpt["optimizers"]["agent"]["param_groups"][1]["lr"] == pytest.approx(0.02)
    # Adam's state carried over: one iteration's updates in the source, the rest in the fork
    per_iteration = adam_steps(src).pop()
    assert adam_steps(ckpt) == {per_iteration * args.total_timesteps / b}
    # the fork's record is its source's history up to the fork, then its own steps, each once
    old, new = read_metrics(source), read_metrics(fork)
    assert new[: len(old)] == old and all(r["global_step"] > b for r in new[len(old) :])
    assert [r[0] for r in logged_losses(fork)] == list(range(b, args.total_timesteps + 1, b))
    lambdas = [r["l0/lambda"] for r in new[len(old) :] if "l0/lambda" in r]
    assert lambdas and all(lam != kw.get("l0_lambda_actor", args.l0_lambda_actor) for lam in lambdas)


def test_a_fork_flag_is_a_change_to_its_source_not_to_the_defaults(made, tmp_path):
    """The source was trained with the default --l0-anneal-lr; --no-l0-anneal-lr on the fork's
    command line must reach the fork (and a flag equal to the source's own is no change)."""
    source = made("ppo", False)
    proc = cli("ppo", "--fork-from", str(source), "--no-l0-anneal-lr", "--runs-dir", "runs", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (fork,) = run_dirs(tmp_path)
    saved = load_checkpoint(fork)["args"]
    assert saved["l0_anneal_lr"] is False and load_checkpoint(source)["args"]["l0_anneal_lr"] is True
    assert saved["num_envs"] == 2 and saved["total_timesteps"] == 128  # the source's, not the defaults


@pytest.mark.parametrize(
    "argv, hint",
    [
        (["--num-envs", "4"], "--fork-from keeps the source run's --num-envs"),
        (["--l0-granularity", "unit"], "--fork-from keeps the source run's --l0-granularity"),
        (["--learning-rate", "0.1"], "--fork-from keeps the source run's --learning-rate"),
        (["--l0-lambda-critic", "0.5"], "--fork-from keeps the source run's --l0-lambda-critic"),
        (["--total-timesteps", "32"], "past this fork's --total-timesteps 32"),
        (["--resume", "SOURCE"], "--resume continues a run and --fork-from starts a new one"),
    ],
)
def test_fork_refusals_leave_the_source_untouched(made, argv, hint, tmp_path):
    source = made("ppo", False)
    before = files(source)
    argv = [str(source) if a == "SOURCE" else a for a in argv]
    proc = cli("ppo", "--fork-from", str(source), "--runs-dir", "runs", *argv, cwd=tmp_path)
    assert_one_line_error(proc, 2, hint)
    assert files(source) == before and not run_dirs(tmp_path)


def test_a_fork_of_a_missing_or_foreign_run_is_refused(made, tmp_path):
    assert_one_line_error(
        cli("ppo", "--fork-from", str(tmp_path / "nope"), cwd=tmp_path), 2, "not a run directory"
    )
    proc = cli("a2c", "--fork-from", str(made("ppo", False)), "--runs-dir", "runs", cwd=tmp_path)
    assert_one_line_error(proc, 2, "was trained by ppo_l0, not a2c_l0; fork it with algos/ppo_l0.py")
    assert not run_dirs(tmp_path)


def test_divergence_stops_with_exit_3_and_keeps_the_last_finite_checkpoint(tmp_path):
    # one update per iteration: the first makes the weights ~1e30 (finite, checkpointed at step 64),
    # with them the second iteration's value loss overflows to inf
    argv = ["--learning-rate", "1e30", "--num-envs", "2", "--num-steps", "32", "--num-minibatches", "1"]
    argv += ["--update-epochs", "1", "--total-timesteps", "256", "--checkpoint-every", "64", "--no-progress"]
    proc = run_script("ppo", *argv, cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 3, proc.stderr
    assert [x for x in lines if "error" in x] == [lines[-1]], proc.stderr
    assert lines[-1].startswith("ppo_l0.py: error: training diverged at step 128"), proc.stderr
    (run_dir,) = run_dirs(tmp_path)
    ckpt = load_checkpoint(run_dir)
    assert ckpt["global_step"] == 64 and not ckpt["finished"]
    assert all(torch.isfinite(v).all() for v in ckpt["networks"]["agent"].values() if v.is_floating_point())


def test_a2c_divergence_raises_before_any_non_finite_checkpoint(tmp_path):
    args = tiny_args("a2c", tmp_path, learning_rate=1e30, checkpoint_every=BATCH["a2c"], eval_episodes=0)
    with pytest.raises(NonFiniteError, match="training diverged at step 20"):
        a2c_l0.train(args)
    (run_dir,) = run_dirs(tmp_path)
    ckpt = load_checkpoint(run_dir)
    assert ckpt["global_step"] == BATCH["a2c"]
    assert all(torch.isfinite(v).all() for v in ckpt["networks"]["agent"].values() if v.is_floating_point())
