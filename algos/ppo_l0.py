"""PPO with L0-regularised (hard-concrete gated) actor and critic, CleanRL style, in one file.

    python algos/ppo_l0.py --env-id CartPole-v1               # sparse policy
    python algos/ppo_l0.py --env-id CartPole-v1 --no-l0       # dense baseline, same code
    python algos/ppo_l0.py --env-id CartPole-v1 --sparsity gmp --gmp-target 0.95   # pruning baseline
    python algos/ppo_l0.py --env-id SuperMarioBros-7-1-v0     # Nature CNN on 84x84x4 frames
    python algos/ppo_l0.py --resume runs/<run_name>           # continue from the last checkpoint

L0 during PPO: one gate draw is frozen for an iteration (`l0.frozen_gates`), so the rollout and
the update that reuses it see the same sampled policy; evaluation uses deterministic gates.
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

ALGO = "ppo_l0"
# Per-family L0 defaults; docs/METHOD.md ("PPO's per-family defaults") says why each is what it is
MARIO = dict(num_envs=8, total_timesteps=1_000_000, l0_granularity="mixed", l0_lambda_actor=100.0)
MARIO |= dict(l0_lambda_critic=0.5, l0_lr=1e-2, l0_anneal_lr=False, l0_schedule="constant")
ACROBOT = {"l0_schedule": "linear", "l0_lambda_actor": 3.5}
LUNAR = ACROBOT | dict(num_envs=16, num_steps=1024, num_minibatches=256, gamma=0.999, gae_lambda=0.98)
LUNAR |= dict(l0_lr=6e-4, total_timesteps=5_000_000, l0_train_gates="deterministic")
FAMILY_DEFAULTS = {"mario": MARIO, "Acrobot-v1": ACROBOT, "LunarLander-v3": LUNAR}
"""Defaults where an env family or env differs from CartPole's (applied by parse_args; explicit flags win)."""


@dataclass
class Args(RunArgs):
    """PPO arguments (the run arguments every algorithm shares come first, from RunArgs)."""

    # Algorithm specific arguments
    learning_rate: float = 2.5e-4
    """the learning rate of the optimizer (weights)"""
    num_envs: int = 4
    """the number of parallel game environments"""
    num_steps: int = 128
    """the number of steps to run in each environment per policy rollout"""
    anneal_lr: bool = True
    """toggle learning rate annealing for policy and value networks"""
    l0_anneal_lr: bool = True
    """anneal the gates' rate (--l0-lr) with the weights' (with --anneal-lr; turn off for --l0-schedule target)"""
    gamma: float = 0.99
    """the discount factor gamma"""
    reward_scale: float = 1.0
    """multiplies every reward the update sees (episode returns are logged unscaled)"""
    gae_lambda: float = 0.95
    """the lambda for the general advantage estimation"""
    num_minibatches: int = 4
    """the number of mini-batches"""
    update_epochs: int = 4
    """the K epochs to update the policy"""
    norm_adv: bool = True
    """toggles advantages normalization"""
    clip_coef: float = 0.2
    """the surrogate clipping coefficient"""
    clip_vloss: bool = True
    """toggles whether or not to use a clipped loss for the value function"""
    ent_coef: float = 0.01
    """coefficient of the entropy"""
    vf_coef: float = 0.5
    """coefficient of the value function"""
    max_grad_norm: float = 0.5
    """the maximum norm for the gradient clipping"""
    target_kl: float | None = None
    """the target KL divergence threshold"""

    # L0 arguments (--sparsity l0, the default): the best points of benchmark/results/sweep-ppo and
    # sweep-ppo-seeds (their NOTES.md; docs/METHOD.md says why)
    l0_lambda_actor: float = 3.75
    """L0 strength for the actor (penalty = expected share of non-zero gated weights)"""
    l0_lambda_critic: float = 0.0
    """L0 strength for the critic (0 leaves the critic dense: no gates, no gate noise in its values)"""
    l0_lr: float = 2.5e-3
    """L0: learning rate of the gates' log_alpha (sparsity grows with lambda x this rate)"""
    l0_schedule: Literal["constant", "linear", "cosine", "target"] = "constant"
    """L0: sparsity-map schedule (PPO: constant, the full lambda from the first step)"""
    l0_cost: Literal["params", "macs", "erk"] = "params"
    """price of a weight in the penalty: 1 (params), its MACs (macs: conv channels shut), ERK (erk: wide layers pay)"""
    l0_conv_cost: float = 1.0
    """multiplies the penalty's price of every conv weight (below 1: Linear weights close first, features stay)"""
    l0_train_gates: Literal["sampled", "deterministic"] = "sampled"
    """gates of the rollout and its update: sampled (one draw per iteration) or deterministic (the test-time
    gates: no gate noise in actions; a fully open gate learns from the penalty alone, so use a warm-up)"""

    # to be filled in runtime
    batch_size: int = 0
    """the batch size (computed in runtime)"""
    minibatch_size: int = 0
    """the mini-batch size (computed in runtime)"""
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
            frames = obs_space.shape[0]
            torso = [FrameScale(), layer_init(nn.Conv2d(frames, 32, 8, stride=4)), nn.ReLU()]
            torso += [layer_init(nn.Conv2d(32, 64, 4, stride=2)), nn.ReLU()]
            torso += [layer_init(nn.Conv2d(64, 64, 3, stride=1)), nn.ReLU(), nn.Flatten()]
            torso += [layer_init(nn.Linear(64 * 7 * 7, 512)), nn.ReLU()]
            self.actor = nn.Sequential(*torso, layer_init(nn.Linear(512, n_out), std=0.01))
            self.critic = nn.Sequential(*torso, layer_init(nn.Linear(512, 1), std=1))
            self.critic_own = self.critic[-1]  # the critic's gates beyond the shared torso
        else:  # two tanh layers of 64 each, as CleanRL's

            def mlp(n_out: int, std: float) -> nn.Sequential:
                n_in = int(np.prod(obs_space.shape))
                hidden = [
                    layer_init(nn.Linear(n_in, 64)),
                    nn.Tanh(),
                    layer_init(nn.Linear(64, 64)),
                    nn.Tanh(),
                ]
                return nn.Sequential(*hidden, layer_init(nn.Linear(64, n_out), std=std))

            self.actor, self.critic = mlp(n_out, 0.01), mlp(1, 1.0)
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


def gate(agent: Agent, args: Args, example: torch.Tensor) -> None:
    """Price every gate by args.l0_cost (an ungated critic has none). MACs are counted from an
    observation through the whole network: a critic head on a shared torso cannot take one alone."""
    for net in (agent.actor, agent.critic):
        l0.set_costs(net, args.l0_cost, example if args.l0_cost == "macs" else None, args.l0_conv_cost)


def check_args(args: Args) -> None:
    validate(
        args,
        positive=("learning_rate", "l0_lr", "max_grad_norm", "clip_coef", "reward_scale"),
        unit=("gamma", "gae_lambda"),
    )
    validate(args, at_least_one=("num_envs", "num_steps", "num_minibatches", "update_epochs"))
    validate(args, non_negative=("l0_lambda_actor", "l0_lambda_critic", "l0_conv_cost"))  # 0: no penalty
    if (args.num_envs * args.num_steps) % args.num_minibatches:
        raise UsageError("--num-envs x --num-steps must be divisible by --num-minibatches")
    if args.total_timesteps < args.num_envs * args.num_steps:
        raise UsageError(f"--total-timesteps must be >= one rollout ({args.num_envs * args.num_steps} steps)")


def train(args: Args, cli: CommandLine | None = None) -> str:
    """Train (or resume) a run; returns its run directory."""
    run = Run(args, ALGO, cli)
    args = run.args
    check_args(args)
    args.batch_size = int(args.num_envs * args.num_steps)
    args.minibatch_size = int(args.batch_size // args.num_minibatches)
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
    # L0 LOGIC: gates (L0) or masks (GMP) on actor and critic; a critic at lambda 0 stays dense under
    # L0 (no gates, no gate noise in its values)
    strength = {"actor": args.l0_lambda_actor, "critic": args.l0_lambda_critic}
    lambdas = {k: lam for k, lam in strength.items() if k == "actor" or lam > 0}
    sparsity = make_sparsity(args, {"actor": agent.actor, "critic": agent.critic_own}, lambdas)
    if sparsity.kind == "l0":
        gate(agent, args, torch.zeros((1, *envs.single_observation_space.shape), device=device))
    optimizer = optim.Adam(l0.param_groups(agent, args.learning_rate, args.l0_lr), eps=1e-5)
    # only now, with every argument accepted, does the run directory appear
    spaces = (envs.single_observation_space, envs.single_action_space)
    run.open(*spaces, args.num_iterations * args.batch_size, policy=agent.actor)

    # ALGO Logic: Storage setup
    # frames stay uint8 (4x less memory per minibatch gather): the policy's own FrameScale makes them floats
    obs_dtype = torch.uint8 if len(envs.single_observation_space.shape) == 3 else torch.float32
    per_step = (args.num_steps, args.num_envs)
    obs = torch.zeros(per_step + envs.single_observation_space.shape, dtype=obs_dtype, device=device)
    actions = torch.zeros(per_step + envs.single_action_space.shape, device=device)
    logprobs, rewards = torch.zeros(per_step, device=device), torch.zeros(per_step, device=device)
    dones, values = torch.zeros(per_step, device=device), torch.zeros(per_step, device=device)

    # TRY NOT TO MODIFY: start the game
    global_step = run.start_step
    next_obs, _ = envs.reset(seed=args.seed)
    next_obs = torch.as_tensor(next_obs, dtype=obs_dtype, device=device)
    next_done = torch.zeros(args.num_envs).to(device)
    states = {"networks": {"agent": agent}, "optimizers": {"agent": optimizer}, "sparsity": sparsity}
    loop = run.restore(**states)
    if loop is not None:
        if (saved_envs := run.resumed_envs(envs)) is not None:  # exact env state (classic control)
            envs, next_obs, next_done = saved_envs, loop["next_obs"].to(device), loop["next_done"].to(device)
        else:  # e.g. Box2D or the emulator: episodes in flight restart, seeded by the step
            next_obs = torch.as_tensor(
                envs.reset(seed=args.seed + global_step)[0], dtype=obs_dtype, device=device
            )

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
                        action, logprob, _, value = agent.get_action_and_value(next_obs)
                        values[step] = value.flatten()
                    actions[step] = action
                    logprobs[step] = logprob

                    # TRY NOT TO MODIFY: execute the game and log data.
                    next_obs_np, reward, terminations, truncations, infos = envs.step(action.cpu().numpy())
                    next_done_np = np.logical_or(terminations, truncations)
                    reward = torch.tensor(reward, dtype=torch.float32, device=device) * args.reward_scale
                    # SAME_STEP autoreset: a truncated episode bootstraps from its true final obs
                    bootstrap_truncations(
                        reward, terminations, truncations, infos, agent.get_value, args.gamma, obs_dtype
                    )
                    rewards[step] = reward
                    next_obs = torch.as_tensor(next_obs_np, dtype=obs_dtype, device=device)
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
            b_logprobs = logprobs.reshape(-1)
            b_actions = actions.reshape((-1,) + envs.single_action_space.shape)
            b_advantages = advantages.reshape(-1)
            b_returns = returns.reshape(-1)
            b_values = values.reshape(-1)

            # Optimizing the policy and value network
            b_inds = np.arange(args.batch_size)
            clipfracs = []
            for _epoch in range(args.update_epochs):
                np.random.shuffle(b_inds)
                for start in range(0, args.batch_size, args.minibatch_size):
                    mb_inds = b_inds[start : start + args.minibatch_size]
                    _, newlogprob, entropy, newvalue = agent.get_action_and_value(
                        b_obs[mb_inds],
                        b_actions.long()[mb_inds] if not agent.continuous else b_actions[mb_inds],
                    )
                    logratio = newlogprob - b_logprobs[mb_inds]
                    ratio = logratio.exp()

                    with torch.no_grad():
                        # calculate approx_kl http://joschu.net/blog/kl-approx.html
                        old_approx_kl = (-logratio).mean()
                        approx_kl = ((ratio - 1) - logratio).mean()
                        clipfracs += [((ratio - 1.0).abs() > args.clip_coef).float().mean().item()]

                    mb_advantages = b_advantages[mb_inds]
                    if args.norm_adv:
                        mb_advantages = (mb_advantages - mb_advantages.mean()) / (mb_advantages.std() + 1e-8)

                    # Policy loss
                    pg_loss1 = -mb_advantages * ratio
                    pg_loss2 = -mb_advantages * torch.clamp(ratio, 1 - args.clip_coef, 1 + args.clip_coef)
                    pg_loss = torch.max(pg_loss1, pg_loss2).mean()

                    # Value loss
                    newvalue = newvalue.view(-1)
                    if args.clip_vloss:
                        v_loss_unclipped = (newvalue - b_returns[mb_inds]) ** 2
                        v_clipped = b_values[mb_inds] + torch.clamp(
                            newvalue - b_values[mb_inds], -args.clip_coef, args.clip_coef
                        )
                        v_loss_clipped = (v_clipped - b_returns[mb_inds]) ** 2
                        v_loss = 0.5 * torch.max(v_loss_unclipped, v_loss_clipped).mean()
                    else:
                        v_loss = 0.5 * ((newvalue - b_returns[mb_inds]) ** 2).mean()

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

                if args.target_kl is not None and approx_kl > args.target_kl:
                    break

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
                "losses/old_approx_kl": old_approx_kl.item(),
                "losses/approx_kl": approx_kl.item(),
                "losses/clipfrac": np.mean(clipfracs),
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
    run_cli(lambda: train(*parse_args(Args, FAMILY_DEFAULTS)), f"{ALGO}.py")
