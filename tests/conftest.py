"""Test-wide settings: one torch thread per test worker (with pytest -n 2 on a 2-core machine, torch's
default of one thread per core oversubscribes the CPU and small-MLP training slows down many times
over), no W&B network traffic, and a resume key of the test's own for the tests that sign run
directories (`own_key`). Shared helpers live in tests/helpers.py."""

import os
from pathlib import Path

import pytest
import torch
from helpers import make_key

from l0rl.runkit.checkpoint import KEY_FILE_ENV

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the CLI subprocesses the tests start
torch.set_num_threads(1)


@pytest.fixture
def own_key(tmp_path, monkeypatch) -> Path:
    """Each test signs with its own key, never the developer's (`pytest.mark.usefixtures("own_key")`)."""
    key = make_key(tmp_path / "resume.key")
    monkeypatch.setenv(KEY_FILE_ENV, str(key))
    return key
