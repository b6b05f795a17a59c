"""A2C (synchronous advantage actor-critic) with L0-gated actor and critic, CleanRL style, in one file.

    python algos/a2c_l0.py --env-id CartPole-v1               # sparse policy
    python algos/a2c_l0.py --env-id CartPole-v1 --no-l0       # dense baseline, same code
    python algos/a2c_l0.py --env-id CartPole-v1 --sparsity gmp --gmp-target 0.95   # pruning baseline
    python algos/a2c_l0.py --resume runs/<run_name>           # continue from the last checkpoint

A2C's defaults (as in the A3C paper's synchronous variant and Stable-Baselines3): 5-step rollouts,
one whole-batch update per rollout, RMSprop, no ratio clipping, n-step returns (gae_lambda = 1).
L0: one gate draw is frozen per iteration (`l0.frozen_gates`): the rollout and its update see the
same sampled policy; evaluation uses deterministic gates.
"""

from dataclasses import dataclass
from typing import Literal

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim
from torch.distributions.categorical import Categorical
from torch.distributions.normal import Normal

from l0rl import l0
from l0rl.envs import make_vector_env
from l0rl.policy import FrameScale
from l0rl.runkit import (
    CommandLine,
    Run,
    RunArgs,
    UsageError,
    bootstrap_truncations,
    check_loss,
    gae,
    parse_args,
    run_cli,
    seed_everything,
    validate,
)
from l0rl.sparsity import make_sparsity

ALGO = "a2c_l0"


@dataclass
class Args(RunArgs):
    """A2C arguments (the run arguments every algorithm shares come first, from RunArgs)."""

    # Algorithm specific arguments
    learning_rate: float = 7e-4
    """the learning rate of the optimizer (weights)"""
    num_envs: int = 8
    """the number of parallel game environments"""
    num_steps: int = 5
    """the number of steps to run in each environment per policy rollout"""
    anneal_lr: bool = True
    """toggle learning rate annealing for policy and value networks"""
    l0_anneal_lr: bool = True
    """anneal the gates' rate (--l0-lr) with the weights' (with --anneal-lr; turn off for --l0-schedule target)"""
    gamma: float = 0.99
    """the discount factor gamma"""
    gae_lambda: float = 1.0
    """the lambda for the general advantage estimation (1.0: plain n-step returns)"""
    norm_adv: bool = False
    """toggles advantages normalization"""
    rms_alpha: float = 0.99
    """RMSprop smoothing constant, in [0, 1)"""
    rms_eps: float = 1e-5
    """RMSprop epsilon"""
    ent_coef: float = 0.01
    """coefficient of the entropy"""
    vf_coef: float = 0.5
    """coefficient of the value function"""
    max_grad_norm: float = 0.5
    """the maximum norm for the gradient clipping"""

    # L0 arguments (--sparsity l0, the default): the best point of benchmark/results/sweep-a2c
    l0_lambda_actor: float = 5.0
    """L0 strength for the actor (penalty = expected share of non-zero gated weights)"""
    l0_lambda_critic: float = 0.0
    """L0 strength for the critic (0 leaves the critic dense: no gates, no gate noise in its values)"""
    l0_lr: float = 5e-3
    """L0: learning rate of the gates' log_alpha (sparsity grows with lambda x this rate)"""
    l0_schedule: Literal["constant", "linear", "cosine", "target"] = "constant"
    """L0: sparsity-map schedule (A2C: constant, the full lambda from the first step)"""
    l0_dual_lr: float = 0.004
    """step size of the dual ascent on log(lambda) per iteration (target schedule): PPO's 0.05 per
    512 env steps, per A2C's 40"""
    l0_train_gates: Literal["sampled", "deterministic"] = "sampled"
    """gates of the rollout and its update: sampled (one draw per iteration) or deterministic (the test-time
    gates: no gate noise in actions; a fully open gate learns from the penalty alone, so use a warm-up)"""

    # to be filled in runtime
    batch_size: int = 0
    """the batch size (computed in runtime)"""
    num_iterations: int = 0
    """the number of iterations (computed in runtime)"""


def layer_init(layer, std=2**0.5, bias_const=0.0):
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias_const)
    return layer


class Agent(nn.Module):
    """Actor and critic. `actor` alone is the deployable policy: observations -> logits (discrete)
    or action mean (continuous), an nn.Sequential that compress can shrink layer by layer."""

    def __init__(self, obs_space: gym.Space, action_space: gym.Space):
        super().__init__()
        self.continuous = isinstance(action_space, gym.spaces.Box)
        n_out = int(np.prod(action_space.shape)) if self.continuous else int(action_space.n)
        if len(obs_space.shape) == 3:  # stacked frames: Nature CNN torso shared by actor and critic
            torso = [
                FrameScale(),
                layer_init(nn.Conv2d(obs_space.shape[0], 32, 8, stride=4)),
                nn.ReLU(),
                layer_init(nn.Conv2d(32, 64, 4, stride=2)),
                nn.ReLU(),
                layer_init(nn.Conv2d(64, 64, 3, stride=1)),
                nn.ReLU(),
                nn.Flatten(),
                layer_init(nn.Linear(64 * 7 * 7, 512)),
                nn.ReLU(),
            ]
            self.actor = nn.Sequential(*torso, layer_init(nn.Linear(512, n_out), std=0.01))
            self.critic = nn.Sequential(*torso, layer_init(nn.Linear(512, 1), std=1))
            self.critic_own = self.critic[-1]  # the critic's gates beyond the shared torso
        else:
            n_in = int(np.prod(obs_space.shape))
            self.actor = nn.Sequential(
                layer_init(nn.Linear(n_in, 64)),
                nn.Tanh(),
                layer_init(nn.Linear(64, 64)),
                nn.Tanh(),
                layer_init(nn.Linear(64, n_out), std=0.01),
            )
            self.critic = nn.Sequential(
                layer_init(nn.Linear(n_in, 64)),
                nn.Tanh(),
                layer_init(nn.Linear(64, 64)),
                nn.Tanh(),
                layer_init(nn.Linear(64, 1), std=1.0),
            )
            self.critic_own = self.critic
        if self.continuous:
            self.actor_logstd = nn.Parameter(torch.zeros(1, n_out))

    def get_value(self, x):
        return self.critic(x)

    def get_action_and_value(self, x, action=None):
        if self.critic_own is not self.critic:  # the shared CNN torso (~all the MACs) runs once, not per head
            hidden = self.actor[:-1](x)
            out, value = self.actor[-1](hidden), self.critic_own(hidden)
        else:
            out, value = self.actor(x), self.critic(x)
        std = self.actor_logstd.expand_as(out).exp() if self.continuous else None
        probs = Normal(out, std) if self.continuous else Categorical(logits=out)
        action = probs.sample() if action is None else action
        logprob, entropy = probs.log_prob(action), probs.entropy()
        if self.continuous:  # independent action dimensions
            logprob, entropy = logprob.sum(1), entropy.sum(1)
        return action, logprob, entropy, value


def check_args(args: Args) -> None:
    validate(
        args, positive=("learning_rate", "l0_lr", "max_grad_norm", "rms_eps"), unit=("gamma", "gae_lambda")
    )
    validate(args, at_least_one=("num_envs", "num_steps"))
    if not 0.0 <= args.rms_alpha < 1.0:  # alpha = 1 never updates RMSprop's average: steps of lr / eps
        raise UsageError(f"--rms-alpha must be in [0, 1), got {args.rms_alpha}")
    validate(args, non_negative=("l0_lambda_actor", "l0_lambda_critic"))  # 0 switches the penalty off
    if args.total_timesteps < args.num_envs * args.num_steps:
        raise UsageError(f"--total-timesteps must be >= one rollout ({args.num_envs * args.num_steps} steps)")


def train(args: Args, cli: CommandLine | None = None) -> str:
    """Train (or resume) a run; returns its run directory."""
    run = Run(args, ALGO, cli)
    args = run.args
    check_args(args)
    args.batch_size = int(args.num_envs * args.num_steps)
    args.num_iterations = args.total_timesteps // args.batch_size

    # TRY NOT TO MODIFY: seeding
    seed_everything(args.seed, args.torch_deterministic)
    envs = make_vector_env(
        args.env_id, args.num_envs, args.seed, args.capture_video, run.video_dir, **run.env_options
    )
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")

    # channels-last conv kernels: the CNN's update is ~10 % faster on CPU (MLPs are unaffected)
    agent = Agent(envs.single_observation_space, envs.single_action_space)
    agent = agent.to(device, memory_format=torch.channels_last)
    # L0 LOGIC: gates (L0) or masks (GMP) on actor and critic (the actor includes a shared torso); a
    # critic at lambda 0 stays dense under L0 (no gates, no gate noise in its values)
    strength = {"actor": args.l0_lambda_actor, "critic": args.l0_lambda_critic}
    lambdas = {k: lam for k, lam in strength.items() if k == "actor" or lam > 0}
    sparsity = make_sparsity(args, {"actor": agent.actor, "critic": agent.critic_own}, lambdas)
    optimizer = optim.RMSprop(
        l0.param_groups(agent, args.learning_rate, args.l0_lr),
        alpha=args.rms_alpha,
        eps=args.rms_eps,
    )
    # only now, with every argument accepted, does the run directory appear
    spaces = (envs.single_observation_space, envs.single_action_space)
    run.open(*spaces, args.num_iterations * args.batch_size, policy=agent.actor)

    # ALGO Logic: Storage setup
    obs = torch.zeros((args.num_steps, args.num_envs) + envs.single_observation_space.shape).to(device)
    actions = torch.zeros((args.num_steps, args.num_envs) + envs.single_action_space.shape).to(device)
    rewards = torch.zeros((args.num_steps, args.num_envs)).to(device)
    dones = torch.zeros((args.num_steps, args.num_envs)).to(device)
    values = torch.zeros((args.num_steps, args.num_envs)).to(device)

    # TRY NOT TO MODIFY: start the game
    global_step = run.start_step
    next_obs, _ = envs.reset(seed=args.seed)
    next_obs = torch.Tensor(next_obs).to(device)
    next_done = torch.zeros(args.num_envs).to(device)
    states = {"networks": {"agent": agent}, "optimizers": {"agent": optimizer}, "sparsity": sparsity}
    loop = run.restore(**states)
    if loop is not None:
        if (saved_envs := run.resumed_envs(envs)) is not None:  # exact env state (classic control)
            envs, next_obs, next_done = saved_envs, loop["next_obs"].to(device), loop["next_done"].to(device)
        else:  # e.g. Box2D or the emulator: episodes in flight restart, seeded by the step
            next_obs = torch.Tensor(envs.reset(seed=args.seed + global_step)[0]).to(device)

    for iteration in range(global_step // args.batch_size + 1, args.num_iterations + 1):
        # Annealing the rate if instructed to do so (the gates' rate too, unless --no-l0-anneal-lr)
        if args.anneal_lr:
            frac = 1.0 - (iteration - 1.0) / args.num_iterations
            optimizer.param_groups[0]["lr"] = frac * args.learning_rate
            optimizer.param_groups[1]["lr"] = frac * args.l0_lr if args.l0_anneal_lr else args.l0_lr
        sparsity.schedule(global_step)  # L0: this iteration's lambdas

        gate_mode = l0.deterministic_gates if args.l0_train_gates == "deterministic" else l0.frozen_gates
        with gate_mode(agent):  # one gate draw (or the test-time gates) for this rollout and its update
            with l0.cached_gates():  # weights and gate noise are fixed during the rollout
                for step in range(0, args.num_steps):
                    global_step += args.num_envs
                    obs[step] = next_obs
                    dones[step] = next_done

                    # ALGO LOGIC: action logic
                    with torch.no_grad():
                        action, _, _, value = agent.get_action_and_value(next_obs)
                        values[step] = value.flatten()
                    actions[step] = action

                    # TRY NOT TO MODIFY: execute the game and log data.
                    next_obs_np, reward, terminations, truncations, infos = envs.step(action.cpu().numpy())
                    next_done_np = np.logical_or(terminations, truncations)
                    reward = torch.tensor(reward, dtype=torch.float32, device=device)
                    # SAME_STEP autoreset: a truncated episode bootstraps from its true final obs
                    bootstrap_truncations(
                        reward, terminations, truncations, infos, agent.get_value, args.gamma
                    )
                    rewards[step] = reward
                    next_obs = torch.Tensor(next_obs_np).to(device)
                    next_done = torch.Tensor(next_done_np).to(device)
                    run.log_episodes(infos, global_step)
            # bootstrap value if not done
            with torch.no_grad():
                next_value = agent.get_value(next_obs).reshape(1, -1)
            advantages, returns = gae(
                rewards, values, dones, next_value, next_done, args.gamma, args.gae_lambda
            )

            # flatten the batch
            b_obs = obs.reshape((-1,) + envs.single_observation_space.shape)
            b_actions = actions.reshape((-1,) + envs.single_action_space.shape)
            b_advantages = advantages.reshape(-1)
            b_returns = returns.reshape(-1)
            b_values = values.reshape(-1)

            # ALGO LOGIC: one whole-batch update, no ratio and no clipping
            _, newlogprob, entropy, newvalue = agent.get_action_and_value(
                b_obs, b_actions.long() if not agent.continuous else b_actions
            )
            if args.norm_adv:
                b_advantages = (b_advantages - b_advantages.mean()) / (b_advantages.std() + 1e-8)
            pg_loss = -(b_advantages * newlogprob).mean()
            v_loss = 0.5 * ((newvalue.view(-1) - b_returns) ** 2).mean()
            # L0 LOGIC: expected share of open gated weights, weighted by the scheduled lambdas
            l0_loss = sparsity.penalty()
            entropy_loss = entropy.mean()
            loss = pg_loss - args.ent_coef * entropy_loss + v_loss * args.vf_coef + l0_loss
            check_loss(loss, global_step)

            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(l0.weight_parameters(agent), args.max_grad_norm)
            optimizer.step()
            sparsity.after_step(global_step)

        y_pred, y_true = b_values.cpu().numpy(), b_returns.cpu().numpy()
        var_y = np.var(y_true)
        explained_var = np.nan if var_y == 0 else 1 - np.var(y_true - y_pred) / var_y

        # TRY NOT TO MODIFY: record rewards for plotting purposes
        if run.due(global_step, args.batch_size, args.log_every) or global_step >= run.total_steps:
            metrics = {
                "charts/learning_rate": optimizer.param_groups[0]["lr"],
                "losses/value_loss": v_loss.item(),
                "losses/policy_loss": pg_loss.item(),
                "losses/entropy": entropy_loss.item(),
                "losses/explained_variance": explained_var,
                "losses/l0_penalty": float(l0_loss.detach()),
            }
            run.log(global_step, metrics | sparsity.log_dict(), policy=agent.actor)

        if run.should_checkpoint(global_step, args.batch_size):
            loop = {"next_obs": next_obs.cpu(), "next_done": next_done.cpu()}
            run.checkpoint(global_step, **states, loop=loop, envs=envs, policy=agent.actor)
        if run.halting(global_step):
            break
    envs.close()
    return run.finish(global_step, agent.actor, device)


if __name__ == "__main__":
    run_cli(lambda: train(*parse_args(Args)), f"{ALGO}.py")
