"""Turning expected user mistakes into one-line errors with exit code 2, for every entry point."""

import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

EXIT_USAGE = 2


def run_cli(fn: Callable[[], T], prog: str) -> T:
    """Call fn(); a ValueError (our RunError/EnvError included) or a missing optional package becomes
    `prog: error: <message>` on stderr and exit code 2 instead of a traceback."""
    try:
        return fn()
    except (ValueError, ModuleNotFoundError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if isinstance(e, ModuleNotFoundError):
            msg = f"missing optional package {e.name!r}; run 'make setup' or pip install the matching l0rl extra"
        print(f"{prog}: error: {msg}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
