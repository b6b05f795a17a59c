"""Turning expected user mistakes and system errors into one-line messages, for every entry point.

Exit codes: 2 usage error (l0rl.errors.UsageError: a bad option, an unusable run directory, a
missing optional package), 3 non-finite training (NonFiniteError), 1 a file-system error naming its
path (disk full, permission denied), 130 / 143 a run stopped by SIGINT / SIGTERM (Interrupted: 128 +
the signal's number). Anything else is a bug or a failure and keeps its traceback.
"""

import sys
from collections.abc import Callable
from typing import TypeVar

from l0rl.errors import Interrupted, NonFiniteError, UsageError, first_line

T = TypeVar("T")

EXIT_SYSTEM, EXIT_USAGE, EXIT_NONFINITE = 1, 2, 3
OPTIONAL_PACKAGES = {
    "moviepy": "video",
    "onnx": "onnx",
    "onnxruntime": "onnx",
    "nes_py": "mario",
    "gym_super_mario_bros": "mario",
    "matplotlib": "report",
    "rliable": "report",
    "wandb_workspaces": "report",
    "ray": "cluster",
}


_commands = 0
"""How many run_cli calls are under way: inside one, an aborted run ends the process (runkit.Run)."""


def in_command() -> bool:
    """True inside run_cli: a run aborted by a second stop signal is the end of this process, so its
    Run ignores further stop signals instead of putting back the handlers it replaced."""
    return _commands > 0


def run_cli(fn: Callable[[], T], prog: str) -> T:
    """Call fn(); map the expected errors above to `prog: error: <one line>` and their exit codes."""
    global _commands
    _commands += 1
    try:
        return fn()
    except Interrupted as e:
        interrupted = e.code, e.message
    except UsageError as e:
        print(f"{prog}: error: {first_line(e)}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
    except NonFiniteError as e:
        print(f"{prog}: error: {first_line(e)}", file=sys.stderr)
        raise SystemExit(EXIT_NONFINITE) from None
    except ModuleNotFoundError as e:
        root = (e.name or "").split(".")[0]
        if root not in OPTIONAL_PACKAGES:
            raise
        extra = OPTIONAL_PACKAGES[root]
        print(
            f"{prog}: error: missing optional package {root!r}; run 'make setup' or pip install \"l0rl[{extra}]\"",
            file=sys.stderr,
        )
        raise SystemExit(EXIT_USAGE) from None
    except OSError as e:
        if e.filename is None:
            raise
        print(f"{prog}: error: cannot write or read {e.filename}: {e.strerror}", file=sys.stderr)
        raise SystemExit(EXIT_SYSTEM) from None
    finally:
        _commands -= 1
    if interrupted[1]:  # only an Interrupted gets here: every other branch raises
        print(f"{prog}: {interrupted[1]}", file=sys.stderr)
    raise SystemExit(interrupted[0])
