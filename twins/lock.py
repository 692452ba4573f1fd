"""An exclusive inter-process lock on a file, built on ``fcntl.flock``.

The kernel drops an ``flock`` lock when the last descriptor of the open file goes away, so a
holder that dies (even by ``SIGKILL``) never leaves a stale lock behind. After acquiring, the
holder writes a small JSON note (pid, host, time, purpose) into the lock file so that a refused
process can say who holds the lock; the note is informational only, the lock is the ``flock``.

This module knows nothing about twins and raises no :class:`~twins.errors.TwinsError`: the
store turns a refusal into :class:`~twins.twin.store.TwinLockedError` with the twin's path.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["FileLock", "LockHolder", "probe_lock", "read_holder"]

logger = logging.getLogger(__name__)

#: How long a non-waiting acquire keeps retrying when the lock is busy but no live holder has
#: signed the lock file yet (a holder between ``flock`` and writing its note, or a momentary
#: :func:`probe_lock`).
_NOWAIT_GRACE_S = 0.2
_POLL_S = 0.02

_held_lock = threading.Lock()
_held: dict[tuple[int, int], int] = {}  # (st_dev, st_ino) of a held lock file -> thread id


@dataclass(frozen=True)
class LockHolder:
    """Who says they hold a lock, as written into the lock file by the holder.

    Attributes:
        pid: Process id of the holder.
        host: Host name of the holder.
        since: ISO-8601 UTC time at which the lock was acquired.
        purpose: Free text, e.g. ``"update key=2021-03"``.
    """

    pid: int
    host: str
    since: str
    purpose: str = ""

    def is_alive(self) -> bool:
        """Return whether the holder process still exists (always True for another host).

        Returns:
            False only when the holder ran on this host and its pid is gone.
        """
        if self.host != socket.gethostname():
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def describe(self) -> str:
        """Return a short human description, e.g. ``"pid 42 on node1 since 2024-…"``.

        Returns:
            One line of text.
        """
        text = f"pid {self.pid} on {self.host} since {self.since}"
        return f"{text} ({self.purpose})" if self.purpose else text

    def to_dict(self) -> dict[str, object]:
        """Return the holder as a JSON-ready dict.

        Returns:
            ``{"pid", "host", "since", "purpose"}``.
        """
        return {"pid": self.pid, "host": self.host, "since": self.since, "purpose": self.purpose}


def _parse_holder(raw: bytes) -> LockHolder | None:
    try:
        data = json.loads(raw.decode("utf-8"))
        return LockHolder(
            pid=int(data["pid"]),
            host=str(data["host"]),
            since=str(data["since"]),
            purpose=str(data.get("purpose", "")),
        )
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None


def read_holder(path: str | os.PathLike[str]) -> LockHolder | None:
    """Read the holder note from a lock file.

    The note may be stale (a holder killed by ``SIGKILL`` cannot erase it), so only trust it
    when the lock is actually held (see :func:`probe_lock`).

    Args:
        path: The lock file.

    Returns:
        The note, or None if the file is missing, empty or unreadable.
    """
    try:
        with open(path, "rb") as handle:
            return _parse_holder(handle.read(4096))
    except OSError:
        return None


def probe_lock(path: str | os.PathLike[str]) -> tuple[bool, LockHolder | None]:
    """Tell whether a lock file is currently locked, without waiting.

    The probe takes and drops a shared lock, which for an instant can make another process's
    non-waiting acquire see the lock busy; :meth:`FileLock.acquire` tolerates that with a short
    grace period.

    Args:
        path: The lock file.

    Returns:
        ``(locked, holder)``; ``holder`` is the note of the holder when locked, else None.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False, None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True, read_holder(path)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False, None
    finally:
        os.close(fd)


class FileLock:
    """An exclusive ``flock`` lock on one file, held by one :class:`FileLock` object at a time.

    Within one process, a second lock object on the same file blocks like another process
    would (``flock`` locks belong to open file descriptions), except that the same thread asking
    again is detected by :meth:`held_by_current_thread` so callers can refuse instead of
    deadlocking.

    Args:
        path: The lock file; created if missing.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        self._key: tuple[int, int] | None = None

    @property
    def held(self) -> bool:
        """Whether this object currently holds the lock."""
        return self._fd is not None

    def held_by_current_thread(self) -> bool:
        """Return whether the calling thread already holds a lock on this file.

        Returns:
            True if some :class:`FileLock` of this thread holds the file's lock.
        """
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        with _held_lock:
            return _held.get((st.st_dev, st.st_ino)) == threading.get_ident()

    def acquire(self, wait: bool | float = False, purpose: str = "") -> bool:
        """Try to take the lock.

        Args:
            wait: False: do not wait (beyond a grace of 0.2 s when the busy lock has no live
                holder note yet); True: wait as long as it takes; a number: wait up to that
                many seconds.
            purpose: Free text written into the holder note.

        Returns:
            True if the lock is now held, False if it was busy until the deadline.

        Raises:
            RuntimeError: This object already holds the lock.
            OSError: The lock file cannot be created or opened.
        """
        if self._fd is not None:
            raise RuntimeError(f"lock {self.path} is already held by this object")
        if wait is True:
            deadline: float | None = None
        elif wait is False:
            deadline = time.monotonic()
        else:
            deadline = time.monotonic() + max(0.0, float(wait))
        nowait = wait is False
        grace_end = time.monotonic() + _NOWAIT_GRACE_S
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if deadline is None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                else:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                now = time.monotonic()
                if nowait:
                    holder = read_holder(self.path)
                    if (holder is not None and holder.is_alive()) or now >= grace_end:
                        return False
                elif deadline is not None and now >= deadline:
                    return False
                sleep = _POLL_S if deadline is None or nowait else min(_POLL_S, deadline - now)
                time.sleep(max(sleep, 0.001))
                continue
            except BaseException:
                os.close(fd)
                raise
            # The file may have been deleted and re-created between open() and flock(); a lock
            # on an unlinked inode protects nothing, so start again on the current file.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            break
        st = os.fstat(fd)
        self._fd = fd
        self._key = (st.st_dev, st.st_ino)
        with _held_lock:
            _held[self._key] = threading.get_ident()
        note = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "purpose": purpose,
        }
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(note).encode("utf-8"), 0)
        logger.debug("acquired lock %s (%s)", self.path, purpose)
        return True

    def release(self) -> None:
        """Drop the lock and erase the holder note; a no-op if not held."""
        fd = self._fd
        if fd is None:
            return
        self._fd = None
        with _held_lock:
            if self._key is not None:
                _held.pop(self._key, None)
        self._key = None
        try:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
        logger.debug("released lock %s", self.path)
