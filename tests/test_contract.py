"""The contract every algorithm keeps, tested once for all four (a copy that drifts fails here): a NaN
loss stops training before an optimizer step uses it (and a step that leaves a NaN weight stops it
at once), the checkpoint reloads into the policy that gave the final evaluation, the reported
sparsity is the share of weights the policy really has closed, halt + resume is bit-identical to a
run that never stopped (the L0 and GMP methods' state round-trips), --no-l0 trains a dense network,
and a sparsity method plugs in as one class and one registry entry."""

import math

import pytest
import torch
import torch.optim.optimizer as optimizer_hooks
from gymnasium.envs.classic_control.cartpole import CartPoleEnv
from helpers import algo, assert_same_state, closed_share, resume, summary, tiny_args, trained_policy

import l0rl
from l0rl import gmp
from l0rl.errors import NonFiniteError
from l0rl.report.collect import group_runs, read_run
from l0rl.runkit import eval_metrics, evaluate_as_run, load_checkpoint
from l0rl.sparsity import METHODS, SparsityMethod

ALGOS = ("ppo", "a2c", "dqn", "sac")
CARTPOLE = dict(env_id="CartPole-v1")  # an env all four train on (SAC's discrete variant)


class RandomStaticMask(SparsityMethod):
    """A method made for this test: a seeded random mask closes SHARE of every masked layer's weights
    before training and never changes. It reuses GMP's masks, so the policy record says "gmp"."""

    kind = "gmp"
    SHARE = 0.5
    made: list["RandomStaticMask"] = []

    def __init__(self, args, nets, lambdas):
        super().__init__(args, nets, lambdas)
        generator = torch.Generator().manual_seed(args.seed)
        self.masks = []
        for networks in self.groups.values():
            for net in networks:
                for _, module, mask in gmp.masked_layers(gmp.attach(net)):
                    n = mask.mask.numel()
                    order = torch.randperm(n, generator=generator)
                    mask.mask.view(-1)[order[: round(self.SHARE * n)]] = 0.0
                    module.parametrizations["weight"].original.data.mul_(mask.mask)
                    self.masks.append(mask.mask)
        self.initial = [m.clone() for m in self.masks]
        self.made.append(self)


def same(a, b) -> bool:
    """Equal nested state: dicts, lists, tensors (bit for bit), numbers and strings."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return isinstance(b, list | tuple) and len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    return a == b


@pytest.fixture
def random_mask(monkeypatch):
    """--sparsity random, for this test only: the one line a new method adds to METHODS."""
    monkeypatch.setitem(METHODS, "random", RandomStaticMask)
    RandomStaticMask.made.clear()
    return RandomStaticMask


@pytest.fixture(scope="module", params=ALGOS)
def l0_run(request, tmp_path_factory) -> tuple[str, str]:
    """(algorithm, run directory) of a finished tiny L0 run on CartPole."""
    name = request.param
    root = tmp_path_factory.mktemp(name)
    # half-open gates at a fast rate close some within the budget (DQN's defaults close 95 % at once)
    kw = (
        dict(l0_schedule="constant", l0_drop_rate=0.5, l0_lr=0.3, l0_lambda_actor=10.0)
        if name != "dqn"
        else {}
    )
    return name, algo(name).train(tiny_args(name, root, **CARTPOLE, **kw))


def test_checkpoint_reloads_into_the_policy_of_the_final_evaluation(l0_run):
    name, run_dir = l0_run
    ckpt, done = load_checkpoint(run_dir), summary(run_dir)
    assert ckpt["finished"] and ckpt["algo"] == f"{name}_l0" and ckpt["policy"]["sparsity"] == "l0"
    replayed = eval_metrics(evaluate_as_run(l0rl.load_policy(run_dir), ckpt, episodes=2))
    assert replayed["eval/episodic_return"] == done["eval/episodic_return"]


def test_reported_sparsity_is_the_share_of_closed_gates(l0_run):
    _, run_dir = l0_run  # closed_share counts the zero weights of the hardened policy
    assert summary(run_dir)["sparsity"] == closed_share(trained_policy(run_dir)) > 0.0


@pytest.mark.parametrize("name", ALGOS)
def test_halt_and_resume_is_bit_identical_with_the_sparsity_state(name, tmp_path):
    total = tiny_args(name, tmp_path).total_timesteps
    kw = dict(**CARTPOLE, eval_episodes=0, l0_schedule="target", l0_target_sparsity=0.5)
    straight = algo(name).train(tiny_args(name, tmp_path / "straight", **kw))
    halted = algo(name).train(tiny_args(name, tmp_path / "halted", halt_after=total // 2, **kw))
    assert not load_checkpoint(halted)["finished"]
    resume(name, halted)
    a, b = load_checkpoint(straight), load_checkpoint(halted)
    assert b["finished"] and a["global_step"] == b["global_step"] == total
    for key in a["networks"]:
        assert_same_state(a["networks"][key], b["networks"][key])
    # the target schedule's dual variable moved in both halves: its state is what a resume restores
    assert a["schedulers"] and same(a["schedulers"], b["schedulers"])
    args = tiny_args(name, tmp_path)
    start = args.l0_lambda if name == "dqn" else args.l0_lambda_actor
    lams = [v["lam"] for v in a["schedulers"].values() if isinstance(v, dict) and "lam" in v]
    assert lams and any(lam != pytest.approx(start) for lam in lams), a["schedulers"]


@pytest.mark.parametrize("name", ALGOS)
def test_halt_and_resume_is_bit_identical_under_gmp(name, tmp_path):
    """GMP's state (its count of learning updates, which sets when the masks are recomputed) round-trips
    too: the masks recomputed after the resume are those of a run that never stopped."""
    total = tiny_args(name, tmp_path).total_timesteps
    kw = dict(**CARTPOLE, eval_episodes=0, sparsity="gmp", gmp_start=0.0, gmp_end=1.0, gmp_every=3)
    straight = algo(name).train(tiny_args(name, tmp_path / "straight", **kw))
    halted = algo(name).train(tiny_args(name, tmp_path / "halted", halt_after=total // 2, **kw))
    halfway = load_checkpoint(halted)["schedulers"]["gmp"]["updates"]
    resume(name, halted)
    a, b = load_checkpoint(straight), load_checkpoint(halted)
    for key in a["networks"]:
        assert_same_state(a["networks"][key], b["networks"][key])
    assert a["schedulers"]["gmp"] == b["schedulers"]["gmp"]
    assert 0 < halfway < a["schedulers"]["gmp"]["updates"] and a["schedulers"]["gmp"]["sparsity"] > 0


@pytest.mark.parametrize("name", ALGOS)
def test_no_l0_trains_dense_networks(name, tmp_path):
    run_dir = algo(name).train(tiny_args(name, tmp_path, l0=False, **CARTPOLE))
    ckpt = load_checkpoint(run_dir)
    assert ckpt["args"]["sparsity"] == "none" and ckpt["policy"]["sparsity"] == "none"
    for key, state in ckpt["networks"].items():  # no gate and no mask anywhere
        assert not [k for k in state if "parametrizations" in k], key
    assert summary(run_dir)["sparsity"] == 0.0


@pytest.mark.filterwarnings("ignore:.*The reward is a NaN value")  # gymnasium's checker sees the fault
@pytest.mark.parametrize("name", ALGOS)
def test_a_nan_loss_stops_training_before_any_optimizer_step(name, tmp_path, monkeypatch):
    """Every CartPole reward is NaN (a fault injected in the env), so the first loss of every
    algorithm is NaN while every weight is still finite: check_loss must stop training before an
    optimizer steps on it (guard_step would only see the NaN weights after the step)."""
    step = CartPoleEnv.step

    def nan_reward(env, action):
        obs, _, terminated, truncated, info = step(env, action)
        return obs, math.nan, terminated, truncated, info

    monkeypatch.setattr(CartPoleEnv, "step", nan_reward)
    steps = []
    hook = optimizer_hooks.register_optimizer_step_pre_hook(lambda opt, _a, _k: steps.append(opt))
    try:
        with pytest.raises(NonFiniteError, match="training diverged at step [0-9]+: the loss is nan"):
            algo(name).train(tiny_args(name, tmp_path, eval_episodes=0, **CARTPOLE))
    finally:
        hook.remove()
    assert steps == []


@pytest.mark.parametrize("name", ALGOS)
def test_a_step_that_leaves_a_nan_weight_stops_training_at_once(name, tmp_path):
    """After the first optimizer step, one weight of that optimizer's network becomes NaN (as a step
    that diverged would leave it): guard_step stops training there, and no optimizer steps again."""
    poisoned, steps_after = [], []

    def poison(opt, _args, _kwargs):
        if not poisoned:
            poisoned.append(opt.param_groups[0]["params"][-1])
            with torch.no_grad():
                poisoned[0].fill_(math.nan)

    def count(opt, _args, _kwargs):
        if poisoned:
            steps_after.append(opt)

    hooks = [
        optimizer_hooks.register_optimizer_step_post_hook(poison),
        optimizer_hooks.register_optimizer_step_pre_hook(count),
    ]
    try:
        with pytest.raises(NonFiniteError, match="training diverged"):
            algo(name).train(tiny_args(name, tmp_path, eval_episodes=0, **CARTPOLE))
    finally:
        for hook in hooks:
            hook.remove()
    assert len(poisoned) == 1 and steps_after == []


@pytest.mark.parametrize("name", ALGOS)
def test_a_new_sparsity_method_is_one_class_and_one_registry_entry(name, tmp_path, random_mask):
    run_dir = algo(name).train(tiny_args(name, tmp_path, sparsity="random", exp_name="mine", **CARTPOLE))
    (method,) = random_mask.made
    # the masks stood still through training, and they are what the run saved and reports
    assert all(torch.equal(m, m0) for m, m0 in zip(method.masks, method.initial, strict=True))
    assert closed_share(trained_policy(run_dir)) == summary(run_dir)["sparsity"] == random_mask.SHARE
    assert load_checkpoint(run_dir)["policy"]["sparsity"] == "gmp"
    # l0rl report takes the run as any other (an unknown --sparsity is skipped), named by the registry
    (cell,), (record,) = group_runs([read_run(run_dir)])
    assert [v.label for v in cell.variants] == ["mine (random)"]
    assert record.summary["sparsity"] == random_mask.SHARE
