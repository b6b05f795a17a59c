"""The shared return formulas (runkit.gae, runkit.bootstrap_truncations) against their closed forms."""

import numpy as np
import pytest
import torch

from l0rl.runkit import bootstrap_truncations, gae

GAMMA = 0.9


def discounted(rewards: list[float], bootstrap: float, gamma: float = GAMMA) -> list[float]:
    """Plain discounted returns of one episode segment, bootstrapped at its end."""
    out, ret = [], bootstrap
    for r in reversed(rewards):
        ret = r + gamma * ret
        out.append(ret)
    return out[::-1]


def test_gae_lambda_one_is_the_discounted_return_and_cuts_at_episode_ends():
    # one env, 5 steps; the obs at step 3 is a reset obs (the episode ended after step 2)
    rewards = torch.tensor([[1.0], [2.0], [3.0], [4.0], [5.0]])
    values = torch.tensor([[0.5], [0.1], [0.7], [0.2], [0.3]])
    dones = torch.tensor([[0.0], [0.0], [0.0], [1.0], [0.0]])
    next_value, next_done = torch.tensor([[10.0]]), torch.tensor([0.0])
    adv, ret = gae(rewards, values, dones, next_value, next_done, GAMMA, 1.0)
    expected = discounted([1.0, 2.0, 3.0], 0.0) + discounted([4.0, 5.0], 10.0)
    assert ret.flatten().tolist() == pytest.approx(expected)
    # with lambda 1 the advantage is the closed-form return less the value at each step
    assert adv.flatten().tolist() == pytest.approx(
        [e - v for e, v in zip(expected, values.flatten().tolist())]
    )


def test_gae_lambda_zero_is_the_one_step_td_error():
    rewards = torch.tensor([[1.0, -1.0], [2.0, 0.5]])
    values = torch.tensor([[0.3, 0.2], [0.4, -0.6]])
    dones = torch.tensor([[0.0, 0.0], [0.0, 1.0]])
    next_value, next_done = torch.tensor([[1.5, 2.5]]), torch.tensor([1.0, 0.0])
    adv, _ = gae(rewards, values, dones, next_value, next_done, GAMMA, 0.0)
    # step 0: env 1's next obs is a reset obs (done), so no bootstrap; step 1: env 0 ends after the rollout
    expected = [
        [1.0 + GAMMA * 0.4 - 0.3, -1.0 - 0.2],
        [2.0 - 0.4, 0.5 + GAMMA * 2.5 + 0.6],
    ]
    assert adv.tolist() == [pytest.approx(row) for row in expected]


def test_bootstrap_adds_the_final_value_to_truncated_episodes_only():
    reward = torch.ones(3)
    terminations = np.array([False, True, True])
    truncations = np.array([True, False, True])  # env 2 ended both ways: a true end, nothing added
    final_obs = np.empty(3, dtype=object)
    final_obs[:] = [np.array([2.0], dtype=np.float32), None, np.array([7.0], dtype=np.float32)]
    seen = []

    def critic(x):
        seen.append(x)
        return 3.0 * x

    bootstrap_truncations(reward, terminations, truncations, {"final_obs": final_obs}, critic, GAMMA)
    assert reward.tolist() == pytest.approx([1.0 + GAMMA * 6.0, 1.0, 1.0])
    assert len(seen) == 1 and seen[0].dtype == torch.float32 and seen[0].tolist() == [[2.0]]
    # nothing truncated: the critic is not called
    bootstrap_truncations(reward, terminations, ~truncations & ~terminations, {}, critic, GAMMA)
    assert len(seen) == 1
