"""A directory product (a Zarr store, say) built once per content key, opened by everyone else.

Several processes need the same derived product: the DDP ranks of one run, the trials of a
tune study, the next run with the same data and config. :func:`build_once` lets the first
process that takes the key's lock build it and every other process wait and open it::

    product = build_once(cache_root, f"cube-{key}", lambda tmp: write_cube(tmp))
    ds = xr.open_zarr(product.path)

Layout under ``root`` for a key ``K``::

    K/                          the published product (only ever complete)
    K.done.json                 completion marker: who built it, when, in how long, info
    K.lock                      flock lock file (holder note: pid, host, since)
    K.failed.json               the last failed build's error (waiters report it)
    .K.tmp-<host>-<pid>-<hex>/  a build in progress (or left by a builder that died)

Protocol. A builder holds ``K.lock`` (``fcntl.flock``) from start to finish. It builds into
a temporary sibling directory, fsyncs the tree, renames it to ``K`` (atomic), then writes
``K.done.json`` (atomically). The product counts as present only when the marker exists,
so a crash at any instant leaves either no product, or a directory without a marker that the
next builder removes, never a half product that looks complete. The kernel drops a dead
builder's lock; the next process to take it removes the temporary directories left behind
(logging the pid and host recorded in their names and in the lock note) and builds again.

Assumptions. Every process sharing ``root`` sees one coherent ``flock``: true on a local
file system, and on shared ones that implement it across nodes (NFSv4, Lustre mounted with
``-o flock``, GPFS/Spectrum Scale, BeeGFS, CephFS). On a mount without cross-node locking
(Lustre ``-o localflock``, NFS without a lock manager) processes on different nodes could
build at the same time; use a node-local root or let one process build first. ``rename``
of a directory within ``root`` must be atomic (POSIX, and all of the above).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import socket
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from twins.atomic import fsync_dir, fsync_tree, remove_tree, write_json_atomic
from twins.errors import TwinsError
from twins.lock import FileLock, LockHolder, probe_lock, read_holder

__all__ = [
    "BuildFailedError",
    "BuildWaitError",
    "Product",
    "build_once",
    "is_built",
    "product_path",
]

log = logging.getLogger(__name__)

#: Product keys: a file name without separators that does not start with a dot.
KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+=-]{0,199}$")


class BuildWaitError(TwinsError):
    """Waiting for another process's build timed out (exit code 75, EX_TEMPFAIL: retry)."""

    exit_code = 75


class BuildFailedError(BuildWaitError):
    """The process that was building the product, waited for, failed (exit code 1)."""

    exit_code = 1


@dataclass(frozen=True)
class Product:
    """A complete product.

    Attributes:
        path: The product directory (open it, never write to it).
        key: Its content key.
        built: Whether this call built it (False: it was there, or another process built it).
        record: The completion marker: ``key``, ``pid``, ``host``, ``finished`` (ISO UTC),
            ``build_s`` and the ``info`` the build returned.
    """

    path: Path
    key: str
    built: bool
    record: dict[str, Any] = field(default_factory=dict)


def product_path(root: str | os.PathLike[str], key: str) -> Path:
    """Where the product of ``key`` lives under ``root`` (whether built or not).

    Args:
        root: The cache root.
        key: The content key.

    Returns:
        ``root / key``.

    Raises:
        ValueError: ``key`` is not a plain file name (see :data:`KEY`).
    """
    if not KEY.match(key):
        raise ValueError(f"product key {key!r} must match {KEY.pattern}")
    return Path(root) / key


def _marker(path: Path) -> Path:
    return path.with_name(f"{path.name}.done.json")


def _failed(path: Path) -> Path:
    return path.with_name(f"{path.name}.failed.json")


def _lock(path: Path) -> Path:
    return path.with_name(f"{path.name}.lock")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_built(root: str | os.PathLike[str], key: str) -> bool:
    """Whether the product of ``key`` is complete (its directory and its marker exist).

    Args:
        root: The cache root.
        key: The content key.

    Returns:
        True when :func:`build_once` would open it without building.
    """
    return _record(product_path(root, key), key) is not None


def _record(path: Path, key: str) -> dict[str, Any] | None:
    record = _read_json(_marker(path))
    if record is None or record.get("key") != key or not path.is_dir():
        return None
    return record


def build_once(
    root: str | os.PathLike[str],
    key: str,
    build: Callable[[Path], Mapping[str, Any] | None],
    *,
    may_build: bool = True,
    timeout_s: float = 3600.0,
    poll_s: float = 0.5,
) -> Product:
    """Return the complete product of ``key``, building it here if no one has.

    Args:
        root: The cache root (created if missing); shared by every process that should
            share the product (see the module's assumptions on shared file systems).
        key: Content key, e.g. ``"cube-<hash of data and config>"`` (a plain file name).
        build: Writes the product into the empty directory it is given and returns
            JSON-able info for the marker (or None). It must not write outside that
            directory. Its exceptions propagate after the temporary directory is removed.
        may_build: True: build when no other process holds the lock (all of a tune study's
            trials, or all DDP ranks: one builds, the others wait and open). False: only
            wait for the marker, never build (DDP ranks other than 0, when rank 0 builds
            with a dask cluster of its own); a build failing meanwhile fails the wait.
        timeout_s: How long to wait for another process's build.
        poll_s: Seconds between checks of the marker and the lock while waiting (each
            check is a few metadata operations: keep it modest on shared file systems).

    Returns:
        The product.

    Raises:
        BuildWaitError: The wait exceeded ``timeout_s`` (naming the product, the lock and
            its holder).
        BuildFailedError: For a waiter (``may_build=False``): the builder failed during
            this wait (quoting its error).
        ValueError: ``key`` is not a plain file name.
    """
    path = product_path(root, key)
    record = _record(path, key)
    if record is not None:
        return Product(path, key, False, record)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(_lock(path))
    failed = _failed(path)
    old_failure = _stat_id(failed)  # a failure recorded before this wait is not this build's
    deadline = time.monotonic() + timeout_s
    previous: LockHolder | None = None  # the lock note found just before taking the lock
    while True:
        record = _record(path, key)
        if record is not None:
            return Product(path, key, False, record)
        if may_build:
            previous = read_holder(lock.path)
            if lock.acquire(wait=False, purpose=f"build {key}"):
                break
        else:
            now_failure = _stat_id(failed)
            if now_failure is not None and now_failure != old_failure:
                raise _failure(path, _read_json(failed) or {})
        if time.monotonic() >= deadline:
            raise _timeout(path, timeout_s)
        time.sleep(min(poll_s, max(deadline - time.monotonic(), 0.0)))
    try:
        record = _record(path, key)
        if record is not None:
            return Product(path, key, False, record)
        if previous is not None and not previous.is_alive():
            log.warning(
                "build of %s: the previous builder (%s) died without finishing",
                path,
                previous.describe(),
            )
        _clean(path)
        record = _build(path, key, build)
    finally:
        lock.release()
    return Product(path, key, True, record)


def _clean(path: Path) -> None:
    """Remove what dead builders left (called with the lock held)."""
    for tmp in sorted(path.parent.glob(f".{path.name}.tmp-*")):
        host, pid = _owner(tmp)
        gone = host == socket.gethostname() and pid is not None and not _alive(pid)
        log.warning(
            "removing the partial build %s left by pid %s on %s (%s)",
            tmp,
            pid,
            host,
            "process gone" if gone else "its lock was released",
        )
        remove_tree(tmp)
    if path.exists() or path.is_symlink():
        log.warning("removing %s: it has no completion marker (a publish was interrupted)", path)
        remove_tree(path)
    _failed(path).unlink(missing_ok=True)
    _marker(path).unlink(missing_ok=True)  # a marker of another key or unreadable
    fsync_dir(path.parent)


def _owner(tmp: Path) -> tuple[str, int | None]:
    suffix = tmp.name.split(".tmp-", 1)[1]
    host, pid, _ = (suffix.rsplit("-", 2) + ["", "", ""])[:3]
    return host, int(pid) if pid.isdigit() else None


def _alive(pid: int) -> bool:
    return LockHolder(pid, socket.gethostname(), "").is_alive()


def _build(
    path: Path, key: str, build: Callable[[Path], Mapping[str, Any] | None]
) -> dict[str, Any]:
    host, pid = socket.gethostname(), os.getpid()
    tmp = path.with_name(f".{path.name}.tmp-{host}-{pid}-{secrets.token_hex(4)}")
    tmp.mkdir()
    log.info("building %s (in %s)", path, tmp.name)
    t0 = time.monotonic()
    try:
        info = build(tmp)
        if not tmp.is_dir():
            raise RuntimeError(f"the build of {path} removed its directory {tmp}")
        fsync_tree(tmp)
        os.rename(tmp, path)
        fsync_dir(path.parent)
    except BaseException as exc:
        remove_tree(tmp)
        with contextlib.suppress(Exception):
            write_json_atomic(
                _failed(path),
                {
                    "key": key,
                    "pid": pid,
                    "host": host,
                    "failed": _now(),
                    "error": " ".join(traceback.format_exception_only(exc)[-1].split()),
                },
            )
        raise
    record = {
        "key": key,
        "pid": pid,
        "host": host,
        "finished": _now(),
        "build_s": round(time.monotonic() - t0, 3),
        "info": dict(info or {}),
    }
    write_json_atomic(_marker(path), record)
    log.info("built %s in %.1f s", path, record["build_s"])
    return record


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _stat_id(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _failure(path: Path, info: dict[str, Any]) -> BuildFailedError:
    return BuildFailedError(
        f"the build of {path} failed in pid {info.get('pid', '?')} on "
        f"{info.get('host', '?')}: {info.get('error', 'no error recorded')}",
        "fix the builder's error; the next build attempt starts afresh",
    )


def _timeout(path: Path, timeout_s: float) -> BuildWaitError:
    locked, holder = probe_lock(_lock(path))
    if locked and holder is not None:
        who = f"{holder.describe()} holds the build lock"
    elif locked:
        who = "a process holds the build lock"
    else:
        who = "no process holds the build lock"
    return BuildWaitError(
        f"waited {timeout_s:g} s for {path} (no completion marker {_marker(path).name}); "
        f"{who} {_lock(path)}",
        "raise the timeout if the build is slow, or check the builder's log",
    )
