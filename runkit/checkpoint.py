"""The run directory on disk: naming, the checkpoint format, the resume key, RNG state, the lock.

A run directory `runs/<env_id>__<exp_name>__<seed>__<timestamp>/` holds `checkpoint.pt` (plain data:
it loads with `torch.load(weights_only=True)`, so reading it never runs code), `env_state.pkl` (the
exact vector env for --resume, a pickle: only --resume reads it, and only when the checkpoint holds
its HMAC under this user's own key, i.e. this user wrote it; a run directory from anyone else resumes
with its episodes restarted; `env_state.next.pkl` is the one a crash left between two commits),
`metrics.jsonl` and `summary.json` (the local record), W&B's files under `wandb/`, and whatever
compress adds next to them. Every file is opened through runkit.files (regular files only, bounded).
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
import stat
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium.utils import EzPickle

from l0rl.errors import NonFiniteError, RunError, UsageError
from l0rl.runkit.files import (
    TORCH_FILE_LIMIT,
    MiB,
    atomic_write_bytes,
    fsync_dir,
    load_plain,
    open_regular,
    read_bytes,
)

FORMAT_VERSION = 2
CHECKPOINT_NAME = "checkpoint.pt"
ENV_STATE_NAME = "env_state.pkl"
ENV_STATE_NEXT = "env_state.next.pkl"
"""The envs' pickle written before the checkpoint that holds its MAC, renamed to ENV_STATE_NAME after."""
ENV_STATE_LIMIT = 256 * MiB
"""The largest env state read (a classic-control vector env pickles to a few KiB)."""
LOCK_NAME = ".lock"
KEY_FILE_ENV = "L0RL_KEY_FILE"
"""Environment variable naming the file of this user's resume key (default ~/.config/l0rl/resume.key)."""
KEY_BYTES = 32
"""The resume key's length, and the least a key file may hold."""
EXP_NAME_MAX = 100
"""The longest --exp-name: the run name (env id, exp name, seed, time) must fit a 255-byte file name."""
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


def run_name(env_id: str, exp_name: str, seed: int) -> str:
    return f"{env_id}__{exp_name}__{seed}__{int(time.time())}"


def check_exp_name(exp_name: Any) -> None:
    name = exp_name if isinstance(exp_name, str) else ""
    if len(name) > EXP_NAME_MAX or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", name) or ".." in name:
        shown = repr(exp_name)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise UsageError(
            f"--exp-name {shown} must be 1 to {EXP_NAME_MAX} letters, digits and . _ + - (no path "
            "separator), e.g. ppo_wide"
        )


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
    if Path(name).is_absolute() or ".." in Path(name).parts:  # a name from a checkpoint stays under root
        raise RunError(f"run name {name!r} would leave --runs-dir {root}; check --exp-name and --env-id")
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
    """Write `checkpoint.pt` atomically; for exact resume, also the envs' pickle, committed so that a
    crash (or a full disk) at any moment leaves a pair that resumes exactly: the pickle goes to
    env_state.next.pkl, then checkpoint.pt (holding its MAC) replaces the old one, then the pickle
    takes env_state.pkl's name; load_env_state reads whichever of the two the MAC names. Refuses
    non-finite networks."""
    missing = [k for k in REQUIRED_KEYS if k not in payload]
    if missing:
        raise ValueError(f"checkpoint payload misses {missing}")
    check_finite(payload["networks"], payload["global_step"])
    run_dir = Path(run_dir)
    key = resume_key() if envs is not None else None
    mac = None
    if key is not None:
        blob = pickle.dumps({"global_step": payload["global_step"], "envs": envs})
        atomic_write_bytes(run_dir / ENV_STATE_NEXT, blob)
        mac = _mac(key, blob)
    # the MAC travels in the plain-data checkpoint: only a holder of the key can make a pickle resume reads
    payload = {**payload, "env_state_step": payload["global_step"] if mac else None, "env_state_mac": mac}
    path = run_dir / CHECKPOINT_NAME
    atomic_torch_save(path, payload)
    if mac is not None:
        try:
            os.replace(run_dir / ENV_STATE_NEXT, run_dir / ENV_STATE_NAME)
            fsync_dir(run_dir)
        except OSError as e:
            raise OSError(e.errno, e.strerror, str(run_dir / ENV_STATE_NAME)) from None
    return path


def resolve_checkpoint(path: str | Path) -> Path:
    """Accept a run directory or a checkpoint file; raise RunError when neither is usable."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
        if not os.path.lexists(path):
            raise RunError(
                f"{path.parent} has no {CHECKPOINT_NAME}; is it a run directory written by l0rl's algos?"
            )
    elif not os.path.lexists(path):
        raise RunError(f"{path} does not exist; pass a run directory such as runs/<run_name>")
    return path


NONE = type(None)
FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "format_version": (int,),
    "algo": (str,),
    "env_id": (str,),
    "env_options": (dict,),
    "args": (dict,),
    "global_step": (int,),
    "finished": (bool,),
    "policy": (dict,),
    "networks": (dict,),
    "optimizers": (dict,),
    "schedulers": (dict,),
    "loop": (dict,),
    "rng": (dict,),
    "wandb_id": (str, NONE),
    "env_state_step": (int, NONE),
    "env_state_mac": (str, NONE),
}
"""The type of every field a checkpoint may hold (what save_checkpoint writes)."""
FIELD_PATTERNS = {
    "algo": r"[a-z0-9_]{1,64}",
    "env_id": r"[A-Za-z0-9_./:-]{1,200}",
    "wandb_id": r"[A-Za-z0-9_-]{1,64}",
    "env_state_mac": r"[0-9a-f]{64}",
}
"""Strings that end up in paths, messages or W&B's directory names: no separator tricks, no newlines."""


READER_ARGS = {
    "seed": lambda v: type(v) is int and 0 <= v < 2**62,
    "eval_greedy": lambda v: type(v) is bool,
    "eval_max_steps": lambda v: v is None or type(v) is int and v >= 1,
}
"""The saved arguments that a run's readers use (its evaluation seeds and settings), checked when it loads;
--resume and --fork-from check every argument as the command line does."""


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_fields(ckpt: dict, path: Path) -> None:
    """Raise RunError when a field of a loaded checkpoint is not what l0rl writes (a crafted or
    damaged file): required keys, types, step range and the shape of the strings."""
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise RunError(f"{path} misses {missing}; the checkpoint is incomplete")
    for key, types in FIELD_TYPES.items():
        value = ckpt.get(key)
        if key not in ckpt or isinstance(value, types) and not (bool not in types and type(value) is bool):
            continue
        names = " or ".join("None" if t is NONE else t.__name__ for t in types)
        raise RunError(
            f"{path}: its {key} is {_shown(value)}, not a {names}; the checkpoint is damaged or not l0rl's"
        )
    for key, pattern in FIELD_PATTERNS.items():
        value = ckpt.get(key)
        if isinstance(value, str) and not re.fullmatch(pattern, value):
            raise RunError(
                f"{path}: its {key} {_shown(value)} is not one l0rl writes; the checkpoint is damaged"
            )
    for key in ("global_step", "env_state_step"):
        if isinstance(ckpt.get(key), int) and not 0 <= ckpt[key] < 2**62:
            raise RunError(f"{path}: its {key} {ckpt[key]} is out of range; the checkpoint is damaged")
    if not all(isinstance(k, str) for k in ckpt["args"]):
        raise RunError(f"{path}: its args have a key that is not a string; the checkpoint is damaged")
    bad = _non_finite(ckpt["networks"])
    if bad:  # save_checkpoint never writes one: every reader would play or train on NaN
        raise RunError(f"{path}: its network tensor {bad[0]} holds NaN/inf; the checkpoint is damaged")
    for key, fits in READER_ARGS.items():  # what evaluate, play and compress read of them
        if key in ckpt["args"] and not fits(ckpt["args"][key]):
            raise RunError(
                f"{path}: its saved --{key.replace('_', '-')} is {_shown(ckpt['args'][key])}; the checkpoint is damaged"
            )


def load_checkpoint(path: str | Path) -> dict:
    """Load and validate a checkpoint (run directory or file) on the CPU, through runkit.files: a
    regular file, plain data (a file that would run code when unpickled is refused, never executed),
    bounded in size and in what its tensors claim, with every field of the type l0rl writes."""
    path = resolve_checkpoint(path)
    ckpt = load_plain(
        path,
        TORCH_FILE_LIMIT,
        "checkpoint",
        "; format 1 of l0rl < 0.2 is one: retrain the run with this l0rl",
    )
    if not isinstance(ckpt, dict) or "format_version" not in ckpt:
        raise RunError(
            f"{path} is not an l0rl checkpoint (no format_version); was it written by l0rl's algos?"
        )
    if ckpt["format_version"] != FORMAT_VERSION:
        raise RunError(
            f"{path} has checkpoint format {_shown(ckpt['format_version'])}, this l0rl reads {FORMAT_VERSION}; "
            "retrain the run, or use the l0rl version that wrote it"
        )
    check_fields(ckpt, path)
    return ckpt


def key_path() -> tuple[Path | None, bool]:
    """(where this user's resume key lives, whether that is the default path); (None, True) where
    there is no home directory to keep one in."""
    if os.environ.get(KEY_FILE_ENV):
        return Path(os.environ[KEY_FILE_ENV]), False
    try:
        config = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    except (RuntimeError, KeyError):
        return None, True
    return Path(config) / "l0rl" / "resume.key", True


def _create_key(path: Path) -> bool:
    """A new key of KEY_BYTES random bytes, mode 0600, at the default path; False where it cannot be made."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(KEY_BYTES))
    except FileExistsError:  # another process made it first
        pass
    except OSError as e:
        print(
            f"warning: cannot create the resume key {path} ({e.strerror}); runs resume with their episodes "
            f"restarted (set {KEY_FILE_ENV} to a key file to resume exactly)",
            file=sys.stderr,
        )
        return False
    return True


def resume_key() -> bytes | None:
    """This user's secret for signing `env_state.pkl`, held to ssh's rules for a private key: a
    regular file (no symlink), owned by this user, mode 0600 or stricter, KEY_BYTES to 4 KiB long.
    It is created on first use at the default path (~/.config/l0rl/resume.key) only; a file named
    by L0RL_KEY_FILE must exist. None where no key can be kept (the envs are then not saved);
    anything else is a RunError that says how to fix it."""
    path, default = key_path()
    if path is None or default and not os.path.lexists(path) and not _create_key(path):
        return None
    make = f"(umask 077; head -c {KEY_BYTES} /dev/urandom > {path})"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise RunError(f"the resume key {path} is a symlink; put the key itself there: {make}") from None
        if e.errno == errno.ENOENT:
            raise RunError(
                f"{KEY_FILE_ENV}={path} does not exist; create the key with {make}, or unset {KEY_FILE_ENV}"
            ) from None
        raise RunError(
            f"cannot read the resume key {path} ({e.strerror}); fix it or set {KEY_FILE_ENV}"
        ) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise RunError(f"the resume key {path} is not a regular file; replace it with a key: {make}")
        if st.st_uid != os.geteuid():
            raise RunError(
                f"the resume key {path} belongs to uid {st.st_uid}, not to you (uid {os.geteuid()}); "
                f"make your own: {make}"
            )
        if st.st_mode & 0o077:
            raise RunError(
                f"the resume key {path} has mode {st.st_mode & 0o777:o}: others may read or change it, and "
                f"whoever reads it can make --resume unpickle their file; chmod 600 {path} (or make a new one)"
            )
        if not KEY_BYTES <= st.st_size <= 4096:
            raise RunError(
                f"the resume key {path} holds {st.st_size} bytes, not {KEY_BYTES} to 4096; make a new one: {make}"
            )
        os.set_blocking(fd, True)
        return os.read(fd, 4096)
    finally:
        os.close(fd)


def _mac(key: bytes, blob: bytes) -> str:
    return hmac.new(key, blob, hashlib.sha256).hexdigest()


def load_env_state(run_dir: str | Path, ckpt: dict) -> Any:
    """The pickled vector env saved with this checkpoint, or None. Only --resume calls this. A pickle
    runs code when loaded, so it is unpickled only when its HMAC under this user's key matches the one
    the checkpoint holds (env_state.pkl, or env_state.next.pkl where a crash came between the
    checkpoint and the rename): a run directory written by anyone else (or changed since) is not
    trusted, and the algorithm restarts the episodes in flight instead."""
    run_dir = Path(run_dir)
    candidates = [run_dir / n for n in (ENV_STATE_NAME, ENV_STATE_NEXT) if os.path.lexists(run_dir / n)]
    if ckpt.get("env_state_step") is None or not candidates:
        return None
    key, mac = resume_key(), ckpt.get("env_state_mac")
    for path in candidates:
        blob = read_bytes(path, ENV_STATE_LIMIT)
        if key is not None and isinstance(mac, str) and hmac.compare_digest(_mac(key, blob), mac):
            state = pickle.loads(blob)
            return state["envs"] if state.get("global_step") == ckpt["env_state_step"] else None
    print(
        f"{candidates[0]} was not written under this user's resume key (another machine or user, or changed "
        "since): not loaded, as a pickle can run code; the episodes in flight restart",
        file=sys.stderr,
    )
    return None


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
    """Restore what rng_state saved; a state that is not what it writes is a RunError."""
    try:
        python, n = state["python"], state["numpy"]
        key = n["state"].numpy()
        if key.shape != (624,) or not isinstance(python, tuple):
            raise ValueError("wrong shape")
        random.setstate(python)
        np.random.set_state(("MT19937", key.astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
        torch.set_rng_state(state["torch"])
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError, IndexError):
        raise RunError(
            "the checkpoint's RNG state is not one l0rl writes (damaged or crafted); it cannot resume"
        ) from None
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
        try:  # a .lock symlink is refused: the pid written below would truncate its target
            self._fd = open_regular(self.path, os.O_RDWR | os.O_CREAT, 0o644)
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
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, str(os.getpid()).encode(), 0)
        except OSError as e:
            self.release()
            raise OSError(e.errno, e.strerror, str(self.path)) from None

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
