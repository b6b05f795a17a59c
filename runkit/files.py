"""Opening what a run directory holds: every reader and writer of a run's files goes through here.

A run directory travels (a colleague's, a carried one from git, a download), so what it holds is
data to check, never a path to follow. The directory itself is the one the user named; below it:
- only real directories and regular files: a symlink, FIFO, device or socket is refused in one line
  (O_NOFOLLOW on each file, an lstat on each directory l0rl writes into);
- every read has a size bound, checked with fstat before a byte is read;
- every write lands inside: atomically (a temp file renamed over the name, which replaces a link,
  never its target) or appended through a descriptor opened with O_NOFOLLOW, one whole record or none;
- a torch file is plain data (weights_only), an uncompressed zip whose records fit in the file, and
  its tensors together view at most VIEW_FACTOR times the file's bytes: loading it, or copying every
  tensor it holds, allocates a small multiple of its size.
"""

import errno
import io
import json
import os
import pickle
import stat
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from l0rl.errors import RunError

MiB, GiB = 2**20, 2**30
TORCH_FILE_LIMIT = 4 * GiB
"""The largest checkpoint.pt, compressed*.pt or copied replay buffer read (a Mario checkpoint is ~60 MiB)."""
TEXT_FILE_LIMIT = 1 * GiB
"""The largest metrics.jsonl or summary.json read (a million metrics rows are ~200 MiB)."""
VIEW_FACTOR = 4
"""A checkpoint stores each weight once and views it twice (the networks and the policy record)."""
_KINDS = {
    stat.S_IFLNK: "symlink",
    stat.S_IFIFO: "FIFO",
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
    stat.S_IFSOCK: "socket",
    stat.S_IFDIR: "directory",
}


def _kind(mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(mode), "special file")


def _refuse(path: Path, what: str) -> RunError:
    return RunError(
        f"{path} is a {what}, not a regular file; a run directory holds only regular files and "
        "directories: remove it (or replace it with the real file) and run again"
    )


def open_regular(path: str | Path, flags: int = os.O_RDONLY, mode: int = 0o666) -> int:
    """A descriptor of `path`, refused in one line unless it is a regular file (a symlink is not
    followed, a FIFO is not waited on) and, opened for writing, its only name (a hard link's other
    name may lie outside the run). OSError (e.g. ENOENT) keeps `path` as its filename."""
    path = Path(path)
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise _refuse(path, "symlink") from None
        if e.errno == errno.ENXIO:  # a FIFO opened for writing with no reader
            raise _refuse(path, "FIFO") from None
        raise OSError(e.errno, e.strerror, str(path)) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise _refuse(path, _kind(st.st_mode))
    if flags & (os.O_WRONLY | os.O_RDWR) and st.st_nlink > 1:  # writing it would change the other names too
        os.close(fd)
        raise RunError(
            f"{path} is a hard link ({st.st_nlink} names for one file), and writing it would change a file "
            "outside the run: replace it with a copy (cp --remove-destination) and run again"
        )
    os.set_blocking(fd, True)
    return fd


def _too_big(path: Path, size: int, limit: int) -> RunError:
    return RunError(
        f"{path} is {size / MiB:,.1f} MiB, more than the {limit / MiB:,.0f} MiB l0rl reads from such a "
        "file; it was not read: is it the file l0rl wrote?"
    )


def open_bounded(path: str | Path, limit: int) -> io.BufferedReader:
    """`path` opened for reading (see open_regular) once its size is known to be at most `limit`."""
    path = Path(path)
    fd = open_regular(path)
    size = os.fstat(fd).st_size
    if size > limit:
        os.close(fd)
        raise _too_big(path, size, limit)
    return os.fdopen(fd, "rb")


def read_bytes(path: str | Path, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes (it may not grow past it while read). The
    buffer grows with what is read: read(n) would allocate all n bytes (`limit`, GiBs) up front."""
    with open_bounded(path, limit) as f:
        data = f.read(os.fstat(f.fileno()).st_size)
        while len(data) <= limit and (more := f.read(min(MiB, limit + 1 - len(data)))):
            data += more  # it grew since fstat
    if len(data) > limit:
        raise _too_big(Path(path), len(data), limit)
    return data


def read_text(path: str | Path, limit: int = TEXT_FILE_LIMIT) -> str:
    data = read_bytes(path, limit)
    try:
        return data.decode()
    except UnicodeDecodeError as e:
        raise RunError(f"{path} is not UTF-8 text (byte {e.start}); it is not a file l0rl wrote") from None


def read_json_object(path: str | Path, limit: int = TEXT_FILE_LIMIT) -> dict | None:
    """A JSON object file read through read_text (None when there is none); anything else that is
    there is a RunError naming it."""
    if not os.path.lexists(path):
        return None
    text = read_text(path, limit)  # a symlink or an oversized file is refused as such
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):  # not JSON, or nested beyond what the parser's stack holds
        obj = None
    if not isinstance(obj, dict):
        raise RunError(
            f"{path} is not a JSON object; restore it from a copy, or delete it and rerun the step that wrote it"
        )
    return obj


def real_dir(path: str | Path) -> Path:
    """`path` as a real directory inside its run: created when missing (its parent must exist),
    refused in one line when it is a symlink or anything but a directory."""
    path = Path(path)
    try:
        path.mkdir()
    except FileExistsError:
        pass
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(path)) from None
    mode = os.lstat(path).st_mode
    if not stat.S_ISDIR(mode):
        raise RunError(
            f"{path} is a {_kind(mode)}, not a directory; a run directory holds only regular files and "
            "directories: remove it and run again"
        )
    return path


def _file_mode() -> int:
    """0666 less the process umask: what open() would give a new file."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write via a temp file in the same directory, fsync, rename, fsync the directory: a crash leaves
    either the old file or the new one, and a symlink at `path` is replaced, never written through.
    The file gets the mode open() would give it (umask). OSError names `path`."""
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
        fsync_dir(path.parent)
    except OSError as e:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        raise OSError(e.errno, e.strerror, str(path)) from None
    except BaseException:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        raise


def append_record(path: str | Path, data: bytes) -> None:
    """Append one whole record to `path` (created if missing) or nothing: a short or failed write
    (disk full) is cut back off, so the file never ends in half a record. OSError names `path`."""
    path = Path(path)
    fd = open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, _file_mode())
    try:
        size = os.fstat(fd).st_size
        try:
            written = 0
            while written < len(data):
                written += os.write(fd, data[written:])
        except OSError as e:
            os.ftruncate(fd, size)
            raise OSError(e.errno, e.strerror, str(path)) from None
    finally:
        os.close(fd)


def _zip_problem(f: io.BufferedReader, size: int) -> str | None:
    """Why a torch file is not an uncompressed zip whose records fit in it, or None when it is one."""
    head = f.read(4)
    f.seek(0)
    if head[:1] == b"\x80":
        return "pickle"
    if head != b"PK\x03\x04":
        return "not a torch zip file"
    try:
        with zipfile.ZipFile(f) as z:
            records = z.infolist()
    except (zipfile.BadZipFile, ValueError, OSError):
        return "a damaged zip file"
    finally:
        f.seek(0)
    if any(r.compress_type != zipfile.ZIP_STORED for r in records):
        return (
            "compressed zip records, which torch.save never writes (a small file could inflate without bound)"
        )
    if sum(r.file_size for r in records) > size:
        return "zip records larger than the file"
    return None


def tensors(obj: Any) -> list[torch.Tensor]:
    """Every tensor in nested dicts, lists and tuples (walked without recursion: depth is data too)."""
    out, todo = [], [obj]
    while todo:
        x = todo.pop()
        if isinstance(x, torch.Tensor):
            out.append(x)
        elif isinstance(x, dict):
            todo.extend(x.values())
        elif isinstance(x, list | tuple):
            todo.extend(x)
    return out


def load_plain(path: str | Path, limit: int, what: str, pickle_hint: str = "") -> Any:
    """A torch file loaded as plain data on the CPU (weights_only=True: nothing in it runs), refused
    in one line when it is not a regular file, larger than `limit`, not an uncompressed torch zip, not
    plain data, or when its tensors view more than VIEW_FACTOR times its bytes."""
    path = Path(path)
    with open_bounded(path, limit) as f:
        size = os.fstat(f.fileno()).st_size
        problem = _zip_problem(f, size)
        if problem == "pickle":
            raise RunError(
                f"{path} is a bare pickle, not plain data{pickle_hint} (loading it could run code); it was not "
                f"loaded: is it a {what} l0rl wrote?"
            )
        if problem is not None:
            raise RunError(
                f"{path} is not a readable {what} ({problem}); it may be truncated or corrupt, or not l0rl's"
            )
        try:
            obj = torch.load(f, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            raise RunError(
                f"{path} is not plain data{pickle_hint} (a file that would run code when loaded); it was "
                "not loaded"
            ) from e
        except Exception as e:  # torch raises several types for damaged or foreign records
            raise RunError(
                f"{path} is not a readable {what} ({type(e).__name__}); it may be truncated or corrupt"
            ) from e
    viewed = sum(t.numel() * t.element_size() for t in tensors(obj))
    if viewed > VIEW_FACTOR * size:
        raise RunError(
            f"{path}'s tensors claim {viewed / MiB:,.1f} MiB from a {size / MiB:,.1f} MiB file (views of one "
            f"storage repeated); it was not used: is it a {what} l0rl wrote?"
        )
    return obj
