"""A run directory from a stranger is data: nothing in it is followed (symlinks, FIFOs, devices),
nothing is read unbounded or allocated beyond what the file holds, nothing is written outside it,
its checkpoint's arguments pass the command line's checks, the resume key is held to ssh's rules,
W&B never blocks, and a full disk or a crash between two commits never bricks a run."""

import copy
import errno
import gc
import os
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch
from helpers import (
    algo,
    assert_one_line_error,
    assert_same_state,
    checkpointed_ppo,
    make_key,
    resume,
    run_script,
    signing_with,
    tiny_args,
)

import l0rl
from benchmark import carry
from l0rl.algos import ppo_l0
from l0rl.compress.__main__ import main as compress_main
from l0rl.compress.serialize import FORMAT, VERSION, load_compressed, to_bytes
from l0rl.errors import NonFiniteError, RunError, UsageError
from l0rl.runkit import checkpoint as ckpt_mod
from l0rl.runkit import files, load_checkpoint, read_metrics, tracker
from l0rl.runkit.cli import run_cli
from l0rl.runkit.tracker import Tracker

pytestmark = pytest.mark.usefixtures("own_key")  # each test signs with its own key


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    with signing_with(make_key(tmp_path_factory.mktemp("key") / "resume.key")):
        return Path(ppo_l0.train(checkpointed_ppo(tmp_path_factory.mktemp("theirs"))))


def received(finished: Path, tmp_path: Path) -> Path:
    """A copy of a finished run, as it arrives from someone else."""
    run = tmp_path / "received" / finished.name
    shutil.copytree(finished, run)
    (run / ckpt_mod.LOCK_NAME).unlink()
    return run


def halted(root: Path, **kw) -> Path:
    return Path(ppo_l0.train(checkpointed_ppo(root, halt_after=64, **kw)))


def freed() -> None:
    """Let a Run that an exception left behind release its lock (its frames held it)."""
    gc.collect()


def refused_at_resume(run: Path, ckpt: dict, message: str) -> None:
    """`ckpt` written as the run's checkpoint makes --resume a RunError matching `message`."""
    torch.save(ckpt, run / "checkpoint.pt")
    with pytest.raises(RunError, match=message):
        resume("ppo", run)
    freed()


def rows_parse(path: Path) -> bool:
    text = path.read_text()
    return text.endswith("\n") and all(
        line.startswith("{") and line.endswith("}") for line in text.splitlines()
    )


# --- 1: a full disk or a torn record never bricks a run ------------------------------------------


def test_a_full_disk_while_logging_is_one_line_and_the_run_resumes_once_space_is_back(
    tmp_path, monkeypatch, capsys
):
    run = halted(tmp_path)
    real_write = os.write

    def disk_full_for_metrics(fd, data):
        if os.readlink(f"/proc/self/fd/{fd}").endswith("metrics.jsonl"):
            real_write(fd, bytes(data)[: len(data) // 2])  # half a row lands, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    with monkeypatch.context() as fault, pytest.raises(SystemExit) as exc:
        fault.setattr(os, "write", disk_full_for_metrics)
        run_cli(lambda: resume("ppo", run), "ppo_l0.py")
    code = exc.value.code
    del exc
    freed()
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert (
        err[-1] == f"ppo_l0.py: error: cannot write or read {run / 'metrics.jsonl'}: No space left on device"
    )
    assert rows_parse(run / "metrics.jsonl")  # the half row was cut back off
    done = load_checkpoint(resume("ppo", run))
    assert done["finished"] and done["global_step"] == 512
    assert rows_parse(run / "metrics.jsonl")


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")  # its thread's traceback
def test_a_full_disk_under_tensorboards_writer_is_one_line_naming_its_file(tmp_path, capsys):
    from tensorboard.compat.tensorflow_stub.io import gfile

    def disk_full(*_args):  # TensorBoard raises it without a file name, from its writer's thread
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    t = Tracker(tmp_path, "x", config={}, wandb_mode="disabled", tensorboard=True)
    t.log({"charts/SPS": 1.0}, 1)
    with pytest.MonkeyPatch.context() as fault, pytest.raises(SystemExit) as exc:
        fault.setattr(gfile.LocalFileSystem, "_write", disk_full)
        run_cli(lambda: (t.log({"charts/SPS": 2.0}, 2), t.finish()), "ppo_l0.py")
    assert exc.value.code == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        f"ppo_l0.py: error: cannot write or read {tmp_path / 'events.out.tfevents.*'}: No space left on device"
    ]


def test_a_torn_last_row_is_trimmed_on_resume_and_tolerated_by_readers(tmp_path):
    run = halted(tmp_path)
    rows = read_metrics(run)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"global_step": 70, "charts/SPS": 1')  # killed mid-write by an older l0rl or a full disk
    assert read_metrics(run) == rows  # what benchmark.report reads
    resume("ppo", run)
    assert load_checkpoint(run)["finished"] and rows_parse(run / "metrics.jsonl")
    assert read_metrics(run)[: len(rows)] == rows
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join([lines[0], "{not json", *lines[1:]]) + "\n")
    with pytest.raises(RunError, match="line 2 is not a metrics row"):
        read_metrics(run)


# --- 2: a fork lands in the command's --runs-dir, under a name that passes the command line's checks


def test_a_fork_lands_in_the_commands_runs_dir_not_the_sources(finished, tmp_path, monkeypatch):
    source = received(finished, tmp_path)
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    fork = Path(ppo_l0.train(ppo_l0.Args(fork_from=str(source), total_timesteps=576, wandb_mode="disabled")))
    assert fork.resolve().parent == (here / "runs").resolve()
    assert load_checkpoint(fork)["args"]["runs_dir"] == "runs"
    assert sorted(p.name for p in finished.parent.iterdir()) == [finished.name]


@pytest.mark.parametrize("exp_name", ["x/../../ESCAPED", "a" * 300, "..", "/tmp/ESCAPED"])
def test_a_crafted_exp_name_in_a_fork_source_is_refused_before_anything_is_written(
    finished, tmp_path, monkeypatch, exp_name
):
    source = received(finished, tmp_path)
    ckpt = torch.load(source / "checkpoint.pt", weights_only=True)
    ckpt["args"]["exp_name"] = exp_name
    torch.save(ckpt, source / "checkpoint.pt")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match="--exp-name"):
        ppo_l0.train(ppo_l0.Args(fork_from=str(source), total_timesteps=576, wandb_mode="disabled"))
    assert not (tmp_path / "runs").exists() and not list(tmp_path.rglob("ESCAPED*"))


def test_a_typed_exp_name_with_a_path_is_refused_in_one_line(finished, tmp_path):
    source = received(finished, tmp_path)
    argv = ["--fork-from", str(source), "--total-timesteps", "576", "--exp-name", "y/../../../ESC"]
    proc = run_script("ppo", *argv, cwd=tmp_path)
    assert_one_line_error(proc, 2, "--exp-name 'y/../../../ESC' must be 1 to 100 letters")
    assert not (tmp_path / "runs").exists() and not list(tmp_path.rglob("ESC*"))


# --- 3: symlinks and special files in a run directory are refused, never followed ----------------


def test_a_fork_refuses_a_metrics_symlink_and_copies_nothing(finished, tmp_path, monkeypatch):
    source = received(finished, tmp_path)
    secret = tmp_path / "id_secret"
    secret.write_text('{"global_step": 0, "private": "SECRET"}\n')
    (source / "metrics.jsonl").unlink()
    (source / "metrics.jsonl").symlink_to(secret)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RunError, match="metrics.jsonl is a symlink"):
        ppo_l0.train(ppo_l0.Args(fork_from=str(source), total_timesteps=576, wandb_mode="disabled"))
    assert not (tmp_path / "runs").exists()


def test_resume_never_appends_through_a_dangling_metrics_symlink(tmp_path):
    run = halted(tmp_path)
    outside = tmp_path / "outside.jsonl"
    (run / "metrics.jsonl").unlink()
    (run / "metrics.jsonl").symlink_to(outside)
    with pytest.raises(RunError, match="metrics.jsonl is a symlink"):
        resume("ppo", run)
    freed()
    assert not outside.exists()


@pytest.mark.parametrize("kind", ["symlink to /dev/zero", "FIFO", "300 MiB file"])
def test_an_env_state_that_is_not_a_small_regular_file_is_refused_unread(tmp_path, kind):
    run = halted(tmp_path)  # signed with this test's key: resume would unpickle it
    path = run / ckpt_mod.ENV_STATE_NAME
    path.unlink()
    if kind == "FIFO":
        os.mkfifo(path)
    elif kind.startswith("symlink"):
        path.symlink_to("/dev/zero")
    else:
        with open(path, "wb") as f:
            f.truncate(300 * files.MiB)  # sparse: no disk used
    start = time.time()
    with pytest.raises(RunError, match="env_state.pkl is a (symlink|FIFO)|env_state.pkl is 300.0 MiB"):
        resume("ppo", run)
    freed()
    assert time.time() - start < 30


def test_a_bounded_read_allocates_what_the_file_holds_not_its_bound(tmp_path):
    """A fork copies replay_buffer.pt with a 4 GiB bound: read(bound) would allocate all of it."""
    (tmp_path / "small.pt").write_bytes(b"x" * 1000)
    code = (
        "import resource, sys; from l0rl.runkit import files; "
        "used = int(open('/proc/self/statm').read().split()[0]) * resource.getpagesize(); "
        "resource.setrlimit(resource.RLIMIT_AS, (used + 2**29, used + 2**29)); "
        "print(len(files.read_bytes(sys.argv[1], files.TORCH_FILE_LIMIT)), len(files.read_text(sys.argv[1])))"
    )
    proc = subprocess.run([sys.executable, "-c", code, tmp_path / "small.pt"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.split() == ["1000", "1000"], proc.stderr


def test_a_fifo_checkpoint_is_refused_without_waiting(finished, tmp_path, capsys):
    run = received(finished, tmp_path)
    (run / "checkpoint.pt").unlink()
    os.mkfifo(run / "checkpoint.pt")
    with pytest.raises(RunError, match="checkpoint.pt is a FIFO"):
        load_checkpoint(run)
    with pytest.raises(SystemExit) as exc:
        compress_main([str(run), "--wandb-mode", "disabled"])
    assert exc.value.code == 2 and "is a FIFO" in capsys.readouterr().err


def test_compress_never_writes_into_a_symlinked_folder(finished, tmp_path, capsys):
    run = received(finished, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (run / "compress_l0").symlink_to(elsewhere)
    with pytest.raises(SystemExit) as exc:
        compress_main([str(run), "--episodes", "1", "--wandb-mode", "disabled", "--no-progress"])
    assert exc.value.code == 2 and "compress_l0 is a symlink" in capsys.readouterr().err
    assert list(elsewhere.iterdir()) == []


def test_a_wandb_symlink_and_a_lock_symlink_are_refused(tmp_path):
    run, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    run.mkdir()
    elsewhere.mkdir()
    (run / "wandb").symlink_to(elsewhere)
    with pytest.raises(RunError, match="wandb is a symlink"):
        Tracker(run, "x", config={}, wandb_mode="offline")
    victim = tmp_path / "victim"
    victim.write_text("kept")
    (run / ckpt_mod.LOCK_NAME).symlink_to(victim)
    with pytest.raises(RunError, match="is a symlink"):
        ckpt_mod.RunLock(run)
    assert victim.read_text() == "kept" and list(elsewhere.iterdir()) == []


def test_videos_never_go_through_a_symlinked_videos_folder(finished, tmp_path):
    from l0rl.play import main as play_main

    run, elsewhere = received(finished, tmp_path), tmp_path / "elsewhere"
    elsewhere.mkdir()
    (run / "videos").symlink_to(elsewhere)
    with pytest.raises(RunError, match="videos is a symlink"):
        play_main([str(run), "--video", "--episodes", "1"])
    halted_run = halted(tmp_path, capture_video=True)
    shutil.rmtree(halted_run / "videos")
    (halted_run / "videos").symlink_to(elsewhere)
    with pytest.raises(RunError, match="videos is a symlink"):
        resume("ppo", halted_run)
    freed()
    assert list(elsewhere.iterdir()) == []


def test_a_hard_linked_lock_or_record_is_never_written_through(tmp_path):
    run = halted(tmp_path)
    victim = tmp_path / "victim"  # a file outside the run that a tarball's hard link names
    victim.write_text("kept")
    (run / ckpt_mod.LOCK_NAME).unlink()
    os.link(victim, run / ckpt_mod.LOCK_NAME)
    with pytest.raises(RunError, match=r"\.lock is a hard link \(2 names"):
        resume("ppo", run)
    freed()
    assert victim.read_text() == "kept"
    os.link(victim, tmp_path / "record.jsonl")
    with pytest.raises(RunError, match="record.jsonl is a hard link"):
        files.append_record(tmp_path / "record.jsonl", b"{}\n")
    assert victim.read_text() == "kept"


@pytest.mark.parametrize("name", ["summary.json", "metrics.jsonl"])
def test_json_nested_past_the_parsers_stack_is_one_line_at_resume(tmp_path, name):
    run = halted(tmp_path)
    with open(run / name, "a") as f:
        f.write("[" * 100_000 + "\n" + (run / "metrics.jsonl").read_text().splitlines()[0] + "\n")
    with pytest.raises(RunError, match=f"{name}(: line| is not a JSON object)"):
        resume("ppo", run)
    freed()


# --- 5: the resume key, as strict as ssh's -----------------------------------------------------------


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: make_key(p, mode=0o644), "has mode 644"),
        (lambda p: p.symlink_to(make_key(p.with_name("real.key"))), "is a symlink"),
        (lambda p: p.mkdir(), "not a regular file"),
        (lambda p: make_key(p, size=16), "holds 16 bytes"),
        (lambda p: os.mkfifo(p, 0o600), "not a regular file"),
        (lambda p: None, "does not exist"),
    ],
)
def test_a_key_that_breaks_the_rules_is_refused_before_a_run_exists(tmp_path, monkeypatch, make, message):
    path = tmp_path / "keys" / "resume.key"
    path.parent.mkdir()
    make(path)
    monkeypatch.setenv(ckpt_mod.KEY_FILE_ENV, str(path))
    with pytest.raises(RunError, match=message):
        ckpt_mod.resume_key()
    with pytest.raises(RunError, match=message):
        ppo_l0.train(checkpointed_ppo(tmp_path))
    assert not (tmp_path / "runs").exists()


def test_a_missing_key_is_created_only_at_the_default_path(tmp_path, monkeypatch):
    monkeypatch.setenv(ckpt_mod.KEY_FILE_ENV, str(tmp_path / "named" / "resume.key"))
    with pytest.raises(RunError, match="does not exist"):
        ckpt_mod.resume_key()
    assert not (tmp_path / "named").exists()
    monkeypatch.delenv(ckpt_mod.KEY_FILE_ENV)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    key = ckpt_mod.resume_key()
    path = tmp_path / "config" / "l0rl" / "resume.key"
    assert len(key) == 32 and path.read_bytes() == key
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    assert ckpt_mod.resume_key() == key


# --- 6: declared sizes are bounded before anything is allocated --------------------------------------


def compressed_file(path: Path, arch: list, state: dict) -> Path:
    path.write_bytes(
        to_bytes({"format": FORMAT, "version": VERSION, "arch": arch, "state": state, "meta": {}})
    )
    return path


BIG = [{"type": "Linear", "in_features": 50_000, "out_features": 50_000, "bias": False}]


def test_a_sparse_record_that_declares_a_huge_shape_is_refused(tmp_path):
    bomb = {"shape": [50_000, 50_000], "mask": torch.zeros(1, dtype=torch.uint8), "values": torch.zeros(0)}
    path = compressed_file(tmp_path / "compressed.pt", BIG, {"0.weight": bomb})
    assert path.stat().st_size < 10_000
    with pytest.raises(RunError, match="mask does not hold one bit per element"):
        load_compressed(path)
    with pytest.raises(RunError, match="mask does not hold one bit per element"):
        l0rl.load_policy(str(path))


def test_layers_that_declare_more_numbers_than_the_file_holds_are_refused(tmp_path, finished):
    path = compressed_file(tmp_path / "compressed.pt", BIG, {"0.weight": torch.zeros(4, 4)})
    with pytest.raises(RunError, match="declare 2,500,000,000 numbers but its state holds 16"):
        load_compressed(path)
    run = received(finished, tmp_path)
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    ckpt["policy"]["arch"][0] = {**BIG[0], "bias": True}
    torch.save(ckpt, run / "checkpoint.pt")
    with pytest.raises(RunError, match="declare 2,500,"):
        l0rl.load_policy(str(run))


def test_a_deflated_checkpoint_is_refused_before_it_inflates(finished, tmp_path):
    run = received(finished, tmp_path)
    plain = run / "checkpoint.pt"
    deflated = tmp_path / "deflated.pt"
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    shutil.copy(deflated, plain)
    with pytest.raises(RunError, match="compressed zip records"):
        load_checkpoint(run)


def test_tensors_that_view_one_storage_many_times_are_refused(tmp_path):
    t = torch.zeros(1000)
    torch.save({"views": [t] * 50}, tmp_path / "views.pt")
    with pytest.raises(RunError, match="tensors claim"):
        files.load_plain(tmp_path / "views.pt", files.TORCH_FILE_LIMIT, "checkpoint")


# --- 8: a crash between env_state.pkl and checkpoint.pt never makes a genuine run look tampered ------


class Crash(Exception):
    """Stands for a kill -9 at one moment of a checkpoint's commit."""


@pytest.mark.parametrize("moment", ["before checkpoint.pt", "before the env state's rename"])
def test_a_crash_between_the_two_commits_resumes_exactly(tmp_path, capsys, moment):
    whole = load_checkpoint(ppo_l0.train(checkpointed_ppo(tmp_path / "whole")))
    fault = pytest.MonkeyPatch()  # undone alone: this test's own key (the fixture's patch) stays set
    if moment == "before checkpoint.pt":
        real_save = ckpt_mod.atomic_torch_save

        def save(path, payload):
            if payload["global_step"] == 128:
                raise Crash
            return real_save(path, payload)

        fault.setattr(ckpt_mod, "atomic_torch_save", save)
    else:
        real_replace = os.replace

        def replace(src, dst):
            if (
                Path(src).name == ckpt_mod.ENV_STATE_NEXT
                and load_checkpoint(Path(dst).parent)["global_step"] == 128
            ):
                raise Crash
            return real_replace(src, dst)

        fault.setattr(os, "replace", replace)
    try:
        with pytest.raises(Crash):
            ppo_l0.train(checkpointed_ppo(tmp_path / "crashed"))
    finally:
        fault.undo()
    freed()
    (run,) = (tmp_path / "crashed" / "runs").iterdir()
    ckpt = load_checkpoint(run)
    assert ckpt["global_step"] == (64 if moment == "before checkpoint.pt" else 128)
    assert (run / ckpt_mod.ENV_STATE_NEXT).exists()
    capsys.readouterr()
    done = load_checkpoint(resume("ppo", run))
    assert "not loaded" not in capsys.readouterr().err  # the envs came back: not taken for tampering
    for key in whole["networks"]:
        assert_same_state(done["networks"][key], whole["networks"][key])


# --- 4: carry never writes through a symlink, never follows one, and one bad run skips alone ---------


def test_carry_save_never_writes_through_a_partial_symlink(finished, tmp_path):
    runs, carry_dir, out = tmp_path / "runs", tmp_path / "carry", tmp_path / "out"
    shutil.copytree(finished, runs / finished.name)
    carry_dir.mkdir()
    out.mkdir()
    (out / "keep").write_text("kept")
    (carry_dir / (finished.name + ".partial")).symlink_to(out)
    assert carry.save(runs, carry_dir, say=lambda _: None) == 0
    assert sorted(p.name for p in out.iterdir()) == ["keep"] and (out / "keep").read_text() == "kept"
    assert load_checkpoint(carry_dir / finished.name)["finished"]
    assert not (carry_dir / finished.name).is_symlink()


def test_carry_restore_skips_a_symlinked_run_and_one_bad_run_leaves_the_others(finished, tmp_path):
    carry_dir, runs, lines = tmp_path / "carry", tmp_path / "runs", []
    for name in ("a_run", "b_run"):
        shutil.copytree(finished, carry_dir / name)
    with open(carry_dir / "a_run" / "huge.bin", "wb") as f:
        f.truncate((carry.MAX_FILE_MB + 1) * files.MiB)
    elsewhere = tmp_path / "elsewhere_run"
    shutil.copytree(finished, elsewhere)
    (carry_dir / "c_run").symlink_to(elsewhere)
    assert carry.restore(runs, carry_dir, say=lines.append) == 1
    assert sorted(p.name for p in runs.iterdir()) == ["b_run"]
    assert any(line.startswith("[skip] a_run:") and "over 95 MB" in line for line in lines)
    assert any(line.startswith("[skip] c_run: a symlink") for line in lines)


# --- 7: an unreachable W&B server never blocks past the deadline ------------------------------------


def test_a_wandb_server_that_never_answers_costs_at_most_the_probe_deadline(tmp_path, monkeypatch, capsys):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # connections are accepted by the kernel and never answered
    try:
        monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{listener.getsockname()[1]}")
        monkeypatch.setenv("WANDB_API_KEY", "a" * 40)
        monkeypatch.setattr(tracker, "PROBE_TIMEOUT_S", 1.0)
        monkeypatch.setattr(tracker, "_probed", {})
        start = time.time()
        assert tracker.reachable_mode(explicit=False) == "offline"
        assert time.time() - start < 2.0 and "W&B unreachable" in capsys.readouterr().err
        monkeypatch.setattr(tracker, "_probed", {})
        start = time.time()
        with pytest.raises(UsageError, match="--wandb-mode online: the W&B server .* did not answer"):
            ppo_l0.train(checkpointed_ppo(tmp_path, wandb_mode="online"))
        assert time.time() - start < 2.0 and not (tmp_path / "runs").exists()
    finally:
        listener.close()


# --- 9: every bad value and crafted field gets one line ------------------------------------------------


@pytest.mark.parametrize(
    "option, message",
    [
        ({"seed": -1}, "--seed must be in"),
        ({"seed": 2**40}, "--seed must be in"),
        ({"l0_lambda_actor": float("nan")}, "--l0-lambda-actor must be a finite number"),
        ({"ent_coef": float("nan")}, "--ent-coef must be a finite number"),
        ({"learning_rate": float("inf")}, "--learning-rate must be a finite number"),
        ({"clip_coef": 1e300}, "--clip-coef must be a finite number of magnitude at most 3.4e"),
        ({"exp_name": "x" * 300}, "--exp-name 'xxx"),
    ],
)
def test_a_bad_number_is_refused_before_a_run_exists(tmp_path, option, message):
    with pytest.raises(UsageError, match=message):
        ppo_l0.train(checkpointed_ppo(tmp_path, **option))
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "name, option",
    [("ppo", "learning_rate"), ("a2c", "learning_rate"), ("dqn", "learning_rate"), ("sac", "q_lr")],
)
def test_a_learning_rate_that_overflows_the_optimizer_is_divergence(tmp_path, name, option):
    """Adam's step overflows (PPO, DQN, SAC) or the logits turn NaN (A2C): exit 3, not a traceback."""
    with pytest.raises(NonFiniteError, match="training diverged"):
        algo(name).train(tiny_args(name, tmp_path, eval_episodes=0, **{option: 1e38}))
    freed()


def test_crafted_plain_data_fields_in_a_checkpoint_are_one_line(tmp_path):
    run = halted(tmp_path)
    good = torch.load(run / "checkpoint.pt", weights_only=True)
    crafted = [
        (lambda c: c["args"].update(total_timesteps="512"), "saved --total-timesteps is '512'"),
        (lambda c: c["args"].update(no_such_option=1), "--no-such-option, which this l0rl does not know"),
        (lambda c: c.update(env_state_mac="é" * 64), "env_state_mac"),
        (lambda c: c["rng"].update(python=(1, 2)), "RNG state is not one l0rl writes"),
        (lambda c: c.update(loop={}), "loop state lacks"),
    ]
    for craft, message in crafted:
        ckpt = copy.deepcopy(good)
        craft(ckpt)
        refused_at_resume(run, ckpt, message)
    torch.save(good, run / "checkpoint.pt")
    assert load_checkpoint(resume("ppo", run))["finished"]


@pytest.mark.parametrize(
    "field, value",
    [
        ("total_steps", "512"),
        ("total_steps", 0),
        ("lam_peak", float("nan")),
        ("mode", "bogus"),
        ("lam", None),
    ],
)
def test_a_crafted_sparsity_schedule_is_one_line_at_resume(tmp_path, field, value):
    run = halted(tmp_path)
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    ckpt["schedulers"]["actor"][field] = value
    refused_at_resume(run, ckpt, "sparsity schedule does not fit this run.s: (scheduler state|total_steps)")


def test_a_crafted_gmp_state_is_one_line_at_resume(tmp_path):
    run = halted(tmp_path, sparsity="gmp")
    good = torch.load(run / "checkpoint.pt", weights_only=True)
    for value in ({"updates": float("inf"), "sparsity": 0.0}, {"updates": 1, "sparsity": float("nan")}):
        ckpt = {**good, "schedulers": {"gmp": value}}
        refused_at_resume(run, ckpt, "sparsity schedule does not fit this run's: GMP state has")
    torch.save(good, run / "checkpoint.pt")
    assert load_checkpoint(resume("ppo", run))["finished"]


@pytest.mark.parametrize(
    "key, value",
    [
        ("next_obs", 1.5),
        ("next_done", 0),
        ("next_obs", torch.full((2, 4), float("inf"))),
        ("next_obs", torch.zeros((2, 4), dtype=torch.int64)),
        ("updates", float("nan")),
        ("updates", torch.zeros(3)),
        ("updates", -1),
    ],
)
def test_a_crafted_loop_state_is_one_line_at_resume(tmp_path, key, value):
    """Each was a traceback mid-training (AttributeError, a NaN Categorical, a Long x Float matmul)."""
    run = halted(tmp_path)
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    ckpt["loop"][key] = value
    refused_at_resume(run, ckpt, f"loop state '{key}' .* does not fit this run")


@pytest.mark.parametrize(
    "craft, message",
    [
        (
            lambda c: c["optimizers"]["agent"]["param_groups"][0].update(capturable=True),
            "has capturable True",
        ),
        (
            lambda c: c["networks"]["agent"].update(
                {k: torch.full_like(v, float("nan")) for k, v in list(c["networks"]["agent"].items())[:1]}
            ),
            "holds NaN/inf; the checkpoint is damaged",
        ),
        (lambda c: c.update(global_step=10**9), "is at step 1,000,000,000, past its --total-timesteps 512"),
    ],
)
def test_a_crafted_optimizer_switch_network_or_step_is_one_line_at_resume(tmp_path, craft, message):
    """An optimizer switch of another run (capturable asserts on a CPU), NaN weights (a NaN Categorical)
    and a step past the budget (the loop never runs): each was a traceback."""
    run = halted(tmp_path)
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    craft(ckpt)
    refused_at_resume(run, ckpt, message)
