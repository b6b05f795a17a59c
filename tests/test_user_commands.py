"""What a CleanRL / W&B user runs around training: `l0rl report` of hand-started runs (outside the
repository), TensorBoard event files, `l0rl play` and `l0rl evaluate`, the installed commands' exit
status, Ctrl-C stopping cleanly with a checkpoint that resumes exactly, the start-of-run plan and
short-budget warning, hints naming the file that ran, and the policy contract checked at the start."""

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from helpers import ROOT, assert_one_line_error, assert_same_state, resume, run_dirs, run_script, tiny_args
from torch import nn

from l0rl.algos import ppo_l0
from l0rl.errors import UsageError
from l0rl.report import figures, tables
from l0rl.report.stats import Estimate
from l0rl.runkit import Run, load_checkpoint, read_metrics
from l0rl.runkit.tracker import variant_group

BIN = Path(sys.executable).parent
TINY_FLAGS = ["--num-envs", "2", "--num-steps", "16", "--num-minibatches", "2", "--update-epochs", "2"]


def tiny(root: Path, **kw) -> ppo_l0.Args:
    """helpers' tiny PPO run over 256 steps (TINY_FLAGS on a command line)."""
    return tiny_args("ppo", root, **{"total_timesteps": 256, **kw})


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> tuple[Path, Path]:
    """A dense and an L0 PPO run of CartPole, as a user starts them by hand."""
    root = tmp_path_factory.mktemp("hand")
    dense = Path(ppo_l0.train(tiny(root, sparsity="none")))
    sparse = Path(ppo_l0.train(tiny(root, log_every=32)))
    return dense, sparse


def test_a_report_of_two_hand_started_runs_is_written_outside_the_repository(two_runs, tmp_path):
    dense, sparse = two_runs
    away = tmp_path / "elsewhere"  # no benchmark/ or l0rl source here: only the installed package
    away.mkdir()
    proc = subprocess.run(
        [str(BIN / "l0rl"), "report", str(dense), str(sparse.parent / "*ppo_l0*"), "--reps", "10"],
        cwd=away,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    out = away / "l0rl-report"
    data = json.loads((out / "report.json").read_text())
    assert sorted(data["runs"]) == sorted([str(dense), str(sparse)])
    (cell,) = data["cells"]
    assert (cell["env_id"], cell["algo"]) == ("CartPole-v1", "ppo_l0")
    rows = {r["variant"]: r for r in cell["rows"]}
    assert set(rows) == {"ppo_dense", "ppo_l0"}
    summaries = {p: json.loads((p / "summary.json").read_text()) for p in (dense, sparse)}
    assert rows["ppo_l0"]["trained_return"]["point"] == summaries[sparse]["eval/episodic_return"]
    assert (
        rows["ppo_dense"]["sparsity"] == 0.0 and rows["ppo_l0"]["sparsity"] == summaries[sparse]["sparsity"]
    )
    text = (out / "REPORT.md").read_text()
    assert f"`{dense.name}`" in text and f"`{sparse.name}`" in text
    table = [line for line in text.splitlines() if line.startswith("| ppo\\_")]
    assert len(table) == 2 and all("(n = 1)" in line and " [" not in line for line in table)  # no interval
    for name in cell["figures"].values():
        assert (out / name).stat().st_size > 0 and f"]({name})" in text
    # a second report into a folder of other files is refused, the files kept
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    proc = subprocess.run(
        [str(BIN / "l0rl"), "report", str(dense), "--out", str(tmp_path / "mine")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_one_line_error(proc, 2, "holds other files")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def test_wandb_groups_one_variant_per_group():
    """The UI's default grouped view averages runs of a group: dense and L0 must never share one."""
    groups = {variant_group("CartPole-v1", name) for name in ("ppo_dense", "ppo_l0", "ppo_gmp")}
    assert groups == {"CartPole-v1__ppo_dense", "CartPole-v1__ppo_l0", "CartPole-v1__ppo_gmp"}


def test_tensorboard_event_files_hold_the_metrics_record(two_runs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, run_dir = two_runs
    assert list(run_dir.glob("events.out.tfevents.*"))
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    logged: dict[str, list] = {}
    for row in read_metrics(run_dir):
        for key, value in row.items():
            if key not in ("global_step", "time") and value is not None:
                logged.setdefault(key, []).append((row["global_step"], np.float32(value)))
    assert {"charts/episodic_return", "charts/SPS", "losses/value_loss", "l0/sparsity"} <= set(logged)
    assert set(events.Tags()["scalars"]) == set(logged)
    for key, values in logged.items():
        assert [(e.step, np.float32(e.value)) for e in events.Scalars(key)] == values, key


def test_play_replays_the_returns_evaluate_gives_for_the_same_seeds(two_runs, capsys):
    from benchmark.evaluate import main as evaluate_main
    from l0rl.play import main as play_main

    _, run_dir = two_runs
    played = play_main([str(run_dir), "--episodes", "3"])
    text = capsys.readouterr().out
    (row,) = evaluate_main([str(run_dir), "--episodes", "3"])
    assert played["returns"] == row["returns"] and len(row["returns"]) == 3
    seed = load_checkpoint(run_dir)["args"]["seed"] + 10_000
    assert f"episode 1 (seed {seed}): return {row['returns'][0]:.1f}" in text
    assert f"mean return {np.mean(row['returns']):.1f}" in text
    with pytest.raises(UsageError, match="compressed.pt does not exist"):
        play_main([str(run_dir), "--compressed"])


def test_the_installed_commands_exit_0_on_success(two_runs, tmp_path):
    _, run_dir = two_runs
    copy = tmp_path / run_dir.name
    shutil.copytree(run_dir, copy)
    base = ["--episodes", "1", "--wandb-mode", "disabled", "--no-progress"]
    for command in ([str(BIN / "l0rl-compress")], [str(BIN / "l0rl"), "compress"]):
        proc = subprocess.run([*command, str(copy), *base], capture_output=True, text=True, timeout=180)
        assert proc.returncode == 0, proc.stderr
        assert "low-rank" in proc.stdout and "{" not in proc.stderr  # the table, not the report dict
    proc = subprocess.run([str(BIN / "l0rl"), "nothing"], capture_output=True, text=True, timeout=60)
    assert_one_line_error(proc, 2, "unknown verb 'nothing'")


def start_ppo(cwd: Path, flags: list[str]) -> subprocess.Popen:
    """algos/ppo_l0.py running in the background, its output piped (text) for the test to read."""
    command = [sys.executable, str(ROOT / "algos" / "ppo_l0.py"), "--wandb-mode", "disabled", *flags]
    return subprocess.Popen(command, cwd=cwd, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def test_sigint_stops_with_a_checkpoint_that_resumes_bit_exactly(tmp_path):
    """A real SIGINT mid-run: exit 130, a checkpoint, the resume command; resumed, the run ends with
    the same networks as a run never interrupted."""
    total = 4096
    flags = [*TINY_FLAGS, "--total-timesteps", str(total), "--eval-episodes", "0", "--no-progress"]
    proc = start_ppo(tmp_path, flags)
    for line in proc.stderr:  # the plan line comes once the stop handlers are in place
        if "budget" in line:
            proc.send_signal(signal.SIGINT)
            break
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    (run_dir,) = run_dirs(tmp_path)
    halted = load_checkpoint(run_dir)
    assert not halted["finished"] and 0 < halted["global_step"] < total
    assert "SIGINT: stopping after this step with a checkpoint" in err
    assert f"stopped by SIGINT at step {halted['global_step']:,}" in out
    assert f"next: python {ROOT / 'algos' / 'ppo_l0.py'} --resume {run_dir.relative_to(tmp_path)}" in out
    resume("ppo", run_dir)
    full = ppo_l0.train(tiny(tmp_path / "full", total_timesteps=total, eval_episodes=0))
    a, z = load_checkpoint(full), load_checkpoint(run_dir)
    assert z["finished"] and z["global_step"] == a["global_step"] == total
    assert_same_state(a["networks"]["agent"], z["networks"]["agent"])


def test_a_second_sigint_aborts_at_once_says_what_is_left_and_a_third_changes_nothing(tmp_path):
    flags = ["--num-envs", "2", "--num-steps", "2048", "--total-timesteps", "65536", "--no-progress"]
    proc = start_ppo(tmp_path, flags)
    for line in proc.stderr:
        if ": budget " in line:  # the start line (the short-budget warning says "budget" too)
            proc.send_signal(signal.SIGINT)
        if "stopping after this step" in line:
            proc.send_signal(signal.SIGINT)
            time.sleep(0.05)
            proc.send_signal(signal.SIGINT)  # an impatient third: ignored while the abort unwinds
            break
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err and "Exception ignored" not in err, err
    (run_dir,) = run_dirs(tmp_path)
    if "aborted by a second SIGINT; no checkpoint was written yet" in err:  # mid-iteration: nothing saved
        assert not (run_dir / "checkpoint.pt").exists()
    else:  # the first stop's checkpoint was already written: it stands
        assert load_checkpoint(run_dir)["global_step"] == 4096  # one iteration: 2 envs x 2048 steps


def test_the_start_of_a_run_says_its_budget_defaults_and_a_short_budget_warning(tmp_path):
    proc = run_script("ppo", *TINY_FLAGS, "--total-timesteps", "64", "--eval-episodes", "0", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "ppo_l0 CartPole-v1: budget 64 env steps; defaults: ppo_l0's" in proc.stderr
    assert "warning: --total-timesteps 64 is 0% of the 500,000 steps" in proc.stderr
    assert "ppo_l0: finished 64 steps" in proc.stdout
    dense = run_script(
        "ppo", *TINY_FLAGS, "--total-timesteps", "64", "--no-l0", "--eval-episodes", "0", cwd=tmp_path
    )
    assert dense.returncode == 0, dense.stderr
    assert "warning" not in dense.stderr and "ppo (dense) CartPole-v1: budget 64 env steps" in dense.stderr
    assert "ppo (dense): finished 64 steps" in dense.stdout and "ppo_l0:" not in dense.stdout


def test_a_copied_algorithm_file_names_itself_in_its_hints(tmp_path):
    mine = tmp_path / "my_ppo.py"
    shutil.copy(ROOT / "algos" / "ppo_l0.py", mine)
    proc = subprocess.run(
        [sys.executable, str(mine), "--wandb-mode", "disabled", *TINY_FLAGS, "--halt-after", "32"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = run_dirs(tmp_path)
    assert f"next: python my_ppo.py --resume {run_dir.relative_to(tmp_path)}" in proc.stdout


def test_an_actor_the_policy_contract_cannot_describe_is_refused_before_training(tmp_path):
    run = Run(tiny(tmp_path), "ppo_l0")
    actor = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))
    spaces = (gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2))
    with pytest.raises(UsageError, match=r"policy module 1 \(LayerNorm\) has parameters"):
        run.open(*spaces, 256, policy=actor)
    assert not (tmp_path / "runs").exists()  # nothing trained, no run directory


def test_track_is_cleancrls_spelling_of_wandb_online(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    with pytest.raises(UsageError, match="--track logs to W&B online and needs an API key"):
        Run(tiny(tmp_path, wandb_mode="auto", track=True), "ppo_l0")
    with pytest.raises(UsageError, match="--track turns W&B on and contradicts --wandb-mode offline"):
        Run(tiny(tmp_path, wandb_mode="offline", track=True), "ppo_l0")
    assert not (tmp_path / "runs").exists()


def test_videos_are_recorded_inside_the_run_directory(tmp_path):
    pytest.importorskip("moviepy")
    run_dir = Path(ppo_l0.train(tiny(tmp_path, total_timesteps=128, capture_video=True, eval_episodes=0)))
    assert list((run_dir / "videos").glob("*.mp4"))
    assert not (tmp_path / "videos").exists() and not Path("videos").exists()


def test_figures_read_well():
    assert [figures.steps_text(x) for x in (500, 200_000, 1_500_000)] == ["500", "200k", "1.5M"]
    looks = {tuple(sorted(figures.style(i, 11).items())) for i in range(11)}
    assert len(looks) == 11 and len({figures.style(i, 11)["color"] for i in range(11)}) == 11
    long = "SuperMarioBros-7-1-v0 / PPO: return of every variant, IQM over seeds, 95 % bootstrap CI"
    assert all(len(line) <= figures.TITLE_WIDTH for line in figures.title(long).splitlines())
    assert figures.title(long).replace("\n", " ") == long
    assert tables.est(Estimate(136.0, None, None)) == "136.0 (n = 1)"
