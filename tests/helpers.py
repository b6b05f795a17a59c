"""What many test files need: running an algorithm as a user does, checking one-line errors, and
reading a run back the way compress and l0rl.load_policy do."""

import json
import subprocess
import sys
from pathlib import Path

import torch

from l0rl import gmp, l0
from l0rl.policy import build_policy
from l0rl.runkit import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def run_script(algo: str, *argv: str, cwd: Path, timeout: int = 180, env: dict | None = None):
    """`python algos/<algo>_l0.py --wandb-mode disabled ARGV` in `cwd`, output captured."""
    return subprocess.run(
        [sys.executable, str(ROOT / "algos" / f"{algo}_l0.py"), "--wandb-mode", "disabled", *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, code: int, hint: str) -> None:
    """The process failed with `code` and exactly one stderr line containing `hint`."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == code, proc.stderr
    assert len(lines) == 1 and hint in lines[0], proc.stderr


def run_dirs(root: Path) -> list[Path]:
    """Run directories under `root/runs` (none when a command was refused)."""
    runs = root / "runs"
    return sorted(p for p in runs.iterdir() if p.is_dir()) if runs.exists() else []


def trained_policy(run_dir: str | Path) -> torch.nn.Module:
    """The policy as stored in the checkpoint (gated or masked), rebuilt as compress rebuilds it."""
    return build_policy(load_checkpoint(run_dir)["policy"])


def closed_share(policy: torch.nn.Module) -> float:
    """Share of the policy's gated (or masked) weights that are exactly zero, counted directly."""
    hard = l0.harden(policy)
    names = {n for n, _, _ in l0.gated_layers(policy)} | {n for n, _, _ in gmp.masked_layers(policy)}
    weights = [hard.get_submodule(n).weight for n in names]
    return sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)


def summary(run_dir: str | Path) -> dict:
    return json.loads((Path(run_dir) / "summary.json").read_text())


def assert_same_state(a: dict, b: dict) -> None:
    """Two state_dicts hold bit-identical tensors."""
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"{len(differ)} of {len(a)} tensors differ, e.g. {differ[:3]}"
