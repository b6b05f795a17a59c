"""Seconds of learner work in one PPO iteration on the Mario Nature CNN, emulators left out.

    python -m benchmark.measure.learner_cost                       # Mario's PPO defaults, as ppo_l0 runs them
    python -m benchmark.measure.learner_cost --per-head            # the torso run once per head, as before 2026-11-28
    python -m benchmark.measure.learner_cost --contiguous          # conv kernels in torch's default layout
    python -m benchmark.measure.learner_cost --widths 21 32 56     # a torso narrowed to these conv widths
    python -m benchmark.measure.learner_cost --closed 11 32 8      # that many conv channels of each layer gated shut

One iteration is what `algos/ppo_l0.py` does besides stepping the emulators: num_envs x num_steps
rollout forwards (batch num_envs, gates cached), then update_epochs x num_minibatches minibatches of
forward, backward and Adam, inside one frozen gate draw, with Mario's mixed L0 gates. Frames are
random (the cost does not depend on them). `--widths` answers "what would removing closed channels
during training buy": a torso built at those widths costs what a network rebuilt at its open widths
would; `--closed` shuts that many channels' unit gates, which the loop still computes (as zeros).
Prints one line per repeat and returns the figures.
"""

import argparse
import time

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from l0rl import l0
from l0rl.algos import ppo_l0
from l0rl.errors import UsageError
from l0rl.runkit import parse_args
from l0rl.runkit.cli import run_cli

FRAMES = (4, 84, 84)
CONVS = (1, 3, 5)
"""Positions of the three convolutions in the actor (after FrameScale); the Linear(., 512) is at 8."""


def narrow(agent: ppo_l0.Agent, widths: list[int]) -> None:
    """Rebuild the shared torso at these conv widths (actor and critic keep sharing it)."""
    c_in = FRAMES[0]
    for pos, width in zip(CONVS, widths):
        old = agent.actor[pos]
        agent.actor[pos] = agent.critic[pos] = nn.Conv2d(c_in, width, old.kernel_size, old.stride)
        c_in = width
    agent.actor[8] = agent.critic[8] = nn.Linear(c_in * 7 * 7, agent.actor[8].out_features)


def iteration(agent: ppo_l0.Agent, optimizer, args: ppo_l0.Args, per_head: bool) -> tuple[float, float]:
    """(rollout seconds, update seconds) of one iteration."""
    frames = torch.randint(0, 256, (args.num_steps * args.num_envs, *FRAMES), dtype=torch.uint8)
    batch = frames.shape[0]

    def forward(x, action=None):
        if per_head:  # actor and critic each run the torso
            logits = agent.actor(x)
            dist = torch.distributions.Categorical(logits=logits)
            action = dist.sample() if action is None else action
            return action, dist.log_prob(action), dist.entropy(), agent.critic(x)
        return agent.get_action_and_value(x, action)

    with l0.frozen_gates(agent):
        start = time.perf_counter()
        with l0.cached_gates(), torch.no_grad():
            for step in range(args.num_steps):
                forward(frames[step * args.num_envs : (step + 1) * args.num_envs])
        rolled = time.perf_counter()
        minibatch = batch // args.num_minibatches
        for _ in range(args.update_epochs):
            order = torch.randperm(batch)
            for i in range(args.num_minibatches):
                idx = order[i * minibatch : (i + 1) * minibatch]
                _, logprob, entropy, value = forward(frames[idx], torch.randint(0, 7, (minibatch,)))
                loss = logprob.mean() - 0.01 * entropy.mean() + value.pow(2).mean()
                loss = loss + args.l0_lambda_actor * l0.penalty(agent.actor)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                l0.clamp_log_alpha_(agent)
        return rolled - start, time.perf_counter() - rolled


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(
        prog="python -m benchmark.measure.learner_cost", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--widths", type=int, nargs=3, metavar="C", help="conv widths (default 32 64 64)")
    p.add_argument("--closed", type=int, nargs=3, metavar="K", help="conv channels gated shut per layer")
    p.add_argument("--per-head", action="store_true", help="run the torso once per head")
    p.add_argument("--contiguous", action="store_true", help="conv kernels not channels-last")
    p.add_argument("--repeats", type=int, default=3, help="iterations to time (default 3)")
    p.add_argument("--num-envs", type=int, default=8)
    p.add_argument("--num-steps", type=int, default=128)
    p.add_argument("--num-minibatches", type=int, default=4)
    p.add_argument("--update-epochs", type=int, default=4)
    a = p.parse_args(argv)
    if a.widths is not None and min(a.widths) < 1:
        raise UsageError(f"--widths must be 3 positive conv widths, got {a.widths}")
    if a.closed is not None and not all(0 <= k < w for k, w in zip(a.closed, a.widths or (32, 64, 64))):
        raise UsageError(f"--closed must leave every conv at least one open channel, got {a.closed}")
    if min(a.repeats, a.num_envs, a.num_steps, a.num_minibatches, a.update_epochs) < 1:
        raise UsageError(
            "--repeats, --num-envs, --num-steps, --num-minibatches and --update-epochs must be >= 1"
        )
    if (a.num_envs * a.num_steps) % a.num_minibatches:
        raise UsageError("--num-minibatches must divide --num-envs x --num-steps")
    args, _ = parse_args(ppo_l0.Args, ppo_l0.FAMILY_DEFAULTS, ["--env-id", "SuperMarioBros-7-1-v0"])
    for key in ("num_envs", "num_steps", "num_minibatches", "update_epochs"):
        setattr(args, key, getattr(a, key))
    torch.manual_seed(0)
    obs_space = gym.spaces.Box(0, 255, FRAMES, np.uint8)
    agent = ppo_l0.Agent(obs_space, gym.spaces.Discrete(7))
    if a.widths is not None:
        narrow(agent, a.widths)
    if not a.contiguous:
        agent = agent.to(memory_format=torch.channels_last)
    # the gates exactly as ppo_l0.train puts them on (the Mario defaults gate actor and critic)
    lambdas = {"actor": args.l0_lambda_actor, "critic": args.l0_lambda_critic}
    ppo_l0.make_sparsity(args, {"actor": agent.actor, "critic": agent.critic_own}, lambdas)
    ppo_l0.gate(agent, args, torch.zeros((1, *FRAMES)))
    gates = {id(module): gate for _, module, gate in l0.gated_layers(agent)}
    with torch.no_grad():
        for pos, k in zip(CONVS, a.closed or (0, 0, 0)):
            gates[id(agent.actor[pos])].log_alpha[:k] = l0.LOG_ALPHA_MIN
    optimizer = torch.optim.Adam(l0.param_groups(agent, args.learning_rate, args.l0_lr), eps=1e-5)
    calls = []
    agent.actor[CONVS[0]].register_forward_hook(lambda *_: calls.append(1))
    result = {"widths": [agent.actor[i].out_channels for i in CONVS], "closed": a.closed or [0, 0, 0]}
    result |= {"per_head": a.per_head}
    result |= {"channels_last": not a.contiguous, "threads": torch.get_num_threads(), "repeats": []}
    for _ in range(a.repeats):
        calls.clear()
        rollout, update = iteration(agent, optimizer, args, a.per_head)
        result["repeats"].append({"rollout_s": rollout, "update_s": update, "first_conv_calls": len(calls)})
        shape = (
            f"widths {'/'.join(map(str, result['widths']))}, closed {'/'.join(map(str, result['closed']))}"
        )
        print(f"{shape} | rollout {rollout:.2f} s | update {update:.2f} s | total {rollout + update:.2f} s")
    return result


if __name__ == "__main__":
    run_cli(main, "benchmark.measure.learner_cost")
