"""SAC with L0-regularised (hard-concrete gated) actor and twin critics, CleanRL style, in one file.

    python algos/sac_l0.py --env-id NeedleReach-v0 --her            # sparse reach policy, hindsight goals
    python algos/sac_l0.py --env-id NeedleReach-v0 --her --no-l0    # dense baseline, same code
    python algos/sac_l0.py --env-id NeedleReach-v0 --her --sparsity gmp   # pruning baseline
    python algos/sac_l0.py --env-id CartPole-v1                     # discrete SAC (Christodoulou 2019)
    python algos/sac_l0.py --resume runs/<run_name>                 # continue from the last checkpoint

L0 during SAC: the actor learns with a fresh gate sample per forward (train mode) and acts under
deterministic gates, so exploration comes from the action noise around the policy that will be
deployed. The critics always run deterministic gates (eval mode), as their gate-free targets, which
are Polyak-averaged from `l0.dense_state_dict(critic)` (no log_alpha is ever averaged as a weight);
their gates still learn through the deterministic gate and the penalty. Why: docs/METHOD.md.
Resume: a replay buffer within --save-buffer-max-mb (200 MB: vector observations yes, image ones no)
is written next to the checkpoint and resume is exact; otherwise the buffer restarts empty, and
learning pauses until the current policy has refilled --learning-starts transitions.
Everything that shapes training (the L0 schedulers, the GMP masks) steps on env steps or updates,
never with logging, so neither --log-every nor a halt and resume changes the result.
"""

import math
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
from torch.distributions.categorical import Categorical
from torch.distributions.normal import Normal

from l0rl import l0
from l0rl.envs import goal_spec, make_vector_env
from l0rl.errors import NonFiniteError
from l0rl.policy import Affine, FrameScale
from l0rl.runkit import (
    BUFFER_NAME,
    CommandLine,
    EpisodeReplayBuffer,
    ReplayArgs,
    Run,
    UsageError,
    check_loss,
    parse_args,
    run_cli,
    save_buffer,
    seed_everything,
    update_target,
    validate,
)
from l0rl.sparsity import make_sparsity

ALGO = "sac_l0"
LOG_STD_MAX, LOG_STD_MIN = 2, -5


@dataclass
class Args(ReplayArgs):
    """SAC arguments (the run arguments every algorithm shares come first, from RunArgs, then ReplayArgs' buffer option)."""

    # RunArgs fields with SAC's own defaults
    env_id: str = "NeedleReach-v0"
    """the id of the environment"""
    total_timesteps: int = 50_000
    """total timesteps of the experiments"""
    checkpoint_every: int = 10_000
    """write a checkpoint every N env steps (and always at the end or when halting)"""

    # Algorithm specific arguments
    num_envs: int = 4
    """the number of parallel game environments (each vector step adds num_envs transitions)"""
    buffer_size: int = int(1e6)
    """the replay memory buffer size (transitions)"""
    gamma: float = 0.98
    """the discount factor gamma"""
    tau: float = 0.005
    """target smoothing coefficient, in (0, 1]"""
    batch_size: int = 256
    """the batch size of sample from the replay memory"""
    learning_starts: int = 2000
    """timestep to start learning (random actions before it)"""
    policy_lr: float = 3e-4
    """the learning rate of the policy network optimizer (weights)"""
    q_lr: float = 1e-3
    """the learning rate of the Q network optimizer (weights) and of the entropy coefficient"""
    gradient_steps: int = 2
    """learning updates per vector step (num_envs transitions)"""
    policy_frequency: int = 2
    """the frequency of training policy (delayed; the skipped updates are made up at once)"""
    target_network_frequency: int = 1
    """the frequency of updates for the target networks (in learning updates)"""
    alpha: float = 0.2
    """entropy regularization coefficient, > 0 (with --autotune its initial value, tuned in log space)"""
    autotune: bool = True
    """automatic tuning of the entropy coefficient"""
    target_entropy_scale: float = 0.89
    """discrete actions: target entropy = scale * log(n_actions) (Box actions: -action_dim)"""
    hidden_size: int = 256
    """width of the two hidden layers of the MLP actor and critics"""
    her: bool = False
    """hindsight experience replay ("future" strategy) for goal envs; NeedleReach-v0 with L0 needs it"""
    her_k: int = 4
    """relabelled goals per real one: a share k/(k+1) of each batch gets a later achieved goal"""

    # L0 arguments (--sparsity l0, the default): the best point of benchmark/results/sweep-offpolicy/NOTES.md
    l0_lambda_actor: float = 4.0
    """L0 strength for the actor's policy path (penalty = expected share of non-zero gated weights)"""
    l0_lambda_critic: float = 0.1
    """L0 strength for each critic"""
    l0_lr: float = 3e-3
    """learning rate of the gate parameters log_alpha (no weight decay)"""
    l0_schedule_every: int = 1_000
    """env steps between sparsity-map scheduler steps (for the target schedule: one dual-ascent step each)"""


def affine(scale, shift) -> Affine:
    return Affine(torch.as_tensor(scale, dtype=torch.float32), torch.as_tensor(shift, dtype=torch.float32))


def torso(obs_space: gym.Space, hidden: int, action_space: gym.Space | None = None):
    """(feature layers, width): the Nature CNN for stacked frames, else a two-layer ReLU MLP on the
    observation (with the action appended when given). Bounded inputs are first mapped to [-1, 1]:
    NeedleReach's positions, centimetres apart at offsets of several units, are hard to resolve raw."""
    if len(obs_space.shape) == 3:
        return [
            FrameScale(),
            nn.Conv2d(obs_space.shape[0], 32, 8, stride=4),
            nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(64 * 7 * 7, 512),
            nn.ReLU(),
        ], 512
    spaces = [obs_space] if action_space is None else [obs_space, action_space]
    low, high = (
        np.concatenate([getattr(s, k).ravel() for s in spaces]).astype(np.float64) for k in ("low", "high")
    )
    layers = [nn.Linear(len(low), hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU()]
    if np.isfinite(low).all() and np.isfinite(high).all():
        width = np.where(high > low, high - low, 2.0)
        layers.insert(0, affine(2.0 / width, -(high + low) / width))
    return layers, hidden


class SoftQNetwork(nn.Module):
    """Box actions: Q(s, a) -> [B], the action appended to the observation. Discrete actions:
    Q(s, .) -> [B, n], or Q(s, a) -> [B] when a is given."""

    def __init__(self, obs_space: gym.Space, action_space: gym.Space, hidden: int):
        super().__init__()
        self.continuous = isinstance(action_space, gym.spaces.Box)
        layers, width = torso(obs_space, hidden, action_space if self.continuous else None)
        self.net = nn.Sequential(*layers, nn.Linear(width, 1 if self.continuous else int(action_space.n)))

    def forward(self, x, a=None):
        if self.continuous:
            return self.net(torch.cat([x, a], 1)).view(-1)
        q = self.net(x)
        return q if a is None else q.gather(1, a.long().view(-1, 1)).view(-1)


class Actor(nn.Module):
    """Shared trunk, then `head` (action mean, or logits) and, for Box actions, a separate `log_std`
    head. `policy()` is the deployable path trunk -> head [-> tanh -> rescale], sharing modules."""

    def __init__(self, obs_space: gym.Space, action_space: gym.Space, hidden: int):
        super().__init__()
        self.continuous = isinstance(action_space, gym.spaces.Box)
        layers, width = torso(obs_space, hidden)
        self.trunk = nn.Sequential(*layers)
        n_out = int(np.prod(action_space.shape)) if self.continuous else int(action_space.n)
        self.head = nn.Linear(width, n_out)
        if self.continuous:
            self.log_std = nn.Linear(width, n_out)
            low, high = action_space.low.astype(np.float64), action_space.high.astype(np.float64)
            self.rescale = affine((high - low) / 2.0, (high + low) / 2.0)  # tanh's [-1, 1] -> the bounds

    def policy(self) -> nn.Sequential:
        """obs -> action (tanh-squashed mean, rescaled to the bounds) or logits (l0rl.policy's contract)."""
        return nn.Sequential(*self.trunk, self.head, *([nn.Tanh(), self.rescale] if self.continuous else []))

    def get_action(self, x):
        """Box: (sampled action, log prob [B], mean action). Discrete: (sampled action,
        log probs [B, n], probs [B, n])."""
        h = self.trunk(x)
        out = self.head(h)  # the action mean, or the logits
        log_std = torch.tanh(self.log_std(h)) if self.continuous else torch.zeros(())
        if not (torch.isfinite(out).all() and torch.isfinite(log_std).all()):
            # rather than torch's refusal of a NaN distribution, with a traceback
            raise NonFiniteError.at(None, "the actor outputs NaN/inf")
        if not self.continuous:
            dist = Categorical(logits=out)
            return dist.sample(), F.log_softmax(out, dim=1), dist.probs
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (log_std + 1)
        normal = Normal(out, log_std.exp())
        x_t = normal.rsample()  # reparameterisation trick
        y_t = torch.tanh(x_t)
        # change of variables through tanh and the rescale
        log_prob = normal.log_prob(x_t) - torch.log(self.rescale.scale * (1 - y_t.pow(2)) + 1e-6)
        return self.rescale(y_t), log_prob.sum(1), self.rescale(torch.tanh(out))


HIDDEN_LIMIT = 2**14
"""The widest hidden layer: its square of weights is 1 GiB already, and torch fails on a layer far wider
(a typo, or a crafted checkpoint's arguments) with an allocation traceback."""


def check_args(args: Args) -> None:
    # --alpha must be > 0 even with --autotune: it is the starting point of the tuning, in log space
    validate(args, positive=("policy_lr", "q_lr", "l0_lr", "alpha"), unit=("gamma", "tau"))
    validate(args, at_least_one=("num_envs", "batch_size", "gradient_steps", "policy_frequency"))
    validate(args, at_least_one=("target_network_frequency", "hidden_size", "her_k", "l0_schedule_every"))
    validate(
        args, non_negative=("l0_lambda_actor", "l0_lambda_critic", "learning_starts", "save_buffer_max_mb")
    )  # lambda 0: no penalty
    if args.hidden_size > HIDDEN_LIMIT:
        raise UsageError(f"--hidden-size must be <= {HIDDEN_LIMIT}, got {args.hidden_size}")
    if args.buffer_size < args.num_envs or args.total_timesteps < args.num_envs:
        raise UsageError("--buffer-size and --total-timesteps must be >= --num-envs")
    if args.batch_size > args.buffer_size:  # a batch is drawn from the buffer (and allocated whole)
        raise UsageError(f"--batch-size must be <= --buffer-size ({args.buffer_size}), got {args.batch_size}")


def train(args: Args, cli: CommandLine | None = None) -> str:
    """Train (or resume) a run; returns its run directory."""
    run = Run(args, ALGO, cli)
    args = run.args
    check_args(args)
    her = goal_spec(args.env_id, **run.env_options) if args.her else None
    if args.her and her is None:
        raise UsageError(f"--her needs a goal env such as NeedleReach-v0; {args.env_id} has no goal_spec")

    # TRY NOT TO MODIFY: seeding
    seed_everything(args.seed, args.torch_deterministic)
    envs = make_vector_env(
        args.env_id, args.num_envs, args.seed, args.capture_video, run.video_dir, **run.env_options
    )
    envs.action_space.seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
    obs_space, action_space = envs.single_observation_space, envs.single_action_space
    if not isinstance(action_space, gym.spaces.Box | gym.spaces.Discrete):
        envs.close()
        raise UsageError(
            f"SAC needs Box or Discrete actions, {args.env_id} has {type(action_space).__name__}"
        )
    continuous = isinstance(action_space, gym.spaces.Box)

    actor = Actor(obs_space, action_space, args.hidden_size).to(device)
    policy = actor.policy()  # the deployable path, sharing the actor's modules
    qf1, qf2 = (SoftQNetwork(obs_space, action_space, args.hidden_size).to(device) for _ in range(2))
    critics = nn.ModuleList([qf1, qf2]).eval()  # deterministic gates, as their targets (docstring)
    # L0 LOGIC: gates (L0, critics gated even at lambda 0) or masks (GMP) on the policy path and both
    # critics; the target critics stay plain networks
    lambdas = {"actor": args.l0_lambda_actor, "critic": args.l0_lambda_critic}
    sparsity = make_sparsity(args, {"actor": policy, "critic": [qf1, qf2]}, lambdas)
    qf1_target, qf2_target = (
        SoftQNetwork(obs_space, action_space, args.hidden_size).to(device) for _ in range(2)
    )
    update_target(qf1_target, qf1, 1.0)
    update_target(qf2_target, qf2, 1.0)
    q_optimizer = optim.Adam(l0.param_groups(critics, args.q_lr, args.l0_lr))
    actor_optimizer = optim.Adam(l0.param_groups(actor, args.policy_lr, args.l0_lr))
    # Automatic entropy tuning (SAC's alpha, unrelated to the gates' log_alpha)
    n_act = int(np.prod(action_space.shape)) if continuous else int(action_space.n)
    target_entropy = -float(n_act) if continuous else args.target_entropy_scale * math.log(n_act)
    log_alpha = nn.Parameter(torch.tensor([math.log(args.alpha)], device=device), requires_grad=args.autotune)
    a_optimizer = optim.Adam([log_alpha], lr=args.q_lr)
    rb = EpisodeReplayBuffer(args.buffer_size, args.num_envs, obs_space, action_space)
    # only now, with every argument accepted, does the run directory appear
    run.open(obs_space, action_space, args.total_timesteps, policy=policy)

    # TRY NOT TO MODIFY: start the game
    global_step, updates = run.start_step, 0
    obs, _ = envs.reset(seed=args.seed)
    nets = {"actor": actor, "qf1": qf1, "qf2": qf2, "qf1_target": qf1_target, "qf2_target": qf2_target}
    states = {"networks": {**nets, "alpha": nn.ParameterDict({"log_alpha": log_alpha})}}
    states["optimizers"] = {"actor": actor_optimizer, "q": q_optimizer, "alpha": a_optimizer}
    states["sparsity"] = sparsity
    loop = run.restore(**states)
    if loop is not None:
        updates = loop["updates"]
        rb.load(
            run.run_dir / BUFFER_NAME, global_step
        )  # not one written after checkpoint.pt (a crash between)
        if (saved_envs := run.resumed_envs(envs)) is not None:  # exact env state (classic control)
            envs, obs = saved_envs, loop["next_obs"].numpy()
        else:  # e.g. Box2D or the emulator: episodes in flight restart, seeded by the step
            obs, _ = envs.reset(seed=args.seed + global_step)
            rb.end_running_episodes()

    losses: dict[str, float] = {}
    while global_step < args.total_timesteps:
        # ALGO LOGIC: put action logic here
        if global_step < args.learning_starts:
            actions = envs.action_space.sample()
        else:
            with torch.no_grad(), l0.deterministic_gates(actor):
                actions, _, _ = actor.get_action(torch.as_tensor(obs, dtype=torch.float32, device=device))
            actions = actions.cpu().numpy()

        # TRY NOT TO MODIFY: execute the game and log data.
        next_obs, rewards, terminations, truncations, infos = envs.step(actions)
        global_step += args.num_envs
        run.log_episodes(infos, global_step)

        # TRY NOT TO MODIFY: save data to replay buffer; SAME_STEP autoreset put the reset obs in
        # next_obs, the true last observation is in final_obs. Only termination stops bootstrapping.
        real_next_obs = next_obs.copy()
        for i in np.nonzero(infos.get("_final_obs", []))[0]:
            real_next_obs[i] = infos["final_obs"][i]
        rb.add(obs, real_next_obs, actions, rewards, terminations, np.logical_or(terminations, truncations))
        obs = next_obs

        # L0 LOGIC: lambda follows the env steps on a fixed cadence, never the logging one, so neither
        # --log-every nor a halt and resume changes it; the target schedule reads the sparsity reached
        if run.due(global_step, args.num_envs, args.l0_schedule_every):
            sparsity.schedule(global_step)

        # ALGO LOGIC: training (after a resume without the buffer: once it is refilled)
        for _ in range(args.gradient_steps if rb.size >= args.learning_starts else 0):
            batch = rb.sample(args.batch_size, her, args.her_k)
            data = {k: torch.as_tensor(v, device=device) for k, v in batch.items()}
            b_obs, b_next_obs = data["obs"].float(), data["next_obs"].float()
            alpha = log_alpha.exp().detach()
            with torch.no_grad():
                next_actions, next_log_pi, next_probs = actor.get_action(b_next_obs)
                next_a = next_actions if continuous else None  # discrete: all actions, then expectation
                min_qf_next = torch.min(qf1_target(b_next_obs, next_a), qf2_target(b_next_obs, next_a))
                min_qf_next = min_qf_next - alpha * next_log_pi
                if not continuous:
                    min_qf_next = (next_probs * min_qf_next).sum(1)
                next_q_value = data["rewards"] + (1 - data["terminations"]) * args.gamma * min_qf_next
            qf1_a_values, qf2_a_values = qf1(b_obs, data["actions"]), qf2(b_obs, data["actions"])
            qf1_loss = F.mse_loss(qf1_a_values, next_q_value)
            qf2_loss = F.mse_loss(qf2_a_values, next_q_value)
            # L0 LOGIC: expected share of open gated weights, weighted by the scheduled lambda
            critic_l0 = sparsity.penalty("critic")
            q_loss, losses["critic_l0_penalty"] = qf1_loss + qf2_loss + critic_l0, critic_l0.item()
            check_loss(q_loss, global_step)
            q_optimizer.zero_grad()
            q_loss.backward()
            q_optimizer.step()
            sparsity.after_step(global_step, "critic")
            losses.update(qf1_values=qf1_a_values.mean().item(), qf2_values=qf2_a_values.mean().item())
            losses.update(qf1_loss=qf1_loss.item(), qf2_loss=qf2_loss.item(), alpha=alpha.item())

            if updates % args.policy_frequency == 0:  # TD3-style delayed update, made up at once
                for _ in range(args.policy_frequency):
                    pi, log_pi, probs = actor.get_action(b_obs)
                    if continuous:
                        min_qf_pi = torch.min(qf1(b_obs, pi), qf2(b_obs, pi))
                        actor_loss = (alpha * log_pi - min_qf_pi).mean()
                        neg_entropy = log_pi.detach()
                    else:
                        with torch.no_grad():
                            min_qf_pi = torch.min(qf1(b_obs), qf2(b_obs))
                        actor_loss = (probs * (alpha * log_pi - min_qf_pi)).sum(1).mean()
                        neg_entropy = (probs * log_pi).sum(1).detach()
                    losses["actor_loss"] = actor_loss.item()
                    actor_l0 = sparsity.penalty("actor")
                    actor_loss, losses["actor_l0_penalty"] = actor_loss + actor_l0, actor_l0.item()
                    check_loss(actor_loss, global_step)
                    actor_optimizer.zero_grad()
                    actor_loss.backward()
                    actor_optimizer.step()
                    sparsity.after_step(global_step, "actor")
                    if args.autotune:
                        alpha_loss = (-log_alpha.exp() * (neg_entropy + target_entropy)).mean()
                        check_loss(alpha_loss, global_step)
                        a_optimizer.zero_grad()
                        alpha_loss.backward()
                        a_optimizer.step()
                        losses["alpha_loss"] = alpha_loss.item()
            sparsity.after_step(global_step)  # one learning update (GMP's --gmp-every counts them)
            if updates % args.target_network_frequency == 0:
                update_target(qf1_target, qf1, args.tau)
                update_target(qf2_target, qf2, args.tau)
            updates += 1

        # TRY NOT TO MODIFY: record losses and sparsity statistics for plotting purposes
        if run.due(global_step, args.num_envs, args.log_every) or global_step >= run.total_steps:
            metrics = {f"losses/{k}": v for k, v in losses.items()}
            run.log(global_step, metrics | sparsity.log_dict(), policy=policy)

        if run.should_checkpoint(global_step, args.num_envs):
            # first, so a checkpoint never points at a buffer older than itself
            save_buffer(rb, run.run_dir / BUFFER_NAME, global_step, args.save_buffer_max_mb)
            loop = {"next_obs": obs, "updates": updates}
            run.checkpoint(global_step, **states, loop=loop, envs=envs, policy=policy)
        if run.halting(global_step):
            break
    envs.close()
    return run.finish(global_step, policy, device)


if __name__ == "__main__":
    run_cli(lambda: train(*parse_args(Args)), f"{ALGO}.py")
