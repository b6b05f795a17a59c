"""The run directory contract: naming, atomic writes, checkpoint format and validation, RNG state.

A run directory `runs/<env_id>__<exp_name>__<seed>__<timestamp>/` holds `checkpoint.pt` (enough to
rebuild the networks and env and to resume training exactly), `metrics.jsonl` and `summary.json`
(the local record), W&B's own files under `wandb/`, and whatever compress adds next to them.
"""

import io
import json
import os
import pickle
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium.utils import EzPickle

FORMAT_VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"
REQUIRED_KEYS = ("format_version", "algo", "env_id", "env_options", "args", "global_step", "networks")


class RunError(ValueError):
    """A user-caused problem with a run directory or checkpoint; the message is one actionable line."""


def run_name(env_id: str, exp_name: str, seed: int) -> str:
    return f"{env_id}__{exp_name}__{seed}__{int(time.time())}"


def create_run_dir(root: str | Path, name: str) -> Path:
    """Make `root/name`, refusing to reuse an existing directory (results are never overwritten)."""
    path = Path(root) / name
    if path.exists():
        raise RunError(f"run directory {path} already exists; pick another --exp-name or use --resume {path}")
    path.mkdir(parents=True)
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write via a temp file in the same directory and rename, so a crash never leaves half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=_json_default) + "\n").encode())


def atomic_torch_save(path: str | Path, obj: Any) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def _json_default(x: Any) -> Any:
    if isinstance(x, np.generic | torch.Tensor):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    return str(x)


def save_checkpoint(run_dir: str | Path, payload: dict) -> Path:
    """Write `checkpoint.pt` atomically; the payload must hold the contract's required keys."""
    missing = [k for k in REQUIRED_KEYS if k not in payload]
    if missing:
        raise ValueError(f"checkpoint payload misses {missing}")
    path = Path(run_dir) / CHECKPOINT_NAME
    atomic_torch_save(path, payload)
    return path


def resolve_checkpoint(path: str | Path) -> Path:
    """Accept a run directory or a checkpoint file; raise RunError when neither is usable."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
        if not path.exists():
            raise RunError(
                f"{path.parent} has no {CHECKPOINT_NAME}; is it a run directory written by algos/*.py?"
            )
    elif not path.exists():
        raise RunError(f"{path} does not exist; pass a run directory such as runs/<run_name>")
    return path


def load_checkpoint(path: str | Path) -> dict:
    """Load and validate a checkpoint (run directory or file) on the CPU."""
    path = resolve_checkpoint(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises several types for truncated / foreign files
        raise RunError(
            f"{path} is not a readable checkpoint ({type(e).__name__}); it may be truncated or corrupt"
        ) from e
    if not isinstance(ckpt, dict) or "format_version" not in ckpt:
        raise RunError(f"{path} is not an l0rl checkpoint (no format_version); was it written by algos/*.py?")
    if ckpt["format_version"] != FORMAT_VERSION:
        raise RunError(
            f"{path} has checkpoint format {ckpt['format_version']}, this l0rl reads {FORMAT_VERSION}; "
            "use the l0rl version that wrote it"
        )
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise RunError(f"{path} misses {missing}; the checkpoint is incomplete")
    return ckpt


def rng_state() -> dict:
    """Every RNG a training loop draws from, for exact resume."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int, torch_deterministic: bool = True) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = torch_deterministic


def restorable_envs(envs: Any) -> Any:
    """The vector env itself when pickling keeps its state (exact resume), else None (the algorithm
    then restarts the episodes in flight). Envs built on EzPickle (Box2D) pickle only their
    constructor arguments and would come back never reset; an emulator or a subprocess does not
    pickle at all."""
    if any(isinstance(env.unwrapped, EzPickle) for env in getattr(envs.unwrapped, "envs", [])):
        return None
    try:
        pickle.dumps(envs)
    except Exception:
        return None
    return envs
