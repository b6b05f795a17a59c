"""The run directory on disk: naming, atomic writes, the checkpoint format, RNG state, the lock.

A run directory `runs/<env_id>__<exp_name>__<seed>__<timestamp>/` holds `checkpoint.pt` (plain data:
it loads with `torch.load(weights_only=True)`, so reading it never runs code), `env_state.pkl` (the
exact vector env for --resume, a pickle: only --resume reads it, and only when the checkpoint holds
its HMAC under this user's own key, i.e. this user wrote it; a run directory from anyone else resumes
with its episodes restarted), `metrics.jsonl` and `summary.json` (the local record), W&B's files
under `wandb/`, and whatever compress adds next to them.
"""

import errno
import fcntl
import hashlib
import hmac
import io
import json
import math
import os
import pickle
import random
import re
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium.utils import EzPickle

from l0rl.errors import NonFiniteError, UsageError

FORMAT_VERSION = 2
CHECKPOINT_NAME = "checkpoint.pt"
ENV_STATE_NAME = "env_state.pkl"
LOCK_NAME = ".lock"
KEY_FILE_ENV = "L0RL_KEY_FILE"
"""Environment variable naming the file of this user's resume key (default ~/.config/l0rl/resume.key)."""
REQUIRED_KEYS = (
    "format_version",
    "algo",
    "env_id",
    "env_options",
    "args",
    "global_step",
    "finished",
    "policy",
    "networks",
)


class RunError(UsageError):
    """A user-caused problem with a run directory or checkpoint; the message is one actionable line."""


def run_name(env_id: str, exp_name: str, seed: int) -> str:
    return f"{env_id}__{exp_name}__{seed}__{int(time.time())}"


def check_exp_name(exp_name: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", exp_name) or ".." in exp_name:
        raise UsageError(
            f"--exp-name {exp_name!r} must be letters, digits and . _ + - (no path separator), e.g. ppo_wide"
        )


def _file_mode() -> int:
    """0666 less the process umask: what open() would give a new file."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_writable(directory: str | Path) -> None:
    """Raise RunError unless a file can be created in `directory` (checked before training starts)."""
    directory = Path(directory)
    try:
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".write-test.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise RunError(
            f"cannot write in {directory}: {e.strerror}; fix its permissions or free space"
        ) from None


def create_run_dir(root: str | Path, name: str) -> Path:
    """Make `root/name`, refusing to reuse an existing directory (results are never overwritten)."""
    root = Path(root)
    path = root / name
    if root.exists() and not root.is_dir():
        raise RunError(f"--runs-dir {root} is a file, not a directory; pass a directory")
    if path.exists():
        raise RunError(f"run directory {path} already exists; pick another --exp-name or use --resume {path}")
    try:
        path.mkdir(parents=True)
    except OSError as e:
        raise RunError(f"cannot create run directory {path}: {e.strerror}; check --runs-dir") from None
    check_writable(path)
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write via a temp file in the same directory, fsync, rename, fsync the directory: a crash leaves
    either the old file or the new one. The file gets the mode open() would give it (umask)."""
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as e:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        raise OSError(e.errno, e.strerror, str(path)) from None
    except BaseException:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        raise


def remove_stale_temps(run_dir: str | Path) -> list[Path]:
    """Delete temp files a killed writer left behind (call only while holding the run's lock)."""
    stale = list(Path(run_dir).glob(".*.tmp"))
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def _json_default(x: Any) -> Any:
    if isinstance(x, np.generic | torch.Tensor):
        return x.item()
    return str(x)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=_json_default) + "\n").encode())


def to_bytes(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def atomic_torch_save(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, to_bytes(obj))


def _non_finite(state: dict, prefix: str = "") -> list[str]:
    bad = []
    for key, value in state.items():
        if isinstance(value, dict):
            bad += _non_finite(value, f"{prefix}{key}.")
        elif (
            isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value).all()
        ):
            bad.append(f"{prefix}{key}")
    return bad


def check_finite(networks: dict[str, dict], global_step: int) -> None:
    """Raise NonFiniteError when any network tensor is NaN/inf (before it can be written)."""
    bad = _non_finite(networks)
    if bad:
        raise NonFiniteError.at(global_step, f"{len(bad)} network tensors hold NaN/inf (first: {bad[0]})")


def save_checkpoint(run_dir: str | Path, payload: dict, envs: Any = None) -> Path:
    """Write `checkpoint.pt` atomically (and, for exact resume, `env_state.pkl` first, tagged with the
    step so a resume never pairs it with another checkpoint). Refuses non-finite networks."""
    missing = [k for k in REQUIRED_KEYS if k not in payload]
    if missing:
        raise ValueError(f"checkpoint payload misses {missing}")
    check_finite(payload["networks"], payload["global_step"])
    run_dir = Path(run_dir)
    key = resume_key() if envs is not None else None
    mac = None
    if key is not None:
        blob = pickle.dumps({"global_step": payload["global_step"], "envs": envs})
        atomic_write_bytes(run_dir / ENV_STATE_NAME, blob)
        mac = _mac(key, blob)
    # the MAC travels in the plain-data checkpoint: only a holder of the key can make a pickle resume reads
    payload = {**payload, "env_state_step": payload["global_step"] if mac else None, "env_state_mac": mac}
    path = run_dir / CHECKPOINT_NAME
    atomic_torch_save(path, payload)
    return path


def resolve_checkpoint(path: str | Path) -> Path:
    """Accept a run directory or a checkpoint file; raise RunError when neither is usable."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
        if not path.exists():
            raise RunError(
                f"{path.parent} has no {CHECKPOINT_NAME}; is it a run directory written by l0rl's algos?"
            )
    elif not path.exists():
        raise RunError(f"{path} does not exist; pass a run directory such as runs/<run_name>")
    return path


def load_checkpoint(path: str | Path) -> dict:
    """Load and validate a checkpoint (run directory or file) on the CPU. weights_only=True: a file
    that would run code when unpickled is refused, never executed."""
    path = resolve_checkpoint(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise RunError(
            f"{path} is not plain data (format 1 of l0rl < 0.2, or a file that would run code when "
            "loaded); it was not loaded: retrain the run with this l0rl"
        ) from e
    except Exception as e:  # torch raises several types for truncated / foreign files
        raise RunError(
            f"{path} is not a readable checkpoint ({type(e).__name__}); it may be truncated or corrupt"
        ) from e
    if not isinstance(ckpt, dict) or "format_version" not in ckpt:
        raise RunError(
            f"{path} is not an l0rl checkpoint (no format_version); was it written by l0rl's algos?"
        )
    if ckpt["format_version"] != FORMAT_VERSION:
        raise RunError(
            f"{path} has checkpoint format {ckpt['format_version']}, this l0rl reads {FORMAT_VERSION}; "
            "retrain the run, or use the l0rl version that wrote it"
        )
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise RunError(f"{path} misses {missing}; the checkpoint is incomplete")
    return ckpt


def resume_key() -> bytes | None:
    """This user's secret for signing `env_state.pkl` (32 random bytes, created on first use with mode
    0600), or None where it can be neither read nor created (the envs are then not saved)."""
    try:
        config = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    except (RuntimeError, KeyError):  # no home directory to keep a key in
        config = None
    path = os.environ.get(KEY_FILE_ENV) or (config and Path(config) / "l0rl" / "resume.key")
    if not path:
        return None
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
    except FileExistsError:
        pass
    except OSError:
        return None
    try:
        key = path.read_bytes()
    except OSError:
        return None
    return key if len(key) >= 16 else None


def _mac(key: bytes, blob: bytes) -> str:
    return hmac.new(key, blob, hashlib.sha256).hexdigest()


def load_env_state(run_dir: str | Path, ckpt: dict) -> Any:
    """The pickled vector env saved with this checkpoint, or None. Only --resume calls this. A pickle
    runs code when loaded, so it is unpickled only when its HMAC under this user's key matches the one
    the checkpoint holds: a run directory written by anyone else (or changed since) is not trusted,
    and the algorithm restarts the episodes in flight instead."""
    path = Path(run_dir) / ENV_STATE_NAME
    if ckpt.get("env_state_step") is None or not path.exists():
        return None
    blob = path.read_bytes()
    key, mac = resume_key(), ckpt.get("env_state_mac")
    if key is None or not isinstance(mac, str) or not hmac.compare_digest(_mac(key, blob), mac):
        print(
            f"{path} was not written under this user's resume key (another machine or user, or changed "
            "since): not loaded, as a pickle can run code; the episodes in flight restart",
            file=sys.stderr,
        )
        return None
    state = pickle.loads(blob)
    return state["envs"] if state.get("global_step") == ckpt["env_state_step"] else None


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


def rng_state() -> dict:
    """Every RNG a training loop draws from, as plain data, for exact resume."""
    np_state = np.random.get_state(legacy=False)
    return {
        "python": random.getstate(),
        "numpy": {
            "state": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["state"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int, torch_deterministic: bool = True) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = torch_deterministic


class RunLock:
    """An exclusive lock on a run directory for as long as one process trains or resumes it."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK_NAME
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise RunError(f"cannot write in {run_dir}: {e.strerror}; fix its permissions") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.pread(self._fd, 32, 0).decode(errors="ignore").strip() or "?"
            os.close(self._fd)
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise RunError(
                    f"{run_dir} is in use by another l0rl process (pid {holder}); wait for it to end or stop it"
                ) from None
            raise
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, str(os.getpid()).encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def finite_or_none(v: Any) -> Any:
    # JSON has no NaN/inf; keep the record loadable by any JSON reader.
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v
