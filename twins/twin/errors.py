"""The twin store's errors, each a :class:`twins.errors.TwinsError` printed on one line."""

from __future__ import annotations

from pathlib import Path

from twins.errors import TwinsError
from twins.lock import LockHolder

__all__ = [
    "ProductNotFoundError",
    "TwinCorruptError",
    "TwinError",
    "TwinExistsError",
    "TwinKindError",
    "TwinLockedError",
    "TwinNotFoundError",
    "TwinUpdateError",
    "TwinVersionError",
]


class TwinError(TwinsError):
    """Base class of the twin store's errors (exit code 4)."""

    exit_code = 4


class TwinNotFoundError(TwinError):
    """The directory does not exist or holds no ``twin.json``."""


class TwinExistsError(TwinError):
    """``init`` was asked to create a twin where a twin (or other content) already is."""


class TwinCorruptError(TwinError):
    """A store file is unreadable or invalid."""


class TwinKindError(TwinError):
    """The twin belongs to another domain than the caller expected."""


class TwinVersionError(TwinError, LookupError):
    """A version number that is not committed was asked for."""


class TwinUpdateError(TwinError):
    """An update was misused (bad key, non-JSON summary, …) or could not be committed."""


class ProductNotFoundError(TwinError, FileNotFoundError):
    """No committed version holds the requested product."""


class TwinLockedError(TwinError):
    """Another process (or this thread) holds the twin's lock (exit code 75, EX_TEMPFAIL).

    Attributes:
        path: The twin directory (None if not given).
        holder: The holder's note, or None when unknown.
    """

    exit_code = 75

    def __init__(
        self,
        message: str,
        hint: str = "",
        *,
        path: Path | None = None,
        holder: LockHolder | None = None,
    ) -> None:
        super().__init__(message, hint)
        self.path = path
        self.holder = holder
