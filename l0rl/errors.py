"""The error types every l0rl entry point maps to exit codes (see l0rl.runkit.cli.run_cli).

UsageError: an expected mistake by the user (bad option, unusable run directory): a one-line message
that says how to fix it, exit 2 (RunError: the same, for a run directory or one of its files).
NonFiniteError: training produced NaN/inf, exit 3; the last good checkpoint is kept. Interrupted: a
run stopped by SIGINT (Ctrl-C) or SIGTERM, exit 130 or 143. Anything else is a failure and keeps its
traceback.
"""


class UsageError(ValueError):
    """A user-caused problem; the message is one actionable line (exit code 2)."""


class RunError(UsageError):
    """A user-caused problem with a run directory or one of its files; one actionable line (exit 2)."""


class NonFiniteError(RuntimeError):
    """A loss or parameter became NaN/inf; training stopped before writing it (exit code 3)."""

    @classmethod
    def at(cls, global_step: int | None, what: str) -> "NonFiniteError":
        """The one message every divergence gives: where, what, and what to do."""
        where = f" at step {global_step}" if global_step is not None else ""
        return cls(
            f"training diverged{where}: {what}; the last good checkpoint is kept; lower the learning rates and retrain"
        )


class Interrupted(KeyboardInterrupt):
    """A run stopped by SIGINT or SIGTERM (runkit.Run): exit code 128 + the signal's number (130 for
    SIGINT, 143 for SIGTERM), as shells report a process that a signal ended. `message` is the one line
    still to print ("" when the run's closing lines said everything)."""

    def __init__(self, signum: int, message: str = ""):
        super().__init__(message)
        self.signum, self.message = signum, message

    @property
    def code(self) -> int:
        return 128 + self.signum


def first_line(e: BaseException, limit: int | None = None) -> str:
    """An exception as one line (at most `limit` characters; its type when it says nothing), for the
    one-line errors every entry point prints."""
    text = str(e).strip()
    return text.splitlines()[0][:limit] if text else type(e).__name__
