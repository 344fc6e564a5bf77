"""User-facing errors: each carries a message, a hint and a documented exit code."""

from __future__ import annotations

# Exit codes, documented in README "Troubleshooting".
EXIT_OK = 0
EXIT_ERROR = 1  # unexpected internal error (a bug: please report it)
EXIT_USAGE = 2  # bad input: fix the command, model, data or file named in the message
EXIT_INFEASIBLE = 3  # no candidate can meet the deadline
EXIT_INTERRUPTED = 130  # Ctrl-C


class NetcutError(Exception):
    """An error caused by the user's input; printed without a traceback."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  fix: {self.hint}"
