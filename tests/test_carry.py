"""benchmark.carry: a suite's runs travel through a tracked folder and resume on the other side."""

import contextlib
import hashlib
import io
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import invoke, one_line

from benchmark import carry
from l0rl.runkit import load_checkpoint, run_cli
from l0rl.runkit.checkpoint import ENV_STATE_NAME, RunLock

ROOT = Path(__file__).resolve().parents[1]


def carry_cli(*argv: str) -> tuple[int, str, str]:
    return invoke(carry.main, *argv, prog=carry.PROG)


def train(runs: Path, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "algos" / "ppo_l0.py"), "--env-id", "CartPole-v1", "--num-envs", "2"]
        + ["--num-steps", "64", "--total-timesteps", "1024", "--eval-episodes", "2", "--seed", "3"]
        + ["--runs-dir", str(runs), "--wandb-mode", "disabled", "--no-progress", *argv],
        capture_output=True,
        text=True,
        timeout=180,
    )


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def halted(tmp_path_factory) -> Path:
    """A CartPole run halted at 512 of 1,024 steps, as a suite leaves one when a machine ends."""
    runs = tmp_path_factory.mktemp("machine1") / "runs"
    proc = train(runs, "--halt-after", "512")
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = runs.iterdir()
    assert load_checkpoint(run_dir)["global_step"] == 512
    return run_dir


def test_a_carried_run_resumes_on_a_new_machine_to_its_budget(halted, tmp_path):
    (halted / ENV_STATE_NAME).write_bytes(b"not carried: a pickle runs code when loaded")
    carry_dir, runs2 = tmp_path / "carry", tmp_path / "machine2" / "runs"
    code, out, err = carry_cli(
        "save", "tiny", "--runs-dir", str(halted.parent), "--carry-dir", str(carry_dir)
    )
    assert code == 0, err
    assert "[saved] " + halted.name + ": at step 512" in out
    copy = carry_dir / halted.name
    assert digest(copy / "checkpoint.pt") == digest(halted / "checkpoint.pt")
    assert (copy / "metrics.jsonl").read_text() == (halted / "metrics.jsonl").read_text()
    assert not (copy / ENV_STATE_NAME).exists() and not (copy / ".lock").exists()

    code, out, err = carry_cli("restore", "tiny", "--runs-dir", str(runs2), "--carry-dir", str(carry_dir))
    assert code == 0, err
    assert f"[restored] {halted.name}: at step 512" in out
    restored = runs2 / halted.name
    assert digest(restored / "checkpoint.pt") == digest(halted / "checkpoint.pt")

    proc = subprocess.run(
        [sys.executable, str(ROOT / "algos" / "ppo_l0.py"), "--resume", str(restored)]
        + ["--wandb-mode", "disabled", "--no-progress"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    ckpt = load_checkpoint(restored)
    assert ckpt["finished"] and ckpt["global_step"] == 1024

    # the restored run is now ahead of the carried copy: restoring again must not roll it back,
    # and saving it again replaces the carried copy with the finished one
    before = digest(restored / "checkpoint.pt")
    code, out, _ = carry_cli("restore", "tiny", "--runs-dir", str(runs2), "--carry-dir", str(carry_dir))
    assert code == 0 and f"[skip] {halted.name}:" in out and "finished at step 1,024" in out
    assert digest(restored / "checkpoint.pt") == before
    code, out, _ = carry_cli("save", "tiny", "--runs-dir", str(runs2), "--carry-dir", str(carry_dir))
    assert code == 0 and "finished at step 1,024" in out
    assert digest(copy / "checkpoint.pt") == before
    code, out, _ = carry_cli("save", "tiny", "--runs-dir", str(halted.parent), "--carry-dir", str(carry_dir))
    assert code == 0 and f"[skip] {halted.name}:" in out  # the older run never replaces the finished copy
    assert digest(copy / "checkpoint.pt") == before


def test_a_run_in_training_is_refused_and_nothing_is_copied(halted, tmp_path):
    lock = RunLock(halted)
    try:
        code, _, err = carry_cli(
            "save", "tiny", "--runs-dir", str(halted.parent), "--carry-dir", str(tmp_path)
        )
    finally:
        lock.release()
    assert code != 0 and "in use by another l0rl process" in one_line(err)
    assert not any(tmp_path.iterdir())


def test_bad_input_is_a_one_line_error(tmp_path):
    code, _, err = carry_cli("save", "no-such-suite")
    assert code == 2 and "unknown suite 'no-such-suite'" in one_line(err)
    code, _, err = carry_cli("restore", "tiny", "--carry-dir", str(tmp_path / "absent"))
    assert code == 2 and "nothing was carried" in err
    broken = tmp_path / "carry" / "CartPole-v1__ppo_l0__3__1"
    broken.mkdir(parents=True)
    (broken / "checkpoint.pt").write_bytes(b"truncated")
    lines = []
    assert carry.restore(tmp_path / "runs", tmp_path / "carry", say=lines.append) == 0
    assert "no readable checkpoint" in lines[0] and lines[-1].startswith("0 run(s) restored")
    assert not (tmp_path / "runs" / broken.name).exists()


@pytest.mark.parametrize("linked", ["benchmark/carry", "benchmark/carry/tiny"])
def test_a_committed_symlink_as_the_carry_folder_is_refused(halted, tmp_path, monkeypatch, linked):
    """A clone's benchmark/carry (or its suite folder) that is a link would send save's files
    wherever it points: refused in one line, nothing written there."""
    repo, elsewhere = tmp_path / "repo", tmp_path / "elsewhere"
    (repo / "benchmark").mkdir(parents=True)
    elsewhere.mkdir()
    link = repo / linked
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(elsewhere, target_is_directory=True)
    monkeypatch.setattr(carry, "ROOT", repo)
    code, _, err = carry_cli("save", "tiny", "--runs-dir", str(halted.parent))
    assert code == 2 and f"{link} is a symlink" in one_line(err)
    assert not any(elsewhere.iterdir())
    link.unlink()  # the real folder: the same save carries the run
    code, _, err = carry_cli("save", "tiny", "--runs-dir", str(halted.parent))
    assert code == 0, err
    assert (repo / "benchmark" / "carry" / "tiny" / halted.name / "checkpoint.pt").is_file()


def test_the_suite_refuses_to_retrain_what_was_carried_but_not_restored(halted, tmp_path, monkeypatch):
    from benchmark import run_suite

    carry_dir = tmp_path / "carry" / "tiny"
    assert carry.save(halted.parent, carry_dir, say=lambda _: None) == 0
    monkeypatch.setattr(carry, "default_carry_dir", lambda suite: tmp_path / "carry" / suite)
    monkeypatch.setattr(run_suite, "default_runs_dir", lambda suite: tmp_path / "runs" / suite)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), pytest.raises(SystemExit) as e:
        run_cli(lambda: run_suite.main(["tiny", "--dry-run"]), "run_suite")
    assert e.value.code == 2 and one_line(err.getvalue())
    assert f"holds {halted.name} (at step 512)" in err.getvalue()
    assert "python -m benchmark.carry restore tiny" in err.getvalue()
    assert not (tmp_path / "runs").exists()

    carry.restore(tmp_path / "runs" / "tiny", carry_dir, say=lambda _: None)
    assert run_cli(lambda: run_suite.main(["tiny", "--dry-run"]), "run_suite") == 0


def test_git_tracks_every_file_a_carried_run_holds():
    # `git add benchmark/carry/<suite>` must take the whole run: the W&B offline files too, which the
    # repository's `wandb/` ignore rule would otherwise drop in silence (and with them the history
    # that a later `wandb sync` uploads)
    if subprocess.run(["git", "-C", str(ROOT), "rev-parse"], capture_output=True).returncode != 0:
        pytest.skip("not a git checkout")
    carried = ["checkpoint.pt", "metrics.jsonl", "wandb/offline-run-20260101_000000-abc/run-abc.wandb"]
    paths = [f"benchmark/carry/suite/run__1/{name}" for name in carried]
    ignored = subprocess.run(["git", "-C", str(ROOT), "check-ignore", *paths], capture_output=True, text=True)
    assert ignored.stdout.split() == [], ignored.stdout
    # the rule it overrides still holds elsewhere, so the un-ignore is not a blanket one
    assert subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", "wandb/x.wandb"]).returncode == 0
