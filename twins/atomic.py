"""Durable file-system primitives: one atomic file replacement, fsync of files, directories
and trees.

These helpers know nothing about twins or training. The twin store uses them to say precisely
which bytes are on disk before its single commit step (replacing ``twin.json``); checkpoints,
run files and domain products use :func:`atomic_write` so that no reader ever sees half a file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_write",
    "fsync_dir",
    "fsync_file",
    "fsync_tree",
    "json_dumps",
    "remove_tree",
    "sha256_file",
    "write_json_atomic",
]

_CHUNK = 1 << 20


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Flush a directory's entries (creations, renames, deletions) to stable storage.

    Args:
        path: The directory.
    """
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: str | os.PathLike[str]) -> None:
    """Flush a regular file's data and metadata to stable storage.

    Args:
        path: The file.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: str | os.PathLike[str]) -> None:
    """Fsync every regular file and every directory below ``root``, and ``root`` itself.

    Files are flushed before the directory that holds them, directories bottom-up, so that once
    this returns a rename of ``root`` publishes only complete content. Symbolic links are not
    followed (their directory entry is flushed with the directory).

    Args:
        root: The directory to flush.
    """
    for dirpath, _dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path) and os.path.isfile(path):
                fsync_file(path)
        fsync_dir(dirpath)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Return the hex SHA-256 of a file's content.

    Args:
        path: The file.

    Returns:
        64 lowercase hex characters.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def json_dumps(data: Any) -> str:
    """Serialise ``data`` the way every store file is written (sorted keys, indented, UTF-8).

    Args:
        data: JSON-serialisable data.

    Returns:
        The JSON text, ending with a newline.

    Raises:
        TypeError: ``data`` holds something JSON cannot represent.
        ValueError: ``data`` holds NaN/Infinity or a circular reference.
    """
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"


def atomic_write(
    path: str | os.PathLike[str], content: bytes | str | Callable[[Path], object]
) -> Path:
    """Replace ``path`` so that a reader, or a crash at any instant, sees the old or the new file.

    The new content goes to a temporary sibling (``.<name>.tmp-<random>``), which is fsynced,
    renamed over ``path`` with :func:`os.replace`, and then the directory is fsynced so that
    the rename itself is durable. On any error the temporary file is removed and ``path`` is
    untouched. This is the one routine every file replacement in twins goes through.

    Args:
        path: Destination file; its directory must exist.
        content: The bytes, or text (UTF-8), or a writer called with the temporary path that
            writes the complete file there (``torch.save``, ``Dataset.to_netcdf``, h5py, ...).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp-{secrets.token_hex(4)}")
    try:
        if callable(content):
            content(tmp)
        else:
            data = content.encode("utf-8") if isinstance(content, str) else content
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
            finally:
                os.close(fd)
        fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(target.parent)
    return target


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> None:
    """Atomically replace ``path`` with the JSON form of ``data`` (see :func:`atomic_write`).

    Args:
        path: Destination file.
        data: JSON-serialisable data.
    """
    atomic_write(path, json_dumps(data))


def remove_tree(path: str | os.PathLike[str]) -> None:
    """Remove a file or a directory tree if it exists; a missing path is not an error.

    Args:
        path: What to remove.
    """
    target = Path(path)
    if target.is_symlink() or target.is_file():
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
    elif target.exists():
        shutil.rmtree(target, onerror=_ignore_missing)


def _ignore_missing(func: Any, path: str, exc_info: Any) -> None:
    """``shutil.rmtree`` error handler: tolerate entries that vanished, re-raise the rest."""
    if not isinstance(exc_info[1], FileNotFoundError):
        raise exc_info[1]
