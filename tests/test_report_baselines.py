"""The suite report's trivial baselines: played on the runs' own evaluation seeds (classic control),
read from a measured baselines.json where episodes are slow (Mario), every file-sourced field checked
and escaped."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from benchmark import report, suites
from benchmark.baselines import baselines

CARTPOLE = suites.Cell("CartPole-v1", "ppo_l0", 1000, (suites.L0,), {"eval_episodes": 3})
MARIO = suites.Cell("SuperMarioBros-7-1-v0", "ppo_l0", 1000, (suites.L0,))


def finished(cell, seed):
    """What cell_baselines reads of a run record: its cell, seed, and that it finished."""
    return SimpleNamespace(cell=cell, seed=seed, progress_step=None)


def test_classic_control_baselines_are_played_on_each_runs_evaluation_seeds(tmp_path):
    records = [
        finished(CARTPOLE, 4),
        finished(CARTPOLE, 3),
        SimpleNamespace(cell=CARTPOLE, seed=9, progress_step=5),
    ]
    rows, where = report.cell_baselines(CARTPOLE, records, tmp_path)
    per_seed = [baselines("CartPole-v1", 3, s + 10_000, None) for s in (3, 4)]  # the unfinished seed 9 is not
    for i, name in enumerate(("random", "scripted (lean)")):
        returns = per_seed[0][i]["returns"] + per_seed[1][i]["returns"]
        got = next(r for r in rows if r["path"] == name)
        assert got["returns"] == returns and got["episodes"] == 6
        assert got["return_mean"] == pytest.approx(np.mean(returns))
        assert got["return_sem"] == pytest.approx(np.std(returns, ddof=1) / np.sqrt(6))
    assert "3 per run seed (3, 4)" in where
    random = rows[0]
    assert (
        f"| random | 6 | {random['return_mean']:.1f} +- {random['return_sem']:.1f} |"
        in report.baseline_table(rows, where)
    )


def test_mario_baselines_come_from_the_measured_file_checked_and_escaped(tmp_path, capsys):
    good = dict(env_id=MARIO.env_id, episodes=2, first_seed=10001, return_mean=330.9, return_sem=16.7)
    entries = [
        {**good, "path": "random", "x_pos": [400, 1374], "flags": [0, 0]},
        {**good, "path": "<img src=x> | fake | row |", "x_pos": [10, 20], "flags": [0, 1]},
        {**good, "path": "bad mean", "return_mean": "NaN"},
        {**good, "path": "bad x", "x_pos": ["far"]},
        {**good, "path": "other env", "env_id": "CartPole-v1"},
        "not a row",
    ]
    (tmp_path / report.BASELINES_NAME).write_text(json.dumps(entries))
    rows, where = report.cell_baselines(MARIO, [], tmp_path)
    assert [r["path"] for r in rows] == ["random", "<img src=x> | fake | row |"]
    lines = report.baseline_table(rows, where)
    assert "| random | 2 | 330.9 +- 16.7 | 887 (1,374) | 0 |" in lines
    injected = next(line for line in lines if "img" in line)
    assert "<img" not in injected and injected.count(" | ") == 4  # escaped: still five cells
    (tmp_path / report.BASELINES_NAME).write_text("{torn")
    rows, where = report.cell_baselines(MARIO, [], tmp_path)
    assert rows == [] and "python -m benchmark.baselines SuperMarioBros-7-1-v0 --json" in where
    assert "not a JSON file" in capsys.readouterr().err
