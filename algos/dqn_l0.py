"""DQN (Double DQN by default) with an L0-regularised (hard-concrete gated) Q-network, CleanRL style.

    python algos/dqn_l0.py --env-id CartPole-v1               # sparse Q-network
    python algos/dqn_l0.py --env-id CartPole-v1 --no-l0       # dense baseline, same code
    python algos/dqn_l0.py --resume runs/<run_name>           # continue from the last checkpoint
    python algos/dqn_l0.py --env-id SuperMarioBros-7-1-v0 --num-envs 4 --total-timesteps 2000000 \
        --buffer-size 100000 --learning-starts 20000 --train-frequency 4 --target-network-frequency 1000 \
        --batch-size 32 --learning-rate 1e-4 --exploration-fraction 0.1 --end-e 0.01   # Nature-DQN settings

Defaults: CleanRL's CartPole DQN (MLP 120-84); the Mario line above is the one source of its settings
(its 100k buffer: 2,824,100,000 bytes = 2.63 GiB, + 28,224 bytes per episode end held; see ReplayBuffer).
L0: learning updates sample fresh gates on every forward (train mode); acting, the Double-DQN argmax
and evaluation use deterministic gates. The target network is gate-free and copies the effective
weights (`l0.dense_state_dict`): log_alpha is never copied or averaged. For a gate that is open but
not saturated (0 < log_alpha < ~6) the test-time gate exceeds the mean sampled gate, so the target
overestimates what the online network is fitted to, and Q-values inflate until the gates settle.
Loss: MSE, as CleanRL's DQN; Huber (Nature DQN) let these CartPole defaults diverge (Q-values over
500 after 30k steps, where returns bound them by 100): it caps the pull of the few terminal
transitions that anchor Q.
"""

import os
import time
from dataclasses import asdict, dataclass

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
import tyro

from l0rl import l0
from l0rl.envs import make_vector_env
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

ALGO = "dqn_l0"
BUFFER_NAME = "replay_buffer.pt"


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
    checkpoint_every: int = 50000
    """write a checkpoint every N env steps (and always at the end)"""
    log_every: int = 1000
    """log losses and l0 statistics every N env steps"""
    save_buffer_max_mb: float = 200.0
    """save the replay buffer (replay_buffer.pt) at each checkpoint when it takes at most
    this many MB, so --resume is exact: vector obs yes, a 100k Mario buffer (2.8 GB) no;
    0 never, inf always. Else --resume keeps weights, optimizer, scheduler and step and
    refills the buffer (no updates for learning_starts steps again)"""
    resume: str | None = None
    """continue the run in this directory from its checkpoint, with its saved arguments"""
    halt_after: int | None = None
    """stop this process after N env steps (global_step; checkpointed; continue later with --resume)"""
    eval_episodes: int = 10
    """evaluation episodes at the end (deterministic gates, greedy actions)"""
    eval_max_steps: int | None = None
    """cap on steps per evaluation episode (a greedy Mario policy can stall until the game clock ends)"""

    # Algorithm specific arguments
    env_id: str = "CartPole-v1"
    """the id of the environment"""
    env_options: str = "{}"
    """JSON dict of environment options, e.g. '{"reward_type": "dense"}' for NeedleReach-v0"""
    total_timesteps: int = 500000
    """total timesteps of the experiments"""
    learning_rate: float = 2.5e-4
    """the learning rate of the optimizer (weights)"""
    num_envs: int = 1
    """the number of parallel game environments"""
    buffer_size: int = 10000
    """the replay memory buffer size (transitions, over all envs)"""
    gamma: float = 0.99
    """the discount factor gamma"""
    tau: float = 1.0
    """the target network update rate (1.0: hard copy)"""
    target_network_frequency: int = 500
    """the timesteps it takes to update the target network"""
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
    """the frequency of training (env steps per gradient step, over all envs)"""
    double_dqn: bool = True
    """Double-DQN target: the online network (deterministic gates) picks the next action,
    the target network values it; --no-double-dqn uses the target network's max"""

    # L0 arguments
    l0: bool = True
    """gate the Q-network with L0 (hard-concrete) gates; --no-l0 gives the dense baseline"""
    l0_granularity: str = "weight"
    """'weight' (unstructured) or 'unit' (whole neurons/channels; the output layer stays per weight)"""
    l0_lambda: float = 20.0
    """L0 strength for the Q-network (penalty = expected share of non-zero gated weights); TD
    losses of Q-values near 100 need far more than PPO's 0.05 (CartPole: 20 -> 80-84% sparse)"""
    l0_drop_rate: float = 0.05
    """initial drop rate of the gates, in (0, 1); nearly open (log_alpha 2.9) keeps the gap
    between test-time and mean sampled gates, hence the target's overestimate, small"""
    l0_lr: float = 1e-2
    """learning rate of the gate parameters log_alpha (no weight decay)"""
    l0_schedule: str = "constant"
    """sparsity-map schedule: constant, linear, cosine (warm-up then ramp) or target (dual ascent).
    constant: while lambda is ~0, thousands of TD updates drive log_alpha to 6-10, where the
    penalty's gradient vanishes, and those gates never close again"""
    l0_warmup: float = 0.1
    """fraction of training with lambda = 0"""
    l0_ramp_end: float = 0.5
    """fraction of training at which lambda reaches its full value (linear/cosine)"""
    l0_target_sparsity: float = 0.9
    """target sparsity of the Q-network (target schedule)"""
    l0_target_at: float = 0.6
    """fraction of training by which the target sparsity is reached (target schedule)"""
    l0_dual_lr: float = 0.01
    """step size of the dual ascent on log(lambda) per gradient step (target schedule)"""

    # to be filled in runtime
    num_iterations: int = 0
    """the number of vector-env steps (computed in runtime)"""


class Scale(nn.Module):
    """Multiplies by a constant; puts the uint8 -> [0, 1] image scaling inside the policy itself."""

    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


class QNetwork(nn.Sequential):
    """Observations (float) -> one Q-value per action; the greedy policy is the argmax. A plain
    nn.Sequential chain: it is itself the deployable policy that compress shrinks layer by layer."""

    def __init__(self, obs_space: gym.Space, action_space: gym.Space):
        n_actions = int(action_space.n)
        if len(obs_space.shape) == 3:  # stacked frames: Nature CNN
            layers = [Scale(1.0 / 255.0), nn.Conv2d(obs_space.shape[0], 32, 8, stride=4), nn.ReLU()]
            layers += [nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(), nn.Conv2d(64, 64, 3, stride=1), nn.ReLU()]
            layers += [nn.Flatten(), nn.Linear(64 * 7 * 7, 512), nn.ReLU(), nn.Linear(512, n_actions)]
        else:
            layers = [nn.Linear(int(np.prod(obs_space.shape)), 120), nn.ReLU()]
            layers += [nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, n_actions)]
        super().__init__(*layers)


class ReplayBuffer:
    """Transitions of `num_envs` envs in a ring of rows, one row per vector step; each observation is
    stored once, in the observation space's dtype (uint8 frames stay uint8).

    The next obs of (row, env) is the obs of (row + 1, env), except where the transition ended an
    episode: SAME_STEP autoreset put the reset obs there, so the true final obs is kept in the side
    store `final_obs` (one entry per episode end in the ring). The newest row waits for its successor."""

    RINGS = ("obs", "actions", "rewards", "dones", "ended")

    def __init__(self, buffer_size: int, num_envs: int, obs_space: gym.Space):
        self.rows, self.num_envs = buffer_size // num_envs, num_envs
        shape = (self.rows, num_envs)
        self.obs = np.zeros(shape + obs_space.shape, dtype=obs_space.dtype)
        self.actions = np.zeros(shape, dtype=np.int64)
        self.rewards = np.zeros(shape, dtype=np.float32)
        self.dones = np.zeros(shape, dtype=np.float32)  # terminated only: truncations still bootstrap
        self.ended = np.zeros(shape, dtype=bool)  # terminated or truncated: next obs is in final_obs
        self.final_obs: dict[int, np.ndarray] = {}  # row * num_envs + env -> true final observation
        self.pos, self.full = 0, False

    @property
    def nbytes(self) -> int:
        rings = sum(getattr(self, k).nbytes for k in self.RINGS)
        return rings + len(self.final_obs) * self.obs[0, 0].nbytes

    def __len__(self) -> int:
        """Number of transitions that can be sampled."""
        return max((self.rows if self.full else self.pos) - 1, 0) * self.num_envs

    def add(self, obs, actions, rewards, terminations, final_obs: dict[int, np.ndarray]) -> None:
        slot = self.pos * self.num_envs
        for env in np.nonzero(self.ended[self.pos])[0]:
            del self.final_obs[slot + env]
        self.obs[self.pos], self.actions[self.pos], self.rewards[self.pos] = obs, actions, rewards
        self.dones[self.pos], self.ended[self.pos] = terminations, False
        for env, final in final_obs.items():
            self.ended[self.pos, env] = True
            self.final_obs[slot + env] = np.array(final, dtype=self.obs.dtype)
        self.pos = (self.pos + 1) % self.rows
        self.full = self.full or self.pos == 0

    def sample(self, batch_size: int) -> tuple[np.ndarray, ...]:
        """(obs, actions, next_obs, rewards, dones), uniformly over the sampleable transitions."""
        start = self.pos if self.full else 0
        rows = (start + np.random.randint(0, len(self) // self.num_envs, batch_size)) % self.rows
        envs = np.random.randint(0, self.num_envs, batch_size)
        next_obs = self.obs[(rows + 1) % self.rows, envs]
        for i in np.nonzero(self.ended[rows, envs])[0]:
            next_obs[i] = self.final_obs[rows[i] * self.num_envs + envs[i]]
        obs, act, rew, done = (a[rows, envs] for a in (self.obs, self.actions, self.rewards, self.dones))
        return obs, act, next_obs, rew, done

    def state_dict(self) -> dict:
        """Tensors sharing the arrays' memory (torch.save writes them without a pickled copy)."""
        state = {k: torch.from_numpy(getattr(self, k)) for k in self.RINGS}
        final_obs = {k: torch.from_numpy(v) for k, v in self.final_obs.items()}
        return {**state, "final_obs": final_obs, "pos": self.pos, "full": self.full}

    def load_state_dict(self, state: dict) -> None:
        for k in self.RINGS:
            getattr(self, k)[...] = state[k].numpy()
        self.final_obs = {k: v.numpy() for k, v in state["final_obs"].items()}
        self.pos, self.full = state["pos"], state["full"]


def gate_q_network(q_network: QNetwork, args: Args) -> None:
    """Gate every layer; the output layer per weight, since a unit gate there would delete an action."""
    l0.sparsify(q_network, args.l0_granularity, args.l0_drop_rate, output_granularity="weight")


def make_scheduler(args: Args) -> l0.SparsityMapScheduler:
    return l0.SparsityMapScheduler(
        total_steps=args.total_timesteps,
        mode=args.l0_schedule,
        lam=args.l0_lambda,
        warmup=args.l0_warmup,
        ramp_end=args.l0_ramp_end,
        target_sparsity=args.l0_target_sparsity,
        target_at=args.l0_target_at,
        dual_lr=args.l0_dual_lr,
        lam_max=max(100.0, args.l0_lambda),  # DQN's lambdas are ~100x PPO's (see --l0-lambda)
    )


def policy_from_checkpoint(ckpt: dict) -> nn.Module:
    """The deployable policy (the Q-network, gated if trained with L0) rebuilt from a checkpoint."""
    obs_space, action_space = ckpt["spaces"]
    q_network = QNetwork(obs_space, action_space)
    state = ckpt["networks"]["q_network"]
    if ckpt["args"]["l0"]:
        l0.sparsify_like(q_network, state)
    else:
        q_network.load_state_dict(state)
    return q_network


@torch.no_grad()
def update_target(target_network: QNetwork, q_network: QNetwork, tau: float) -> None:
    """target <- tau * effective online weights + (1 - tau) * target (tau = 1: an exact copy)."""
    source = l0.dense_state_dict(q_network)
    for key, value in target_network.state_dict().items():
        value.mul_(1.0 - tau).add_(source[key], alpha=tau)


def crossed(global_step: int, stride: int, every: int) -> int:
    """How many multiples of `every` the step counter passed going from global_step - stride."""
    return global_step // every - (global_step - stride) // every


def check_args(args: Args) -> None:
    if args.l0_lambda < 0:
        raise ValueError("--l0-lambda must be >= 0 (0 switches the penalty off)")
    counts = ("num_envs", "batch_size", "train_frequency", "target_network_frequency", "log_every")
    for name in (*counts, "checkpoint_every"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1")
    if args.buffer_size < 2 * args.num_envs:
        raise ValueError(f"--buffer-size must be >= 2 x --num-envs ({2 * args.num_envs})")
    if not 0.0 < args.tau <= 1.0:
        raise ValueError(f"--tau must be in (0, 1], got {args.tau}")
    if not (0 <= args.end_e <= 1 and 0 <= args.start_e <= 1 and 0 < args.exploration_fraction <= 1):
        raise ValueError("--start-e and --end-e must be in [0, 1] and --exploration-fraction in (0, 1]")
    if args.total_timesteps < args.num_envs or args.learning_starts < 0 or args.save_buffer_max_mb < 0:
        raise ValueError(
            "--total-timesteps must be >= --num-envs; --learning-starts, --save-buffer-max-mb >= 0"
        )


def train(args: Args) -> str:
    """Train (or resume) a run; returns its run directory."""
    args, ckpt, name = resume_or_new(args, ALGO)
    options = env_options(args)
    check_args(args)
    args.num_iterations = args.total_timesteps // args.num_envs

    # TRY NOT TO MODIFY: seeding
    seed_everything(args.seed, args.torch_deterministic)
    envs = make_vector_env(args.env_id, args.num_envs, args.seed, args.capture_video, name, **options)
    if not isinstance(envs.single_action_space, gym.spaces.Discrete):
        envs.close()
        raise ValueError(f"{args.env_id}: DQN needs a discrete action space; use sac_l0.py")
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")

    spaces = (envs.single_observation_space, envs.single_action_space)
    q_network, target_network = QNetwork(*spaces).to(device), QNetwork(*spaces).to(device)
    scheduler = None
    if args.l0:
        gate_q_network(q_network, args)
        scheduler = make_scheduler(args)
    optimizer = optim.Adam(
        [
            {"params": l0.weight_parameters(q_network), "lr": args.learning_rate},
            {"params": l0.gate_parameters(q_network), "lr": args.l0_lr, "weight_decay": 0.0},
        ]
    )
    update_target(target_network, q_network, 1.0)
    # only now, with every argument accepted, does the run directory appear
    run_dir, tracker = open_run(args, ALGO, name, ckpt)

    # ALGO Logic: Storage setup
    rb = ReplayBuffer(args.buffer_size, args.num_envs, envs.single_observation_space)
    buffer_path = os.path.join(run_dir, BUFFER_NAME)

    # TRY NOT TO MODIFY: start the game
    global_step, learn_from = 0, args.learning_starts
    obs, _ = envs.reset(seed=args.seed)
    if ckpt:
        q_network.load_state_dict(ckpt["networks"]["q_network"])
        target_network.load_state_dict(ckpt["networks"]["target_network"])
        optimizer.load_state_dict(ckpt["optimizers"]["q_network"])
        if scheduler is not None:
            scheduler.load_state_dict(ckpt["schedulers"]["q_network"])
        global_step, obs = ckpt["global_step"], ckpt["loop"]["obs"]
        if ckpt["loop"]["envs"] is not None:
            envs.close()
            envs = ckpt["loop"]["envs"]  # exact env state (classic control pickles)
        else:  # e.g. Box2D or the emulator: episodes in flight restart, seeded by the step
            obs, _ = envs.reset(seed=args.seed + global_step)
        saved = None
        if ckpt["loop"]["buffer_step"] == global_step and os.path.exists(buffer_path):
            saved = torch.load(buffer_path, weights_only=True)
        if saved is not None and saved["global_step"] == global_step:  # not one written after checkpoint.pt
            rb.load_state_dict(saved["buffer"])
        else:
            learn_from = global_step + args.learning_starts
            print(f"replay buffer not saved at step {global_step}: refilling, {args.learning_starts} steps")
        set_rng_state(ckpt["rng"])
    print(
        f"replay buffer: {rb.nbytes:,} bytes ({rb.nbytes / 2**30:.3f} GiB) for {rb.rows * args.num_envs} "
        f"transitions of {rb.obs.dtype} {rb.obs.shape[2:]}, + {rb.obs[0, 0].nbytes:,} bytes per episode end"
    )
    tracker.log({"charts/replay_buffer_bytes": rb.nbytes}, global_step)

    def checkpoint() -> None:
        buffer_step = global_step if rb.nbytes <= args.save_buffer_max_mb * 1e6 else None
        if buffer_step is not None:
            atomic_torch_save(buffer_path, {"global_step": global_step, "buffer": rb.state_dict()})
        elif os.path.exists(buffer_path):  # outgrew the limit: no stale buffer stays behind
            os.remove(buffer_path)
        save_checkpoint(
            run_dir,
            {
                "format_version": 1,
                "algo": ALGO,
                "env_id": args.env_id,
                "env_options": options,
                "spaces": spaces,
                "args": asdict(args),
                "global_step": global_step,
                "finished": global_step == args.num_iterations * args.num_envs,
                "networks": {
                    "q_network": q_network.state_dict(),
                    "target_network": target_network.state_dict(),
                },
                "optimizers": {"q_network": optimizer.state_dict()},
                "schedulers": {"q_network": scheduler.state_dict()} if scheduler is not None else {},
                "loop": {"obs": obs, "envs": restorable_envs(envs), "buffer_step": buffer_step},
                "rng": rng_state(),
                "wandb_id": tracker.wandb_id,
            },
        )

    progress = Progress(args.total_timesteps, global_step, args.progress, desc=f"{ALGO} {args.env_id}")
    recent_returns: list[float] = []
    start_time, start_step, td_loss = time.time(), global_step, None
    for iteration in range(global_step // args.num_envs + 1, args.num_iterations + 1):
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
        if "episode" in infos:
            for i in np.nonzero(infos["_episode"])[0]:
                ep_r, ep_l = float(infos["episode"]["r"][i]), int(infos["episode"]["l"][i])
                recent_returns = (recent_returns + [ep_r])[-20:]
                tracker.log({"charts/episodic_return": ep_r, "charts/episodic_length": ep_l}, global_step)

        # TRY NOT TO MODIFY: save data to replay buffer. SAME_STEP autoreset: next_obs of a finished
        # env is already its reset obs; the transition's true next obs is infos["final_obs"][i].
        finals = {int(i): infos["final_obs"][i] for i in np.nonzero(infos.get("_final_obs", []))[0]}
        rb.add(obs, actions, rewards, terminations, finals)
        obs = next_obs

        # ALGO LOGIC: training (train_frequency counts env steps over all envs)
        if global_step > learn_from and len(rb) > 0:
            for _ in range(crossed(global_step, args.num_envs, args.train_frequency)):
                lam = 0.0
                if scheduler is not None:  # only the target mode's controller reads the sparsity
                    sparsity = l0.stats(q_network)["l0/sparsity"] if scheduler.mode == "target" else None
                    lam = scheduler.step(global_step, sparsity)
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
                old_val = q_network(b_obs.float()).gather(1, b_actions.unsqueeze(1)).squeeze(1)  # fresh gates
                td_loss = F.mse_loss(old_val, td_target)
                # L0 LOGIC: expected share of open gated weights, weighted by the scheduled lambda
                l0_loss = lam * l0.penalty(q_network) if args.l0 else torch.zeros(())

                # optimize the model
                optimizer.zero_grad()
                (td_loss + l0_loss).backward()
                optimizer.step()
                l0.clamp_log_alpha_(q_network)

            # update target network
            if crossed(global_step, args.num_envs, args.target_network_frequency):
                update_target(target_network, q_network, args.tau)

        if crossed(global_step, args.num_envs, args.log_every):
            sps = int((global_step - start_step) / (time.time() - start_time))
            metrics = {"charts/epsilon": epsilon, "charts/SPS": sps, "charts/replay_buffer_bytes": rb.nbytes}
            if td_loss is not None:
                metrics["losses/td_loss"] = td_loss.item()
                metrics["losses/q_values"] = old_val.mean().item()
                metrics["losses/l0_penalty"] = float(l0_loss.detach())
            if args.l0:
                metrics.update(l0.stats(q_network, "l0/"))
                metrics.update(scheduler.log_dict("l0/"))
            tracker.log(metrics, global_step)
            ret = float(np.mean(recent_returns)) if recent_returns else None
            progress.update(global_step, SPS=sps, ret=ret, eps=epsilon, sparsity=metrics.get("l0/sparsity"))

        periodic = crossed(global_step, args.num_envs, args.checkpoint_every)
        halt = args.halt_after is not None and global_step - start_step >= args.halt_after
        if halt or periodic or iteration == args.num_iterations:
            checkpoint()
        if halt:
            break
    progress.update(global_step)
    progress.close()
    envs.close()

    finished = global_step == args.num_iterations * args.num_envs
    if finished and args.eval_episodes > 0:
        result = evaluate(
            q_network,
            args.env_id,
            options,
            args.eval_episodes,
            args.seed + 10_000,
            greedy=True,
            max_steps=args.eval_max_steps,
            device=device,
        )
        final = eval_metrics(result)
        if args.l0:
            final.update(l0.stats(q_network, "l0/"))
        tracker.log(final, global_step)
        tracker.summary(final)
    if finished:
        tracker.summary({"global_step": global_step, "finished": True})
    tracker.finish()
    return run_dir


if __name__ == "__main__":
    run_cli(lambda: train(tyro.cli(Args)), f"{ALGO}.py")
