"""Run directories that travel and runs that fail: checkpoints are plain data (a crafted file is
refused, never executed), the run directory is locked, writes are atomic and follow the umask, system
errors and W&B problems give one line, and a run killed at any moment resumes to the end."""

import errno
import json
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import ROOT, assert_one_line_error, checkpointed_ppo, make_key, resume, run_dirs, run_script

import l0rl
from l0rl.algos import ppo_l0
from l0rl.compress.__main__ import main as compress_main
from l0rl.errors import UsageError
from l0rl.runkit import checkpoint as ckpt_mod
from l0rl.runkit import load_checkpoint, read_metrics
from l0rl.runkit.checkpoint import RunLock, atomic_write_bytes
from l0rl.runkit.cli import run_cli


class Exploit:
    """Unpickling this creates a file: what a malicious checkpoint would do."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    return Path(ppo_l0.train(checkpointed_ppo(tmp_path_factory.mktemp("run"), eval_episodes=1)))


def test_a_real_checkpoint_is_plain_data(finished_run):
    ckpt = torch.load(finished_run / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert ckpt["format_version"] == ckpt_mod.FORMAT_VERSION == 2
    assert json.loads(json.dumps(ckpt["args"])) == ckpt["args"]  # arguments are JSON-able data
    policy = l0rl.load_policy(finished_run)
    assert isinstance(policy, torch.nn.Sequential) and not any(
        "parametrizations" in k for k in policy.state_dict()
    )


def test_a_crafted_checkpoint_is_refused_everywhere_and_never_run(finished_run, tmp_path, capsys):
    bad = tmp_path / "bad_run"
    shutil.copytree(finished_run, bad)
    (bad / ".lock").unlink()
    marker = tmp_path / "pwned"
    torch.save({"format_version": 2, "payload": Exploit(str(marker))}, bad / "checkpoint.pt")
    with pytest.raises(UsageError, match="not plain data"):
        l0rl.load_policy(bad)
    with pytest.raises(SystemExit) as exc:
        compress_main([str(bad), "--wandb-mode", "disabled"])
    assert exc.value.code == 2 and "not plain data" in capsys.readouterr().err
    proc = run_script("ppo", "--resume", str(bad), cwd=tmp_path)
    assert_one_line_error(proc, 2, "not plain data")
    assert not marker.exists()


def test_compress_and_load_policy_never_read_the_env_state(finished_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    marker = tmp_path / "pwned"
    (run / ckpt_mod.ENV_STATE_NAME).write_bytes(pickle.dumps(Exploit(str(marker))))
    l0rl.load_policy(run)
    compress_main([str(run), "--episodes", "1", "--wandb-mode", "disabled", "--no-progress"])
    assert not marker.exists() and (run / "compressed.pt").exists()


def test_resume_unpickles_only_an_env_state_signed_with_this_users_key(tmp_path, monkeypatch, capsys):
    """env_state.pkl is a pickle, so --resume loads it only when the checkpoint holds its HMAC under
    this user's key: the user's own halted run gets its exact envs back; a run written under another
    key, or a planted pickle, resumes to the end with its episodes restarted and runs no code."""
    mine, theirs = make_key(tmp_path / "mine.key"), make_key(tmp_path / "theirs.key")
    monkeypatch.setenv(ckpt_mod.KEY_FILE_ENV, str(mine))
    run = Path(ppo_l0.train(checkpointed_ppo(tmp_path, halt_after=64)))
    ckpt = load_checkpoint(run)
    assert ckpt["env_state_step"] == 64 and mine.stat().st_mode & 0o777 == 0o600
    own = ckpt_mod.load_env_state(run, ckpt)
    assert own is not None and own.num_envs == 2
    own.close()
    monkeypatch.setenv(ckpt_mod.KEY_FILE_ENV, str(theirs))  # the same run, opened by another user
    assert ckpt_mod.load_env_state(run, ckpt) is None and "not loaded" in capsys.readouterr().err
    monkeypatch.setenv(ckpt_mod.KEY_FILE_ENV, str(mine))
    marker = tmp_path / "pwned"
    planted = pickle.dumps({"global_step": 64, "envs": Exploit(str(marker))})
    (run / ckpt_mod.ENV_STATE_NAME).write_bytes(planted)
    done = resume("ppo", run)
    assert not marker.exists() and "not loaded" in capsys.readouterr().err
    assert load_checkpoint(done)["finished"] and load_checkpoint(done)["global_step"] == 512


def test_the_run_directory_is_locked_while_a_process_trains_it(tmp_path):
    run_dir = ppo_l0.train(checkpointed_ppo(tmp_path, halt_after=64))
    lock = RunLock(run_dir)  # stands for a training process still running
    try:
        before = (Path(run_dir) / "metrics.jsonl").read_bytes()
        proc = run_script("ppo", "--resume", run_dir, cwd=tmp_path)
        assert_one_line_error(proc, 2, f"in use by another l0rl process (pid {os.getpid()})")
        assert (Path(run_dir) / "metrics.jsonl").read_bytes() == before
    finally:
        lock.release()
    assert run_script("ppo", "--resume", run_dir, cwd=tmp_path).returncode == 0


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664)])
def test_files_follow_the_umask_and_no_temp_file_is_left(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write_bytes(tmp_path / "f.bin", b"x" * 10)
    finally:
        os.umask(old)
    assert (tmp_path / "f.bin").stat().st_mode & 0o777 == mode
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_resume_removes_stale_temp_files_and_refuses_a_read_only_checkpoint(tmp_path):
    run_dir = Path(ppo_l0.train(checkpointed_ppo(tmp_path, halt_after=64)))
    stale = run_dir / ".checkpoint.pt.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    ckpt = run_dir / "checkpoint.pt"
    ckpt.chmod(0o444)
    before = ckpt.read_bytes()
    assert_one_line_error(run_script("ppo", "--resume", str(run_dir), cwd=tmp_path), 2, "read-only")
    assert ckpt.read_bytes() == before
    ckpt.chmod(0o644)
    assert run_script("ppo", "--resume", str(run_dir), cwd=tmp_path).returncode == 0
    assert not stale.exists()


def test_runs_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "runs").write_text("not a directory")
    proc = run_script("ppo", "--runs-dir", "runs", "--total-timesteps", "512", cwd=tmp_path)
    assert_one_line_error(proc, 2, "is a file")


def test_a_full_disk_keeps_the_last_checkpoint_and_says_which_file(tmp_path, monkeypatch, capsys):
    run_dir = Path(ppo_l0.train(checkpointed_ppo(tmp_path, halt_after=64)))
    before = (run_dir / "checkpoint.pt").read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ckpt_mod.os, "fsync", full)
    with pytest.raises(SystemExit) as exc:
        run_cli(lambda: ppo_l0.train(checkpointed_ppo(tmp_path, resume=str(run_dir))), "ppo_l0.py")
    monkeypatch.undo()
    err = capsys.readouterr().err.strip().splitlines()
    # the last line (after the "resuming" banner) names the file and the cause
    assert exc.value.code == 1 and err[-1].startswith(
        "ppo_l0.py: error: cannot write or read " + str(run_dir)
    )
    assert err[-1].endswith("No space left on device")
    assert (run_dir / "checkpoint.pt").read_bytes() == before
    assert not list(run_dir.glob(".*.tmp"))


def no_key_env(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    return {**env, "HOME": str(tmp_path), "NETRC": str(tmp_path / "no-netrc")}


def test_wandb_online_without_a_key_is_refused_up_front(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "algos" / "ppo_l0.py"), "--wandb-mode", "online"],
        cwd=tmp_path,
        env=no_key_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_one_line_error(proc, 2, "needs a W&B API key")
    assert run_dirs(tmp_path) == []


@pytest.mark.slow
def test_wandb_auto_with_an_unreachable_server_logs_offline_without_blocking(tmp_path):
    env = {**no_key_env(tmp_path), "WANDB_API_KEY": "a" * 40, "WANDB_BASE_URL": "http://127.0.0.1:9"}
    argv = ["--total-timesteps", "256", "--num-envs", "2", "--num-steps", "64", "--eval-episodes", "0"]
    start = time.time()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "algos" / "ppo_l0.py"), *argv],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    assert "W&B unreachable" in proc.stderr and time.time() - start < 90
    (run,) = run_dirs(tmp_path)
    assert list((run / "wandb").glob("offline-run-*"))


def wandb_history(run_dir: Path) -> list[dict]:
    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    out = subprocess.run(
        [str(Path(sys.executable).parent / "wandb"), "leet", "inspect", "--json", str(offline)],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [r["history"]["item"] for r in records if r.get("type") == "history"]


def test_wandb_keeps_every_episode_and_resume_honours_an_explicit_mode(tmp_path):
    run_dir = Path(ppo_l0.train(checkpointed_ppo(tmp_path, wandb_mode="offline", halt_after=256, num_envs=4)))
    local = [r for r in read_metrics(run_dir) if "charts/episodic_return" in r]
    steps = [r["global_step"] for r in local]
    assert len(steps) > len(set(steps)), "this budget must end several episodes in one vector step"
    remote = [r for r in wandb_history(run_dir) if "charts/episodic_return" in r]
    assert [(r["global_step"], r["charts/episodic_return"]) for r in remote] == [
        (r["global_step"], r["charts/episodic_return"]) for r in local
    ]
    ppo_l0.train(checkpointed_ppo(tmp_path, resume=str(run_dir), wandb_mode="disabled", num_envs=4))
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 1  # no W&B run for the resumed part
    assert load_checkpoint(run_dir)["args"]["wandb_mode"] == "disabled"


@pytest.mark.slow
def test_killed_at_random_moments_the_run_resumes_to_the_end(tmp_path):
    rng = random.Random(0)
    argv = ["--total-timesteps", "4096", "--num-envs", "2", "--num-steps", "32", "--checkpoint-every", "64"]
    argv += ["--eval-episodes", "0", "--no-progress"]
    for trial in range(3):
        cwd = tmp_path / str(trial)
        cwd.mkdir()
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "algos" / "ppo_l0.py"), "--wandb-mode", "disabled", *argv],
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 60
        while not list(cwd.glob("runs/*/checkpoint.pt")) and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 1.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        (run,) = run_dirs(cwd)
        ckpt = load_checkpoint(run)  # whatever the moment, the checkpoint on disk is whole
        assert 0 < ckpt["global_step"] <= 4096
        if not ckpt["finished"]:
            done = run_script("ppo", "--resume", str(run), "--no-progress", cwd=cwd)
            assert done.returncode == 0, done.stderr
        assert load_checkpoint(run)["finished"] and not list(run.glob(".*.tmp"))
