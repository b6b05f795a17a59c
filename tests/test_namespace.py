"""l0rl installs one import name, and an algorithm file travels: copied into a project that has its
own `envs/` package, or modified there (wider layers), it trains, compresses and loads back."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT

NAMES = ("l0", "gmp", "envs", "runkit", "compress", "algos", "report", "sparsity", "benchmark")


def python(*argv: str, cwd: Path, timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_outside_the_repository_only_l0rl_is_importable(tmp_path):
    code = f"import importlib.util as u; print([n for n in {NAMES!r} if u.find_spec(n)]); import l0rl.envs, l0rl.compress, l0rl.report.cli"
    proc = python("-c", code, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.mark.parametrize("name", ["l0", "envs", "runkit", "compress", "gmp", "report", "sparsity"])
def test_a_folder_refuses_a_second_import_name(name):
    proc = python("-c", f"import {name}", cwd=ROOT)
    assert proc.returncode == 1 and f"import this package as l0rl.{name}" in proc.stderr


WIDER = {
    "nn.Linear(n_in, 64)": "nn.Linear(n_in, 128)",
    "nn.Linear(64, 64)": "nn.Linear(128, 128)",
    "nn.Linear(64, n_out)": "nn.Linear(128, n_out)",
}


@pytest.mark.parametrize("wider", [False, True], ids=["copy", "modified-copy"])
def test_a_copied_algorithm_trains_and_compresses_in_a_project_with_its_own_envs(tmp_path, wider):
    project = tmp_path / "myproject"
    (project / "envs").mkdir(parents=True)
    (project / "envs" / "__init__.py").write_text("MY_ENVS = True  # the project's own envs package\n")
    source = (ROOT / "algos" / "ppo_l0.py").read_text()
    if wider:
        for old, new in WIDER.items():
            assert old in source
            source = source.replace(old, new)
    (project / "my_ppo.py").write_text(source)
    argv = ["--total-timesteps", "1024", "--num-envs", "2", "--num-steps", "64", "--eval-episodes", "2"]
    trained = python("my_ppo.py", "--wandb-mode", "disabled", "--no-progress", *argv, cwd=project)
    assert trained.returncode == 0, trained.stderr
    (run,) = (project / "runs").iterdir()
    assert f"next: python -m l0rl.compress runs/{run.name}" in trained.stdout

    compressed = python(
        "-m", "l0rl.compress", f"runs/{run.name}", "--episodes", "2", "--wandb-mode", "disabled", cwd=project
    )
    assert compressed.returncode == 0, compressed.stderr
    report = json.loads((run / "compress.json").read_text())
    width = 128 if wider else 64
    assert report["stages"][1]["layers"][0] == f"Linear(4, {width})"

    check = "import l0rl, torch; p = l0rl.load_policy('runs/%s'); print(p[0].out_features, tuple(p(torch.zeros(1, 4)).shape))"
    loaded = python("-c", check % run.name, cwd=project)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.split() == [str(width), "(1,", "2)"]
