"""SAC-L0: smoke runs (Box and discrete actions; L0, GMP, dense) checked against their reloaded
checkpoint, bit-exact resume for every L0 schedule and GMP, scheduling that does not depend on
logging, gate-free target critics, hindsight relabelling, the deployable policy, bad input and
divergence."""

import importlib
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
    summary,
    tiny_args,
    trained_policy,
)

import l0rl
from l0rl import gmp, l0
from l0rl.envs import goal_spec
from l0rl.errors import NonFiniteError
from l0rl.policy import build_space
from l0rl.runkit import (
    BUFFER_NAME,
    CHECKPOINT_NAME,
    ENV_STATE_NAME,
    EpisodeReplayBuffer,
    eval_metrics,
    evaluate,
    load_checkpoint,
    read_metrics,
    update_target,
)

sac = importlib.import_module("l0rl.algos.sac_l0")
DENSE_REWARD = '{"reward_type": "dense"}'  # NeedleReach's sparse reward is -50 for every failed episode
SPARSITY = {  # settings under which L0 and GMP close most weights within a tiny run
    "l0": dict(sparsity="l0", l0_schedule="constant", l0_lr=0.05),
    "gmp": dict(sparsity="gmp", gmp_target=0.8, gmp_every=10),
    "none": dict(sparsity="none"),
}


@pytest.mark.parametrize("kind", ["l0", "gmp", "none"])
@pytest.mark.parametrize(
    "env_id, kw", [("NeedleReach-v0", dict(her=True, env_options=DENSE_REWARD)), ("CartPole-v1", {})]
)
def test_smoke_reloads_into_the_same_policy(env_id, kw, kind, tmp_path):
    run_dir = sac.train(tiny_args("sac", tmp_path, env_id=env_id, **kw, **SPARSITY[kind]))
    ckpt = load_checkpoint(run_dir)
    assert (
        ckpt["finished"]
        and ckpt["global_step"] == load_checkpoint(run_dir)["global_step"]
        and ckpt["policy"]["sparsity"] == kind
    )
    done = summary(run_dir)
    # the checkpoint alone, without this file, rebuilds the policy that was evaluated
    policy = l0rl.load_policy(run_dir)
    result = evaluate(policy, env_id, ckpt["env_options"], 2, ckpt["args"]["seed"] + 10_000, greedy=True)
    assert eval_metrics(result)["eval/episodic_return"] == done["eval/episodic_return"]
    rows = read_metrics(run_dir)
    assert any("losses/qf1_loss" in r and "losses/actor_loss" in r for r in rows), "no update was logged"
    if kind == "none":
        assert done["sparsity"] == 0.0 and not any("parametrizations" in k for k in ckpt["policy"]["state"])
    else:
        assert done["sparsity"] == closed_share(trained_policy(run_dir)) > 0.5
        assert any(f"{kind}/critic/sparsity" in r for r in rows)
    if kind == "gmp":  # the actor's policy path reaches the target, each network on its own
        assert abs(closed_share(trained_policy(run_dir)) - 0.8) < 0.02
    if env_id == "NeedleReach-v0":
        assert done["eval/success_rate"] == eval_metrics(result)["eval/success_rate"]
        assert any("charts/success_rate" in r for r in rows)


RESUMED = [
    *[dict(sparsity="l0", l0_schedule=m) for m in ("constant", "linear", "cosine", "target")],
    dict(sparsity="gmp", gmp_every=5),
]


@pytest.mark.parametrize("kw", RESUMED, ids=lambda kw: kw.get("l0_schedule", kw["sparsity"]))
def test_halt_and_resume_is_bit_exact(kw, tmp_path):
    # updates from step 60, the halt at 120, the L0 schedulers and the GMP masks step on both sides
    kw = dict(
        env_id="NeedleReach-v0",
        her=True,
        total_timesteps=200,
        learning_starts=60,
        eval_episodes=0,
        checkpoint_every=50,
        **({"l0_schedule_every": 20, "l0_warmup": 0.2, "l0_lr": 0.05} if kw["sparsity"] == "l0" else {}),
        **kw,
    )
    straight = sac.train(tiny_args("sac", tmp_path / "straight", **kw))
    halted = sac.train(tiny_args("sac", tmp_path / "halted", halt_after=120, **kw))
    ckpt = load_checkpoint(halted)
    assert ckpt["global_step"] == 120 and not ckpt["finished"]
    assert (Path(halted) / BUFFER_NAME).exists() and (Path(halted) / ENV_STATE_NAME).exists()
    resume("sac", halted)
    a, b = load_checkpoint(straight), load_checkpoint(halted)
    assert b["finished"] and a["global_step"] == b["global_step"] == 200
    assert a["networks"].keys() == b["networks"].keys()
    for key in a["networks"]:
        assert_same_state(a["networks"][key], b["networks"][key])
    assert a["schedulers"] == b["schedulers"] and a["loop"]["updates"] == b["loop"]["updates"]
    if kw["sparsity"] == "l0":
        assert a["schedulers"]["actor"]["lam"] > 0, "lambda never moved: a scheduling bug would go unseen"


def test_a_run_saved_before_the_one_buffer_layout_resumes_bit_exactly(tmp_path):
    """SAC used to save its buffer's state beside global_step and to take --save-buffer: a checkpoint
    and buffer written that way resume exactly as a run that never stopped."""
    kw = dict(env_id="NeedleReach-v0", her=True, total_timesteps=200, learning_starts=60, eval_episodes=0)
    straight = sac.train(tiny_args("sac", tmp_path / "straight", **kw))
    halted = Path(sac.train(tiny_args("sac", tmp_path / "halted", halt_after=120, **kw)))
    ckpt = torch.load(halted / CHECKPOINT_NAME, weights_only=True)
    del ckpt["args"]["save_buffer_max_mb"]
    torch.save({**ckpt, "args": {**ckpt["args"], "save_buffer": None}}, halted / CHECKPOINT_NAME)
    saved = torch.load(halted / BUFFER_NAME, weights_only=True)
    assert set(saved) == {"global_step", "buffer"}  # the one layout, DQN's too
    torch.save({**saved["buffer"], "global_step": saved["global_step"]}, halted / BUFFER_NAME)
    resume("sac", halted)
    a, b = load_checkpoint(straight), load_checkpoint(halted)
    assert b["finished"] and b["args"]["save_buffer_max_mb"] == 200.0 and "save_buffer" not in b["args"]
    for key in a["networks"]:
        assert_same_state(a["networks"][key], b["networks"][key])


@pytest.mark.parametrize("schedule", ["linear", "target"])
def test_scheduling_does_not_depend_on_logging(schedule, tmp_path):
    kw = dict(
        total_timesteps=200, learning_starts=60, eval_episodes=0, l0_schedule=schedule, l0_schedule_every=20
    )
    rare = load_checkpoint(sac.train(tiny_args("sac", tmp_path / "rare", log_every=1000, **kw)))
    often = load_checkpoint(sac.train(tiny_args("sac", tmp_path / "often", log_every=4, **kw)))
    for key in rare["networks"]:
        assert_same_state(rare["networks"][key], often["networks"][key])
    assert rare["schedulers"] == often["schedulers"] and rare["schedulers"]["actor"]["lam"] > 0


@pytest.mark.parametrize("kind", ["l0", "gmp"])
def test_target_critics_are_gate_free_and_track_the_effective_weights(kind):
    obs_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    qf = sac.SoftQNetwork(obs_space, action_space, 16)
    if kind == "l0":
        l0.sparsify(qf, "weight", 0.3, output_granularity="weight")
        with torch.no_grad():  # spread the gates so that some are exactly closed and some partly open
            for p in l0.gate_parameters(qf):
                p.normal_(0.0, 3.0)
    else:
        gmp.GradualMagnitudePruner({"qf": gmp.attach(qf)}, 0.5, 1).apply(0.5)
    target = sac.SoftQNetwork(obs_space, action_space, 16)
    old = {k: v.clone() for k, v in target.state_dict().items()}
    update_target(target, qf, 0.25)
    assert not any("parametrizations" in key for key in target.state_dict())
    dense = l0.dense_state_dict(qf)
    assert any(bool((v == 0).any()) for k, v in dense.items() if k.endswith("weight"))
    for key, value in target.state_dict().items():
        torch.testing.assert_close(value, 0.75 * old[key] + 0.25 * dense[key])
    update_target(target, qf, 1.0)
    for key, value in target.state_dict().items():
        torch.testing.assert_close(value, dense[key], rtol=0, atol=0)


def fill_goal_buffer(slots: int, lengths: list[list[int]], steps: int) -> "EpisodeReplayBuffer":
    """A buffer of NeedleReach-shaped transitions whose achieved goals name (env, episode, t):
    transition t of episode ep in env e has achieved goal (e, ep, t) before and (e, ep, t + 1) after."""
    obs_space = gym.spaces.Box(-np.inf, np.inf, (13,), np.float32)
    rb = EpisodeReplayBuffer(
        slots * len(lengths), len(lengths), obs_space, gym.spaces.Box(-1, 1, (5,), np.float32)
    )
    spec = goal_spec("NeedleReach-v0")
    position = [[0, 0] for _ in lengths]  # (episode, t) per env
    for _ in range(steps):
        obs, next_obs = np.full((2, len(lengths), 13), -1.0, np.float32)
        dones = np.zeros(len(lengths), bool)
        for e, (ep, t) in enumerate(position):
            obs[e, spec["achieved"]] = (e, ep, t)
            next_obs[e, spec["achieved"]] = (e, ep, t + 1)
            dones[e] = ep < len(lengths[e]) and t + 1 == lengths[e][ep]
            position[e] = [ep + 1, 0] if dones[e] else [ep, t + 1]
        n = len(lengths)
        rb.add(obs, next_obs, np.zeros((n, 5)), np.full(n, -1.0), np.zeros(n), dones)
    return rb


def test_her_relabels_with_a_later_achieved_goal_of_the_same_episode():
    spec = goal_spec("NeedleReach-v0")
    # 30 steps: env 0 ends episodes of 5, 9 and 3 steps, then runs a fourth; env 1 is still in its first.
    # 20 slots per env: steps 0-9 were overwritten, so episode 1 of env 0 is only partly left
    rb = fill_goal_buffer(20, [[5, 9, 3], []], steps=30)
    np.random.seed(0)
    batch = rb.sample(4000, spec, her_k=4)
    relabel = batch["relabelled"]
    assert 0.75 < relabel.mean() < 0.85
    achieved, achieved_next = batch["obs"][:, spec["achieved"]], batch["next_obs"][:, spec["achieved"]]
    goal = batch["next_obs"][:, spec["desired"]]
    np.testing.assert_array_equal(batch["obs"][:, spec["desired"]], goal)
    np.testing.assert_array_equal(batch["rewards"], spec["compute_reward"](achieved_next, goal))
    assert (goal[~relabel] == -1).all() and (batch["rewards"][~relabel] == -1).all()
    g, a = goal[relabel], achieved[relabel]
    np.testing.assert_array_equal(g[:, :2], a[:, :2])  # same env, same episode
    assert (g[:, 2] >= a[:, 2] + 1).all(), "the goal was achieved at this step or later"
    lengths = np.array([[5, 9, 3, 99][int(ep)] if env == 0 else 99 for env, ep in a[:, :2]])
    assert (g[:, 2] <= lengths).all(), "the goal lies inside the episode"
    assert (g[:, 2] > a[:, 2] + 1).any() and (batch["rewards"][relabel] == 0).any()


def test_resume_without_buffer_refills_before_learning(tmp_path):
    kw = dict(total_timesteps=400, learning_starts=120, log_every=20, eval_episodes=0, save_buffer_max_mb=0)
    part = sac.train(tiny_args("sac", tmp_path, env_id="Pendulum-v1", halt_after=200, **kw))
    assert not (Path(part) / BUFFER_NAME).exists()
    resume("sac", part)
    assert load_checkpoint(part)["finished"]
    learned = [r["global_step"] for r in read_metrics(part) if "losses/qf1_loss" in r]
    # 2 envs refill 120 transitions in 60 vector steps: no update between the resume and step 320
    assert learned and not [s for s in learned if 200 < s < 320] and 320 in learned


def test_resume_restarts_box2d_episodes_and_keeps_the_buffer(tmp_path):
    # Box2D envs pickle only their constructor arguments: they restart, the saved buffer stays
    kw = dict(env_id="LunarLanderContinuous-v3", total_timesteps=300, log_every=20, eval_episodes=0)
    part = sac.train(tiny_args("sac", tmp_path, halt_after=200, **kw))
    assert load_checkpoint(part)["env_state_step"] is None and (Path(part) / BUFFER_NAME).exists()
    resume("sac", part)
    assert load_checkpoint(part)["finished"]
    learned = [r["global_step"] for r in read_metrics(part) if "losses/qf1_loss" in r]
    assert 220 in learned, "learning goes on right after the resume"


def test_policy_is_the_squashed_rescaled_mean_within_bounds(tmp_path):
    run_dir = sac.train(
        tiny_args("sac", tmp_path, env_id="Pendulum-v1", total_timesteps=200, eval_episodes=1)
    )
    ckpt = load_checkpoint(run_dir)
    policy = l0rl.load_policy(run_dir)
    assert [type(m).__name__ for m in policy][-2:] == ["Tanh", "Affine"]
    obs_space, action_space = (build_space(ckpt["policy"][k]) for k in ("observation_space", "action_space"))
    actor = sac.Actor(obs_space, action_space, ckpt["args"]["hidden_size"])
    l0.sparsify_like(actor, ckpt["networks"]["actor"]).eval()
    x = torch.randn(256, *obs_space.shape) * 10.0
    with torch.no_grad():
        out = policy(x)
        _, _, mean_action = actor.get_action(x)
    torch.testing.assert_close(out, mean_action)
    assert (out >= -2.0).all() and (out <= 2.0).all() and (out.abs() > 1.0).any()


def test_frame_networks_load_checkpoints_that_stored_the_frame_scale_as_an_affine():
    """SAC's image networks began with Affine(1/255, 0), whose two buffers format-2 checkpoints hold;
    FrameScale (the same function, no buffers) loads them and computes the same values bit for bit."""
    frames = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    torch.manual_seed(0)
    actor = sac.Actor(frames, gym.spaces.Discrete(3), 32)
    old = {**actor.state_dict(), "trunk.0.scale": torch.tensor(1 / 255), "trunk.0.shift": torch.tensor(0.0)}
    actor.load_state_dict(old)  # strict: any key left over would raise
    x = torch.randint(0, 256, (2, 4, 84, 84)).float()
    affine = sac.affine(1.0 / 255.0, 0.0)
    assert torch.equal(actor.trunk[0](x), affine(x))


@pytest.mark.mario
def test_mario_smoke(tmp_path):
    # one emulator process; a Nature-CNN update of three networks is slow on one core: few of them
    kw = dict(num_envs=1, total_timesteps=60, learning_starts=56, log_every=30, batch_size=8, buffer_size=64)
    run_dir = sac.train(
        tiny_args("sac", tmp_path, env_id="SuperMarioBros-7-1-v0", eval_episodes=1, eval_max_steps=20, **kw)
    )
    assert load_checkpoint(run_dir)["finished"]
    assert any("losses/qf1_loss" in r for r in read_metrics(run_dir))
    assert isinstance(trained_policy(run_dir)[1], torch.nn.Conv2d)
    # a buffer is saved by its size (--save-buffer-max-mb 200), images too: this tiny one fits
    assert load_checkpoint(run_dir)["args"]["save_buffer_max_mb"] == 200.0
    assert (
        torch.load(Path(run_dir) / BUFFER_NAME, weights_only=True)["global_step"]
        == load_checkpoint(run_dir)["global_step"]
    )


@pytest.mark.parametrize(
    "argv, hint",
    [
        (["--policy-lr", "0"], "--policy-lr must be > 0"),
        (["--q-lr", "-1"], "--q-lr must be > 0"),
        (["--l0-lr", "0"], "--l0-lr must be > 0"),
        (["--alpha", "0"], "--alpha must be > 0"),
        (["--alpha", "0", "--no-autotune"], "--alpha must be > 0"),
        (["--gamma", "1.5"], "--gamma must be in (0, 1]"),
        (["--tau", "0"], "--tau must be in (0, 1]"),
        (["--hidden-size", "0"], "--hidden-size must be >= 1"),
        (["--l0-lambda-actor", "-1"], ">= 0"),
        (["--l0-drop-rate", "1"], "--l0-drop-rate must be in (0, 1)"),
        (["--l0-schedule-every", "0"], "--l0-schedule-every must be >= 1"),
        (["--no-l0", "--l0-lambda-actor", "3"], "--l0-lambda-actor applies to --sparsity l0 only"),
        (["--sparsity", "gmp", "--l0-lr", "0.1"], "--l0-lr applies to --sparsity l0 only"),
        (["--env-id", "CartPole-v1", "--her"], "--her needs a goal env"),
    ],
)
def test_bad_input_one_line_exit_2(argv, hint, tmp_path):
    assert_one_line_error(cli("sac", *argv, cwd=tmp_path), 2, hint)
    assert not run_dirs(tmp_path) and not (tmp_path / "runs").exists()


def test_unknown_choice_exit_2_without_a_run(tmp_path):
    proc = cli("sac", "--wandb-mode", "bogus", cwd=tmp_path)
    assert_one_line_error(proc, 2, "invalid choice 'bogus' for argument '--wandb-mode'")
    assert not (tmp_path / "runs").exists()


def test_divergence_exit_3_keeps_the_last_good_checkpoint(tmp_path):
    argv = (
        "--env-id CartPole-v1 --q-lr 1e30 --total-timesteps 300 --learning-starts 100 --checkpoint-every 40"
    )
    argv += " --num-envs 2 --batch-size 32 --hidden-size 32 --buffer-size 1000 --no-progress"
    proc = cli("sac", *argv.split(), cwd=tmp_path)
    # one line says what happened, after the line that named the run directory
    lines = proc.stderr.strip().splitlines()
    # the start lines (run directory, plan, short-budget warning), then one error line: no traceback
    assert proc.returncode == 3 and [line.split(":")[0] for line in lines] == [
        "sac_l0 CartPole-v1",
        "sac_l0 CartPole-v1",
        "warning",
        "sac_l0.py",
    ], proc.stderr
    assert lines[-1].startswith("sac_l0.py: error: training diverged"), proc.stderr
    (run_dir,) = run_dirs(tmp_path)
    ckpt = load_checkpoint(run_dir)  # the last one written before learning began
    assert ckpt["global_step"] == 80 and not ckpt["finished"]
    for state in ckpt["networks"].values():
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_divergence_in_process_raises_nonfinite(tmp_path):
    with pytest.raises(NonFiniteError, match="diverged"):
        sac.train(tiny_args("sac", tmp_path, env_id="Pendulum-v1", policy_lr=1e30, eval_episodes=0))
