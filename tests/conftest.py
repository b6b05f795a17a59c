"""Test-wide settings: one torch thread per test worker (with pytest -n 2 on a 2-core machine, torch's
default of one thread per core oversubscribes the CPU and small-MLP training slows down many times
over), and no W&B network traffic. Shared helpers live in tests/helpers.py."""

import os

import torch

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the CLI subprocesses the tests start
torch.set_num_threads(1)
