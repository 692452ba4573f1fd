"""Errors a user can cause and fix. The CLI prints them as one line plus a hint."""

from __future__ import annotations


class TwinsError(Exception):
    """Base class of every error the CLI reports without a traceback.

    Attributes:
        hint: One short sentence telling the user what to do next, or ``""``.
        exit_code: Process exit status the CLI uses for this error.
    """

    exit_code: int = 1

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


class ConfigError(TwinsError):
    """A config file or override is missing, malformed or invalid (exit code 2)."""

    exit_code = 2


class DataError(TwinsError):
    """Input data is missing, malformed or inconsistent."""

    exit_code = 3
