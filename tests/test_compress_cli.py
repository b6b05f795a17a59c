"""End to end: compress a tiny trained CartPole PPO-L0 run in-process and as `python -m l0rl.compress`,
the baselines, and every kind of bad input (one-line error, exit code 2, run directory untouched)."""

import hashlib
import json
import math
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from helpers import one_line

from l0rl.compress import compress_run, load_compressed
from l0rl.compress.__main__ import main
from l0rl.runkit import evaluate

REPO = Path(__file__).resolve().parents[1]
STAGES = ["original", "hardened", "shrunk", "low-rank"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    from l0rl.algos.ppo_l0 import Args, train

    root = tmp_path_factory.mktemp("runs")
    return Path(
        train(
            Args(
                total_timesteps=2048,
                num_envs=2,
                num_steps=64,
                wandb_mode="disabled",
                runs_dir=str(root),
                progress=False,
                eval_episodes=2,
            )
        )
    )


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(directory: Path) -> dict[str, str]:
    """Every file under the directory with its content hash."""
    return {str(p.relative_to(directory)): sha(p) for p in sorted(directory.rglob("*")) if p.is_file()}


def check_table(report: dict, stages: list[str]) -> None:
    """Every stage's figures follow their definitions relative to the dense reference."""
    assert [s["stage"] for s in report["stages"]] == stages
    dense = report["dense"]
    for s in report["stages"]:
        assert s["compression_params"] == pytest.approx(1.0 - s["params"] / dense["params"])
        assert s["compression_bytes"] == pytest.approx(1.0 - s["bytes"] / dense["bytes"])
        assert s["nonzeros"] <= s["params"] and s["latency_us"] > 0
        assert math.isfinite(s["return_mean"]) and math.isfinite(s["return_std"])
    for s in report["stages"][1:]:  # gate-free stages: the file stores at least every non-zero
        assert s["nonzeros"] <= s["stored_values"] <= s["params"]
    hardened = report["stages"][1]
    assert hardened["compression_params"] == 0.0 and hardened["params"] == report["dense"]["params"]
    assert report["stages"][0]["return_mean"] == hardened["return_mean"]  # same outputs, same seeds
    assert hardened["latency_ratio"] == 1.0  # every ratio is to the hardened (dense-architecture) policy
    for s in report["stages"]:
        assert s["latency_ratio_q25"] <= s["latency_ratio"] <= s["latency_ratio_q75"]


def test_compress_run_in_process(run_dir):
    before = sha(run_dir / "checkpoint.pt")
    report = compress_run(run_dir, episodes=2, wandb_mode="disabled", onnx=True)
    assert sha(run_dir / "checkpoint.pt") == before
    check_table(report, STAGES)
    assert report["stages"][2]["return_mean"] == report["stages"][1]["return_mean"]  # shrink is exact
    assert json.loads((run_dir / "compress.json").read_text()) == json.loads(json.dumps(report))
    summary = json.loads((run_dir / "compress_l0" / "summary.json").read_text())
    assert summary["compress/low-rank/params"] == report["stages"][-1]["params"]
    assert not (run_dir / "compress_l0" / "checkpoint.pt").exists()

    policy, meta = load_compressed(run_dir / "compressed.pt", with_meta=True)
    assert meta["algo"] == "ppo_l0" and meta["env_id"] == "CartPole-v1" and meta["method"] == "l0"
    assert meta["stages"][-1]["params"] == sum(p.numel() for p in policy.parameters())
    result = evaluate(policy, "CartPole-v1", {}, episodes=2, seed=report["seed"])
    assert float(np.mean(result["returns"])) == report["stages"][-1]["return_mean"]

    import onnxruntime as ort

    assert report["onnx"]["max_abs_diff"] < 1e-4 and report["onnx"]["latency_us"] > 0
    session = ort.InferenceSession(str(run_dir / "compressed.onnx"), providers=["CPUExecutionProvider"])
    obs = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(
            session.run(None, {"obs": obs})[0], policy(torch.from_numpy(obs)).numpy(), rtol=1e-4, atol=1e-5
        )


def test_cli_subprocess(run_dir):
    before = sha(run_dir / "checkpoint.pt")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "l0rl.compress",
            str(run_dir),
            "--episodes",
            "2",
            "--wandb-mode",
            "disabled",
            "--onnx",
        ],
        cwd=REPO,
        env={**os.environ, "WANDB_MODE": "disabled"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("stage"))
    assert [line.split()[0] for line in lines[header + 2 : header + 6]] == STAGES
    assert "onnx:" in proc.stdout
    for name in ("compressed.pt", "compress.json", "compressed.onnx"):
        assert (run_dir / name).is_file()
    assert sha(run_dir / "checkpoint.pt") == before


def test_baselines_write_their_own_files(run_dir):
    main_report = run_dir / "compress.json"
    before = sha(main_report) if main_report.exists() else None
    mag = compress_run(run_dir, method="magnitude", sparsity=0.5, episodes=1, wandb_mode="disabled")
    check_table(mag, ["original", "hardened", "pruned", "shrunk", "low-rank"])
    assert mag["stages"][2]["sparsity"] >= 0.5 - 1e-3
    svd = compress_run(
        run_dir, method="svd", rank_search=True, tolerance=0.1, episodes=1, wandb_mode="disabled"
    )
    check_table(svd, ["original", "hardened", "low-rank"])
    assert svd["low_rank"]["rule"].startswith("rank search")
    for method in ("magnitude", "svd"):
        assert (run_dir / f"compressed_{method}.pt").is_file()
        assert (run_dir / f"compress_{method}.json").is_file()
        assert (run_dir / f"compress_{method}" / "summary.json").is_file()
    assert (sha(main_report) if main_report.exists() else None) == before


class Exploit:
    """Unpickling this would create a file: the attack a downloaded checkpoint can carry."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def corrupt(run_dir: Path, tmp_path: Path, how: str) -> Path:
    """A copy of the run whose checkpoint is damaged in one way."""
    bad = tmp_path / "bad_run"
    shutil.copytree(run_dir, bad)
    ckpt_path = bad / "checkpoint.pt"
    if how == "truncated":
        data = ckpt_path.read_bytes()
        ckpt_path.write_bytes(data[: len(data) // 2])
        return bad
    if how == "malicious":
        ckpt_path.write_bytes(pickle.dumps(Exploit(str(tmp_path / "pwned"))))
        return bad
    ckpt = torch.load(ckpt_path, weights_only=True)
    if how == "format":
        ckpt["format_version"] = 99
    elif how == "old_format":  # format 1 pickled gym spaces: not plain data
        ckpt["format_version"] = 1
        ckpt["spaces"] = (gym.spaces.Discrete(2),)
    elif how == "arch":
        ckpt["policy"]["arch"][0]["type"] = "Conv3d"
    elif how == "env":
        ckpt["env_id"] = "SurRoL/NeedleReach-v0"  # needs SurRoL, which is not installed
    torch.save(ckpt, ckpt_path)
    return bad


BAD_RUNS = {
    "empty_dir": (None, "no checkpoint.pt"),
    "missing": (None, "does not exist"),
    "truncated": ("truncated", "truncated or corrupt"),
    "format": ("format", "format 99"),
    "arch": ("arch", "cannot rebuild the policy"),
    "malicious": ("malicious", "not plain data"),
    "old_format": ("old_format", "retrain"),
    "env": ("env", "SurRoL"),
}


@pytest.mark.parametrize("case", list(BAD_RUNS))
def test_bad_run_directories(case, run_dir, tmp_path, capsys):
    how, hint = BAD_RUNS[case]
    if case == "empty_dir":
        target = tmp_path / "empty"
        target.mkdir()
    elif case == "missing":
        target = tmp_path / "nowhere"
    else:
        target = corrupt(run_dir, tmp_path, how)
    before = snapshot(target) if target.exists() else None
    with pytest.raises(SystemExit) as exc:
        main([str(target), "--episodes", "1", "--wandb-mode", "disabled"])
    assert exc.value.code == 2
    err = one_line(capsys.readouterr().err)
    assert err.startswith("python -m l0rl.compress: error:") and hint in err
    assert (snapshot(target) if target.exists() else None) == before
    assert not (tmp_path / "pwned").exists()  # nothing in the file was executed


BAD_OPTIONS = {
    "tolerance": (["--rank-search", "--tolerance", "1.5"], "--tolerance must be in [0, 1]"),
    "energy_zero": (["--energy", "0"], "--energy must be in (0, 1]"),
    "energy_big": (["--energy", "1.01"], "--energy must be in (0, 1]"),
    "sparsity_one": (["--method", "magnitude", "--sparsity", "1"], "--sparsity must be in (0, 1)"),
    "sparsity_zero": (["--method", "magnitude", "--sparsity", "0"], "--sparsity must be in (0, 1)"),
    "sparsity_l0": (["--sparsity", "0.5"], "--method magnitude / magnitude-layer only"),
    "energy_and_search": (["--energy", "0.9", "--rank-search"], "pass one of them"),
    "no_onnx": (["--onnx"], 'pip install -e ".[onnx]"'),
    "channel_block_one": (["--channel-block", "1"], "--channel-block must be >= 2"),
    "channel_block_svd": (["--method", "svd", "--channel-block", "16"], "which --method svd does not run"),
}


@pytest.mark.parametrize("case", list(BAD_OPTIONS))
def test_bad_options(case, run_dir, capsys, monkeypatch):
    argv, hint = BAD_OPTIONS[case]
    if case == "no_onnx":
        monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now fails
    before = snapshot(run_dir)
    with pytest.raises(SystemExit) as exc:
        main([str(run_dir), "--episodes", "1", "--wandb-mode", "disabled", *argv])
    assert exc.value.code == 2
    err = one_line(capsys.readouterr().err)
    assert err.startswith("python -m l0rl.compress: error:") and hint in err
    assert snapshot(run_dir) == before


def test_bad_input_subprocess_exit_code(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "l0rl.compress", str(tmp_path), "--wandb-mode", "disabled"],
        cwd=REPO,
        env={**os.environ, "WANDB_MODE": "disabled"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "is it a run directory" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_benchmark_evaluate_replays_compress_episodes(run_dir, tmp_path):
    """python -m benchmark.evaluate plays a saved policy as compress evaluated it (same settings and
    episode seeds), so with compress's episode count it gives compress's returns; its JSON is never
    overwritten, and a file that is not a policy is refused in one line."""
    from benchmark.evaluate import main as evaluate_main
    from l0rl.errors import UsageError

    run = tmp_path / run_dir.name
    shutil.copytree(run_dir, run)
    report = compress_run(run, method="magnitude", sparsity=0.9, episodes=5, wandb_mode="disabled")
    out = tmp_path / "eval.json"
    rows = evaluate_main(
        [str(run / "compressed_magnitude.pt"), str(run), "--episodes", "5", "--json", str(out)]
    )
    assert rows[0]["return_mean"] == report["stages"][-1]["return_mean"]
    assert rows[1]["return_mean"] == report["stages"][1]["return_mean"]  # the run: its hardened policy
    assert rows[0]["first_seed"] == report["seed"] and len(rows[0]["returns"]) == 5
    assert json.loads(out.read_text()) == json.loads(json.dumps(rows))
    before = out.read_bytes()
    with pytest.raises(UsageError, match="exists"):
        evaluate_main([str(run), "--episodes", "1", "--json", str(out)])
    assert out.read_bytes() == before
    with pytest.raises(UsageError, match="not a policy file"):
        evaluate_main([str(run / "metrics.jsonl")])
    with pytest.raises(UsageError, match="does not exist"):
        evaluate_main([str(run / "nothing.pt")])


def test_channel_block_adds_a_blocked_stage(run_dir, tmp_path):
    """--channel-block evaluates and records a 'blocked' stage after shrink; an MLP has no conv
    channels to round, so it is the shrunk policy again (round_channels' own test covers a CNN)."""
    run = tmp_path / run_dir.name
    shutil.copytree(run_dir, run)
    report = compress_run(run, channel_block=16, episodes=1, wandb_mode="disabled")
    check_table(report, ["original", "hardened", "shrunk", "blocked", "low-rank"])
    shrunk, blocked = report["stages"][2], report["stages"][3]
    assert blocked["layers"] == shrunk["layers"] and blocked["return_mean"] == shrunk["return_mean"]
    assert report["options"]["channel_block"] == 16
