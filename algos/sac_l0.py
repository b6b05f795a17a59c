"""SAC with L0-regularised (hard-concrete gated) actor and twin critics, CleanRL style, in one file.

    python algos/sac_l0.py --env-id NeedleReach-v0 --her            # sparse reach policy, hindsight goals
    python algos/sac_l0.py --env-id NeedleReach-v0 --her --no-l0    # dense baseline, same code
    python algos/sac_l0.py --env-id CartPole-v1                     # discrete SAC (Christodoulou 2019)
    python algos/sac_l0.py --resume runs/<run_name>                 # continue from the last checkpoint

L0 during SAC: the actor learns with a fresh gate sample per forward (train mode); data collection
samples actions from it under deterministic gates, so exploration comes from the action noise around
the policy that will be deployed; evaluation uses deterministic gates and the mean (Box) or argmax
(discrete) action. Target critics are plain gate-free networks Polyak-averaged from
`l0.dense_state_dict(critic)`: deterministic gates by construction, and no log_alpha is ever
averaged as if it were a weight. For that reason the critics themselves always run deterministic
gates (eval mode): trained on sampled gates, a critic learns the mean over gate samples, while the
deterministic-gate network its target copies outputs ~14 % more at drop rate 0.3 (measured), and
bootstrapping through gamma * 1.14 > 1 diverged (NeedleReach Q values reached -900 where returns are
>= -50). Their gates still learn, through the deterministic gate (while 0 < z < 1) and the penalty.
Resume: with --save-buffer (the default for vector observations) the replay buffer is written next
to the checkpoint and resume is exact; otherwise (image observations by default) the buffer restarts
empty, and learning pauses until the current policy has refilled --learning-starts transitions.
"""

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
import tyro
from torch.distributions.categorical import Categorical
from torch.distributions.normal import Normal

from l0rl import l0
from l0rl.envs import goal_spec, make_vector_env
from l0rl.runkit import (
    Progress,
    atomic_torch_save,
    env_options,
    eval_metrics,
    evaluate,
    open_run,
    restorable_envs,
    resume_or_new,
    rng_state,
    run_cli,
    save_checkpoint,
    seed_everything,
    set_rng_state,
)

ALGO = "sac_l0"
BUFFER_NAME = "replay_buffer.pt"
LOG_STD_MAX, LOG_STD_MIN = 2, -5


@dataclass
class Args:
    exp_name: str = ALGO
    """the name of this experiment (part of the run name)"""
    seed: int = 1
    """seed of the experiment"""
    torch_deterministic: bool = True
    """if toggled, `torch.backends.cudnn.deterministic=True`"""
    cuda: bool = True
    """if toggled, cuda is used when available"""
    wandb_mode: str = "auto"
    """W&B mode: auto (online with an API key, else offline), online, offline or disabled"""
    wandb_project: str = "l0rl"
    """the W&B project"""
    wandb_entity: str | None = None
    """the W&B entity (team)"""
    wandb_group: str | None = None
    """the W&B group (default: env id)"""
    runs_dir: str = "runs"
    """where run directories are created"""
    capture_video: bool = False
    """whether to capture videos of the agent (first env) into videos/<run_name>"""
    progress: bool = True
    """show a progress bar (plain lines when not a terminal)"""
    checkpoint_every: int = 10000
    """write a checkpoint every N env steps (and always at the end)"""
    resume: str | None = None
    """continue the run in this directory from its checkpoint, with its saved arguments"""
    halt_after: int | None = None
    """stop this process after N env steps (checkpointed; continue later with --resume)"""
    eval_episodes: int = 10
    """evaluation episodes at the end (deterministic gates)"""
    eval_greedy: bool = True
    """evaluate with the argmax action (else sample from the policy) for discrete actions"""
    eval_max_steps: int | None = None
    """cap on steps per evaluation episode (a greedy Mario policy can stall until the game clock ends)"""

    # Algorithm specific arguments
    env_id: str = "NeedleReach-v0"
    """the id of the environment"""
    env_options: str = "{}"
    """JSON dict of environment options, e.g. '{"reward_type": "dense"}' for NeedleReach-v0"""
    total_timesteps: int = 50000
    """total timesteps of the experiments"""
    num_envs: int = 4
    """the number of parallel game environments (each vector step adds num_envs transitions)"""
    buffer_size: int = int(1e6)
    """the replay memory buffer size (transitions)"""
    gamma: float = 0.98
    """the discount factor gamma"""
    tau: float = 0.005
    """target smoothing coefficient"""
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
    """entropy regularization coefficient (its initial value with --autotune)"""
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
    save_buffer: bool | None = None
    """save the replay buffer with each checkpoint for exact resume (None: yes unless image obs)"""
    log_every: int = 1000
    """log losses and L0 statistics, and step the sparsity-map schedulers, every N env steps"""

    # L0 arguments
    l0: bool = True
    """gate the networks with L0 (hard-concrete) gates; --no-l0 gives the dense baseline"""
    l0_granularity: str = "weight"
    """'weight' (unstructured) or 'unit' (whole neurons/channels; output layers stay per weight)"""
    l0_lambda_actor: float = 4.0
    """L0 strength for the actor's policy path (penalty = expected share of non-zero gated weights)"""
    l0_lambda_critic: float = 0.1
    """L0 strength for each critic"""
    l0_drop_rate: float = 0.3
    """initial drop rate of the gates, in (0, 1)"""
    l0_lr: float = 1e-3
    """learning rate of the gate parameters log_alpha (no weight decay)"""
    l0_schedule: str = "linear"
    """sparsity-map schedule: constant, linear, cosine (warm-up then ramp) or target (dual ascent)"""
    l0_warmup: float = 0.1
    """fraction of training with lambda = 0"""
    l0_ramp_end: float = 0.5
    """fraction of training at which lambda reaches its full value (linear/cosine)"""
    l0_target_sparsity: float = 0.9
    """target sparsity of each network (target schedule)"""
    l0_target_at: float = 0.6
    """fraction of training by which the target sparsity is reached (target schedule)"""
    l0_dual_lr: float = 0.2
    """step size of the dual ascent on log(lambda) per scheduler step (target schedule)"""


class Affine(nn.Module):
    """x * scale + bias with fixed buffers, no learnable parameter: puts input scaling (uint8 frames
    to [0, 1], bounded observations to [-1, 1]) and the tanh -> action-bounds rescale inside the policy."""

    def __init__(self, scale, bias):
        super().__init__()
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))
        self.register_buffer("bias", torch.as_tensor(bias, dtype=torch.float32))

    def forward(self, x):
        return x * self.scale + self.bias


def torso(obs_space: gym.Space, hidden: int, action_space: gym.Space | None = None):
    """(feature layers, width): the Nature CNN for stacked frames, else a two-layer ReLU MLP on the
    observation (with the action appended when given). Bounded inputs are first mapped to [-1, 1]:
    NeedleReach's positions, centimetres apart at offsets of several units, are hard to resolve raw."""
    if len(obs_space.shape) == 3:
        return [
            Affine(1.0 / 255.0, 0.0),
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
        layers.insert(0, Affine(2.0 / width, -(high + low) / width))
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
            low, high = (
                torch.as_tensor(b, dtype=torch.float32) for b in (action_space.low, action_space.high)
            )
            self.register_buffer("action_scale", (high - low) / 2.0)
            self.register_buffer("action_bias", (high + low) / 2.0)

    def policy(self) -> nn.Sequential:
        """obs -> action (tanh-squashed mean, rescaled to the bounds) or logits; parameter-free tail."""
        tail = [nn.Tanh(), Affine(self.action_scale, self.action_bias)] if self.continuous else []
        return nn.Sequential(*self.trunk, self.head, *tail)

    def get_action(self, x):
        """Box: (sampled action, log prob [B], mean action). Discrete: (sampled action,
        log probs [B, n], probs [B, n])."""
        h = self.trunk(x)
        if not self.continuous:
            logits = self.head(h)
            dist = Categorical(logits=logits)
            return dist.sample(), F.log_softmax(logits, dim=1), dist.probs
        mean = self.head(h)
        log_std = torch.tanh(self.log_std(h))
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (log_std + 1)
        normal = Normal(mean, log_std.exp())
        x_t = normal.rsample()  # reparameterisation trick
        y_t = torch.tanh(x_t)
        action = y_t * self.action_scale + self.action_bias
        # change of variables through tanh and the rescale
        log_prob = normal.log_prob(x_t) - torch.log(self.action_scale * (1 - y_t.pow(2)) + 1e-6)
        return action, log_prob.sum(1), torch.tanh(mean) * self.action_scale + self.action_bias


class ReplayBuffer:
    """Transitions stored as [slot, env], so each env's episode lies contiguous in time and hindsight
    relabelling can pick an achieved goal from later in the same episode. Image observations stay uint8."""

    def __init__(self, capacity: int, num_envs: int, obs_space: gym.Space, action_space: gym.Space):
        self.slots, self.num_envs = max(capacity // num_envs, 1), num_envs
        shape = (self.slots, num_envs)
        self.obs = np.zeros(shape + obs_space.shape, obs_space.dtype)
        self.next_obs = np.zeros_like(self.obs)
        self.actions = np.zeros(shape + action_space.shape, action_space.dtype)
        self.rewards = np.zeros(shape, np.float32)
        self.terminations = np.zeros(shape, np.float32)
        self.step_index = np.zeros(shape, np.int64)  # vector step at which a transition was written
        self.episode_end = np.full(shape, -1, np.int64)  # vector step of its episode's last one; -1: running
        self.episode_start = np.zeros(num_envs, np.int64)
        self.written = 0  # vector steps written so far

    @property
    def size(self) -> int:
        return min(self.written, self.slots) * self.num_envs

    def add(self, obs, next_obs, actions, rewards, terminations, dones) -> None:
        slot = self.written % self.slots
        self.obs[slot], self.next_obs[slot], self.actions[slot] = obs, next_obs, actions
        self.rewards[slot], self.terminations[slot] = rewards, terminations
        self.step_index[slot], self.episode_end[slot] = self.written, -1
        for env in np.nonzero(dones)[0]:
            self.end_episode(env, self.written)
        self.written += 1

    def end_episode(self, env: int, last: int) -> None:
        steps = np.arange(max(self.episode_start[env], last - self.slots + 1), last + 1)
        self.episode_end[steps % self.slots, env] = last
        self.episode_start[env] = last + 1

    def end_running_episodes(self) -> None:
        """After a resume that restarted the envs, the episodes in flight ended at the last step."""
        for env in range(self.num_envs):
            if self.episode_start[env] < self.written:
                self.end_episode(env, self.written - 1)

    def sample(self, batch_size: int, her: dict | None = None, her_k: int = 0) -> dict[str, np.ndarray]:
        slot = np.random.randint(0, min(self.written, self.slots), batch_size)
        env = np.random.randint(0, self.num_envs, batch_size)
        batch = {
            k: getattr(self, k)[slot, env] for k in ("obs", "next_obs", "actions", "rewards", "terminations")
        }
        if her is not None:
            # "future" strategy: the goal becomes what was achieved at a later step of the same episode
            relabel = np.random.rand(batch_size) < her_k / (her_k + 1)
            start = self.step_index[slot, env]
            end = np.where(self.episode_end[slot, env] < 0, self.written - 1, self.episode_end[slot, env])
            future = start + (np.random.rand(batch_size) * (end - start + 1)).astype(np.int64)
            goal = self.next_obs[future % self.slots, env][relabel][:, her["achieved"]]
            for key in ("obs", "next_obs"):
                batch[key][relabel, her["desired"]] = goal
            achieved = batch["next_obs"][relabel][:, her["achieved"]]
            batch["rewards"][relabel] = her["compute_reward"](achieved, goal)
            batch["relabelled"] = relabel
        return batch

    def state_dict(self) -> dict:
        n = min(self.written, self.slots)
        arrays = ("obs", "next_obs", "actions", "rewards", "terminations", "step_index", "episode_end")
        state = {k: torch.from_numpy(getattr(self, k)[:n].copy()) for k in arrays}
        return {
            **state,
            "episode_start": torch.from_numpy(self.episode_start.copy()),
            "written": self.written,
        }

    def load_state_dict(self, state: dict) -> None:
        self.written = state.pop("written")
        for key, value in state.items():
            getattr(self, key)[: len(value)] = value.numpy()


@torch.no_grad()
def polyak_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """target <- (1 - tau) * target + tau * online, from the online network's deterministic-gate weights."""
    source = l0.dense_state_dict(online)
    for key, value in target.state_dict().items():
        value.lerp_(source[key], tau)


def make_optimizer(net: nn.Module, lr: float, args: Args) -> optim.Adam:
    """Weights at `lr`; the gates' log_alpha in a group of their own (own lr, no weight decay)."""
    gates = {"params": l0.gate_parameters(net), "lr": args.l0_lr, "weight_decay": 0.0}
    return optim.Adam([{"params": l0.weight_parameters(net), "lr": lr}, gates])


def make_scheduler(args: Args, lam: float) -> l0.SparsityMapScheduler:
    return l0.SparsityMapScheduler(
        total_steps=args.total_timesteps,
        mode=args.l0_schedule,
        lam=lam,
        warmup=args.l0_warmup,
        ramp_end=args.l0_ramp_end,
        target_sparsity=args.l0_target_sparsity,
        target_at=args.l0_target_at,
        dual_lr=args.l0_dual_lr,
        lam_max=max(10.0, lam),
    )


def policy_from_checkpoint(ckpt: dict) -> nn.Module:
    """The deployable policy (gated if trained with L0) rebuilt from a checkpoint."""
    obs_space, action_space = ckpt["spaces"]
    actor = Actor(obs_space, action_space, ckpt["args"]["hidden_size"])
    state = ckpt["networks"]["actor"]
    if ckpt["args"]["l0"]:
        l0.sparsify_like(actor, state)
    else:
        actor.load_state_dict(state)
    return actor.policy()


def check_args(args: Args, options: dict) -> None:
    if args.l0_lambda_actor < 0 or args.l0_lambda_critic < 0:
        raise ValueError("--l0-lambda-actor and --l0-lambda-critic must be >= 0 (0 switches the penalty off)")
    if min(args.num_envs, args.batch_size, args.gradient_steps, args.policy_frequency, args.log_every) < 1:
        raise ValueError(
            "--num-envs, --batch-size, --gradient-steps, --policy-frequency, --log-every must be >= 1"
        )
    if min(args.target_network_frequency, args.checkpoint_every, args.her_k) < 1 or args.learning_starts < 0:
        raise ValueError(
            "--target-network-frequency, --checkpoint-every, --her-k must be >= 1, --learning-starts >= 0"
        )
    if not 0.0 < args.tau <= 1.0:
        raise ValueError(f"--tau must be in (0, 1], got {args.tau}")
    if args.buffer_size < args.num_envs or args.total_timesteps < args.num_envs:
        raise ValueError("--buffer-size and --total-timesteps must be >= --num-envs")
    if args.her and goal_spec(args.env_id, **options) is None:
        raise ValueError(f"--her needs a goal env such as NeedleReach-v0; {args.env_id} has no goal_spec")


def train(args: Args) -> str:
    """Train (or resume) a run; returns its run directory."""
    args, ckpt, name = resume_or_new(args, ALGO)
    options = env_options(args)
    check_args(args, options)
    her = goal_spec(args.env_id, **options) if args.her else None

    # TRY NOT TO MODIFY: seeding
    seed_everything(args.seed, args.torch_deterministic)
    envs = make_vector_env(args.env_id, args.num_envs, args.seed, args.capture_video, name, **options)
    envs.action_space.seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
    obs_space, action_space = envs.single_observation_space, envs.single_action_space
    if not isinstance(action_space, gym.spaces.Box | gym.spaces.Discrete):
        raise ValueError(
            f"SAC needs Box or Discrete actions; {args.env_id} has {type(action_space).__name__}"
        )
    continuous = isinstance(action_space, gym.spaces.Box)

    actor = Actor(obs_space, action_space, args.hidden_size).to(device)
    policy = actor.policy()
    qf1, qf2 = (SoftQNetwork(obs_space, action_space, args.hidden_size).to(device) for _ in range(2))
    critics = nn.ModuleList([qf1, qf2]).eval()  # deterministic gates, as their targets (docstring)
    schedulers, lams = {}, {}
    if args.l0:
        l0.sparsify(policy, args.l0_granularity, args.l0_drop_rate, output_granularity="weight")
        for qf in critics:
            l0.sparsify(qf, args.l0_granularity, args.l0_drop_rate, output_granularity="weight")
        schedulers = {"actor": make_scheduler(args, args.l0_lambda_actor)}
        schedulers["critic"] = make_scheduler(args, args.l0_lambda_critic)
    qf1_target, qf2_target = (
        SoftQNetwork(obs_space, action_space, args.hidden_size).to(device) for _ in range(2)
    )
    qf1_target.load_state_dict(l0.dense_state_dict(qf1))
    qf2_target.load_state_dict(l0.dense_state_dict(qf2))
    q_optimizer, actor_optimizer = (
        make_optimizer(critics, args.q_lr, args),
        make_optimizer(actor, args.policy_lr, args),
    )
    # Automatic entropy tuning (SAC's alpha, unrelated to the gates' log_alpha)
    n_act = int(np.prod(action_space.shape)) if continuous else int(action_space.n)
    target_entropy = -float(n_act) if continuous else args.target_entropy_scale * math.log(n_act)
    log_alpha = torch.full((1,), math.log(args.alpha), device=device, requires_grad=args.autotune)
    a_optimizer = optim.Adam([log_alpha], lr=args.q_lr)
    save_buffer = args.save_buffer if args.save_buffer is not None else len(obs_space.shape) != 3
    rb = ReplayBuffer(args.buffer_size, args.num_envs, obs_space, action_space)
    # only now, with every argument accepted, does the run directory appear
    run_dir, tracker = open_run(args, ALGO, name, ckpt)
    nets = {"actor": actor, "qf1": qf1, "qf2": qf2, "qf1_target": qf1_target, "qf2_target": qf2_target}
    optimizers = {"actor": actor_optimizer, "q": q_optimizer, "alpha": a_optimizer}

    # TRY NOT TO MODIFY: start the game
    global_step, updates = 0, 0
    obs, _ = envs.reset(seed=args.seed)
    if ckpt:
        for key, net in nets.items():
            net.load_state_dict(ckpt["networks"][key])
        with torch.no_grad():
            log_alpha.copy_(ckpt["networks"]["log_alpha"])
        for key, opt in optimizers.items():
            opt.load_state_dict(ckpt["optimizers"][key])
        for key, sched in schedulers.items():
            sched.load_state_dict(ckpt["schedulers"][key])
        global_step, updates = ckpt["global_step"], ckpt["loop"]["updates"]
        buffer_path = Path(run_dir) / BUFFER_NAME
        if save_buffer and buffer_path.exists():
            state = torch.load(buffer_path, weights_only=True)
            if state.pop("global_step") == global_step:  # else a crash came between buffer and checkpoint
                rb.load_state_dict(state)
        if ckpt["loop"]["envs"] is not None:
            envs.close()
            envs, obs = ckpt["loop"]["envs"], ckpt["loop"]["next_obs"]  # exact env state
        else:  # e.g. Box2D or the emulator: episodes in flight restart, seeded by the step
            obs, _ = envs.reset(seed=args.seed + global_step)
            rb.end_running_episodes()
        set_rng_state(ckpt["rng"])

    def checkpoint() -> None:
        if save_buffer:  # first, so a checkpoint never points at a buffer older than itself
            atomic_torch_save(Path(run_dir) / BUFFER_NAME, {**rb.state_dict(), "global_step": global_step})
        save_checkpoint(
            run_dir,
            {
                "format_version": 1,
                "algo": ALGO,
                "env_id": args.env_id,
                "env_options": options,
                "spaces": (obs_space, action_space),
                "args": asdict(args),
                "global_step": global_step,
                "finished": global_step >= args.total_timesteps,
                "networks": {**{k: n.state_dict() for k, n in nets.items()}, "log_alpha": log_alpha.detach()},
                "optimizers": {k: opt.state_dict() for k, opt in optimizers.items()},
                "schedulers": {k: s.state_dict() for k, s in schedulers.items()},
                "loop": {"next_obs": obs, "envs": restorable_envs(envs), "updates": updates},
                "rng": rng_state(),
                "wandb_id": tracker.wandb_id,
            },
        )

    def step_schedulers() -> dict[str, float]:
        # the target schedule's controller reads the sparsity reached so far; other modes need no stats
        gated = {"actor": policy, "critic": critics}
        return {
            k: s.step(global_step, l0.stats(gated[k])["l0/sparsity"] if s.mode == "target" else None)
            for k, s in schedulers.items()
        }

    progress = Progress(args.total_timesteps, global_step, args.progress, desc=f"{ALGO} {args.env_id}")
    recent_returns: list[float] = []
    recent_successes: list[float] = []
    lams, losses = step_schedulers(), {}
    start_time, start_step = time.time(), global_step
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
        if "episode" in infos:
            final_info = infos.get("final_info", {})
            for i in np.nonzero(infos["_episode"])[0]:
                ep_r, ep_l = float(infos["episode"]["r"][i]), int(infos["episode"]["l"][i])
                recent_returns = (recent_returns + [ep_r])[-20:]
                row = {"charts/episodic_return": ep_r, "charts/episodic_length": ep_l}
                if final_info.get("_is_success", np.zeros(args.num_envs, bool))[i]:
                    recent_successes = (recent_successes + [float(final_info["is_success"][i])])[-20:]
                    row["charts/success_rate"] = float(np.mean(recent_successes))  # last 20 episodes
                tracker.log(row, global_step)

        # TRY NOT TO MODIFY: save data to replay buffer; SAME_STEP autoreset put the reset obs in
        # next_obs, the true last observation is in final_obs. Only termination stops bootstrapping.
        real_next_obs = next_obs.copy()
        for i in np.nonzero(infos.get("_final_obs", []))[0]:
            real_next_obs[i] = infos["final_obs"][i]
        rb.add(obs, real_next_obs, actions, rewards, terminations, np.logical_or(terminations, truncations))
        obs = next_obs

        # ALGO LOGIC: training (after a resume without the buffer: once it is refilled)
        for _ in range(args.gradient_steps if rb.size >= args.learning_starts else 0):
            data = {
                k: torch.as_tensor(v, device=device)
                for k, v in rb.sample(args.batch_size, her, args.her_k).items()
            }
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
            # L0 LOGIC: expected share of open gated weights, weighted by the scheduled lambdas
            critic_l0 = lams["critic"] * (l0.penalty(qf1) + l0.penalty(qf2)) if lams else torch.zeros(())
            q_optimizer.zero_grad()
            (qf1_loss + qf2_loss + critic_l0).backward()
            q_optimizer.step()
            l0.clamp_log_alpha_(critics)
            losses.update(qf1_values=qf1_a_values.mean().item(), qf2_values=qf2_a_values.mean().item())
            losses.update(qf1_loss=qf1_loss.item(), qf2_loss=qf2_loss.item(), alpha=alpha.item())
            losses.update(critic_l0_penalty=critic_l0.item())

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
                    actor_l0 = lams["actor"] * l0.penalty(policy) if lams else torch.zeros(())
                    actor_optimizer.zero_grad()
                    (actor_loss + actor_l0).backward()
                    actor_optimizer.step()
                    l0.clamp_log_alpha_(actor)
                    losses.update(actor_loss=actor_loss.item(), actor_l0_penalty=actor_l0.item())
                    if args.autotune:
                        alpha_loss = (-log_alpha.exp() * (neg_entropy + target_entropy)).mean()
                        a_optimizer.zero_grad()
                        alpha_loss.backward()
                        a_optimizer.step()
                        losses["alpha_loss"] = alpha_loss.item()
            if updates % args.target_network_frequency == 0:
                polyak_update(qf1_target, qf1, args.tau)
                polyak_update(qf2_target, qf2, args.tau)
            updates += 1

        # TRY NOT TO MODIFY: record losses and L0 statistics for plotting purposes
        if global_step // args.log_every > (global_step - args.num_envs) // args.log_every:
            sps = int((global_step - start_step) / (time.time() - start_time))
            metrics = {f"losses/{k}": v for k, v in losses.items()} | {"charts/SPS": sps}
            if losses:
                metrics["losses/l0_penalty"] = losses["critic_l0_penalty"] + losses.get(
                    "actor_l0_penalty", 0.0
                )
            sparsity = None
            if args.l0:
                lams = step_schedulers()
                metrics.update(l0.stats(policy, "l0/"))
                metrics.update(l0.stats(critics, "l0/critic/"))
                metrics.update(schedulers["actor"].log_dict("l0/"))
                metrics.update(schedulers["critic"].log_dict("l0/critic/"))
                sparsity = metrics["l0/sparsity"]
            tracker.log(metrics, global_step)
            ret = float(np.mean(recent_returns)) if recent_returns else None
            success = float(np.mean(recent_successes)) if recent_successes else None
            progress.update(global_step, SPS=sps, ret=ret, success=success, sparsity=sparsity)

        halt = args.halt_after is not None and global_step - start_step >= args.halt_after
        due = global_step // args.checkpoint_every > (global_step - args.num_envs) // args.checkpoint_every
        if due or halt or global_step >= args.total_timesteps:
            checkpoint()
        if halt:
            break
    progress.close()
    envs.close()

    finished = global_step >= args.total_timesteps
    if finished and args.eval_episodes > 0:
        result = evaluate(
            policy,
            args.env_id,
            options,
            args.eval_episodes,
            args.seed + 10_000,
            greedy=args.eval_greedy,
            max_steps=args.eval_max_steps,
            device=device,
        )
        final = eval_metrics(result)
        if args.l0:
            final.update(l0.stats(policy, "l0/"))
        tracker.log(final, global_step)
        tracker.summary(final)
    if finished:
        tracker.summary({"global_step": global_step, "finished": True})
    tracker.finish()
    return run_dir


if __name__ == "__main__":
    run_cli(lambda: train(tyro.cli(Args)), f"{ALGO}.py")
