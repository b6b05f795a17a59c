"""DQN (Double DQN by default) with an L0-regularised (hard-concrete gated) Q-network, CleanRL style.

    python algos/dqn_l0.py --env-id CartPole-v1               # sparse Q-network
    python algos/dqn_l0.py --env-id CartPole-v1 --no-l0       # dense baseline, same code
    python algos/dqn_l0.py --env-id CartPole-v1 --sparsity gmp --gmp-target 0.9   # pruning baseline
    python algos/dqn_l0.py --resume runs/<run_name>           # continue from the last checkpoint
    python algos/dqn_l0.py --env-id SuperMarioBros-7-1-v0 --num-envs 4 --total-timesteps 2000000 \
        --buffer-size 100000 --learning-starts 20000 --train-frequency 4 --target-network-frequency 1000 \
        --batch-size 32 --learning-rate 1e-4 --exploration-fraction 0.1 --end-e 0.01   # Nature-DQN settings

Defaults: CleanRL's CartPole DQN (MLP 120-84, MSE loss) with a 4x learning rate and the L0 settings
measured best at 95 % on CartPole; the Mario line above is the one source of its settings (its 100k
buffer holds 2.63 GiB). L0: acting, the Double-DQN argmax and evaluation use deterministic gates; the
gate-free target copies the effective weights (`l0.dense_state_dict`); docs/METHOD.md says why.
"""

import copy
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Literal

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim

from l0rl import l0
from l0rl.envs import make_vector_env
from l0rl.policy import FrameScale
from l0rl.runkit import (
    BUFFER_NAME,
    CommandLine,
    KeepBest,
    ReplayArgs,
    ReplayBuffer,
    Run,
    UsageError,
    check_loss,
    parse_args,
    run_cli,
    save_buffer,
    seed_everything,
    update_average,
    update_target,
    validate,
)
from l0rl.sparsity import make_sparsity

ALGO = "dqn_l0"
# Mario's L0 defaults, and why: docs/METHOD.md ("DQN-L0's defaults, and why")
MARIO = dict(l0_cost="params", l0_schedule="constant", l0_train_gates="sampled", l0_freeze_sparsity=1.0)
MARIO |= dict(l0_random_closed=0.0, l0_warmup=0.1, l0_target_sparsity=0.9, l0_target_at=0.6)
MARIO |= dict(l0_target_hold=False, keep_best_every=0)
FAMILY_DEFAULTS = {"mario": MARIO}
"""Defaults where an env family differs from CartPole's (applied by parse_args; explicit flags win)."""


@dataclass
class Args(ReplayArgs):
    """DQN arguments (the run arguments every algorithm shares come first, from RunArgs, then ReplayArgs' buffer option)."""

    # Algorithm specific arguments
    learning_rate: float = 1e-3
    """the learning rate of the optimizer (weights); 4x CleanRL's: a 95 % sparse Q-network learns slowly"""
    anneal_lr: bool = False
    """anneal the weights' learning rate linearly to 0 over the run (off: CleanRL's DQN keeps it)"""
    num_envs: int = 1
    """the number of parallel game environments"""
    buffer_size: int = 10000
    """the replay memory buffer size (transitions, over all envs)"""
    gamma: float = 0.99
    """the discount factor gamma"""
    tau: float = 1.0
    """the target network update rate (1.0: hard copy)"""
    target_network_frequency: int = 500
    """update the target network every N env steps"""
    batch_size: int = 128
    """the batch size of sample from the replay memory"""
    start_e: float = 1.0
    """the starting epsilon for exploration"""
    end_e: float = 0.05
    """the ending epsilon for exploration"""
    exploration_fraction: float = 0.5
    """the fraction of `total-timesteps` it takes from start-e to go end-e"""
    learning_starts: int = 10000
    """timestep to start learning"""
    train_frequency: int = 10
    """one gradient step every N env steps (counted over all envs)"""
    double_dqn: bool = True
    """Double-DQN target: the online network picks the next action, the target network values it"""
    swa_start: float = 1.0
    """fraction of training after which the kept policy is the mean of the later weights (SWA); 1: off"""
    keep_best_every: int = 10_000
    """every N env steps from --keep-best-from, keep the policy best on selection episodes; 0: the last"""
    keep_best_from: float = 0.2
    """fraction of training from which policies are candidates (the defaults' map is fixed by then)"""
    keep_best_episodes: int = 10
    """selection episodes per candidate (greedy, on seeds seed + 20 000)"""

    # L0 arguments (--sparsity l0, the default); docs/METHOD.md says why each default is what it is
    l0_lambda: float = 20.0
    """L0 strength for the Q-network (penalty: lambda x the priced share of open gates)"""
    l0_cost: Literal["params", "macs", "erk"] = "erk"
    """a weight's price: 1 (params), its MACs (macs), or fan_in x fan_out / (fan_in + fan_out) (erk)"""
    l0_drop_rate: float = 0.05
    """initial drop rate of the gates, in (0, 1): nearly open keeps the target's overestimate small"""
    l0_schedule: Literal["constant", "linear", "cosine", "target"] = "target"
    """sparsity-map schedule: constant, linear, cosine (warm-up then ramp) or target (dual ascent)"""
    l0_warmup: float = 0.0
    """fraction of training before the target schedule steers (lambda holds its start value then)"""
    l0_target_sparsity: float = 0.95
    """sparsity the target schedule steers the Q-network to"""
    l0_target_at: float = 0.2
    """fraction of training by which the target sparsity is reached (target schedule)"""
    l0_target_hold: bool = True
    """target schedule: lambda at its start value from step 0, the target ramping from the start sparsity"""
    l0_dual_lr: float = 0.01
    """step size of the dual ascent on log(lambda) per gradient step (target schedule)"""
    l0_train_gates: Literal["sampled", "deterministic"] = "deterministic"
    """gates in the learning updates: sampled (hard-concrete noise) or deterministic (as SAC's critics)"""
    l0_anneal_lr: bool = False
    """anneal the gates' rate (--l0-lr) linearly to 0 over the run, so the sparsity map settles"""
    l0_freeze_at: float = 1.0
    """fraction of training after which the sparsity map stays fixed (lambda 0, gates' rate 0); 1: never"""
    l0_freeze_sparsity: float = 0.95
    """fix the sparsity map from the first gradient step at which the Q-network is this sparse; 1: never"""
    l0_random_closed: float = 0.9
    """share of the gates closed at random before training (ERK shares per layer); 0: none"""

    # to be filled in runtime
    num_iterations: int = 0
    """the number of vector-env steps (computed in runtime)"""


class QNetwork(nn.Sequential):
    """Observations (float) -> one Q-value per action; the greedy policy is the argmax. A plain
    nn.Sequential chain: it is itself the deployable policy (the contract in l0rl/policy.py)."""

    def __init__(self, obs_space: gym.Space, action_space: gym.Space):
        n_actions = int(action_space.n)
        if len(obs_space.shape) == 3:  # stacked frames: Nature CNN
            layers = [FrameScale(), nn.Conv2d(obs_space.shape[0], 32, 8, stride=4), nn.ReLU()]
            layers += [nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(), nn.Conv2d(64, 64, 3, stride=1), nn.ReLU()]
            layers += [nn.Flatten(), nn.Linear(64 * 7 * 7, 512), nn.ReLU(), nn.Linear(512, n_actions)]
        else:
            layers = [nn.Linear(int(np.prod(obs_space.shape)), 120), nn.ReLU()]
            layers += [nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, n_actions)]
        super().__init__(*layers)


def gate(q_network: QNetwork, args: Args, example: torch.Tensor) -> None:
    """Price every gate by args.l0_cost, then close --l0-random-closed of them at random."""
    l0.set_costs(q_network, args.l0_cost, example if args.l0_cost == "macs" else None)
    l0.close_random(q_network, args.l0_random_closed)  # seeded: runs after seed_everything


def check_args(args: Args) -> None:
    validate(args, positive=("learning_rate", "l0_lr", "l0_dual_lr"))
    validate(args, unit=("gamma", "tau", "exploration_fraction", "swa_start"))
    validate(args, unit=("l0_freeze_at", "l0_freeze_sparsity"))
    validate(args, at_least_one=("num_envs", "batch_size", "train_frequency", "target_network_frequency"))
    validate(args, at_least_one=("keep_best_episodes",), non_negative=("keep_best_every", "keep_best_from"))
    if args.keep_best_from > 1.0:
        raise UsageError(f"--keep-best-from must be in [0, 1], got {args.keep_best_from}")
    if args.buffer_size < 2 * args.num_envs:
        raise UsageError(f"--buffer-size must be >= 2 x --num-envs ({2 * args.num_envs})")
    if args.batch_size > args.buffer_size:  # a batch is drawn from the buffer (and allocated whole)
        raise UsageError(f"--batch-size must be <= --buffer-size ({args.buffer_size}), got {args.batch_size}")
    if not (0.0 <= args.start_e <= 1.0 and 0.0 <= args.end_e <= 1.0):
        raise UsageError(f"--start-e and --end-e must be in [0, 1], got {args.start_e}, {args.end_e}")
    # lambda 0: no penalty
    validate(args, non_negative=("learning_starts", "save_buffer_max_mb", "l0_lambda"))
    if not 0.0 <= args.l0_random_closed < 1.0:
        raise UsageError(f"--l0-random-closed must be in [0, 1), got {args.l0_random_closed}; 0 closes none")
    if args.total_timesteps < args.num_envs:
        raise UsageError(f"--total-timesteps must be >= --num-envs ({args.num_envs})")


def train(args: Args, cli: CommandLine | None = None) -> str:
    """Train (or resume) a run; returns its run directory."""
    run = Run(args, ALGO, cli)
    args = run.args
    check_args(args)
    args.num_iterations = args.total_timesteps // args.num_envs

    # TRY NOT TO MODIFY: seeding
    seed_everything(args.seed, args.torch_deterministic)
    envs = make_vector_env(
        args.env_id, args.num_envs, args.seed, args.capture_video, run.video_dir, **run.env_options
    )
    if not isinstance(envs.single_action_space, gym.spaces.Discrete):
        envs.close()
        raise UsageError(f"{args.env_id}: DQN needs a discrete action space; use sac_l0.py")
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")

    spaces = (envs.single_observation_space, envs.single_action_space)
    q_network, target_network = QNetwork(*spaces).to(device), QNetwork(*spaces).to(device)
    # L0 LOGIC: gates (L0) or masks (GMP) on the Q-network; its target stays gate- and mask-free
    sparsity = make_sparsity(args, {"q_network": q_network}, {"q_network": args.l0_lambda})
    if sparsity.kind == "l0":
        gate(q_network, args, torch.zeros((1, *spaces[0].shape), device=device))
    optimizer = optim.Adam(l0.param_groups(q_network, args.learning_rate, args.l0_lr))
    update_target(target_network, q_network, 1.0)
    average = copy.deepcopy(q_network) if args.swa_start < 1.0 else None  # --swa-start's weight mean
    # ALGO Logic: Storage setup (before the run directory: a buffer too large for memory is refused)
    rb = ReplayBuffer(args.buffer_size, args.num_envs, envs.single_observation_space)
    # only now, with every argument accepted, does the run directory appear
    run.open(*spaces, args.num_iterations * args.num_envs, policy=q_network)
    keep, schedulers = None, {}
    if args.keep_best_every:  # its state travels with the schedulers': resumed exactly, fresh in a fork
        keep = schedulers["keep_best"] = KeepBest(
            q_network, args.keep_best_every, args.keep_best_from, args.keep_best_episodes, run
        )

    buffer_path = run.run_dir / BUFFER_NAME

    # TRY NOT TO MODIFY: start the game
    global_step, learn_from = run.start_step, args.learning_starts
    obs, _ = envs.reset(seed=args.seed)
    states = {"networks": {"q_network": q_network, "target_network": target_network}}
    states["networks"] |= {"average": average} if average is not None else {}
    averaged = 0  # gradient steps in the weight mean
    states |= {"optimizers": {"q_network": optimizer}, "sparsity": sparsity, "schedulers": schedulers}
    loop = run.restore(**states)
    if loop is not None:
        averaged = int(loop.get("averaged", 0))
        if rb.load(buffer_path, global_step):  # not one written after checkpoint.pt
            learn_from = loop["learn_from"]
        else:
            learn_from = global_step + args.learning_starts
            print(f"replay buffer not saved at step {global_step}: refilling, {args.learning_starts} steps")
        if (saved_envs := run.resumed_envs(envs)) is not None:  # exact env state (classic control)
            envs, obs = saved_envs, loop["obs"].numpy()
        else:  # e.g. Box2D or the emulator: episodes in flight restart, seeded by the step
            rb.cut(loop["obs"].numpy())
            obs, _ = envs.reset(seed=args.seed + global_step)
    print(
        f"replay buffer: {rb.nbytes:,} bytes ({rb.nbytes / 2**30:.3f} GiB) for {rb.rows * args.num_envs} "
        f"transitions of {rb.obs.dtype} {rb.obs.shape[2:]}, + {rb.obs[0, 0].nbytes:,} bytes per episode end"
    )

    td_loss = None
    for _iteration in range(global_step // args.num_envs + 1, args.num_iterations + 1):
        global_step += args.num_envs
        # ALGO LOGIC: put action logic here (epsilon-greedy on the deterministic-gate network)
        duration = args.exploration_fraction * args.total_timesteps
        epsilon = max(args.start_e + (args.end_e - args.start_e) * global_step / duration, args.end_e)
        with torch.no_grad(), l0.deterministic_gates(q_network):
            q_values = q_network(torch.as_tensor(obs, dtype=torch.float32, device=device))
        actions = q_values.argmax(dim=1).cpu().numpy()
        explore = np.random.rand(args.num_envs) < epsilon
        actions[explore] = np.random.randint(0, envs.single_action_space.n, int(explore.sum()))

        # TRY NOT TO MODIFY: execute the game and log data.
        next_obs, rewards, terminations, truncations, infos = envs.step(actions)
        run.log_episodes(infos, global_step)

        # TRY NOT TO MODIFY: save data to replay buffer. SAME_STEP autoreset: next_obs of a finished
        # env is already its reset obs; the transition's true next obs is infos["final_obs"][i].
        finals = {int(i): infos["final_obs"][i] for i in np.nonzero(infos.get("_final_obs", []))[0]}
        rb.add(obs, actions, rewards, terminations, finals)
        obs = next_obs

        # ALGO LOGIC: training. --train-frequency counts env steps over all envs: one gradient step per
        # multiple of it this vector step passed (several when --num-envs exceeds it).
        if global_step > learn_from and len(rb) > 0:
            for _ in range(run.due(global_step, args.num_envs, args.train_frequency)):
                # L0 LOGIC: lambda follows the gradient steps; the freeze reads the sparsity reached
                reached = sparsity.schedule(global_step, measure=args.l0_freeze_sparsity < 1.0)
                frozen = sparsity.kind == "l0" and global_step > args.l0_freeze_at * args.total_timesteps
                frozen |= reached.get("q_network", 0.0) >= args.l0_freeze_sparsity
                frac = 1.0 - (global_step - 1.0) / args.total_timesteps  # from the step: resumable
                if args.anneal_lr:
                    optimizer.param_groups[0]["lr"] = frac * args.learning_rate
                if args.l0_anneal_lr:
                    optimizer.param_groups[1]["lr"] = frac * args.l0_lr
                if frozen:  # the map is fixed from here on: no penalty, gates' rate 0
                    optimizer.param_groups[1]["lr"] = 0.0
                data = [torch.as_tensor(x, device=device) for x in rb.sample(args.batch_size)]
                b_obs, b_actions, b_next_obs, b_rewards, b_dones = data
                with torch.no_grad():
                    next_q = target_network(b_next_obs.float())
                    if args.double_dqn:
                        with l0.deterministic_gates(q_network):
                            next_actions = q_network(b_next_obs.float()).argmax(dim=1, keepdim=True)
                        target_max = next_q.gather(1, next_actions).squeeze(1)
                    else:
                        target_max = next_q.max(dim=1).values
                    td_target = b_rewards + args.gamma * target_max * (1 - b_dones)
                with (
                    l0.deterministic_gates(q_network)
                    if args.l0_train_gates == "deterministic"
                    else nullcontext()
                ):
                    old_val = q_network(b_obs.float()).gather(1, b_actions.unsqueeze(1)).squeeze(1)
                td_loss = F.mse_loss(old_val, td_target)
                # L0 LOGIC: expected share of open gated weights, weighted by the scheduled lambda
                l0_loss = torch.zeros(()) if frozen else sparsity.penalty()

                # optimize the model
                loss = td_loss + l0_loss
                check_loss(loss, global_step)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                sparsity.after_step(global_step)
                if average is not None and global_step > args.swa_start * args.total_timesteps:
                    averaged += 1
                    update_average(average, q_network, averaged)

            # update target network
            if run.due(global_step, args.num_envs, args.target_network_frequency):
                update_target(target_network, q_network, args.tau)
        policy = average if averaged else q_network
        if keep is not None:  # the greedy return swings late in training: keep the best one seen
            keep.step(policy, global_step, args.num_envs)
            policy = keep.chosen(policy)

        if run.due(global_step, args.num_envs, args.log_every) or global_step >= run.total_steps:
            metrics = {"charts/epsilon": epsilon, "charts/replay_buffer_bytes": rb.nbytes}
            if td_loss is not None:
                metrics["losses/td_loss"] = td_loss.item()
                metrics["losses/q_values"] = old_val.mean().item()
                metrics["losses/l0_penalty"] = float(l0_loss.detach())
            run.log(global_step, metrics | sparsity.log_dict(), policy=q_network, eps=epsilon)

        if run.should_checkpoint(global_step, args.num_envs):
            save_buffer(
                rb, buffer_path, global_step, args.save_buffer_max_mb
            )  # first: a resume checks its step
            loop = {"obs": obs, "learn_from": learn_from, "averaged": averaged}
            run.checkpoint(global_step, **states, loop=loop, envs=envs, policy=policy)
        if run.halting(global_step):
            break
    envs.close()
    return run.finish(global_step, policy, device)


if __name__ == "__main__":
    run_cli(lambda: train(*parse_args(Args, FAMILY_DEFAULTS)), f"{ALGO}.py")
