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


def run_cli(fn: Callable[[], T], prog: str) -> T:
    """Call fn(); map the expected errors above to `prog: error: <one line>` and their exit codes."""
    try:
        return fn()
    except Interrupted as e:
        if e.message:
            print(f"{prog}: {e.message}", file=sys.stderr)
        raise SystemExit(e.code) from None
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
